//! Typed conversions, pure: one DynamoDB attribute value into a PostgreSQL column value of a
//! declared type, in PostgreSQL's text input form (bytea kept raw). See the README's table.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::value::{self, NulPolicy, Number, ValueError};

/// A value of a row, in PostgreSQL's text input form (bytea kept raw).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// A type name as written in a mapping file (case-insensitive; common aliases; `T[]`).
    pub fn parse(s: &str) -> Option<ColType> {
        let s = s.trim().to_ascii_lowercase();
        let (name, array) = match s.strip_suffix("[]") {
            Some(n) => (n.trim_end().to_string(), true),
            None => (s, false),
        };
        let base = match name.as_str() {
            "text" => BaseType::Text,
            "smallint" | "int2" => BaseType::SmallInt,
            "integer" | "int" | "int4" => BaseType::Integer,
            "bigint" | "int8" => BaseType::BigInt,
            "numeric" | "decimal" => BaseType::Numeric,
            "real" | "float4" => BaseType::Real,
            "double precision" | "float8" | "double" => BaseType::Double,
            "boolean" | "bool" => BaseType::Boolean,
            "uuid" => BaseType::Uuid,
            "timestamptz" | "timestamp with time zone" => BaseType::Timestamptz,
            "timestamp" | "timestamp without time zone" => BaseType::Timestamp,
            "date" => BaseType::Date,
            "jsonb" => BaseType::Jsonb,
            "json" => BaseType::Json,
            "bytea" => BaseType::Bytea,
            _ => return None,
        };
        if array && (matches!(base, BaseType::Jsonb | BaseType::Json) || name.ends_with("[]")) {
            return None;
        }
        Some(ColType { base, array })
    }

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
    /// S: RFC 3339 / ISO 8601. N: epoch seconds.
    #[default]
    Auto,
    EpochMillis,
    EpochSeconds,
    /// A chrono strftime pattern for S values.
    Pattern(String),
}

