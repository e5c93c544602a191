//! ecr-credd: keeps Amazon ECR tokens fresh in memory and serves them over a
//! Unix socket to `docker-credential-ecr-credd` and the kubelet provider.
//!
//! # Layout
//!
//! A token's way, from the config to a client:
//!
//! - [`config`] reads and validates the TOML; [`registry`] normalises what
//!   clients send and parses ECR hostnames (every partition, FIPS, dual-stack).
//! - [`credential_source`] picks the base credentials (`[aws] credentials`:
//!   IMDS, the SDK chain, env, a profile, web identity, the container
//!   endpoint); [`credentials`] holds them and assumes each registry's role
//!   (STS in the right region, FIPS when asked); [`ecr`] calls
//!   GetAuthorizationToken and resolves endpoints; [`proxy`] builds the HTTP
//!   clients (IMDS never through the proxy).
//! - [`token_source`] is the seam between AWS and the cache (tests use fakes);
//!   [`token_cache`] keeps one token per registry, refreshes in the background
//!   with jitter and backoff, and answers `get`s single-flight.
//! - [`socket`] makes the socket and decides which peers may use it;
//!   [`server`] serves the socket; [`health`] and [`metrics`] the loopback
//!   HTTP endpoint; [`systemd`] readiness, watchdog and socket activation;
//!   [`daemon`] ties these together in [`daemon::run`], which tests drive.
//! - [`wire`] is the socket protocol, shared with every client; [`client`]
//!   the blocking client; [`helper`] the Docker credential-helper protocol;
//!   [`kubelet`] the kubelet's; [`secret`] the type that never prints a token.
//! - Commands: [`cli`] (check-config, status, get, reload, man pages),
//!   [`doctor`], [`policy`] (the IAM documents), [`install`] (a DaemonSet's
//!   init container), [`logging`].
//!
//! # Current limitations
//!
//! - `[aws]` settings (`credentials`, `use_fips`, `sts_region`), the socket,
//!   its group and the health address change only at a restart; registries
//!   change on reload.
//! - Groups are read from `/etc/group` (the release binaries are static and
//!   load no NSS modules); under systemd the socket's group comes from the
//!   socket, so NSS-only groups work there.
//! - A peer's supplementary groups are read from /proc after `accept`
//!   (`SO_PEERGROUPS` has no safe wrapper in the crates used).
//! - One crate: the helper links the library but uses only its SDK-free
//!   modules; splitting them into their own crate is planned.
#![forbid(unsafe_code)]

pub mod aws;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod logging;
pub mod metrics;
pub mod tokens;
