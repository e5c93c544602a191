//! Prometheus metrics. Labels carry hosts, steps and outcomes, never secrets.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
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
    outcome: RequestOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsLabels {
    api: Api,
    outcome: CallOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkloadLabels {
    exchange: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The API an AWS (or IMDS) call went to; the `api` label is the variant's
/// name, as the derive writes it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)] // the label value is `IMDS`
pub enum Api {
    /// IMDSv2's instance-profile credentials.
    IMDS,
    /// A configured source other than IMDS (environment, profile, ...).
    BaseCredentials,
    /// `sts:GetCallerIdentity`, for the identity `/status` shows.
    GetCallerIdentity,
    /// `sts:AssumeRole`.
    AssumeRole,
    /// `ecr:GetAuthorizationToken`.
    GetAuthorizationToken,
    /// `ecr-public:GetAuthorizationToken`.
    GetAuthorizationTokenPublic,
    /// `sts:AssumeRoleWithWebIdentity`, for a workload's token (IRSA).
    AssumeRoleWithWebIdentity,
    /// The EKS Pod Identity Agent, for a workload's token.
    PodIdentity,
}

/// How a call to AWS ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CallOutcome {
    /// It answered as hoped.
    Success,
    /// A permission denial (HTTP 403, AccessDenied).
    Denied,
    /// A rate limit: the account's quota is spent for now.
    Throttled,
    /// Any other failure.
    Error,
}

impl From<crate::tokens::Refusal> for CallOutcome {
    fn from(refusal: crate::tokens::Refusal) -> Self {
        match refusal {
            crate::tokens::Refusal::Denied => CallOutcome::Denied,
            crate::tokens::Refusal::Throttled => CallOutcome::Throttled,
            crate::tokens::Refusal::Overloaded | crate::tokens::Refusal::Failed => CallOutcome::Error,
        }
    }
}

/// How a socket request ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Credentials handed out.
    Ok,
    /// The host list.
    List,
    /// The status snapshot.
    Status,
    /// Not a registry the daemon serves.
    NotFound,
    /// A registry it serves, without a token to give.
    Unavailable,
    /// A request it could not read.
    BadRequest,
    /// A peer not allowed to use the socket.
    Forbidden,
    /// Anything else.
    Other,
}

// prometheus-client's derive writes a variant's name verbatim and has no
// rename, so the lowercase `outcome` values are spelt here, once per enum.
impl EncodeLabelValue for CallOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        encoder.write_str(match self {
            CallOutcome::Success => "success",
            CallOutcome::Denied => "denied",
            CallOutcome::Throttled => "throttled",
            CallOutcome::Error => "error",
        })
    }
}

impl EncodeLabelValue for RequestOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        encoder.write_str(match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::List => "list",
            RequestOutcome::Status => "status",
            RequestOutcome::NotFound => "not_found",
            RequestOutcome::Unavailable => "unavailable",
            RequestOutcome::BadRequest => "bad_request",
            RequestOutcome::Forbidden => "forbidden",
            RequestOutcome::Other => "other",
        })
    }
}

