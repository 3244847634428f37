//! The transform stage, pure: one item becomes rows for the plan's tables, or a rejection.
//!
//! Every table rule whose `when` conditions all hold produces its row (or one row per element
//! of its `explode` list). An item that no rule matches is unrouted: skipped or rejected, as the
//! plan says. An item with any value that cannot be converted is rejected whole (no partial
//! rows), unless that column says `on_error = "null"`.

use std::borrow::Cow;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::checkpoint::printable;
pub use crate::convert::type_name;
pub use crate::convert::Cell;
use crate::convert::{convert, BaseType, ConvertError, ConvertOpts};
use crate::plan::{ColumnPlan, ColumnSource, Condition, Literal, Plan, TablePlan, Test, Unrouted};
use crate::value::{self, Item, Number, ValueError};

/// A row for `plan.tables[table]`, cells in the table plan's column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub table: usize,
    pub cells: Vec<Cell>,
}

/// Why an item could not be turned into rows. It goes to the rejects file, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub table: Option<String>,
    pub column: Option<String>,
    /// A short, stable category for counting (the report groups rejects by it).
    pub kind: &'static str,
    pub reason: String,
}

/// What happened to an item that was not rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// At least one rule matched; its rows were appended.
    Rows,
    /// No rule matched and the plan skips such items.
    Skipped,
}

/// The kind of a reject for a required column without a value (`on_error = "null"` does not
/// apply to it).
const REQUIRED: &str = "required attribute missing";

fn kind_of(e: &ConvertError) -> &'static str {
    match e {
        ConvertError::TypeMismatch { .. } => "type mismatch",
        ConvertError::Invalid { .. } => "invalid value",
        ConvertError::OutOfRange { .. } => "out of range",
        ConvertError::Value(ValueError::Nul { .. }) => "text contains U+0000",
        ConvertError::Value(ValueError::InvalidNumber(_)) => "invalid number",
        ConvertError::Value(_) => "invalid value",
    }
}

/// Look a dot path up from `root`'s attributes, then through maps.
pub fn lookup<'a>(root: &'a Item, path: &[String]) -> Option<&'a AttributeValue> {
    let (first, rest) = path.split_first()?;
    descend(root.get(first)?, rest)
}

fn descend<'a>(mut v: &'a AttributeValue, path: &[String]) -> Option<&'a AttributeValue> {
    for p in path {
        match v {
            AttributeValue::M(m) => v = m.get(p)?,
            _ => return None,
        }
    }
    Some(v)
}

fn equals(v: &AttributeValue, lit: &Literal) -> bool {
    match (v, lit) {
        (AttributeValue::S(s), Literal::S(l)) => s == l,
        (AttributeValue::N(n), Literal::N(l)) => {
            Number::parse(n).is_ok_and(|n| n.cmp_value(l) == std::cmp::Ordering::Equal)
        }
        (AttributeValue::Bool(b), Literal::Bool(l)) => b == l,
        _ => false,
    }
}

/// Whether `item` meets condition `c`.
pub(crate) fn holds(item: &Item, c: &Condition) -> bool {
    let v = lookup(item, &c.path);
    match &c.test {
        Test::Exists(want) => v.is_some() == *want,
        Test::Equals(lit) => v.is_some_and(|v| equals(v, lit)),
        Test::In(lits) => v.is_some_and(|v| lits.iter().any(|l| equals(v, l))),
        Test::BeginsWith(p) => matches!(v, Some(AttributeValue::S(s)) if s.starts_with(p.as_str())),
        Test::Type(t) => v.is_some_and(|v| type_name(v) == t),
    }
}

