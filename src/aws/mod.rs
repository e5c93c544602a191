//! Everything that talks to AWS: the base credentials, the role chain, ECR,
//! and the HTTP clients they share.

pub mod chain;
pub mod ecr;
pub mod http;
pub mod sdk_error;
pub mod source;
pub mod sts;
