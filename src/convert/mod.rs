//! Typed conversions, pure: one DynamoDB attribute value into a PostgreSQL column value of a
//! declared type, in PostgreSQL's text input form (bytea kept raw). See the README's table.
//!
//! On the per-item hot path: each value is written straight into the one `String` it ends up
//! in; array elements share one scratch buffer; numbers never pass through `f64` except to
//! range-check `real` / `double precision`.

use std::borrow::Cow;
use std::fmt::Write as _;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike};

use crate::value::{self, NulPolicy, Number, ValueError};

/// A value of a row, in PostgreSQL's text input form (bytea kept raw).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cell {
    Null,
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaseType {
    Text,
    SmallInt,
    Integer,
    BigInt,
    Numeric,
    Real,
    Double,
    Boolean,
    Uuid,
    Timestamptz,
    Timestamp,
    Date,
    Jsonb,
    Json,
    Bytea,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ColType {
    pub base: BaseType,
    pub array: bool,
}

impl ColType {
    /// Parse a type name as written in a mapping file: case-insensitive, surrounding (and
    /// repeated inner) spaces ignored, common aliases, `T[]` for arrays of scalar types.
    pub fn parse(s: &str) -> Option<ColType> {
        let lower = s.to_ascii_lowercase();
        let (name, array) = match lower.trim().strip_suffix("[]") {
            Some(n) => (n, true),
            None => (lower.trim(), false),
        };
        let mut words = name.split_whitespace();
        let (first, rest) = (words.next()?, words.collect::<Vec<_>>().join(" "));
        let base = match (first, rest.as_str()) {
            ("text", "") => BaseType::Text,
            ("smallint" | "int2", "") => BaseType::SmallInt,
            ("integer" | "int" | "int4", "") => BaseType::Integer,
            ("bigint" | "int8", "") => BaseType::BigInt,
            ("numeric" | "decimal", "") => BaseType::Numeric,
            ("real" | "float4", "") => BaseType::Real,
            ("double", "precision" | "") | ("float8", "") => BaseType::Double,
            ("boolean" | "bool", "") => BaseType::Boolean,
            ("uuid", "") => BaseType::Uuid,
            ("timestamptz", "") | ("timestamp", "with time zone") => BaseType::Timestamptz,
            ("timestamp", "" | "without time zone") => BaseType::Timestamp,
            ("date", "") => BaseType::Date,
            ("jsonb", "") if !array => BaseType::Jsonb,
            ("json", "") if !array => BaseType::Json,
            ("bytea", "") => BaseType::Bytea,
            _ => return None,
        };
        Some(ColType { base, array })
    }

    /// Canonical SQL spelling of the base type (no `[]`).
    pub fn base_sql(&self) -> &'static str {
        match self.base {
            BaseType::Text => "text",
            BaseType::SmallInt => "smallint",
            BaseType::Integer => "integer",
            BaseType::BigInt => "bigint",
            BaseType::Numeric => "numeric",
            BaseType::Real => "real",
            BaseType::Double => "double precision",
            BaseType::Boolean => "boolean",
            BaseType::Uuid => "uuid",
            BaseType::Timestamptz => "timestamptz",
            BaseType::Timestamp => "timestamp",
            BaseType::Date => "date",
            BaseType::Jsonb => "jsonb",
            BaseType::Json => "json",
            BaseType::Bytea => "bytea",
        }
    }

    /// Canonical SQL spelling, `[]` appended for arrays.
    pub fn sql(&self) -> String {
        let b = self.base_sql();
        if self.array {
            format!("{b}[]")
        } else {
            b.to_string()
        }
    }
}

/// How strings and numbers are read as times.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// S: RFC 3339 / ISO 8601 (with or without offset — none means UTC —, 'T' or space
    /// separator, optional fractional seconds, optional seconds); date-only "YYYY-MM-DD"
    /// is midnight UTC. A numeric S is *not* read as an epoch (ambiguous). N: epoch seconds,
    /// fraction allowed ("1700000000.5").
    #[default]
    Auto,
    /// N (or a numeric S): epoch milliseconds, fraction allowed.
    EpochMillis,
    /// N (or a numeric S): epoch seconds, fraction allowed.
    EpochSeconds,
    /// S parsed with this chrono strftime pattern (no offset in the pattern: UTC; a date-only
    /// pattern: midnight). N values are still read as epoch seconds.
    Pattern(String),
}

