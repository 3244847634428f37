//! The fast Scan parser against the SDK's own deserializer, on the same response bytes.

use std::sync::atomic::Ordering;

use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

use super::*;

fn response(status: u16, body: &[u8]) -> HttpResponse {
    let status = StatusCode::try_from(status).unwrap();
    HttpResponse::new(status, SdkBody::from(body.to_vec()))
}

fn outcome(r: Result<Output, OrchestratorError<OpError>>) -> Result<ScanOutput, String> {
    match r {
        Ok(out) => Ok(out.downcast::<ScanOutput>().expect("a ScanOutput")),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// What the SDK alone makes of `body`.
pub(super) fn sdk(status: u16, body: &[u8]) -> Result<ScanOutput, String> {
    let layer = Scan::new().config().unwrap();
    let d = layer.load::<SharedResponseDeserializer>().unwrap();
    outcome(d.deserialize_nonstreaming_with_config(&response(status, body), &ConfigBag::base()))
}

/// What the fast deserializer makes of `body`, and whether it parsed it itself.
pub(super) fn fast(status: u16, body: &[u8]) -> (Result<ScanOutput, String>, bool) {
    let f = FastScan::new().unwrap();
    let r =
        f.0.deserialize_nonstreaming_with_config(&response(status, body), &ConfigBag::base());
    (outcome(r), f.counts().fast.load(Ordering::Relaxed) == 1)
}

/// Both give the same outcome; returns whether the fast parser took the body.
fn same(body: &str) -> bool {
    let (got, took) = fast(200, body.as_bytes());
    let want = sdk(200, body.as_bytes());
    match (&got, &want) {
        (Ok(g), Ok(w)) => assert_eq!(g, w, "{body}"),
        // Both failed: the fast side's error is the SDK's (it declined and handed over).
        (Err(g), Err(w)) => assert_eq!(g, w, "{body}"),
        _ => panic!("{body}: fast {got:?}, SDK {want:?}"),
    }
    took
}

const HOSTILE: &str = r#"{"Items":[{
  "PK":{"S":"USER#\u00e9\"\\\/\n\t\b\f\r\u0001 \ud83d\ude00 \u2028"},
  "n38":{"N":"12345678901234567890123456789012345678"},
  "neg":{"N":"-0.00000000000000000000000000000000000001"},
  "big":{"N":"9.9999999999999999999999999999999999999E+125"},
  "bin":{"B":"AAECA/8+Pz9A"},
  "empty_b":{"B":""},
  "bs":{"BS":["AQ==","Ag==","/w=="]},
  "ss":{"SS":["b","a","\u0000nul",""]},
  "ns":{"NS":["1","1.0","-1E-130","10"]},
  "m":{"M":{"":{"S":""},"deep":{"L":[{"M":{"x":{"L":[{"NULL":true},{"BOOL":false}]}}}]}}},
  "l":{"L":[]},"e":{"M":{}},"t":{"BOOL":true},"z":{"NULL":true},
  "dup":{"S":"first"},"dup":{"S":"last"}
}],"Count":1,"ScannedCount":7,
"LastEvaluatedKey":{"PK":{"S":"USER#1"},"SK":{"N":"1"}},
"ConsumedCapacity":{"TableName":"app","CapacityUnits":128.5},
"SomethingNew":{"a":[1,2.5,null,true,"x"]}}"#;

#[test]
fn every_type_and_escape_is_parsed_fast_as_the_sdk_does() {
    assert!(same(HOSTILE));
    let out = fast(200, HOSTILE.as_bytes()).0.unwrap();
    let item = &out.items.as_ref().unwrap()[0];
    // Built by hand: what the transform will see.
    assert_eq!(
        item["n38"],
        AttributeValue::N("12345678901234567890123456789012345678".into())
    );
    assert_eq!(
        item["bin"],
        AttributeValue::B(Blob::new(vec![0, 1, 2, 3, 255, 62, 63, 63, 64]))
    );
    assert_eq!(
        item["PK"],
        AttributeValue::S("USER#é\"\\/\n\t\u{8}\u{c}\r\u{1} 😀 \u{2028}".into())
    );
    assert_eq!(item["dup"], AttributeValue::S("last".into()));
    assert_eq!(out.count, 1);
    assert_eq!(out.scanned_count, 7);
    let cc = out.consumed_capacity.unwrap();
    assert_eq!(cc.capacity_units, Some(128.5));
    assert_eq!(cc.table_name.as_deref(), Some("app"));
}

