//! DynamoDB attribute values → JSON text for PostgreSQL `jsonb`, plus lossless
//! DynamoDB JSON (`{"S": ..}`, `{"N": ..}`, ...) for checkpoints and the rejects file.
//!
//! Numbers are exact decimals ([`Number`]) and never pass through `f64`. The JSON
//! writers are on the per-item hot path: they append to a caller buffer, build no
//! `serde_json::Value`, and build error paths (`"a.b[3].c"`) only when an error occurs.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::{self, Write as _};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

/// One DynamoDB item: attribute name → value.
pub type Item = HashMap<String, AttributeValue>;

/// Longest plain-notation number text; longer numbers are written in scientific notation.
const MAX_PLAIN_LEN: i128 = 48;

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

/// Borrowed normalised decimal: `(-1)^neg * digits(hi ++ lo) * 10^exp`, where the
/// concatenated digit string has no leading or trailing zeros (empty for zero).
#[derive(Clone, Copy)]
struct Dec<'a> {
    neg: bool,
    hi: &'a str,
    lo: &'a str,
    exp: i64,
}

fn eat_sign(b: &[u8], i: &mut usize) -> bool {
    match b.get(*i) {
        Some(b'-') => {
            *i += 1;
            true
        }
        Some(b'+') => {
            *i += 1;
            false
        }
        _ => false,
    }
}

fn eat_digits(b: &[u8], i: &mut usize) -> usize {
    let start = *i;
    while b.get(*i).is_some_and(u8::is_ascii_digit) {
        *i += 1;
    }
    start
}

impl<'a> Dec<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let b = s.as_bytes();
        let mut i = 0;
        let neg = eat_sign(b, &mut i);
        let start = eat_digits(b, &mut i);
        let mut hi = &s[start..i];
        let mut lo = "";
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = eat_digits(b, &mut i);
            lo = &s[start..i];
        }
        if hi.is_empty() && lo.is_empty() {
            return None;
        }
        let mut e: i64 = 0;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            let eneg = eat_sign(b, &mut i);
            let start = eat_digits(b, &mut i);
            if start == i {
                return None;
            }
            for &c in &b[start..i] {
                let d = i64::from(c - b'0');
                e = e.checked_mul(10)?.checked_add(if eneg { -d } else { d })?;
            }
        }
        if i != b.len() {
            return None;
        }
        let mut exp = e.checked_sub(i64::try_from(lo.len()).ok()?)?;
        hi = hi.trim_start_matches('0');
        if hi.is_empty() {
            lo = lo.trim_start_matches('0');
        }
        let trimmed = lo.trim_end_matches('0');
        exp = exp.checked_add(i64::try_from(lo.len() - trimmed.len()).ok()?)?;
        lo = trimmed;
        if lo.is_empty() {
            let trimmed = hi.trim_end_matches('0');
            exp = exp.checked_add(i64::try_from(hi.len() - trimmed.len()).ok()?)?;
            hi = trimmed;
        }
        if hi.is_empty() && lo.is_empty() {
            return Some(Dec {
                neg: false,
                hi,
                lo,
                exp: 0,
            });
        }
        Some(Dec { neg, hi, lo, exp })
    }

    fn len(&self) -> usize {
        self.hi.len() + self.lo.len()
    }

    fn digits(&self) -> impl Iterator<Item = u8> + 'a {
        self.hi.bytes().chain(self.lo.bytes())
    }

    /// Exponent of the leading digit (scientific notation exponent).
    fn adjusted(&self) -> i128 {
        i128::from(self.exp) + self.len() as i128 - 1
    }

    fn signum(&self) -> i8 {
        match (self.len(), self.neg) {
            (0, _) => 0,
            (_, true) => -1,
            (_, false) => 1,
        }
    }

    /// Appends digits `from..to` of the concatenated digit string.
    fn push_digits(&self, out: &mut String, from: usize, to: usize) {
        let h = self.hi.len();
        if from < h {
            out.push_str(&self.hi[from..to.min(h)]);
        }
        if to > h {
            out.push_str(&self.lo[from.max(h) - h..to - h]);
        }
    }

    fn write(&self, out: &mut String) {
        let len = self.len();
        if len == 0 {
            out.push('0');
            return;
        }
        if self.neg {
            out.push('-');
        }
        let (n, exp) = (len as i128, i128::from(self.exp));
        let plain_len = i128::from(self.neg)
            + if exp >= 0 {
                n + exp
            } else if n > -exp {
                n + 1
            } else {
                2 - exp
            };
        if plain_len <= MAX_PLAIN_LEN {
            // All quantities below are bounded by MAX_PLAIN_LEN.
            if exp >= 0 {
                self.push_digits(out, 0, len);
                out.extend(std::iter::repeat_n('0', exp as usize));
            } else if n > -exp {
                let point = (n + exp) as usize;
                self.push_digits(out, 0, point);
                out.push('.');
                self.push_digits(out, point, len);
            } else {
                out.push_str("0.");
                out.extend(std::iter::repeat_n('0', (-exp - n) as usize));
                self.push_digits(out, 0, len);
            }
        } else {
            self.push_digits(out, 0, 1);
            if len > 1 {
                out.push('.');
                self.push_digits(out, 1, len);
            }
            let adj = self.adjusted();
            out.push_str(if adj < 0 { "E-" } else { "E+" });
            let _ = write!(out, "{}", adj.unsigned_abs());
        }
    }

    fn cmp(&self, other: &Dec<'_>) -> Ordering {
        let (sa, sb) = (self.signum(), other.signum());
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        let mag = self
            .adjusted()
            .cmp(&other.adjusted())
            .then_with(|| self.digits().cmp(other.digits()));
        if self.neg {
            mag.reverse()
        } else {
            mag
        }
    }

    fn as_i64(&self) -> Option<i64> {
        if self.len() == 0 {
            return Some(0);
        }
        if self.exp < 0 || self.adjusted() >= 19 {
            return None;
        }
        // At most 19 integer digits: fits in i128 without overflow.
        let mut m = self
            .digits()
            .fold(0i128, |m, d| m * 10 + i128::from(d - b'0'));
        for _ in 0..self.exp {
            m *= 10;
        }
        i64::try_from(if self.neg { -m } else { m }).ok()
    }
}

