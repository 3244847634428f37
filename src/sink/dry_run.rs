//! `--dry-run`: everything the real run would do to the target, in a transaction that is
//! rolled back.
//!
//! PostgreSQL's DDL is transactional, so a dry run creates what the real run would create
//! (the default mapping's tables, `--create-tables`, `--migrations DIR`) inside the
//! transaction it rolls back, and works on an empty database. Each dry-run connection opens
//! one transaction for its whole life: [`setup`] first (migrations, then the tables), then a
//! savepoint; every batch is written after it and rolled back to it. The connection's end
//! rolls back the rest. Nothing is ever committed.
//!
//! Uncommitted DDL is visible to its own connection only, and a second connection creating
//! the same table (or altering it) waits for the first one's transaction to end. So when the
//! setup changes the schema, the dry run writes through one connection (`migrate` sets the
//! concurrency to 1 and says so); when the target already has everything, each connection's
//! setup finds nothing to do and the dry run writes with the usual concurrency.

use std::path::PathBuf;

use tokio_postgres::{Client, Transaction};

use crate::error::{Error, Result};
use crate::plan::Plan;

/// What a dry run's setup applies, as the real run would.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DryRun {
    /// `--migrations DIR`.
    pub migrations: Option<PathBuf>,
    /// Create the plan's missing tables (the default mapping, or `--create-tables`).
    pub create: bool,
}

/// What a setup changed in the schema (inside the dry run's transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    /// Migration files applied.
    pub applied: Vec<String>,
    /// Whether the migrations' record table had to be created.
    pub migrations_table: bool,
    /// Tables created, as they are displayed.
    pub tables: Vec<String>,
}

impl Changed {
    /// Whether the schema changed: then only this connection can write the dry run.
    pub fn any(&self) -> bool {
        !self.applied.is_empty() || self.migrations_table || !self.tables.is_empty()
    }
}

/// The savepoint each dry-run batch is rolled back to.
pub(super) const SAVEPOINT: &str = "ddb2pg_dry_run";

/// Migrations and tables, in the transaction the connection is in (the caller's `BEGIN`), and
/// the target checked against the plan, exactly as the real run would.
pub async fn setup(client: &Client, plan: &Plan, dry: &DryRun) -> Result<Changed> {
    let mut changed = Changed::default();
    if let Some(dir) = &dry.migrations {
        let had: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&crate::migrations::TABLE],
            )
            .await
            .map_err(|e| Error::from_pg("look up the migrations table", e))?
            .get(0);
        changed.migrations_table = !had;
        changed.applied =
            crate::migrations::apply(client, dir, crate::migrations::Scope::Nested).await?;
    }
    changed.tables = super::target::prepare_target_created(client, plan, dry.create).await?;
    Ok(changed)
}

/// Open a dry-run connection's transaction: `BEGIN`, then [`setup`].
pub(super) async fn begin(client: &Client, plan: &Plan, dry: &DryRun) -> Result<Changed> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| Error::from_pg("begin the dry run", e))?;
    setup(client, plan, dry).await
}

/// The savepoint every batch is rolled back to, once the sink's staging tables exist.
pub(super) async fn savepoint(client: &Client) -> Result<()> {
    client
        .batch_execute(&format!("SAVEPOINT {SAVEPOINT}"))
        .await
        .map_err(|e| Error::from_pg("begin the dry run", e))
}

/// A batch's transaction: its own, or in a dry run the connection's transaction, rolled back
/// to the savepoint that follows the dry run's setup (see `dry_run`).
pub(super) enum Scope<'a> {
    Tx(Transaction<'a>),
    Dry(&'a Client),
}

impl<'a> Scope<'a> {
    pub(super) async fn begin(
        client: &'a mut Client,
        dry: bool,
    ) -> Result<Scope<'a>, tokio_postgres::Error> {
        if !dry {
            return Ok(Scope::Tx(client.transaction().await?));
        }
        // Also undoes what a batch cut short (an error, a dropped future) left behind.
        client
            .batch_execute(&format!("ROLLBACK TO SAVEPOINT {}", SAVEPOINT))
            .await?;
        Ok(Scope::Dry(client))
    }

    pub(super) fn client(&self) -> &Client {
        match self {
            Scope::Tx(tx) => tx.client(),
            Scope::Dry(c) => c,
        }
    }

    /// Commit, or in a dry run roll back to the savepoint.
    pub(super) async fn end(self) -> Result<(), tokio_postgres::Error> {
        match self {
            Scope::Tx(tx) => tx.commit().await,
            Scope::Dry(c) => {
                c.batch_execute(&format!("ROLLBACK TO SAVEPOINT {}", SAVEPOINT))
                    .await
            }
        }
    }
}
