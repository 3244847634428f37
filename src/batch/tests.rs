//! A Scan page made straight from its body (`ScanPrep`) against the same page prepared from
//! the SDK's items (`prepare`): the same rows, rejects and items, alone and coalesced.

use std::sync::Arc;

use super::*;
use crate::source::{KeyAttr, KeyAttrType, TableInfo};

fn plan() -> Plan {
    Plan::default_for(&TableInfo {
        name: "t".into(),
        arn: String::new(),
        key: vec![
            KeyAttr {
                name: "PK".into(),
                ty: KeyAttrType::S,
            },
            KeyAttr {
                name: "SK".into(),
                ty: KeyAttrType::N,
            },
        ],
        item_count: 0,
        size_bytes: 0,
    })
}

/// Items the default mapping writes, and two it rejects (no sort key, a U+0000).
const BODY: &str = r#"{"Items":[
 {"PK":{"S":"a"},"SK":{"N":"12345678901234567890123456789012345678"},"doc":{"M":{"z":{"L":[{"BOOL":true},{"NULL":true},{"B":"AAEC"}]}}}},
 {"PK":{"S":"no sort key"}},
 {"PK":{"S":"b\"\\\u00e9"},"SK":{"N":"-0.5E-3"},"ss":{"SS":["x","y"]},"ns":{"NS":["1","2.50"]}},
 {"PK":{"S":"c"},"SK":{"N":"2"},"s":{"S":"nul \u0000 here"}},
 {"PK":{"S":"d"},"SK":{"N":"3"},"bs":{"BS":["/w=="]}}
],"Count":5,"ScannedCount":5,"LastEvaluatedKey":{"PK":{"S":"d"},"SK":{"N":"3"}}}"#;

const OTHER: &str =
    r#"{"Items":[{"PK":{"S":"e"},"SK":{"N":"4"}},{"PK":{"S":"f"},"SK":{"N":"5"}}],"Count":2}"#;

fn key_attrs() -> Vec<String> {
    vec!["PK".into(), "SK".into()]
}

fn made(body: &str, segment: u32) -> Prepared {
    let prep = ScanPrep {
        plan: Arc::new(plan()),
        key_attrs: key_attrs(),
        segment,
    };
    let (page, out) = prep.parse(body.as_bytes()).expect("taken");
    assert!(
        out.items.is_some_and(|i| i.is_empty()),
        "items stay out of the output"
    );
    page
}

fn from_items(body: &str, segment: u32) -> (Prepared, Vec<Item>) {
    let items = value::parse_scan_response(body.as_bytes())
        .unwrap()
        .items
        .unwrap();
    let page = Page {
        items: items.clone(),
        ..Page::default()
    };
    (prepare(&plan(), &key_attrs(), segment, page), items)
}

fn assert_same(a: &Prepared, b: &Prepared) {
    assert_eq!(a.count, b.count);
    assert_eq!(a.rows, b.rows);
    assert_eq!(a.item_of, b.item_of);
    assert_eq!(a.rejects, b.rejects);
    assert_eq!(a.skipped, b.skipped);
}

#[test]
fn a_page_made_from_its_body_is_the_page_prepared_from_its_items() {
    let fast = made(BODY, 3);
    let (slow, items) = from_items(BODY, 3);
    assert_same(&fast, &slow);
    assert_eq!(fast.count, 5);
    assert_eq!(fast.rejects.len(), 2, "{:?}", fast.rejects);
    assert!(
        fast.rejects[0].0.contains("\"segment\":3"),
        "{:?}",
        fast.rejects
    );
    assert_eq!(fast.rows.len(), 3);
    for (i, want) in items.iter().enumerate() {
        assert_eq!(fast.item(i as u32).as_deref(), Some(want), "item {i}");
    }
    assert!(fast.item(items.len() as u32).is_none());
    // The page holds the body, not the items: its estimate counts the body's bytes.
    assert!(fast.approx_bytes() >= BODY.len() as u64);
    // Several at once, in the order asked, repeated and missing ones included.
    let got = fast.items(&[4, 0, 4, 9]);
    let got: Vec<Option<&Item>> = got.iter().map(|c| c.as_deref()).collect();
    assert_eq!(
        got,
        [Some(&items[4]), Some(&items[0]), Some(&items[4]), None]
    );
}

#[test]
fn coalesced_pages_made_from_bodies_keep_each_items_place() {
    let mut fast = made(BODY, 1);
    let other = made(OTHER, 2);
    assert!(fast.can_absorb(&other));
    let _ = fast.absorb(1, other, 2);
    let (mut slow, mut items) = from_items(BODY, 1);
    let (other, more) = from_items(OTHER, 2);
    let _ = slow.absorb(1, other, 2);
    items.extend(more);
    assert_same(&fast, &slow);
    assert_eq!(fast.parts, slow.parts);
    for (i, want) in items.iter().enumerate() {
        assert_eq!(fast.item(i as u32).as_deref(), Some(want), "item {i}");
        assert_eq!(fast.part_of(i as u32), slow.part_of(i as u32));
    }
    assert!(fast.item(items.len() as u32).is_none());
}

#[test]
fn a_body_the_fast_parser_declines_makes_no_page() {
    let prep = ScanPrep {
        plan: Arc::new(plan()),
        key_attrs: key_attrs(),
        segment: 0,
    };
    // A null the SDK skips: the SDK parses this body, and its items are prepared as read.
    let body = r#"{"Items":[{"PK":{"S":"a"},"SK":{"N":"1"}},{"PK":{"S":"b"},"SK":null}]}"#;
    assert!(prep.parse(body.as_bytes()).is_err());
}
