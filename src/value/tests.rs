//! Unit tests of `value`.

use super::*;
use serde_json::json;
use serde_json::Value;
use std::cmp::Ordering;

pub(super) fn s(x: &str) -> AttributeValue {
    AttributeValue::S(x.to_owned())
}
pub(super) fn n(x: &str) -> AttributeValue {
    AttributeValue::N(x.to_owned())
}
pub(super) fn b(x: &[u8]) -> Blob {
    Blob::new(x.to_vec())
}
pub(super) fn map(pairs: &[(&str, AttributeValue)]) -> Item {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}
fn enc_with(item: &Item, nul: NulPolicy) -> Result<String, ValueError> {
    let mut out = String::from("junk");
    out.clear();
    write_item_json(item, nul, &mut out)?;
    serde_json::from_str::<Value>(&out).expect("output must be valid JSON");
    Ok(out)
}
fn enc(item: &Item) -> String {
    enc_with(item, NulPolicy::Reject).unwrap()
}
fn num(x: &str) -> String {
    Number::parse(x).unwrap().to_json_string()
}

pub(super) const D38: &str = "12345678901234567890123456789012345678";
pub(super) const ND38: &str = "-0.12345678901234567890123456789012345678";

#[test]
fn number_parse_and_write() {
    let cases = [
        ("1", "1"),
        ("-0", "0"),
        ("+0.000", "0"),
        ("0e10", "0"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("+7", "7"),
        ("00012", "12"),
        ("1200", "1200"),
        ("100.000", "100"),
        ("00.0500", "0.05"),
        ("-0.05", "-0.05"),
        ("-12.340e1", "-123.4"),
        ("1E+125", "1E+125"),
        ("1e-130", "1E-130"),
        ("-1e-130", "-1E-130"),
        ("1.23e60", "1.23E+60"),
        (
            "9.9999999999999999999999999999999999999E+125",
            "9.9999999999999999999999999999999999999E+125",
        ),
        ("1e47", "100000000000000000000000000000000000000000000000"),
        ("1e48", "1E+48"),
        ("1e-46", "0.0000000000000000000000000000000000000000000001"),
        ("1e-47", "1E-47"),
        ("1e007", "10000000"),
        (D38, D38),
        (ND38, ND38),
        (
            "123456789012345678901234567890123456789012345678901234567890",
            "1.2345678901234567890123456789012345678901234567890123456789E+59",
        ),
    ];
    for (input, want) in cases {
        let got = num(input);
        assert_eq!(got, want, "input {input}");
        assert!(
            serde_json::from_str::<Value>(&got).unwrap().is_number(),
            "{got}"
        );
    }
    let z = Number::parse("-0").unwrap();
    assert!(!z.is_negative());
    assert_eq!((z.digits(), z.exponent()), ("", 0));
    let x = Number::parse("-0.0120").unwrap();
    assert_eq!(
        (x.is_negative(), x.digits(), x.exponent()),
        (true, "12", -3)
    );
    assert_eq!(x.to_string(), "-0.012");
    assert_eq!(
        "0.50".parse::<Number>().unwrap(),
        Number::parse(".5").unwrap()
    );
    assert_eq!(Number::parse("-0").unwrap(), Number::parse("0").unwrap());
    assert_eq!(
        Number::parse("1E+2").unwrap(),
        Number::parse("100").unwrap()
    );
}

#[test]
fn number_rejects_invalid() {
    for bad in [
        "",
        "abc",
        "1e",
        "--1",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "1.2.3",
        " 1",
        "1 ",
        "1\n",
        "-",
        "+",
        ".",
        "e5",
        "1e+",
        "1e-",
        "+-1",
        "1_000",
        "0x10",
        "1e5.0",
        "1,5",
        "1e99999999999999999999",
    ] {
        assert_eq!(
            Number::parse(bad),
            Err(ValueError::InvalidNumber(bad.to_owned())),
            "{bad:?}"
        );
    }
}

#[test]
fn number_integer_and_i64() {
    let i = |x: &str| Number::parse(x).unwrap().as_i64();
    assert_eq!(i("9223372036854775807"), Some(i64::MAX));
    assert_eq!(i("9223372036854775808"), None);
    assert_eq!(i("-9223372036854775808"), Some(i64::MIN));
    assert_eq!(i("-9223372036854775809"), None);
    assert_eq!(i("1.5"), None);
    assert_eq!(i("1E+2"), Some(100));
    assert_eq!(i("120e-1"), Some(12));
    assert_eq!(i("-0"), Some(0));
    assert_eq!(i("1e18"), Some(1_000_000_000_000_000_000));
    assert_eq!(i("1e19"), None);
    assert_eq!(i("1E+125"), None);
    assert_eq!(i(D38), None);
    let int = |x: &str| Number::parse(x).unwrap().is_integer();
    assert!(int("1E+2") && int("0") && int("12.000") && int("-5"));
    assert!(!int("1.5") && !int("1e-1"));
}

#[test]
fn number_ordering() {
    let sorted = [
        "-1E+125", "-10", "-9.5", "-1", "-0.001", "0", "1e-130", "0.5", "1", "9", "10", "1E+2",
        D38, "1.23e60", "1E+125",
    ];
    let nums: Vec<Number> = sorted.iter().map(|x| Number::parse(x).unwrap()).collect();
    for (i, a) in nums.iter().enumerate() {
        for (j, b) in nums.iter().enumerate() {
            assert_eq!(a.cmp_value(b), i.cmp(&j), "{a} vs {b}");
        }
    }
    let (a, b) = (
        Number::parse("1.50").unwrap(),
        Number::parse("15e-1").unwrap(),
    );
    assert_eq!(a.cmp_value(&b), Ordering::Equal);
    assert_eq!(
        Number::parse("0.12")
            .unwrap()
            .cmp_value(&Number::parse("0.121").unwrap()),
        Ordering::Less
    );
}

#[test]
fn scalars_and_exact_numbers() {
    let item = map(&[
        ("s", s("hi")),
        ("empty", s("")),
        ("n", n("0.50")),
        ("z", n("-0")),
        ("big", n(D38)),
        ("neg", n(ND38)),
        ("huge", n("1E+125")),
        ("tiny", n("1e-130")),
        ("t", AttributeValue::Bool(true)),
        ("f", AttributeValue::Bool(false)),
        ("nul", AttributeValue::Null(true)),
        ("bin", AttributeValue::B(b(&[0, 0, 0, 1, 255]))),
        ("eb", AttributeValue::B(b(&[]))),
        ("l", AttributeValue::L(vec![])),
        ("m", AttributeValue::M(Item::new())),
    ]);
    assert_eq!(
        enc(&item),
        format!(
            r#"{{"big":{D38},"bin":"AAAAAf8=","eb":"","empty":"","f":false,"huge":1E+125,"l":[],"m":{{}},"n":0.5,"neg":{ND38},"nul":null,"s":"hi","t":true,"tiny":1E-130,"z":0}}"#
        )
    );
}

#[test]
fn invalid_and_unknown_values() {
    let item = map(&[("a", AttributeValue::L(vec![n("1"), n("1e")]))]);
    assert_eq!(
        enc_with(&item, NulPolicy::Reject),
        Err(ValueError::InvalidNumber("1e".into()))
    );
    let item = map(&[("a", AttributeValue::Ns(vec!["1".into(), "x".into()]))]);
    assert_eq!(
        enc_with(&item, NulPolicy::Reject),
        Err(ValueError::InvalidNumber("x".into()))
    );
    // AttributeValue::Unknown cannot be built outside the SDK; exercise the path prefixing instead.
    let e = nest(
        nest(
            ValueError::Unsupported {
                path: String::new(),
            },
            Seg::Index(0),
        ),
        Seg::Field("b"),
    );
    assert_eq!(
        nest(e, Seg::Attr("a")),
        ValueError::Unsupported {
            path: "a.b[0]".into()
        }
    );
}

#[test]
fn nul_in_string_values() {
    let inner = AttributeValue::M(map(&[("b", AttributeValue::L(vec![s("x"), s("y\0z\0")]))]));
    let item = map(&[("a", inner.clone())]);
    assert_eq!(
        enc_with(&item, NulPolicy::Reject),
        Err(ValueError::Nul {
            path: "a.b[1]".into()
        })
    );
    assert_eq!(
        enc_with(&item, NulPolicy::Strip).unwrap(),
        r#"{"a":{"b":["x","yz"]}}"#
    );
    assert_eq!(
        enc_with(&item, NulPolicy::Replace).unwrap(),
        "{\"a\":{\"b\":[\"x\",\"y\u{FFFD}z\u{FFFD}\"]}}"
    );
    let item = map(&[("ss", AttributeValue::Ss(vec!["\0".into()]))]);
    assert_eq!(
        enc_with(&item, NulPolicy::Reject),
        Err(ValueError::Nul { path: "ss".into() })
    );
    assert_eq!(enc_with(&item, NulPolicy::Strip).unwrap(), r#"{"ss":[""]}"#);
    // write_value_json prefixes the caller's path and leaves it unchanged.
    let (mut path, mut out) = (String::from("root[2]"), String::new());
    let err = write_value_json(&inner, NulPolicy::Reject, &mut path, &mut out);
    assert_eq!(
        err,
        Err(ValueError::Nul {
            path: "root[2].b[1]".into()
        })
    );
    assert_eq!(path, "root[2]");
    let err = write_value_json(&inner, NulPolicy::Reject, &mut String::new(), &mut out);
    assert_eq!(
        err,
        Err(ValueError::Nul {
            path: "b[1]".into()
        })
    );
    out.clear();
    write_value_json(&inner, NulPolicy::Strip, &mut path, &mut out).unwrap();
    assert_eq!(out, r#"{"b":["x","yz"]}"#);
}

#[test]
fn nul_in_map_keys() {
    let item = map(&[(
        "m",
        AttributeValue::M(map(&[("k\0", s("v")), ("a", s("w"))])),
    )]);
    assert_eq!(
        enc_with(&item, NulPolicy::Reject),
        Err(ValueError::Nul {
            path: "m.k\\0".into()
        })
    );
    assert_eq!(
        enc_with(&item, NulPolicy::Strip).unwrap(),
        r#"{"m":{"a":"w","k":"v"}}"#
    );
    assert_eq!(
        enc_with(&item, NulPolicy::Replace).unwrap(),
        "{\"m\":{\"a\":\"w\",\"k\u{FFFD}\":\"v\"}}"
    );
    let top = map(&[("a\0b", s("v"))]);
    assert_eq!(
        enc_with(&top, NulPolicy::Reject),
        Err(ValueError::Nul {
            path: "a\\0b".into()
        })
    );
    assert_eq!(enc_with(&top, NulPolicy::Strip).unwrap(), r#"{"ab":"v"}"#);
    // Keys that collide once cleaned would silently lose data: refused.
    let clash = map(&[("a\0", s("1")), ("a", s("2"))]);
    assert_eq!(
        enc_with(&clash, NulPolicy::Strip),
        Err(ValueError::Nul {
            path: "a\\0".into()
        })
    );
    assert_eq!(
        enc_with(&clash, NulPolicy::Replace).unwrap(),
        "{\"a\":\"2\",\"a\u{FFFD}\":\"1\"}"
    );
    // A NUL value under a NUL key (slow path) still reports the right path.
    let deep = map(&[("k\0", AttributeValue::L(vec![s("\0")]))]);
    assert_eq!(enc_with(&deep, NulPolicy::Strip).unwrap(), r#"{"k":[""]}"#);
}

#[test]
fn unicode_and_control_chars() {
    let text = "😀𝄞 é 中 \u{7f}\u{2028}";
    let item = map(&[("u", s(text)), ("😀", s(""))]);
    let out = enc(&item);
    assert_eq!(out, format!("{{\"u\":\"{text}\",\"😀\":\"\"}}"));
    let back: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(back["u"], text);
    let ctl = "\u{1}\n\r\t\u{8}\u{c}\"\\\u{1f}/x";
    let out = enc(&map(&[("c", s(ctl))]));
    assert_eq!(out, r#"{"c":"\u0001\n\r\t\b\f\"\\\u001f/x"}"#);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["c"], ctl);
}

#[test]
fn sets_are_sorted() {
    let item = map(&[
        (
            "ss",
            AttributeValue::Ss(vec!["b".into(), "é".into(), "a".into(), "B".into()]),
        ),
        (
            "ns",
            AttributeValue::Ns(vec!["10".into(), "9".into(), "-1".into(), "1E+2".into()]),
        ),
        ("bs", AttributeValue::Bs(vec![b(&[2]), b(&[1, 0]), b(&[1])])),
    ]);
    assert_eq!(
        enc(&item),
        r#"{"bs":["AQ==","AQA=","Ag=="],"ns":[-1,9,10,100],"ss":["B","a","b","é"]}"#
    );
}

#[test]
fn map_keys_sorted_bytewise() {
    let inner = AttributeValue::M(map(&[("z", n("1")), ("y", n("2"))]));
    let item = map(&[
        ("b", s("1")),
        ("a", inner),
        ("B", s("3")),
        ("aa", s("4")),
        ("ä", s("5")),
    ]);
    assert_eq!(
        enc(&item),
        r#"{"B":"3","a":{"y":2,"z":1},"aa":"4","b":"1","ä":"5"}"#
    );
}

#[test]
fn deep_nesting() {
    let mut v = s("leaf\0");
    for depth in 0..32 {
        v = if depth % 2 == 0 {
            AttributeValue::L(vec![v])
        } else {
            AttributeValue::M(map(&[("k", v)]))
        };
    }
    let item = map(&[("root", v)]);
    let out = enc_with(&item, NulPolicy::Strip).unwrap();
    assert_eq!(
        out,
        format!(
            "{{\"root\":{}\"leaf\"{}}}",
            "{\"k\":[".repeat(16),
            "]}".repeat(16)
        )
    );
    let want = format!("root{}", ".k[0]".repeat(16));
    assert_eq!(
        enc_with(&item, NulPolicy::Reject),
        Err(ValueError::Nul { path: want })
    );
    assert_eq!(item_from_ddb_json(&item_to_ddb_json(&item)).unwrap(), item);
}

#[test]
fn near_400kb_item() {
    let big = "x".repeat(399_000);
    let item = map(&[("pk", s("id")), ("body", s(&big))]);
    let out = enc(&item);
    assert_eq!(out.len(), 399_000 + r#"{"body":"","pk":"id"}"#.len());
    let back: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(back["body"].as_str().unwrap().len(), 399_000);
    let ddb = item_to_ddb_json(&item);
    let text = serde_json::to_string(&ddb).unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(item_from_ddb_json(&parsed).unwrap(), item);
}

#[test]
fn type_drift_across_items() {
    assert_eq!(enc(&map(&[("x", s("5"))])), r#"{"x":"5"}"#);
    assert_eq!(enc(&map(&[("x", n("5"))])), r#"{"x":5}"#);
    assert_eq!(
        enc(&map(&[("x", AttributeValue::Ss(vec!["5".into()]))])),
        r#"{"x":["5"]}"#
    );
}

pub(super) fn every_type() -> Item {
    map(&[
        ("s", s("a\0😀")),
        ("n", n("1.50")),
        ("big", n("1E+125")),
        ("b", AttributeValue::B(b(&[0, 1, 2, 255]))),
        ("t", AttributeValue::Bool(true)),
        ("z", AttributeValue::Null(true)),
        ("ss", AttributeValue::Ss(vec!["b".into(), "a".into()])),
        ("ns", AttributeValue::Ns(vec!["10".into(), "-0.50".into()])),
        ("bs", AttributeValue::Bs(vec![b(&[1]), b(&[])])),
        (
            "l",
            AttributeValue::L(vec![n("007"), s(""), AttributeValue::L(vec![])]),
        ),
        (
            "m",
            AttributeValue::M(map(&[("k", AttributeValue::M(Item::new()))])),
        ),
    ])
}

#[test]
fn ddb_json_round_trip() {
    let item = every_type();
    let json = item_to_ddb_json(&item);
    assert_eq!(json["n"], json!({"N": "1.50"}));
    assert_eq!(json["b"], json!({"B": "AAEC/w=="}));
    assert_eq!(json["z"], json!({"NULL": true}));
    assert_eq!(json["ns"], json!({"NS": ["10", "-0.50"]}));
    assert_eq!(
        json["l"],
        json!({"L": [{"N": "007"}, {"S": ""}, {"L": []}]})
    );
    assert_eq!(json["m"], json!({"M": {"k": {"M": {}}}}));
    assert_eq!(item_from_ddb_json(&json).unwrap(), item);
    let text = serde_json::to_string(&json).unwrap();
    assert_eq!(
        item_from_ddb_json(&serde_json::from_str(&text).unwrap()).unwrap(),
        item
    );
    for v in item.values() {
        assert_eq!(&value_from_ddb_json(&value_to_ddb_json(v)).unwrap(), v);
    }
    // AWS export style input.
    let export = json!({"pk": {"S": "a"}, "t": {"BOOL": false}, "bs": {"BS": ["AQ=="]}});
    let got = item_from_ddb_json(&export).unwrap();
    assert_eq!(got["t"], AttributeValue::Bool(false));
    assert_eq!(got["bs"], AttributeValue::Bs(vec![b(&[1])]));
    assert_eq!(enc(&got), r#"{"bs":["AQ=="],"pk":"a","t":false}"#);
}

#[test]
fn ddb_json_bad_shapes() {
    let err = |v: Value| match item_from_ddb_json(&v) {
        Err(ValueError::DdbJson(m)) => m,
        other => panic!("expected DdbJson error, got {other:?}"),
    };
    assert!(
        err(json!({"a": {"S": "x", "N": "1"}})).contains("at a: expected one type key, found 2")
    );
    assert!(err(json!({"a": {}})).contains("found 0"));
    assert!(err(json!({"a": {"X": "1"}})).contains("unknown type tag X"));
    assert!(err(json!({"a": {"N": 1}})).contains("at a: N must be a string"));
    assert!(err(json!({"a": "plain"})).contains("expected an object"));
    assert!(err(json!({"a": {"B": "!!"}})).contains("not base64"));
    assert!(err(json!({"a": {"BOOL": "true"}})).contains("BOOL must be a boolean"));
    assert!(err(json!({"a": {"L": {}}})).contains("L must be an array"));
    assert!(err(json!({"a": {"M": []}})).contains("M must be an object"));
    assert!(err(json!({"a": {"SS": ["x", 1]}})).contains("SS must be a string"));
    assert!(
        err(json!({"a": {"M": {"b": {"L": [{"S": "ok"}, {"N": null}]}}}}))
            .contains("at a.b[1]: N must")
    );
    assert!(err(json!([1])).contains("item must be an object"));
    assert!(value_from_ddb_json(&json!({"S": "x", "N": "1"})).is_err());
    assert!(value_from_ddb_json(&json!({"UNKNOWN": null})).is_err());
}
