//! `--migrations DIR`: apply the `.sql` files of DIR in name order, each once, recorded in
//! `ddb2pg_schema_migrations` in the target.
//!
//! Written here rather than with refinery: refinery requires `V<n>__name.sql` file names, and
//! teams' `migrations/` folders use any names in lexical order. Each file runs in its own
//! transaction together with its record; a transaction-level advisory lock keeps two runs from
//! applying the same file; a file that changed after it was applied is refused (checksum).
//!
//! A dry run applies them too, inside the transaction it rolls back ([`Scope::Nested`]: each
//! file in a savepoint of that transaction instead of a transaction of its own).

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::error::{pg_message, Error, Result};

pub const TABLE: &str = "ddb2pg_schema_migrations";
/// Arbitrary constant for pg_advisory_xact_lock.
const LOCK_KEY: i64 = 0x6464_6232_7067;

/// Where each migration file runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In a transaction of its own, committed with its record.
    Own,
    /// In a savepoint of the transaction the connection is in (a dry run's, rolled back).
    Nested,
}

impl Scope {
    fn begin(self) -> &'static str {
        match self {
            Scope::Own => "BEGIN",
            Scope::Nested => "SAVEPOINT ddb2pg_migration",
        }
    }
    fn commit(self) -> &'static str {
        match self {
            Scope::Own => "COMMIT",
            Scope::Nested => "RELEASE SAVEPOINT ddb2pg_migration",
        }
    }
    fn rollback(self) -> &'static str {
        match self {
            Scope::Own => "ROLLBACK",
            Scope::Nested => {
                "ROLLBACK TO SAVEPOINT ddb2pg_migration; RELEASE SAVEPOINT ddb2pg_migration"
            }
        }
    }
}

/// Apply pending migrations; returns the names applied now.
pub async fn apply(client: &Client, dir: &Path, scope: Scope) -> Result<Vec<String>> {
    let mut files: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| Error::config(format!("--migrations {}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file())
        .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), p)))
        .collect();
    files.sort();
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (name text PRIMARY KEY, checksum text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(|e| Error::config(format!("cannot create {TABLE}: {}", pg_message(&e))))?;
    let mut applied = Vec::new();
    for (name, path) in files {
        let sql = std::fs::read_to_string(&path)
            .map_err(|e| Error::config(format!("cannot read migration {}: {e}", path.display())))?;
        let sum: String = Sha256::digest(sql.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        client
            .batch_execute(scope.begin())
            .await
            .map_err(|e| Error::from_pg("begin migration", e))?;
        let done = match apply_one(client, scope, &name, &path, &sql, &sum).await {
            Ok(done) => done,
            Err(e) => {
                // The error is what matters; a failed rollback ends with the connection.
                let _ = client.batch_execute(scope.rollback()).await;
                return Err(e);
            }
        };
        client
            .batch_execute(scope.commit())
            .await
            .map_err(|e| Error::from_pg("commit migration", e))?;
        if !done {
            continue;
        }
        applied.push(name);
    }
    Ok(applied)
}

/// Run one migration file and record it, in the transaction (or savepoint) the caller opened;
/// returns false when it was applied before (same checksum).
async fn apply_one(
    client: &Client,
    scope: Scope,
    name: &str,
    path: &Path,
    sql: &str,
    sum: &str,
) -> Result<bool> {
    // Nested (a dry run), the lock would be held until the dry run ends and make its other
    // connections wait; what it guards against, a file applied twice, cannot persist there.
    if scope == Scope::Own {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(|e| Error::from_pg("lock migrations", e))?;
    }
    let done = client
        .query_opt(
            &format!("SELECT checksum FROM {TABLE} WHERE name = $1"),
            &[&name],
        )
        .await
        .map_err(|e| Error::from_pg("read migrations", e))?;
    if let Some(row) = done {
        let old: String = row.get(0);
        if old != sum {
            return Err(Error::config(format!(
                "migration {name} changed after it was applied (checksum {} now {}); \
                 add a new migration file instead of editing an applied one",
                &old[..12.min(old.len())],
                &sum[..12.min(sum.len())]
            )));
        }
        return Ok(false);
    }
    client.batch_execute(sql).await.map_err(|e| {
        Error::config(format!(
            "migration {} failed: {}",
            path.display(),
            pg_message(&e)
        ))
    })?;
    client
        .execute(
            &format!("INSERT INTO {TABLE} (name, checksum) VALUES ($1, $2)"),
            &[&name, &sum],
        )
        .await
        .map_err(|e| Error::from_pg("record migration", e))?;
    Ok(true)
}
