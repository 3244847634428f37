//! The mapping file (TOML): parse and check it into a `Plan`, reporting every problem at once.
//!
//! ```toml
//! unrouted = "skip"   # or "reject"
//! nul = "reject"      # or "strip" | "replace"
//! [[table]]
//! name = "users"
//! key = ["user_id"]
//! when = { SK = "PROFILE", PK = { begins_with = "USER#" } }
//! [table.columns]
//! user_id = { from = "PK", strip_prefix = "USER#", type = "text" }
//! ```

use std::path::Path as FsPath;

use serde::Deserialize;

use crate::convert::{BaseType, ColType, TimeFormat};
use crate::error::{Error, Result};
use crate::plan::{
    ColumnPlan, ColumnSource, Condition, Literal, Path, Plan, TablePlan, Test, Unrouted,
};
use crate::value::{NulPolicy, Number};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    unrouted: Option<String>,
    #[serde(default)]
    nul: Option<String>,
    #[serde(default, rename = "table")]
    tables: Vec<TableSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSpec {
    name: String,
    key: Vec<String>,
    #[serde(default)]
    when: toml::Table,
    #[serde(default)]
    explode: Option<String>,
    #[serde(default)]
    columns: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnSpec {
    from: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    strip_prefix: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    on_error: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

/// Read and check a mapping file.
pub fn load(path: &FsPath) -> Result<Plan> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("cannot read mapping file {}: {e}", path.display())))?;
    parse(&text).map_err(|e| match e {
        Error::Config(m) => Error::config(format!("mapping file {}: {m}", path.display())),
        other => other,
    })
}

fn split_path(s: &str) -> Path {
    s.split('.').map(str::to_string).collect()
}