/// How a token fetch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A token was stored.
    Success,
    /// No token; `step` names the step that failed.
    Failed {
        /// The failing step's metric label.
        step: &'static str,
    },
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    refresh: Family<RefreshLabels, Counter>,
    token_expiry: Family<RegistryLabel, Gauge>,
    registry_ready: Family<RegistryLabel, Gauge>,
    requests: Family<OutcomeLabel, Counter>,
    latency: Histogram,
    aws_calls: Family<AwsLabels, Counter>,
    workload_requests: Family<WorkloadLabels, Counter>,
    workload_cached: Gauge,
    workload_evictions: Counter,
    /// The fetch series made per registry, for [`Metrics::forget`].
    fetch_labels: std::sync::Mutex<std::collections::HashMap<String, Vec<(&'static str, &'static str)>>>,
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
        let registry_ready = Family::<RegistryLabel, Gauge>::default();
        registry.register(
            "registry_ready",
            "1 while a configured registry holds a token with more than 5 minutes left (as /readyz), else 0",
            registry_ready.clone(),
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
        let workload_requests = Family::<WorkloadLabels, Counter>::default();
        registry.register(
            "workload_requests",
            "Per-workload (pod identity) requests by exchange and outcome; no per-workload labels",
            workload_requests.clone(),
        );
        let workload_cached = Gauge::default();
        registry.register("workload_cache_entries", "Workload tokens held", workload_cached.clone());
        let workload_evictions = Counter::default();
        registry.register(
            "workload_cache_evictions",
            "Workload tokens dropped to stay within [workload] max_cached",
            workload_evictions.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "Build information (always 1)", build);
        Metrics {
            registry,
            refresh,
            token_expiry,
            registry_ready,
            requests,
            latency,
            aws_calls,
            workload_requests,
            workload_cached,
            workload_evictions,
            fetch_labels: Default::default(),
        }
    }

    /// A fetch for `registry` finished.
    pub fn fetch(&self, registry: &str, outcome: FetchOutcome) {
        let (outcome, step) = match outcome {
            FetchOutcome::Success => ("success", "none"),
            FetchOutcome::Failed { step } => ("failure", step),
        };
        let mut seen = crate::sync::lock(&self.fetch_labels);
        let labels = seen.entry(registry.to_owned()).or_default();
        if !labels.contains(&(outcome, step)) {
            labels.push((outcome, step));
        }
        drop(seen);
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

    /// Each configured registry's readiness now, set as `/metrics` is read
    /// (readiness moves with the clock, not only with fetches).
    pub fn readiness<'a>(&self, registries: impl IntoIterator<Item = (&'a str, bool)>) {
        for (registry, ready) in registries {
            self.registry_ready
                .get_or_create(&RegistryLabel { registry: registry.into() })
                .set(i64::from(ready));
        }
    }

    /// Forgets every series of a registry that was removed from the config
    /// or dropped from the table, so made-up hosts cannot grow `/metrics`.
    pub fn forget(&self, registry: &str) {
        self.token_expiry.remove(&RegistryLabel { registry: registry.into() });
        self.registry_ready.remove(&RegistryLabel { registry: registry.into() });
        let seen = crate::sync::lock(&self.fetch_labels).remove(registry);
        for (outcome, step) in seen.unwrap_or_default() {
            self.refresh.remove(&RefreshLabels {
                registry: registry.into(),
                outcome: outcome.into(),
                step: step.into(),
            });
        }
    }

    /// A socket request finished with `outcome` after `took`.
    pub fn request(&self, outcome: RequestOutcome, took: Duration) {
        self.requests.get_or_create(&OutcomeLabel { outcome }).inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// An AWS (or IMDS) call finished.
    pub fn aws_call(&self, api: Api, outcome: CallOutcome) {
        self.aws_calls.get_or_create(&AwsLabels { api, outcome }).inc();
    }

    /// A per-workload request ended with `outcome` (`cached`, `exchanged`,
    /// `node`, `refused`, `failed`) for `exchange` (`irsa`, `pod-identity`, `off`).
    pub fn workload_request(&self, exchange: &'static str, outcome: &'static str) {
        self.workload_requests
            .get_or_create(&WorkloadLabels { exchange: exchange.into(), outcome: outcome.into() })
            .inc();
    }

    /// The workload cache now holds `entries` tokens, having evicted `evicted` more.
    pub fn workload_cache(&self, entries: usize, evicted: u64) {
        self.workload_cached.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.workload_evictions.inc_by(evicted);
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
        m.fetch("127.0.0.1:5000", FetchOutcome::Failed { step: "assume_role" });
        m.token_expiry("127.0.0.1:5000", 1_800_000_000);
        m.request(RequestOutcome::Ok, Duration::from_micros(40));
        m.aws_call(Api::AssumeRole, CallOutcome::Denied);
        m.aws_call(Api::IMDS, CallOutcome::Success);
        m.request(RequestOutcome::NotFound, Duration::from_micros(40));
        m.aws_call(Api::GetAuthorizationToken, CallOutcome::from(crate::tokens::Refusal::Throttled));
        m.readiness([("127.0.0.1:5000", false), ("127.0.0.1:5001", true)]);
        let text = m.encode();
        for needle in [
            "ecr_credd_token_fetches_total{registry=\"127.0.0.1:5000\",outcome=\"failure\",step=\"assume_role\"} 1",
            "ecr_credd_token_expiry_timestamp_seconds{registry=\"127.0.0.1:5000\"} 1800000000",
            "ecr_credd_socket_requests_total{outcome=\"ok\"} 1",
            "ecr_credd_socket_request_duration_seconds_count 2",
            "ecr_credd_aws_calls_total{api=\"AssumeRole\",outcome=\"denied\"} 1",
            "ecr_credd_aws_calls_total{api=\"IMDS\",outcome=\"success\"} 1",
            "ecr_credd_socket_requests_total{outcome=\"not_found\"} 1",
            "ecr_credd_aws_calls_total{api=\"GetAuthorizationToken\",outcome=\"throttled\"} 1",
            "ecr_credd_registry_ready{registry=\"127.0.0.1:5000\"} 0",
            "ecr_credd_registry_ready{registry=\"127.0.0.1:5001\"} 1",
            "ecr_credd_build_info{version=\"",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        m.forget("127.0.0.1:5000");
        m.forget("127.0.0.1:5001");
        let text = m.encode();
        assert!(
            !text.contains("token_expiry_timestamp_seconds{") && !text.contains("127.0.0.1:5000"),
            "{text}"
        );
    }
}