/// An exact decimal parsed from a DynamoDB N string (never through f64).
///
/// value = (-1)^negative * digits * 10^exponent; `digits` has no leading or trailing
/// zeros, and zero is `digits == ""` with `negative == false` and `exponent == 0`, so
/// structural equality is numeric equality.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Number {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (at least one mantissa digit); keeps all digits.
    pub fn parse(s: &str) -> Result<Number, ValueError> {
        let d = Dec::parse(s).ok_or_else(|| ValueError::InvalidNumber(s.to_owned()))?;
        let mut digits = String::with_capacity(d.len());
        digits.push_str(d.hi);
        digits.push_str(d.lo);
        Ok(Number {
            negative: d.neg,
            digits,
            exponent: d.exp,
        })
    }

    fn dec(&self) -> Dec<'_> {
        Dec {
            neg: self.negative,
            hi: &self.digits,
            lo: "",
            exp: self.exponent,
        }
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// Significant digits (empty for zero).
    pub fn digits(&self) -> &str {
        &self.digits
    }

    pub fn exponent(&self) -> i64 {
        self.exponent
    }

    /// Appends a JSON number with every significant digit: plain notation when that takes
    /// at most 48 characters, otherwise `d.dddE+x` / `dE-x`.
    pub fn write_json(&self, out: &mut String) {
        self.dec().write(out);
    }

    pub fn to_json_string(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    pub fn is_integer(&self) -> bool {
        self.exponent >= 0
    }

    /// Numeric order.
    pub fn cmp_value(&self, other: &Number) -> Ordering {
        self.dec().cmp(&other.dec())
    }

    /// `Some` only if integral and within `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.dec().as_i64()
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_value(other)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

impl std::str::FromStr for Number {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Number::parse(s)
    }
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
enum Seg<'a> {
    /// Top-level attribute name.
    Attr(&'a str),
    /// Map key below the top level (`.key`).
    Field(&'a str),
    /// List index (`[i]`).
    Index(usize),
}

fn push_seg(out: &mut String, seg: Seg<'_>) {
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

fn strings(xs: &[String]) -> Value {
    Value::Array(xs.iter().cloned().map(Value::String).collect())
}

/// DynamoDB JSON of one item: `{"name": {"S": "..."}, ...}`.
pub fn item_to_ddb_json(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), value_to_ddb_json(v)))
            .collect(),
    )
}

/// DynamoDB JSON of one value (`{"N": "1.50"}` keeps the original number text).
/// An unsupported (unknown) value becomes `{"UNKNOWN": null}`, which does not parse back.
pub fn value_to_ddb_json(v: &AttributeValue) -> Value {
    let (tag, val) = match v {
        AttributeValue::S(s) => ("S", Value::String(s.clone())),
        AttributeValue::N(n) => ("N", Value::String(n.clone())),
        AttributeValue::B(b) => ("B", Value::String(STANDARD.encode(b.as_ref()))),
        AttributeValue::Bool(b) => ("BOOL", Value::Bool(*b)),
        AttributeValue::Null(b) => ("NULL", Value::Bool(*b)),
        AttributeValue::M(m) => ("M", item_to_ddb_json(m)),
        AttributeValue::L(l) => ("L", Value::Array(l.iter().map(value_to_ddb_json).collect())),
        AttributeValue::Ss(ss) => ("SS", strings(ss)),
        AttributeValue::Ns(ns) => ("NS", strings(ns)),
        AttributeValue::Bs(bs) => (
            "BS",
            Value::Array(
                bs.iter()
                    .map(|b| Value::String(STANDARD.encode(b.as_ref())))
                    .collect(),
            ),
        ),
        _ => ("UNKNOWN", Value::Null),
    };
    let mut o = Map::new();
    o.insert(tag.to_owned(), val);
    Value::Object(o)
}

