//! Prometheus metrics. Labels carry hosts, steps and outcomes, never secrets.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    registry: String,
    outcome: String,
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabel {
    registry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsLabels {
    api: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    refresh: Family<RefreshLabels, Counter>,
    token_expiry: Family<RegistryLabel, Gauge>,
    requests: Family<OutcomeLabel, Counter>,
    latency: Histogram,
    aws_calls: Family<AwsLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ecr_credd");
        let refresh = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "token_fetches",
            "Token fetches per registry, by outcome and (for failures) the failing step",
            refresh.clone(),
        );
        let token_expiry = Family::<RegistryLabel, Gauge>::default();
        registry.register(
            "token_expiry_timestamp_seconds",
            "When each registry's current token expires (Unix seconds)",
            token_expiry.clone(),
        );
        let requests = Family::<OutcomeLabel, Counter>::default();
        registry.register("socket_requests", "Socket requests by outcome", requests.clone());
        let latency = Histogram::new(exponential_buckets(0.000_025, 2.0, 18));
        registry.register(
            "socket_request_duration_seconds",
            "Time to answer a socket request, from frame read to reply written",
            latency.clone(),
        );
        let aws_calls = Family::<AwsLabels, Counter>::default();
        registry.register("aws_calls", "Calls to IMDS, STS and ECR by API and outcome", aws_calls.clone());
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "Build information (always 1)", build);
        Metrics { registry, refresh, token_expiry, requests, latency, aws_calls }
    }

    /// A fetch for `registry` finished; `step` names the failing step, or is
    /// `"none"` on success.
    pub fn fetch(&self, registry: &str, ok: bool, step: &str) {
        let outcome = if ok { "success" } else { "failure" };
        self.refresh
            .get_or_create(&RefreshLabels {
                registry: registry.into(),
                outcome: outcome.into(),
                step: step.into(),
            })
            .inc();
    }

    /// The token held for `registry` now expires at `unix` seconds.
    pub fn token_expiry(&self, registry: &str, unix: u64) {
        self.token_expiry
            .get_or_create(&RegistryLabel { registry: registry.into() })
            .set(i64::try_from(unix).unwrap_or(i64::MAX));
    }

    /// Forgets a registry that was removed from the config.
    pub fn forget(&self, registry: &str) {
        self.token_expiry.remove(&RegistryLabel { registry: registry.into() });
    }

    /// A socket request finished with `outcome` after `took`.
    pub fn request(&self, outcome: &str, took: Duration) {
        self.requests.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// An AWS (or IMDS) call finished.
    pub fn aws_call(&self, api: &str, outcome: &str) {
        self.aws_calls.get_or_create(&AwsLabels { api: api.into(), outcome: outcome.into() }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new();
        m.fetch("127.0.0.1:5000", false, "assume_role");
        m.token_expiry("127.0.0.1:5000", 1_800_000_000);
        m.request("ok", Duration::from_micros(40));
        m.aws_call("AssumeRole", "denied");
        let text = m.encode();
        for needle in [
            "ecr_credd_token_fetches_total{registry=\"127.0.0.1:5000\",outcome=\"failure\",step=\"assume_role\"} 1",
            "ecr_credd_token_expiry_timestamp_seconds{registry=\"127.0.0.1:5000\"} 1800000000",
            "ecr_credd_socket_requests_total{outcome=\"ok\"} 1",
            "ecr_credd_socket_request_duration_seconds_count 1",
            "ecr_credd_aws_calls_total{api=\"AssumeRole\",outcome=\"denied\"} 1",
            "ecr_credd_build_info{version=\"",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        m.forget("127.0.0.1:5000");
        assert!(!m.encode().contains("token_expiry_timestamp_seconds{"));
    }
}
