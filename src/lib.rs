//! ecr-credd: keeps Amazon ECR tokens fresh in memory and serves them over a
//! Unix socket to `docker-credential-ecr-credd`.
#![forbid(unsafe_code)]

pub mod config;
pub mod registry;
pub mod secret;
pub mod wire;
pub mod token_cache;
pub mod token_source;
pub mod credentials;
pub mod ecr;
pub mod server;
pub mod socket;
pub mod client;
pub mod helper;
pub mod daemon;
pub mod logging;
pub mod cli;