impl TimeFormat {
    /// "auto" | "epoch_millis" | "epoch_seconds"; anything else is a strftime pattern.
    pub fn parse(s: &str) -> TimeFormat {
        match s.trim() {
            "auto" => TimeFormat::Auto,
            "epoch_millis" => TimeFormat::EpochMillis,
            "epoch_seconds" => TimeFormat::EpochSeconds,
            _ => TimeFormat::Pattern(s.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// `found` is a DynamoDB type name: S, N, B, BOOL, NULL, M, L, SS, NS, BS.
    #[error("{found} value cannot be stored as {ty}")]
    TypeMismatch { found: &'static str, ty: String },
    /// `value` is the input, truncated to 80 characters. For arrays, `why` starts with
    /// `element <index>: `.
    #[error("{} is not a valid {ty}: {why}", value_words(.value))]
    Invalid {
        value: String,
        ty: String,
        why: String,
    },
    #[error("{value} is out of range for {ty}")]
    OutOfRange { value: String, ty: String },
    /// U+0000 in text (path empty, or `[index]` inside an array), invalid N, ...
    #[error(transparent)]
    Value(#[from] ValueError),
}

/// An input value in a reason: `value 1.5`, printable (see `checkpoint::printable`).
fn value_words(v: &str) -> String {
    if v.is_empty() {
        return "an empty value".into();
    }
    format!("value {}", crate::checkpoint::printable(v))
}

pub struct ConvertOpts<'a> {
    pub nul: NulPolicy,
    pub time: &'a TimeFormat,
}

/// The DynamoDB type name of a value: S, N, B, BOOL, NULL, M, L, SS, NS, BS.
pub fn type_name(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::M(_) => "M",
        AttributeValue::L(_) => "L",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        _ => "unknown",
    }
}

/// Convert `v` for a column of type `ty`. A NULL attribute is `Cell::Null` (the caller
/// handles missing/required).
///
/// `real` / `double precision` are lossy by nature: the exact number text is passed on and
/// PostgreSQL rounds it to the nearest float; only values PostgreSQL would refuse (overflow
/// to infinity, or a non-zero value that underflows to 0) are `OutOfRange` here, so one bad
/// value cannot fail a whole COPY batch. `numeric` likewise refuses what PostgreSQL's numeric
/// cannot hold (more than 131072 integer or 16383 fractional digits) — never a DynamoDB N.
pub fn convert(v: &AttributeValue, ty: &ColType, opts: &ConvertOpts) -> Result<Cell, ConvertError> {
    match v {
        AttributeValue::Null(_) => return Ok(Cell::Null),
        _ if ty.array => return array(v, ty, opts),
        _ => {}
    }
    let mut out = String::new();
    Ok(match scalar(Val::Attr(v), ty.base, opts, &mut out)? {
        Out::Text => Cell::Text(out),
        Out::Null => Cell::Null,
        Out::Bytes(b) => Cell::Bytes(b.to_vec()),
    })
}

/// A borrowed scalar: a whole attribute, or one element of a set.
#[derive(Clone, Copy)]
enum Val<'a> {
    Attr(&'a AttributeValue),
    S(&'a str),
    N(&'a str),
    B(&'a [u8]),
}

impl<'a> Val<'a> {
    fn found(self) -> &'static str {
        match self {
            Val::Attr(a) => type_name(a),
            Val::S(_) => "S",
            Val::N(_) => "N",
            Val::B(_) => "B",
        }
    }

    /// As an attribute (a set element has none of its own: built, on this rare path).
    fn attr(self) -> Cow<'a, AttributeValue> {
        match self {
            Val::Attr(a) => Cow::Borrowed(a),
            Val::S(s) => Cow::Owned(AttributeValue::S(s.to_string())),
            Val::N(n) => Cow::Owned(AttributeValue::N(n.to_string())),
            Val::B(b) => Cow::Owned(AttributeValue::B(b.to_vec().into())),
        }
    }

    fn s(self) -> Option<&'a str> {
        match self {
            Val::S(s) => Some(s),
            Val::Attr(AttributeValue::S(s)) => Some(s),
            _ => None,
        }
    }

    fn n(self) -> Option<&'a str> {
        match self {
            Val::N(n) => Some(n),
            Val::Attr(AttributeValue::N(n)) => Some(n),
            _ => None,
        }
    }
}

/// What [`scalar`] produced: text appended to `out`, NULL, or raw bytes.
enum Out<'a> {
    Text,
    Null,
    Bytes(&'a [u8]),
}

fn ty_sql(base: BaseType) -> String {
    ColType { base, array: false }.sql()
}

/// At most 80 characters of `s`.
fn short(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_string(),
    }
}

fn invalid(value: &str, base: BaseType, why: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        value: short(value),
        ty: ty_sql(base),
        why: why.into(),
    }
}

