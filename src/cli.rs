//! Command-line types (clap only; no behaviour here).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod examples;
mod finish;
use examples::{
    MIGRATE_EXAMPLES, ROOT_EXAMPLES, SAMPLE_EXAMPLES, SCHEMA_EXAMPLES, STATUS_EXAMPLES,
    VERIFY_EXAMPLES,
};
use finish::{caught_up_lag, FINISH_EXAMPLES};
pub use finish::{FinishArgs, S3DirArgs};

#[derive(Debug, Parser)]
#[command(
    name = "ddb2pg",
    version,
    about = "Move a DynamoDB table into PostgreSQL: exact, idempotent, resumable, then keep it in \
        sync through its stream.",
    long_about = "Move a DynamoDB table into PostgreSQL: exact, idempotent, resumable, then keep \
        it in sync through its stream.\n\n\
        ddb2pg reads a DynamoDB table (a parallel Scan) or a DynamoDB export (a local folder or \
        s3://, full and incremental), maps every item to rows (one table with the item as \
        jsonb, or typed tables from a mapping file) and writes them in batches: COPY while the \
        keys are new, upserts (INSERT ... ON CONFLICT DO UPDATE ... WHERE the row differs) \
        otherwise. With --follow it then applies the table's DynamoDB Stream (INSERT and MODIFY \
        replace an item's rows, REMOVE deletes them) until stopped, or with --until-caught-up \
        until every change is applied: a live cutover. A checkpoint records what is committed, \
        so a crashed or interrupted run is resumed by running the same command again: nothing \
        lost, nothing duplicated. `ddb2pg verify` proves the target equals the source.",
    after_help = ROOT_EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Settings file (TOML, sections named after subcommands, keys = long flag names);
    /// default: ./ddb2pg.toml when present. Flags override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors and the final summary
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Stderr as text, or json: one JSON object per line (for log pipelines)
    #[arg(long, global = true, value_enum, value_name = "FORMAT", env = "DDB2PG_LOG_FORMAT",
          hide_env_values = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    // No doc comments here: they would turn every subcommand's help into the long form.
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy a DynamoDB table or export into PostgreSQL (resumable); --follow: its stream
    #[command(after_help = MIGRATE_EXAMPLES)]
    Migrate(MigrateArgs),
    /// Prove the target equals the source: re-read, transform, compare by key both ways
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// Print the CREATE TABLE statements a mapping file implies
    #[command(after_help = SCHEMA_EXAMPLES)]
    Schema(SchemaArgs),
    /// Show a checkpoint: segments done / in progress / pending, rejects, settings, live run
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  ddb2pg completions bash > /etc/bash_completion.d/ddb2pg\n  ddb2pg completions zsh > \"${fpath[1]}/_ddb2pg\""
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Create and fill a sample single-table-design table (for demos and benchmarks)
    #[command(after_help = SAMPLE_EXAMPLES)]
    Sample(SampleArgs),
    /// Tell a running follower (migrate --follow) to exit once caught up: the cutover's
    /// last step without stopping it
    #[command(after_help = FINISH_EXAMPLES)]
    Finish(FinishArgs),
    /// Write the manual pages (ddb2pg.1 and ddb2pg-<command>.1 for each command) into DIR
    #[command(hide = true)]
    Man {
        /// Directory to write the pages into (created if missing)
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct AwsArgs {
    /// DynamoDB endpoint, e.g. http://127.0.0.1:8000 for DynamoDB Local
    /// [env: AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// AWS region (default: from the profile or AWS_REGION; us-east-1 on a loopback endpoint)
    #[arg(long)]
    pub region: Option<String>,

    /// Named AWS profile from ~/.aws/config and ~/.aws/credentials
    #[arg(long)]
    pub profile: Option<String>,
}

/// How the source is read, shared by migrate and verify.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// Scan segments (DynamoDB TotalSegments). Default: from the table size, and never
    /// fewer than 4 x --concurrency. A resumed run keeps the checkpoint's value.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub segments: Option<u32>,

    /// Segments read (and written) at once. From a table, migrate's share its --connections
    /// PostgreSQL connections (by default one per 4 segments, at least 2); an export's files
    /// and verify's segments have one each.
    /// Default: 8 from a table; from an export, the CPU cores up to 8 (reading is CPU-bound)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: Option<u32>,

    /// Items per batch, one transaction each: the Scan page's Limit (DynamoDB also ends a
    /// page at 1 MB), or lines of an export file (also ended at 1 MiB of text)
    #[arg(long, value_name = "N", default_value_t = 4000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
}

