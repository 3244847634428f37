//! The plan: which target tables and columns the items of the source become.
//!
//! It comes from a mapping file (`mapping`) or is the default mapping: one table named after
//! the source, a column per key attribute typed from AttributeDefinitions, and `item jsonb`.
//!
//! Names that cannot be columns are refused before anything runs (exit 2, with the reason): a
//! key attribute `item` under the default mapping (it would collide with `item jsonb`),
//! PostgreSQL's system column names (`xmin`, `ctid`, ...) and names longer than PostgreSQL
//! keeps. ddb2pg's own batch-order column in staging tables (`_seq`) steps aside for a column
//! of that name (`seq_column`).

use sha2::{Digest, Sha256};

use crate::convert::{BaseType, ColType, TimeFormat};
use crate::error::{Error, Result};
use crate::source::{KeyAttrType, TableInfo};
use crate::value::{NulPolicy, Number};

/// A dot path into an item (`prefs.lang` is attribute `prefs`, map key `lang`).
pub type Path = Vec<String>;

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSource {
    /// An attribute of the item, or a path into its maps.
    Path(Path),
    /// The whole item (`$item`), JSON-encoded.
    Item,
    /// The position in the exploded list (`$index`).
    Index,
    /// The exploded list's element (`$element`) or a path into it (`$element.sku`).
    Element(Path),
}

/// In words, for reasons: `attribute prefs.lang`, `attribute sku of the list element`.
impl std::fmt::Display for ColumnSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = |p: &Path| crate::checkpoint::printable(&p.join(".")).into_owned();
        match self {
            ColumnSource::Path(p) => write!(f, "attribute {}", path(p)),
            ColumnSource::Item => f.write_str("the item ($item)"),
            ColumnSource::Index => f.write_str("the list index ($index)"),
            ColumnSource::Element(p) if p.is_empty() => f.write_str("the list element ($element)"),
            ColumnSource::Element(p) => write!(f, "attribute {} of the list element", path(p)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub name: String,
    pub ty: ColType,
    pub source: ColumnSource,
    /// Removed from the start of an S value before conversion; a value without it is an error.
    pub strip_prefix: Option<String>,
    /// A missing or NULL value rejects the item.
    pub required: bool,
    /// A value that does not convert becomes NULL instead of rejecting the item.
    pub on_error_null: bool,
    pub time: TimeFormat,
}

/// A literal in a `when` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    S(String),
    N(Number),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    Equals(Literal),
    BeginsWith(String),
    Exists(bool),
    In(Vec<Literal>),
    /// DynamoDB type name: S, N, B, BOOL, NULL, M, L, SS, NS, BS.
    Type(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub path: Path,
    pub test: Test,
}

#[derive(Debug, Clone)]
pub struct TablePlan {
    pub schema: Option<String>,
    pub name: String,
    pub columns: Vec<ColumnPlan>,
    /// Indexes into `columns` of the conflict key.
    pub key: Vec<usize>,
    /// All must hold for an item to produce rows here.
    pub when: Vec<Condition>,
    /// One row per element of this list.
    pub explode: Option<Path>,
}

/// Items that no table rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrouted {
    Skip,
    Reject,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub tables: Vec<TablePlan>,
    pub nul: NulPolicy,
    pub unrouted: Unrouted,
    /// From a mapping file (several items may then land on one key: collisions are counted).
    pub from_file: bool,
}

/// The columns PostgreSQL gives every table: no table can have a column of these names.
pub const SYSTEM_COLUMNS: [&str; 6] = ["tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"];

/// PostgreSQL's longest identifier (NAMEDATALEN - 1 bytes); it truncates longer names.
pub const MAX_IDENT_BYTES: usize = 63;

