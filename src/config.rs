//! The TOML configuration: parsing, validation with file/line/key errors, and
//! the resolved registries the daemon serves.

#[cfg(test)]
mod tests;
mod validate;
pub mod workload;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

pub use crate::aws::providers::CredentialSource;
use ecr_credd_client::registry::{normalize_host, parse_ecr_host};
use validate::{
    check_proxy, check_region, check_role, is_public, private_location, public_location, Invalid,
};

/// Where the config lives unless `--config` or `ECR_CREDD_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ecr-credd/config.toml";
/// Where the socket lives unless the config says otherwise.
pub const DEFAULT_SOCKET_PATH: &str = ecr_credd_client::client::DEFAULT_SOCKET;
/// The AssumeRole session name unless a registry sets its own.
pub const DEFAULT_SESSION_NAME: &str = "ecr-credd";
/// Tokens stop being served this long before they expire.
pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The group the socket is given when the config names none and it exists;
/// the packages create it. Never `docker`: containerd-only and podman hosts have none.
pub const DEFAULT_SOCKET_GROUP: &str = "ecr-credd";

/// A config that cannot be used, with where and why.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {cause}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why it could not be read.
        cause: std::io::Error,
    },
    /// Others could rewrite the config (and point the daemon at their role).
    #[error(
        "{path}: the config may be changed by others (owner uid {owner}, mode {mode:04o}); it must be owned by \
         root (or the daemon's user) and writable by no group or other user; run: chown root {path} && chmod go-w {path}"
    )]
    Insecure {
        /// The config file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The file's owner.
        owner: u32,
    },
    /// Syntax error, unknown key, wrong type or invalid value.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// What is wrong, naming the key.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    serve_unlisted_ecr: Option<bool>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    aws: RawAws,
    #[serde(default)]
    workload: workload::RawWorkload,
    #[serde(default, rename = "registry")]
    registries: Vec<RawRegistry>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    socket: Option<PathBuf>,
    group: Option<Spanned<String>>,
    #[serde(default)]
    allowed_uids: Vec<u32>,
    #[serde(default)]
    allowed_gids: Vec<u32>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    safety_margin: Option<Spanned<u64>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    listen: Option<Spanned<SocketAddr>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    host: Spanned<String>,
    role_arn: Option<Spanned<String>>,
    registry_id: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    external_id: Option<Spanned<String>>,
    session_name: Option<Spanned<String>>,
    public: Option<Spanned<bool>>,
    sts_region: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAws {
    https_proxy: Option<Spanned<String>>,
    no_proxy: Option<String>,
    use_fips: Option<bool>,
    sts_region: Option<Spanned<String>>,
    credentials: Option<Spanned<String>>,
}

/// The group given to a socket the daemon binds itself (under systemd the
/// socket unit's `SocketGroup=` decides instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketGroup {
    /// Not in the config: [`DEFAULT_SOCKET_GROUP`] where the host has it,
    /// else the daemon's own group.
    Default,
    /// Named by `[server] group`: it must exist.
    Named(String),
}