impl ScanArgs {
    /// Default `--concurrency` from a table: Scan requests wait on the network, and
    /// DynamoDB rewards parallel segments.
    pub const TABLE_CONCURRENCY: u32 = 8;

    /// `--concurrency`, or the default for the source. Reading an export (gunzip, parse,
    /// transform) is CPU-bound: more readers than cores only add contention (measured on 2
    /// cores, 200k items: 2 readers 1.03-1.08 s, 8 readers 1.12-1.23 s, and PostgreSQL spent
    /// ~15% less CPU with 2 connections than with 8).
    pub fn concurrency_for(&self, export: bool) -> u32 {
        self.concurrency.unwrap_or_else(|| {
            if export {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cores as u32).clamp(1, Self::TABLE_CONCURRENCY)
            } else {
                Self::TABLE_CONCURRENCY
            }
        })
    }
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).multiple(true).args(["table", "export"])))]
pub struct MigrateArgs {
    /// Source DynamoDB table name. With --export and --follow: the table whose stream is
    /// applied after the export (default: the manifest's tableArn; must agree with it)
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,

    /// Source DynamoDB export instead of a table: a local folder as AWS writes it
    /// (manifest-files.json, data/*.json.gz) or its manifest-summary.json, a folder of
    /// .json/.json.gz files, or s3://bucket/prefix of an export (or the s3:// key of its
    /// manifest-summary.json); each data file is a segment
    #[arg(long, value_name = "PATH")]
    pub export: Option<PathBuf>,

    /// S3 endpoint for an s3:// export (an S3-compatible server)
    /// [env: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL")]
    pub s3_endpoint_url: Option<String>,

    /// Key attributes for the default mapping of an export (exports carry no key schema):
    /// PK[:S|N|B][,SK[:S|N|B]], type S by default
    #[arg(long, value_name = "PK[,SK]")]
    pub key: Option<String>,

    /// Target table of the default mapping, NAME or SCHEMA.NAME, taken as written (quoted:
    /// case kept). Default: the source table's name (an export's, or its folder's), lower-cased,
    /// [a-z0-9_]. E.g. an incremental export in a bare folder applied to the table its full
    /// export loaded
    #[arg(long, value_name = "[SCHEMA.]NAME", conflicts_with = "mapping")]
    pub target_table: Option<String>,

    /// Target PostgreSQL URL, e.g. postgres://user@host:5432/db
    #[arg(long, value_name = "URL", env = "DATABASE_URL", hide_env_values = true)]
    pub target: Option<String>,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// Mapping file (TOML) routing items into typed tables; default: key columns + item jsonb
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,

    /// Create the mapping's missing tables (the default mapping always creates its table)
    #[arg(long)]
    pub create_tables: bool,

    /// Apply the .sql files of DIR in name order, each once, before loading
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,

    #[command(flatten)]
    pub scan: ScanArgs,

    /// Directory holding the checkpoint, lock and rejects files, or s3://bucket/prefix (the
    /// same AWS settings and --s3-endpoint-url as an s3:// export; conditional writes, a
    /// leased lock): where shards on several machines keep theirs
    #[arg(long, value_name = "DIR|S3URL", default_value = "checkpoints")]
    pub checkpoint_dir: PathBuf,

    #[command(flatten)]
    pub shard: ShardArgs,

