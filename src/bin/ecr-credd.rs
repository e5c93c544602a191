//! `ecr-credd`: parses arguments, sets up logging, and hands off to the library.

use anyhow::{Context, Result};
use clap::Parser;
use ecr_credd::cli::{self, Cli, Command};
use ecr_credd::daemon::{self, Listeners};
use ecr_credd::ecr::{sdk_config, AwsTokenSource};
use ecr_credd::proxy::Proxy;
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ecr-credd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { config, log_level } => {
            ecr_credd::logging::init(&log_level);
            if let Err(e) = ecr_credd_client::secret::forbid_core_dumps() {
                tracing::warn!(error = %e, "cannot make the process non-dumpable; a crash could dump tokens to disk: {e}");
            }
            let (path, config) = cli::load_config(config)?;
            ecr_credd::config::check_permissions(&path)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async {
                let listeners = Listeners::bind(&config).await?;
                let metrics = Arc::new(ecr_credd::metrics::Metrics::new());
                let proxy = Proxy::resolve(&config);
                if let Some(p) = &proxy {
                    tracing::info!(proxy = %p.display_url(), no_proxy = p.no_proxy(), "STS and ECR calls go through the proxy {}", p.display_url());
                }
                let settings = ecr_credd::credentials::AwsSettings::from_config(&config);
                tracing::info!(source = %config.credentials, "base credentials: [aws] credentials = {}", config.credentials);
                let source = AwsTokenSource::new(sdk_config(proxy.as_ref()).await?, settings, metrics.clone());
                let reloads = cli::reload_on_sighup(path)?;
                daemon::run(config, listeners, source, metrics, reloads, shutdown_signal()).await;
                Ok(())
            })
        }
        Command::CheckConfig { config } => {
            print!("{}", cli::check_config(config)?);
            Ok(())
        }
        Command::Get { host, socket } => {
            print!("{}", cli::get(&host, socket)?);
            Ok(())
        }
        Command::Doctor { hosts, config, socket, json } => {
            let (_, config) = cli::load_config(config)?;
            let targets = ecr_credd::doctor::targets(&config, &hosts).map_err(anyhow::Error::msg)?;
            let socket = socket
                .or_else(|| std::env::var_os("ECR_CREDD_SOCKET").map(Into::into))
                .unwrap_or_else(|| config.socket.clone());
            let mut homes: Vec<std::path::PathBuf> =
                std::env::var_os("HOME").map(Into::into).into_iter().collect();
            homes.push("/root".into());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let checks = runtime.block_on(async {
                let base = sdk_config(Proxy::resolve(&config).as_ref()).await?;
                let settings = ecr_credd::credentials::AwsSettings::from_config(&config);
                anyhow::Ok(ecr_credd::doctor::run(&base, &settings, &targets, &socket, &homes).await)
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "ok": checks.iter().all(|c| c.ok), "checks": checks })
                    )?
                );
            } else {
                print!("{}", ecr_credd::doctor::render_text(&checks));
            }
            if !checks.iter().all(|c| c.ok) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Policy { setup, format, json } => {
            let docs = setup.documents()?;
            let format = if json { ecr_credd::policy::Format::Json } else { format };
            print!("{}", ecr_credd::policy::render(&setup, &docs, format));
            Ok(())
        }
        Command::InstallHost { bin_dir, socket_dir, owner } => {
            let exe = std::env::current_exe().context("finding this program's directory")?;
            let from = exe.parent().context("this program has no directory")?;
            for path in ecr_credd::install::install_host(from, &bin_dir, socket_dir.as_deref(), owner)? {
                println!("installed {}", path.display());
            }
            Ok(())
        }
        Command::Man { dir } => {
            for page in cli::write_man_pages(&dir)? {
                println!("{}", page.display());
            }
            Ok(())
        }
        Command::Status { socket, json } => {
            let (ready, text) = cli::status(socket, json)?;
            print!("{text}");
            if !ready {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
