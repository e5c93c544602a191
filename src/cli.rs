//! The `ecr-credd` command line: argument types and the non-daemon commands.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use ecr_credd_client::client;
use ecr_credd_client::wire::{ErrorKind, Request, RequestBody, ResponseBody};

/// ecr-credd keeps Amazon ECR tokens fresh in memory and serves them to
/// docker, podman, skopeo and buildah through docker-credential-ecr-credd.
#[derive(Debug, Parser)]
#[command(name = "ecr-credd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground, logging to stderr.
    Run {
        /// Config file [default: $ECR_CREDD_CONFIG or /etc/ecr-credd/config.toml].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log filter when RUST_LOG is unset (e.g. info, debug, ecr_credd=trace).
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Validate the config and print the registries it resolves to.
    CheckConfig {
        /// Config file [default: $ECR_CREDD_CONFIG or /etc/ecr-credd/config.toml].
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show every registry's token state; exits 1 unless all are ready.
    Status {
        /// Daemon socket [default: $ECR_CREDD_SOCKET or /run/ecr-credd/ecr-credd.sock].
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every step from IMDS to the registry and say which setup step is missing.
    Doctor {
        /// Registries to check, as HOST or HOST/REPO [default: all configured].
        hosts: Vec<String>,
        /// Config file [default: $ECR_CREDD_CONFIG or /etc/ecr-credd/config.toml].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Daemon socket [default: $ECR_CREDD_SOCKET or the config's].
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Print the four IAM documents of the cross-account setup.
    Policy {
        /// Accounts, roles, repositories and access.
        #[command(flatten)]
        setup: crate::policy::Setup,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::policy::Format,
        /// Same as --format json.
        #[arg(long)]
        json: bool,
    },
    /// Copy the kubelet provider and the docker helper to a host directory and
    /// make the socket directory (a DaemonSet's init container; the image has no shell).
    InstallHost {
        /// Where the kubelet looks for credential providers (a hostPath mount).
        #[arg(long)]
        bin_dir: PathBuf,
        /// The socket directory to create on the host (a hostPath mount).
        #[arg(long)]
        socket_dir: Option<PathBuf>,
        /// UID:GID to own the socket directory (the daemon's user).
        #[arg(long, value_parser = parse_owner)]
        owner: Option<(u32, u32)>,
    },
    /// Write man pages for ecr-credd and its subcommands into DIR (for packaging).
    #[command(hide = true)]
    Man {
        /// Output directory.
        dir: PathBuf,
    },
    /// Ask the running daemon for a registry's credentials (the secret is masked).
    Get {
        /// Registry host or URL.
        host: String,
        /// Daemon socket [default: $ECR_CREDD_SOCKET or /run/ecr-credd/ecr-credd.sock].
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

fn parse_owner(text: &str) -> std::result::Result<(u32, u32), String> {
    crate::install::parse_owner(text).map_err(|e| e.to_string())
}

/// Loads the config named by the flag, the environment or the default.
pub fn load_config(flag: Option<PathBuf>) -> Result<(PathBuf, Config)> {
    let path = config::config_path(flag);
    let config = config::load(&path)?;
    Ok((path, config))
}

/// `check-config`: the resolved registries, or the exact error.
pub fn check_config(flag: Option<PathBuf>) -> Result<String> {
    let (path, c) = load_config(flag)?;
    let mut out = format!("{}: OK\n", path.display());
    let group = c.socket_group.as_deref().unwrap_or("-");
    let missing = match ecr_credd_client::groups::lookup_group(group) {
        Some(_) => "",
        None if c.socket_group_explicit => {
            return Err(crate::socket::SocketError::NoSuchGroup { group: group.into() }.into())
        }
        None => ", which does not exist here: only root and the daemon's user could connect",
    };
    out += &format!(
        "socket: {} (group {group}{missing}; a socket from systemd keeps its SocketGroup=)\n",
        c.socket.display()
    );
    if let Some(addr) = c.health_listen {
        out += &format!("health: {addr}\n");
    }
    out += &match crate::proxy::Proxy::resolve(&c) {
        Some(p) => format!("AWS proxy: {} (bypassed for {})\n", p.display_url(), p.no_proxy()),
        None => "AWS proxy: none (direct)\n".to_owned(),
    };
    out += &format!(
        "unlisted ECR hosts: {}\n",
        if c.serve_unlisted_ecr { "served with instance credentials" } else { "refused" }
    );
    let rows: Vec<[String; 4]> = c
        .registries
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                r.account.clone(),
                r.region.clone(),
                r.role_arn.clone().unwrap_or_else(|| "(instance credentials)".into()),
            ]
        })
        .collect();
    out += &table(["HOST", "ACCOUNT", "REGION", "ROLE"], &rows);
    out += &endpoint_lines(&c);
    Ok(out)
}

/// Per registry, the STS and ECR endpoints its calls go to, as the SDKs
/// resolve them. Without `sts_region` STS is called in this instance's region,
/// which only IMDS knows at run time: the line says which region stands in.
fn endpoint_lines(c: &Config) -> String {
    let env_region = crate::credentials::env_region();
    let mut out = String::new();
    for r in &c.registries {
        let (sts_region, note) = match r.sts_region.as_ref().or(c.sts_region.as_ref()) {
            Some(region) => (region.clone(), ""),
            None => (
                env_region.clone().unwrap_or_else(|| r.region.clone()),
                " (or this instance's region, when IMDS gives it)",
            ),
        };
        let line = match crate::ecr::endpoints(r, &sts_region, c.use_fips) {
            Ok((sts, ecr)) => format!(
                "{}: AssumeRole at {sts}{note}; GetAuthorizationToken at {ecr}{}\n",
                r.host,
                if r.role_arn.is_none() { " (no role: STS only tells /status who we are)" } else { "" }
            ),
            Err(e) => format!("{}: no endpoint: {e}\n", r.host),
        };
        out += &line;
    }
    out
}

/// Formats rows in aligned columns.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let head = header.map(str::to_owned);
    for row in std::iter::once(&head).chain(rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

/// `get`: the daemon's answer for `host`, with the secret masked.
pub fn get(host: &str, socket: Option<PathBuf>) -> Result<String> {
    let socket = socket.unwrap_or_else(client::socket_path);
    let response = client::request(&socket, &Request::new(RequestBody::Get { host: host.to_owned() }))?;
    match response.body {
        ResponseBody::Credentials { host, username, secret, expires_at } => {
            let expires = UNIX_EPOCH + Duration::from_secs(expires_at);
            let left = expires.duration_since(std::time::SystemTime::now()).unwrap_or_default();
            let when = aws_smithy_types::DateTime::from(expires)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .unwrap_or_else(|_| expires_at.to_string());
            Ok(format!(
                "host:     {host}\nusername: {username}\nsecret:   ******** ({} bytes, masked)\nexpires:  {when} (in {}h{:02}m)\n",
                secret.len(),
                left.as_secs() / 3600,
                left.as_secs() / 60 % 60
            ))
        }
        ResponseBody::Error { kind: ErrorKind::NotFound, message } => bail!("{message}"),
        ResponseBody::Error { message, .. } => {
            Err(anyhow::anyhow!("{message}")).context(format!("asking {}", socket.display()))
        }
        ResponseBody::Hosts { .. } | ResponseBody::Status { .. } | ResponseBody::Unknown => {
            bail!("unexpected answer from the daemon (is it newer than this ecr-credd?)")
        }
    }
}

/// Re-reads the config on every SIGHUP; an invalid one is logged and skipped,
/// so the config in force stays.
pub fn reload_on_sighup(path: PathBuf) -> Result<tokio::sync::mpsc::UnboundedReceiver<Config>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // The same checks as at start: a config others can write is
            // refused on reload too, or anyone could swap in their role.
            match config::check_permissions(&path).and_then(|()| config::load(&path)) {
                Ok(c) => {
                    tracing::info!(path = %path.display(), "SIGHUP: reloading config from {}", path.display());
                    if tx.send(c).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: new config rejected; keeping the one in force: {e}")
                }
            }
        }
    });
    Ok(rx)
}