    /// With an s3:// --checkpoint-dir: how long the run's lock lasts without renewal (it is
    /// renewed every third of it); a killed run's lock is taken over once it has expired
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(3..=crate::checkpoint::lock::MAX_LEASE_S))]
    pub lock_lease: u64,

    /// When another run holds this run's lock, wait up to SECS (at most 86400, a day) for it
    /// to end (or, on S3, for its lease to expire) instead of exiting 2: for a replaced pod or a
    /// retried array child whose killed predecessor's lease has not expired yet
    #[arg(long, value_name = "SECS", default_value_t = 0, conflicts_with = "scan_only",
          value_parser = clap::value_parser!(u64).range(0..=crate::checkpoint::lock::MAX_LOCK_WAIT_S))]
    pub lock_wait: u64,

    /// Stop (exit 1) rather than record more than N rejected items in all the runs of this
    /// checkpoint (its rejects file; --restart starts the count again); the batch that would
    /// pass N is not recorded, and a resume with a higher N continues from there. 0: no limit
    #[arg(long, value_name = "N", default_value_t = crate::rejects::DEFAULT_MAX,
          conflicts_with = "scan_only")]
    pub max_rejects: u64,

    /// Discard the existing checkpoint and start over
    #[arg(long)]
    pub restart: bool,

    /// Write a JSON summary of the run to FILE (a local file). With --checkpoint-dir s3://...
    /// the summary is also kept beside each shard's checkpoint, as <checkpoint>.report.json
    #[arg(long, value_name = "FILE", value_parser = report_file)]
    pub report: Option<PathBuf>,

    /// Progress display: bars on a terminal, a log line every few seconds otherwise
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Seconds between two progress log lines (--progress log, or auto off a terminal)
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = progress_interval)]
    pub progress_interval: f64,

    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,

    /// Cap the read capacity units consumed per second (as DynamoDB reports them), to run
    /// beside production traffic; all segments share the budget
    #[arg(long, value_name = "N")]
    pub max_read_units: Option<f64>,

    /// PostgreSQL connections the --concurrency segments in flight share (each segment stays
    /// on one; pages queued for a connection are written in one transaction, up to
    /// 4 pages). More than --concurrency is lowered to it.
    /// Default from a table: one per 4 segments, at least 2 (8 segments: 2 connections; 32: 8);
    /// an export's files: one each
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub connections: Option<u32>,

    /// Bytes that pages read and not yet written may hold, over all segments (e.g. 256MiB,
    /// 1.5GiB; 1MiB to 4TiB): readers wait while the target falls behind. A page counts its
    /// rows and what it keeps to report refused rows (a Scan page's body, an export's lines)
    #[arg(long, value_name = "BYTES", default_value = "256MiB",
          value_parser = |s: &str| crate::budget::parse_bytes(s).map_err(|e| e.to_string()))]
    pub max_memory: u64,

    /// Keep retrying PostgreSQL through lost connections, restarts and failovers for this long
    /// (seconds) before giving up on a batch
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub pg_retry_for: u64,

    /// Run everything against the real target (types, NOT NULL, foreign keys, CHECKs are
    /// exercised) inside transactions that are rolled back: nothing persists, the checkpoint
    /// is not touched; reports what would be inserted, updated, unchanged and rejected. What
    /// the real run creates (the default mapping's table, --create-tables, --migrations) is
    /// created inside the rolled-back transaction, so it works on an empty database (then
    /// through one connection: PostgreSQL shows uncommitted DDL to its own connection only)
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: stop after N items (a quick sample)
    #[arg(long, value_name = "N", requires = "dry_run")]
    pub limit: Option<u64>,

    /// Measure the source's limit: scan, decode and map every item, write nothing
    /// (no target needed, no checkpoint)
    #[arg(long)]
    pub scan_only: bool,

    /// Live cutover: note the table's DynamoDB Stream before the scan, load, then apply every
    /// change since the scan began (INSERT/MODIFY replace the item's rows, REMOVE deletes
    /// them) until stopped (Ctrl-C: exit 130; run the same command to resume). Needs a
    /// NEW_AND_OLD_IMAGES stream (NEW_IMAGE only with a mapping keyed by the item's keys).
    /// With --export: load the export, then apply the stream from the export's time (the
    /// manifest's exportTime, an incremental export's exportToTime, or --follow-from); the
    /// stream must have been on since then, and that time within its 24-hour retention.
    /// Not with --shard/--shards: run one `migrate --follow` after every shard is done (it
    /// takes the shards' load as its own and follows from when the first shard began)
    #[arg(long, conflicts_with_all = ["dry_run", "scan_only", "shard", "shards"])]
    pub follow: bool,

    /// With --export --follow, for an export without a manifest time (a folder of .json
    /// files): the time its data is as of, RFC 3339 (2024-05-14T11:14:20Z); the stream is
    /// applied from then. Needs --table
    #[arg(long, value_name = "TIME")]
    pub follow_from: Option<String>,

    /// With --follow from a table: turn the table's stream on (NEW_AND_OLD_IMAGES) if it is
    /// off (not with --export: a stream enabled now lacks the changes since the export)
    #[arg(long, requires = "follow")]
    pub enable_stream: bool,

    /// With --follow: exit once caught up (every shard applied to its end and every open
    /// shard answering empty pages for a few seconds), printing the verdict: the cutover step
    /// after stopping the writers. `ddb2pg finish` asks a running follower the same
    #[arg(long, requires = "follow")]
    pub until_caught_up: bool,

    /// With --follow: the lag (seconds) within which every shard must be applied for the
    /// follower to count as caught up ("caught up since" in the log, `status` and --report)
    #[arg(long, value_name = "SECS", default_value_t = 1.0, requires = "follow",
          value_parser = caught_up_lag)]
    pub caught_up_lag: f64,

    /// With --follow: how many shards are read at the same moment (GetRecords calls in
    /// flight). Every shard that may be read has its own reader, at most 5 calls a second
    /// each; this bounds them together. Changes are applied over --connections connections
    /// (default 4 when following), each item's changes on one, in order
    #[arg(long, value_name = "N", default_value_t = 64, requires = "follow",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub stream_readers: u32,

    /// Keep the downloaded copies of an s3:// export (in the checkpoint directory) after a
    /// complete run; by default they are removed once the run completes
    #[arg(long)]
    pub keep_downloads: bool,
}