impl SocketGroup {
    /// The group's name.
    pub fn name(&self) -> &str {
        match self {
            SocketGroup::Default => DEFAULT_SOCKET_GROUP,
            SocketGroup::Named(name) => name,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the Unix socket is (when systemd does not pass one).
    pub socket: PathBuf,
    /// Group given to a socket the daemon binds itself.
    pub socket_group: SocketGroup,
    /// Extra uids allowed to use the socket, besides root and the daemon's own.
    pub allowed_uids: Vec<u32>,
    /// Extra gids allowed to use the socket, besides the socket's group.
    pub allowed_gids: Vec<u32>,
    /// Address of the health and metrics endpoint; `None`: off.
    pub health_listen: Option<SocketAddr>,
    /// Tokens are served only while they have more than this left.
    pub safety_margin: Duration,
    /// Serve ECR hosts that are not listed, with the instance's own credentials.
    pub serve_unlisted_ecr: bool,
    /// The configured registries, in file order.
    pub registries: Vec<RegistryConfig>,
    /// Outbound proxy for STS and ECR; `None` falls back to `HTTPS_PROXY`.
    pub https_proxy: Option<String>,
    /// Hosts that bypass the proxy; `None` falls back to `NO_PROXY`.
    pub no_proxy: Option<String>,
    /// FIPS endpoints for every registry's STS and ECR calls.
    pub use_fips: bool,
    /// Where AssumeRole is called unless a registry says otherwise; `None`:
    /// the instance's region, else `AWS_REGION`, else the registry's.
    pub sts_region: Option<String>,
    /// Where the base credentials come from.
    pub credentials: CredentialSource,
    /// Per-workload pulls (`[workload]`).
    pub workload: workload::WorkloadConfig,
}

/// One registry, resolved: where its token comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryConfig {
    /// Normalised `host[:port]` clients ask for.
    pub host: String,
    /// The registry (account) id passed as `registryIds`; [`PUBLIC_ACCOUNT`] for ECR Public.
    pub account: String,
    /// Region of the ECR API to call.
    pub region: String,
    /// Role to assume first; `None` uses the instance credentials.
    pub role_arn: Option<String>,
    /// External id for AssumeRole.
    pub external_id: Option<String>,
    /// The AssumeRole session name.
    pub session_name: String,
    /// Whether the token comes from the ECR Public API (us-east-1) instead of ECR.
    pub public: bool,
    /// A `dkr.ecr-fips` host: its STS and ECR calls go to FIPS endpoints.
    pub fips: bool,
    /// A dual-stack host (`dkr-ecr.<region>.on.aws`): ECR's dual-stack endpoint.
    pub dual_stack: bool,
    /// Where this registry's AssumeRole is called, overriding `[aws] sts_region`.
    pub sts_region: Option<String>,
}

/// The account shown for ECR Public, whose tokens belong to no registry account.
pub const PUBLIC_ACCOUNT: &str = "public";
/// ECR Public's API runs in this region only.
pub const PUBLIC_REGION: &str = "us-east-1";

impl RegistryConfig {
    /// A short label for messages: `host (account, region)`.
    pub fn label(&self) -> String {
        format!("{} ({}, {})", self.host, self.account, self.region)
    }

    /// An unlisted ECR host served with the instance's credentials.
    pub fn unlisted(host: &str) -> Option<Self> {
        let ecr = parse_ecr_host(host)?;
        let dual_stack = ecr.dual_stack();
        Some(RegistryConfig {
            host: host.to_owned(),
            account: ecr.account,
            region: ecr.region,
            role_arn: None,
            external_id: None,
            session_name: DEFAULT_SESSION_NAME.to_owned(),
            public: false,
            fips: ecr.fips,
            dual_stack,
            sts_region: None,
        })
    }
}

/// The config path from the flag, else `ECR_CREDD_CONFIG`, else the default.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("ECR_CREDD_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// Reads and validates the config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|cause| ConfigError::Read { path: path.to_owned(), cause })?;
    parse(&text, path)
}

/// Reads and validates the config file the daemon will trust: the checks
/// and the read use one open descriptor, so the file cannot be swapped
/// between them. It must be owned by root or the daemon's own user, and
/// writable by neither group nor others (the socket directory's rule):
/// whoever can write it chooses the role the daemon assumes.
pub fn load_trusted(path: &Path) -> Result<Config, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let read_err = |cause| ConfigError::Read { path: path.to_owned(), cause };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    check_trusted(path, meta.uid(), meta.mode(), rustix::process::geteuid().as_raw())?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_err)?;
    parse(&text, path)
}

/// The owner and mode rule of [`load_trusted`], for a daemon running as `me`.
pub fn check_trusted(path: &Path, owner: u32, mode: u32, me: u32) -> Result<(), ConfigError> {
    let mode = mode & 0o7777;
    if (owner != 0 && owner != me) || mode & 0o022 != 0 {
        return Err(ConfigError::Insecure { path: path.to_owned(), mode, owner });
    }
    Ok(())
}

/// Validates config text; `path` is used only in error messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let located = |e: Invalid| {
        let (line, column) = line_col(text, e.span.map_or(0, |s| s.start));
        ConfigError::Invalid { path: path.to_owned(), line, column, message: e.message }
    };
    let raw: RawConfig = toml::from_str(text)
        .map_err(|e| located(Invalid { span: e.span(), message: e.message().trim().to_owned() }))?;
    resolve(raw).map_err(located)
}

