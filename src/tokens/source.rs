//! The contract between the token cache and whatever fetches tokens: AWS in
//! the daemon, fakes in unit tests.

use std::future::Future;
use std::time::SystemTime;

use thiserror::Error;

use crate::config::RegistryConfig;
use ecr_credd_client::secret::Secret;

/// A freshly fetched registry credential.
#[derive(Debug, Clone)]
pub struct FetchedToken {
    /// Registry username (`AWS` for ECR).
    pub username: String,
    /// The registry password (the Docker protocol's `Secret`).
    pub secret: Secret,
    /// Expiry as the service stated it (wall clock).
    pub expires_at: SystemTime,
}

/// How AWS turned a call down: the caller reacts differently to each (a
/// denial waits for a person to fix IAM; throttling for the quota to refill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A permission denial (HTTP 403, AccessDenied): IAM must change.
    Denied,
    /// A rate limit (Throttling, ThrottlingException, TooManyRequestsException,
    /// RequestLimitExceeded, HTTP 429): the account's quota is spent for now.
    Throttled,
    /// No answer in time, or a 5xx: the service, or the way to it, is
    /// overloaded, so retries back off as after throttling (a fleet retrying
    /// timeouts at once is what keeps an endpoint overloaded).
    Overloaded,
    /// Any other failure: a fault, an unreachable endpoint.
    Failed,
}

impl Refusal {
    /// The word for it in messages: "denied", "throttled" or "failed"
    /// (an overload is a failure to the reader; it differs in the backoff).
    pub fn verb(self) -> &'static str {
        match self {
            Refusal::Denied => "denied",
            Refusal::Throttled => "throttled",
            Refusal::Overloaded | Refusal::Failed => "failed",
        }
    }
}

/// Which step of IMDS -> AssumeRole -> GetAuthorizationToken failed, and why.
/// The caller reacts the same way to every variant (back off, keep serving the
/// old token); the variant exists so the message names the step to fix.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The instance profile credentials could not be had from IMDS.
    #[error("instance credentials unavailable from IMDS: {reason}")]
    InstanceCredentials {
        /// What went wrong.
        reason: String,
        /// IMDS gave no answer within the deadline (rather than an error).
        hung: bool,
    },
    /// The configured source (`[aws] credentials`, not the instance profile)
    /// had no usable credentials.
    #[error("no base credentials from {source_name}: {reason}")]
    BaseCredentials {
        /// The source, e.g. `web-identity`.
        source_name: String,
        /// What went wrong.
        reason: String,
        /// The source gave no answer within the deadline (a hung
        /// `credential_process`, a stalled endpoint), rather than an error.
        hung: bool,
    },
    /// AssumeRole into the registry's account failed.
    #[error("sts:AssumeRole on {role_arn} {}: {reason}", .refusal.verb())]
    AssumeRole {
        /// The role we tried to assume.
        role_arn: String,
        /// How AWS refused.
        refusal: Refusal,
        /// What went wrong.
        reason: String,
    },
    /// GetAuthorizationToken failed.
    #[error("ecr:GetAuthorizationToken in {region} {}: {reason}", .refusal.verb())]
    GetAuthorizationToken {
        /// The ECR region called.
        region: String,
        /// How AWS refused.
        refusal: Refusal,
        /// What went wrong.
        reason: String,
    },
    /// ECR Public's GetAuthorizationToken failed.
    #[error("ecr-public:GetAuthorizationToken in us-east-1 {}: {reason}{}", .refusal.verb(), public_hint(*.refusal))]
    GetPublicAuthorizationToken {
        /// How AWS refused.
        refusal: Refusal,
        /// What went wrong.
        reason: String,
    },
    /// The fetch did not finish within the policy's deadline and was stopped.
    #[error("the fetch did not finish within {}s{}", .waited.as_secs(), .waiting_on.as_ref().map(|s| format!("; it was waiting on {s}")).unwrap_or_default())]
    Unfinished {
        /// The deadline.
        waited: std::time::Duration,
        /// The step it was stuck on, when the source knows.
        waiting_on: Option<String>,
    },
    /// The fetch panicked: a bug in ecr-credd.
    #[error("internal error while fetching (a bug; please report it): {reason}")]
    Internal {
        /// The panic's message.
        reason: String,
    },
    /// A workload's service-account token was not exchanged for its role
    /// (IRSA's `sts:AssumeRoleWithWebIdentity`).
    #[error("sts:AssumeRoleWithWebIdentity on {role_arn} {}: {reason}", .refusal.verb())]
    WebIdentity {
        /// The role the workload named.
        role_arn: String,
        /// How STS refused.
        refusal: Refusal,
        /// What went wrong.
        reason: String,
    },
    /// The EKS Pod Identity Agent gave the workload no credentials.
    #[error("the EKS Pod Identity Agent at {endpoint} {}: {reason}", .refusal.verb())]
    PodIdentity {
        /// The agent's URL.
        endpoint: String,
        /// How the agent (or EKS Auth behind it) refused.
        refusal: Refusal,
        /// What went wrong.
        reason: String,
    },
    /// This source cannot exchange a workload's token (a test fake).
    #[error("this token source cannot exchange a workload's token")]
    NoWorkloads,
    /// ECR answered, but not with a token we can use.
    #[error("ECR returned an unusable authorization token: {reason}")]
    BadToken {
        /// What is wrong with it.
        reason: String,
    },
}