/// Append the rows `item` produces to `out`. On rejection nothing is appended.
pub fn transform(plan: &Plan, item: &Item, out: &mut Vec<Row>) -> Result<Routed, Reject> {
    let start = out.len();
    let mut matched = false;
    for (ti, table) in plan.tables.iter().enumerate() {
        if !table.when.iter().all(|c| holds(item, c)) {
            continue;
        }
        matched = true;
        let result = match &table.explode {
            None => row(plan, table, item, None).map(|cells| out.push(Row { table: ti, cells })),
            Some(path) => match lookup(item, path) {
                None | Some(AttributeValue::Null(_)) => Ok(()),
                Some(AttributeValue::L(list)) => list.iter().enumerate().try_for_each(|(i, el)| {
                    row(plan, table, item, Some((i, el)))
                        .map(|cells| out.push(Row { table: ti, cells }))
                }),
                Some(other) => Err(Reject {
                    table: None,
                    column: None,
                    kind: "explode attribute is not a list",
                    reason: format!(
                        "attribute {} (explode) is {}, not a list (L)",
                        printable(&path.join(".")),
                        type_name(other)
                    ),
                }),
            },
        };
        if let Err(mut r) = result {
            out.truncate(start);
            r.table = Some(table.display_name());
            return Err(r);
        }
    }
    if matched {
        return Ok(Routed::Rows);
    }
    match plan.unrouted {
        Unrouted::Skip => Ok(Routed::Skipped),
        Unrouted::Reject => Err(Reject {
            table: None,
            column: None,
            kind: "unrouted",
            reason: "no table rule matches this item (unrouted = \"reject\")".into(),
        }),
    }
}

fn row(
    plan: &Plan,
    table: &TablePlan,
    item: &Item,
    element: Option<(usize, &AttributeValue)>,
) -> Result<Vec<Cell>, Reject> {
    let mut cells = Vec::with_capacity(table.columns.len());
    for (ci, col) in table.columns.iter().enumerate() {
        let reject = |kind: &'static str, reason: String| Reject {
            table: None,
            column: Some(col.name.clone()),
            kind,
            reason,
        };
        // Only for a reject: this runs for every cell of every item.
        let column = || format!("{}.{}", table.display_name(), col.name);
        let cell = cell(plan, col, item, element).or_else(|(kind, reason)| {
            if kind == REQUIRED {
                Err(reject(
                    kind,
                    format!(
                        "{reason}, and column {} requires it (required = true)",
                        column()
                    ),
                ))
            } else if col.on_error_null {
                Ok(Cell::Null)
            } else {
                Err(reject(kind, format!("column {}: {reason}", column())))
            }
        })?;
        if cell == Cell::Null && table.key.contains(&ci) {
            return Err(reject(
                "key column is NULL",
                format!("key column {} has no value (from {})", column(), col.source),
            ));
        }
        cells.push(cell);
    }
    Ok(cells)
}

/// Column `col` of a row, computed from `keys` alone (a key column): None when it has no
/// value or does not convert.
pub(crate) fn key_cell(plan: &Plan, col: &ColumnPlan, keys: &Item) -> Option<Cell> {
    cell(plan, col, keys, None)
        .ok()
        .filter(|c| *c != Cell::Null)
}