impl TimeFormat {
    pub fn parse(s: &str) -> TimeFormat {
        match s {
            "auto" => TimeFormat::Auto,
            "epoch_millis" => TimeFormat::EpochMillis,
            "epoch_seconds" => TimeFormat::EpochSeconds,
            p => TimeFormat::Pattern(p.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{found} value cannot be stored as {ty}")]
    TypeMismatch { found: &'static str, ty: String },
    #[error("{value:?} is not a valid {ty}: {why}")]
    Invalid {
        value: String,
        ty: String,
        why: String,
    },
    #[error("{value} is out of range for {ty}")]
    OutOfRange { value: String, ty: String },
    #[error(transparent)]
    Value(#[from] ValueError),
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

fn short(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn invalid(value: &str, ty: BaseType, why: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        value: short(value),
        ty: ColType {
            base: ty,
            array: false,
        }
        .sql(),
        why: why.into(),
    }
}

fn mismatch(v: &AttributeValue, ty: &ColType) -> ConvertError {
    ConvertError::TypeMismatch {
        found: type_name(v),
        ty: ty.sql(),
    }
}

/// Convert `v` for a column of type `ty`. A NULL attribute is `Cell::Null`.
pub fn convert(v: &AttributeValue, ty: &ColType, opts: &ConvertOpts) -> Result<Cell, ConvertError> {
    if let AttributeValue::Null(_) = v {
        return Ok(Cell::Null);
    }
    if ty.array {
        return array(v, ty, opts);
    }
    scalar(v, ty.base, opts)
}

fn text_of(s: &str, nul: NulPolicy) -> Result<String, ConvertError> {
    if !s.contains('\0') {
        return Ok(s.to_string());
    }
    match nul {
        NulPolicy::Reject => Err(ValueError::Nul {
            path: String::new(),
        }
        .into()),
        NulPolicy::Strip => Ok(s.replace('\0', "")),
        NulPolicy::Replace => Ok(s.replace('\0', "\u{FFFD}")),
    }
}

/// The number an N, or a numeric S (type drift), holds.
fn number_of(v: &AttributeValue, base: BaseType) -> Result<(Number, &str), ConvertError> {
    match v {
        AttributeValue::N(n) => Ok((Number::parse(n)?, n)),
        AttributeValue::S(s) => Number::parse(s.trim())
            .map(|n| (n, s.as_str()))
            .map_err(|_| invalid(s, base, "not a number")),
        other => Err(mismatch(other, &ColType { base, array: false })),
    }
}

fn scalar(v: &AttributeValue, base: BaseType, opts: &ConvertOpts) -> Result<Cell, ConvertError> {
    let ty = ColType { base, array: false };
    let text = |s: String| Ok(Cell::Text(s));
    match base {
        BaseType::Text => match v {
            AttributeValue::S(s) => text(text_of(s, opts.nul)?),
            AttributeValue::N(n) => text(Number::parse(n)?.to_json_string()),
            AttributeValue::Bool(b) => text(b.to_string()),
            other => Err(mismatch(other, &ty)),
        },
        BaseType::Numeric => text(number_of(v, base)?.0.to_json_string()),
        BaseType::SmallInt | BaseType::Integer | BaseType::BigInt => {
            let (n, raw) = number_of(v, base)?;
            if !n.is_integer() {
                return Err(invalid(raw, base, "not an integer"));
            }
            let (lo, hi) = match base {
                BaseType::SmallInt => (i16::MIN as i64, i16::MAX as i64),
                BaseType::Integer => (i32::MIN as i64, i32::MAX as i64),
                _ => (i64::MIN, i64::MAX),
            };
            match n.as_i64() {
                Some(i) if (lo..=hi).contains(&i) => text(i.to_string()),
                _ => Err(ConvertError::OutOfRange {
                    value: short(raw),
                    ty: ty.sql(),
                }),
            }
        }
        BaseType::Real | BaseType::Double => {
            let (n, raw) = number_of(v, base)?;
            let s = n.to_json_string();
            let f: f64 = s.parse().map_err(|_| invalid(raw, base, "not a number"))?;
            let (max, min_pos) = if base == BaseType::Real {
                (f32::MAX as f64, f32::MIN_POSITIVE as f64 * 1e-7)
            } else {
                (f64::MAX, 5e-324)
            };
            let zero = n.cmp_value(&Number::parse("0")?) == std::cmp::Ordering::Equal;
            if !f.is_finite() || f.abs() > max || (!zero && f.abs() < min_pos) {
                return Err(ConvertError::OutOfRange {
                    value: short(raw),
                    ty: ty.sql(),
                });
            }
            text(s)
        }
        BaseType::Boolean => match v {
            AttributeValue::Bool(b) => text(b.to_string()),
            AttributeValue::S(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "1" => text("true".into()),
                "false" | "f" | "no" | "0" => text("false".into()),
                _ => Err(invalid(s, base, "expected true or false")),
            },
            AttributeValue::N(n) => match Number::parse(n)?.as_i64() {
                Some(0) => text("false".into()),
                Some(1) => text("true".into()),
                _ => Err(invalid(n, base, "expected 0 or 1")),
            },
            other => Err(mismatch(other, &ty)),
        },
        BaseType::Uuid => match v {
            AttributeValue::S(s) => uuid::Uuid::parse_str(s.trim())
                .map(|u| Cell::Text(u.hyphenated().to_string()))
                .map_err(|e| invalid(s, base, e.to_string())),
            other => Err(mismatch(other, &ty)),
        },
        BaseType::Timestamptz | BaseType::Timestamp | BaseType::Date => {
            let t = instant(v, base, opts.time)?;
            text(match base {
                BaseType::Timestamptz => t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
                BaseType::Timestamp => t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
                _ => t.date_naive().format("%Y-%m-%d").to_string(),
            })
        }
        BaseType::Jsonb | BaseType::Json => {
            let mut out = String::new();
            let mut path = String::new();
            value::write_value_json(v, opts.nul, &mut path, &mut out)?;
            text(out)
        }
        BaseType::Bytea => match v {
            AttributeValue::B(b) => Ok(Cell::Bytes(b.as_ref().to_vec())),
            other => Err(mismatch(other, &ty)),
        },
    }
}

/// A point in time from an S or N value (UTC).
fn instant(
    v: &AttributeValue,
    base: BaseType,
    fmt: &TimeFormat,
) -> Result<DateTime<Utc>, ConvertError> {
    let ty = ColType { base, array: false };
    let from_epoch = |raw: &str, millis: bool| -> Result<DateTime<Utc>, ConvertError> {
        let n = Number::parse(raw.trim()).map_err(|_| invalid(raw, base, "not an epoch number"))?;
        let s = n.to_json_string();
        let f: f64 = s
            .parse()
            .map_err(|_| invalid(raw, base, "not an epoch number"))?;
        let secs = if millis { f / 1000.0 } else { f };
        if !secs.is_finite() || secs.abs() > 8.0e12 {
            return Err(ConvertError::OutOfRange {
                value: short(raw),
                ty: ty.sql(),
            });
        }
        let whole = secs.floor();
        let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
        DateTime::from_timestamp(whole as i64, nanos).ok_or_else(|| ConvertError::OutOfRange {
            value: short(raw),
            ty: ty.sql(),
        })
    };
    match (v, fmt) {
        (AttributeValue::N(n), TimeFormat::EpochMillis) => from_epoch(n, true),
        (AttributeValue::N(n), _) => from_epoch(n, false),
        (AttributeValue::S(s), TimeFormat::EpochMillis) => from_epoch(s, true),
        (AttributeValue::S(s), TimeFormat::EpochSeconds) => from_epoch(s, false),
        (AttributeValue::S(s), TimeFormat::Pattern(p)) => {
            let s2 = s.trim();
            if let Ok(t) = DateTime::parse_from_str(s2, p) {
                return Ok(t.with_timezone(&Utc));
            }
            if let Ok(t) = NaiveDateTime::parse_from_str(s2, p) {
                return Ok(t.and_utc());
            }
            NaiveDate::parse_from_str(s2, p)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .ok_or_else(|| invalid(s, base, format!("does not match format {p:?}")))
        }
        (AttributeValue::S(s), TimeFormat::Auto) => parse_iso(s.trim()).ok_or_else(|| {
            invalid(
                s,
                base,
                "expected RFC 3339 / ISO 8601, e.g. 2024-03-01T10:00:00Z",
            )
        }),
        (other, _) => Err(mismatch(other, &ty)),
    }
}

fn parse_iso(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let spaced = s.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&spaced) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&spaced, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// A PostgreSQL array literal from a set or list whose every element converts.
fn array(v: &AttributeValue, ty: &ColType, opts: &ConvertOpts) -> Result<Cell, ConvertError> {
    let elems: Vec<AttributeValue> = match v {
        AttributeValue::Ss(x) => x.iter().map(|s| AttributeValue::S(s.clone())).collect(),
        AttributeValue::Ns(x) => x.iter().map(|s| AttributeValue::N(s.clone())).collect(),
        AttributeValue::Bs(x) => x.iter().map(|b| AttributeValue::B(b.clone())).collect(),
        AttributeValue::L(x) => x.clone(),
        other => return Err(mismatch(other, ty)),
    };
    let mut out = String::from("{");
    for (i, e) in elems.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = scalar(e, ty.base, opts).map_err(|err| ConvertError::Invalid {
            value: type_name(v).to_string(),
            ty: ty.sql(),
            why: format!("element {i}: {err}"),
        });
        match cell? {
            Cell::Null => out.push_str("NULL"),
            Cell::Text(s) => quote_elem(&s, &mut out),
            Cell::Bytes(b) => {
                let mut hex = String::with_capacity(2 + 2 * b.len());
                hex.push_str("\\x");
                for x in b {
                    hex.push_str(&format!("{x:02x}"));
                }
                quote_elem(&hex, &mut out);
            }
        }
    }
    out.push('}');
    Ok(Cell::Text(out))
}

fn quote_elem(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;

    fn conv(v: AttributeValue, ty: &str) -> Result<Cell, ConvertError> {
        let t = ColType::parse(ty).expect("type");
        convert(
            &v,
            &t,
            &ConvertOpts {
                nul: NulPolicy::Reject,
                time: &TimeFormat::Auto,
            },
        )
    }
    fn n(s: &str) -> AttributeValue {
        AttributeValue::N(s.into())
    }
    fn s(x: &str) -> AttributeValue {
        AttributeValue::S(x.into())
    }
    fn t(x: &str) -> Cell {
        Cell::Text(x.into())
    }

    #[test]
    fn numbers() {
        let big = "12345678901234567890123456789012345678";
        assert_eq!(conv(n(big), "numeric"), Ok(t(big)));
        assert_eq!(conv(n("1E+125"), "numeric").map(|_| ()), Ok(()));
        assert!(matches!(
            conv(n("1E+125"), "real"),
            Err(ConvertError::OutOfRange { .. })
        ));
        assert!(matches!(
            conv(n("1E-130"), "real"),
            Err(ConvertError::OutOfRange { .. })
        ));
        assert!(conv(n("1E+125"), "double precision").is_ok());
        assert_eq!(conv(n("-0"), "integer"), Ok(t("0")));
        assert_eq!(conv(n("1E+2"), "smallint"), Ok(t("100")));
        assert!(matches!(
            conv(n("32768"), "smallint"),
            Err(ConvertError::OutOfRange { .. })
        ));
        assert!(matches!(
            conv(n("2147483648"), "int"),
            Err(ConvertError::OutOfRange { .. })
        ));
        assert!(matches!(
            conv(n("9223372036854775808"), "bigint"),
            Err(ConvertError::OutOfRange { .. })
        ));
        assert!(matches!(
            conv(n("1.5"), "integer"),
            Err(ConvertError::Invalid { .. })
        ));
        // Type drift: S "42" and N "42" give the same cell.
        assert_eq!(conv(s("42"), "integer"), conv(n("42"), "integer"));
        assert_eq!(conv(s("42"), "numeric"), conv(n("42"), "numeric"));
        assert!(matches!(
            conv(s(""), "integer"),
            Err(ConvertError::Invalid { .. })
        ));
    }

    #[test]
    fn text_bool_uuid_bytea() {
        assert_eq!(conv(s(""), "text"), Ok(t("")));
        assert_eq!(conv(s("😀𝄞"), "text"), Ok(t("😀𝄞")));
        assert!(matches!(
            conv(s("a\0"), "text"),
            Err(ConvertError::Value(ValueError::Nul { .. }))
        ));
        let strip = convert(
            &s("a\0b"),
            &ColType::parse("text").expect("t"),
            &ConvertOpts {
                nul: NulPolicy::Strip,
                time: &TimeFormat::Auto,
            },
        );
        assert_eq!(strip, Ok(t("ab")));
        assert_eq!(conv(s("TRUE"), "bool"), Ok(t("true")));
        assert_eq!(conv(n("0"), "boolean"), Ok(t("false")));
        assert_eq!(conv(AttributeValue::Bool(true), "boolean"), Ok(t("true")));
        assert_eq!(
            conv(s("67E55044-10B1-426F-9247-BB680E5FE0C8"), "uuid"),
            Ok(t("67e55044-10b1-426f-9247-bb680e5fe0c8"))
        );
        assert!(conv(s("nope"), "uuid").is_err());
        assert_eq!(
            conv(AttributeValue::B(Blob::new(vec![0, 0, 1])), "bytea"),
            Ok(Cell::Bytes(vec![0, 0, 1]))
        );
        assert!(matches!(
            conv(s("x"), "bytea"),
            Err(ConvertError::TypeMismatch { .. })
        ));
        assert!(matches!(
            conv(AttributeValue::M(Default::default()), "text"),
            Err(ConvertError::TypeMismatch { .. })
        ));
        assert_eq!(conv(AttributeValue::Null(true), "integer"), Ok(Cell::Null));
    }

    #[test]
    fn times() {
        let tz = |v, f: TimeFormat, ty: &str| {
            convert(
                &v,
                &ColType::parse(ty).expect("t"),
                &ConvertOpts {
                    nul: NulPolicy::Reject,
                    time: &f,
                },
            )
        };
        assert_eq!(
            conv(s("2024-03-01T10:00:00+02:00"), "timestamptz"),
            Ok(t("2024-03-01T08:00:00.000000+00:00"))
        );
        assert_eq!(
            conv(s("2024-03-01 10:00:00.5Z"), "timestamptz"),
            Ok(t("2024-03-01T10:00:00.500000+00:00"))
        );
        assert_eq!(
            conv(s("2024-03-01"), "timestamp"),
            Ok(t("2024-03-01 00:00:00.000000"))
        );
        assert_eq!(
            conv(n("1700000000.5"), "timestamptz"),
            Ok(t("2023-11-14T22:13:20.500000+00:00"))
        );
        assert_eq!(
            tz(n("1700000000500"), TimeFormat::EpochMillis, "timestamptz"),
            Ok(t("2023-11-14T22:13:20.500000+00:00"))
        );
        assert_eq!(
            tz(
                s("01/03/2024 10:30"),
                TimeFormat::Pattern("%d/%m/%Y %H:%M".into()),
                "date"
            ),
            Ok(t("2024-03-01"))
        );
        assert!(matches!(
            conv(s("yesterday"), "timestamptz"),
            Err(ConvertError::Invalid { .. })
        ));
        assert!(matches!(
            conv(n("1E+125"), "timestamptz"),
            Err(ConvertError::OutOfRange { .. })
        ));
    }

    #[test]
    fn arrays_and_json() {
        let ss = AttributeValue::Ss(vec!["a\"b".into(), "c\\d".into(), "e,{f}".into()]);
        assert_eq!(conv(ss, "text[]"), Ok(t(r#"{"a\"b","c\\d","e,{f}"}"#)));
        assert_eq!(
            conv(
                AttributeValue::Ns(vec!["1".into(), "2.50".into()]),
                "numeric[]"
            ),
            Ok(t(r#"{"1","2.5"}"#))
        );
        let l = AttributeValue::L(vec![n("1"), s("x")]);
        assert_eq!(conv(l.clone(), "text[]"), Ok(t(r#"{"1","x"}"#)));
        let e = conv(l, "integer[]").expect_err("element 1");
        assert!(e.to_string().contains("element 1"), "{e}");
        assert_eq!(conv(AttributeValue::L(vec![]), "int[]"), Ok(t("{}")));
        assert!(matches!(
            conv(s("x"), "text[]"),
            Err(ConvertError::TypeMismatch { .. })
        ));
        assert_eq!(conv(n("1.50"), "jsonb"), Ok(t("1.5")));
    }

    #[test]
    fn type_names() {
        for (name, sql) in [
            ("INT", "integer"),
            ("int8", "bigint"),
            ("float8", "double precision"),
            ("Timestamp With Time Zone", "timestamptz"),
            ("text[]", "text[]"),
            ("decimal", "numeric"),
        ] {
            assert_eq!(
                ColType::parse(name).map(|t| t.sql()),
                Some(sql.to_string()),
                "{name}"
            );
        }
        for bad in ["varchar", "int[][]", "jsonb[]", ""] {
            assert_eq!(ColType::parse(bad), None, "{bad}");
        }
    }
}
