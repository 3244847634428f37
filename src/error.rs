//! The crate's error type, with the exit code each kind maps to and whether retrying can help.

use std::path::PathBuf;

/// Everything that stops a command. `anyhow` is used only at the very edge (main).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad flag, an unreachable or missing table, a refused resume: the user must act.
    #[error("{0}")]
    Config(String),

    /// DynamoDB failed after the SDK's retries.
    #[error("DynamoDB: {message}")]
    Source { message: String, retryable: bool },

    /// PostgreSQL failed. `row_error`: caused by the data of particular rows (a constraint
    /// violation, a value out of range), so isolating those rows lets the rest land.
    #[error("PostgreSQL: {message}")]
    Sink {
        message: String,
        retryable: bool,
        row_error: bool,
        /// For a `row_error`: what PostgreSQL refused, in words, and where (see
        /// [`crate::refusal`]).
        refusal: Option<Box<crate::refusal::Refusal>>,
    },

    /// A signal stopped the run while it waited (e.g. retrying through a PostgreSQL outage):
    /// what is committed is in the checkpoint, the rest is read again on resume.
    #[error("interrupted: {0}")]
    Interrupted(String),

    /// A file could not be read or written: the checkpoint, lock or rejects file, or a file
    /// of an export (named, with what the OS said).
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

impl Error {
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    pub fn file(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            message: err.to_string(),
        }
    }

    /// Process exit code for this error (see `ddb2pg migrate --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            Error::Interrupted(_) => 130,
            _ => 1,
        }
    }

    /// Whether the same operation may succeed if tried again (throttling, lost connection).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Source { retryable, .. } | Error::Sink { retryable, .. } => *retryable,
            Error::Config(_) | Error::File { .. } | Error::Interrupted(_) => false,
        }
    }

    /// Whether the error comes from particular rows' data (see `Error::Sink`).
    pub fn is_row_error(&self) -> bool {
        matches!(
            self,
            Error::Sink {
                row_error: true,
                ..
            }
        )
    }

    /// Classify a PostgreSQL error: connection-level and transient server states are retryable.
    pub fn from_pg(context: &str, err: tokio_postgres::Error) -> Self {
        let retryable = match err.code() {
            Some(code) => {
                let c = code.code();
                // 08: connection exception, 40001 serialization, 40P01 deadlock,
                // 57P01..03 admin shutdown / crash shutdown / cannot connect now, 57014 timeout.
                c.starts_with("08")
                    || c == "40001"
                    || c == "40P01"
                    || c.starts_with("57P0")
                    || c == "57014"
                    || c == "53300"
            }
            None => err.is_closed() || err.as_db_error().is_none(),
        };
        // 22: data exception, 23: integrity constraint violation, 54000: program limit
        // (e.g. an index row too large): all caused by the rows themselves.
        let row_error = err.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("22") || c.starts_with("23") || c == "54000"
        });
        let refusal = row_error
            .then(|| err.as_db_error().map(crate::refusal::Refusal::of))
            .flatten()
            .map(Box::new);
        Error::Sink {
            message: format!("{context}: {}", pg_message(&err)),
            retryable,
            row_error,
            refusal,
        }
    }

    /// A refusal met writing or deleting rows of `table` (its display name, as the report
    /// names tables): filed under that table, whatever table PostgreSQL's error names (a
    /// deletion refused by a foreign key names the referencing table).
    pub fn in_table(mut self, table: &str) -> Self {
        if let Error::Sink {
            refusal: Some(r), ..
        } = &mut self
        {
            r.table = Some(table.to_string());
        }
        self
    }

    /// What PostgreSQL refused, for a row error.
    pub fn refusal(&self) -> Option<&crate::refusal::Refusal> {
        match self {
            Error::Sink { refusal, .. } => refusal.as_deref(),
            _ => None,
        }
    }
}

/// The full text of a PostgreSQL error: message, detail and hint when the server sent them.
pub fn pg_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; detail: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => {
            let mut s = err.to_string();
            let mut src = std::error::Error::source(err);
            while let Some(e) = src {
                s.push_str(&format!(": {e}"));
                src = e.source();
            }
            s
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