fn out_of_range(value: &str, base: BaseType) -> ConvertError {
    ConvertError::OutOfRange {
        value: short(value),
        ty: ty_sql(base),
    }
}

fn mismatch(v: Val, base: BaseType) -> ConvertError {
    ConvertError::TypeMismatch {
        found: v.found(),
        ty: ty_sql(base),
    }
}

/// Appends `s` with the NUL policy applied.
fn push_text(s: &str, nul: NulPolicy, out: &mut String) -> Result<(), ConvertError> {
    if !s.contains('\0') {
        out.push_str(s);
        return Ok(());
    }
    let with = match nul {
        NulPolicy::Reject => {
            return Err(ValueError::Nul {
                path: String::new(),
            }
            .into())
        }
        NulPolicy::Strip => "",
        NulPolicy::Replace => "\u{FFFD}",
    };
    out.reserve(s.len());
    for (i, part) in s.split('\0').enumerate() {
        if i > 0 {
            out.push_str(with);
        }
        out.push_str(part);
    }
    Ok(())
}

/// The number an N, or a numeric S (type drift), holds, with its raw text.
fn number_of<'a>(v: Val<'a>, base: BaseType) -> Result<(Number, &'a str), ConvertError> {
    if let Some(n) = v.n() {
        return Ok((Number::parse(n)?, n));
    }
    match v.s() {
        Some(s) => Number::parse(s.trim())
            .map(|n| (n, s))
            .map_err(|_| invalid(s, base, "not a number")),
        None => Err(mismatch(v, base)),
    }
}

/// Converts one non-array value, appending text to `out`.
fn scalar<'a>(
    v: Val<'a>,
    base: BaseType,
    opts: &ConvertOpts,
    out: &mut String,
) -> Result<Out<'a>, ConvertError> {
    match (v, base) {
        (Val::Attr(AttributeValue::Null(_)), _) => return Ok(Out::Null),
        (_, BaseType::Jsonb | BaseType::Json) => {
            value::write_value_json(&v.attr(), opts.nul, &mut String::new(), out)?;
            return Ok(Out::Text);
        }
        (Val::Attr(AttributeValue::M(_) | AttributeValue::L(_)), _) => {
            return Err(mismatch(v, base))
        }
        _ => {}
    }
    match base {
        BaseType::Text => match (v.s(), v.n(), v) {
            (Some(s), _, _) => push_text(s, opts.nul, out)?,
            (_, Some(n), _) => Number::parse(n)?.write_json(out),
            (_, _, Val::Attr(AttributeValue::Bool(b))) => push_bool(*b, out),
            _ => return Err(mismatch(v, base)),
        },
        BaseType::Numeric => {
            let (n, raw) = number_of(v, base)?;
            let (len, exp) = (n.digits().len() as i128, i128::from(n.exponent()));
            if len + exp > 131_072 || -exp > 16_383 {
                return Err(out_of_range(raw, base));
            }
            n.write_json(out);
        }
        BaseType::SmallInt | BaseType::Integer | BaseType::BigInt => {
            let (n, raw) = number_of(v, base)?;
            if !n.is_integer() {
                return Err(invalid(raw, base, "not an integer"));
            }
            let (lo, hi) = match base {
                BaseType::SmallInt => (i64::from(i16::MIN), i64::from(i16::MAX)),
                BaseType::Integer => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => (i64::MIN, i64::MAX),
            };
            match n.as_i64() {
                Some(i) if (lo..=hi).contains(&i) => {
                    let _ = write!(out, "{i}");
                }
                _ => return Err(out_of_range(raw, base)),
            }
        }
        BaseType::Real | BaseType::Double => {
            let (n, raw) = number_of(v, base)?;
            let start = out.len();
            n.write_json(out);
            let (text, zero) = (&out[start..], n.digits().is_empty());
            // Rust's float parsing rounds correctly, as PostgreSQL's strtof/strtod do.
            let ok = if base == BaseType::Real {
                text.parse::<f32>()
                    .is_ok_and(|f| f.is_finite() && (f != 0.0 || zero))
            } else {
                text.parse::<f64>()
                    .is_ok_and(|f| f.is_finite() && (f != 0.0 || zero))
            };
            if !ok {
                out.truncate(start);
                return Err(out_of_range(raw, base));
            }
        }
        BaseType::Boolean => match (v, v.s(), v.n()) {
            (Val::Attr(AttributeValue::Bool(b)), _, _) => push_bool(*b, out),
            (_, Some(s), _) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "on" | "1" => push_bool(true, out),
                "false" | "f" | "no" | "n" | "off" | "0" => push_bool(false, out),
                _ => return Err(invalid(s, base, "expected true or false")),
            },
            (_, _, Some(n)) => match Number::parse(n)?.as_i64() {
                Some(0) => push_bool(false, out),
                Some(1) => push_bool(true, out),
                _ => return Err(invalid(n, base, "expected 0 or 1")),
            },
            _ => return Err(mismatch(v, base)),
        },
        BaseType::Uuid => {
            let s = v.s().ok_or_else(|| mismatch(v, base))?;
            let u = uuid::Uuid::parse_str(s.trim()).map_err(|e| invalid(s, base, e.to_string()))?;
            let mut buf = uuid::Uuid::encode_buffer();
            out.push_str(u.hyphenated().encode_lower(&mut buf));
        }
        BaseType::Timestamptz | BaseType::Timestamp | BaseType::Date => {
            let (t, raw) = instant(v, base, opts.time)?;
            write_time(t, raw, base, out)?;
        }
        BaseType::Bytea => match v {
            Val::B(b) => return Ok(Out::Bytes(b)),
            Val::Attr(AttributeValue::B(b)) => return Ok(Out::Bytes(b.as_ref())),
            _ => return Err(mismatch(v, base)),
        },
        BaseType::Jsonb | BaseType::Json => {} // handled above
    }
    Ok(Out::Text)
}

