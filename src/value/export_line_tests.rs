//! Export lines: the fast parser against the slow path (`serde_json::Value`).

use super::tests::{b, every_type, map, n, s, D38, ND38};
use super::*;
use crate::changes::Change;
use serde_json::json;
use serde_json::Value;

use super::export_line::{export_line_fast, export_line_slow};

fn line_outcome(r: Result<ExportChange, ExportLineError>) -> Result<ExportChange, String> {
    r.map_err(|e| e.to_string())
}

/// `text` must take the fast path, and give what the slow path gives, field by field.
fn fast_matches_slow(text: &str) -> Result<ExportChange, String> {
    let fast = export_line_fast(text).unwrap_or_else(|e| panic!("fast path refused {text}: {e}"));
    let v: Value = serde_json::from_str(text).unwrap();
    for (field, got) in [
        ("Item", &fast.item),
        ("NewImage", &fast.new_image),
        ("OldImage", &fast.old_image),
        ("Keys", &fast.keys),
    ] {
        let want = v.get(field).map(|x| item_from_ddb_json(x).unwrap());
        assert_eq!(got, &want, "{field} of {text}");
    }
    let got = line_outcome(parse_export_line(text));
    assert_eq!(got, line_outcome(export_line_slow(text)), "{text}");
    got
}

/// `text` is rejected with the slow path's reason, which contains `want`.
fn rejected_like_slow(text: &str, want: &str) -> String {
    let slow = line_outcome(export_line_slow(text));
    assert_eq!(line_outcome(parse_export_line(text)), slow, "{text}");
    let reason = slow.expect_err(text);
    assert!(reason.contains(want), "{text}: {reason:?} lacks {want:?}");
    reason
}

fn line_with(field: &str, item: &Item) -> String {
    json!({ field: item_to_ddb_json(item) }).to_string()
}

