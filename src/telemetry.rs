//! Log setup: JSON lines for machines, readable text for people, one filter for both.
//! Lines are written by a background thread so that a request never waits on stdout.

use std::io::{BufWriter, IsTerminal};

const BUFFER: usize = 64 * 1024;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Where log lines go.
#[derive(Debug, Clone, Copy)]
pub enum Sink {
    Stdout,
    Stderr,
}

/// Installs the global subscriber. Keep the returned guard alive until exit: dropping it
/// flushes the lines still queued.
pub fn init(config: &Config, sink: Sink) -> anyhow::Result<WorkerGuard> {
    let filter = EnvFilter::try_new(&config.log)
        .map_err(|e| anyhow::anyhow!("PORTVAKT_LOG `{}` is not a valid filter: {e}", config.log))?;
    // Not lossy: a security event must not vanish because the log reader is slow.
    let builder = NonBlockingBuilder::default().lossy(false);
    // The writer thread drains every queued line into this buffer and then flushes, so a
    // busy second costs a few large writes instead of one system call per line.
    let (writer, guard, ansi) = match sink {
        Sink::Stdout => {
            let (w, g) = builder.finish(BufWriter::with_capacity(BUFFER, std::io::stdout()));
            (w, g, std::io::stdout().is_terminal())
        }
        Sink::Stderr => {
            let (w, g) = builder.finish(BufWriter::with_capacity(BUFFER, std::io::stderr()));
            (w, g, std::io::stderr().is_terminal())
        }
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
        LogFormat::Pretty => builder.with_target(false).with_ansi(ansi).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(guard)
}
