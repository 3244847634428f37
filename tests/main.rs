//! Integration tests of `ddb2pg migrate` against a real DynamoDB Local and a real PostgreSQL
//! (see tests/support). Every test has its own DynamoDB table, PostgreSQL database and
//! checkpoint directory, so they run in parallel.

mod support;

#[path = "suite/cli.rs"]
mod cli;
#[path = "suite/connections.rs"]
mod connections;
#[path = "suite/deploy.rs"]
mod deploy;
#[path = "suite/destinations.rs"]
mod destinations;
#[path = "suite/docs_links.rs"]
mod docs_links;
#[path = "suite/docs_snippets.rs"]
mod docs_snippets;
#[path = "suite/export.rs"]
mod export;
#[path = "suite/export_follow.rs"]
mod export_follow;
#[path = "suite/export_keys.rs"]
mod export_keys;
#[path = "suite/export_refusals.rs"]
mod export_refusals;
#[path = "suite/faults.rs"]
mod faults;
#[path = "suite/files.rs"]
mod files;
#[path = "suite/first_hour.rs"]
mod first_hour;
#[path = "suite/follow_concurrent.rs"]
mod follow_concurrent;
#[path = "suite/follow_deletes.rs"]
mod follow_deletes;
#[path = "suite/follow_finish.rs"]
mod follow_finish;
#[path = "suite/follow_scale.rs"]
mod follow_scale;
#[path = "suite/follow_shards.rs"]
mod follow_shards;
#[path = "suite/follow_verdict.rs"]
mod follow_verdict;
#[path = "suite/help_examples.rs"]
mod help_examples;
#[path = "suite/log_json.rs"]
mod log_json;
#[path = "suite/log_lines.rs"]
mod log_lines;
#[path = "suite/mapping.rs"]
mod mapping;
#[path = "suite/memory.rs"]
mod memory;
#[path = "suite/messages.rs"]
mod messages;
#[path = "suite/metrics.rs"]
mod metrics;
#[path = "suite/metrics_probes.rs"]
mod metrics_probes;
#[path = "suite/names.rs"]
mod names;
#[path = "suite/overlap.rs"]
mod overlap;
#[path = "suite/paths.rs"]
mod paths;
#[path = "suite/redaction.rs"]
mod redaction;
#[path = "suite/rejects_readable.rs"]
mod rejects_readable;
#[path = "suite/report_s3.rs"]
mod report_s3;
#[path = "suite/resume.rs"]
mod resume;
#[path = "suite/review16.rs"]
mod review16;
#[path = "suite/s3_lease.rs"]
mod s3_lease;
#[path = "suite/scan_parser.rs"]
mod scan_parser;
#[path = "suite/shards.rs"]
mod shards;
#[path = "suite/sink.rs"]
mod sink;
#[path = "suite/status_config.rs"]
mod status_config;
#[path = "suite/stream.rs"]
mod stream;
#[path = "suite/stream_double.rs"]
mod stream_double;
#[path = "suite/stream_unknown_types.rs"]
mod stream_unknown_types;
#[path = "suite/target_env.rs"]
mod target_env;
#[path = "suite/tls.rs"]
mod tls;
#[path = "suite/trust_local.rs"]
mod trust_local;
#[path = "suite/trust_rejects.rs"]
mod trust_rejects;
#[path = "suite/trust_rejects_s3.rs"]
mod trust_rejects_s3;
#[path = "suite/trust_shared.rs"]
mod trust_shared;
#[path = "suite/trust_state.rs"]
mod trust_state;
#[path = "suite/trust_verify.rs"]
mod trust_verify;
#[path = "suite/verify.rs"]
mod verify;
#[path = "suite/verify_export.rs"]
mod verify_export;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use ddb2pg::checkpoint::{Checkpoint, Lock};
use ddb2pg::plan::Plan;
use ddb2pg::sink::{Sink, TableCounts};
use ddb2pg::source::{KeyAttr, KeyAttrType, TableInfo};
use ddb2pg::transform::{Cell, Row};
use ddb2pg::value::Item;
use serde_json::Value;

use support::{
    assert_target_is, count_rows, ddb, delete_table, drop_database, item, load_sample, n,
    new_database, pg, put, s, unique_name, Migration,
};

// ---------------------------------------------------------------------------------------------
// 1. Every DynamoDB type, exactly.
// ---------------------------------------------------------------------------------------------

/// `levels` maps nested in each other: `{"d": {"d": ... {"leaf": "bottom"}}}`.
fn nested(levels: usize) -> AttributeValue {
    let mut v = AttributeValue::M(HashMap::from([("leaf".to_string(), s("bottom"))]));
    for _ in 1..levels {
        v = AttributeValue::M(HashMap::from([("d".to_string(), v)]));
    }
    v
}

/// Maps nested in the `deep` attribute. With the string at the bottom that is 32 levels, the
/// most DynamoDB accepts (32 maps: "Nesting Levels have exceeded supported limits").
const DEPTH: usize = 31;
const BIG: &str = "12345678901234567890123456789012345678";
const NEG: &str = "-0.12345678901234567890123456789012345678";
const EMOJI: &str = "😀 𝄞 𠜎 Zoë 李雷";
const BIN: &[u8] = &[0, 0, 1, 0, 255, 0];

