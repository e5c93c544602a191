//! `ecr-credd configure`: points docker, the containers tools and the
//! kubelet at the helper, merging into the files they already have. Every
//! write is atomic, a second run changes nothing, `--dry-run` shows the diff
//! and `--remove` takes out exactly what was added.

mod containers;
pub(crate) mod diff;
mod docker;
mod files;
mod json;
pub(crate) mod kubelet;
mod provider_yaml;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::workload::ExchangeKind;
use crate::config::Config;
use ecr_credd_client::registry::normalize_host;

pub(crate) use containers::DROP_IN as CONTAINERS_DROP_IN;

/// Why a file was left as it was.
#[derive(Debug, Error)]
pub enum ConfigureError {
    /// The file is not JSON.
    #[error("{}: line {line}, column {column}: not JSON ({reason}); left unchanged", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped.
        line: usize,
        /// The column there.
        column: usize,
        /// What it found.
        reason: String,
    },
    /// JSON, but not a client config's shape.
    #[error("{}: {what}; left unchanged", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// Entries that another tool owns.
    #[error("{}: {}; left unchanged (--force replaces it)", path.display(), conflicts.join("; "))]
    Conflict {
        /// The file.
        path: PathBuf,
        /// Each entry and who holds it.
        conflicts: Vec<String>,
    },
    /// No host given and none configured.
    #[error("no registry to configure: name the hosts (ecr-credd configure docker HOST...) or list them in the config")]
    NoHosts,
    /// A host that is not one.
    #[error("{host:?}: {reason}")]
    BadHost {
        /// As given.
        host: String,
        /// Why it is not a registry host.
        reason: String,
    },
    /// `--user` names nobody.
    #[error("--user {name}: no such user in /etc/passwd")]
    NoUser {
        /// As given.
        name: String,
    },
    /// Neither `--user` nor `HOME`.
    #[error("no home directory: set HOME, or pass --user or --config-dir")]
    NoHome,
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// `configure`'s clients.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Client {
    /// Route hosts to the helper in docker's config.json (credHelpers).
    Docker {
        /// Registry hosts [default: every configured registry].
        hosts: Vec<String>,
        /// The docker config directory [default: $DOCKER_CONFIG or ~/.docker].
        #[arg(long, conflicts_with = "user")]
        config_dir: Option<PathBuf>,
        /// Configure this user's ~/.docker (as root: the file is theirs).
        #[arg(long)]
        user: Option<String>,
        /// --remove, --dry-run, --force.
        #[command(flatten)]
        how: How,
    },
    /// Make podman, skopeo and buildah ask the helper first (a registries.conf.d drop-in).
    Containers {
        /// For everyone: /etc/containers/registries.conf.d [default as root].
        #[arg(long, conflicts_with = "user")]
        system: bool,
        /// For the invoking user: ~/.config/containers/registries.conf.d [default otherwise].
        #[arg(long)]
        user: bool,
        /// The drop-in directory itself (overrides both).
        #[arg(long, conflicts_with_all = ["system", "user"])]
        dir: Option<PathBuf>,
        /// --remove, --dry-run, --force.
        #[command(flatten)]
        how: How,
    },
    /// Write the kubelet's CredentialProviderConfig for the configured registries.
    Kubelet {
        /// Where to write it; `-` prints it.
        #[arg(long, default_value = kubelet::DEFAULT_OUTPUT)]
        output: PathBuf,
        /// Per-workload pulls: add tokenAttributes for this exchange.
        #[arg(long, value_enum)]
        workload_identity: Option<ExchangeKind>,
        /// --remove, --dry-run, --force.
        #[command(flatten)]
        how: How,
    },
}

/// How every client is configured.
#[derive(Debug, Clone, clap::Args)]
pub struct How {
    /// Take out what configure added.
    #[arg(long)]
    remove: bool,
    /// Print the change as a diff and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace entries that point elsewhere.
    #[arg(long)]
    force: bool,
}

/// The hosts to route: those given (normalised), else the configured ones.
fn hosts(given: &[String], config: &Config) -> Result<Vec<String>, ConfigureError> {
    let mut out = Vec::new();
    for h in given {
        let host = normalize_host(h)
            .map_err(|e| ConfigureError::BadHost { host: h.clone(), reason: e.to_string() })?;
        if !out.contains(&host) {
            out.push(host);
        }
    }
    if out.is_empty() {
        out = config.registries.iter().map(|r| r.host.clone()).collect();
    }
    if out.is_empty() {
        return Err(ConfigureError::NoHosts);
    }
    Ok(out)
}

