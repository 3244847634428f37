//! PostgreSQL's refusal of rows, in words: what a reject's reason says when the target refused
//! an item's rows (a CHECK or NOT NULL constraint, a unique value, a foreign key, a value out
//! of range), and the table it refused them in.
//!
//! The words are built from the error's fields (SQLSTATE, table, column, constraint), not
//! from its message, which quotes names in double quotes; other refusals (a value out of
//! range, invalid input) give PostgreSQL's message with the column a COPY failed at, its
//! double quotes as single ones. PostgreSQL's detail is kept when it
//! says something the item does not (`Key (email)=(a@b) already exists.`), and left out when
//! it is the failing row (`Failing row contains (...)`): the whole item is in the rejects file
//! already, and a log line must not carry it. The table is the one being written when
//! PostgreSQL refused (see `Error::in_table`), else the one the error names.

use tokio_postgres::error::DbError;

/// A refusal of rows by PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The target table (as the report names it), when known.
    pub table: Option<String>,
    /// The column, when PostgreSQL names one (NOT NULL, or the column a COPY failed at).
    pub column: Option<String>,
    /// What was refused, in words, with the SQLSTATE: `column email of table users is NULL,
    /// and the table requires a value (NOT NULL) (SQLSTATE 23502)`.
    pub words: String,
    /// PostgreSQL's detail, when it is not the failing row.
    pub detail: Option<String>,
}

impl Refusal {
    pub fn of(db: &DbError) -> Refusal {
        let table = db.table().map(str::to_string);
        let detail = db
            .detail()
            .filter(|d| !d.starts_with("Failing row contains"))
            .map(unquoted);
        Refusal {
            words: format!(
                "{} (SQLSTATE {})",
                words(db, table.as_deref()),
                db.code().code()
            ),
            table,
            column: db.column().or_else(|| copy_column(db)).map(str::to_string),
            detail,
        }
    }

    /// The reason a reject line gives: `refused by PostgreSQL: <words>[; <detail>]`.
    pub fn reason(&self) -> String {
        match &self.detail {
            Some(d) => format!("refused by PostgreSQL: {}; {d}", self.words),
            None => format!("refused by PostgreSQL: {}", self.words),
        }
    }
}

/// `s` with PostgreSQL's double quotes around names as single quotes.
fn unquoted(s: &str) -> String {
    s.replace('"', "'")
}

fn words(db: &DbError, table: Option<&str>) -> String {
    let of_table = |what: String| match table {
        Some(t) => format!("{what} of table {t}"),
        None => what,
    };
    let constraint = db.constraint().map(unquoted).unwrap_or_default();
    match db.code().code() {
        "23502" => match db.column() {
            Some(c) => format!(
                "{} is NULL, and the table requires a value (NOT NULL)",
                of_table(format!("column {c}"))
            ),
            None => format!(
                "a NULL value where the table requires one (NOT NULL): {}",
                unquoted(db.message())
            ),
        },
        "23514" => format!(
            "the row breaks {}",
            of_table(format!("CHECK constraint {constraint}"))
        ),
        "23505" => format!(
            "the value is already taken: {}",
            of_table(format!("unique constraint {constraint}"))
        ),
        "23503" => format!(
            "{} refuses it",
            of_table(format!("foreign key {constraint}"))
        ),
        _ => match copy_column(db) {
            Some(c) => format!(
                "{}: {}",
                of_table(format!("column {c}")),
                unquoted(db.message())
            ),
            None => unquoted(db.message()),
        },
    }
}

/// The column a COPY failed at, from the error's context: `COPY name, line 1, column qty: "0"`.
fn copy_column(db: &DbError) -> Option<&str> {
    let context = db.where_()?;
    let rest = &context[context.find(", column ")? + ", column ".len()..];
    rest.split(':').next().filter(|c| !c.is_empty())
}