fn push_bool(b: bool, out: &mut String) {
    out.push_str(if b { "true" } else { "false" });
}

/// A point in time (UTC, naive) from an S or N value, with the raw text for errors.
fn instant<'a>(
    v: Val<'a>,
    base: BaseType,
    fmt: &TimeFormat,
) -> Result<(NaiveDateTime, &'a str), ConvertError> {
    if let Some(n) = v.n() {
        return epoch(n, *fmt == TimeFormat::EpochMillis, base).map(|t| (t, n));
    }
    let s = v.s().ok_or_else(|| mismatch(v, base))?;
    let t = match fmt {
        TimeFormat::EpochMillis => epoch(s, true, base)?,
        TimeFormat::EpochSeconds => epoch(s, false, base)?,
        TimeFormat::Auto => parse_iso(s.trim()).ok_or_else(|| {
            invalid(
                s,
                base,
                "expected RFC 3339 / ISO 8601, e.g. 2024-03-01T10:00:00Z",
            )
        })?,
        TimeFormat::Pattern(p) => {
            let st = s.trim();
            if let Ok(t) = DateTime::parse_from_str(st, p) {
                t.naive_utc()
            } else if let Ok(t) = NaiveDateTime::parse_from_str(st, p) {
                t
            } else {
                NaiveDate::parse_from_str(st, p)
                    .map(|d| d.and_time(NaiveTime::MIN))
                    .map_err(|e| invalid(s, base, format!("does not match the format {p}: {e}")))?
            }
        }
    };
    Ok((t, s))
}

/// Epoch seconds (or milliseconds), exactly, rounded half away from zero to microseconds.
fn epoch(raw: &str, millis: bool, base: BaseType) -> Result<NaiveDateTime, ConvertError> {
    let n = Number::parse(raw.trim()).map_err(|_| invalid(raw, base, "not an epoch number"))?;
    let d = n.digits().as_bytes();
    let len = d.len() as i128;
    let exp = i128::from(n.exponent()) - if millis { 3 } else { 0 };
    if len + exp > 18 {
        return Err(out_of_range(raw, base));
    }
    // The digit of weight 10^pos.
    let digit = |pos: i128| -> i128 {
        let idx = len - 1 - (pos - exp);
        match usize::try_from(idx).ok().and_then(|i| d.get(i)) {
            Some(c) => i128::from(c - b'0'),
            None => 0,
        }
    };
    let mut micros = (-6..len + exp)
        .rev()
        .fold(0i128, |m, pos| m * 10 + digit(pos));
    if digit(-7) >= 5 {
        micros += 1;
    }
    if n.is_negative() {
        micros = -micros;
    }
    let (secs, sub) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, (sub * 1000) as u32))
        .map(|t| t.naive_utc())
        .ok_or_else(|| out_of_range(raw, base))
}

