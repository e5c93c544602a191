//! ecr-credd: keeps Amazon ECR tokens fresh in memory and serves them over a
//! Unix socket to `docker-credential-ecr-credd` and the kubelet provider.
//!
//! This crate is the daemon and its command line. The programs that ask it
//! for tokens, and the socket protocol they speak, are the SDK-free
//! `ecr-credd-client` crate, which this one depends on for the shared types.
//!
//! # Layout
//!
//! A token's way, from the config to a client:
//!
//! - [`config`]: the TOML, checked value by value, with file, line and key
//!   in every error.
//! - `aws/` (private): everything that talks to AWS. `providers` picks the
//!   base credentials (`[aws] credentials`: IMDS, the SDK chain, env, a
//!   profile, web identity, the container endpoint); `chain` holds them and
//!   assumes each registry's role through `sts` (in the right region, FIPS
//!   when asked); `ecr` calls GetAuthorizationToken and resolves endpoints;
//!   `http` builds the HTTP clients (IMDS never through the proxy);
//!   `sdk_error` turns SDK errors into one line and "denied or not".
//! - [`tokens`]: the [`tokens::TokenCache`] keeps one token per registry,
//!   refreshes it in the background on the [`tokens::RefreshPolicy`] with
//!   jitter and backoff, and answers `get`s single-flight; the
//!   [`tokens::TokenSource`] trait is the seam to AWS (tests use fakes).
//! - [`daemon`]: [`daemon::run`], which `tests/daemon_run.rs` and the benches
//!   drive in process exactly as `ecr-credd run` does, and what it runs: the socket (`socket` binds it and checks
//!   peers, `server` serves it), the loopback HTTP endpoint (`health`), one
//!   `accept` loop for both, `signals` (SIGTERM, SIGHUP, shutdown) and
//!   `systemd` (readiness, watchdog, socket activation).
//! - [`metrics`]: the Prometheus families, with enums for every label.
//! - [`cmd`]: the command line. [`cmd::execute`] runs one command: `run`,
//!   `check-config`, `status` and `get` (which ask the daemon), `doctor`
//!   (each IAM step, with the fix), `policy` ([`cmd::policy`]: the IAM
//!   documents), `install-host` (a DaemonSet's init container) and `man`.
//! - [`logging`]: the journal or stderr.
//!
//! # Errors
//!
//! One rule in the whole workspace: an error's cause is said in its message
//! and never also returned by `source()`. Messages travel whole (over the
//! socket to clients, into `/status`, into the journal), and the CLI prints
//! `{:#}`, which would say a cause twice if both held it. So no variant
//! takes `#[source]` or `#[from]` (only `#[error(transparent)]` wrappers,
//! which add no text), and fields holding a cause are named `cause`.
//!
//! # Current limitations
//!
//! - `[aws]` settings (`credentials`, `use_fips`, `sts_region`, the proxy),
//!   `[tokens] safety_margin`, the socket, its group and the health address
//!   change only at a restart, and a reload says which of them it left;
//!   registries and the allow-lists change on reload.
//! - Groups are read from `/etc/group` (the release binaries are static and
//!   load no NSS modules); under systemd the socket's group comes from the
//!   socket, so NSS-only groups work there.
//! - A peer's supplementary groups are read from /proc after `accept`
//!   (`SO_PEERGROUPS` has no safe wrapper in the crates used).
//! - The wire protocol has one version; new messages are additions within it
//!   (see `ecr_credd_client::wire`). A version 2 would need both sides to
//!   speak both for an upgrade's duration.
#![forbid(unsafe_code)]

mod aws;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod logging;
pub mod metrics;
mod sync;
pub mod tokens;
pub mod workload;
