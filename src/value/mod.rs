//! DynamoDB attribute values → JSON text for PostgreSQL `jsonb`, plus lossless
//! DynamoDB JSON (`{"S": ..}`, `{"N": ..}`, ...) for checkpoints and the rejects file.
//!
//! Numbers are exact decimals ([`Number`]) and never pass through `f64`. The JSON
//! writers are on the per-item hot path: they append to a caller buffer, build no
//! `serde_json::Value`, and build error paths (`"a.b[3].c"`) only when an error occurs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// One DynamoDB item: attribute name → value.
pub type Item = HashMap<String, AttributeValue>;

mod ddb_json;
mod ddb_seed;
mod export_line;
mod number;
mod scan_response;

pub use ddb_json::{item_from_ddb_json, item_to_ddb_json, value_from_ddb_json, value_to_ddb_json};
pub use export_line::{parse_export_line, ExportChange, ExportLineError};
use number::Dec;
pub use number::Number;
pub use scan_response::{parse_scan_items, parse_scan_response, Declined};

/// What to do with U+0000 inside strings (and map keys) — PostgreSQL text and jsonb cannot store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NulPolicy {
    /// Fail the item with [`ValueError::Nul`].
    #[default]
    Reject,
    /// Remove every U+0000.
    Strip,
    /// Replace every U+0000 with U+FFFD.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("invalid DynamoDB number {0:?}")]
    InvalidNumber(String),
    /// `path` is the attribute path (`a.b[3].c`); a U+0000 inside a name in the path is shown as `\0`.
    #[error("text at {path} contains U+0000, which PostgreSQL cannot store")]
    Nul { path: String },
    #[error("unsupported attribute type at {path}")]
    Unsupported { path: String },
    #[error("invalid DynamoDB JSON: {0}")]
    DdbJson(String),
}

/// A rejected U+0000 (the caller knows the path).
struct NulFound;

/// Appends `s` as a JSON string literal.
fn write_str(s: &str, nul: NulPolicy, out: &mut String) -> Result<(), NulFound> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, &c) in s.as_bytes().iter().enumerate() {
        if c >= 0x20 && c != b'"' && c != b'\\' {
            continue;
        }
        // `c` is ASCII, so `i` and `i + 1` are char boundaries.
        out.push_str(&s[start..i]);
        start = i + 1;
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            0 => match nul {
                NulPolicy::Reject => return Err(NulFound),
                NulPolicy::Strip => {}
                NulPolicy::Replace => out.push('\u{FFFD}'),
            },
            _ => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(c >> 4)]));
                out.push(char::from(HEX[usize::from(c & 15)]));
            }
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
    Ok(())
}

