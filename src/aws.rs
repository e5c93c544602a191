//! Everything that talks to AWS: the base credentials, the role chain, ECR,
//! and the HTTP clients they share.

pub(crate) mod chain;
pub(crate) mod ecr;
pub(crate) mod http;
pub(crate) mod providers;
pub(crate) mod sdk_error;
pub(crate) mod sts;
pub(crate) mod workload;
