//! Log set-up: tracing to stderr, text or JSON, the level from the config
//! (`log_level`) unless `RUST_LOG` says otherwise; colours only when stderr
//! is a terminal.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

pub use crate::config::LogFormat;

/// Installs the global subscriber with `level` (a tracing filter) unless
/// `RUST_LOG` is set.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log file, a pipe or the
    // journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
