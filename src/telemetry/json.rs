//! A compact JSON line format: one flat object per event with `timestamp`, `level`, `target`,
//! the event's fields (`message` among them), the request context (`method`, `route`,
//! `request_id`, `user_id`), and the fields of each span it happened in as an object under
//! the span's name. A key appears once: the first writer wins, in that order.
//!
//! tracing-subscriber's own JSON format stores span fields as JSON text and parses them back
//! for every event; with a log line per request that halved throughput in our benchmark.
//! Here span fields are stored as ready-made `"key":value` fragments and copied verbatim.
//! Every key and string is escaped (RFC 8259 §7), so no value can break the line.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats fields as `,"key":value` fragments.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Fragments::new(String::new());
        fields.record(&mut visitor);
        writer.write_str(&visitor.out)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        self.format_fields(current.as_writer(), fields)
    }
}

/// Writes one JSON object per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonEvents;

impl<S, N> FormatEvent<S, N> for JsonEvents
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
        // Records from the `log` crate (via tracing-log) carry their real target and level
        // in `log.*` fields; use those, as tracing-subscriber's own formats do.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let now = time::OffsetDateTime::now_utc();
        let mut line = String::with_capacity(384);
        line.push_str("{\"timestamp\":\"");
        crate::store::push_rfc3339(&mut line, micros(now));
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push_str("\",\"target\":");
        push_json_str(&mut line, meta.target());
        let mut visitor = Fragments::new(line);
        visitor.seen.extend(["timestamp", "level", "target"]);
        event.record(&mut visitor);
        super::context::with_current(|c| {
            visitor.string("method", c.method.as_str());
            visitor.string("route", c.route.as_str());
            visitor.string("request_id", &c.request_id);
            if let Some(user) = c.user_id() {
                visitor.string("user_id", user);
            }
        });
        let mut line = visitor.out;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && let Some(inner) = fields.as_str().strip_prefix(',')
                {
                    line.push(',');
                    push_json_str(&mut line, span.name());
                    line.push_str(":{");
                    line.push_str(inner);
                    line.push('}');
                }
            }
        }
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

pub(super) fn micros(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

struct Fragments {
    out: String,
    seen: Vec<&'static str>,
}

impl Fragments {
    fn new(out: String) -> Self {
        Fragments {
            out,
            seen: Vec::new(),
        }
    }

    /// Writes `,"name":` and returns true, unless the name was written already or is one
    /// of tracing-log's `log.*` bookkeeping fields.
    fn begin(&mut self, name: &'static str) -> bool {
        if name.starts_with("log.") || self.seen.contains(&name) {
            return false;
        }
        self.seen.push(name);
        self.out.push(',');
        push_json_str(&mut self.out, name);
        self.out.push(':');
        true
    }

    fn key(&mut self, field: &Field) -> bool {
        self.begin(field.name())
    }

    fn string(&mut self, name: &'static str, value: &str) {
        if self.begin(name) {
            push_json_str(&mut self.out, value);
        }
    }
}

impl Visit for Fragments {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.key(field) {
            return;
        }
        push_json_str(&mut self.out, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if !self.key(field) {
            return;
        }
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.key(field) {
            return;
        }
        let _ = write!(self.out, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if !self.key(field) {
            return;
        }
        if !value.is_finite() {
            self.out.push_str("null");
        } else if field.name().ends_with("_ms") && (0.0..1e12).contains(&value) {
            // Durations in milliseconds, to the microsecond: integer formatting is several
            // times cheaper than the shortest float representation, once per request.
            let micros = (value * 1000.0).round() as u64;
            let _ = write!(self.out, "{}.{:03}", micros / 1000, micros % 1000);
        } else {
            let _ = write!(self.out, "{value}");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if !self.key(field) {
            return;
        }
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !self.key(field) {
            return;
        }
        push_json_str(&mut self.out, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.key(field) {
            return;
        }
        self.out.push('"');
        let _ = write!(Escaping { out: &mut self.out }, "{value:?}");
        self.out.push('"');
    }
}

/// Appends `s` as a JSON string literal (RFC 8259 §7), escaping quotes, backslashes and
/// control characters, so no value can end the line or forge another.
pub(super) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// Formats straight into the line, escaped, without an intermediate string.
struct Escaping<'a> {
    out: &'a mut String,
}

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.out, s);
        Ok(())
    }
}

fn push_escaped(out: &mut String, s: &str) {
    let mut plain_from = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[plain_from..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
        plain_from = i + 1;
    }
    out.push_str(&s[plain_from..]);
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    #[test]
    fn events_are_flat_json_objects_with_their_spans_fields() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .fmt_fields(JsonFields)
            .event_format(JsonEvents)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span =
                tracing::info_span!("request", route = "/x", user_id = tracing::field::Empty);
            span.record("user_id", "u-1");
            let _e = span.enter();
            tracing::info!(
                status = 200u16,
                latency_ms = 1.5,
                evil = "a\"b\n\u{1b}[31m",
                "done"
            );
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["message"], "done");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["status"], 200);
        assert_eq!(v["latency_ms"], 1.5);
        assert_eq!(v["request"]["user_id"], "u-1");
        assert_eq!(v["evil"], "a\"b\n\u{1b}[31m");
        assert_eq!(
            v["request"]["route"], "/x",
            "span fields sit under the span's name"
        );
        let mut out = String::new();
        for tricky in [
            "plain",
            "quote\" back\\slash",
            "line\nbreak\r\t",
            "\u{0}\u{7f}\u{1b}",
            "ünïcødé ✓",
        ] {
            out.clear();
            push_json_str(&mut out, tricky);
            assert_eq!(
                serde_json::from_str::<String>(&out).unwrap(),
                tricky,
                "{out}"
            );
            assert!(!out.contains('\n'));
        }
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn a_key_appears_once_even_when_the_event_repeats_the_context() {
        use crate::telemetry::context::{self, RequestContext, Route};
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .fmt_fields(JsonFields)
            .event_format(JsonEvents)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let ctx = std::sync::Arc::new(RequestContext::new(
            "r-1".into(),
            http::Method::POST,
            Route::Unmatched,
        ));
        context::scope(ctx, async {
            context::set_user("u-ctx");
            tracing::info!(user_id = "u-event", level = "sneaky", "session ended");
        })
        .await;
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("\"user_id\"").count(), 1, "{text}");
        assert_eq!(text.matches("\"level\"").count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["user_id"], "u-event");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(v["route"], "unmatched");
    }
}
