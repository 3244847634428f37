//! The transform stage, pure: one item becomes rows for the plan's tables, or a rejection.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::plan::{ColumnSource, PgType, Plan};
use crate::value::{self, Item, NulPolicy, Number};

/// One value of a row, already in PostgreSQL's text input form (bytea stays raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Text(String),
    Bytes(Vec<u8>),
}

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

fn kind_of(e: &value::ValueError) -> &'static str {
    match e {
        value::ValueError::InvalidNumber(_) => "invalid number",
        value::ValueError::Nul { .. } => "text contains U+0000",
        value::ValueError::Unsupported { .. } => "type mismatch or missing key",
        value::ValueError::DdbJson(_) => "invalid DynamoDB JSON",
    }
}

/// Append the rows `item` produces to `out`. On rejection nothing is appended.
pub fn transform(plan: &Plan, item: &Item, out: &mut Vec<Row>) -> Result<(), Reject> {
    let start = out.len();
    for (ti, table) in plan.tables.iter().enumerate() {
        let mut cells = Vec::with_capacity(table.columns.len());
        for col in &table.columns {
            let cell = match &col.source {
                ColumnSource::Item => {
                    let mut s = String::with_capacity(256);
                    value::write_item_json(item, plan.nul, &mut s).map(|()| Cell::Text(s))
                }
                ColumnSource::Attr(name) => match item.get(name) {
                    None | Some(AttributeValue::Null(_)) => {
                        if table.key.iter().any(|&k| table.columns[k].name == col.name) {
                            Err(value::ValueError::Unsupported {
                                path: format!("{name} (key attribute missing)"),
                            })
                        } else {
                            Ok(Cell::Null)
                        }
                    }
                    Some(v) => scalar_cell(v, col.ty, plan.nul, name),
                },
            };
            match cell {
                Ok(c) => cells.push(c),
                Err(e) => {
                    out.truncate(start);
                    return Err(Reject {
                        table: Some(table.display_name()),
                        column: Some(col.name.clone()),
                        kind: kind_of(&e),
                        reason: e.to_string(),
                    });
                }
            }
        }
        out.push(Row { table: ti, cells });
    }
    Ok(())
}

/// A key-like scalar attribute into a typed cell.
fn scalar_cell(
    v: &AttributeValue,
    ty: PgType,
    nul: NulPolicy,
    path: &str,
) -> Result<Cell, value::ValueError> {
    let mismatch = || value::ValueError::Unsupported {
        path: format!(
            "{path} (expected {} for a {} column)",
            expected(ty),
            ty.sql()
        ),
    };
    match (ty, v) {
        (PgType::Text, AttributeValue::S(s)) => text(s, nul, path).map(Cell::Text),
        (PgType::Numeric, AttributeValue::N(n)) => {
            Ok(Cell::Text(Number::parse(n)?.to_json_string()))
        }
        (PgType::Bytea, AttributeValue::B(b)) => Ok(Cell::Bytes(b.as_ref().to_vec())),
        (PgType::Jsonb, v) => {
            let mut s = String::new();
            let mut p = path.to_string();
            value::write_value_json(v, nul, &mut p, &mut s)?;
            Ok(Cell::Text(s))
        }
        _ => Err(mismatch()),
    }
}

fn expected(ty: PgType) -> &'static str {
    match ty {
        PgType::Text => "S",
        PgType::Numeric => "N",
        PgType::Bytea => "B",
        PgType::Jsonb => "any type",
    }
}

/// Text for a PostgreSQL text column, with the NUL policy applied.
fn text(s: &str, nul: NulPolicy, path: &str) -> Result<String, value::ValueError> {
    if !s.contains('\0') {
        return Ok(s.to_string());
    }
    match nul {
        NulPolicy::Reject => Err(value::ValueError::Nul {
            path: path.to_string(),
        }),
        NulPolicy::Strip => Ok(s.replace('\0', "")),
        NulPolicy::Replace => Ok(s.replace('\0', "\u{FFFD}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{KeyAttr, KeyAttrType, TableInfo};
    use aws_sdk_dynamodb::primitives::Blob;

    fn plan(key: Vec<(&str, KeyAttrType)>) -> Plan {
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

    #[test]
    fn default_mapping_rows() {
        let p = plan(vec![
            ("PK", KeyAttrType::S),
            ("n", KeyAttrType::N),
            ("b", KeyAttrType::B),
        ]);
        let it = item(vec![
            ("PK", AttributeValue::S("USER#1".into())),
            ("n", AttributeValue::N("0.50".into())),
            ("b", AttributeValue::B(Blob::new(vec![0u8, 1, 2]))),
        ]);
        let mut out = Vec::new();
        transform(&p, &it, &mut out).expect("transforms");
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
    fn nul_in_key_rejects_whole_item() {
        let p = plan(vec![("PK", KeyAttrType::S)]);
        let it = item(vec![("PK", AttributeValue::S("a\0b".into()))]);
        let mut out = Vec::new();
        let r = transform(&p, &it, &mut out).expect_err("rejects");
        assert_eq!(r.column.as_deref(), Some("PK"));
        assert!(r.reason.contains("U+0000"), "{}", r.reason);
        assert!(out.is_empty());
    }

    #[test]
    fn nul_in_nested_value_rejects_with_path() {
        let p = plan(vec![("PK", KeyAttrType::S)]);
        let inner = item(vec![("note", AttributeValue::S("x\0".into()))]);
        let it = item(vec![
            ("PK", AttributeValue::S("a".into())),
            ("m", AttributeValue::M(inner)),
        ]);
        let r = transform(&p, &it, &mut Vec::new()).expect_err("rejects");
        assert_eq!(r.column.as_deref(), Some("item"));
        assert!(r.reason.contains("m.note"), "{}", r.reason);
    }

    #[test]
    fn key_of_wrong_type_or_missing_rejects() {
        let p = plan(vec![("PK", KeyAttrType::S)]);
        let wrong = item(vec![("PK", AttributeValue::N("1".into()))]);
        assert!(transform(&p, &wrong, &mut Vec::new()).is_err());
        let missing = item(vec![("x", AttributeValue::S("1".into()))]);
        assert!(transform(&p, &missing, &mut Vec::new()).is_err());
    }
}
