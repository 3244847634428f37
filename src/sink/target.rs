//! Checking (and creating) the target tables before any item is read.

use tokio_postgres::Client;

use crate::error::{pg_message, Error, Result};
use crate::plan::{ident, Plan};

/// Create missing tables and check existing ones (see `prepare_target_with`).
pub async fn prepare_target(client: &Client, plan: &Plan) -> Result<()> {
    prepare_target_with(client, plan, true).await
}

/// Check that the target can take the plan's rows, before any item is read: every table and
/// column exists, each declared type is assignable to its column, and the key has a unique
/// index. Missing tables are created when `create` is set. Reports every problem at once.
pub async fn prepare_target_with(client: &Client, plan: &Plan, create: bool) -> Result<()> {
    let mut problems = Vec::new();
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
        Ok(())
    } else {
        Err(Error::config(format!(
            "the target does not match the mapping:\n  - {}\nfix the target schema (or drop the table to let ddb2pg create it)",
            problems.join("\n  - ")
        )))
    }
}