#[test]
fn plain_pages_are_parsed_fast() {
    for body in [
        r#"{"Items":[],"Count":0,"ScannedCount":0}"#,
        r#"{"Count":0,"ScannedCount":0}"#,
        r#"{"Items":[],"LastEvaluatedKey":{}}"#,
        r#" {"Items":[{"k":{"L":[{"L":[{"L":[]}]}]}}]} "#,
        r#"{"ConsumedCapacity":{"TableName":"t","CapacityUnits":5,"ReadCapacityUnits":5}}"#,
    ] {
        assert!(same(body), "not taken: {body}");
    }
}

/// What the fast parser leaves to the SDK: the SDK's own outcome, value or error.
#[test]
fn unusual_bodies_are_left_to_the_sdk() {
    let deep_ok = format!(
        r#"{{"Items":[{{"a":{}{{"S":"x"}}{}}}]}}"#,
        r#"{"L":["#.repeat(60),
        "]}".repeat(60)
    );
    let too_deep = format!(
        r#"{{"Items":[{{"a":{}{{"S":"x"}}{}}}]}}"#,
        r#"{"L":["#.repeat(200),
        "]}".repeat(200)
    );
    assert!(same(&deep_ok));
    for body in [
        // Items twice (the SDK keeps the last; the streaming parser has handed on the first).
        r#"{"Items":[{"a":{"S":"x"}}],"Items":[{"b":{"N":"2"}}],"Count":1}"#,
        // Unknown type tag: the SDK keeps it as Unknown (the transform rejects it).
        r#"{"Items":[{"a":{"QQ":{"S":"1"}}}]}"#,
        // Nulls the SDK skips or refuses.
        r#"{"Items":[{"a":null}]}"#,
        r#"{"Items":[null]}"#,
        r#"{"Items":null,"Count":null,"LastEvaluatedKey":null}"#,
        r#"{"Items":[{"a":{"S":null,"N":"1"}}]}"#,
        r#"{"Items":[{"a":{"__type":"x","S":"1"}}]}"#,
        r#"{"Items":[{"a":{"SS":["x",null]}}]}"#,
        // Two type keys, no type key.
        r#"{"Items":[{"a":{"S":"a","N":"1"}}]}"#,
        r#"{"Items":[{"a":{}}]}"#,
        // The SDK decodes base64 before unescaping: an escaped blob is an error there.
        r#"{"Items":[{"a":{"B":"QQ\u003d\u003d"}}]}"#,
        r#"{"Items":[{"a":{"B":"\/w=="}}]}"#,
        r#"{"Items":[{"a":{"BS":["\/w=="]}}]}"#,
        // Not canonical base64.
        r#"{"Items":[{"a":{"B":"QR=="}}]}"#,
        r#"{"Items":[{"a":{"B":"QQ"}}]}"#,
        r#"{"Items":[{"a":{"B":"Q Q=="}}]}"#,
        // Not strings where strings belong.
        r#"{"Items":[{"a":{"N":1}}]}"#,
        r#"{"Items":[{"a":{"BOOL":"true"}}]}"#,
        // Counts that are not i32.
        r#"{"Count":1.5}"#,
        r#"{"Count":99999999999}"#,
        // A per-index capacity breakdown.
        r#"{"ConsumedCapacity":{"TableName":"t","CapacityUnits":2,"Table":{"CapacityUnits":1}}}"#,
        // Broken JSON and text.
        "",
        "{}x",
        r#"{"Items":[{"a":{"S":"\ud800"}}]}"#,
        "{\"Items\":[{\"a\":{\"S\":\"tab\there\"}}]}",
        &too_deep,
    ] {
        assert!(!same(body), "taken, but must be left to the SDK: {body}");
    }
    // Not UTF-8.
    let (got, took) = fast(200, b"{\"Items\":[{\"a\":{\"S\":\"\xff\"}}]}");
    assert!(!took);
    assert_eq!(got, sdk(200, b"{\"Items\":[{\"a\":{\"S\":\"\xff\"}}]}"));
}

