//! Unit tests of `convert`.

use super::*;
use aws_sdk_dynamodb::primitives::Blob;

const D38: &str = "12345678901234567890123456789012345678";

fn conv_with(
    v: &AttributeValue,
    ty: &str,
    nul: NulPolicy,
    time: &str,
) -> Result<Cell, ConvertError> {
    let ty = ColType::parse(ty).unwrap_or_else(|| panic!("type {ty}"));
    let time = if time.is_empty() {
        TimeFormat::Auto
    } else {
        TimeFormat::parse(time)
    };
    convert(v, &ty, &ConvertOpts { nul, time: &time })
}
fn conv(v: AttributeValue, ty: &str) -> Result<Cell, ConvertError> {
    conv_with(&v, ty, NulPolicy::Reject, "")
}
fn n(x: &str) -> AttributeValue {
    AttributeValue::N(x.into())
}
fn s(x: &str) -> AttributeValue {
    AttributeValue::S(x.into())
}
fn b(x: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(x))
}
fn l(x: &[AttributeValue]) -> AttributeValue {
    AttributeValue::L(x.to_vec())
}
fn ss(x: &[&str]) -> AttributeValue {
    AttributeValue::Ss(x.iter().map(|e| e.to_string()).collect())
}
fn ns(x: &[&str]) -> AttributeValue {
    AttributeValue::Ns(x.iter().map(|e| e.to_string()).collect())
}
fn t(x: &str) -> Result<Cell, ConvertError> {
    Ok(Cell::Text(x.into()))
}
const T: AttributeValue = AttributeValue::Bool(true);
const F: AttributeValue = AttributeValue::Bool(false);
const NULL: AttributeValue = AttributeValue::Null(true);

/// `ty`: a type name, then `@` and a time format if not auto. `want`: "=text"
/// (Cell::Text), "NULL", or "!kind" (mismatch, invalid, range, nul, value).
fn check(v: &AttributeValue, ty: &str, want: &str) {
    let (ty, time) = ty.split_once('@').unwrap_or((ty, ""));
    let got = match conv_with(v, ty, NulPolicy::Reject, time) {
        Ok(Cell::Text(x)) => format!("={x}"),
        Ok(Cell::Null) => "NULL".into(),
        Ok(Cell::Bytes(x)) => format!("bytes {x:?}"),
        Err(ConvertError::TypeMismatch { .. }) => "!mismatch".into(),
        Err(ConvertError::Invalid { .. }) => "!invalid".into(),
        Err(ConvertError::OutOfRange { .. }) => "!range".into(),
        Err(ConvertError::Value(ValueError::Nul { .. })) => "!nul".into(),
        Err(ConvertError::Value(_)) => "!value".into(),
    };
    assert_eq!(got, want, "{v:?} as {ty} ({time:?})");
}

/// Rows `value, type => expected;` (a macro so that each stays on one line).
macro_rules! cases {
    ($($v:expr, $ty:expr => $want:expr;)*) => { $(check(&$v, $ty, &$want);)* };
}

#[test]
fn type_names() {
    for (names, sql) in [
        ("text| TEXT ", "text"),
        ("smallint|int2", "smallint"),
        ("integer|int|INT4", "integer"),
        ("bigint|int8", "bigint"),
        ("numeric|Decimal", "numeric"),
        ("real|float4", "real"),
        (
            "double precision|float8|double|Double  Precision",
            "double precision",
        ),
        ("boolean|bool", "boolean"),
        ("uuid", "uuid"),
        ("timestamptz|timestamp with time zone", "timestamptz"),
        ("timestamp|Timestamp Without Time Zone", "timestamp"),
        ("date", "date"),
        ("jsonb", "jsonb"),
        ("json", "json"),
        ("bytea", "bytea"),
    ] {
        for name in names.split('|') {
            let ty = ColType::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!((ty.sql(), ty.array), (sql.to_string(), false), "{name}");
            let arr = ColType::parse(&format!("{name}[]"));
            let want = (!sql.starts_with("json")).then(|| format!("{sql}[]"));
            assert_eq!(arr.map(|a| a.sql()), want, "{name}[]");
            assert!(arr.is_none_or(|a| a.array && a.base == ty.base));
        }
    }
    for bad in [
        "varchar",
        "int[][]",
        "jsonb[]",
        "json[]",
        "",
        "[]",
        "int x",
        "double precisions",
    ] {
        assert_eq!(ColType::parse(bad), None, "{bad}");
    }
    assert_eq!(TimeFormat::parse("auto"), TimeFormat::Auto);
    assert_eq!(TimeFormat::parse("epoch_millis"), TimeFormat::EpochMillis);
    assert_eq!(TimeFormat::parse("epoch_seconds"), TimeFormat::EpochSeconds);
    assert_eq!(
        TimeFormat::parse("%d/%m/%Y"),
        TimeFormat::Pattern("%d/%m/%Y".into())
    );
}