/// Splitting one migration over several processes (machines, pods, array jobs).
#[derive(Debug, Clone, Args)]
pub struct ShardArgs {
    /// Be shard I of N: take the scan segments (or export files) s with s % N == I. Every
    /// shard needs the same --segments (recorded in its checkpoint; a mismatch is refused)
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// Be one of N shards, I read from JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or
    /// AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array job); without N, N is
    /// AWS_BATCH_JOB_ARRAY_SIZE
    #[arg(long, value_name = "N", conflicts_with = "shard", num_args = 0..=1,
          default_missing_value = "0")]
    pub shards: Option<u32>,
}

impl ShardArgs {
    /// This process's shard, or None when the run is not split.
    pub fn resolve(&self) -> crate::Result<Option<crate::shard::Shard>> {
        crate::shard::resolve(self.shard.as_deref(), self.shards, &|k| {
            std::env::var(k).ok()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, log lines otherwise
    Auto,
    /// Progress bars
    Bar,
    /// A log line every few seconds
    Log,
    /// Nothing but the final summary
    None,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["table", "export"])))]
pub struct VerifyArgs {
    /// Source DynamoDB table name
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,

    /// Source DynamoDB export instead of a table, as given to migrate (a local folder or
    /// s3://bucket/prefix). Repeat it for incremental exports, in the order they were migrated:
    /// the full export first, then each incremental export applied on top
    #[arg(long, value_name = "PATH", conflicts_with = "table", action = clap::ArgAction::Append)]
    pub export: Vec<PathBuf>,

    /// S3 endpoint for an s3:// export (an S3-compatible server)
    /// [env: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL")]
    pub s3_endpoint_url: Option<String>,

    /// Key attributes for the default mapping of an export, as given to migrate:
    /// PK[:S|N|B][,SK[:S|N|B]]
    #[arg(long, value_name = "PK[,SK]")]
    pub key: Option<String>,

    /// Target table of the default mapping, NAME or SCHEMA.NAME, as given to migrate
    #[arg(long, value_name = "[SCHEMA.]NAME", conflicts_with = "mapping")]
    pub target_table: Option<String>,

