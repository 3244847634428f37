//! Rejects are bounded: `--max-rejects` stops a run (exit 1) before its rejects file grows past
//! the limit, from an export (a hostile gzip of `{}` lines hits the default) or a table; a
//! resume with a higher limit ends with every item once, in PostgreSQL or in the rejects; the
//! messages say what happened (a dry run's too). The S3 parts layout: `trust_rejects_s3.rs`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;

use ddb2pg::checkpoint::Checkpoint;

use crate::export::export_args;
use crate::support::harness::{
    migrate_args, new_database, read_checkpoint, rejects_in, run, tempdir, unique,
};
use crate::support::pg;

/// An export folder holding one gzipped data file of `lines` lines `{}` (not items).
fn hostile_export(lines: usize) -> std::path::PathBuf {
    let dir = tempdir("hostile-export");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("data.json.gz")).expect("create"),
        flate2::Compression::best(),
    );
    for _ in 0..lines {
        e.write_all(b"{}\n").expect("gz");
    }
    e.finish().expect("finish");
    dir
}

fn rejected_total(cp: &Checkpoint) -> u64 {
    cp.segments.iter().map(|s| s.rejected).sum::<u64>()
        + cp.stream.as_ref().map_or(0, |s| s.rejected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_export_stops_at_the_default_max_rejects_with_a_bounded_file() {
    let export = hostile_export(200_000);
    let gz = std::fs::metadata(export.join("data.json.gz"))
        .expect("gz")
        .len();
    assert!(gz < 2048, "a {gz}-byte gzip");
    let db = new_database().await;
    let cp = tempdir("hostile-cp");
    let out = run(&export_args(&export, &db, &cp));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let err = &out.stderr;
    assert!(
        err.contains("--max-rejects 10000") && err.contains(".rejects.jsonl"),
        "names the limit and the file: {err}"
    );
    assert!(
        err.contains("fix the mapping or the data") && err.contains("0 for no limit"),
        "{err}"
    );
    let lines = rejects_in(&cp);
    assert!(
        !lines.is_empty() && lines.len() <= 10_000,
        "{} lines",
        lines.len()
    );
    let file = std::fs::read_dir(&cp)
        .expect("dir")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".rejects.jsonl"))
        .expect("rejects file");
    let bytes = file.metadata().expect("size").len();
    assert!(bytes < 2 << 20, "a {bytes}-byte rejects file");
    let saved = read_checkpoint(&cp);
    assert_eq!(rejected_total(&saved), lines.len() as u64);
    assert_eq!(saved.rejects_bytes, Some(bytes));
    assert!(
        err.contains(&format!("{} over all runs", lines.len())),
        "{err}"
    );
}

/// A mapping of table `t` that rejects every item without `email` (4 of 5 sample items).
pub(crate) fn email_mapping(dir: &Path) -> String {
    let mapping = dir.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"rej\"\nkey = [\"pk\", \"sk\"]\n[table.columns]\n\
         pk = { from = \"PK\", type = \"text\" }\nsk = { from = \"SK\", type = \"text\" }\n\
         email = { from = \"email\", type = \"text\", required = true }\n",
    )
    .expect("mapping");
    mapping.to_string_lossy().to_string()
}

