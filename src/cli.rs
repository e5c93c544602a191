//! The `ecr-credd` command line: argument types and the non-daemon commands.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::client;
use crate::config::{self, Config};
use crate::wire::{ErrorKind, Request, RequestBody, ResponseBody};

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
    /// Ask the running daemon for a registry's credentials (the secret is masked).
    Get {
        /// Registry host or URL.
        host: String,
        /// Daemon socket [default: $ECR_CREDD_SOCKET or /run/ecr-credd/ecr-credd.sock].
        #[arg(long)]
        socket: Option<PathBuf>,
    },
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
    out += &format!("socket: {} (group {})\n", c.socket.display(), c.socket_group.as_deref().unwrap_or("-"));
    if let Some(addr) = c.health_listen {
        out += &format!("health: {addr}\n");
    }
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
    Ok(out)
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
        ResponseBody::Hosts { .. } | ResponseBody::Status { .. } => {
            bail!("unexpected answer from the daemon")
        }
    }
}