    /// Target PostgreSQL URL
    #[arg(long, value_name = "URL", env = "DATABASE_URL", hide_env_values = true)]
    pub target: Option<String>,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// Mapping file (TOML), as given to migrate; default: key columns + item jsonb
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,

    /// Scan segments of a table (DynamoDB TotalSegments); default: from the table size, and
    /// never fewer than 4 x --concurrency. An export's segments are its data files
    #[arg(long, value_name = "N", conflicts_with = "export",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub segments: Option<u32>,

    /// Segments (or export files) read at once, each with one PostgreSQL connection.
    /// Default: 8 from a table; from an export, the CPU cores up to 8
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: Option<u32>,

    /// Items per page: the Scan page's Limit, or lines of an export file
    #[arg(long, value_name = "N", default_value_t = 4000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,

    /// Where migrate keeps its checkpoint and rejects files, a directory or s3://bucket/prefix
    /// as given to migrate (verify names the rejects file of this source and target); an
    /// s3:// export is downloaded into a folder of its own here (with an s3:// prefix: in its
    /// local working folder) and removed at the end
    #[arg(long, value_name = "DIR|S3URL", default_value = "checkpoints")]
    pub checkpoint_dir: PathBuf,

    /// Progress display: bars on a terminal, a log line every few seconds otherwise
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Seconds between two progress log lines (--progress log, or auto off a terminal)
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = progress_interval)]
    pub progress_interval: f64,

    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,

    #[command(flatten)]
    pub shard: ShardArgs,

    /// Keys shown per kind of difference and table
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub samples: u32,

    /// Write the JSON result to FILE (a local file)
    #[arg(long, value_name = "FILE", value_parser = report_file)]
    pub report: Option<PathBuf>,
}

/// `--report FILE`: a local file. An `s3://` URL is refused when the command line is read,
/// not after the run (it would be a local path named `s3:`).
fn report_file(s: &str) -> std::result::Result<PathBuf, String> {
    if s.starts_with("s3://") {
        return Err(
            "--report writes a local file, not an S3 object; with --checkpoint-dir \
                    s3://... `migrate` keeps each run's report in S3 beside its checkpoint \
                    (<checkpoint>.report.json, one per shard): drop --report, or give a local \
                    path"
                .into(),
        );
    }
    Ok(PathBuf::from(s))
}

impl VerifyArgs {
    /// Whether `--shards` was given.
    pub fn shards_given(&self) -> bool {
        self.shard.shards.is_some()
    }

    /// The read settings in migrate's shape (its defaults apply alike).
    pub fn scan(&self) -> ScanArgs {
        ScanArgs {
            segments: self.segments,
            concurrency: self.concurrency,
            batch_size: self.batch_size,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Directory holding checkpoints (or a checkpoint file), or s3://bucket/prefix
    #[arg(long, value_name = "DIR|S3URL", default_value = "checkpoints")]
    pub checkpoint_dir: PathBuf,

    #[command(flatten)]
    pub s3: S3DirArgs,

    /// Print JSON, for scripts: always one object, {"checkpoints": [...], "migrations": [...]}
    #[arg(long)]
    pub json: bool,

    /// List a follower's load segments one by one too (a follower's load is otherwise one line)
    #[arg(long)]
    pub segments: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// Mapping file (TOML)
    #[arg(long, value_name = "FILE")]
    pub mapping: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct SampleArgs {
    /// Table to create (if missing) and fill
    #[arg(long, value_name = "NAME")]
    pub table: String,

    /// Number of items to write
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub items: u64,

    /// Seed of the generator: the same seed gives the same items
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Write the items as a DynamoDB export (AWS layout, gzipped) into DIR instead of a table
    #[arg(long, value_name = "DIR")]
    pub export_dir: Option<PathBuf>,

    /// Data files of the export written with --export-dir
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub files: u64,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// `--progress-interval`: a positive number of seconds, at most a day.
fn progress_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=86_400.0).contains(&v) => Ok(v),
        _ => Err("a number of seconds from 0.1 to 86400".into()),
    }
}