/// Why `name` cannot be a column name as it is, if it cannot.
pub fn column_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("a column name cannot be empty".into())
    } else if SYSTEM_COLUMNS.contains(&name) {
        Some(format!(
            "{name:?} is a PostgreSQL system column name ({}): no table can have such a column",
            SYSTEM_COLUMNS.join(", ")
        ))
    } else if name.len() > MAX_IDENT_BYTES {
        Some(format!(
            "{name:?} is {} bytes long: PostgreSQL truncates names to {MAX_IDENT_BYTES} bytes",
            name.len()
        ))
    } else {
        None
    }
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
    // PostgreSQL keeps 63 bytes of a name and drops the rest, silently: two long source names
    // equal in their first 63 bytes would share one table. A long name keeps 54 bytes and a
    // hash of the whole source name (deterministic: every run of this source derives it).
    if s.len() > MAX_NAME {
        let h = Sha256::digest(source.as_bytes());
        let tag: String = h[..4].iter().map(|b| format!("{b:02x}")).collect();
        s.truncate(MAX_NAME - 9);
        s.push('_');
        s.push_str(&tag);
    }
    s
}

/// PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1).
pub const MAX_NAME: usize = 63;

fn scalar(base: BaseType) -> ColType {
    ColType { base, array: false }
}

impl ColumnPlan {
    /// A plain column: value from `source`, no options.
    pub fn simple(name: &str, ty: ColType, source: ColumnSource) -> ColumnPlan {
        ColumnPlan {
            name: name.to_string(),
            ty,
            source,
            strip_prefix: None,
            required: false,
            on_error_null: false,
            time: TimeFormat::Auto,
        }
    }
}

impl Plan {
    /// Key columns named and typed as the key attributes, plus `item jsonb`.
    pub fn default_for(table: &TableInfo) -> Plan {
        let mut columns: Vec<ColumnPlan> = table
            .key
            .iter()
            .map(|k| {
                let base = match k.ty {
                    KeyAttrType::S => BaseType::Text,
                    KeyAttrType::N => BaseType::Numeric,
                    KeyAttrType::B => BaseType::Bytea,
                };
                ColumnPlan::simple(
                    &k.name,
                    scalar(base),
                    ColumnSource::Path(vec![k.name.clone()]),
                )
            })
            .collect();
        let key = (0..columns.len()).collect();
        columns.push(ColumnPlan::simple(
            "item",
            scalar(BaseType::Jsonb),
            ColumnSource::Item,
        ));
        Plan {
            tables: vec![TablePlan {
                schema: None,
                name: default_table_name(&table.name),
                columns,
                key,
                when: Vec::new(),
                explode: None,
            }],
            nul: NulPolicy::Reject,
            unrouted: Unrouted::Reject,
            from_file: false,
        }
    }

    /// The default mapping for `table`, refused (exit 2, with the reason) when a key
    /// attribute's name cannot be a column beside `item jsonb`: named `item` itself, a system
    /// column's name, or longer than PostgreSQL keeps.
    pub fn default_checked(table: &TableInfo) -> Result<Plan> {
        let mut problems = Vec::new();
        for k in &table.key {
            if k.name == "item" {
                problems.push(
                    "key attribute \"item\" would be a column named \"item\", but the default \
                     mapping's \"item\" column (jsonb) holds the whole item"
                        .to_string(),
                );
            } else if let Some(p) = column_name_problem(&k.name) {
                problems.push(format!("key attribute {:?}: {p}", k.name));
            }
        }
        if problems.is_empty() {
            return Ok(Plan::default_for(table));
        }
        Err(Error::config(format!(
            "the default mapping cannot hold table {:?}:\n  - {}\nuse a --mapping file that \
             names the columns, e.g. pk = {{ from = \"{}\", type = \"text\" }} and \
             doc = {{ from = \"$item\", type = \"jsonb\" }}",
            table.name,
            problems.join("\n  - "),
            table.key.first().map_or("PK", |k| k.name.as_str())
        )))
    }

    /// A stable description of everything that shapes the rows (debug format of the plan).
    pub fn describe(&self) -> String {
        let mut s = format!("nul={:?} unrouted={:?}", self.nul, self.unrouted);
        for t in &self.tables {
            s.push_str(&format!(
                "\n{} key={:?} when={:?} explode={:?}",
                t.display_name(),
                t.key,
                t.when,
                t.explode
            ));
            for c in &t.columns {
                s.push_str(&format!(
                    "\n  {} {} {:?} {:?} {} {} {:?}",
                    c.name,
                    c.ty.sql(),
                    c.source,
                    c.strip_prefix,
                    c.required,
                    c.on_error_null,
                    c.time
                ));
            }
        }
        s
    }

