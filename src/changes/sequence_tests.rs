//! The `Applier`'s batch against a sequential model: every sequence of up to three changes of
//! two items that share an order (and so its rows and list rows) and may share an e-mail
//! address (a lookup table keyed by it), from every starting state, applied as one batch the
//! way the sink runs it (deletions children first, each table's statement on the state as it
//! found it, a guard on the parent as the batch found it; then the writes) ends exactly as
//! applying the changes one by one to a map.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::*;
use crate::plan::Plan;
use crate::transform::transform;

const MAPPING: &str = r#"
[[table]]
name = "orders"
key = ["order_id"]
[table.columns]
order_id = { from = "orderId", type = "text" }
user_id  = { from = "PK", type = "text" }
[[table]]
name = "lines"
explode = "lines"
key = ["order_id", "line_no"]
[table.columns]
order_id = { from = "orderId", type = "text" }
line_no  = { from = "$index", type = "integer" }
sku      = { from = "$element", type = "text" }
[[table]]
name = "emails"
key = ["email"]
[table.columns]
email   = { from = "email", type = "text" }
user_id = { from = "PK", type = "text" }
"#;

type Key = (usize, Vec<Cell>);
type State = HashMap<Key, Vec<Cell>>;

fn plan() -> Plan {
    crate::mapping::parse(MAPPING).expect("mapping")
}

/// Item `who` (0 or 1) in state `v` (0..4: its list and e-mail address); None: absent.
fn item(who: usize, v: Option<usize>) -> Option<Item> {
    let v = v?;
    let s = |x: &str| AttributeValue::S(x.into());
    let lines = if v % 2 == 0 {
        vec![s("a")]
    } else {
        vec![s("a"), s("b")]
    };
    let email = if v / 2 == 0 { "e1" } else { "e2" };
    Some(
        [
            ("PK", s(["A", "B"][who])),
            ("SK", s("X")),
            ("orderId", s("o1")),
            ("email", s(email)),
            ("lines", AttributeValue::L(lines)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    )
}

fn rows(plan: &Plan, it: &Option<Item>) -> Vec<Row> {
    let mut out = Vec::new();
    if let Some(it) = it {
        transform(plan, it, &mut out).expect("transforms");
    }
    out
}

fn key(plan: &Plan, row: &Row) -> Key {
    let t = &plan.tables[row.table];
    (
        row.table,
        t.key.iter().map(|&k| row.cells[k].clone()).collect(),
    )
}

fn parent_key(p: &Parent, row: &Row) -> Key {
    (
        p.table,
        p.cols.iter().map(|&c| row.cells[c].clone()).collect(),
    )
}

/// One change applied to the map, by the rule: old rows (children first) deleted if still
/// the same, with the parent row the old image maps to; then the new rows written.
fn apply_one(plan: &Plan, state: &mut State, old: &Option<Item>, new: &Option<Item>) {
    let mut old_rows = rows(plan, old);
    old_rows.sort_by_key(|r| std::cmp::Reverse(r.table));
    for r in &old_rows {
        let same = state.get(&key(plan, r)) == Some(&r.cells);
        let guard = match parent_of(plan, r.table) {
            None => true,
            Some(p) => {
                let pk = parent_key(&p, r);
                match old_rows.iter().find(|o| key(plan, o) == pk) {
                    Some(po) => state.get(&pk) == Some(&po.cells),
                    None => true,
                }
            }
        };
        if same && guard {
            state.remove(&key(plan, r));
        }
    }
    for r in rows(plan, new) {
        state.insert(key(plan, &r), r.cells);
    }
}

/// The batch as the sink runs it (see the module's documentation).
fn run_batch(plan: &Plan, state: &mut State, done: &Applied) {
    for t in (0..plan.tables.len()).rev() {
        let before = state.clone();
        for d in done.deletes.iter().filter(|d| d.row.table == t) {
            let k = key(plan, &d.row);
            let hit = match &d.only {
                Only::Always => before.contains_key(&k),
                Only::IfSame { parent } => {
                    let guard = match (parent, parent_of(plan, t)) {
                        (Some(cells), Some(p)) => {
                            before.get(&parent_key(&p, &d.row)) == Some(cells)
                        }
                        _ => true,
                    };
                    before.get(&k) == Some(&d.row.cells) && guard
                }
            };
            if hit {
                state.remove(&k);
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for w in &done.writes {
        assert!(seen.insert(key(plan, w)), "one write per key: {w:?}");
        state.insert(key(plan, w), w.cells.clone());
    }
}

#[test]
fn the_lines_table_has_the_orders_table_as_parent() {
    let p = plan();
    assert_eq!(parent_of(&p, 0), None);
    assert_eq!(
        parent_of(&p, 1),
        Some(Parent {
            table: 0,
            cols: vec![0]
        })
    );
    assert_eq!(parent_of(&p, 2), None);
    // The example mapping: order_lines' parent is orders.
    let ex = super::tests::example_plan();
    assert_eq!(parent_of(&ex, 2).map(|p| p.table), Some(1));
}

#[test]
fn a_batch_ends_as_its_changes_applied_one_by_one() {
    let p = plan();
    let states: Vec<Option<usize>> = std::iter::once(None).chain((0..4).map(Some)).collect();
    // Every step: one item goes to another state.
    let steps: Vec<(usize, Option<usize>)> = (0..2)
        .flat_map(|who| states.iter().map(move |&v| (who, v)))
        .collect();
    let mut checked = 0;
    for x0 in &states {
        for y0 in &states {
            // The target as a load of the two items left it (Y's rows last).
            let mut start = State::new();
            apply_one(&p, &mut start, &None, &item(0, *x0));
            apply_one(&p, &mut start, &None, &item(1, *y0));
            let mut seqs: Vec<Vec<(usize, Option<usize>)>> = vec![vec![]];
            let mut last = seqs.clone();
            for _ in 0..3 {
                last = last
                    .iter()
                    .flat_map(|s| {
                        steps.iter().map(move |st| {
                            let mut s = s.clone();
                            s.push(*st);
                            s
                        })
                    })
                    .collect();
                seqs.extend(last.iter().cloned());
            }
            for seq in seqs {
                let mut now = [*x0, *y0];
                let mut changes = Vec::new();
                for &(who, v) in &seq {
                    if now[who] == v {
                        continue; // no change, no record
                    }
                    changes.push(Change {
                        keys: None,
                        old: item(who, now[who]),
                        new: item(who, v),
                        unreadable: None,
                    });
                    now[who] = v;
                }
                let mut want = start.clone();
                for c in &changes {
                    apply_one(&p, &mut want, &c.old, &c.new);
                }
                let mut a = Applier::new(&p, OldImages::Complete);
                for (i, c) in changes.iter().enumerate() {
                    a.push(i as u32, c);
                }
                let done = a.finish();
                let mut got = start.clone();
                run_batch(&p, &mut got, &done);
                assert_eq!(
                    got, want,
                    "start X={x0:?} Y={y0:?}, steps {seq:?}:\n{done:#?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20_000, "{checked}");
}
