//! Log set-up: tracing to stderr, with the AWS SDK and HTTP stack capped
//! below TRACE because at TRACE they print request and response bodies,
//! which carry tokens and session credentials.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Targets whose TRACE output may contain secrets.
const CAPPED: &[&str] = &["aws_", "hyper", "h2", "rustls", "tower", "reqwest"];

/// Installs the global subscriber. `RUST_LOG` wins over `default`.
pub fn init(default: &str) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let cap = filter_fn(|meta| {
        *meta.level() != Level::TRACE || !CAPPED.iter().any(|t| meta.target().starts_with(t))
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(env.and(cap));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}