/// The keys of the rows in `rej`, and of the rejects' lines; panics on a key in both or twice.
pub(crate) async fn keys_once(
    db: &str,
    rejects: &[serde_json::Value],
) -> BTreeSet<(String, String)> {
    let rows = pg(db)
        .await
        .query("SELECT pk, sk FROM rej", &[])
        .await
        .expect("rows");
    let mut seen = BTreeSet::new();
    for r in rows {
        assert!(seen.insert((r.get::<_, String>(0), r.get::<_, String>(1))));
    }
    for l in rejects {
        let k = &l["key"];
        let key = (
            k["PK"]["S"].as_str().expect("PK").to_string(),
            k["SK"]["S"].as_str().expect("SK").to_string(),
        );
        assert!(seen.insert(key.clone()), "{key:?} twice: {l}");
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rejects_stops_a_scan_and_a_resume_with_a_higher_limit_ends_exactly_once() {
    const N: u64 = 500;
    let client = crate::support::ddb().await;
    let table = unique("maxrej");
    crate::support::load_sample(&client, &table, 3, N).await;
    let db = new_database().await;
    let work = tempdir("maxrej");
    let map = email_mapping(&work);
    let cp = work.join("cp");
    let args = |limit: &str| {
        let mut a = migrate_args(&table, &db, &cp);
        a.extend(
            [
                "--mapping",
                &map,
                "--create-tables",
                "--segments",
                "4",
                "--concurrency",
                "2",
                "--batch-size",
                "20",
                "--max-rejects",
                limit,
            ]
            .map(String::from),
        );
        a
    };
    let first = run(&args("50"));
    assert_eq!(first.code, 1, "{}", first.stderr);
    assert_eq!(first.report["status"], "failed", "{}", first.stderr);
    assert!(
        first.stderr.contains("--max-rejects 50"),
        "{}",
        first.stderr
    );
    let stopped = read_checkpoint(&cp);
    assert!(!stopped.complete);
    let lines = rejects_in(&cp);
    let counted = rejected_total(&stopped);
    assert!(counted <= 50, "{counted} recorded past the limit of 50");
    assert_eq!(
        lines.len() as u64,
        counted,
        "the checkpoint counts the file"
    );

    // The same limit stops the resume at once; a higher one finishes.
    let again = run(&args("50"));
    assert_eq!(again.code, 1, "{}", again.stderr);
    let done = run(&args("0"));
    assert_eq!(done.code, 4, "{}", done.stderr);
    assert_eq!(done.report["status"], "complete", "{}", done.stderr);
    let lines = rejects_in(&cp);
    assert_eq!(lines.len() as u64, N / 5 * 4);
    assert_eq!(rejected_total(&read_checkpoint(&cp)), N / 5 * 4);
    assert_eq!(keys_once(&db, &lines).await.len() as u64, N);
}

/// The whole numbers in `text`.
fn numbers(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_max_rejects_error_names_only_counts_the_saved_checkpoint_keeps() {
    let export = hostile_export(2_000);
    let db = new_database().await;
    let cp = tempdir("maxrej-counts");
    let mut args = export_args(&export, &db, &cp);
    args.extend(["--batch-size", "50", "--max-rejects", "400"].map(String::from));
    let out = run(&args);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let saved = rejected_total(&read_checkpoint(&cp));
    assert_eq!(
        rejects_in(&cp).len() as u64,
        saved,
        "the file holds what it counts"
    );
    assert_eq!(out.report["rejected_total"], saved);
    let err = &out.stderr;
    let stopped = err
        .split_once("stopped:")
        .map(|(_, s)| s.lines().next().unwrap_or(""))
        .unwrap_or_else(|| panic!("no stop: {err}"));
    assert!(stopped.contains("--max-rejects 400"), "{stopped}");
    for n in numbers(stopped) {
        assert!(
            n == 400 || n == 0 || n == saved,
            "{n} in {stopped:?}; saved {saved}"
        );
    }
    assert!(err.contains(&format!("{saved} over all runs")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_past_max_rejects_says_what_a_dry_run_did() {
    let export = hostile_export(200);
    let db = new_database().await;
    for batch in ["100", "4"] {
        let cp = tempdir("dry-maxrej");
        let mut args = export_args(&export, &db, &cp);
        args.extend(["--dry-run", "--max-rejects", "10", "--batch-size", batch].map(String::from));
        let out = run(&args);
        assert_eq!(out.code, 1, "{}", out.stderr);
        let err = &out.stderr;
        assert!(
            err.contains("--max-rejects 10") && err.contains("dry run"),
            "{err}"
        );
        for wrong in [
            "checkpoint saved",
            "runs of this checkpoint",
            "resume with",
            "to resume",
            "\n  checkpoint ",
        ] {
            assert!(!err.contains(wrong), "{wrong:?} in {err}");
        }
        // Every rejects file it names exists; nothing else is left in the checkpoint folder.
        for word in err.split_whitespace() {
            let word = word.trim_end_matches([',', ';', ':', ')', '.']);
            if word.ends_with(".jsonl") {
                assert!(Path::new(word).exists(), "{word} named but absent: {err}");
            }
        }
        let left: Vec<String> = std::fs::read_dir(&cp)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            left.iter().all(|n| n.ends_with(".dry-run.jsonl")),
            "{left:?}"
        );
        let found = left.first().map_or(0, |n| {
            std::fs::read_to_string(cp.join(n)).map_or(0, |t| t.lines().count())
        });
        assert!(found <= 10, "{found} lines");
        assert_eq!(found > 0, batch == "4", "{left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rejects_stops_the_follower_and_a_resume_applies_each_change_once() {
    use aws_sdk_dynamodb::types::StreamViewType;
    const N: u64 = 30;
    let client = crate::support::ddb().await;
    let table = unique("followrej");
    crate::stream::create_table(&client, &table, Some(StreamViewType::NewAndOldImages)).await;
    let db = new_database().await;
    let work = tempdir("followrej");
    let map = email_mapping(&work);
    let cp = work.join("cp");
    let args = |limit: &str| {
        let mut a = migrate_args(&table, &db, &cp);
        a.extend(
            [
                "--mapping",
                &map,
                "--create-tables",
                "--follow",
                "--until-caught-up",
                "--max-rejects",
                limit,
            ]
            .map(String::from),
        );
        a
    };
    let load = run(&args("10"));
    assert_eq!(load.code, 0, "{}", load.stderr);
    // 6 profiles (with an email) and 24 items the mapping rejects, through the stream.
    for i in 0..N {
        crate::support::put(&client, &table, &ddb2pg::sample::item(9, i)).await;
    }
    let stopped = run(&args("10"));
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("--max-rejects 10 "),
        "{}",
        stopped.stderr
    );
    let recorded = rejected_total(&read_checkpoint(&cp));
    assert!(recorded <= 10, "{recorded}");
    assert_eq!(rejects_in(&cp).len() as u64, recorded);

    let done = run(&args("0"));
    assert_eq!(done.code, 4, "{}", done.stderr);
    let lines = rejects_in(&cp);
    assert_eq!(lines.len() as u64, N / 5 * 4);
    assert_eq!(rejected_total(&read_checkpoint(&cp)), N / 5 * 4);
    assert_eq!(keys_once(&db, &lines).await.len() as u64, N);
}

/// A follower taking over a load done by shards bounds only its own rejects file: the shards'
/// rejected items (in their own files) do not count towards its `--max-rejects`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_after_shards_counts_only_its_own_rejects() {
    use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType};
    const N: u64 = 100;
    let client = crate::support::ddb().await;
    let table = unique("shardrej");
    crate::support::load_sample(&client, &table, 3, N).await;
    client
        .update_table()
        .table_name(&table)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("stream spec"),
        )
        .send()
        .await
        .expect("enable the stream");
    let db = new_database().await;
    let work = tempdir("shardrej");
    let map = email_mapping(&work);
    let cp = work.join("cp");
    let base = || {
        let mut a = migrate_args(&table, &db, &cp);
        a.extend(["--mapping", &map, "--create-tables"].map(String::from));
        a
    };
    for s in ["0/2", "1/2"] {
        let mut a = base();
        a.extend(["--shard", s, "--segments", "4", "--max-rejects", "0"].map(String::from));
        let r = run(&a);
        assert_eq!(r.code, 4, "shard {s}: {}", r.stderr);
    }
    // One change the mapping rejects (no email), after the load.
    let mut item = ddb2pg::sample::item(3, 0);
    item.remove("email");
    item.insert(
        "SK".into(),
        aws_sdk_dynamodb::types::AttributeValue::S("NEW#1".into()),
    );
    crate::support::put(&client, &table, &item).await;
    let mut follow = base();
    follow.extend(["--follow", "--until-caught-up", "--max-rejects", "5"].map(String::from));
    let r = run(&follow);
    assert_eq!(
        r.report["status"], "caught_up",
        "{}\n{}",
        r.stderr, r.report
    );
    assert_ne!(r.code, 1, "{}", r.stderr);
    let shards_rejected: u64 = r.report["rejected_total"].as_u64().expect("rejected_total");
    assert!(
        shards_rejected > 5,
        "the shards rejected more than the limit: {}",
        r.report
    );
}
