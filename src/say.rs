//! Everything ddb2pg writes to stderr goes through here: notes, warnings, the progress and
//! follower lines, the end-of-run summary, the fatal error and the `tracing` logs.
//!
//! Two formats, chosen once at start ([`set_json`], from `--log-format` or
//! `DDB2PG_LOG_FORMAT`):
//!
//! - text (the default): what a human reads, `ddb2pg: ...`, `ddb2pg: warning: ...`,
//!   `ddb2pg: error: ...`, the summary over several lines;
//! - json: every line one object, `{"ts":"2026-12-07T21:50:03.123Z","level":"info","msg":"...",
//!   ...fields}`, the fields flattened beside `ts`, `level` and `msg` (a field of one of
//!   those names is dropped). The levels: `info`, `warn`, `error` (and `debug`/`trace` at `-vv`).
//!
//! To say something: [`say!`](crate::say!) for a plain line (`say!("...")`,
//! `say!(warn: "...")`, `say!(error: "...")`, with `format!` arguments), [`event`] for a
//! line whose figures a log pipeline wants as fields (its text form given apart, so the human
//! text stays what it is).
//!
//! Both formats pass through the one redaction ([`crate::pgconn::redact`]): the text whole, the
//! JSON string by string before it is serialized (redacting the serialized line could cut
//! through a quote and break it). Each line is written with one `write_all` on locked stderr, so
//! lines of several threads never interleave.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};

use crate::pgconn::redact;

pub mod logs;

static JSON: AtomicBool = AtomicBool::new(false);

/// JSON lines from now on (`--log-format json`), or text.
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Whether lines are JSON objects (no progress bar is drawn then).
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// How bad a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// What the text line says after `ddb2pg: `.
    fn text_prefix(self) -> &'static str {
        match self {
            Level::Info => "",
            Level::Warn => "warning: ",
            Level::Error => "error: ",
        }
    }
}

/// Say `ddb2pg: ...`: `say!("copied {n} rows")`, `say!(warn: "...")`, `say!(error: "...")`.
/// In json mode the line is `{"ts":..,"level":..,"msg":"copied 5 rows"}`.
#[macro_export]
macro_rules! say {
    (warn: $($arg:tt)+) => {
        $crate::say::line($crate::say::Level::Warn, &format!($($arg)+))
    };
    (error: $($arg:tt)+) => {
        $crate::say::line($crate::say::Level::Error, &format!($($arg)+))
    };
    ($($arg:tt)+) => {
        $crate::say::line($crate::say::Level::Info, &format!($($arg)+))
    };
}

/// One line with no fields: text `ddb2pg: [warning: |error: ]msg`, json `msg` as it is.
pub fn line(level: Level, msg: &str) {
    event(level, msg, Map::new(), || {
        format!("ddb2pg: {}{msg}", level.text_prefix())
    });
}

/// One line with fields: in json mode `msg` and `fields`; in text mode `text()`, as it is (it
/// may be several lines; a line break is added at its end).
pub fn event(level: Level, msg: &str, fields: Map<String, Value>, text: impl FnOnce() -> String) {
    if json() {
        write_stderr(&json_line(level.name(), msg, fields));
    } else {
        let mut t = redact(&text());
        t.push('\n');
        write_stderr(&t);
    }
}

/// The fatal error that ends the process with `exit_code`.
pub fn fatal(msg: &str, exit_code: u8) {
    let mut fields = Map::new();
    fields.insert("exit_code".into(), exit_code.into());
    event(Level::Error, msg, fields, || {
        format!("ddb2pg: error: {msg}")
    });
}

/// Panics said like every other error, from the start of `main`: one line `ddb2pg: error:
/// internal error: ...` (or one JSON object with `--log-format json`: a pipeline gets no
/// line that is not one), redacted (a panic's message may quote anything), where the default
/// hook writes several unredacted lines. With `RUST_BACKTRACE` the backtrace follows (in json:
/// a `backtrace` field).
pub fn on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let msg = format!(
            "internal error: thread '{}' panicked at {}: {}",
            thread.name().unwrap_or("unnamed"),
            info.location().map_or(String::new(), |l| l.to_string()),
            panic_message(info.payload())
        );
        let trace = std::backtrace::Backtrace::capture();
        let trace = (trace.status() == std::backtrace::BacktraceStatus::Captured)
            .then(|| trace.to_string());
        let fields = trace
            .as_ref()
            .map_or_else(Map::new, |t| field("backtrace", t.as_str()));
        event(Level::Error, &msg, fields, || match &trace {
            Some(t) => format!("ddb2pg: error: {msg}\n{}", t.trim_end()),
            None => format!("ddb2pg: error: {msg}"),
        });
    }));
}