/// RFC 3339 / ISO 8601 variants (offset → converted to UTC; none → UTC).
fn parse_iso(s: &str) -> Option<NaiveDateTime> {
    if s.len() == 10 {
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        return Some(d.and_time(NaiveTime::MIN));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_utc());
    }
    let (zoned, naive) = if s.as_bytes().get(10) == Some(&b' ') {
        (
            ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M%#z"],
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"],
        )
    } else {
        (
            ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z"],
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"],
        )
    };
    zoned
        .iter()
        .find_map(|f| DateTime::parse_from_str(s, f).ok().map(|t| t.naive_utc()))
        .or_else(|| {
            naive
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        })
}

/// Appends `t` (UTC) rounded to microseconds: timestamptz `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`,
/// timestamp `YYYY-MM-DD HH:MM:SS[.ffffff]`, date `YYYY-MM-DD`; years before 1 AD as
/// PostgreSQL writes them (`0044-03-15 ... BC`); before 4714-11-24 BC: `OutOfRange`.
fn write_time(
    t: NaiveDateTime,
    raw: &str,
    base: BaseType,
    out: &mut String,
) -> Result<(), ConvertError> {
    // Nanoseconds → microseconds, half up (a leap second's are ≥ 1e9 and carry over).
    let rounded = (i64::from(t.nanosecond()) + 500) / 1000;
    let t = t
        .with_nanosecond(0)
        .and_then(|t| t.checked_add_signed(TimeDelta::microseconds(rounded)))
        .filter(|t| t.date() >= NaiveDate::from_ymd_opt(-4713, 11, 24).unwrap_or(NaiveDate::MIN))
        .ok_or_else(|| out_of_range(raw, base))?;
    let (y, bc) = match t.year() {
        y if y <= 0 => (1 - y, true),
        y => (y, false),
    };
    let _ = write!(out, "{y:04}-{:02}-{:02}", t.month(), t.day());
    if base != BaseType::Date {
        let sep = if base == BaseType::Timestamptz {
            'T'
        } else {
            ' '
        };
        let _ = write!(
            out,
            "{sep}{:02}:{:02}:{:02}",
            t.hour(),
            t.minute(),
            t.second()
        );
        let micros = t.nanosecond() / 1000;
        if micros != 0 {
            let _ = write!(out, ".{micros:06}");
        }
        if base == BaseType::Timestamptz {
            out.push_str("+00:00");
        }
    }
    if bc {
        out.push_str(" BC");
    }
    Ok(())
}

/// A PostgreSQL array literal from a set or list whose every element converts.
fn array(v: &AttributeValue, ty: &ColType, opts: &ConvertOpts) -> Result<Cell, ConvertError> {
    let found = type_name(v);
    let mut out = String::with_capacity(64);
    match v {
        AttributeValue::Ss(x) => elements(x.iter().map(|s| Val::S(s)), found, ty, opts, &mut out),
        AttributeValue::Ns(x) => elements(x.iter().map(|n| Val::N(n)), found, ty, opts, &mut out),
        AttributeValue::Bs(x) => elements(
            x.iter().map(|b| Val::B(b.as_ref())),
            found,
            ty,
            opts,
            &mut out,
        ),
        AttributeValue::L(x) => elements(x.iter().map(Val::Attr), found, ty, opts, &mut out),
        _ => Err(ConvertError::TypeMismatch {
            found,
            ty: ty.sql(),
        }),
    }?;
    Ok(Cell::Text(out))
}

fn elements<'a>(
    it: impl Iterator<Item = Val<'a>>,
    found: &'static str,
    ty: &ColType,
    opts: &ConvertOpts,
    out: &mut String,
) -> Result<(), ConvertError> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut scratch = String::new();
    out.push('{');
    for (i, e) in it.enumerate() {
        if i > 0 {
            out.push(',');
        }
        scratch.clear();
        let cell = scalar(e, ty.base, opts, &mut scratch).map_err(|err| match err {
            ConvertError::Value(ValueError::Nul { path }) => {
                let sep = if path.is_empty() || path.starts_with('[') {
                    ""
                } else {
                    "."
                };
                ValueError::Nul {
                    path: format!("[{i}]{sep}{path}"),
                }
                .into()
            }
            other => ConvertError::Invalid {
                value: found.to_string(),
                ty: ty.sql(),
                why: format!("element {i}: {other}"),
            },
        })?;
        match cell {
            Out::Null => out.push_str("NULL"),
            Out::Text => {
                out.reserve(scratch.len() + 2);
                out.push('"');
                for c in scratch.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            Out::Bytes(b) => {
                out.reserve(2 * b.len() + 6);
                out.push_str("\"\\\\x");
                for &x in b {
                    out.push(HEX[usize::from(x >> 4)] as char);
                    out.push(HEX[usize::from(x & 15)] as char);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    Ok(())
}
#[cfg(test)]
mod tests;
