//! The service's logs (issue 28): `tracing-subscriber` on stderr, as text or one JSON object a
//! line, filtered by `--log-level` (a level, or `tracing`'s filter directives such as
//! `info,treecast::access=warn`).

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One line of text a record (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object a line, its fields at the top level (for a log shipper).
    Json,
}

/// Installs the process's log subscriber.
///
/// # Errors
/// When `level` is not a level or filter, or a subscriber is already installed.
pub(crate) fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::builder()
        .parse(level)
        .map_err(|e| anyhow::anyhow!("--log-level `{level}`: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("a log subscriber: {e}"))
}