/// What `panic!` was given: its text, else a placeholder.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(s), _) => s,
        (None, Some(s)) => s,
        (None, None) => "(no message)",
    }
}

/// Whether a command line not yet parsed asks for JSON lines (`--log-format json`, the last
/// one given, else `DDB2PG_LOG_FORMAT`): its errors and the settings file's note are said
/// before clap has read it.
pub fn asks_json(args: &[std::ffi::OsString], env: &dyn Fn(&str) -> Option<String>) -> bool {
    let mut asked = None;
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--log-format" {
            asked = it.next().map(|v| v.into_owned());
        } else if let Some(v) = a.strip_prefix("--log-format=") {
            asked = Some(v.to_string());
        }
    }
    asked.or_else(|| env("DDB2PG_LOG_FORMAT")).as_deref() == Some("json")
}

/// A usage error as clap renders it (`rendered`, several lines): text as it is, json one error
/// line with `exit_code`.
pub fn usage_error(rendered: &str, exit_code: u8) {
    if json() {
        let msg = rendered.trim();
        fatal(msg.strip_prefix("error: ").unwrap_or(msg), exit_code);
    } else {
        write_stderr(&redact(rendered));
    }
}

/// One field: `event(level, msg, say::field("at", &path), || ...)`.
pub fn field(name: &str, value: impl Into<Value>) -> Map<String, Value> {
    Map::from_iter([(name.to_string(), value.into())])
}

/// The fields of a serializable value (a report): its top-level object, or `{"value": ...}`.
pub fn fields_of(v: &impl serde::Serialize) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        Ok(other) => Map::from_iter([("value".to_string(), other)]),
        Err(e) => Map::from_iter([("unserializable".to_string(), e.to_string().into())]),
    }
}

/// One JSON line (with its line break): `ts`, `level`, `msg` first, then the fields, every
/// string redacted.
pub fn json_line(level: &str, msg: &str, fields: Map<String, Value>) -> String {
    let ts = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut out = String::with_capacity(128);
    out.push_str("{\"ts\":");
    push_json(&mut out, &Value::String(ts));
    out.push_str(",\"level\":");
    push_json(&mut out, &Value::String(level.into()));
    out.push_str(",\"msg\":");
    push_json(&mut out, &Value::String(redact(msg)));
    for (k, mut v) in fields {
        if matches!(k.as_str(), "ts" | "level" | "msg") {
            continue;
        }
        redact_strings(&mut v);
        out.push(',');
        push_json(&mut out, &Value::String(k));
        out.push(':');
        push_json(&mut out, &v);
    }
    out.push_str("}\n");
    out
}

fn push_json(out: &mut String, v: &Value) {
    // Serializing a Value cannot fail (its map keys are strings).
    out.push_str(&serde_json::to_string(v).unwrap_or_else(|_| "null".into()));
}

fn redact_strings(v: &mut Value) {
    match v {
        Value::String(s) => *s = redact(s),
        Value::Array(a) => a.iter_mut().for_each(redact_strings),
        Value::Object(m) => m.values_mut().for_each(redact_strings),
        _ => {}
    }
}

/// Stderr, one write per line, errors ignored (there is nowhere left to say them).
fn write_stderr(s: &str) {
    let _ = std::io::stderr().lock().write_all(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_object_with_redacted_strings() {
        let fields = serde_json::json!({
            "target": "postgres://me:s3cr3t@db/app",
            "nested": {"conninfo": ["host=db password=s3cr3t user=me"]},
            "n": 3,
            "msg": "dropped",
        });
        let Value::Object(fields) = fields else {
            panic!("an object")
        };
        let line = json_line("warn", "cannot reach password='s3cr3t' \"x", fields);
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        assert!(!line.contains("s3cr3t"), "{line}");
        let v: Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["n"], 3);
        assert!(v["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("cannot reach")));
        assert!(line.starts_with("{\"ts\":\"20"), "{line}");
        assert_eq!(v["ts"].as_str().map(str::len), Some(24), "{line}");
    }
}