#[test]
fn export_line_every_type() {
    let item = every_type();
    let text = line_with("Item", &item);
    assert_eq!(fast_matches_slow(&text), Ok(ExportChange::Upsert(item)));
    let empties = map(&[
        ("m", AttributeValue::M(Item::new())),
        ("l", AttributeValue::L(vec![])),
        ("ss", AttributeValue::Ss(vec![])),
        ("ns", AttributeValue::Ns(vec![])),
        ("bs", AttributeValue::Bs(vec![])),
        ("b", AttributeValue::B(b(&[]))),
        ("f", AttributeValue::Bool(false)),
        ("nul", AttributeValue::Null(false)),
        ("s", s("")),
    ]);
    let text = line_with("Item", &empties);
    assert_eq!(fast_matches_slow(&text), Ok(ExportChange::Upsert(empties)));
    assert_eq!(
        fast_matches_slow(r#"{"Item":{}}"#),
        Ok(ExportChange::Upsert(Item::new()))
    );
}

#[test]
fn export_line_sample_items() {
    for i in 0..50 {
        let item = crate::sample::item(7, i);
        let text = line_with("Item", &item);
        assert_eq!(fast_matches_slow(&text), Ok(ExportChange::Upsert(item)));
    }
}

#[test]
fn export_line_deep_nesting() {
    let mut v = s("leaf");
    for depth in 0..40 {
        v = if depth % 2 == 0 {
            AttributeValue::L(vec![n("1"), v, AttributeValue::M(Item::new())])
        } else {
            AttributeValue::M(map(&[("k", v), ("other", AttributeValue::L(vec![]))]))
        };
    }
    let item = map(&[("root", v)]);
    let text = line_with("Item", &item);
    assert_eq!(fast_matches_slow(&text), Ok(ExportChange::Upsert(item)));
    // Past serde_json's recursion limit (128) both paths fail the same way.
    let deep = format!(
        r#"{{"Item":{{"a":{}{{"S":"x"}}{}}}}}"#,
        r#"{"L":["#.repeat(70),
        "]}".repeat(70)
    );
    rejected_like_slow(&deep, "not JSON: recursion limit exceeded");
}

#[test]
fn export_line_numbers_keep_their_text() {
    let text = format!(
        r#"{{"Item":{{"d38":{{"N":"{D38}"}},"nd38":{{"N":"{ND38}"}},"e":{{"N":"-1.50E+125"}},"small":{{"N":"1e-130"}},"z":{{"N":"007.000"}},"ns":{{"NS":["{D38}","1E2","0.10"]}}}}}}"#
    );
    let want = map(&[
        ("d38", n(D38)),
        ("nd38", n(ND38)),
        ("e", n("-1.50E+125")),
        ("small", n("1e-130")),
        ("z", n("007.000")),
        (
            "ns",
            AttributeValue::Ns(vec![D38.into(), "1E2".into(), "0.10".into()]),
        ),
    ]);
    assert_eq!(fast_matches_slow(&text), Ok(ExportChange::Upsert(want)));
}

#[test]
fn export_line_unicode_and_escapes() {
    let text = r#"{"Item":{"n\u00e4me":{"S":"caf\u00e9 \"q\"\n\t\\ \/ \ud83d\ude00 é 李"},"ss":{"SS":["\u0000","a\u001fb"]},"\u0049d":{"S":""}}}"#;
    let want = map(&[
        ("näme", s("café \"q\"\n\t\\ / 😀 é 李")),
        (
            "ss",
            AttributeValue::Ss(vec!["\0".into(), "a\u{1f}b".into()]),
        ),
        ("Id", s("")),
    ]);
    assert_eq!(fast_matches_slow(text), Ok(ExportChange::Upsert(want)));
    // An escaped field name is still the field.
    let text = r#"{"\u0049tem":{"a":{"S":"x"}}}"#;
    assert_eq!(
        fast_matches_slow(text),
        Ok(ExportChange::Upsert(map(&[("a", s("x"))])))
    );
}

#[test]
fn export_line_binary() {
    let text = r#"{"Item":{"b":{"B":"AAEC/w=="},"bs":{"BS":["AQ==","","//8="]}}}"#;
    let want = map(&[
        ("b", AttributeValue::B(b(&[0, 1, 2, 255]))),
        (
            "bs",
            AttributeValue::Bs(vec![b(&[1]), b(&[]), b(&[255, 255])]),
        ),
    ]);
    assert_eq!(fast_matches_slow(text), Ok(ExportChange::Upsert(want)));
}

#[test]
fn export_line_fields_and_precedence() {
    let keys = map(&[("pk", s("a"))]);
    let new = map(&[("pk", s("a")), ("v", n("2"))]);
    let old = map(&[("pk", s("a")), ("v", n("1"))]);
    let meta = r#""Metadata":{"WriteTimestampMicros":{"N":"1700000000000000"}}"#;
    let ddb = |i: &Item| item_to_ddb_json(i).to_string();
    let (k, nw, o) = (ddb(&keys), ddb(&new), ddb(&old));
    let change = |keys: Option<&Item>, old: Option<&Item>, new: Option<&Item>| {
        Ok(ExportChange::Change(Change {
            keys: keys.cloned(),
            old: old.cloned(),
            new: new.cloned(),
            unreadable: None,
        }))
    };
    // Incremental export: every image is kept.
    let text = format!(r#"{{{meta},"Keys":{k},"NewImage":{nw},"OldImage":{o}}}"#);
    assert_eq!(
        fast_matches_slow(&text),
        change(Some(&keys), Some(&old), Some(&new))
    );
    // Deletions: OldImage and Keys, or Keys alone.
    let text = format!(r#"{{"Keys":{k},"OldImage":{o},{meta}}}"#);
    assert_eq!(
        fast_matches_slow(&text),
        change(Some(&keys), Some(&old), None)
    );
    let text = format!(r#"{{"Keys":{k}}}"#);
    assert_eq!(fast_matches_slow(&text), change(Some(&keys), None, None));
    // Item wins over NewImage.
    let text = format!(r#"{{"NewImage":{nw},"Item":{o}}}"#);
    assert_eq!(
        fast_matches_slow(&text),
        Ok(ExportChange::Upsert(old.clone()))
    );
    // Unknown fields of any shape are ignored; whitespace anywhere.
    let text = format!(
        " {{ \"x\" : [1, -2, 3.5e10, 18446744073709551616, null, true, \"s\\u00e9\", {{\"a\": [{{}}]}}],\n\t\"Item\" : {o} , \"y\":{{}} }} \n"
    );
    assert_eq!(
        fast_matches_slow(&text),
        Ok(ExportChange::Upsert(old.clone()))
    );
    // Repeated names: the last wins, as with serde_json::Value.
    let text = format!(r#"{{"Item":{k},"Item":{o}}}"#);
    assert_eq!(
        fast_matches_slow(&text),
        Ok(ExportChange::Upsert(old.clone()))
    );
    let text = r#"{"Item":{"a":{"S":"1"},"a":{"N":"2"}}}"#;
    assert_eq!(
        fast_matches_slow(text),
        Ok(ExportChange::Upsert(map(&[("a", n("2"))])))
    );
    // The same type key twice: the fast path gives up, the slow path keeps the last.
    let text = r#"{"Item":{"a":{"S":"1","S":"2"}}}"#;
    assert!(export_line_fast(text).is_err());
    assert_eq!(
        line_outcome(parse_export_line(text)),
        Ok(ExportChange::Upsert(map(&[("a", s("2"))])))
    );
    // A valid Item makes an invalid OldImage irrelevant (the slow path never looks at it).
    let text = format!(r#"{{"Item":{o},"OldImage":{{"a":{{"X":1}}}}}}"#);
    assert_eq!(
        line_outcome(parse_export_line(&text)),
        Ok(ExportChange::Upsert(old.clone()))
    );
    // No image at all.
    let none = "expected an object with Item, NewImage, OldImage or Keys";
    for text in [
        r#"{}"#,
        r#"{"Metadata":{"a":1}}"#,
        "[1]",
        "5",
        "null",
        r#""Item""#,
    ] {
        assert_eq!(rejected_like_slow(text, none), none);
    }
}

#[test]
fn export_line_bad_input_like_slow_path() {
    for (text, want) in [
        ("", "not JSON: EOF while parsing a value"),
        (r#"{"Item":"#, "not JSON: EOF while parsing a value"),
        (r#"{"Item":{}} x"#, "not JSON: trailing characters"),
        (r#"nope"#, "not JSON: expected ident"),
        (r#"{"Item":{},"x":1e400}"#, "not JSON: number out of range"),
        (r#"{"Item":{},"x":"\ud800"}"#, "not JSON: "),
        (r#"{"Item":{},"x":"a	b"}"#, "not JSON: control character"),
        (r#"{"Item":{"a":{"S":"\x"}}}"#, "not JSON: invalid escape"),
        (
            r#"{"Item":5}"#,
            "invalid DynamoDB JSON: item must be an object of attributes",
        ),
        (
            r#"{"Item":{"a":"plain"}}"#,
            "invalid DynamoDB JSON: at a: expected an object with one type key",
        ),
        (
            r#"{"Item":{"a":{}}}"#,
            "at a: expected one type key, found 0",
        ),
        (
            r#"{"Item":{"a":{"S":"x","N":"1"}}}"#,
            "at a: expected one type key, found 2",
        ),
        (r#"{"Item":{"a":{"X":"1"}}}"#, "at a: unknown type tag X"),
        (r#"{"Item":{"a":{"s":"1"}}}"#, "at a: unknown type tag s"),
        (r#"{"Item":{"a":{"N":1}}}"#, "at a: N must be a string"),
        (
            r#"{"Item":{"a":{"BOOL":"true"}}}"#,
            "at a: BOOL must be a boolean",
        ),
        (
            r#"{"Item":{"a":{"NULL":null}}}"#,
            "at a: NULL must be a boolean",
        ),
        (r#"{"Item":{"a":{"B":"!!"}}}"#, "at a: B is not base64"),
        (r#"{"Item":{"a":{"B":"AQ="}}}"#, "at a: B is not base64"),
        (
            r#"{"Item":{"a":{"BS":["AQ==","*"]}}}"#,
            "at a: BS is not base64",
        ),
        (
            r#"{"Item":{"a":{"SS":["x",1]}}}"#,
            "at a: SS must be a string",
        ),
        (r#"{"Item":{"a":{"NS":"1"}}}"#, "at a: NS must be an array"),
        (r#"{"Item":{"a":{"L":{}}}}"#, "at a: L must be an array"),
        (r#"{"Item":{"a":{"M":[]}}}"#, "at a: M must be an object"),
        (
            r#"{"Item":{"prefs":{"M":{"lang":{"S":1}}}}}"#,
            "invalid DynamoDB JSON: at prefs.lang: S must be a string",
        ),
        (
            r#"{"Item":{"a":{"M":{"b":{"L":[{"S":"ok"},{"N":null}]}}}}}"#,
            "at a.b[1]: N must be a string",
        ),
        (
            r#"{"Item":{"a":{"L":[{"M":{"c":{"L":[{"B":"@"}]}}}]}}}"#,
            "at a[0].c[0]: B is not base64",
        ),
        // An invalid Item is an error even with a valid NewImage, and so on down.
        (
            r#"{"NewImage":{"a":{"S":"x"}},"Item":{"a":{"S":2}}}"#,
            "at a: S must be a string",
        ),
        (
            r#"{"NewImage":{"a":{"Q":"x"}},"OldImage":{"a":{"S":"x"}}}"#,
            "at a: unknown type tag Q",
        ),
        (
            r#"{"OldImage":[],"Keys":{"a":{"S":"x"}}}"#,
            "item must be an object",
        ),
        (r#"{"Keys":{"k":{"N":true}}}"#, "at k: N must be a string"),
    ] {
        rejected_like_slow(text, want);
    }
}

/// Small random edits of valid lines: whatever the fast path makes of them, the outcome is
/// the slow path's.
#[test]
fn export_line_mutations_match_slow_path() {
    let mut bases: Vec<String> = (0..5)
        .map(|i| line_with("Item", &crate::sample::item(3, i)))
        .collect();
    bases.push(line_with("Item", &every_type()));
    bases.push(
        r#"{"Metadata":{"x":[1,2.5]},"Keys":{"pk":{"S":"a"}},"NewImage":{"pk":{"S":"a"},"b":{"BS":["AQ=="]}},"OldImage":{"pk":{"S":"a"},"n":{"NULL":true}}}"#.into(),
    );
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        " ",
        "1",
        "e9",
        "-",
        "\\",
        "\\u00e9",
        "null",
        "true",
        "\"S\"",
        "\"N\"",
        "\"M\"",
        "\"L\"",
        "\"B\"",
        "\"SS\"",
        "\"BOOL\"",
        "\"NULL\"",
        "{\"S\":\"x\"}",
        "\"Item\"",
        "\"Keys\"",
        "\"OldImage\"",
        "\"NewImage\"",
        "=",
        "AQ",
        "é",
    ];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: usize| {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    };
    let (mut ok, mut bad) = (0, 0);
    for base in &bases {
        let chars: Vec<char> = base.chars().collect();
        for _ in 0..1500 {
            let mut c = chars.clone();
            for _ in 0..1 + next(2) {
                let at = next(c.len() + 1);
                match next(3) {
                    0 if at < c.len() => {
                        let end = (at + 1 + next(4)).min(c.len());
                        c.drain(at..end);
                    }
                    1 if at < c.len() => {
                        c[at] = pieces[next(pieces.len())].chars().next().unwrap_or(' ');
                    }
                    _ => {
                        let p = pieces[next(pieces.len())];
                        c.splice(at..at, p.chars());
                    }
                }
            }
            let text: String = c.into_iter().collect();
            let got = line_outcome(parse_export_line(&text));
            assert_eq!(got, line_outcome(export_line_slow(&text)), "{text}");
            if export_line_fast(&text).is_ok() {
                ok += 1;
            } else {
                bad += 1;
            }
        }
    }
    // Both paths were exercised.
    assert!(ok > 100 && bad > 1000, "fast ok {ok}, fast refused {bad}");
}
