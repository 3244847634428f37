//! Rejects in the log: every reject recorded in the rejects file is also a warning, as it is
//! recorded (after its page commits, so a batch stopped by `--max-rejects`, which is not
//! recorded, is not logged either), for the load and the stream follower alike.
//!
//! A warning names the table, the key (printable, each value cut to [`VALUE_CHARS`]) and the
//! reason in words (cut to [`REASON_CHARS`]), as structured fields (`table`, `key`, `reason`)
//! so that a JSON log carries them as such; never the item. The first [`PRINTED`] rejects of a
//! run are printed one by one; past them, one line every [`SUMMARY_EVERY`] says how many more
//! were recorded and where, and the run's end says how many remain unsaid.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::checkpoint::printable;
use crate::transform::Reject;
use crate::value::Item;

/// Rejects of a run printed one by one.
pub const PRINTED: u64 = 100;
/// Past them, a summary line at most this often.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// A key value is cut to this many characters in the log.
pub const VALUE_CHARS: usize = 64;
/// A reason is cut to this many characters in the log.
pub const REASON_CHARS: usize = 300;

/// A reject as the log and the summary name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noted {
    /// The target table, or `-` (an item no table rule took, a line that is not an item).
    pub table: String,
    /// The reject's category (see `Reject::kind`).
    pub kind: &'static str,
    /// The item's key, printable and bounded: `PK=USER#1 SK=PROFILE`.
    pub key: String,
    /// The reason, bounded.
    pub reason: String,
}

impl Noted {
    pub fn new(reject: &Reject, key_attrs: &[String], item: &Item) -> Noted {
        let key: Vec<String> = key_attrs
            .iter()
            .filter_map(|k| {
                item.get(k)
                    .map(|v| format!("{}={}", printable(k), shown(v)))
            })
            .collect();
        Noted {
            table: reject.table.clone().unwrap_or_else(|| "-".into()),
            kind: reject.kind,
            key: key.join(" "),
            reason: tamed(&reject.reason),
        }
    }

    /// A line of an export that is not an item: named by its file and line number.
    pub fn bad_line(bad: &crate::source::scan::BadLine) -> Noted {
        Noted {
            table: "-".into(),
            kind: "malformed line",
            key: format!("{}:{}", printable(&bad.file), bad.line),
            reason: tamed(&bad.reason),
        }
    }

    /// The key the summary counts it under: `table: kind`.
    pub fn counted_as(&self) -> String {
        format!("{}: {}", self.table, self.kind)
    }

    /// Bytes held (for the memory budget).
    pub fn size(&self) -> usize {
        self.table.len() + self.key.len() + self.reason.len()
    }
}

/// A key value as the log shows it: S and N as they are (printable), others by type.
fn shown(v: &AttributeValue) -> String {
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => printable(&cut(s, VALUE_CHARS)).into_owned(),
        AttributeValue::B(b) => format!("<{} bytes>", b.as_ref().len()),
        other => format!("<{}>", crate::transform::type_name(other)),
    }
}

/// `s`, cut to `max` characters (marked with `…`).
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// A reason for a terminal: cut to [`REASON_CHARS`], control characters (an escape
/// sequence, a line break a value or PostgreSQL's message may carry) escaped.
fn tamed(s: &str) -> String {
    cut(s, REASON_CHARS)
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// The rejects of one run, logged with a bound.
pub struct RejectLog {
    /// The rejects file as shown to the user (a path or an s3:// folder).
    shown: String,
    state: Mutex<State>,
}

struct State {
    printed: u64,
    /// Rejects recorded but not printed since the last summary.
    unsaid: u64,
    last_summary: Instant,
}

impl RejectLog {
    pub fn new(shown: String) -> RejectLog {
        RejectLog {
            shown,
            state: Mutex::new(State {
                printed: 0,
                unsaid: 0,
                last_summary: Instant::now(),
            }),
        }
    }

    /// Log rejects just recorded.
    pub fn recorded<'a>(&self, notes: impl IntoIterator<Item = &'a Noted>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for n in notes {
            if s.printed < PRINTED {
                s.printed += 1;
                tracing::warn!(
                    table = %n.table,
                    key = %n.key,
                    reason = %n.reason,
                    "rejected, recorded in the rejects file"
                );
                if s.printed == PRINTED {
                    s.last_summary = Instant::now();
                }
            } else {
                s.unsaid += 1;
            }
        }
        if s.unsaid > 0 && s.last_summary.elapsed() >= SUMMARY_EVERY {
            self.summary(&mut s);
        }
    }

    /// At the end of a run: the rejects recorded since the last line, if any.
    pub fn finish(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.unsaid > 0 {
            self.summary(&mut s);
        }
    }

    fn summary(&self, s: &mut State) {
        tracing::warn!(
            more = s.unsaid,
            "and {} more rejects (see {})",
            thousands(s.unsaid),
            self.shown
        );
        s.unsaid = 0;
        s.last_summary = Instant::now();
    }
}

/// `4312` as `4,312`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_and_bounded() {
        let item: Item = [
            ("PK".to_string(), AttributeValue::S("USER#1".into())),
            (
                "SK".to_string(),
                AttributeValue::S("x\u{1b}[31m".repeat(40)),
            ),
            ("big".to_string(), AttributeValue::S("y".repeat(10_000))),
        ]
        .into_iter()
        .collect();
        let r = Reject {
            table: Some("users".into()),
            column: None,
            kind: "refused by PostgreSQL",
            reason: "z".repeat(1000),
        };
        let n = Noted::new(&r, &["PK".into(), "SK".into()], &item);
        assert!(
            n.key.starts_with("PK=USER#1 SK=\"x\\u{1b}[31m"),
            "{}",
            n.key
        );
        assert!(
            !n.key.contains('\u{1b}') && !n.key.contains("yyy"),
            "{}",
            n.key
        );
        assert!(n.key.chars().count() < 2 * VALUE_CHARS + 40, "{}", n.key);
        assert_eq!(n.reason.chars().count(), REASON_CHARS + 1);
        let r = Reject {
            reason: "bad \u{1b}[31m\nvalue".into(),
            ..r
        };
        let n = Noted::new(&r, &["PK".into()], &item);
        assert_eq!(n.reason, "bad \\u{1b}[31m\\nvalue");
        assert_eq!(n.counted_as(), "users: refused by PostgreSQL");
    }

    #[test]
    fn past_the_first_ones_rejects_are_counted_not_printed() {
        let log = RejectLog::new("f.jsonl".into());
        let n = Noted {
            table: "t".into(),
            kind: "k",
            key: "PK=1".into(),
            reason: "r".into(),
        };
        let many = vec![n; PRINTED as usize + 50];
        log.recorded(&many);
        let state = |log: &RejectLog| {
            let s = log.state.lock().unwrap_or_else(|p| p.into_inner());
            (s.printed, s.unsaid)
        };
        // Within SUMMARY_EVERY of the 100th: no summary yet.
        assert_eq!(state(&log), (PRINTED, 50));
        log.finish();
        assert_eq!(state(&log), (PRINTED, 0));
    }

    #[test]
    fn counts_read_with_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4312), "4,312");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