#[test]
fn error_responses_are_the_sdks() {
    let body = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#;
    let (got, took) = fast(400, body);
    assert!(!took);
    let err = got.unwrap_err();
    assert_eq!(err, sdk(400, body).unwrap_err());
    assert!(err.contains("ProvisionedThroughputExceeded"), "{err}");
}

/// Around both parsers' nesting limits (serde_json's 128 levels, the SDK's depth 128), the
/// outcomes agree; lists and maps nest differently in each.
#[test]
fn nesting_limits_agree() {
    for (open, close) in [(r#"{"L":["#, "]}"), (r#"{"M":{"k":"#, "}}")] {
        let mut taken = Vec::new();
        for depth in 50..70 {
            let body = format!(
                r#"{{"Items":[{{"a":{}{{"S":"x"}}{}}}]}}"#,
                open.repeat(depth),
                close.repeat(depth)
            );
            taken.push(same(&body));
        }
        assert!(taken[0] && !taken[19], "{open}: {taken:?}");
    }
}

/// Capacity units are read to the same f64 as the SDK's (`f64::from_str`, correctly rounded):
/// serde_json's default float parser is off by one unit in the last place on some inputs.
#[test]
fn capacity_units_are_the_sdks_to_the_last_bit() {
    for units in [
        "2.2250738585072011e-308",
        "0.1",
        "128.5",
        "7.038531e-26",
        "1.7976931348623157e308",
        "9007199254740993",
        "18446744073709551616",
        "0.30000000000000004",
        "4.9406564584124654e-324",
    ] {
        let body = format!(r#"{{"Count":0,"ConsumedCapacity":{{"CapacityUnits":{units}}}}}"#);
        assert!(same(&body), "not taken: {body}");
        let got = fast(200, body.as_bytes()).0.unwrap();
        let want: f64 = units.parse().unwrap();
        let cc = got.consumed_capacity.unwrap();
        assert_eq!(
            cc.capacity_units.map(f64::to_bits),
            Some(want.to_bits()),
            "{units}"
        );
    }
}

/// A `ParseBody` that records what the deserializer asked of it.
#[derive(Debug, Default)]
struct Recorder {
    calls: std::sync::Mutex<Vec<&'static str>>,
}

impl ParseBody for Recorder {
    fn parse(&self, body: &[u8]) -> Result<ScanOutput, Declined> {
        self.calls.lock().unwrap().push("parse");
        let mut out = crate::value::parse_scan_items(body, &mut |_| {})?;
        out.items = None;
        Ok(out)
    }
    fn clear(&self) {
        self.calls.lock().unwrap().push("clear");
    }
}

/// Every attempt's response first clears what an earlier attempt made; only a 2xx body is
/// parsed by the call's `ParseBody`, and one it declines goes to the SDK (items in the output).
#[test]
fn each_attempt_clears_the_calls_page_first() {
    let rec = std::sync::Arc::new(Recorder::default());
    let f = FastScan::new().unwrap().with(rec.clone());
    let run = |status: u16, body: &str| {
        outcome(f.0.deserialize_nonstreaming_with_config(
            &response(status, body.as_bytes()),
            &ConfigBag::base(),
        ))
    };
    let ok = r#"{"Items":[{"a":{"S":"x"}}],"Count":1}"#;
    assert!(run(500, r#"{"__type":"InternalServerError"}"#).is_err());
    assert_eq!(
        run(200, ok).unwrap().items,
        None,
        "the items went to the ParseBody"
    );
    // An unknown type tag: the SDK keeps the item (its value Unknown).
    let declined = run(200, r#"{"Items":[{"a":{"QQ":{"S":"1"}}}]}"#).unwrap();
    assert_eq!(declined.items.map(|i| i.len()), Some(1), "the SDK's items");
    assert_eq!(
        *rec.calls.lock().unwrap(),
        ["clear", "clear", "parse", "clear", "parse"]
    );
}