/// Parse and check mapping text; every problem is listed in one error.
pub fn parse(text: &str) -> Result<Plan> {
    let spec: FileSpec =
        toml::from_str(text).map_err(|e| Error::config(format!("invalid TOML: {e}")))?;
    let mut problems: Vec<String> = Vec::new();
    let unrouted = match spec.unrouted.as_deref() {
        None | Some("skip") => Unrouted::Skip,
        Some("reject") => Unrouted::Reject,
        Some(o) => {
            problems.push(format!("unrouted = {o:?}: expected \"skip\" or \"reject\""));
            Unrouted::Skip
        }
    };
    let nul = match spec.nul.as_deref() {
        None | Some("reject") => NulPolicy::Reject,
        Some("strip") => NulPolicy::Strip,
        Some("replace") => NulPolicy::Replace,
        Some(o) => {
            problems.push(format!(
                "nul = {o:?}: expected \"reject\", \"strip\" or \"replace\""
            ));
            NulPolicy::Reject
        }
    };
    if spec.tables.is_empty() {
        problems.push("no [[table]] rules: add at least one".into());
    }
    let mut tables = Vec::new();
    for (ti, t) in spec.tables.into_iter().enumerate() {
        let at = format!("table {} ({:?})", ti + 1, t.name);
        let (schema, name) = match t.name.split_once('.') {
            Some((s, n)) => (Some(s.to_string()), n.to_string()),
            None => (None, t.name.clone()),
        };
        if name.is_empty() || schema.as_deref() == Some("") {
            problems.push(format!("{at}: name must be \"table\" or \"schema.table\""));
        }
        for part in std::iter::once(&name).chain(schema.as_ref()) {
            if part.len() > crate::plan::MAX_NAME {
                problems.push(format!(
                    "{at}: {part:?} is {} bytes, longer than PostgreSQL's {} (it would be cut, \
                     and names equal in their first {} bytes would share one table): shorten it",
                    part.len(),
                    crate::plan::MAX_NAME,
                    crate::plan::MAX_NAME
                ));
            }
        }
        let explode = t.explode.as_deref().map(split_path);
        let mut columns = Vec::new();
        if t.columns.is_empty() {
            problems.push(format!("{at}: no columns: add a [table.columns] section"));
        }
        for (cname, cval) in &t.columns {
            let cat = format!("{at}, column {cname:?}");
            if let Some(p) = crate::plan::column_name_problem(cname) {
                problems.push(format!("{cat}: {p}"));
            }
            let spec: ColumnSpec = match cval.clone().try_into() {
                Ok(s) => s,
                Err(e) => {
                    problems.push(format!("{cat}: {e}"));
                    continue;
                }
            };
            let Some(ty) = ColType::parse(&spec.ty) else {
                problems.push(format!(
                    "{cat}: unknown type {:?}; use text, smallint, integer, bigint, numeric, real, \
                     double precision, boolean, uuid, timestamptz, timestamp, date, jsonb, json, \
                     bytea, or an array of a scalar (e.g. text[])",
                    spec.ty
                ));
                continue;
            };
            let source = match spec.from.as_str() {
                "$item" => ColumnSource::Item,
                "$index" => ColumnSource::Index,
                "$element" => ColumnSource::Element(Vec::new()),
                f if f.starts_with("$element.") => {
                    ColumnSource::Element(split_path(&f["$element.".len()..]))
                }
                f if f.starts_with('$') => {
                    problems.push(format!(
                        "{cat}: from = {f:?}: unknown; use an attribute path, $item, $index, $element or $element.path"
                    ));
                    continue;
                }
                f if f.is_empty() || f.split('.').any(str::is_empty) => {
                    problems.push(format!("{cat}: from = {f:?} is not a valid attribute path"));
                    continue;
                }
                f => ColumnSource::Path(split_path(f)),
            };
            if matches!(source, ColumnSource::Index | ColumnSource::Element(_)) && explode.is_none()
            {
                problems.push(format!(
                    "{cat}: {} needs `explode = \"list attribute\"` on the table",
                    spec.from
                ));
            }
            let on_error_null = match spec.on_error.as_deref() {
                None | Some("reject") => false,
                Some("null") => true,
                Some(o) => {
                    problems.push(format!(
                        "{cat}: on_error = {o:?}: expected \"reject\" or \"null\""
                    ));
                    false
                }
            };
            if spec.strip_prefix.is_some()
                && matches!(ty.base, BaseType::Jsonb | BaseType::Json | BaseType::Bytea)
            {
                problems.push(format!(
                    "{cat}: strip_prefix applies to strings, not to {}",
                    ty.sql()
                ));
            }
            columns.push(ColumnPlan {
                name: cname.clone(),
                ty,
                source,
                strip_prefix: spec.strip_prefix,
                required: spec.required,
                on_error_null,
                time: spec
                    .format
                    .as_deref()
                    .map(TimeFormat::parse)
                    .unwrap_or_default(),
            });
        }
        let mut key = Vec::new();
        if t.key.is_empty() {
            problems.push(format!("{at}: key is empty: name the conflict key columns"));
        }
        for k in &t.key {
            match columns.iter().position(|c| &c.name == k) {
                Some(i) => {
                    if columns[i].on_error_null {
                        problems.push(format!(
                            "{at}: key column {k:?} cannot have on_error = \"null\""
                        ));
                    }
                    key.push(i);
                }
                None => problems.push(format!("{at}: key column {k:?} is not among its columns")),
            }
        }
        let mut when = Vec::new();
        for (attr, cond) in &t.when {
            match condition(attr, cond) {
                Ok(c) => when.push(c),
                Err(e) => problems.push(format!("{at}, when.{attr}: {e}")),
            }
        }
        tables.push(TablePlan {
            schema,
            name,
            columns,
            key,
            when,
            explode,
        });
    }
    for (i, a) in tables.iter().enumerate() {
        if tables[..i]
            .iter()
            .any(|b| b.display_name() == a.display_name())
        {
            problems.push(format!(
                "table {:?} has two rules: merge them (one rule per target table)",
                a.display_name()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::config(format!(
            "{} problem(s):\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        )));
    }
    Ok(Plan {
        tables,
        nul,
        unrouted,
        from_file: true,
    })
}

fn literal(v: &toml::Value) -> std::result::Result<Literal, String> {
    match v {
        toml::Value::String(s) => Ok(Literal::S(s.clone())),
        toml::Value::Integer(i) => Number::parse(&i.to_string())
            .map(Literal::N)
            .map_err(|e| e.to_string()),
        toml::Value::Float(f) => Number::parse(&f.to_string())
            .map(Literal::N)
            .map_err(|e| e.to_string()),
        toml::Value::Boolean(b) => Ok(Literal::Bool(*b)),
        other => Err(format!("{other:?} is not a string, number or boolean")),
    }
}

fn condition(attr: &str, v: &toml::Value) -> std::result::Result<Condition, String> {
    let path = split_path(attr);
    let test = match v {
        toml::Value::Table(t) => {
            if t.len() != 1 {
                return Err(
                    "a condition table has exactly one of begins_with, exists, in, type".into(),
                );
            }
            let Some((op, arg)) = t.iter().next() else {
                return Err("empty condition".into());
            };
            match (op.as_str(), arg) {
                ("begins_with", toml::Value::String(s)) => Test::BeginsWith(s.clone()),
                ("exists", toml::Value::Boolean(b)) => Test::Exists(*b),
                ("in", toml::Value::Array(a)) => Test::In(a.iter().map(literal).collect::<std::result::Result<_, _>>()?),
                ("type", toml::Value::String(s)) => {
                    let up = s.to_ascii_uppercase();
                    if !["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"].contains(&up.as_str()) {
                        return Err(format!("type {s:?}: expected S, N, B, BOOL, NULL, M, L, SS, NS or BS"));
                    }
                    Test::Type(up)
                }
                (op, arg) => return Err(format!("{op} = {arg:?}: expected begins_with = \"..\", exists = true|false, in = [..] or type = \"S\"")),
            }
        }
        lit => Test::Equals(literal(lit)?),
    };
    Ok(Condition { path, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
unrouted = "skip"
nul = "replace"

[[table]]
name = "crm.users"
key  = ["user_id"]
when = { SK = "PROFILE", PK = { begins_with = "USER#" } }
[table.columns]
user_id    = { from = "PK", strip_prefix = "USER#", type = "text" }
email      = { from = "email", type = "text", required = true }
age        = { from = "age", type = "integer", on_error = "null" }
lang       = { from = "prefs.lang", type = "text" }
created_at = { from = "createdAt", type = "timestamptz", format = "epoch_millis" }
doc        = { from = "$item", type = "jsonb" }

[[table]]
name = "order_lines"
explode = "lines"
key  = ["order_id", "line_no"]
when = { SK = { begins_with = "ORDER#" }, status = { in = ["new", "paid"] }, x = { exists = false } }
[table.columns]
order_id = { from = "orderId", type = "text" }
line_no  = { from = "$index", type = "integer" }
sku      = { from = "$element.sku", type = "text" }
"#;

    #[test]
    fn parses_the_documented_example() {
        let p = parse(EXAMPLE).expect("parses");
        assert_eq!(p.unrouted, Unrouted::Skip);
        assert_eq!(p.nul, NulPolicy::Replace);
        assert_eq!(p.tables.len(), 2);
        let u = &p.tables[0];
        assert_eq!(u.schema.as_deref(), Some("crm"));
        assert_eq!(u.name, "users");
        // Column order is the file's order.
        let names: Vec<&str> = u.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["user_id", "email", "age", "lang", "created_at", "doc"]
        );
        assert_eq!(
            u.columns[3].source,
            ColumnSource::Path(vec!["prefs".into(), "lang".into()])
        );
        assert_eq!(u.columns[4].time, TimeFormat::EpochMillis);
        assert!(u.columns[2].on_error_null && u.columns[1].required);
        assert_eq!(u.when.len(), 2);
        let o = &p.tables[1];
        assert_eq!(o.explode, Some(vec!["lines".to_string()]));
        assert_eq!(o.key, vec![0, 1]);
        assert_eq!(
            o.columns[2].source,
            ColumnSource::Element(vec!["sku".into()])
        );
    }

    #[test]
    fn reports_every_problem_at_once() {
        let bad = r#"
unrouted = "drop"
[[table]]
name = "t"
key = ["id", "nope"]
when = { SK = { starts = "x" } }
[table.columns]
id = { from = "PK", type = "varchar" }
n  = { from = "$index", type = "integer" }
"#;
        let err = parse(bad).expect_err("bad").to_string();
        for needle in ["unrouted", "varchar", "\"nope\"", "explode", "starts"] {
            assert!(err.contains(needle), "missing {needle:?} in: {err}");
        }
    }

    #[test]
    fn system_column_names_are_refused() {
        let err = parse(
            "[[table]]\nname='t'\nkey=['id']\n[table.columns]\nid = { from = 'PK', type = 'text' }\n\
             ctid = { from = 'c', type = 'text' }\n'' = { from = 'e', type = 'text' }\n",
        )
        .expect_err("refused")
        .to_string();
        assert!(
            err.contains("column \"ctid\"") && err.contains("system column"),
            "{err}"
        );
        assert!(err.contains("cannot be empty"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("[[table]]\nname='t'\nkey=['a']\nwhen={}\ncolums={}\n").expect_err("typo");
        assert!(err.to_string().contains("colums"), "{err}");
    }
}
