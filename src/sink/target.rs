//! Checking (and creating) the target tables before any item is read.

use tokio_postgres::Client;

use crate::error::{pg_message, Error, Result};
use crate::plan::{ident, Plan, TablePlan};

/// Create missing tables and check existing ones (see `prepare_target_with`).
pub async fn prepare_target(client: &Client, plan: &Plan) -> Result<()> {
    prepare_target_with(client, plan, true).await
}

/// Check that the target can take the plan's rows, before any item is read: every table and
/// column exists, each declared type is assignable to its column, and the key has a unique
/// index. Missing tables are created when `create` is set. Reports every problem at once.
pub async fn prepare_target_with(client: &Client, plan: &Plan, create: bool) -> Result<()> {
    prepare_target_created(client, plan, create).await.map(drop)
}

/// As `prepare_target_with`; returns the tables it created (as displayed).
pub async fn prepare_target_created(
    client: &Client,
    plan: &Plan,
    create: bool,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut created = Vec::new();
    for t in &plan.tables {
        let sql_name = t.sql_name();
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&sql_name])
            .await
            .map_err(|e| Error::from_pg("look up target table", e))?
            .get(0);
        if !exists && !create {
            problems.push(format!(
                "table {} does not exist: create it (`ddb2pg schema --mapping FILE` prints the DDL), \
                 or pass --create-tables or --migrations DIR",
                t.display_name()
            ));
            continue;
        }
        if !exists {
            client.batch_execute(&t.create_sql()).await.map_err(|e| {
                Error::config(format!(
                    "cannot create {}: {}",
                    t.display_name(),
                    pg_message(&e)
                ))
            })?;
            tracing::info!("created table {}", t.display_name());
            created.push(t.display_name());
            continue;
        }
        let cols: Vec<String> = client
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) \
                 AND attnum > 0 AND NOT attisdropped",
                &[&sql_name],
            )
            .await
            .map_err(|e| Error::from_pg("read target columns", e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for c in &t.columns {
            if !cols.contains(&c.name) {
                problems.push(format!(
                    "table {} has no column {:?} (expected {})",
                    t.display_name(),
                    c.name,
                    c.ty.sql()
                ));
                continue;
            }
            // PostgreSQL itself decides assignability: preparing (not running) an INSERT of a
            // typed NULL fails when no assignment cast exists.
            let probe = format!(
                "INSERT INTO {} ({}) SELECT NULL::{} WHERE false",
                sql_name,
                ident(&c.name),
                c.ty.sql()
            );
            if let Err(e) = client.prepare(&probe).await {
                problems.push(format!(
                    "table {} column {:?}: the mapping's type {} is not assignable: {}",
                    t.display_name(),
                    c.name,
                    c.ty.sql(),
                    pg_message(&e)
                ));
            }
        }
        let mut key: Vec<String> = t.key_columns().map(|c| c.name.clone()).collect();
        key.sort();
        let unique: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) \
                 AND i.indisunique AND i.indpred IS NULL AND (SELECT array_agg(a.attname::text \
                 ORDER BY a.attname::text) FROM pg_attribute a WHERE a.attrelid = i.indrelid \
                 AND a.attnum = ANY(i.indkey)) = $2::text[])",
                &[&sql_name, &key],
            )
            .await
            .map_err(|e| Error::from_pg("read target indexes", e))?
            .get(0);
        if !unique {
            problems.push(format!(
                "table {} has no primary key or unique index on ({}): upserts need one",
                t.display_name(),
                key.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        return Ok(created);
    }
    // Only where this run creates missing tables does dropping one let it be created.
    let advice = if create {
        "fix the target schema (or drop the table to let ddb2pg create it)"
    } else {
        "fix the target schema"
    };
    Err(Error::config(format!(
        "the target does not match the mapping:\n  - {}\n{advice}",
        problems.join("\n  - ")
    )))
}

/// A target column as the sink writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TargetColumn {
    /// Its type as PostgreSQL spells it (`format_type`: `numeric(13,2)`, `character varying(8)`).
    pub sql_type: String,
    /// The type has no `=` operator of its own (json, xml, domains, enums, arrays,
    /// `varchar`): the upsert's change detection compares its text.
    pub by_text: bool,
}

/// The target's type of each of `t`'s columns, in the plan's order.
pub(super) async fn column_types(client: &Client, t: &TablePlan) -> Result<Vec<TargetColumn>> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT EXISTS (\
             SELECT 1 FROM pg_operator o WHERE o.oprname = '=' AND o.oprleft = a.atttypid \
             AND o.oprright = a.atttypid) FROM pg_attribute a WHERE a.attrelid = to_regclass($1) \
             AND a.attnum > 0 AND NOT a.attisdropped",
            &[&t.sql_name()],
        )
        .await
        .map_err(|e| Error::from_pg("read the target's column types", e))?;
    t.columns
        .iter()
        .map(|c| {
            let r = rows
                .iter()
                .find(|r| r.get::<_, String>(0) == c.name)
                .ok_or_else(|| {
                    Error::config(format!(
                        "table {} has no column {:?} (expected {}): fix the target schema",
                        t.display_name(),
                        c.name,
                        c.ty.sql()
                    ))
                })?;
            Ok(TargetColumn {
                sql_type: r.get(1),
                by_text: r.get(2),
            })
        })
        .collect()
}