/// One step of an attribute path.
#[derive(Clone, Copy)]
pub(super) enum Seg<'a> {
    /// Top-level attribute name.
    Attr(&'a str),
    /// Map key below the top level (`.key`).
    Field(&'a str),
    /// List index (`[i]`).
    Index(usize),
}

pub(super) fn push_seg(out: &mut String, seg: Seg<'_>) {
    let name = match seg {
        Seg::Attr(k) => k,
        Seg::Field(k) => {
            out.push('.');
            k
        }
        Seg::Index(i) => {
            let _ = write!(out, "[{i}]");
            return;
        }
    };
    for part in name.split('\0').enumerate() {
        if part.0 > 0 {
            out.push_str("\\0");
        }
        out.push_str(part.1);
    }
}

/// Prefixes the path of a path-carrying error with `seg` (error path only).
fn nest(e: ValueError, seg: Seg<'_>) -> ValueError {
    let prefix = |rel: String| {
        let mut p = String::with_capacity(rel.len() + 16);
        push_seg(&mut p, seg);
        p.push_str(&rel);
        p
    };
    match e {
        ValueError::Nul { path } => ValueError::Nul { path: prefix(path) },
        ValueError::Unsupported { path } => ValueError::Unsupported { path: prefix(path) },
        other => other,
    }
}

fn nul_at(seg: Seg<'_>) -> ValueError {
    nest(
        ValueError::Nul {
            path: String::new(),
        },
        seg,
    )
}

fn write_number(s: &str, out: &mut String) -> Result<(), ValueError> {
    Dec::parse(s)
        .ok_or_else(|| ValueError::InvalidNumber(s.to_owned()))?
        .write(out);
    Ok(())
}

fn write_b64(b: &[u8], out: &mut String) {
    out.push('"');
    STANDARD.encode_string(b, out);
    out.push('"');
}

/// Writes `{...}` with keys sorted bytewise; error paths are relative to the map.
fn write_map(
    m: &HashMap<String, AttributeValue>,
    nul: NulPolicy,
    top: bool,
    out: &mut String,
) -> Result<(), ValueError> {
    let seg = |k| if top { Seg::Attr(k) } else { Seg::Field(k) };
    // Only with Strip/Replace and a NUL in some key: sort by the cleaned key.
    let clean = nul != NulPolicy::Reject && m.keys().any(|k| k.contains('\0'));
    let rep = if nul == NulPolicy::Strip {
        ""
    } else {
        "\u{FFFD}"
    };
    let mut entries: Vec<(Cow<'_, str>, &str, &AttributeValue)> = m
        .iter()
        .map(|(k, v)| match clean && k.contains('\0') {
            true => (Cow::Owned(k.replace('\0', rep)), k.as_str(), v),
            false => (Cow::Borrowed(k.as_str()), k.as_str(), v),
        })
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if clean {
        // Keys that collide once cleaned would silently lose data.
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            let k = if w[0].1.contains('\0') {
                w[0].1
            } else {
                w[1].1
            };
            return Err(nul_at(seg(k)));
        }
    }
    out.push('{');
    for (i, (key, orig, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(key, nul, out).map_err(|_| nul_at(seg(orig)))?;
        out.push(':');
        write_value(v, nul, out).map_err(|e| nest(e, seg(orig)))?;
    }
    out.push('}');
    Ok(())
}

fn write_list<T>(
    xs: &[T],
    out: &mut String,
    mut f: impl FnMut(&T, &mut String) -> Result<(), ValueError>,
) -> Result<(), ValueError> {
    out.push('[');
    for (i, x) in xs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        f(x, out)?;
    }
    out.push(']');
    Ok(())
}

/// Writes one value; error paths are relative to `v`.
fn write_value(v: &AttributeValue, nul: NulPolicy, out: &mut String) -> Result<(), ValueError> {
    let whole = |_| ValueError::Nul {
        path: String::new(),
    };
    match v {
        AttributeValue::S(s) => write_str(s, nul, out).map_err(whole)?,
        AttributeValue::N(n) => write_number(n, out)?,
        AttributeValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        AttributeValue::Null(_) => out.push_str("null"),
        AttributeValue::B(b) => write_b64(b.as_ref(), out),
        AttributeValue::M(m) => write_map(m, nul, false, out)?,
        AttributeValue::L(l) => {
            let mut i = 0;
            write_list(l, out, |x, out| {
                let r = write_value(x, nul, out).map_err(|e| nest(e, Seg::Index(i)));
                i += 1;
                r
            })?;
        }
        AttributeValue::Ss(ss) => {
            let mut refs: Vec<&str> = ss.iter().map(String::as_str).collect();
            refs.sort_unstable();
            // A NUL inside a set element is reported at the set's path.
            write_list(&refs, out, |s, out| write_str(s, nul, out).map_err(whole))?;
        }
        AttributeValue::Ns(ns) => {
            let mut nums = Vec::with_capacity(ns.len());
            for s in ns {
                nums.push(Dec::parse(s).ok_or_else(|| ValueError::InvalidNumber(s.clone()))?);
            }
            nums.sort_unstable_by(Dec::cmp);
            write_list(&nums, out, |d, out| {
                d.write(out);
                Ok(())
            })?;
        }
        AttributeValue::Bs(bs) => {
            let mut refs: Vec<&[u8]> = bs.iter().map(Blob::as_ref).collect();
            refs.sort_unstable();
            write_list(&refs, out, |b, out| {
                write_b64(b, out);
                Ok(())
            })?;
        }
        _ => {
            return Err(ValueError::Unsupported {
                path: String::new(),
            })
        }
    }
    Ok(())
}

/// Write the JSON encoding of one item (an object whose keys are sorted bytewise) into `out`.
///
/// S → string; N → exact number; BOOL; NULL → null; M → object (keys sorted); L → array;
/// B → padded standard base64 string; SS → strings sorted bytewise; NS → numbers sorted
/// numerically; BS → base64 strings sorted by raw bytes. U+0000 in strings and keys is
/// handled per `nul` (with Strip/Replace, keys that collide once cleaned are a `Nul` error).
/// On error, `out` may contain a partial write; callers truncate it.
pub fn write_item_json(item: &Item, nul: NulPolicy, out: &mut String) -> Result<(), ValueError> {
    write_map(item, nul, true, out)
}

/// Like [`write_item_json`] for one value. `path` is the attribute path of `v` (for
/// example `"a.b[3]"`); it is only read, to build error paths, and is left unchanged.
pub fn write_value_json(
    v: &AttributeValue,
    nul: NulPolicy,
    path: &mut String,
    out: &mut String,
) -> Result<(), ValueError> {
    write_value(v, nul, out).map_err(|e| {
        let full = |rel: String| {
            let rel = if path.is_empty() {
                rel.strip_prefix('.').unwrap_or(&rel)
            } else {
                &rel
            };
            format!("{path}{rel}")
        };
        match e {
            ValueError::Nul { path } => ValueError::Nul { path: full(path) },
            ValueError::Unsupported { path } => ValueError::Unsupported { path: full(path) },
            other => other,
        }
    })
}

/// Estimated heap bytes an item holds (its maps, strings and vectors; not the allocator's
/// rounding), for `--max-memory`.
pub fn approx_bytes(item: &Item) -> usize {
    map_bytes(item)
}

fn map_bytes(m: &HashMap<String, AttributeValue>) -> usize {
    // A hashbrown slot: the entry and one control byte.
    const SLOT: usize = std::mem::size_of::<(String, AttributeValue)>() + 1;
    m.capacity() * SLOT
        + m.iter()
            .map(|(k, v)| k.len() + value_bytes(v))
            .sum::<usize>()
}

fn value_bytes(v: &AttributeValue) -> usize {
    use std::mem::size_of;
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Ss(xs) | AttributeValue::Ns(xs) => {
            xs.len() * size_of::<String>() + xs.iter().map(String::len).sum::<usize>()
        }
        AttributeValue::Bs(xs) => {
            xs.len() * size_of::<Blob>() + xs.iter().map(|b| b.as_ref().len()).sum::<usize>()
        }
        AttributeValue::M(m) => map_bytes(m),
        AttributeValue::L(l) => {
            l.len() * size_of::<AttributeValue>() + l.iter().map(value_bytes).sum::<usize>()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod export_line_tests;
#[cfg(test)]
mod tests;
