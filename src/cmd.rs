//! The `ecr-credd` command line: argument types and the non-daemon commands.

mod check_config;
pub mod configure;
mod doctor;
mod install;
mod man;
pub mod policy;
mod query;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::{self, Config};

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
        /// Check a pod's own pull instead (per-workload pulls), with its
        /// service-account token from FILE: audience, trust, permission, agent.
        #[arg(long, value_name = "FILE")]
        service_account_token: Option<PathBuf>,
        /// With --service-account-token: the role the pod's service account
        /// names (IRSA), or its Pod Identity association's (for the fixes).
        #[arg(long, value_name = "ARN", requires = "service_account_token")]
        role: Option<String>,
        /// With --service-account-token: the audience the exchange expects
        /// [default: sts.amazonaws.com for IRSA, pods.eks.amazonaws.com for Pod Identity].
        #[arg(long, requires = "service_account_token")]
        audience: Option<String>,
        /// The kubelet's credential provider config to check [default:
        /// /etc/kubernetes/ecr-credd-provider.yaml, when it exists].
        #[arg(long, value_name = "FILE")]
        kubelet_config: Option<PathBuf>,
    },
    /// Print the five IAM documents of the cross-account setup (with
    /// --workload: those of a pod's own role).
    Policy {
        /// Accounts, roles, repositories and access.
        #[command(flatten)]
        setup: Box<crate::cmd::policy::Setup>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::cmd::policy::Format,
        /// Same as --format json.
        #[arg(long)]
        json: bool,
    },
    /// Point docker, podman/skopeo/buildah or the kubelet at the helper.
    Configure {
        /// Which client.
        #[command(subcommand)]
        client: crate::cmd::configure::Client,
        /// Config file [default: $ECR_CREDD_CONFIG or /etc/ecr-credd/config.toml].
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
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

/// Runs one command; `Ok` carries the exit status (a check that found a
/// problem is not an error of the program).
pub fn execute(command: Command) -> Result<ExitCode> {
    let status = |ok: bool| if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    match command {
        Command::Run { config, .. } => run::run(config).map(|()| ExitCode::SUCCESS),
        Command::CheckConfig { config } => {
            print!("{}", check_config::check_config(config)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { host, socket } => {
            print!("{}", query::get(&host, socket)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { socket, json } => {
            let (ready, text) = query::status(socket, json)?;
            print!("{text}");
            Ok(status(ready))
        }
        Command::Doctor {
            hosts,
            config,
            socket,
            json,
            service_account_token,
            role,
            audience,
            kubelet_config,
        } => {
            let workload =
                service_account_token.map(|token_file| doctor::WorkloadCheck { token_file, role, audience });
            doctor::command(&hosts, config, socket, workload, kubelet_config, json).map(status)
        }
        Command::Policy { setup, format, json } => {
            let format = if json { policy::Format::Json } else { format };
            print!("{}", policy::print(&setup, format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Configure { client, config } => {
            let config = if configure::needs_config(&client) {
                load_config(config)?.1
            } else {
                // Hosts were named: the config, when there is one, is only for defaults.
                load_config(config)
                    .map(|(_, c)| c)
                    .or_else(|_| config::parse("", std::path::Path::new("-")))?
            };
            print!("{}", configure::run(&client, &config)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::InstallHost { bin_dir, socket_dir, owner } => {
            let exe = std::env::current_exe().context("finding this program's directory")?;
            let from = exe.parent().context("this program has no directory")?;
            for path in install::install_host(from, &bin_dir, socket_dir.as_deref(), owner)? {
                println!("installed {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            for page in man::write_man_pages(&dir)? {
                println!("{}", page.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_owner(text: &str) -> std::result::Result<(u32, u32), String> {
    crate::cmd::install::parse_owner(text).map_err(|e| e.to_string())
}

/// Loads the config named by the flag, the environment or the default.
pub fn load_config(flag: Option<PathBuf>) -> Result<(PathBuf, Config)> {
    let path = config::config_path(flag);
    let config = config::load(&path)?;
    Ok((path, config))
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