impl FetchError {
    /// Whether something gave no answer at all (the fetch's deadline, or
    /// the base source's), as opposed to an answer that was an error.
    pub fn hung(&self) -> bool {
        matches!(
            self,
            FetchError::Unfinished { .. }
                | FetchError::InstanceCredentials { hung: true, .. }
                | FetchError::BaseCredentials { hung: true, .. }
        )
    }

    /// How AWS refused, when it answered at all.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            FetchError::AssumeRole { refusal, .. }
            | FetchError::WebIdentity { refusal, .. }
            | FetchError::PodIdentity { refusal, .. }
            | FetchError::GetAuthorizationToken { refusal, .. }
            | FetchError::GetPublicAuthorizationToken { refusal, .. } => Some(*refusal),
            _ => None,
        }
    }

    /// The role STS was asked for, when STS gave this answer.
    pub fn role_arn(&self) -> Option<&str> {
        match self {
            FetchError::AssumeRole { role_arn, .. } | FetchError::WebIdentity { role_arn, .. } => {
                Some(role_arn)
            }
            _ => None,
        }
    }

    /// Whether STS gave this answer (an AssumeRole of either kind), not ECR:
    /// its quota differs, and so does the backoff when it throttles.
    pub fn by_sts(&self) -> bool {
        matches!(self, FetchError::AssumeRole { .. } | FetchError::WebIdentity { .. })
    }

    /// The failing step as a metric label.
    pub fn step(&self) -> &'static str {
        match self {
            FetchError::InstanceCredentials { .. } => "imds",
            FetchError::BaseCredentials { .. } => "base_credentials",
            FetchError::AssumeRole { .. } => "assume_role",
            FetchError::GetAuthorizationToken { .. } => "get_authorization_token",
            FetchError::GetPublicAuthorizationToken { .. } => "get_public_authorization_token",
            FetchError::BadToken { .. } => "bad_token",
            FetchError::WebIdentity { .. } => "assume_role_with_web_identity",
            FetchError::PodIdentity { .. } => "pod_identity",
            FetchError::NoWorkloads => "internal",
            FetchError::Unfinished { .. } => "deadline",
            FetchError::Internal { .. } => "internal",
        }
    }
}

/// The permission people forget: ECR Public mints its token through STS.
fn public_hint(refusal: Refusal) -> &'static str {
    if refusal == Refusal::Denied {
        " (the principal needs ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken)"
    } else {
        ""
    }
}

/// Fetches a token for one registry. Implementations own no retries: the
/// cache's refresh loop decides when to try again.
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a new token for `registry`.
    fn fetch(
        &self,
        registry: &RegistryConfig,
    ) -> impl Future<Output = Result<FetchedToken, FetchError>> + Send;

    /// The principal tokens are fetched as, when known (for `/status`).
    fn identity(&self) -> Option<String> {
        None
    }

    /// Someone wants the identity (`/status`): look it up if not yet done,
    /// waiting at most `wait` for it.
    fn want_identity(&self, _wait: std::time::Duration) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Whether a token fetched for `a` serves `b` too (one
    /// GetAuthorizationToken covers both): when `a` gets one, the cache
    /// wakes `b` rather than leave it backing off.
    fn shares_token(&self, _a: &RegistryConfig, _b: &RegistryConfig) -> bool {
        false
    }

    /// Which source gave the base credentials last (for `/status`), if any yet.
    fn credential_source(&self) -> Option<String> {
        None
    }

    /// What a running fetch for `host` waits on now (a step and how long),
    /// for the message of a `get` that stops waiting.
    fn waiting_on(&self, _host: &str) -> Option<String> {
        None
    }

    /// A token for `registry` fetched as one workload: `who`'s token
    /// exchanged for its own credentials (see [`crate::workload`]).
    fn fetch_for_workload(
        &self,
        _registry: &RegistryConfig,
        _who: &crate::workload::Exchange,
    ) -> impl Future<Output = Result<FetchedToken, FetchError>> + Send {
        async { Err(FetchError::NoWorkloads) }
    }

    /// The config was reloaded: credentials the source holds are read again
    /// at its next fetch (a key rotated in a file takes effect at once).
    fn reload(&self) {}
}
