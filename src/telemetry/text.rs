//! The human-readable format for development: `timestamp LEVEL message key=value ...`, with the
//! request context and span fields at the end, coloured on a terminal.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Copy, Default)]
pub struct TextEvents {
    pub ansi: bool,
}

impl<S, N> FormatEvent<S, N> for TextEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let level = *meta.level();
        let (on, off) = match (self.ansi, level) {
            (false, _) => ("", ""),
            (true, Level::ERROR) => ("\x1b[31m", "\x1b[0m"),
            (true, Level::WARN) => ("\x1b[33m", "\x1b[0m"),
            (true, Level::INFO) => ("\x1b[32m", "\x1b[0m"),
            (true, _) => ("\x1b[2m", "\x1b[0m"),
        };
        let now = crate::store::rfc3339(super::json::micros(time::OffsetDateTime::now_utc()));
        let mut visitor = Pairs {
            message: String::new(),
            rest: String::new(),
        };
        event.record(&mut visitor);
        let mut line = format!("{} {}", visitor.message, visitor.rest.trim_start());
        super::context::with_current(|c| {
            let _ = write!(
                line,
                " method={} route={} request_id={}",
                c.method,
                c.route.as_str(),
                c.request_id
            );
            if let Some(user) = c.user_id() {
                let _ = write!(line, " user_id={user}");
            }
        });
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    let _ = write!(line, " {}", fields.as_str());
                }
            }
        }
        // Control characters in values would let a client forge log lines or send escape
        // codes to the operator's terminal; only our own colour codes go around the level.
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let line = format!("{now} {on}{level:>5}{off} {}", line.trim_end());
        writeln!(writer, "{line}")
    }
}

struct Pairs {
    message: String,
    rest: String,
}

impl Visit for Pairs {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name().starts_with("log.") {
            return;
        }
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name().starts_with("log.") {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}
