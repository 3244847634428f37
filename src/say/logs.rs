//! The `tracing` logs, in the format [`super`] writes: text as tracing-subscriber's `fmt`
//! writes it, or one JSON object per event in the shape of every other line (the event's
//! `message` as `msg`, its other fields and its `target` beside it).

use std::fmt::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::pgconn::redact;

/// Install the subscriber: `filter` as `RUST_LOG` would give it, `color` for text on a
/// terminal. Call after [`super::set_json`].
pub fn init(filter: tracing_subscriber::EnvFilter, color: bool) {
    let json = super::json();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color && !json)
        .with_writer(RedactedStderr { json });
    if json {
        builder.event_format(JsonEvents).init();
    } else {
        builder.init();
    }
}

/// The logs' writer: each event is formatted whole into an [`EventText`], which writes it in
/// one piece, text through the one redaction (a log line may quote an error, a setting, a
/// target); a JSON line comes redacted string by string.
struct RedactedStderr {
    json: bool,
}

struct EventText {
    json: bool,
    text: Vec<u8>,
}

impl MakeWriter<'_> for RedactedStderr {
    type Writer = EventText;

    fn make_writer(&self) -> EventText {
        EventText {
            json: self.json,
            text: Vec::new(),
        }
    }
}

impl std::io::Write for EventText {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventText {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.text);
        if self.json {
            super::write_stderr(&text);
        } else {
            super::write_stderr(&redact(&text));
        }
    }
}

/// An event as one JSON line.
struct JsonEvents;

impl<S, N> FormatEvent<S, N> for JsonEvents
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        fields
            .map
            .insert("target".into(), Value::String(meta.target().into()));
        let level = meta.level().as_str().to_ascii_lowercase();
        let msg = fields.message.unwrap_or_default();
        w.write_str(&super::json_line(&level, &msg, fields.map))
    }
}

/// An event's fields: `message` apart, the others by name.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    map: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, v: Value) {
        if field.name() == "message" {
            self.message = Some(match v {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.map.insert(field.name().to_string(), v);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.put(field, Value::String(s));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.into()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The error with its sources, as `{:#}` would show them.
        let mut s = value.to_string();
        let mut source = value.source();
        while let Some(e) = source {
            let _ = write!(s, ": {e}");
            source = e.source();
        }
        self.put(field, Value::String(s));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}
