//! ecr-credd: keeps Amazon ECR tokens fresh in memory and serves them over a
//! Unix socket to `docker-credential-ecr-credd`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod config;
pub mod credential_source;
pub mod credentials;
pub mod daemon;
pub mod doctor;
pub mod ecr;
pub mod health;
pub mod helper;
pub mod install;
pub mod kubelet;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod registry;
pub mod secret;
pub mod server;
pub mod socket;
pub mod systemd;
pub mod token_cache;
pub mod token_source;
pub mod wire;