/// Crafted items, each with its expected JSON written by hand (not by ddb2pg's encoder).
fn crafted() -> Vec<(Item, String)> {
    let deep_json = {
        let mut j = r#"{"leaf":"bottom"}"#.to_string();
        for _ in 1..DEPTH {
            j = format!(r#"{{"d":{j}}}"#);
        }
        j
    };
    vec![
        (
            item(
                "CRAFTED#numbers",
                "1",
                vec![
                    ("big", n(BIG)),
                    ("neg", n(NEG)),
                    ("huge", n("1E+125")),
                    ("tiny", n("1E-130")),
                    ("zero", n("-0.000")),
                    ("padded", n("007.50")),
                ],
            ),
            format!(
                r#"{{"PK":"CRAFTED#numbers","SK":"1","big":{BIG},"neg":{NEG},
                    "huge":1e125,"tiny":1e-130,"zero":0,"padded":7.5}}"#
            ),
        ),
        (
            item(
                "CRAFTED#binary",
                "2",
                vec![
                    ("bin", AttributeValue::B(Blob::new(BIN.to_vec()))),
                    (
                        "bs",
                        AttributeValue::Bs(vec![
                            Blob::new(vec![3, 0]),
                            Blob::new(vec![0]),
                            Blob::new(vec![0, 0, 1]),
                        ]),
                    ),
                    (
                        "ss",
                        AttributeValue::Ss(vec![
                            "pear".into(),
                            "ápple".into(),
                            "apple".into(),
                            "Banana".into(),
                        ]),
                    ),
                    (
                        "ns",
                        AttributeValue::Ns(vec![
                            "10".into(),
                            "9".into(),
                            "-1.5".into(),
                            "1E+2".into(),
                            "0.001".into(),
                        ]),
                    ),
                ],
            ),
            // base64: 00 00 01 00 ff 00 = AAABAP8A; [0] = AA==, [0,0,1] = AAAB, [3,0] = AwA=
            r#"{"PK":"CRAFTED#binary","SK":"2","bin":"AAABAP8A",
                "bs":["AA==","AAAB","AwA="],
                "ss":["Banana","apple","pear","ápple"],
                "ns":[-1.5,0.001,9,10,100]}"#
                .to_string(),
        ),
        (
            item(
                "CRAFTED#structure",
                "3",
                vec![
                    ("deep", nested(DEPTH)),
                    (
                        "list",
                        AttributeValue::L(vec![
                            n("1"),
                            s("two"),
                            AttributeValue::Bool(false),
                            AttributeValue::Null(true),
                            AttributeValue::M(HashMap::from([(
                                "a".to_string(),
                                AttributeValue::L(vec![]),
                            )])),
                            AttributeValue::L(vec![n("3.14")]),
                        ]),
                    ),
                    ("flag", AttributeValue::Bool(true)),
                    ("nothing", AttributeValue::Null(true)),
                    ("empty", s("")),
                    ("emoji", s(EMOJI)),
                    (
                        "escapes",
                        s("tab\t nl\n cr\r quote\" backslash\\ ctrl\u{1} del\u{7f}"),
                    ),
                    (
                        "odd keys",
                        AttributeValue::M(HashMap::from([
                            ("we\"ird\\key".to_string(), s("v")),
                            ("ключ".to_string(), n("-5")),
                        ])),
                    ),
                ],
            ),
            format!(
                r#"{{"PK":"CRAFTED#structure","SK":"3","deep":{deep_json},
                    "list":[1,"two",false,null,{{"a":[]}},[3.14]],
                    "flag":true,"nothing":null,"empty":"","emoji":"{EMOJI}",
                    "escapes":"tab\t nl\n cr\r quote\" backslash\\ ctrl\u0001 del\u007f",
                    "odd keys":{{"we\"ird\\key":"v","ключ":-5}}}}"#
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_migration_of_mixed_types() {
    let client = ddb().await;
    let table = unique_name("mixed");
    let target = new_database().await;
    let mut items = load_sample(&client, &table, 11, 3000).await;
    let crafted = crafted();
    for (it, _) in &crafted {
        put(&client, &table, it).await;
        items.push(it.clone());
    }
    let total = items.len() as u64;

    let m = Migration::new(&table, &target);
    let out = m.run(&["--segments", "8", "--concurrency", "4"]).await;
    out.expect_code(0);
    assert_eq!(out.status(), "complete");
    assert_eq!(out.num("items_read"), total);
    assert_eq!(out.num("rows_inserted"), total);
    assert_eq!(out.num("rows_written"), total);
    assert_eq!(out.num("rejected"), 0);
    assert_eq!(out.num("segments_total"), 8);
    assert_eq!(out.num("segments_done"), 8);
    let cp = m.checkpoint();
    assert!(cp.complete);
    assert_eq!(cp.settings.segments, 8);
    assert!(cp.segments.iter().all(|s| s.done && s.runs == 1));
    assert_eq!(support::committed(&cp), total);

    let db = pg(&target).await;
    let t = m.pg_table();
    // The bulk: every row equals the encoder's JSON of its item (jsonb equality in SQL).
    assert_target_is(&db, &t, &items).await;

    // The crafted items against hand-written JSON: independent of ddb2pg's encoder.
    for (it, want) in &crafted {
        let Some(AttributeValue::S(pk)) = it.get("PK") else {
            panic!("crafted PK")
        };
        let row = db
            .query_one(
                &format!("SELECT item = $2::text::jsonb, item::text FROM {t} WHERE \"PK\" = $1"),
                &[pk, want],
            )
            .await
            .expect("crafted row");
        let (same, got): (bool, String) = (row.get(0), row.get(1));
        assert!(same, "{pk}:\n  target   {got}\n  expected {want}");
    }

    // Specific values, read back through PostgreSQL's own types.
    let r = db
        .query_one(
            &format!(
                "SELECT item->>'big', item->>'neg', (item->>'huge')::numeric = 1e125, \
         (item->>'tiny')::numeric = 1e-130, (item->>'tiny')::numeric > 0, \
         jsonb_typeof(item->'big'), item->>'padded' \
         FROM {t} WHERE \"PK\" = 'CRAFTED#numbers'"
            ),
            &[],
        )
        .await
        .expect("numbers row");
    assert_eq!(r.get::<_, String>(0), BIG, "38 digits kept");
    assert_eq!(r.get::<_, String>(1), NEG, "38 decimals kept");
    assert!(r.get::<_, bool>(2), "1E+125");
    assert!(r.get::<_, bool>(3), "1E-130");
    assert!(r.get::<_, bool>(4), "1E-130 is not rounded to 0");
    assert_eq!(r.get::<_, String>(5), "number");
    assert_eq!(r.get::<_, String>(6), "7.5");

    let r = db
        .query_one(
            &format!(
                "SELECT decode(item->>'bin', 'base64'), \
                 ARRAY(SELECT decode(x, 'base64') FROM jsonb_array_elements_text(item->'bs') \
                       WITH ORDINALITY AS e(x, i) ORDER BY i), \
                 ARRAY(SELECT x FROM jsonb_array_elements_text(item->'ss') \
                       WITH ORDINALITY AS e(x, i) ORDER BY i), \
                 ARRAY(SELECT x::numeric::text FROM jsonb_array_elements_text(item->'ns') \
                       WITH ORDINALITY AS e(x, i) ORDER BY i) \
                 FROM {t} WHERE \"PK\" = 'CRAFTED#binary'"
            ),
            &[],
        )
        .await
        .expect("binary row");
    assert_eq!(r.get::<_, Vec<u8>>(0), BIN, "binary with zero bytes");
    assert_eq!(
        r.get::<_, Vec<Vec<u8>>>(1),
        vec![vec![0u8], vec![0, 0, 1], vec![3, 0]],
        "BS sorted by bytes"
    );
    assert_eq!(
        r.get::<_, Vec<String>>(2),
        ["Banana", "apple", "pear", "ápple"],
        "SS sorted bytewise"
    );
    assert_eq!(
        r.get::<_, Vec<String>>(3),
        ["-1.5", "0.001", "9", "10", "100"],
        "NS sorted numerically"
    );

    let path: Vec<String> = std::iter::once("deep".to_string())
        .chain(std::iter::repeat_n("d".to_string(), DEPTH - 1))
        .chain(std::iter::once("leaf".to_string()))
        .collect();
    let r = db
        .query_one(
            &format!(
                "SELECT item #>> $1::text[], item->>'emoji', length(item->>'emoji'), \
                 item->>'empty', item->'flag' = 'true'::jsonb, jsonb_typeof(item->'nothing'), \
                 item->>'escapes', item->'list'->4->'a' = '[]'::jsonb, \
                 (item->'list'->5->>0)::numeric = 3.14 \
                 FROM {t} WHERE \"PK\" = 'CRAFTED#structure'"
            ),
            &[&path],
        )
        .await
        .expect("structure row");
    assert_eq!(
        r.get::<_, Option<String>>(0).as_deref(),
        Some("bottom"),
        "{DEPTH} levels reachable"
    );
    assert_eq!(r.get::<_, String>(1), EMOJI);
    assert_eq!(r.get::<_, i32>(2) as usize, EMOJI.chars().count());
    assert_eq!(r.get::<_, String>(3), "");
    assert!(r.get::<_, bool>(4));
    assert_eq!(r.get::<_, String>(5), "null");
    assert_eq!(
        r.get::<_, String>(6),
        "tab\t nl\n cr\r quote\" backslash\\ ctrl\u{1} del\u{7f}"
    );
    assert!(r.get::<_, bool>(7));
    assert!(r.get::<_, bool>(8));

    // Sample values too, straight from the sample's definition.
    let r = db
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE item->'big' IS NOT NULL), \
                 count(*) FILTER (WHERE length(item->>'big') = 38), \
                 count(*) FILTER (WHERE item->'ns' = '[-1.5, 9, 10]'::jsonb), \
                 count(*) FILTER (WHERE substring(decode(item->>'avatar', 'base64') from 1 for 3) \
                                     = '\\x000102'::bytea) \
                 FROM {t} WHERE \"PK\" LIKE 'USER#%'"
            ),
            &[],
        )
        .await
        .expect("sample values");
    let (with_big, big38, ns_sorted, avatars): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(
        with_big, 600,
        "every fifth item is an event with a 38-digit number"
    );
    assert_eq!(big38, 600);
    assert_eq!(ns_sorted, 600);
    assert_eq!(avatars, 600, "profiles' avatars start with 00 01 02");

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 2. kill -9 three times, resume each time: exact, nothing duplicated, done segments skipped.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_resume_is_exact() {
    const N: u64 = 20_000;
    let client = ddb().await;
    let table = unique_name("kill9");
    let target = new_database().await;
    let items = load_sample(&client, &table, 22, N).await;
    let m = Migration::new(&table, &target);
    // The read-unit cap keeps each run slow enough to be caught mid-way: DynamoDB Local
    // reports 2 units per page of 100 sample items, so 60 units/s is ~3000 items/s after a
    // first burst of one second's budget (the token bucket starts full).
    let args = [
        "--batch-size",
        "100",
        "--concurrency",
        "2",
        "--segments",
        "4",
        "--max-read-units",
        "60",
    ];

    let mut before: Option<Checkpoint> = None;
    let mut kills = 0;
    for pct in [15, 45, 75] {
        let threshold = N * pct / 100;
        // Past the threshold with a segment mid-way (its cursor held), so the kill lands
        // inside a segment's scan, not between segments.
        let ready =
            |cp: &Checkpoint| support::committed(cp) >= threshold && support::held_cursors(cp) > 0;
        let (running, seen) = match m.spawn_until_checkpoint(&args, ready).await {
            Ok((r, cp)) => (r, support::committed(&cp)),
            Err(out) => panic!(
                "the run finished before {threshold} committed items could be observed \
                 (exit {:?}); the test needs a slower run\n{}",
                out.code, out.stderr
            ),
        };
        let out = running.kill9().await;
        out.expect_killed_by_9();
        kills += 1;
        let cp = m.checkpoint();
        eprintln!(
            "kill -9 at {seen} committed: checkpoint has {} items, {} segments done, runs {:?}",
            support::committed(&cp),
            cp.segments_done(),
            cp.segments.iter().map(|s| s.runs).collect::<Vec<_>>()
        );
        assert!(
            !cp.complete,
            "killed at {seen} of {N}: the run was not complete"
        );
        assert!(
            support::committed(&cp) >= seen && support::committed(&cp) < N,
            "killed at {} of {N} committed, {seen} seen before the kill",
            support::committed(&cp)
        );
        if let Some(prev) = &before {
            // Segments done before this run were not scanned again by it.
            for (i, (a, b)) in prev.segments.iter().zip(&cp.segments).enumerate() {
                if a.done {
                    assert_eq!(a, b, "segment {i}, done before the resume, changed");
                }
            }
            assert!(
                support::committed(&cp) > support::committed(prev),
                "progress between kills"
            );
        }
        before = Some(cp);
    }
    assert_eq!(kills, 3);
    let last = before.expect("a checkpoint after the kills");
    let done_before = last.segments_done() as u64;
    assert!(
        done_before >= 1,
        "at 75% some segments must be done: {:?}",
        last.segments
    );
    let resumed_expected = support::held_cursors(&last) as u64;
    assert!(
        resumed_expected > 0,
        "the last kill landed mid-segment: a cursor is held: {:?}",
        last.segments
    );

    // Rows already in the target may be ahead of the checkpoint (committed, not yet flushed),
    // never behind it.
    let db = pg(&target).await;
    let t = m.pg_table();
    assert!(count_rows(&db, &t).await as u64 >= support::committed(&last));

    let out = m.run(&args).await;
    out.expect_code(0);
    assert_eq!(out.status(), "complete");
    assert!(
        out.stderr.contains("taking over"),
        "the SIGKILLed run left its pid in the lock file:\n{}",
        out.stderr
    );
    assert_eq!(out.num("segments_skipped"), done_before);
    assert_eq!(out.num("segments_resumed"), resumed_expected);
    assert_eq!(out.num("segments_done"), 4);
    let read = out.num("items_read");
    assert!(read < N, "the resumed run read {read} of {N}");
    assert_eq!(
        read,
        N - support::committed(&last),
        "the resume reads exactly what the checkpoint did not cover"
    );
    assert_eq!(out.num("items_total"), N);

    let fin = m.checkpoint();
    assert!(fin.complete);
    assert_eq!(support::committed(&fin), N, "every item counted once");
    for (i, (a, b)) in last.segments.iter().zip(&fin.segments).enumerate() {
        if a.done {
            assert_eq!(a, b, "segment {i}, done before the last resume, changed");
        }
    }
    assert!(fin.segments.iter().all(|s| s.done && s.cursor.is_none()));

    assert_target_is(&db, &t, &items).await;

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 3. A second run rewrites nothing.
// ---------------------------------------------------------------------------------------------

async fn row_versions(db: &tokio_postgres::Client, t: &str) -> Vec<(String, String, String)> {
    db.query(
        &format!("SELECT \"PK\" || '/' || \"SK\", xmin::text, ctid::text FROM {t} ORDER BY 1"),
        &[],
    )
    .await
    .expect("row versions")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_changes_nothing() {
    const N: u64 = 2000;
    let client = ddb().await;
    let table = unique_name("again");
    let target = new_database().await;
    let items = load_sample(&client, &table, 33, N).await;
    let m = Migration::new(&table, &target);
    let args = [
        "--segments",
        "4",
        "--concurrency",
        "2",
        "--batch-size",
        "250",
    ];
    let first = m.run(&args).await;
    first.expect_code(0);
    assert_eq!(first.num("rows_inserted"), N);

    let db = pg(&target).await;
    let t = m.pg_table();
    let versions = row_versions(&db, &t).await;
    assert_eq!(versions.len() as u64, N);
    let cp_bytes = std::fs::read(m.checkpoint_path().expect("checkpoint")).expect("read");

    let again = m.run(&args).await;
    again.expect_code(0);
    assert_eq!(again.status(), "nothing_to_do");
    assert_eq!(again.num("items_read"), 0);
    assert_eq!(again.num("rows_written"), 0);
    assert_eq!(again.num("segments_skipped"), 4);
    assert_eq!(
        std::fs::read(m.checkpoint_path().expect("checkpoint")).expect("read"),
        cp_bytes,
        "a run with nothing to do leaves the checkpoint alone"
    );
    assert_eq!(row_versions(&db, &t).await, versions);

    let restart: Vec<&str> = args.iter().copied().chain(["--restart"]).collect();
    let re = m.run(&restart).await;
    re.expect_code(0);
    assert_eq!(re.status(), "complete");
    assert!(re.stderr.contains("discarded"), "{}", re.stderr);
    assert_eq!(re.num("items_read"), N);
    assert_eq!(re.num("rows_written"), 0);
    assert_eq!(re.num("rows_inserted"), 0);
    assert_eq!(re.num("rows_updated"), 0);
    assert_eq!(re.num("rows_unchanged"), N);
    assert_eq!(re.num("segments_skipped"), 0);
    assert_eq!(
        row_versions(&db, &t).await,
        versions,
        "no row was rewritten (same xmin and ctid)"
    );
    let cp = m.checkpoint();
    assert!(cp.complete);
    assert!(
        cp.segments.iter().all(|s| s.runs == 1),
        "a fresh checkpoint"
    );
    assert_eq!(cp.segments.iter().map(|s| s.rows_unchanged).sum::<u64>(), N);
    assert_eq!(cp.segments.iter().map(|s| s.rows_written).sum::<u64>(), 0);
    assert_target_is(&db, &t, &items).await;

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 4. A resume under other settings is refused; --restart starts over.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_settings_are_refused_and_restart_starts_over() {
    const N: u64 = 1500;
    let client = ddb().await;
    let table = unique_name("settings");
    let target = new_database().await;
    let items = load_sample(&client, &table, 44, N).await;
    let m = Migration::new(&table, &target);
    let first = m.run(&["--segments", "8", "--concurrency", "2"]).await;
    first.expect_code(0);
    let cp_path = m.checkpoint_path().expect("checkpoint");
    let bytes = std::fs::read(&cp_path).expect("read checkpoint");
    assert_eq!(m.checkpoint().segments.len(), 8);

    let refused = m.run(&["--segments", "4", "--concurrency", "2"]).await;
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("segments") && refused.stderr.contains("--restart"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("checkpoint has \"8\", this run has \"4\""),
        "{}",
        refused.stderr
    );
    assert!(refused.report.is_none(), "a refused run writes no report");
    assert_eq!(
        std::fs::read(&cp_path).expect("read checkpoint"),
        bytes,
        "the refused run left the checkpoint alone"
    );

    let re = m
        .run(&["--restart", "--segments", "4", "--concurrency", "2"])
        .await;
    re.expect_code(0);
    assert_eq!(re.status(), "complete");
    assert_eq!(re.num("segments_total"), 4);
    assert_eq!(re.num("items_read"), N);
    assert_eq!(re.num("rows_unchanged"), N);
    let cp = m.checkpoint();
    assert_eq!(m.checkpoint_path().as_deref(), Some(cp_path.as_path()));
    assert_eq!(cp.settings.segments, 4);
    assert_eq!(cp.segments.len(), 4);
    assert!(cp.complete && cp.segments.iter().all(|s| s.done && s.runs == 1));
    assert_eq!(support::committed(&cp), N);
    // And now the 4-segment checkpoint is the one a resume must match; without --segments a
    // resume keeps the checkpoint's value.
    let again = m.run(&["--segments", "4"]).await;
    again.expect_code(0);
    assert_eq!(again.status(), "nothing_to_do");
    let again = m.run(&[]).await;
    again.expect_code(0);
    assert_eq!(again.status(), "nothing_to_do");
    assert_eq!(again.num("segments_total"), 4);

    let db = pg(&target).await;
    assert_target_is(&db, &m.pg_table(), &items).await;
    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 5. SIGTERM: finish in-flight batches, save the checkpoint, exit 130; a re-run completes.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_saves_checkpoint_and_exits_130() {
    const N: u64 = 6000;
    let client = ddb().await;
    let table = unique_name("sigterm");
    let target = new_database().await;
    let items = load_sample(&client, &table, 55, N).await;
    let m = Migration::new(&table, &target);
    // DynamoDB Local reports 2 read units per page of 100 sample items: 40 units/s is about
    // 2000 items/s, slow enough to interrupt mid-run.
    let args = [
        "--batch-size",
        "100",
        "--concurrency",
        "2",
        "--segments",
        "8",
        "--max-read-units",
        "40",
    ];
    let (running, seen) = match m.spawn_until(&args, N / 5).await {
        Ok(r) => r,
        Err(out) => panic!(
            "the run ended before it could be interrupted (exit {:?}):\n{}",
            out.code, out.stderr
        ),
    };
    support::signal(running.pid(), "TERM");
    let out = running.wait().await;
    out.expect_code(130);
    assert_eq!(out.status(), "interrupted");
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert!(
        out.stderr.contains("run the same command again"),
        "{}",
        out.stderr
    );
    let resume_line = out
        .stderr
        .lines()
        .skip_while(|l| !l.contains("run the same command again"))
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        resume_line.contains(&format!("--table {table}"))
            && resume_line.contains("migrate")
            && resume_line.contains("--max-read-units 40"),
        "resume command: {resume_line:?}"
    );
    let cp = m.checkpoint();
    let at_stop = support::committed(&cp);
    assert!(!cp.complete);
    assert!(at_stop >= seen && at_stop < N, "{at_stop} of {N}");
    assert_eq!(out.num("items_total"), at_stop);
    // A graceful stop flushes everything committed: the target holds exactly the items the
    // checkpoint covers.
    let db = pg(&target).await;
    let t = m.pg_table();
    assert_eq!(count_rows(&db, &t).await as u64, at_stop);
    assert!(
        std::fs::read_to_string(m.sibling(".lock"))
            .expect("lock file")
            .is_empty(),
        "a clean exit leaves an empty lock file"
    );

    let done = m.run(&args).await;
    done.expect_code(0);
    assert_eq!(done.status(), "complete");
    assert!(!done.stderr.contains("taking over"), "{}", done.stderr);
    assert_eq!(done.num("items_read"), N - at_stop);
    assert_eq!(
        done.num("segments_skipped"),
        cp.segments_done() as u64,
        "segments finished before the signal are skipped"
    );
    let fin = m.checkpoint();
    assert!(fin.complete);
    assert_eq!(support::committed(&fin), N);
    assert_target_is(&db, &t, &items).await;

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 6. Items PostgreSQL cannot store go to the rejects file, whole; the rest lands.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_go_to_the_rejects_file() {
    const N: u64 = 500;
    let client = ddb().await;
    let table = unique_name("rejects");
    let target = new_database().await;
    let mut items = load_sample(&client, &table, 66, N).await;
    let top = item("BAD#top", "1", vec![("bad", s("a\u{0}b")), ("ok", n("1"))]);
    let nested = item(
        "BAD#nested",
        "2",
        vec![(
            "meta",
            AttributeValue::M(HashMap::from([
                ("note".to_string(), s("x\u{0}")),
                ("fine".to_string(), s("y")),
            ])),
        )],
    );
    let good = item("GOOD#crafted", "3", vec![("text", s("no nul here"))]);
    for it in [&top, &nested, &good] {
        put(&client, &table, it).await;
    }
    items.push(good.clone());

    let m = Migration::new(&table, &target);
    let out = m.run(&["--segments", "4", "--concurrency", "2"]).await;
    out.expect_code(4);
    assert_eq!(out.status(), "complete");
    assert_eq!(out.num("rejected"), 2);
    assert_eq!(out.num("items_read"), N + 3);
    let rejects_path = m.sibling(".rejects.jsonl");
    assert_eq!(
        out.report()["rejects_file"].as_str(),
        Some(rejects_path.to_string_lossy().as_ref())
    );
    assert!(out.stderr.contains("REJECTED 2"), "{}", out.stderr);

    let text = std::fs::read_to_string(&rejects_path).expect("rejects file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("reject line {l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let by_pk: BTreeMap<String, &Value> = lines
        .iter()
        .map(|l| {
            let pk = l["item"]["PK"]["S"]
                .as_str()
                .expect("item.PK.S")
                .to_string();
            assert_eq!(l["key"]["PK"]["S"].as_str(), Some(pk.as_str()), "{l}");
            assert_eq!(l["key"]["SK"], l["item"]["SK"], "{l}");
            let reason = l["reason"].as_str().expect("reason");
            assert!(reason.contains("U+0000"), "{reason}");
            (pk, l)
        })
        .collect();
    assert_eq!(
        by_pk.keys().map(String::as_str).collect::<Vec<_>>(),
        ["BAD#nested", "BAD#top"]
    );
    let t = by_pk["BAD#top"];
    assert_eq!(t["item"]["bad"]["S"].as_str(), Some("a\u{0}b"), "{t}");
    assert_eq!(t["item"]["ok"]["N"].as_str(), Some("1"), "{t}");
    assert!(t["reason"].as_str().unwrap_or("").contains("bad"), "{t}");
    let nst = by_pk["BAD#nested"];
    assert_eq!(
        nst["item"]["meta"]["M"]["note"]["S"].as_str(),
        Some("x\u{0}"),
        "{nst}"
    );
    assert_eq!(
        nst["item"]["meta"]["M"]["fine"]["S"].as_str(),
        Some("y"),
        "{nst}"
    );
    assert!(
        nst["reason"].as_str().unwrap_or("").contains("meta.note"),
        "{nst}"
    );
    // The line's item is DynamoDB JSON that parses back to the very item.
    for (l, orig) in [(t, &top), (nst, &nested)] {
        let back = ddb2pg::value::item_from_ddb_json(&l["item"]).expect("DynamoDB JSON");
        assert_eq!(&back, orig);
    }

    let cp = m.checkpoint();
    assert_eq!(cp.segments.iter().map(|s| s.rejected).sum::<u64>(), 2);
    let db = pg(&target).await;
    assert_target_is(&db, &m.pg_table(), &items).await;

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 7. The sink, directly: repeated keys in one batch, last wins; a repeat writes nothing.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_keys_in_one_batch_do_not_fail() {
    let target = new_database().await;
    let info = TableInfo {
        name: "Repeat-Keys".into(),
        arn: "arn:aws:dynamodb:us-east-1:000000000000:table/Repeat-Keys".into(),
        key: vec![
            KeyAttr {
                name: "PK".into(),
                ty: KeyAttrType::S,
            },
            KeyAttr {
                name: "SK".into(),
                ty: KeyAttrType::S,
            },
        ],
        item_count: 0,
        size_bytes: 0,
    };
    let plan = Plan::default_for(&info);
    let admin = ddb2pg::sink::connect(&target).await.expect("connect");
    ddb2pg::sink::prepare_target(&admin, &plan)
        .await
        .expect("prepare target");
    let mut sink = Sink::open(&target, &plan).await.expect("open sink");
    let row = |pk: &str, sk: &str, doc: &str| Row {
        table: 0,
        cells: vec![
            Cell::Text(pk.into()),
            Cell::Text(sk.into()),
            Cell::Text(doc.into()),
        ],
    };
    let rows = vec![
        row("a", "1", r#"{"v": 1}"#),
        row("b", "1", r#"{"v": 2}"#),
        row("a", "1", r#"{"v": 3}"#),
        row("a", "2", r#"{"v": 4}"#),
        row("a", "1", r#"{"v": 5}"#),
        row("b", "1", r#"{"v": 6, "tab": "x\ty"}"#),
    ];
    let counts = sink
        .write(&rows)
        .await
        .unwrap_or_else(|e| panic!("repeated keys in one batch: {e}"));
    assert_eq!(
        counts,
        vec![TableCounts {
            staged: 6,
            distinct: 3,
            inserted: 3,
            updated: 0,
            earlier: 0,
        }]
    );
    assert_eq!(counts[0].collisions(), 3);
    assert_eq!(counts[0].unchanged(), 0);

    let t = "\"repeat_keys\"";
    let got: Vec<(String, String, String)> = admin
        .query(
            &format!("SELECT \"PK\", \"SK\", item::text FROM {t} ORDER BY 1, 2"),
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want: Vec<(String, String, String)> = [
        ("a", "1", r#"{"v": 5}"#),
        ("a", "2", r#"{"v": 4}"#),
        ("b", "1", r#"{"v": 6, "tab": "x\ty"}"#),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want, "the last of repeated keys wins");
    let xmins: Vec<String> = admin
        .query(&format!("SELECT xmin::text FROM {t} ORDER BY 1"), &[])
        .await
        .expect("xmin")
        .iter()
        .map(|r| r.get(0))
        .collect();

    let again = sink.write(&rows).await.expect("write the same rows again");
    assert_eq!(again[0].inserted, 0);
    assert_eq!(again[0].updated, 0);
    assert_eq!(again[0].distinct, 3);
    assert_eq!(again[0].unchanged(), 3);
    assert_eq!(again[0].collisions(), 3);
    let xmins_after: Vec<String> = admin
        .query(&format!("SELECT xmin::text FROM {t} ORDER BY 1"), &[])
        .await
        .expect("xmin")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(xmins, xmins_after, "nothing rewritten");

    // One changed item: exactly one update; key order in the JSON text does not matter.
    let changed = vec![
        row("a", "1", r#"{"v": 5}"#),
        row("a", "2", r#"{"v": 40}"#),
        row("b", "1", r#"{"tab": "x\ty", "v": 6}"#),
        row("c", "1", "null"),
    ];
    let c = sink.write(&changed).await.expect("write changed rows");
    assert_eq!(
        c,
        vec![TableCounts {
            staged: 4,
            distinct: 4,
            inserted: 1,
            updated: 1,
            earlier: 0,
        }]
    );
    let v: String = admin
        .query_one(
            &format!("SELECT item::text FROM {t} WHERE \"PK\" = 'a' AND \"SK\" = '2'"),
            &[],
        )
        .await
        .expect("updated row")
        .get(0);
    assert_eq!(v, r#"{"v": 40}"#);
    // An empty batch is fine too.
    assert_eq!(
        sink.write(&[]).await.expect("empty batch"),
        vec![TableCounts::default()]
    );

    drop(sink);
    drop(admin);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 8. A live lock is refused; a stale one (dead run) is taken over.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_lock_is_refused_and_stale_lock_taken_over() {
    const N: u64 = 300;
    let client = ddb().await;
    let table = unique_name("lock");
    let target = new_database().await;
    let items = load_sample(&client, &table, 88, N).await;
    let m = Migration::new(&table, &target);
    let args = ["--segments", "4"];
    m.run(&args).await.expect_code(0);
    let lock_path = m.sibling(".lock");
    assert!(lock_path.exists(), "{}", lock_path.display());
    assert_eq!(
        std::fs::read_to_string(&lock_path).expect("lock"),
        "",
        "a clean exit empties the lock file"
    );
    let cp_bytes = std::fs::read(m.checkpoint_path().expect("checkpoint")).expect("read");

    // Start over (--restart) while this process holds the lock: refused before anything.
    let held = Lock::acquire(&lock_path).expect("hold the lock");
    let refused = m.run(&["--segments", "4", "--restart"]).await;
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("another ddb2pg run"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains(&format!("pid {}", std::process::id())),
        "the message names the holder: {}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains(lock_path.to_string_lossy().as_ref()),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read(m.checkpoint_path().expect("checkpoint")).expect("read"),
        cp_bytes,
        "the refused --restart did not discard the checkpoint"
    );
    drop(held);

    // A dead run's pid in the lock file, no flock held: taken over.
    std::fs::write(&lock_path, "pid 4194000 on a-dead-host").expect("write stale lock");
    let ok = m.run(&args).await;
    ok.expect_code(0);
    assert!(ok.stderr.contains("taking over"), "{}", ok.stderr);
    assert!(ok.stderr.contains("4194000"), "{}", ok.stderr);
    assert_eq!(ok.status(), "nothing_to_do");
    assert_eq!(
        std::fs::read_to_string(&lock_path).expect("lock"),
        "",
        "released again at exit"
    );

    let db = pg(&target).await;
    assert_target_is(&db, &m.pg_table(), &items).await;
    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 9. A damaged checkpoint is refused, never silently replaced.
// ---------------------------------------------------------------------------------------------

/// Change one digit of the first `"items": <n>` value.
fn flip_a_digit(text: &str) -> String {
    let at = text.find("\"items\": ").expect("an items field") + "\"items\": ".len();
    let mut bytes = text.as_bytes().to_vec();
    let d = bytes[at];
    assert!(d.is_ascii_digit(), "digit expected in {text}");
    bytes[at] = if d == b'9' { b'1' } else { d + 1 };
    String::from_utf8(bytes).expect("utf8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_checkpoint_is_refused() {
    const N: u64 = 400;
    let client = ddb().await;
    let table = unique_name("damaged");
    let target = new_database().await;
    let items = load_sample(&client, &table, 99, N).await;
    let m = Migration::new(&table, &target);
    let args = ["--segments", "4"];
    m.run(&args).await.expect_code(0);
    let cp_path = m.checkpoint_path().expect("checkpoint");
    let good = std::fs::read(&cp_path).expect("read checkpoint");

    // Remove rows behind the tool's back: a silent start-over would bring them back.
    let db = pg(&target).await;
    let t = m.pg_table();
    let deleted = db
        .execute(
            &format!("DELETE FROM {t} WHERE \"SK\" = 'PROFILE' AND \"PK\" < 'USER#00000010'"),
            &[],
        )
        .await
        .expect("delete rows");
    assert_eq!(deleted, 10);
    let left = N as i64 - 10;

    let truncated = good[..good.len() / 2].to_vec();
    let flipped = flip_a_digit(&String::from_utf8(good.clone()).expect("utf8")).into_bytes();
    // Consistent checksum, but one segment fewer than its settings say.
    let short = {
        let mut cp: Checkpoint = serde_json::from_slice(&good).expect("parse checkpoint");
        cp.segments.pop();
        let p = m.dir.join("short-checkpoint.json");
        cp.save(&p).expect("save the short checkpoint");
        std::fs::read(&p).expect("read the short checkpoint")
    };
    for (what, bytes, why) in [
        ("truncated", &truncated, "not valid JSON"),
        ("flipped digit", &flipped, "checksum"),
        ("missing segment", &short, "segment count"),
    ] {
        std::fs::write(&cp_path, bytes).expect("damage the checkpoint");
        let out = m.run(&args).await;
        out.expect_code(2);
        let e = &out.stderr;
        assert!(
            e.contains(cp_path.to_string_lossy().as_ref()),
            "{what}: names the file: {e}"
        );
        assert!(e.contains("--restart"), "{what}: {e}");
        assert!(e.contains("damaged") && e.contains(why), "{what}: {e}");
        assert!(out.report.is_none(), "{what}: no report");
        assert_eq!(
            &std::fs::read(&cp_path).expect("read checkpoint"),
            bytes,
            "{what}: the file is left as it was"
        );
        assert_eq!(count_rows(&db, &t).await, left, "{what}: target untouched");
    }

    // The original file is still trusted: nothing to do, nothing written.
    std::fs::write(&cp_path, &good).expect("restore");
    let out = m.run(&args).await;
    out.expect_code(0);
    assert_eq!(out.status(), "nothing_to_do");
    assert_eq!(count_rows(&db, &t).await, left);

    // --restart is the way out of a damaged checkpoint, and brings the deleted rows back.
    std::fs::write(&cp_path, &truncated).expect("damage again");
    let out = m.run(&["--segments", "4", "--restart"]).await;
    out.expect_code(0);
    assert_eq!(out.status(), "complete");
    assert!(m.checkpoint().complete, "a valid checkpoint again");
    assert_eq!(out.num("rows_inserted"), 10);
    assert_eq!(out.num("rows_unchanged"), N - 10);
    assert_target_is(&db, &t, &items).await;

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 10. Configuration errors: exit 2 and a message that says what to fix.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_2_with_clear_messages() {
    let client = ddb().await;
    let table = unique_name("config");
    load_sample(&client, &table, 7, 20).await;
    let target = new_database().await;

    // A source table that does not exist.
    let missing = unique_name("missing");
    let m = Migration::new(&missing, &target);
    let out = m.run(&[]).await;
    out.expect_code(2);
    assert!(
        out.stderr.contains(&missing) && out.stderr.contains("not found"),
        "{}",
        out.stderr
    );
    assert!(
        m.checkpoint_path().is_none(),
        "no checkpoint for a failed setup"
    );

    // No --target and no DATABASE_URL (nor PG* variables).
    let m = Migration::new(&table, &target);
    let out = Migration::bare_command()
        .current_dir(&m.dir)
        .args(["migrate", "--table", &table, "--progress", "none"])
        .args(["--endpoint-url", &support::services().endpoint])
        .arg("--checkpoint-dir")
        .arg(&m.checkpoint_dir)
        .output()
        .expect("run ddb2pg");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no target database") && err.contains("DATABASE_URL"),
        "{err}"
    );
    assert!(m.checkpoint_path().is_none());

    // A target nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let closed = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let m = Migration::new(&table, &closed);
    let started = std::time::Instant::now();
    let out = m.run(&[]).await;
    out.expect_code(2);
    assert!(
        out.stderr.contains("cannot connect to the target"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&port.to_string()) || out.stderr.contains("refused"),
        "says where or why: {}",
        out.stderr
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "fails fast"
    );
    assert!(m.checkpoint_path().is_none());

    // A target table of the wrong shape (no item column).
    let m = Migration::new(&table, &target);
    let db = pg(&target).await;
    let t = m.pg_table();
    db.batch_execute(&format!(
        "CREATE TABLE {t} (\"PK\" text, \"SK\" text, payload jsonb, PRIMARY KEY (\"PK\", \"SK\"))"
    ))
    .await
    .expect("create the wrong table");
    let out = m.run(&[]).await;
    out.expect_code(2);
    assert!(
        out.stderr.contains("no column \"item\""),
        "names the missing column: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&ddb2pg::plan::default_table_name(&table)),
        "names the table: {}",
        out.stderr
    );
    let cols: BTreeSet<String> = db
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) \
             AND attnum > 0 AND NOT attisdropped",
            &[&t],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        cols,
        BTreeSet::from(["PK".to_string(), "SK".to_string(), "payload".to_string()]),
        "the table is left alone"
    );
    assert_eq!(count_rows(&db, &t).await, 0);
    assert!(m.checkpoint_path().is_none());

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 11. `ddb2pg status` beside a live run must not touch the run's files.
// ---------------------------------------------------------------------------------------------

/// `ddb2pg status` is meant to run from another terminal while a migration is live. A live run
/// saves its checkpoint by writing `<checkpoint>.tmp` and renaming it over the checkpoint; a
/// reader that deletes that tmp file in between makes the rename fail (ENOENT), and the run
/// stops with "cannot write checkpoint (No such file or directory)", exit 1 (the kill -9 test
/// once hit exactly that, polling with `Checkpoint::load`, which then removed tmp files). The
/// live run is simulated deterministically: this process holds the run's lock while a save is
/// in progress. Once no run holds the lock, the next run removes the leftover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_leaves_a_live_runs_tmp_file_alone() {
    let client = ddb().await;
    let table = unique_name("status");
    let target = new_database().await;
    load_sample(&client, &table, 5, 50).await;
    let m = Migration::new(&table, &target);
    m.run(&["--segments", "2"]).await.expect_code(0);
    let cp_path = m.checkpoint_path().expect("checkpoint");
    let good = std::fs::read(&cp_path).expect("read checkpoint");

    // A live run: it holds the lock and is between writing its tmp file and renaming it.
    let live = Lock::acquire(&m.sibling(".lock")).expect("hold the run's lock");
    let mut tmp_name = cp_path.clone().into_os_string();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    std::fs::write(&tmp, &good).expect("write the tmp file of a save in progress");

    let out = Migration::bare_command()
        .current_dir(&m.dir)
        .args(["status", "--json", "--checkpoint-dir"])
        .arg(&m.checkpoint_dir)
        .output()
        .expect("run ddb2pg status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_str(&stdout).expect("status --json");
    let st = &all["checkpoints"][0];
    assert_eq!(st["running"], Value::Bool(true), "{st}");
    assert_eq!(st["complete"], Value::Bool(true), "{st}");
    assert!(
        tmp.exists(),
        "`ddb2pg status` deleted {} while a live run (lock held) was saving its checkpoint: \
         the run's rename would fail and the run would stop with exit 1",
        tmp.display()
    );
    assert_eq!(std::fs::read(&cp_path).expect("read"), good);

    // The writer died mid-save: the next run, holding the lock, removes the leftover.
    drop(live);
    std::fs::write(&tmp, &good[..good.len() / 3]).expect("a half-written tmp file");
    let out = m.run(&["--segments", "2"]).await;
    out.expect_code(0);
    assert_eq!(out.status(), "nothing_to_do");
    assert!(
        !tmp.exists(),
        "leftover tmp removed; stderr:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("removing"), "{}", out.stderr);
    assert_eq!(std::fs::read(&cp_path).expect("read"), good);

    delete_table(&client, &table).await;
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 12. A migration with rejects ends with exit 4, even when an earlier, interrupted run of it
//     met the rejected items.
// ---------------------------------------------------------------------------------------------

/// Partition keys of the items a parallel-scan segment returns.
async fn pks_of_segment(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    segment: i32,
    total: i32,
) -> BTreeSet<String> {
    let mut pks = BTreeSet::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .segment(segment)
            .total_segments(total)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan a segment");
        for it in out.items() {
            if let Some(AttributeValue::S(pk)) = it.get("PK") {
                pks.insert(pk.clone());
            }
        }
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return pks,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_of_an_interrupted_run_still_make_the_resume_exit_4() {
    const N: u64 = 2000;
    const SEGMENTS: i32 = 4;
    let client = ddb().await;
    let table = unique_name("rejresume");
    let target = new_database().await;
    let mut items = load_sample(&client, &table, 12, N).await;
    // Items holding U+0000, kept only where segment 0 (scanned first) returns them.
    let candidates: Vec<Item> = (0..16)
        .map(|i| item(&format!("BAD#{i:02}"), "X", vec![("bad", s("nul\u{0}"))]))
        .collect();
    for it in &candidates {
        put(&client, &table, it).await;
    }
    let first = pks_of_segment(&client, &table, 0, SEGMENTS).await;
    let mut kept = Vec::new();
    for it in &candidates {
        let Some(AttributeValue::S(pk)) = it.get("PK") else {
            panic!("pk")
        };
        if first.contains(pk) {
            kept.push(pk.clone());
        } else {
            client
                .delete_item()
                .table_name(&table)
                .key("PK", s(pk))
                .key("SK", s("X"))
                .send()
                .await
                .expect("delete a candidate");
        }
    }
    assert!(
        !kept.is_empty(),
        "some of 16 keys must hash to segment 0 of {SEGMENTS}"
    );
    let rejected = kept.len() as u64;
    // Crafted normal items too, so the total is not just the sample.
    let extra = item("GOOD#x", "X", vec![("ok", s("fine"))]);
    put(&client, &table, &extra).await;
    items.push(extra);

    // One segment at a time, segment 0 first; slow enough (10 read units/s, ~500 items/s after
    // a first burst) to stop it once segment 0 is done.
    let m = Migration::new(&table, &target);
    let seg = SEGMENTS.to_string();
    let mut running = m.spawn(&[
        "--segments",
        &seg,
        "--concurrency",
        "1",
        "--batch-size",
        "100",
        "--max-read-units",
        "10",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let cp = m.live_checkpoint();
        if cp.as_ref().is_some_and(|c| c.segments[0].done) {
            assert!(
                !cp.is_some_and(|c| c.complete),
                "too fast: already complete"
            );
            break;
        }
        assert!(
            !running.exited(),
            "the run ended before segment 0 was seen done"
        );
        assert!(std::time::Instant::now() < deadline, "segment 0 never done");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    support::signal(running.pid(), "TERM");
    let stopped = running.wait().await;
    stopped.expect_code(130);
    assert_eq!(stopped.num("rejected"), rejected);
    let cp = m.checkpoint();
    assert!(!cp.complete);
    assert_eq!(cp.segments[0].rejected, rejected);

    // The resume finishes the migration; its items are all fine.
    let done = m.run(&["--segments", &seg, "--concurrency", "2"]).await;
    assert_eq!(done.status(), "complete", "{}", done.stderr);
    assert_eq!(done.num("rejected"), 0, "no new rejects in this run");
    assert_eq!(
        done.num("segments_skipped"),
        cp.segments_done() as u64,
        "{}",
        done.stderr
    );
    let fin = m.checkpoint();
    assert!(fin.complete);
    assert_eq!(
        fin.segments.iter().map(|s| s.rejected).sum::<u64>(),
        rejected
    );
    let lines = std::fs::read_to_string(m.sibling(".rejects.jsonl")).expect("rejects file");
    assert_eq!(lines.lines().count() as u64, rejected);
    assert!(done.report()["rejects_file"].is_string());
    let db = pg(&target).await;
    assert_target_is(&db, &m.pg_table(), &items).await;
    // The migration is done and `rejected` items of it are only in the rejects file: exit 4
    // ("done, but some items were rejected"), whichever run met them.
    assert_eq!(
        done.code,
        Some(4),
        "the run that completes a migration with {rejected} rejected items must exit 4; \
         stderr:\n{}",
        done.stderr
    );

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 13. Number and binary keys: typed key columns, and cursors that survive a resume.
// ---------------------------------------------------------------------------------------------

async fn create_n_b_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let def = |name: &str, ty: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ty)
            .build()
            .expect("attribute definition")
    };
    let key = |name: &str, ty: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(ty)
            .build()
            .expect("key schema element")
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def("id", ScalarAttributeType::N))
        .attribute_definitions(def("bin", ScalarAttributeType::B))
        .key_schema(key("id", KeyType::Hash))
        .key_schema(key("bin", KeyType::Range))
        .send()
        .await
        .expect("create the N/B-keyed table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_and_binary_keys_survive_a_resume() {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    const N: usize = 3000;
    let client = ddb().await;
    let table = unique_name("nbkeys");
    let target = new_database().await;
    create_n_b_table(&client, &table).await;

    let mut items: Vec<Item> = (0..N)
        .map(|i| {
            let id = match i % 4 {
                0 => format!("{i}"),
                1 => format!("{i}.5"),
                2 => format!("-{i}.25"),
                _ => format!("{i}E+100"),
            };
            // Zero bytes and what COPY text format escapes: backslash, tab, newline.
            let bin = vec![0, (i % 256) as u8, b'\\', b'\t', b'\n', (i / 256) as u8, 0];
            let mut it = Item::new();
            it.insert("id".into(), n(&id));
            it.insert("bin".into(), AttributeValue::B(Blob::new(bin)));
            it.insert("pad".into(), s(&"x".repeat(150)));
            it.insert("i".into(), n(&i.to_string()));
            it
        })
        .collect();
    for (id, bin) in [
        (BIG, vec![1u8]),
        (NEG, vec![2]),
        ("1E+125", vec![0]),
        ("-1E-130", vec![0, 0]),
    ] {
        let mut it = Item::new();
        it.insert("id".into(), n(id));
        it.insert("bin".into(), AttributeValue::B(Blob::new(bin)));
        items.push(it);
    }
    for chunk in items.chunks(25) {
        let reqs: Vec<WriteRequest> = chunk
            .iter()
            .map(|it| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(it.clone()))
                            .build()
                            .expect("put request"),
                    )
                    .build()
            })
            .collect();
        ddb2pg::sample::write_all(&client, &table, reqs)
            .await
            .expect("write items");
    }
    let total = items.len() as u64;

    let m = Migration::new(&table, &target);
    let args = [
        "--segments",
        "4",
        "--concurrency",
        "1",
        "--batch-size",
        "100",
        "--max-read-units",
        "10",
    ];
    let mut running = m.spawn(&args);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if m.live_checkpoint().is_some_and(|cp| {
            support::committed(&cp) >= 300 && cp.segments.iter().any(|s| s.cursor.is_some())
        }) {
            break;
        }
        assert!(
            !running.exited(),
            "the run ended before it could be stopped"
        );
        assert!(std::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    support::signal(running.pid(), "TERM");
    let stopped = running.wait().await;
    stopped.expect_code(130);
    let cp = m.checkpoint();
    let cursors: Vec<&Value> = cp
        .segments
        .iter()
        .filter(|s| !s.done)
        .filter_map(|s| s.cursor.as_ref())
        .collect();
    assert!(
        !cursors.is_empty(),
        "a segment stopped mid-way: {:?}",
        cp.segments
    );
    for c in &cursors {
        assert!(c["id"]["N"].is_string() && c["bin"]["B"].is_string(), "{c}");
    }
    let at_stop = support::committed(&cp);
    assert!(at_stop < total);

    let done = m.run(&["--segments", "4", "--concurrency", "2"]).await;
    done.expect_code(0);
    assert_eq!(done.num("segments_resumed"), cursors.len() as u64);
    assert_eq!(done.num("items_read"), total - at_stop);
    assert_eq!(support::committed(&m.checkpoint()), total);

    let db = pg(&target).await;
    let t = m.pg_table();
    let types: BTreeMap<String, String> = db
        .query(
            "SELECT attname::text, atttypid::regtype::text FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&t],
        )
        .await
        .expect("column types")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        types,
        BTreeMap::from([
            ("id".to_string(), "numeric".to_string()),
            ("bin".to_string(), "bytea".to_string()),
            ("item".to_string(), "jsonb".to_string()),
        ])
    );
    let (mut ids, mut bins, mut docs) = (Vec::new(), Vec::new(), Vec::new());
    for it in &items {
        let (Some(AttributeValue::N(id)), Some(AttributeValue::B(bin))) =
            (it.get("id"), it.get("bin"))
        else {
            panic!("keys")
        };
        ids.push(id.clone());
        bins.push(bin.as_ref().to_vec());
        docs.push(support::expected_json(it));
    }
    let r = db
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {t}), count(*) \
                 FROM unnest($1::text[], $2::bytea[], $3::text[]) AS e(id, bin, doc) \
                 JOIN {t} t ON t.id = e.id::numeric AND t.bin = e.bin \
                 WHERE t.item = e.doc::jsonb"
            ),
            &[&ids, &bins, &docs],
        )
        .await
        .expect("compare");
    let (rows, matching): (i64, i64) = (r.get(0), r.get(1));
    assert_eq!(rows as u64, total);
    assert_eq!(
        matching as u64, total,
        "every row has its item's keys and JSON"
    );
    let big: String = db
        .query_one(
            &format!("SELECT id::text FROM {t} WHERE bin = '\\x01'::bytea"),
            &[],
        )
        .await
        .expect("38-digit key")
        .get(0);
    assert_eq!(big, BIG);
    let r = db
        .query_one(
            &format!(
                "SELECT id = 1e125, item->'bin' = '\"AA==\"'::jsonb FROM {t} WHERE bin = '\\x00'::bytea"
            ),
            &[],
        )
        .await
        .expect("1E+125 key");
    assert!(r.get::<_, bool>(0) && r.get::<_, bool>(1));

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
}