fn cell(
    plan: &Plan,
    col: &ColumnPlan,
    item: &Item,
    element: Option<(usize, &AttributeValue)>,
) -> Result<Cell, (&'static str, String)> {
    let v: Option<&AttributeValue> = match &col.source {
        ColumnSource::Item => {
            if !matches!(col.ty.base, BaseType::Jsonb | BaseType::Json) || col.ty.array {
                return Err((
                    "type mismatch",
                    format!("$item can only go to jsonb or json, not {}", col.ty.sql()),
                ));
            }
            let mut s = String::with_capacity(256);
            return value::write_item_json(item, plan.nul, &mut s)
                .map(|()| Cell::Text(s))
                .map_err(|e| (kind_of(&ConvertError::Value(e.clone())), e.to_string()));
        }
        ColumnSource::Index => {
            return match element {
                Some((i, _)) => Ok(Cell::Text(i.to_string())),
                None => Err(("invalid value", "$index outside an exploded list".into())),
            }
        }
        ColumnSource::Element(path) => element.and_then(|(_, el)| descend(el, path)),
        ColumnSource::Path(path) => lookup(item, path),
    };
    let v = match v {
        None | Some(AttributeValue::Null(_)) => {
            return if col.required {
                Err((REQUIRED, format!("{} is missing or NULL", col.source)))
            } else {
                Ok(Cell::Null)
            };
        }
        Some(v) => v,
    };
    let v: Cow<'_, AttributeValue> = match &col.strip_prefix {
        None => Cow::Borrowed(v),
        Some(prefix) => match v {
            AttributeValue::S(s) => match s.strip_prefix(prefix.as_str()) {
                Some(rest) => Cow::Owned(AttributeValue::S(rest.to_string())),
                None => {
                    return Err((
                        "missing prefix",
                        format!(
                            "value {} does not start with strip_prefix {}",
                            printable(s),
                            printable(prefix)
                        ),
                    ))
                }
            },
            other => {
                return Err((
                    "type mismatch",
                    format!("strip_prefix needs an S value, found {}", type_name(other)),
                ))
            }
        },
    };
    let opts = ConvertOpts {
        nul: plan.nul,
        time: &col.time,
    };
    convert(&v, &col.ty, &opts).map_err(|e| (kind_of(&e), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{KeyAttr, KeyAttrType, TableInfo};
    use aws_sdk_dynamodb::primitives::Blob;

    fn default_plan(key: Vec<(&str, KeyAttrType)>) -> Plan {
        Plan::default_for(&TableInfo {
            name: "t".into(),
            arn: "arn".into(),
            key: key
                .into_iter()
                .map(|(n, ty)| KeyAttr { name: n.into(), ty })
                .collect(),
            item_count: 0,
            size_bytes: 0,
        })
    }

    fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }
    fn n(v: &str) -> AttributeValue {
        AttributeValue::N(v.into())
    }

    #[test]
    fn default_mapping_rows() {
        let p = default_plan(vec![
            ("PK", KeyAttrType::S),
            ("n", KeyAttrType::N),
            ("b", KeyAttrType::B),
        ]);
        let it = item(vec![
            ("PK", s("USER#1")),
            ("n", n("0.50")),
            ("b", AttributeValue::B(Blob::new(vec![0u8, 1, 2]))),
        ]);
        let mut out = Vec::new();
        assert_eq!(transform(&p, &it, &mut out), Ok(Routed::Rows));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].cells[0], Cell::Text("USER#1".into()));
        assert_eq!(out[0].cells[1], Cell::Text("0.5".into()));
        assert_eq!(out[0].cells[2], Cell::Bytes(vec![0, 1, 2]));
        match &out[0].cells[3] {
            Cell::Text(j) => {
                let v: serde_json::Value = serde_json::from_str(j).expect("json");
                assert_eq!(v["PK"], "USER#1");
            }
            other => panic!("item cell {other:?}"),
        }
    }

    #[test]
    fn nul_in_key_or_nested_value_rejects_whole_item() {
        let p = default_plan(vec![("PK", KeyAttrType::S)]);
        let mut out = Vec::new();
        let r = transform(&p, &item(vec![("PK", s("a\0b"))]), &mut out).expect_err("rejects");
        assert_eq!(r.column.as_deref(), Some("PK"));
        assert!(r.reason.contains("U+0000"), "{}", r.reason);
        let nested = item(vec![
            ("PK", s("a")),
            ("m", AttributeValue::M(item(vec![("note", s("x\0"))]))),
        ]);
        let r = transform(&p, &nested, &mut out).expect_err("rejects");
        assert_eq!(r.column.as_deref(), Some("item"));
        assert!(r.reason.contains("m.note"), "{}", r.reason);
        assert!(out.is_empty());
    }

    #[test]
    fn key_of_wrong_type_or_missing_rejects() {
        let p = default_plan(vec![("PK", KeyAttrType::S)]);
        let wrong = item(vec![("PK", AttributeValue::L(vec![n("1")]))]);
        let r = transform(&p, &wrong, &mut Vec::new()).expect_err("a list is no text key");
        assert_eq!(r.kind, "type mismatch");
        let r =
            transform(&p, &item(vec![("x", s("1"))]), &mut Vec::new()).expect_err("missing key");
        assert_eq!(r.kind, "key column is NULL");
    }

    const MAPPING: &str = r#"