    /// What the checkpoint fingerprint records of the mapping.
    pub fn fingerprint_label(&self) -> String {
        let h = Sha256::digest(self.describe().as_bytes());
        let hex: String = h.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let tables: Vec<String> = self.tables.iter().map(|t| t.display_name()).collect();
        let kind = if self.from_file {
            "mapping file"
        } else {
            "default mapping"
        };
        format!("{kind} -> {} (plan {hex})", tables.join(", "))
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

    /// The name of the batch-order column of ddb2pg's staging and scratch tables: `_seq`,
    /// or `_seq_1`, `_seq_2` ... when the table has a column of that name.
    pub fn seq_column(&self) -> String {
        let taken = |n: &str| self.columns.iter().any(|c| c.name == n);
        let mut name = "_seq".to_string();
        let mut i = 0;
        while taken(&name) {
            i += 1;
            name = format!("_seq_{i}");
        }
        name
    }

    pub fn key_columns(&self) -> impl Iterator<Item = &ColumnPlan> {
        self.key.iter().map(|&i| &self.columns[i])
    }

    /// Quoted column names for SQL: (all, key, the rest).
    pub fn quoted_columns(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let all = self.columns.iter().map(|c| ident(&c.name)).collect();
        let key = self.key_columns().map(|c| ident(&c.name)).collect();
        let rest = (0..self.columns.len())
            .filter(|i| !self.key.contains(i))
            .map(|i| ident(&self.columns[i].name))
            .collect();
        (all, key, rest)
    }

    /// CREATE TABLE IF NOT EXISTS with the key as primary key (and the schema, if any).
    pub fn create_sql(&self) -> String {
        let mut cols: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let not_null = if self.key.contains(&i) || c.required {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {}{}", ident(&c.name), c.ty.sql(), not_null)
            })
            .collect();
        let key: Vec<String> = self.key_columns().map(|c| ident(&c.name)).collect();
        cols.push(format!("PRIMARY KEY ({})", key.join(", ")));
        let schema = match &self.schema {
            Some(s) => format!("CREATE SCHEMA IF NOT EXISTS {};\n", ident(s)),
            None => String::new(),
        };
        format!(
            "{schema}CREATE TABLE IF NOT EXISTS {} (\n  {}\n);",
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
    fn long_source_names_make_distinct_names_that_fit() {
        let a = default_table_name(&format!("{}_a", "x".repeat(63)));
        let b = default_table_name(&format!("{}_b", "x".repeat(63)));
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(a, default_table_name(&format!("{}_a", "x".repeat(63))));
        assert_eq!(default_table_name("MyTable"), "mytable");
    }

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
            "CREATE TABLE IF NOT EXISTS \"app\" (\n  \"PK\" text NOT NULL,\n  \"n\" numeric NOT NULL,\n  \"item\" jsonb,\n  PRIMARY KEY (\"PK\", \"n\")\n);"
        );
        assert!(plan
            .fingerprint_label()
            .starts_with("default mapping -> app (plan "));
        assert_eq!(t.seq_column(), "_seq");
    }

    fn keyed_by(names: &[&str]) -> TableInfo {
        TableInfo {
            name: "T".into(),
            arn: "arn".into(),
            key: names
                .iter()
                .map(|n| KeyAttr {
                    name: n.to_string(),
                    ty: KeyAttrType::S,
                })
                .collect(),
            item_count: 0,
            size_bytes: 0,
        }
    }

    #[test]
    fn names_that_cannot_be_columns_are_refused_with_the_reason() {
        let long = "a".repeat(MAX_IDENT_BYTES + 1);
        for (key, why) in [
            ("item", "holds the whole item"),
            ("xmin", "system column"),
            ("tableoid", "system column"),
            (long.as_str(), "truncates"),
        ] {
            let err = Plan::default_checked(&keyed_by(&["PK", key]))
                .expect_err(key)
                .to_string();
            assert!(
                err.contains(why) && err.contains("--mapping"),
                "{key}: {err}"
            );
        }
        let ok = keyed_by(&["_seq", "Item", &"b".repeat(MAX_IDENT_BYTES)]);
        let plan = Plan::default_checked(&ok).expect("these are fine");
        // ddb2pg's own staging column steps aside.
        assert_eq!(plan.tables[0].seq_column(), "_seq_1");
    }
}