/// The checked config from what the file says.
fn resolve(raw: RawConfig) -> Result<Config, Invalid> {
    let mut seen = HashSet::new();
    let mut registries = Vec::with_capacity(raw.registries.len());
    for (i, r) in raw.registries.into_iter().enumerate() {
        // Before the other keys, as a reader would: a second entry is wrong
        // whatever else it says.
        if let Ok(host) = normalize_host(r.host.get_ref()) {
            if !seen.insert(host.clone()) {
                return Err(Invalid::at(&r.host, format!("registry[{i}].host: {host:?} is listed twice")));
            }
        }
        registries.push(parse_registry(i, r)?);
    }
    check_server_and_health(&raw.server, &raw.health)?;
    Ok(Config {
        socket: raw.server.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH)),
        socket_group: raw.server.group.map_or(SocketGroup::Default, |g| SocketGroup::Named(g.into_inner())),
        allowed_uids: raw.server.allowed_uids,
        allowed_gids: raw.server.allowed_gids,
        health_listen: raw.health.listen.map(Spanned::into_inner),
        safety_margin: safety_margin(raw.tokens.safety_margin)?,
        serve_unlisted_ecr: raw.serve_unlisted_ecr.unwrap_or(true),
        registries,
        https_proxy: check_proxy(raw.aws.https_proxy)?,
        no_proxy: raw.aws.no_proxy,
        use_fips: raw.aws.use_fips.unwrap_or(false),
        credentials: match raw.aws.credentials {
            None => CredentialSource::Instance,
            Some(c) => CredentialSource::parse(c.get_ref())
                .and_then(|source| source.precheck(&|k| std::env::var(k).ok()).map(|()| source))
                .map_err(|why| Invalid::at(&c, format!("aws.credentials: {why}")))?,
        },
        sts_region: check_region(raw.aws.sts_region, "aws.sts_region")?,
        workload: workload::resolve(raw.workload)?,
    })
}

/// One `[[registry]]` table, the `i`th, checked and resolved.
fn parse_registry(i: usize, r: RawRegistry) -> Result<RegistryConfig, Invalid> {
    let key = |k: &str| format!("registry[{i}].{k}");
    let host = normalize_host(r.host.get_ref())
        .map_err(|e| Invalid::at(&r.host, format!("{}: {e}", key("host"))))?;
    let public = is_public(&r, &host, &key)?;
    let (account, region) =
        if public { public_location(&r, &host, &key)? } else { private_location(&r, &host, &key)? };
    let session_name = check_role(&r, &key)?;
    let sts_region = check_region(r.sts_region, &key("sts_region"))?;
    let ecr = if public { None } else { parse_ecr_host(&host) };
    Ok(RegistryConfig {
        fips: ecr.as_ref().is_some_and(|e| e.fips),
        dual_stack: ecr.as_ref().is_some_and(|e| e.dual_stack()),
        sts_region,
        host,
        account,
        region,
        role_arn: r.role_arn.map(Spanned::into_inner),
        external_id: r.external_id.map(Spanned::into_inner),
        session_name,
        public,
    })
}

fn check_server_and_health(server: &RawServer, health: &RawHealth) -> Result<(), Invalid> {
    if let Some(group) = &server.group {
        let g = group.get_ref();
        if g.is_empty() || g.contains([':', '\n', '/']) {
            return Err(Invalid::at(group, format!("server.group: {g:?} is not a group name")));
        }
    }
    match &health.listen {
        Some(addr) if !addr.get_ref().ip().is_loopback() => Err(Invalid::at(
            addr,
            format!(
                "health.listen: {} is not a loopback address; the endpoint is for local monitoring agents",
                addr.get_ref()
            ),
        )),
        _ => Ok(()),
    }
}

fn safety_margin(value: Option<Spanned<u64>>) -> Result<Duration, Invalid> {
    match value {
        None => Ok(DEFAULT_SAFETY_MARGIN),
        Some(m) if (10..=3600).contains(m.get_ref()) => Ok(Duration::from_secs(*m.get_ref())),
        Some(m) => Err(Invalid::at(
            &m,
            format!("tokens.safety_margin: {} is outside 10..=3600 seconds", m.get_ref()),
        )),
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}
