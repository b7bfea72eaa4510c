//! Log setup: JSON lines for machines, readable text for people, one filter for both.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::{Config, LogFormat};

/// Where log lines go.
#[derive(Debug, Clone, Copy)]
pub enum Sink {
    Stdout,
    Stderr,
}

/// Installs the global subscriber. Fails only if one is already installed.
pub fn init(config: &Config, sink: Sink) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log)
        .map_err(|e| anyhow::anyhow!("PORTVAKT_LOG `{}` is not a valid filter: {e}", config.log))?;
    let writer = match sink {
        Sink::Stdout => BoxMakeWriter::new(std::io::stdout),
        Sink::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => {
            let ansi = match sink {
                Sink::Stdout => std::io::stdout().is_terminal(),
                Sink::Stderr => std::io::stderr().is_terminal(),
            };
            builder.with_target(false).with_ansi(ansi).try_init()
        }
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
