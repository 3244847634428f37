use aws_sdk_dynamodb::types::AttributeValue;

use super::*;
use crate::plan::Plan;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn example_plan() -> Plan {
    plan()
}

fn plan() -> Plan {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/single-table/mapping.toml"
    ))
    .expect("example mapping");
    crate::mapping::parse(&text).expect("parses")
}

fn order(id: &str, skus: &[&str]) -> Item {
    let lines = skus
        .iter()
        .map(|sku| {
            AttributeValue::M(
                [
                    ("sku".to_string(), s(sku)),
                    ("qty".to_string(), AttributeValue::N("1".into())),
                    ("price".to_string(), AttributeValue::N("2.50".into())),
                ]
                .into_iter()
                .collect(),
            )
        })
        .collect();
    [
        ("PK", s("USER#1")),
        ("SK", s(&format!("ORDER#{id}"))),
        ("orderId", s(id)),
        ("status", s("NEW")),
        ("lines", AttributeValue::L(lines)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn keys_of(it: &Item) -> Item {
    ["PK", "SK"]
        .iter()
        .filter_map(|k| it.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

fn rows_of(d: &[Deletion]) -> Vec<Row> {
    d.iter().map(|d| d.row.clone()).collect()
}

/// (table, first key cell, second key cell) of each row.
fn keys(rows: &[Row]) -> Vec<(usize, String)> {
    let p = plan();
    let mut v: Vec<(usize, String)> = rows
        .iter()
        .map(|r| {
            let k: Vec<String> = p.tables[r.table]
                .key
                .iter()
                .map(|&i| format!("{:?}", r.cells[i]))
                .collect();
            (r.table, k.join("/"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_shrunken_list_deletes_the_rows_it_no_longer_makes() {
    let p = plan();
    let (old, new) = (order("o1", &["a", "b", "c"]), order("o1", &["a"]));
    let mut a = Applier::new(&p, OldImages::Complete);
    let out = a.push(
        0,
        &Change {
            keys: Some(keys_of(&new)),
            old: Some(old),
            new: Some(new),
            unreadable: None,
        },
    );
    assert!(out.rejected.is_none() && !out.skipped);
    let done = a.finish();
    // The order and its line 0 are written; lines 1 and 2 deleted.
    assert_eq!(
        keys(&done.writes),
        vec![
            (1, "Text(\"o1\")".into()),
            (2, "Text(\"o1\")/Text(\"0\")".into())
        ]
    );
    assert_eq!(
        keys(&rows_of(&done.deletes)),
        vec![
            (2, "Text(\"o1\")/Text(\"1\")".into()),
            (2, "Text(\"o1\")/Text(\"2\")".into())
        ]
    );
}

#[test]
fn the_last_change_of_a_key_in_a_batch_wins() {
    let p = plan();
    let v1 = order("o1", &["a", "b"]);
    let v2 = order("o1", &["x"]);
    // Deleted, then inserted again: ends inserted.
    let mut a = Applier::new(&p, OldImages::Complete);
    a.push(
        0,
        &Change {
            keys: Some(keys_of(&v1)),
            old: Some(v1.clone()),
            new: None,
            unreadable: None,
        },
    );
    a.push(
        1,
        &Change {
            keys: Some(keys_of(&v2)),
            old: None,
            new: Some(v2.clone()),
            unreadable: None,
        },
    );
    let done = a.finish();
    assert_eq!(keys(&done.writes).len(), 2, "order + 1 line written");
    assert_eq!(
        keys(&rows_of(&done.deletes)),
        vec![(2, "Text(\"o1\")/Text(\"1\")".into())]
    );
    assert_eq!(done.write_item_of, vec![1, 1]);
    // Inserted, then deleted: ends deleted, nothing written.
    let mut a = Applier::new(&p, OldImages::Complete);
    a.push(
        0,
        &Change {
            keys: Some(keys_of(&v2)),
            old: None,
            new: Some(v2.clone()),
            unreadable: None,
        },
    );
    a.push(
        1,
        &Change {
            keys: Some(keys_of(&v2)),
            old: Some(v2.clone()),
            new: None,
            unreadable: None,
        },
    );
    let done = a.finish();
    assert!(done.writes.is_empty());
    assert_eq!(done.deletes.len(), 2);
}

#[test]
fn an_item_that_leaves_a_table_rule_loses_its_row_there() {
    let p = crate::mapping::parse(
        r#"
unrouted = "skip"
[[table]]
name = "a"
key = ["id"]
when = { kind = "a" }
[table.columns]
id = { from = "PK", type = "text" }
[[table]]
name = "b"
key = ["id"]
when = { kind = "b" }
[table.columns]
id = { from = "PK", type = "text" }
"#,
    )
    .expect("mapping");
    let it = |kind: &str| -> Item {
        [("PK", s("k")), ("kind", s(kind))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    };
    let mut a = Applier::new(&p, OldImages::Complete);
    a.push(
        0,
        &Change {
            keys: None,
            old: Some(it("a")),
            new: Some(it("b")),
            unreadable: None,
        },
    );
    let done = a.finish();
    assert_eq!(done.writes.len(), 1);
    assert_eq!(done.writes[0].table, 1);
    assert_eq!(done.deletes.len(), 1);
    assert_eq!(done.deletes[0].row.table, 0);
    // To a kind no rule takes: deleted, counted as skipped.
    let mut a = Applier::new(&p, OldImages::Complete);
    let out = a.push(
        0,
        &Change {
            keys: None,
            old: Some(it("b")),
            new: Some(it("z")),
            unreadable: None,
        },
    );
    assert!(out.skipped);
    let done = a.finish();
    assert!(done.writes.is_empty());
    assert_eq!(done.deletes.len(), 1);
}

#[test]
fn keys_only_deletions_derive_rows_or_are_rejected() {
    // The default mapping's key is the item's key: derivable, `when` ignored.
    let p = crate::mapping::parse(
        r#"
[[table]]
name = "t"
key = ["pk", "sk"]
when = { status = "x" }
[table.columns]
pk = { from = "PK", type = "text" }
sk = { from = "SK", type = "text" }
v  = { from = "v", type = "integer", required = true }
"#,
    )
    .expect("mapping");
    let k: Item = [("PK", s("p")), ("SK", s("s"))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut a = Applier::new(&p, OldImages::Unknown);
    let out = a.push(
        0,
        &Change {
            keys: Some(k.clone()),
            old: None,
            new: None,
            unreadable: None,
        },
    );
    assert!(out.rejected.is_none(), "{:?}", out.rejected);
    let done = a.finish();
    assert_eq!(done.deletes.len(), 1);
    assert_eq!(done.deletes[0].row.cells[0], Cell::Text("p".into()));
    assert_eq!(done.deletes[0].only, Only::Always);
    // The example mapping's orders are keyed by a non-key attribute: the deletion is
    // rejected with the reason, not dropped.
    let p = plan();
    let mut a = Applier::new(&p, OldImages::Unknown);
    let out = a.push(
        0,
        &Change {
            keys: Some(k),
            old: None,
            new: None,
            unreadable: None,
        },
    );
    let r = out.rejected.expect("rejected");
    assert!(r.reason.contains("NEW_AND_OLD_IMAGES"), "{}", r.reason);
    assert!(key_derivation_problem(&p, &["PK".into(), "SK".into()]).is_some());
}

#[test]
fn a_table_keyed_by_part_of_the_item_key_cannot_derive_deletions() {
    // `profiles` keyed by PK alone, on a PK+SK table: deleting (U1, E1) by its key would hit
    // the row of (U1, P). Refused, and an update without old image is counted as unsure.
    let p = crate::mapping::parse(
        r#"
[[table]]
name = "profiles"
key = ["pk"]
when = { kind = "profile" }
[table.columns]
pk = { from = "PK", type = "text" }
"#,
    )
    .expect("mapping");
    let why = key_derivation_problem(&p, &["PK".into(), "SK".into()]).expect("refused");
    assert!(why.contains("SK"), "{why}");
    let k: Item = [("PK", s("U1")), ("SK", s("E1"))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut new = k.clone();
    new.insert("kind".into(), s("event"));
    let mut a = Applier::new(&p, OldImages::Unknown);
    let out = a.push(
        0,
        &Change {
            keys: Some(k.clone()),
            old: None,
            new: None,
            unreadable: None,
        },
    );
    assert!(out.rejected.is_some());
    let out = a.push(
        1,
        &Change {
            keys: Some(k),
            old: None,
            new: Some(new),
            unreadable: None,
        },
    );
    assert!(out.unsure.is_some() && out.rejected.is_none());
    assert!(a.finish().deletes.is_empty(), "nothing deleted by a guess");
}

#[test]
fn a_rejected_new_image_still_removes_the_old_rows() {
    let p = plan();
    let old = order("o1", &["a"]);
    let mut new = order("o1", &["a"]);
    new.insert("lines".into(), s("not a list"));
    let mut a = Applier::new(&p, OldImages::Complete);
    let out = a.push(
        0,
        &Change {
            keys: None,
            old: Some(old),
            new: Some(new),
            unreadable: None,
        },
    );
    assert!(out.rejected.is_some());
    let done = a.finish();
    assert!(done.writes.is_empty());
    assert_eq!(done.deletes.len(), 2);
}

#[test]
fn a_change_holding_a_value_of_an_unknown_type_is_rejected_not_written() {
    let p = plan();
    let (old, new) = (order("o1", &["a", "b"]), order("o1", &["a"]));
    let unreadable = |whole: bool| Unreadable {
        reason: "unsupported attribute type at odd".into(),
        whole,
    };
    // In the new image: it is rejected, the old image's rows are deleted.
    let mut a = Applier::new(&p, OldImages::Complete);
    let out = a.push(
        0,
        &Change {
            keys: Some(keys_of(&new)),
            old: Some(old.clone()),
            new: Some(new.clone()),
            unreadable: Some(unreadable(false)),
        },
    );
    let r = out.rejected.expect("rejected");
    assert!(r.reason.contains("odd"), "{r:?}");
    let done = a.finish();
    assert!(done.writes.is_empty(), "nothing written");
    assert_eq!(done.deletes.len(), 3, "the order and its two lines");
    // In the old image (or the keys): nothing of the change is applied.
    let mut a = Applier::new(&p, OldImages::Complete);
    let out = a.push(
        0,
        &Change {
            keys: Some(keys_of(&new)),
            old: Some(old),
            new: Some(new),
            unreadable: Some(unreadable(true)),
        },
    );
    assert!(out.rejected.is_some());
    let done = a.finish();
    assert!(done.writes.is_empty() && done.deletes.is_empty());
}