#[test]
fn text_bool_uuid_json() {
    let uuid = "=67e55044-10b1-426f-9247-bb680e5fe0c8";
    cases! {
        s("hi"), "text" => "=hi";
        s(""), "text" => "=";
        s("😀𝄞 é\u{2028}"), "text" => "=😀𝄞 é\u{2028}";
        n("1.50"), "text" => "=1.5";
        n(D38), "text" => format!("={D38}");
        n("1e"), "text" => "!value";
        T, "text" => "=true";
        F, "text" => "=false";
        NULL, "text" => "NULL";
        b(b"x"), "text" => "!mismatch";
        ss(&["a"]), "text" => "!mismatch";
        T, "boolean" => "=true";
        F, "bool" => "=false";
        s("TRUE"), "bool" => "=true";
        s("f"), "bool" => "=false";
        s("1"), "bool" => "=true";
        s("No"), "bool" => "=false";
        n("1"), "bool" => "=true";
        n("0"), "bool" => "=false";
        n("2"), "bool" => "!invalid";
        s("maybe"), "bool" => "!invalid";
        b(&[1]), "bool" => "!mismatch";
        s("67E55044-10B1-426F-9247-BB680E5FE0C8"), "uuid" => uuid;
        s("67e5504410b1426f9247bb680e5fe0c8"), "uuid" => uuid;
        s("nope"), "uuid" => "!invalid";
        n("1"), "uuid" => "!mismatch";
        n("1.50"), "jsonb" => "=1.5";
        s("a\"b"), "json" => "=\"a\\\"b\"";
        b(&[0, 1]), "jsonb" => "=\"AAE=\"";
        l(&[n("1E+125"), NULL, T]), "jsonb" => "=[1E+125,null,true]";
        ns(&["2", "1"]), "json" => "=[1,2]";
        NULL, "jsonb" => "NULL";
    }
    for ty in [
        "text",
        "numeric",
        "integer",
        "boolean",
        "uuid",
        "timestamptz",
        "date",
        "bytea",
    ] {
        check(&AttributeValue::M(Default::default()), ty, "!mismatch");
        check(&l(&[]), ty, "!mismatch");
    }
    let e = conv(b(b"x"), "text");
    assert_eq!(
        e,
        Err(ConvertError::TypeMismatch {
            found: "B",
            ty: "text".into()
        })
    );
}

