//! The plan: which target tables and columns the items of the source become.
//!
//! Today only the default mapping exists: one table named after the source, a column per key
//! attribute typed from AttributeDefinitions, and `item jsonb` holding the whole item.

use crate::source::{KeyAttrType, TableInfo};
use crate::value::NulPolicy;

/// PostgreSQL column types the transform can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Text,
    Numeric,
    Bytea,
    Jsonb,
}

impl PgType {
    pub fn sql(self) -> &'static str {
        match self {
            PgType::Text => "text",
            PgType::Numeric => "numeric",
            PgType::Bytea => "bytea",
            PgType::Jsonb => "jsonb",
        }
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSource {
    /// A top-level attribute of the item.
    Attr(String),
    /// The whole item, JSON-encoded.
    Item,
}

#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub name: String,
    pub ty: PgType,
    pub source: ColumnSource,
}

#[derive(Debug, Clone)]
pub struct TablePlan {
    pub schema: Option<String>,
    pub name: String,
    pub columns: Vec<ColumnPlan>,
    /// Indexes into `columns` of the conflict key.
    pub key: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub tables: Vec<TablePlan>,
    pub nul: NulPolicy,
}

/// Quote an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The default target table name: lower-cased, anything outside [a-z0-9_] becomes `_`.
pub fn default_table_name(source: &str) -> String {
    let mut s: String = source
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

impl Plan {
    /// Key columns named and typed as the key attributes, plus `item jsonb`.
    pub fn default_for(table: &TableInfo) -> Plan {
        let mut columns: Vec<ColumnPlan> = table
            .key
            .iter()
            .map(|k| ColumnPlan {
                name: k.name.clone(),
                ty: match k.ty {
                    KeyAttrType::S => PgType::Text,
                    KeyAttrType::N => PgType::Numeric,
                    KeyAttrType::B => PgType::Bytea,
                },
                source: ColumnSource::Attr(k.name.clone()),
            })
            .collect();
        let key = (0..columns.len()).collect();
        columns.push(ColumnPlan {
            name: "item".into(),
            ty: PgType::Jsonb,
            source: ColumnSource::Item,
        });
        Plan {
            tables: vec![TablePlan {
                schema: None,
                name: default_table_name(&table.name),
                columns,
                key,
            }],
            nul: NulPolicy::Reject,
        }
    }

    /// A stable, human-readable description, part of the checkpoint fingerprint.
    pub fn describe(&self) -> String {
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|t| {
                let cols: Vec<String> = t
                    .columns
                    .iter()
                    .map(|c| {
                        let from = match &c.source {
                            ColumnSource::Attr(a) => a.clone(),
                            ColumnSource::Item => "$item".into(),
                        };
                        format!("{} {} <- {}", c.name, c.ty.sql(), from)
                    })
                    .collect();
                let key: Vec<&str> = t.key.iter().map(|&i| t.columns[i].name.as_str()).collect();
                format!(
                    "{}({}) key({})",
                    t.display_name(),
                    cols.join(", "),
                    key.join(", ")
                )
            })
            .collect();
        format!("{}; nul={:?}", tables.join("; "), self.nul)
    }
}

impl TablePlan {
    /// `schema.name` as the user wrote it, for messages.
    pub fn display_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The quoted, possibly schema-qualified name, for SQL.
    pub fn sql_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", ident(s), ident(&self.name)),
            None => ident(&self.name),
        }
    }

    pub fn key_columns(&self) -> impl Iterator<Item = &ColumnPlan> {
        self.key.iter().map(|&i| &self.columns[i])
    }

    /// CREATE TABLE IF NOT EXISTS with the key as primary key.
    pub fn create_sql(&self) -> String {
        let mut cols: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let not_null = if self.key.contains(&i) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {}{}", ident(&c.name), c.ty.sql(), not_null)
            })
            .collect();
        let key: Vec<String> = self.key_columns().map(|c| ident(&c.name)).collect();
        cols.push(format!("PRIMARY KEY ({})", key.join(", ")));
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\n  {}\n)",
            self.sql_name(),
            cols.join(",\n  ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::KeyAttr;

    #[test]
    fn default_names() {
        assert_eq!(default_table_name("App-Table.v2"), "app_table_v2");
        assert_eq!(default_table_name("9lives"), "_9lives");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn default_plan_and_ddl() {
        let info = TableInfo {
            name: "App".into(),
            arn: "arn".into(),
            key: vec![
                KeyAttr {
                    name: "PK".into(),
                    ty: KeyAttrType::S,
                },
                KeyAttr {
                    name: "n".into(),
                    ty: KeyAttrType::N,
                },
            ],
            item_count: 0,
            size_bytes: 0,
        };
        let plan = Plan::default_for(&info);
        let t = &plan.tables[0];
        assert_eq!(t.name, "app");
        assert_eq!(
            t.create_sql(),
            "CREATE TABLE IF NOT EXISTS \"app\" (\n  \"PK\" text NOT NULL,\n  \"n\" numeric NOT NULL,\n  \"item\" jsonb,\n  PRIMARY KEY (\"PK\", \"n\")\n)"
        );
        assert!(plan.describe().contains("key(PK, n)"));
    }
}
