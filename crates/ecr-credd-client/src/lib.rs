//! The SDK-free side of ecr-credd: what the programs that ask the daemon for
//! a token need, and nothing that talks to AWS. Docker, podman, skopeo and
//! the kubelet exec these programs on every pull and push, so this crate
//! carries no async runtime, no HTTP stack and no AWS SDK.
//!
//! # Layout
//!
//! - [`wire`]: the socket protocol (framing, messages, limits), shared with
//!   the daemon, which depends on this crate for it.
//! - [`client`]: the blocking client that sends one request and reads one
//!   answer.
//! - [`helper`]: the Docker credential-helper protocol
//!   (`docker-credential-ecr-credd`); [`kubelet`]: the kubelet's image
//!   credential provider protocol (`ecr-credd-kubelet-provider`).
//! - [`registry`]: normalises what clients send and parses ECR hostnames.
//! - [`secret`]: the type that never prints a token; [`groups`]: group
//!   names from `/etc/group`.
#![forbid(unsafe_code)]

pub mod client;
pub mod groups;
pub mod helper;
pub mod kubelet;
pub mod registry;
pub mod secret;
pub mod wire;

#[cfg(test)]
mod golden;
