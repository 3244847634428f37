//! `migrate --export PATH --follow`: every flag combination or source state that cannot be
//! honoured is refused at start, exit 2, with the reason and the fix, and nothing written (no
//! checkpoint): flags that would be ignored, an export without a time or a table, names and
//! ARNs that disagree, a table without a usable stream, a stream created after the export's
//! time, an export's time past the stream's retention or in the future.

use std::path::Path;

use aws_sdk_dynamodb::types::StreamViewType;

use super::export_follow::{bare_export, export_args, full_export, now, rfc3339, table_arn};
use super::stream::stream_table;
use crate::support::harness::run;
use crate::support::{ddb, delete_table, drop_database, new_database, temp_dir};

/// Run `args`; exit 2 with every one of `said` in stderr, and no checkpoint in `cp`.
fn refused(what: &str, args: &[String], cp: &Path, said: &[&str]) {
    let r = run(args);
    assert_eq!(r.code, 2, "{what}: exit code; stderr:\n{}", r.stderr);
    for s in said {
        assert!(
            r.stderr.contains(s),
            "{what}: {s:?} not in stderr:\n{}",
            r.stderr
        );
    }
    let written: Vec<_> = std::fs::read_dir(cp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !written
            .iter()
            .any(|n| n.to_string_lossy().ends_with(".json")),
        "{what}: a checkpoint was written: {written:?}"
    );
}

fn with(mut base: Vec<String>, extra: &[&str]) -> Vec<String> {
    base.extend(extra.iter().map(|s| s.to_string()));
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_combinations_that_cannot_be_honoured_are_refused_at_start() {
    let client = ddb().await;
    let view = Some(StreamViewType::NewAndOldImages);
    let (table, items) = stream_table(&client, "expref", 23, 20, view).await;
    let (plain, _) = stream_table(&client, "expref-nostream", 23, 20, None).await;
    let (keys_only, _) = stream_table(
        &client,
        "expref-keys",
        23,
        20,
        Some(StreamViewType::KeysOnly),
    )
    .await;
    let arn = table_arn(&client, &table).await;
    let t0 = now();
    let good = temp_dir("expref-good");
    full_export(&good, &items, &arn, t0);
    let bare = bare_export(&temp_dir("expref-bare"), &items);
    let target = new_database().await;
    let cp = temp_dir("expref-cp");
    let base = |dir: &Path| export_args(dir, &target, &cp, &[]);
    let t = table.as_str();
    let stamp = rfc3339(t0);

    refused(
        "--follow-from without --follow",
        &with(base(&bare), &["--follow-from", &stamp]),
        &cp,
        &["--follow-from", "--follow"],
    );
    let mut from_a_table: Vec<String> = base(&bare);
    from_a_table.drain(1..3); // no --export
    refused(
        "--follow-from without --export",
        &with(
            from_a_table,
            &["--table", t, "--follow", "--follow-from", &stamp],
        ),
        &cp,
        &["--follow-from", "--export"],
    );
    refused(
        "--table with --export, no --follow",
        &with(base(&good), &["--table", t]),
        &cp,
        &["--table", "--follow"],
    );
    refused(
        "no manifest time, no --follow-from",
        &with(base(&bare), &["--table", t, "--follow"]),
        &cp,
        &["--follow-from"],
    );
    refused(
        "no manifest table, no --table",
        &with(base(&bare), &["--follow", "--follow-from", &stamp]),
        &cp,
        &["--table NAME"],
    );
    refused(
        "--follow-from not RFC 3339",
        &with(
            base(&bare),
            &["--table", t, "--follow", "--follow-from", "now"],
        ),
        &cp,
        &["RFC 3339"],
    );
    let later = rfc3339(t0 + chrono::Duration::hours(1));
    refused(
        "--follow-from in the future",
        &with(
            base(&bare),
            &["--table", t, "--follow", "--follow-from", &later],
        ),
        &cp,
        &["in the future"],
    );
    refused(
        "--follow-from beside a manifest time",
        &with(base(&good), &["--follow", "--follow-from", &stamp]),
        &cp,
        &["exportTime", "Drop --follow-from"],
    );
    refused(
        "--enable-stream with --export",
        &with(base(&good), &["--follow", "--enable-stream"]),
        &cp,
        &["--enable-stream", "take a new export"],
    );
    refused(
        "--table other than the manifest's",
        &with(base(&good), &["--follow", "--table", &plain]),
        &cp,
        &["the export is of table", &table],
    );
    refused(
        "a table that does not exist",
        &with(
            base(&bare),
            &[
                "--follow",
                "--follow-from",
                &stamp,
                "--table",
                "no-such-table",
            ],
        ),
        &cp,
        &["not found"],
    );
    // The manifest's table in another account: DescribeTable's ARN differs.
    let elsewhere = temp_dir("expref-elsewhere");
    let other_arn = arn.replace(":000000000000:", ":111111111111:");
    assert_ne!(other_arn, arn, "DynamoDB Local's account id in {arn}");
    full_export(&elsewhere, &items, &other_arn, t0);
    refused(
        "the manifest's table is in another account",
        &with(base(&elsewhere), &["--follow"]),
        &cp,
        &["another account or region"],
    );
    refused(
        "--key other than the table's",
        &with(base(&good), &["--follow", "--key", "PK"]),
        &cp,
        &["--key PK", "PK:S,SK:S"],
    );
    // Streams that cannot serve: none, KEYS_ONLY.
    let at = |table: &str, dir: &str| {
        let d = temp_dir(dir);
        let arn = arn.replace(&format!("table/{}", t), &format!("table/{table}"));
        full_export(&d, &items, &arn, now());
        d
    };
    refused(
        "a table without a stream",
        &with(base(&at(&plain, "expref-plain")), &["--follow"]),
        &cp,
        &["no stream", "take a new export"],
    );
    refused(
        "a KEYS_ONLY stream",
        &with(base(&at(&keys_only, "expref-keys")), &["--follow"]),
        &cp,
        &["KEYS_ONLY", "NEW_AND_OLD_IMAGES"],
    );
    // The stream was created after the export's time (the export is an hour old).
    let old = temp_dir("expref-hour");
    full_export(&old, &items, &arn, t0 - chrono::Duration::hours(1));
    refused(
        "a stream created after the export",
        &with(base(&old), &["--follow"]),
        &cp,
        &["was created at", "after the export's time"],
    );
    // Older than the stream's retention.
    let older = temp_dir("expref-day");
    full_export(&older, &items, &arn, t0 - chrono::Duration::hours(25));
    refused(
        "an export older than the stream's retention",
        &with(base(&older), &["--follow"]),
        &cp,
        &["24 hours", "incremental export"],
    );

    for t in [&table, &plain, &keys_only] {
        delete_table(&client, t).await;
    }
    drop_database(&target).await;
}