unrouted = "skip"
[[table]]
name = "users"
key = ["user_id"]
when = { SK = "PROFILE", PK = { begins_with = "USER#" } }
[table.columns]
user_id = { from = "PK", strip_prefix = "USER#", type = "text" }
email   = { from = "email", type = "text", required = true }
age     = { from = "age", type = "integer", on_error = "null" }
lang    = { from = "prefs.lang", type = "text" }

[[table]]
name = "order_lines"
explode = "lines"
key = ["order_id", "line_no"]
when = { SK = { begins_with = "ORDER#" } }
[table.columns]
order_id = { from = "orderId", type = "text" }
line_no  = { from = "$index", type = "integer" }
sku      = { from = "$element.sku", type = "text" }
qty      = { from = "$element.qty", type = "integer" }
"#;

    #[test]
    fn routes_strips_and_explodes() {
        let p = crate::mapping::parse(MAPPING).expect("mapping");
        let user = item(vec![
            ("PK", s("USER#42")),
            ("SK", s("PROFILE")),
            ("email", s("a@b")),
            ("age", s("not a number")),
            ("prefs", AttributeValue::M(item(vec![("lang", s("fr"))]))),
        ]);
        let mut out = Vec::new();
        assert_eq!(transform(&p, &user, &mut out), Ok(Routed::Rows));
        assert_eq!(
            out,
            vec![Row {
                table: 0,
                cells: vec![
                    Cell::Text("42".into()),
                    Cell::Text("a@b".into()),
                    Cell::Null,
                    Cell::Text("fr".into())
                ]
            }]
        );
        let line =
            |sku: &str, qty: &str| AttributeValue::M(item(vec![("sku", s(sku)), ("qty", n(qty))]));
        let order = item(vec![
            ("PK", s("USER#42")),
            ("SK", s("ORDER#1")),
            ("orderId", s("O1")),
            (
                "lines",
                AttributeValue::L(vec![line("A", "1"), line("B", "2")]),
            ),
        ]);
        out.clear();
        assert_eq!(transform(&p, &order, &mut out), Ok(Routed::Rows));
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1].cells,
            vec![
                Cell::Text("O1".into()),
                Cell::Text("1".into()),
                Cell::Text("B".into()),
                Cell::Text("2".into())
            ]
        );

        // Unrouted: skipped. Missing required: rejected, nothing appended.
        out.clear();
        assert_eq!(
            transform(&p, &item(vec![("PK", s("X")), ("SK", s("Y"))]), &mut out),
            Ok(Routed::Skipped)
        );
        let mut bad = user.clone();
        bad.remove("email");
        let r = transform(&p, &bad, &mut out).expect_err("required");
        assert_eq!(
            (r.table.as_deref(), r.column.as_deref(), r.kind),
            (Some("users"), Some("email"), "required attribute missing")
        );
        assert!(out.is_empty());
        // A line whose qty does not convert rejects the whole order.
        let mut o2 = order.clone();
        o2.insert(
            "lines".into(),
            AttributeValue::L(vec![line("A", "1"), line("B", "2.5")]),
        );
        let r = transform(&p, &o2, &mut out).expect_err("qty");
        assert_eq!(r.column.as_deref(), Some("qty"));
        assert!(out.is_empty());
    }

    #[test]
    fn prefix_mismatch_and_unrouted_reject() {
        let mut p = crate::mapping::parse(MAPPING).expect("mapping");
        let user = item(vec![
            ("PK", s("USER#1")),
            ("SK", s("PROFILE")),
            ("email", s("e")),
        ]);
        p.tables[0].columns[0].strip_prefix = Some("CUSTOMER#".into());
        let r = transform(&p, &user, &mut Vec::new()).expect_err("prefix");
        assert_eq!(r.kind, "missing prefix");
        p.unrouted = Unrouted::Reject;
        let r = transform(&p, &item(vec![("PK", s("Z"))]), &mut Vec::new()).expect_err("unrouted");
        assert_eq!(r.kind, "unrouted");
    }
}