#[test]
fn nul_policies() {
    let text = |p| conv_with(&s("a\0b\0"), "text", p, "");
    assert_eq!(
        text(NulPolicy::Reject),
        Err(ValueError::Nul {
            path: String::new()
        }
        .into())
    );
    assert_eq!(text(NulPolicy::Strip), t("ab"));
    assert_eq!(text(NulPolicy::Replace), t("a\u{FFFD}b\u{FFFD}"));
    let arr = |p| conv_with(&ss(&["ok", "x\0"]), "text[]", p, "");
    assert_eq!(
        arr(NulPolicy::Reject),
        Err(ValueError::Nul { path: "[1]".into() }.into())
    );
    assert_eq!(arr(NulPolicy::Strip), t(r#"{"ok","x"}"#));
    let json = |p| conv_with(&l(&[s("\0")]), "jsonb", p, "");
    assert_eq!(
        json(NulPolicy::Reject),
        Err(ValueError::Nul { path: "[0]".into() }.into())
    );
    assert_eq!(json(NulPolicy::Replace), t("[\"\u{FFFD}\"]"));
}

#[test]
fn numbers() {
    cases! {
        n(D38), "numeric" => format!("={D38}");
        n(&format!("-{D38}")), "numeric" => format!("=-{D38}");
        n("1E+125"), "numeric" => "=1E+125";
        n("1E-130"), "numeric" => "=1E-130";
        n("-0"), "numeric" => "=0";
        s(" 2.50 "), "numeric" => "=2.5";
        s("abc"), "numeric" => "!invalid";
        n("x"), "numeric" => "!value";
        T, "numeric" => "!mismatch";
        s("1e131072"), "numeric" => "!range"; // beyond PostgreSQL's numeric
        s("1e-16384"), "numeric" => "!range";
        n("1E+2"), "smallint" => "=100";
        n("1.0"), "integer" => "=1";
        n("-0"), "integer" => "=0";
        n("1.5"), "integer" => "!invalid";
        n("1E-130"), "bigint" => "!invalid";
        s(""), "integer" => "!invalid";
        s("4x"), "integer" => "!invalid";
        n("1E+125"), "bigint" => "!range";
        b(&[1]), "integer" => "!mismatch";
        ns(&["1"]), "integer" => "!mismatch";
        n("1.50"), "real" => "=1.5";
        n(D38), "double precision" => format!("={D38}");
        n("1E+125"), "real" => "!range";
        n("1E+125"), "double precision" => "=1E+125";
        n("1E-130"), "real" => "!range";
        n("-1E-130"), "real" => "!range";
        n("1E-130"), "float8" => "=1E-130";
        s("1e309"), "float8" => "!range";
        s("1e-400"), "float8" => "!range";
        n("3.4028235e38"), "real" => "=340282350000000000000000000000000000000";
        n("3.40282357e38"), "real" => "!range"; // rounds to infinity (float4in too)
        n("1.4e-45"), "real" => "=0.0000000000000000000000000000000000000000000014";
        n("7e-46"), "real" => "!range"; // rounds to 0: float4in refuses it
        n("-0.0"), "real" => "=0";
        s("NaN"), "real" => "!invalid";
    }
    for (ty, max, over, min, under) in [
        ("smallint", "32767", "32768", "-32768", "-32769"),
        (
            "integer",
            "2147483647",
            "2147483648",
            "-2147483648",
            "-2147483649",
        ),
        (
            "bigint",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
        ),
    ] {
        cases! {
            n(max), ty => format!("={max}");
            n(min), ty => format!("={min}");
            n(under), ty => "!range";
            n(D38), ty => "!range";
        }
        let e = conv(n(over), ty);
        assert_eq!(
            e,
            Err(ConvertError::OutOfRange {
                value: over.into(),
                ty: ty.into()
            })
        );
    }
    let e = conv(n("1.5"), "integer");
    let why = "not an integer".into();
    assert_eq!(
        e,
        Err(ConvertError::Invalid {
            value: "1.5".into(),
            ty: "integer".into(),
            why
        })
    );
    // Type drift: the same column fed an S and an N gives the same cell.
    for ty in [
        "integer", "smallint", "bigint", "numeric", "real", "double", "text",
    ] {
        assert_eq!(conv(s("42"), ty), conv(n("42"), ty), "{ty}");
        assert_eq!(conv(s("42"), ty), t("42"), "{ty}");
    }
    match conv(s(&"é".repeat(100)), "integer") {
        Err(ConvertError::Invalid { value, .. }) => {
            assert_eq!(value, format!("{}...", "é".repeat(80)))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bytea() {
    assert_eq!(
        conv(b(&[0, 0, 1, 0, 255]), "bytea"),
        Ok(Cell::Bytes(vec![0, 0, 1, 0, 255]))
    );
    assert_eq!(conv(b(&[]), "bytea"), Ok(Cell::Bytes(vec![])));
    for v in [s("x"), n("1"), T, AttributeValue::Bs(vec![Blob::new([1])])] {
        check(&v, "bytea", "!mismatch");
    }
}

#[test]
fn times() {
    let (tz, ts, ms, secs) = (
        "timestamptz",
        "timestamp",
        "timestamptz@epoch_millis",
        "timestamptz@epoch_seconds",
    );
    cases! {
        s("2024-03-01T10:00:00+02:00"), tz => "=2024-03-01T08:00:00+00:00";
        s("2024-03-01T10:00:00Z"), tz => "=2024-03-01T10:00:00+00:00";
        s("2024-03-01T10:00:00.123456789Z"), tz => "=2024-03-01T10:00:00.123457+00:00";
        s("2024-03-01T10:00:00.5-01:30"), tz => "=2024-03-01T11:30:00.500000+00:00";
        s("2024-03-01 10:00:00.5Z"), tz => "=2024-03-01T10:00:00.500000+00:00";
        s("2024-03-01 10:00:00"), tz => "=2024-03-01T10:00:00+00:00";
        s("2024-03-01T10:00:00+0200"), tz => "=2024-03-01T08:00:00+00:00";
        s("2024-03-01T10:00"), tz => "=2024-03-01T10:00:00+00:00";
        s("2024-03-01"), tz => "=2024-03-01T00:00:00+00:00";
        s("2024-12-31T23:59:59.9999996Z"), tz => "=2025-01-01T00:00:00+00:00";
        n("1700000000"), tz => "=2023-11-14T22:13:20+00:00";
        n("1700000000.5"), tz => "=2023-11-14T22:13:20.500000+00:00";
        n("-1.5"), tz => "=1969-12-31T23:59:58.500000+00:00";
        n("1700000000123.456"), ms => "=2023-11-14T22:13:20.123456+00:00";
        s("1700000000123"), ms => "=2023-11-14T22:13:20.123000+00:00";
        s("1700000000"), secs => "=2023-11-14T22:13:20+00:00";
        n("1.7E+9"), secs => "=2023-11-14T22:13:20+00:00";
        s("01/03/2024 10:30"), "timestamptz@%d/%m/%Y %H:%M" => "=2024-03-01T10:30:00+00:00";
        s("01/03/2024 10:30 +0100"), "timestamptz@%d/%m/%Y %H:%M %z" => "=2024-03-01T09:30:00+00:00";
        n("0"), "timestamptz@%d/%m/%Y" => "=1970-01-01T00:00:00+00:00";
        s("2024-03-01"), "timestamptz@%d/%m/%Y %H:%M" => "!invalid";
        s("soon"), ms => "!invalid";
        s("yesterday"), tz => "!invalid";
        s(""), tz => "!invalid";
        s("2024-13-01"), tz => "!invalid";
        s("2024-02-30T00:00:00Z"), tz => "!invalid";
        s("1700000000"), tz => "!invalid"; // Auto never reads an S as an epoch
        n("1E+125"), tz => "!range";
        n("1E+125"), ms => "!range";
        n("-62167219200"), tz => "=0001-01-01T00:00:00+00:00 BC";
        n("-210866803200"), tz => "=4714-11-24T00:00:00+00:00 BC";
        n("-210866803201"), ts => "!range"; // before PostgreSQL's first day
        T, tz => "!mismatch";
        s("2024-03-01T10:00:00+02:00"), ts => "=2024-03-01 08:00:00";
        s("2024-03-01T10:00:00.25"), ts => "=2024-03-01 10:00:00.250000";
        s("2024-03-01"), ts => "=2024-03-01 00:00:00";
        n("1700000000.5"), ts => "=2023-11-14 22:13:20.500000";
        s("2024-03-01"), "date" => "=2024-03-01";
        s("2024-03-01T23:30:00-01:00"), "date" => "=2024-03-02";
        n("1700000000"), "date" => "=2023-11-14";
        n("1700000000000"), "date@epoch_millis" => "=2023-11-14";
        s("01/03/2024"), "date@%d/%m/%Y" => "=2024-03-01";
        s("01/03/2024 10:30"), "date@%d/%m/%Y %H:%M" => "=2024-03-01";
        n("-210866803200"), "date" => "=4714-11-24 BC";
        s("March 1st"), "date" => "!invalid";
        b(&[1]), "date" => "!mismatch";
    }
}

#[test]
fn arrays() {
    let mixed = l(&[n("1"), s("x"), NULL, T]);
    let bs = AttributeValue::Bs(vec![Blob::new([0u8, 1, 255]), Blob::new([])]);
    cases! {
        ns(&["10", "2.50", "-0"]), "numeric[]" => r#"={"10","2.5","0"}"#;
        ns(&["3", "1", "1E+2"]), "integer[]" => r#"={"3","1","100"}"#;
        ss(&["a\"b", "c\\d", "e,f", "{g}", "", "NULL"]), "text[]" => r#"={"a\"b","c\\d","e,f","{g}","","NULL"}"#;
        mixed, "text[]" => r#"={"1","x",NULL,"true"}"#;
        l(&[s("1e40")]), "real[]" => "!invalid";
        bs, "bytea[]" => r#"={"\\x0001ff","\\x"}"#;
        ss(&["2024-03-01T10:00:00Z"]), "timestamptz[]" => r#"={"2024-03-01T10:00:00+00:00"}"#;
        l(&[]), "int[]" => "={}";
        ss(&[]), "text[]" => "={}";
        ss(&["b", "a"]), "text[]" => r#"={"b","a"}"#; // set order kept
        NULL, "text[]" => "NULL";
        s("x"), "text[]" => "!mismatch";
        n("1"), "int[]" => "!mismatch";
        AttributeValue::M(Default::default()), "text[]" => "!mismatch";
    }
    let why = "element 2: value 1.5 is not a valid integer: not an integer".into();
    let want = ConvertError::Invalid {
        value: "NS".into(),
        ty: "integer[]".into(),
        why,
    };
    assert_eq!(conv(ns(&["1", "2", "1.5"]), "int[]"), Err(want));
    let e = conv(mixed, "integer[]").expect_err("element 1 fails");
    assert!(
        e.to_string()
            .contains("element 1: value x is not a valid integer"),
        "{e}"
    );
    let e = conv(l(&[l(&[])]), "text[]").expect_err("nested");
    assert!(
        e.to_string()
            .contains("element 0: L value cannot be stored as text"),
        "{e}"
    );
    // JSON elements (ColType::parse refuses jsonb[], but the behaviour is defined).
    let jty = ColType {
        base: BaseType::Jsonb,
        array: true,
    };
    let opts = ConvertOpts {
        nul: NulPolicy::Reject,
        time: &TimeFormat::Auto,
    };
    assert_eq!(convert(&ss(&["a"]), &jty, &opts), t(r#"{"\"a\""}"#));
    let nul = convert(&l(&[s("x"), l(&[s("\0")])]), &jty, &opts);
    assert_eq!(
        nul,
        Err(ValueError::Nul {
            path: "[1][0]".into()
        }
        .into())
    );
}
