//! `run`: the daemon in the foreground, wired to the real AWS, the real
//! signals and the listeners from the config or systemd.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::aws::chain::AwsSettings;
use crate::aws::ecr::{sdk_config, AwsTokenSource};
use crate::aws::http::Proxy;
use crate::daemon::{self, signals, Listeners};
use crate::metrics::Metrics;

/// Runs the daemon until SIGTERM or SIGINT.
pub(super) fn run(config_flag: Option<PathBuf>) -> Result<()> {
    if let Err(e) = ecr_credd_client::secret::forbid_core_dumps() {
        tracing::warn!(error = %e, "cannot make the process non-dumpable; a crash could dump tokens to disk: {e}");
    }
    let path = crate::config::config_path(config_flag);
    let config = crate::config::load_trusted(&path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listeners = Listeners::bind(&config).await?;
        let metrics = Arc::new(Metrics::new());
        let proxy = Proxy::resolve(&config);
        if let Some(p) = &proxy {
            tracing::info!(proxy = %p.display_url(), no_proxy = p.no_proxy(), "STS and ECR calls go through the proxy {}", p.display_url());
        }
        let settings = AwsSettings::from_config(&config);
        tracing::info!(source = %config.credentials, "base credentials: [aws] credentials = {}", config.credentials);
        let source = AwsTokenSource::new(sdk_config(proxy.as_ref()).await?, settings, metrics.clone());
        let reloads = signals::reload_on_sighup(path).context("watching SIGHUP")?;
        daemon::run(config, listeners, source, metrics, reloads, signals::shutdown_signal()).await;
        Ok(())
    })
}
