//! Log setup: JSON lines for machines, readable text for people, one filter for both, and a
//! buffered sink so that logging stays off the request's critical path.

pub mod context;
pub mod errors;
mod json;
pub mod metrics;
mod sink;
mod text;

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use json::{JsonEvents, JsonFields};
pub use sink::{FlushGuard, Target as Sink};
pub use text::TextEvents;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber. Keep the returned guard alive until exit: dropping it
/// writes out the lines still buffered.
pub fn init(config: &Config, sink: Sink) -> anyhow::Result<FlushGuard> {
    // `Targets` is stateless; EnvFilter tracks every span in a shared map, which showed up as
    // a measurable cost per request. Its extra syntax (span field matching) is rarely needed.
    let filter: Targets = config
        .log
        .parse()
        .map_err(|e| anyhow::anyhow!("PORTVAKT_LOG `{}` is not a valid filter: {e}", config.log))?;
    let (writer, guard) = sink::BufferedSink::start(sink);
    let ansi = match sink {
        Sink::Stdout => std::io::stdout().is_terminal(),
        Sink::Stderr => std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .fmt_fields(JsonFields)
                    .event_format(JsonEvents),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(ansi)
                    .event_format(TextEvents { ansi }),
            )
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(guard)
}
