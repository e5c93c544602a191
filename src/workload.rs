//! Per-workload pulls (KEP-4412): the kubelet hands the provider each pod's
//! service-account token; the daemon exchanges it for the pod's own
//! credentials (IRSA or EKS Pod Identity) and asks ECR with those. Tokens
//! are cached per exact service-account token, so no workload is ever
//! served what another's identity fetched: the daemon cannot verify the
//! JWT, so it never matches on its claims.

mod cache;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use thiserror::Error;

use crate::config::workload::role_matches;
pub use crate::config::workload::{ExchangeKind, Fallback, WorkloadConfig};
use crate::metrics::Metrics;
use crate::tokens::{Clock, FetchError, GetError, RegistryCredentials, TokenCache, TokenSource};
use ecr_credd_client::secret::Secret;

/// One workload's exchange, as the token source performs it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// IRSA or Pod Identity.
    pub kind: ExchangeKind,
    /// The role the pod named (IRSA).
    pub role_arn: Option<String>,
    /// The pod's service-account token.
    pub token: Secret,
    /// Then assume the registry's own `role_arn` with the pod's credentials.
    pub assume_registry_role: bool,
    /// The Pod Identity Agent's URL.
    pub pod_identity_endpoint: String,
}

/// What one request gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The node's credentials, as a plain `get`.
    Node,
    /// A refusal, naming the rule.
    Refuse(String),
    /// The workload's own credentials.
    Exchange {
        /// The role the pod named, if the exchange uses one.
        role_arn: Option<String>,
    },
}

/// Whether a request with (or without) a token and these annotations pulls
/// as the node, as the pod, or not at all. A pod that names a role never
/// gets the node's credentials instead.
pub(crate) fn decide(
    config: &WorkloadConfig,
    has_token: bool,
    annotations: &BTreeMap<String, String>,
) -> Decision {
    let role = annotations.get(&config.role_annotation).filter(|r| !r.is_empty());
    if !config.enabled {
        return match role {
            Some(role) => Decision::Refuse(format!(
                "the pod's service account names role {role} ({}), but per-workload pulls are off in this \
                 daemon; set [workload] enabled = true, or remove the annotation to pull as the node",
                config.role_annotation
            )),
            None => Decision::Node,
        };
    }
    let fallback = |why: &str| match config.fallback {
        Fallback::Node => Decision::Node,
        Fallback::Deny => Decision::Refuse(format!("{why}, and [workload] fallback = \"deny\"")),
    };
    if !has_token {
        return match role {
            Some(role) => Decision::Refuse(format!(
                "the pod's service account names role {role}, but the kubelet sent no service-account token; \
                 add tokenAttributes to the kubelet's credential provider config"
            )),
            None => fallback("the kubelet sent no service-account token for this pod"),
        };
    }
    match config.exchange {
        ExchangeKind::PodIdentity => Decision::Exchange { role_arn: None },
        ExchangeKind::Irsa => match role {
            None => {
                fallback(&format!("the pod's service account has no {} annotation", config.role_annotation))
            }
            Some(role)
                if !config.allowed_roles.is_empty()
                    && !config.allowed_roles.iter().any(|p| role_matches(p, role)) =>
            {
                Decision::Refuse(format!(
                    "role {role} is not in [workload] allowed_roles ({})",
                    config.allowed_roles.join(", ")
                ))
            }
            Some(role) => Decision::Exchange { role_arn: Some(role.clone()) },
        },
    }
}

/// Why a workload's request has no credentials.
#[derive(Debug, Error)]
pub enum WorkloadError {
    /// The host, or the node's own fetch (fallback), failed.
    #[error(transparent)]
    Get(#[from] GetError),
    /// A rule of the node's admin refused it.
    #[error("{host}: refused: {why}")]
    Refused {
        /// The registry host asked for.
        host: String,
        /// The rule, in words.
        why: String,
    },
    /// The exchange or the ECR call with the workload's credentials failed.
    #[error("{registry} as this pod: {cause}")]
    Fetch {
        /// The registry's label.
        registry: String,
        /// The failing step.
        cause: FetchError,
    },
}

/// The per-workload side of the daemon: its rules and its cache.
pub struct Workloads {
    config: RwLock<WorkloadConfig>,
    cache: cache::WorkloadCache,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    safety_margin: Duration,
}

impl Workloads {
    /// Workload pulls under `config`; tokens are served while they have
    /// more than `safety_margin` left.
    pub fn new(
        config: WorkloadConfig,
        safety_margin: Duration,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cache = cache::WorkloadCache::new(config.max_cached);
        Workloads { config: RwLock::new(config), cache, metrics, clock, safety_margin }
    }

    /// A reload: new rules apply to the next request; a changed table drops
    /// every cached workload token (a role no longer allowed must not be served).
    pub fn reconfigure(&self, config: &WorkloadConfig) {
        let mut current = crate::sync::write(&self.config);
        if *current != *config {
            *current = config.clone();
            self.cache.clear(config.max_cached);
            self.metrics.workload_cache(0, 0);
        }
    }

    /// Credentials for `host` as the workload whose token and annotations
    /// these are.
    pub async fn get<S: TokenSource>(
        &self,
        tokens: &TokenCache<S>,
        host: &str,
        token: Secret,
        annotations: &BTreeMap<String, String>,
    ) -> Result<RegistryCredentials, WorkloadError> {
        let config = crate::sync::read(&self.config).clone();
        let label = if config.enabled { config.exchange.name() } else { "off" };
        let role_arn = match decide(&config, !token.is_empty(), annotations) {
            Decision::Node => {
                self.metrics.workload_request(label, "node");
                return Ok(tokens.get(host).await?);
            }
            Decision::Refuse(why) => {
                self.metrics.workload_request(label, "refused");
                return Err(WorkloadError::Refused { host: host.to_owned(), why });
            }
            Decision::Exchange { role_arn } => role_arn,
        };
        let registry = tokens.registry(host)?;
        if registry.public {
            // ECR Public's images are public; its token only lifts rate limits.
            self.metrics.workload_request(label, "node");
            return Ok(tokens.get(host).await?);
        }
        let key = cache::Key::new(
            config.exchange,
            role_arn.as_deref(),
            config.assume_registry_role,
            &registry,
            &token,
        );
        let who = Exchange {
            kind: config.exchange,
            role_arn,
            token,
            assume_registry_role: config.assume_registry_role,
            pod_identity_endpoint: config.pod_identity_endpoint.clone(),
        };
        let (result, cached) = self
            .cache
            .get(key, self.clock.as_ref(), self.safety_margin, || {
                tokens.source().fetch_for_workload(&registry, &who)
            })
            .await;
        let (entries, evicted) = self.cache.take_counts();
        self.metrics.workload_cache(entries, evicted);
        match result {
            Ok(t) => {
                self.metrics.workload_request(label, if cached { "cached" } else { "exchanged" });
                Ok(RegistryCredentials {
                    host: registry.host.clone(),
                    username: t.username,
                    secret: t.secret,
                    expires_at: t.expires_at,
                })
            }
            Err(cause) => {
                self.metrics.workload_request(label, "failed");
                Err(WorkloadError::Fetch { registry: registry.label(), cause })
            }
        }
    }
}