fn bad(path: &str, msg: impl fmt::Display) -> ValueError {
    if path.is_empty() {
        ValueError::DdbJson(msg.to_string())
    } else {
        ValueError::DdbJson(format!("at {path}: {msg}"))
    }
}

fn json_str<'v>(v: &'v Value, path: &str, tag: &str) -> Result<&'v str, ValueError> {
    v.as_str()
        .ok_or_else(|| bad(path, format_args!("{tag} must be a string")))
}

fn json_arr<'v>(v: &'v Value, path: &str, tag: &str) -> Result<&'v [Value], ValueError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| bad(path, format_args!("{tag} must be an array")))
}

fn json_bool(v: &Value, path: &str, tag: &str) -> Result<bool, ValueError> {
    v.as_bool()
        .ok_or_else(|| bad(path, format_args!("{tag} must be a boolean")))
}

fn blob(v: &Value, path: &str, tag: &str) -> Result<Blob, ValueError> {
    let s = json_str(v, path, tag)?;
    STANDARD
        .decode(s)
        .map(Blob::new)
        .map_err(|e| bad(path, format_args!("{tag} is not base64: {e}")))
}

fn string_list(v: &Value, path: &str, tag: &str) -> Result<Vec<String>, ValueError> {
    json_arr(v, path, tag)?
        .iter()
        .map(|x| json_str(x, path, tag).map(str::to_owned))
        .collect()
}

fn map_from(obj: &Map<String, Value>, top: bool, path: &mut String) -> Result<Item, ValueError> {
    let mut item = Item::with_capacity(obj.len());
    for (k, v) in obj {
        let len = path.len();
        push_seg(path, if top { Seg::Attr(k) } else { Seg::Field(k) });
        let r = value_from(v, path);
        path.truncate(len);
        item.insert(k.clone(), r?);
    }
    Ok(item)
}

fn value_from(v: &Value, path: &mut String) -> Result<AttributeValue, ValueError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad(path, "expected an object with one type key"))?;
    let mut it = obj.iter();
    let (tag, val) = match (it.next(), it.next()) {
        (Some(one), None) => one,
        _ => {
            return Err(bad(
                path,
                format_args!("expected one type key, found {}", obj.len()),
            ))
        }
    };
    let p = path.as_str();
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(json_str(val, p, tag)?.to_owned()),
        "N" => AttributeValue::N(json_str(val, p, tag)?.to_owned()),
        "B" => AttributeValue::B(blob(val, p, tag)?),
        "BOOL" => AttributeValue::Bool(json_bool(val, p, tag)?),
        "NULL" => AttributeValue::Null(json_bool(val, p, tag)?),
        "SS" => AttributeValue::Ss(string_list(val, p, tag)?),
        "NS" => AttributeValue::Ns(string_list(val, p, tag)?),
        "BS" => AttributeValue::Bs(
            json_arr(val, p, tag)?
                .iter()
                .map(|x| blob(x, p, tag))
                .collect::<Result<_, _>>()?,
        ),
        "M" => {
            let m = val
                .as_object()
                .ok_or_else(|| bad(p, "M must be an object"))?;
            AttributeValue::M(map_from(m, false, path)?)
        }
        "L" => {
            let xs = json_arr(val, p, tag)?;
            let mut l = Vec::with_capacity(xs.len());
            for (i, x) in xs.iter().enumerate() {
                let len = path.len();
                push_seg(path, Seg::Index(i));
                let r = value_from(x, path);
                path.truncate(len);
                l.push(r?);
            }
            AttributeValue::L(l)
        }
        other => return Err(bad(p, format_args!("unknown type tag {other:?}"))),
    })
}

/// Parses a DynamoDB JSON item (`{"name": {"S": "..."}, ...}`).
pub fn item_from_ddb_json(v: &Value) -> Result<Item, ValueError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("", "item must be an object of attributes"))?;
    map_from(obj, true, &mut String::new())
}

/// Parses one DynamoDB JSON value (`{"N": "1.50"}`); N strings are kept as written.
pub fn value_from_ddb_json(v: &Value) -> Result<AttributeValue, ValueError> {
    value_from(v, &mut String::new())
}

#[cfg(test)]
mod tests;