/// Writes `new` over `path` (or deletes it for `None`), or with `dry_run`
/// returns the diff; `mode` and `owner` apply to a new file.
fn apply(
    path: &Path,
    old: Option<&str>,
    new: Option<&str>,
    how: &How,
    mode: u32,
    owner: Option<&files::User>,
) -> Result<String, ConfigureError> {
    if how.dry_run {
        let shown = path.display().to_string();
        return Ok(diff::unified(&shown, &shown, old.unwrap_or_default(), new.unwrap_or_default()));
    }
    match new {
        Some(text) => files::write_atomic(path, text, mode, owner)?,
        None => {
            std::fs::remove_file(path).map_err(|source| ConfigureError::Io { path: path.into(), source })?
        }
    }
    Ok(String::new())
}

/// Runs `configure CLIENT`; the text to print.
pub fn run(client: &Client, config: &Config) -> Result<String, ConfigureError> {
    match client {
        Client::Docker { hosts: given, config_dir, user, how } => {
            let owner = user.as_deref().map(files::user).transpose()?;
            let dir = match (config_dir, &owner) {
                (Some(d), _) => d.clone(),
                (None, Some(u)) => u.home.join(".docker"),
                (None, None) => match std::env::var_os("DOCKER_CONFIG") {
                    Some(d) => PathBuf::from(d),
                    None => std::env::var_os("HOME")
                        .map(PathBuf::from)
                        .ok_or(ConfigureError::NoHome)?
                        .join(".docker"),
                },
            };
            let path = dir.join("config.json");
            let old = files::read(&path)?;
            let plan = docker::plan(&path, old.as_deref(), &hosts(given, config)?, how.remove, how.force)?;
            let mut out = plan.notes.iter().map(|n| format!("{n}\n")).collect::<String>();
            match &plan.text {
                Some(new) => out += &apply(&path, old.as_deref(), Some(new), how, 0o600, owner.as_ref())?,
                None => out += &format!("{}: unchanged\n", path.display()),
            }
            if !how.dry_run && plan.text.is_some() {
                out += &format!("wrote {}\n", path.display());
            }
            Ok(out)
        }
        Client::Containers { system, user, dir, how } => {
            let dir = match dir {
                Some(d) => d.clone(),
                None => containers::drop_in_dir(
                    *system || (!*user && crate::daemon::socket::own_uid() == 0),
                    None,
                )?,
            };
            let path = dir.join(containers::DROP_IN);
            let old = files::read(&path)?;
            let (change, note) = containers::plan(&path, old.as_deref(), how.remove, how.force)?;
            let mut out = format!("{}: {note}\n", path.display());
            if let Some(new) = change {
                out += &apply(&path, old.as_deref(), new.as_deref(), how, 0o644, None)?;
            }
            Ok(out)
        }
        Client::Kubelet { output, workload_identity, how } => {
            let shown = output.display().to_string();
            if shown == "-" {
                return Ok(kubelet::provider_config(config, *workload_identity, kubelet::DEFAULT_OUTPUT));
            }
            let text = kubelet::provider_config(config, *workload_identity, &shown);
            let old = files::read(output)?;
            let new = if how.remove { None } else { Some(text.as_str()) };
            if old.as_deref() == new || (how.remove && old.is_none()) {
                return Ok(format!("{shown}: unchanged\n"));
            }
            let ours = |t: &String| t.starts_with("# Written by `ecr-credd configure kubelet`");
            if old.as_ref().is_some_and(|t| !ours(t)) && !how.force {
                let conflicts = vec!["the file exists and was not written by ecr-credd".into()];
                return Err(ConfigureError::Conflict { path: output.clone(), conflicts });
            }
            let mut out = apply(output, old.as_deref(), new, how, 0o644, None)?;
            if !how.dry_run && !how.remove {
                out += &format!("wrote {shown}\n{}", kubelet::next_steps(&shown));
            }
            Ok(out)
        }
    }
}

/// Whether `client` needs the daemon's config (hosts, socket) to run.
pub fn needs_config(client: &Client) -> bool {
    match client {
        Client::Docker { hosts, .. } => hosts.is_empty(),
        Client::Containers { .. } => false,
        Client::Kubelet { .. } => true,
    }
}
