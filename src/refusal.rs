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
    /// The target table it is filed under (as the report names it), when known.
    pub table: Option<String>,
    /// The column, when PostgreSQL names one (NOT NULL, or the column a COPY failed at).
    pub column: Option<String>,
    /// The SQLSTATE.
    code: String,
    /// PostgreSQL's message, its double quotes as single ones.
    message: String,
    /// The constraint, and the table PostgreSQL names (the constraint's).
    constraint: Option<String>,
    named_table: Option<String>,
    /// PostgreSQL's detail, when it is not the failing row.
    detail: Option<String>,
}

impl Refusal {
    pub fn of(db: &DbError) -> Refusal {
        Refusal {
            table: db.table().map(str::to_string),
            column: db.column().or_else(|| copy_column(db)).map(str::to_string),
            code: db.code().code().to_string(),
            message: unquoted(db.message()),
            constraint: db.constraint().map(unquoted),
            named_table: db.table().map(str::to_string),
            detail: db
                .detail()
                .filter(|d| !d.starts_with("Failing row contains"))
                .map(unquoted),
        }
    }

    /// The reason a reject line gives: `refused by PostgreSQL: <words> (SQLSTATE <code>)`,
    /// then `; <detail>` when there is one.
    pub fn reason(&self) -> String {
        let words = format!(
            "refused by PostgreSQL: {} (SQLSTATE {})",
            self.words(),
            self.code
        );
        match &self.detail {
            Some(d) => format!("{words}; {d}"),
            None => words,
        }
    }

    /// What was refused, in words: `column email of table users is NULL, and the table
    /// requires a value (NOT NULL)`. A constraint is named with the table PostgreSQL names
    /// (a foreign key refusing a deletion is the referencing table's).
    fn words(&self) -> String {
        let table = self.named_table.as_deref().or(self.table.as_deref());
        let of_table = |what: String| match table {
            Some(t) => format!("{what} of table {t}"),
            None => what,
        };
        let constraint = self.constraint.as_deref().unwrap_or_default();
        match (self.code.as_str(), &self.column) {
            ("23502", Some(c)) => format!(
                "{} is NULL, and the table requires a value (NOT NULL)",
                of_table(format!("column {c}"))
            ),
            ("23514", _) => format!(
                "the row breaks {}",
                of_table(format!("CHECK constraint {constraint}"))
            ),
            ("23505", _) => format!(
                "the value is already taken: {}",
                of_table(format!("unique constraint {constraint}"))
            ),
            ("23503", _) => format!(
                "{} refuses it",
                of_table(format!("foreign key {constraint}"))
            ),
            (_, Some(c)) => format!("{}: {}", of_table(format!("column {c}")), self.message),
            (_, None) => self.message.clone(),
        }
    }
}

/// `s` with PostgreSQL's double quotes around names as single quotes.
fn unquoted(s: &str) -> String {
    s.replace('"', "'")
}

/// The column a COPY failed at, from the error's context: `COPY name, line 1, column qty: "0"`.
fn copy_column(db: &DbError) -> Option<&str> {
    let context = db.where_()?;
    let rest = &context[context.find(", column ")? + ", column ".len()..];
    rest.split(':').next().filter(|c| !c.is_empty())
}
