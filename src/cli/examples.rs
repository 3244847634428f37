//! The examples at the end of each command's `--help` (and its man page): the common cases,
//! each a command line that `tests/suite/help_examples.rs` parses, so a renamed flag fails the
//! test suite instead of a user's first try.

pub(super) const ROOT_EXAMPLES: &str = "\
Examples (a first run against DynamoDB Local; each command's --help has more):
  ddb2pg sample --table app --items 1000 --endpoint-url http://127.0.0.1:8000
  ddb2pg migrate --table app --endpoint-url http://127.0.0.1:8000 \\
      --target postgres://me@127.0.0.1:5432/db
  ddb2pg verify --table app --endpoint-url http://127.0.0.1:8000 \\
      --target postgres://me@127.0.0.1:5432/db
  ddb2pg status

The target may also come from DATABASE_URL, the endpoint from AWS_ENDPOINT_URL, and any flag
from ./ddb2pg.toml (--config).";

pub(super) const MIGRATE_EXAMPLES: &str = "\
Examples:
  # Against DynamoDB Local (dummy credentials are used on loopback):
  ddb2pg migrate --table app --target postgres://me@127.0.0.1:5432/db \\
      --endpoint-url http://127.0.0.1:8000

  # Against AWS, with a named profile, writing a JSON report:
  ddb2pg migrate --table app --profile prod --region eu-west-1 --report run.json

  # Route a single-table design into typed tables, schema from versioned SQL:
  ddb2pg migrate --table app --mapping examples/single-table/mapping.toml \\
      --migrations examples/single-table/migrations

  # Rehearse on the real target, everything rolled back, on the first 1000 items:
  ddb2pg migrate --table app --mapping m.toml --create-tables --dry-run --limit 1000

  # Beside production traffic: at most 500 read units a second, 4 segments at once:
  ddb2pg migrate --table app --max-read-units 500 --concurrency 4

  # Interrupted or crashed? Run the very same command again to resume.
  # Start over, discarding the checkpoint:
  ddb2pg migrate --table app --restart

  # Live cutover: load, then apply the table's stream until stopped (Ctrl-C: exit 130);
  # after stopping the writers, catch up and exit 0, then verify:
  ddb2pg migrate --table app --mapping m.toml --follow
  ddb2pg migrate --table app --mapping m.toml --follow --until-caught-up

  # From an export (stream on before the export was taken): load it, then apply the
  # stream from the export's time (manifest exportTime / exportToTime):
  ddb2pg migrate --export ./exports/app --mapping m.toml --follow

  # Past one machine: 4 processes (or an Indexed Job with --shards 4), checkpoints in S3:
  ddb2pg migrate --table app --shard 0/4 --segments 64 --checkpoint-dir s3://b/ddb2pg/app
  ddb2pg status --checkpoint-dir s3://b/ddb2pg/app

Exit codes: 0 done, 1 failed (checkpoint saved; re-run to resume), 2 usage or
configuration error, 4 done but some items were rejected (see the rejects file),
130 interrupted (checkpoint saved; re-run to resume).
With --follow, once caught up (--until-caught-up, `ddb2pg finish`, SIGUSR1): 0 every change
applied and this run rejected none; 4 this run rejected some (each is in the rejects file; a
later run that rejects none exits 0, its verdict still counting them since the load).";

pub(super) const VERIFY_EXAMPLES: &str = "\
Examples:
  # The same source, target and mapping as the migrate it checks:
  ddb2pg verify --table app --target postgres://me@127.0.0.1:5432/db \\
      --endpoint-url http://127.0.0.1:8000 --mapping mapping.toml --report verify.json

  # More example keys per kind of difference:
  ddb2pg verify --table app --mapping mapping.toml --samples 20

  # An export migration: the full export, then the incremental exports applied on top:
  ddb2pg verify --export s3://bucket/exports/app --export s3://bucket/exports/app-incr-1 \\
      --key PK,SK --target postgres://me@127.0.0.1:5432/db

Exit codes: 0 identical, 3 differences found, 4 equal except known rejects (every row the
target lacks belongs to an item in migrate's rejects file), 2 usage or configuration error,
1 failure.
Values compare as PostgreSQL compares them (numeric 1.50 = 1.5; json and jsonb as jsonb: key
order and spacing do not matter). Differences: missing_in_target, extra_in_target,
mismatched, refused_by_target (values the target's column types refuse: migrate put those
items in its rejects file), collisions (keys several source items map to). Not differences:
rejected_known (rows of items in the rejects files found under --checkpoint-dir, absent from
the target as expected), and items the mapping rejects or skips.";

pub(super) const SCHEMA_EXAMPLES: &str = "\
Examples:
  # Review the tables a mapping implies, or keep them as your first versioned migration:
  ddb2pg schema --mapping examples/single-table/mapping.toml > schema.sql
  ddb2pg schema --mapping m.toml > migrations/0001_tables.sql";

pub(super) const STATUS_EXAMPLES: &str = "\
Examples:
  ddb2pg status                         # every checkpoint in ./checkpoints
  ddb2pg status --checkpoint-dir /var/lib/ddb2pg --json | jq '.checkpoints[0].segments_done'
  ddb2pg status --json | jq '.checkpoints[].stream.caught_up'   # a follower's verdict
  ddb2pg status --checkpoint-dir s3://my-bucket/ddb2pg/app   # every shard: done, running, ...";

pub(super) const SAMPLE_EXAMPLES: &str = "\
Examples:
  # A table on DynamoDB Local (created if missing; the same --seed gives the same items):
  ddb2pg sample --table app --items 5000 --endpoint-url http://127.0.0.1:8000

  # The same items as a DynamoDB export in AWS's layout, 8 gzipped data files:
  ddb2pg sample --table app --items 5000 --export-dir ./exports/app --files 8
  ddb2pg migrate --export ./exports/app --key PK,SK";
