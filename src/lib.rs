//! ddb2pg: move a DynamoDB table into PostgreSQL, in parallel, idempotently and resumably.
//!
//! Stages: `source` (segmented scan) -> `transform` (item -> rows, pure) -> `sink` (batched
//! upserts), wired by `pipeline`, with `checkpoint` recording what is committed.

pub mod checkpoint;
pub mod cli;
pub mod error;
pub mod migrate;
pub mod migrations;
pub mod pgconn;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod rejects;
pub mod report;
pub mod sample;
pub mod sink;
pub mod source;
pub mod transform;
pub mod value;

use cli::{Cli, Command};
pub use error::{Error, Result};

/// Run a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Migrate(args) => migrate::migrate(args).await,
        Command::Sample(args) => {
            let source = source::Source::connect(&args.aws).await?;
            let started = std::time::Instant::now();
            sample::load(&source.client, &args.table, args.seed, args.items).await?;
            eprintln!(
                "ddb2pg: wrote {} sample items into {:?} at {} in {:.1} s",
                args.items,
                args.table,
                source.describe_location(),
                started.elapsed().as_secs_f64()
            );
            Ok(0)
        }
    }
}
