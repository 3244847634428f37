//! Values of a DynamoDB type this ddb2pg does not know (the SDK's `Unknown`, as a stream image
//! or a Scan response holds one): a change gives the rows or the reject the scan path's
//! transform gives the same item, and an old image holding one still deletes the item's rows.

use aws_sdk_dynamodb::types::AttributeValue;

use super::*;
use crate::plan::Plan;
use crate::source::stream::unknown_value;
use crate::source::{KeyAttr, KeyAttrType, TableInfo};
use crate::transform::{transform, Routed};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.into())
}

fn unknown() -> AttributeValue {
    unknown_value().cloned().expect("this SDK makes Unknown")
}

fn default_plan() -> Plan {
    Plan::default_for(&TableInfo {
        name: "t".into(),
        arn: String::new(),
        key: vec![KeyAttr {
            name: "pk".into(),
            ty: KeyAttrType::S,
        }],
        item_count: 0,
        size_bytes: 0,
    })
}

/// Reads `pk`, `ver` and `doc`, never `odd` or `a`.
fn mapped_plan() -> Plan {
    crate::mapping::parse(
        "[[table]]\nname = \"things\"\nkey = [\"pk\"]\n[table.columns]\n\
         pk = { from = \"pk\", type = \"text\" }\nver = { from = \"ver\", type = \"integer\" }\n\
         doc = { from = \"doc\", type = \"jsonb\" }\n",
    )
    .expect("parses")
}

fn item(pk: &str, ver: &str, extra: Vec<(&str, AttributeValue)>) -> Item {
    let mut i: Item = [("pk", s(pk)), ("ver", n(ver))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    i.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    i
}

fn keys(pk: &str) -> Option<Item> {
    Some([("pk".to_string(), s(pk))].into_iter().collect())
}

/// `[x, 1, <unknown>]`, so that its unknown value is at `[2]`.
fn list_with_unknown() -> AttributeValue {
    AttributeValue::L(vec![s("x"), n("1"), unknown()])
}

fn change(pk: &str, old: Option<Item>, new: Option<Item>) -> Change {
    Change {
        keys: keys(pk),
        old,
        new,
        unreadable: None,
    }
}

#[test]
fn this_sdk_represents_a_value_of_an_unknown_type() {
    assert!(unknown_value().is_some_and(AttributeValue::is_unknown));
}

#[test]
fn a_new_image_holding_an_unknown_value_gives_what_the_scan_path_gives() {
    let nested = || AttributeValue::M([("b".to_string(), list_with_unknown())].into());
    let items = [
        item("a", "1", vec![("odd", unknown())]),
        item("b", "1", vec![("a", nested())]),
        item(
            "c",
            "1",
            vec![(
                "doc",
                AttributeValue::M([("x".to_string(), list_with_unknown())].into()),
            )],
        ),
    ];
    let mut loaded = Vec::new();
    for (name, plan) in [("default", default_plan()), ("mapped", mapped_plan())] {
        for it in &items {
            let mut scan = Vec::new();
            let want = transform(&plan, it, &mut scan);
            let mut a = Applier::new(&plan, OldImages::Complete);
            let out = a.push(0, &change("k", None, Some(it.clone())));
            let done = a.finish();
            let what = format!("{name} mapping, item {it:?}");
            match want {
                Ok(Routed::Rows) => {
                    assert!(out.rejected.is_none(), "{what}: {:?}", out.rejected);
                    assert_eq!(done.writes, scan, "{what}");
                    loaded.push((name, it["pk"].clone()));
                }
                Ok(Routed::Skipped) => unreachable!("{what}: no when"),
                Err(r) => {
                    assert_eq!(out.rejected, Some(r), "{what}");
                    assert!(done.writes.is_empty(), "{what}");
                }
            }
        }
    }
    // The default mapping's jsonb holds every attribute: all three are rejected, as a scan
    // rejects them; the mapping that reads only `doc` loads the other two.
    assert_eq!(loaded, [("mapped", s("a")), ("mapped", s("b"))]);
    let mut rows = Vec::new();
    let r = transform(&default_plan(), &items[1], &mut rows).expect_err("rejected");
    assert!(r.reason.contains("at a.b[2]"), "{r:?}");
}

#[test]
fn an_old_image_holding_an_unknown_value_the_mapping_does_not_read_deletes_its_rows() {
    let plan = mapped_plan();
    let old = item("k", "2", vec![("odd", unknown())]);
    let mut rows = Vec::new();
    transform(&plan, &old, &mut rows).expect("maps");
    let mut a = Applier::new(&plan, OldImages::Complete);
    let out = a.push(0, &change("k", Some(old), None));
    assert!(out.rejected.is_none() && out.unsure.is_none(), "{out:?}");
    let done = a.finish();
    assert_eq!(done.deletes.len(), 1);
    assert_eq!(done.deletes[0].row, rows[0]);
    assert_eq!(done.deletes[0].only, Only::IfSame { parent: None });
}

#[test]
fn an_old_image_the_mapping_rejects_deletes_the_rows_of_its_keys() {
    let plan = default_plan();
    let old = item("k", "2", vec![("odd", unknown())]);
    // A removal: the row of its key, whatever it holds.
    let mut a = Applier::new(&plan, OldImages::Complete);
    let out = a.push(0, &change("k", Some(old.clone()), None));
    assert!(out.rejected.is_none() && out.unsure.is_none(), "{out:?}");
    let done = a.finish();
    assert_eq!(done.deletes.len(), 1);
    assert_eq!(done.deletes[0].only, Only::Always);
    let mut key_row = Vec::new();
    key_rows(&plan, &keys("k").unwrap_or_default(), &mut key_row).expect("derivable");
    assert_eq!(done.deletes[0].row, key_row[0]);
    // An update to an image without one: its row is written.
    let new = item("k", "3", vec![]);
    let mut a = Applier::new(&plan, OldImages::Complete);
    let out = a.push(0, &change("k", Some(old), Some(new.clone())));
    assert!(out.rejected.is_none(), "{out:?}");
    let done = a.finish();
    let mut rows = Vec::new();
    transform(&plan, &new, &mut rows).expect("maps");
    assert_eq!(done.writes, rows);
    assert!(
        done.deletes.is_empty(),
        "the write replaces the row of its key"
    );
}

#[test]
fn an_old_image_the_mapping_rejects_whose_rows_cannot_be_derived_deletes_nothing() {
    // The example plan explodes `lines`: its rows cannot be found from an item's keys. The old
    // image's line 1 holds an unknown `qty`, which `order_lines.qty` reads: it made no rows.
    let plan = super::tests::example_plan();
    let line = |qty: AttributeValue| {
        AttributeValue::M(
            [("sku", s("a")), ("qty", qty), ("price", n("2.5"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    };
    let old: Item = [
        ("PK", s("USER#1")),
        ("SK", s("ORDER#o1")),
        ("orderId", s("o1")),
        (
            "lines",
            AttributeValue::L(vec![line(n("1")), line(unknown())]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert!(transform(&plan, &old, &mut Vec::new()).is_err());
    let keys: Item = [("PK", s("USER#1")), ("SK", s("ORDER#o1"))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut a = Applier::new(&plan, OldImages::Complete);
    let out = a.push(
        0,
        &Change {
            keys: Some(keys),
            old: Some(old),
            new: None,
            unreadable: None,
        },
    );
    assert!(out.rejected.is_none() && out.unsure.is_none(), "{out:?}");
    assert!(a.finish().deletes.is_empty());
}
