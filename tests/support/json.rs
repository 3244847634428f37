//! The suite's own encoders, written from DynamoDB's and the README's definitions and not from
//! ddb2pg's code, so that a test's expected values never come from the encoder it tests:
//! - [`doc`]: the `item` jsonb document the default mapping stores (compared in PostgreSQL with
//!   jsonb equality, so key order and number spelling do not matter, set order does);
//! - [`ddb_json`]: an item in DynamoDB JSON, the form of an export's `Item` lines.

use std::cmp::Ordering;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use ddb2pg::value::Item;
use serde_json::{json, Map, Value};

/// The expected `item` document of `item`, as JSON text.
pub fn doc(item: &Item) -> String {
    let mut out = String::new();
    write_map(item, &mut out);
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn write_str(s: &str, out: &mut String) {
    // serde_json's string escaping: an independent, well-known implementation.
    out.push_str(&Value::String(s.to_string()).to_string());
}

fn write_map(m: &std::collections::HashMap<String, AttributeValue>, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(k, out);
        out.push(':');
        write_value(v, out);
    }
    out.push('}');
}

fn write_list<'a>(items: impl Iterator<Item = &'a AttributeValue>, out: &mut String) {
    out.push('[');
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(v, out);
    }
    out.push(']');
}

fn write_value(v: &AttributeValue, out: &mut String) {
    match v {
        AttributeValue::S(s) => write_str(s, out),
        AttributeValue::N(n) => out.push_str(&json_number(n)),
        AttributeValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        AttributeValue::Null(_) => out.push_str("null"),
        AttributeValue::B(b) => write_str(&b64(b.as_ref()), out),
        AttributeValue::M(m) => write_map(m, out),
        AttributeValue::L(l) => write_list(l.iter(), out),
        AttributeValue::Ss(ss) => {
            // Sorted bytewise (Rust's `str` order is byte order).
            let mut ss: Vec<&String> = ss.iter().collect();
            ss.sort();
            let v: Vec<AttributeValue> = ss
                .into_iter()
                .map(|s| AttributeValue::S(s.clone()))
                .collect();
            write_list(v.iter(), out);
        }
        AttributeValue::Ns(ns) => {
            let mut ns: Vec<&String> = ns.iter().collect();
            ns.sort_by(|a, b| compare_numbers(a, b));
            out.push('[');
            out.push_str(
                &ns.iter()
                    .map(|n| json_number(n))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push(']');
        }
        AttributeValue::Bs(bs) => {
            let mut bs: Vec<&[u8]> = bs.iter().map(|b| b.as_ref()).collect();
            bs.sort();
            let v: Vec<String> = bs.into_iter().map(b64).collect();
            out.push_str(&Value::from(v).to_string());
        }
        other => panic!("the suite's encoder has no case for {other:?}"),
    }
}

/// A DynamoDB number as a JSON number with every digit: `+7`, `007.50`, `.5`, `5.` are not JSON;
/// `7`, `7.50`, `0.5`, `5` are (the exponent is kept as written).
fn json_number(n: &str) -> String {
    let (neg, rest) = match n.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, n.strip_prefix('+').unwrap_or(n)),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let int = int.trim_start_matches('0');
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        s.push('.');
        s.push_str(frac);
    }
    if let Some(e) = exp {
        s.push('e');
        s.push_str(e);
    }
    s
}

/// A number as (negative, significant digits without leading or trailing zeros, exponent of
/// the first digit); zero has no digits.
fn decompose(n: &str) -> (bool, String, i64) {
    let (neg, rest) = match n.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, n.strip_prefix('+').unwrap_or(n)),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (
            &rest[..i],
            rest[i + 1..]
                .parse::<i64>()
                .unwrap_or_else(|e| panic!("exponent of {n}: {e}")),
        ),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0').to_string();
    // Value = 0.<all> * 10^(len(int) + exp); skipping `lead` zeros moves the point.
    let point = int.len() as i64 + exp - lead as i64;
    (neg && !digits.is_empty(), digits, point)
}

/// Numeric order of two DynamoDB numbers, exactly (no f64).
pub fn compare_numbers(a: &str, b: &str) -> Ordering {
    let (an, ad, ae) = decompose(a);
    let (bn, bd, be) = decompose(b);
    let sign = |neg: bool, d: &str| {
        if d.is_empty() {
            0
        } else if neg {
            -1
        } else {
            1
        }
    };
    let (sa, sb) = (sign(an, &ad), sign(bn, &bd));
    if sa != sb || sa == 0 {
        return sa.cmp(&sb);
    }
    let magnitude = ae.cmp(&be).then_with(|| ad.cmp(&bd));
    if sa < 0 {
        magnitude.reverse()
    } else {
        magnitude
    }
}

/// `item` in DynamoDB JSON (`{"PK":{"S":"..."},...}`).
pub fn ddb_json(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), ddb_value(v)))
            .collect::<Map<String, Value>>(),
    )
}

pub fn ddb_value(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(b) => json!({ "NULL": b }),
        AttributeValue::B(b) => json!({ "B": b64(b.as_ref()) }),
        AttributeValue::M(m) => json!({ "M": ddb_json(m) }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(ddb_value).collect::<Vec<_>>() }),
        AttributeValue::Ss(ss) => json!({ "SS": ss }),
        AttributeValue::Ns(ns) => json!({ "NS": ns }),
        AttributeValue::Bs(bs) => {
            json!({ "BS": bs.iter().map(|b| b64(b.as_ref())).collect::<Vec<_>>() })
        }
        other => panic!("the suite's encoder has no case for {other:?}"),
    }
}

#[test]
fn the_suites_encoder_against_hand_written_json() {
    use aws_sdk_dynamodb::primitives::Blob;
    let mut it = Item::new();
    it.insert("n".into(), AttributeValue::N("007.50".into()));
    it.insert(
        "ns".into(),
        AttributeValue::Ns(vec![
            "10".into(),
            "9".into(),
            "-1.5".into(),
            "1E+2".into(),
            "-20".into(),
            "0.001".into(),
        ]),
    );
    it.insert(
        "bs".into(),
        AttributeValue::Bs(vec![
            Blob::new(vec![3, 0]),
            Blob::new(vec![0]),
            Blob::new(vec![0, 0, 1]),
        ]),
    );
    it.insert("s".into(), AttributeValue::S("q\"\n".into()));
    let got: Value = serde_json::from_str(&doc(&it)).expect("valid JSON");
    let want: Value = serde_json::from_str(
        r#"{"n":7.50,"ns":[-20,-1.5,0.001,9,10,1e+2],"bs":["AA==","AAAB","AwA="],"s":"q\"\n"}"#,
    )
    .expect("hand-written");
    assert_eq!(got, want);
    assert_eq!(compare_numbers("1E+2", "99.999"), Ordering::Greater);
    assert_eq!(compare_numbers("-0.000", "0"), Ordering::Equal);
    assert_eq!(compare_numbers("-1E-130", "-1E-131"), Ordering::Less);
}