fn ago_or_in(unix: Option<u64>, now: u64) -> String {
    match unix {
        None => "-".into(),
        Some(t) if t >= now => format!("in {}", short(t - now)),
        Some(t) => format!("{} ago", short(now - t)),
    }
}

fn short(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// `status`: (ready, the table or JSON).
pub fn status(socket: Option<PathBuf>, as_json: bool) -> Result<(bool, String)> {
    let socket = socket.unwrap_or_else(client::socket_path);
    let response = client::request(&socket, &Request::new(RequestBody::Status))?;
    let (ready, registries, source) = match response.body {
        ResponseBody::Status { ready, registries, credential_source } => {
            (ready, registries, credential_source)
        }
        ResponseBody::Error { message, .. } => bail!("{message}"),
        _ => bail!("unexpected answer from the daemon"),
    };
    if as_json {
        let text = serde_json::to_string_pretty(
            &serde_json::json!({ "ready": ready, "credential_source": source, "registries": registries }),
        )?;
        return Ok((ready, text + "\n"));
    }
    let now = std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let rows: Vec<[String; 7]> = registries
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                r.account.clone(),
                r.region.clone(),
                if r.ready { "yes".into() } else { "NO".into() },
                ago_or_in(r.expires_at, now),
                ago_or_in(r.next_refresh, now),
                match &r.last_error {
                    Some(e) => format!("{} failures: {e}", r.consecutive_failures),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let mut out =
        table(["HOST", "ACCOUNT", "REGION", "READY", "EXPIRES", "NEXT REFRESH", "LAST ERROR"], &rows);
    if let Some(source) = source {
        out += &format!("base credentials: {source}\n");
    }
    out += if ready { "ready\n" } else { "NOT READY\n" };
    Ok((ready, out))
}

/// Writes `ecr-credd.1` and one page per subcommand into `dir`.
pub fn write_man_pages(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    let mut pages = vec![("ecr-credd".to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("ecr-credd-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    let mut written = Vec::new();
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
