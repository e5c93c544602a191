//! Log set-up: readable lines on a terminal, structured fields in the journal
//! under systemd. The AWS SDK and HTTP stack are capped below TRACE because at
//! TRACE they print request and response bodies, which carry tokens and
//! session credentials.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Targets whose TRACE output may contain secrets.
const CAPPED: &[&str] = &["aws_", "hyper", "h2", "rustls", "tower", "reqwest"];

/// aws-config warns with a failed `credential_process`'s whole stderr, which
/// may hold anything; the chain logs the failure itself, without it.
const SILENCED_WARNINGS: &str = "aws_config::profile::credentials";

fn allowed(meta: &Metadata<'_>) -> bool {
    if *meta.level() <= Level::WARN && meta.target().starts_with(SILENCED_WARNINGS) {
        return false;
    }
    *meta.level() != Level::TRACE || !CAPPED.iter().any(|t| meta.target().starts_with(t))
}

/// Installs the global subscriber. `RUST_LOG` wins over `default`.
pub fn init(default: &str) {
    let env = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // systemd sets JOURNAL_STREAM when stderr goes to the journal.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            let layer = journald
                .with_syslog_identifier("ecr-credd".into())
                .with_filter(env().and(filter_fn(allowed)));
            if tracing_subscriber::registry().with(layer).try_init().is_ok() {
                return;
            }
        }
    }
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(env().and(filter_fn(allowed)));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}
