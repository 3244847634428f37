//! ddb2pg: move a DynamoDB table into PostgreSQL, in parallel, idempotently and resumably.
//!
//! Stages: `source` (segmented scan) -> `transform` (item -> rows, pure) -> `sink` (batched
//! upserts), wired by `pipeline`, with `checkpoint` recording what is committed.

pub mod batch;
pub mod budget;
pub mod changes;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod convert;
pub mod downloads;
pub mod error;
pub mod finish;
pub mod follow;
pub mod man;
pub mod mapping;
pub mod metrics;
pub mod migrate;
pub mod migrations;
pub mod pgconn;
pub mod pipeline;
pub mod plan;
pub mod private;
pub mod progress;
pub mod refusal;
pub mod reject_log;
pub mod rejects;
pub mod report;
pub mod sample;
pub mod say;
pub mod shard;
pub mod sink;
pub mod source;
pub mod status;
pub mod transform;
pub mod value;
pub mod verify;

use cli::{Cli, Command};
pub use error::{Error, Result};

/// Run a parsed command line; returns the process exit code.
pub async fn run(mut cli: Cli) -> Result<u8> {
    settle_progress(&mut cli)?;
    match cli.command {
        Command::Migrate(args) => migrate::migrate(args).await,
        Command::Verify(args) => verify::verify(args).await,
        Command::Schema(args) => {
            let plan = mapping::load(&args.mapping)?;
            for t in &plan.tables {
                println!("{}\n", t.create_sql());
            }
            Ok(0)
        }
        Command::Status(args) => status::run(&args),
        Command::Finish(args) => finish::run(&args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "ddb2pg", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man { dir } => {
            for page in man::write_pages(&dir)? {
                println!("{}", page.display());
            }
            Ok(0)
        }
        Command::Sample(args) if args.export_dir.is_some() => {
            let dir = args.export_dir.clone().unwrap_or_default();
            sample::write_export(&dir, &args.table, args.seed, args.items, args.files)?;
            crate::say!(
                "wrote {} sample items as an export of {:?} into {}",
                args.items,
                args.table,
                dir.display()
            );
            Ok(0)
        }
        Command::Sample(args) => {
            let source = source::Source::connect(&args.aws).await?;
            let started = std::time::Instant::now();
            sample::load(&source.client, &args.table, args.seed, args.items).await?;
            crate::say!(
                "wrote {} sample items into {:?} at {} in {:.1} s",
                args.items,
                args.table,
                source.describe_location(),
                started.elapsed().as_secs_f64()
            );
            Ok(0)
        }
    }
}

/// The progress display of `migrate` and `verify`, settled before the run:
///
/// - `-q` (only errors and the summary) turns the display off; with `--progress log` or `bar`,
///   which ask for it, it is refused rather than one of them ignored;
/// - `--progress bar` draws on the terminal, between lines: with `--log-format json` stderr
///   holds JSON objects only, so the bar is refused rather than left out.
fn settle_progress(cli: &mut Cli) -> Result<()> {
    let progress = match &mut cli.command {
        Command::Migrate(a) => &mut a.progress,
        Command::Verify(a) => &mut a.progress,
        _ => return Ok(()),
    };
    if cli.quiet {
        if matches!(progress, cli::ProgressMode::Bar | cli::ProgressMode::Log) {
            return Err(Error::config(
                "-q (only errors and the summary) shows no progress: drop -q or --progress",
            ));
        }
        *progress = cli::ProgressMode::None;
    }
    if cli.log_format == cli::LogFormat::Json && *progress == cli::ProgressMode::Bar {
        return Err(Error::config(
            "--progress bar cannot be drawn with --log-format json (every stderr line is a JSON \
             object): use --progress log or none",
        ));
    }
    Ok(())
}
