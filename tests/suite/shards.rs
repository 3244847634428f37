//! Past one machine: `--shard I/N` / `--shards N` processes against one table and one target,
//! checkpoints in moto's S3 (conditional writes, leased locks), `status` over every shard, and
//! the deployment manifests.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ddb2pg::checkpoint::{Checkpoint, Names, S3Dir};
use ddb2pg::cli::AwsArgs;

use crate::support::harness::{
    command, default_mapping_differences, migrate_args, moto_s3, new_database, run, sample_table,
    tempdir, unique,
};

pub(crate) fn no_aws() -> AwsArgs {
    AwsArgs {
        endpoint_url: None,
        region: None,
        profile: None,
    }
}

/// A new bucket on moto; returns `s3://bucket/ddb2pg`.
pub(crate) async fn s3_checkpoint_dir() -> String {
    let s3 = ddb2pg::source::s3::client(&no_aws(), &Some(moto_s3().to_string()))
        .await
        .expect("s3 client");
    let bucket = unique("shards").replace('_', "-");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    format!("s3://{bucket}/ddb2pg")
}

/// `migrate` arguments for shard `i` of `n` over `segments`, checkpoints at `dir`.
pub(crate) fn shard_args(
    table: &str,
    db: &str,
    dir: &str,
    shard: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut a = migrate_args(table, db, Path::new(dir));
    a.extend(
        [
            "--shard",
            shard,
            "--segments",
            "8",
            "--s3-endpoint-url",
            moto_s3(),
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string()),
    );
    a
}

pub(crate) fn spawn_in(args: &[String], cwd: &Path) -> Child {
    command(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ddb2pg")
}

pub(crate) fn stderr_of(child: Child) -> (i32, String) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The committed items of shard `name`'s checkpoint in S3 (0 while there is none).
pub(crate) fn committed_in_s3(dir: &S3Dir, name: &str) -> u64 {
    match Checkpoint::load_from(dir, name) {
        Ok(Some((cp, _))) => cp.segments.iter().map(|s| s.items).sum(),
        _ => 0,
    }
}

pub(crate) fn status_json(dir: &str) -> serde_json::Value {
    let out = command(&[
        "status".into(),
        "--json".into(),
        "--checkpoint-dir".into(),
        dir.into(),
        "--s3-endpoint-url".into(),
        moto_s3().into(),
    ])
    .output()
    .expect("status");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn shard_states(status: &serde_json::Value) -> Vec<(String, String)> {
    status["migrations"][0]["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| {
            (
                s["shard"].as_str().unwrap_or("").to_string(),
                s["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_in_s3_one_killed_and_resumed_from_elsewhere() {
    let n = 3000;
    let table = sample_table(n).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let s3 = S3Dir::open(&dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir");
    let info_arn = format!("arn:aws:dynamodb:ddblocal:000000000000:table/{table}");
    let target_id = ddb2pg::pgconn::resolve(Some(&db))
        .expect("target")
        .identity();
    let victim_names = Names::new(
        &table,
        &info_arn,
        &target_id,
        Some(ddb2pg::shard::Shard::parse("2/4").expect("shard")),
    );

    // Shard 2 is slow (small batches, one connection, 2 read units/s, a 3 s lease) and killed -9 mid-work.
    let first_dir = tempdir("shard-a");
    let slow = [
        "--batch-size",
        "10",
        "--concurrency",
        "1",
        "--max-read-units",
        "2",
        "--lock-lease",
        "3",
    ];
    let mut victim = spawn_in(&shard_args(&table, &db, &dir, "2/4", &slow), &first_dir);
    let t0 = Instant::now();
    while committed_in_s3(&s3, &victim_names.checkpoint) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the shard never committed"
        );
        assert!(victim.try_wait().expect("wait").is_none(), "ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second process given the same shard while the first runs: exit 2, naming the holder.
    let twin = run(&shard_args(&table, &db, &dir, "2/4", &[]));
    assert_eq!(twin.code, 2, "{}", twin.stderr);
    let holder = format!("pid {}", victim.id());
    // Waiting longer than the 3 s lease does not get it either: the holder renews it.
    let waited = Instant::now();
    let patient = run(&shard_args(&table, &db, &dir, "2/4", &["--lock-wait", "5"]));
    assert_eq!(patient.code, 2, "{}", patient.stderr);
    assert!(waited.elapsed() >= Duration::from_secs(5));
    assert!(
        patient.stderr.contains("waiting up to 5 s") && patient.stderr.contains(&holder),
        "{}",
        patient.stderr
    );
    assert!(
        victim.try_wait().expect("wait").is_none(),
        "the victim ended early"
    );
    assert!(
        twin.stderr.contains(&holder) && twin.stderr.contains(".shard-2-of-4.lock"),
        "{}",
        twin.stderr
    );
    victim.kill().expect("kill -9");
    let _ = victim.wait();
    let killed = Instant::now();
    let before = committed_in_s3(&s3, &victim_names.checkpoint);
    assert!(before < n, "the victim finished before the kill");

    // The other three shards, each from its own working directory.
    let others: Vec<Child> = ["0/4", "1/4", "3/4"]
        .iter()
        .map(|s| spawn_in(&shard_args(&table, &db, &dir, s, &[]), &tempdir("shard-o")))
        .collect();
    for c in others {
        let (code, err) = stderr_of(c);
        assert_eq!(code, 0, "{err}");
    }
    // The dead holder's 3 s lease has ended: its shard is failed, not running.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(killed.elapsed()));
    let st = status_json(&dir);
    let states = shard_states(&st);
    assert_eq!(
        states,
        vec![
            ("0/4".to_string(), "done".to_string()),
            ("1/4".into(), "done".into()),
            ("2/4".into(), "failed".into()),
            ("3/4".into(), "done".into()),
        ],
        "{st}"
    );

    // Started again from another working directory, the dead holder's lease expired.
    let again = run(&shard_args(&table, &db, &dir, "2/4", &[]));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("taking over the lock") && again.stderr.contains(&holder),
        "{}",
        again.stderr
    );
    let r = &again.report;
    assert_eq!(r["shard"], "2/4", "{r}");
    assert_eq!(r["segments_total"], 2, "segments 2 and 6: {r}");
    let resumed = r["segments_resumed"].as_u64().unwrap_or(0);
    let skipped = r["segments_skipped"].as_u64().unwrap_or(0);
    assert!(resumed + skipped >= 1, "{r}");
    assert!(
        r["items_read"].as_u64().unwrap_or(n) < n,
        "read everything again: {r}"
    );

    // The target is exact, and status shows all four done with every item once.
    assert_eq!(default_mapping_differences(&db, &table, n).await, (0, 0));
    let st = status_json(&dir);
    let m = &st["migrations"][0];
    assert_eq!(
        (
            m["shards_total"].as_u64(),
            m["shards_done"].as_u64(),
            m["items"].as_u64(),
            m["segments_total"].as_u64()
        ),
        (Some(4), Some(4), Some(n), Some(8)),
        "{st}"
    );
    // The checkpoints, locks (released) are objects in the bucket, none on the local disks.
    let names = st["checkpoints"].as_array().expect("checkpoints");
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|c| c["checkpoint"]
        .as_str()
        .is_some_and(|p| p.starts_with(&dir))));
    assert!(std::fs::read_dir(&first_dir).expect("dir").next().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_take_their_index_from_job_completion_index_as_an_indexed_job_does() {
    let n = 1500;
    let table = sample_table(n).await;
    let db = new_database().await;
    let cp = tempdir("indexed-job");
    let cp_dir = cp.to_string_lossy().to_string();
    let pods: Vec<Child> = (0..3)
        .map(|i| {
            let mut a = migrate_args(&table, &db, &cp);
            a.extend(["--shards", "3", "--segments", "6"].map(String::from));
            command(&a)
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for (i, p) in pods.into_iter().enumerate() {
        let (code, err) = stderr_of(p);
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains(&format!(
                "shard {i}/3 (index from JOB_COMPLETION_INDEX, N from --shards)"
            )),
            "{err}"
        );
    }
    assert_eq!(default_mapping_differences(&db, &table, n).await, (0, 0));
    let mut files: Vec<String> = std::fs::read_dir(&cp)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|f| f.ends_with(".json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[1].ends_with(".shard-1-of-3.json"), "{files:?}");

    // Each shard's checkpoint records the total and its shard; other totals are refused.
    let saved = Checkpoint::load(&cp.join(&files[1]))
        .expect("load")
        .expect("present");
    assert_eq!(saved.settings.segments, 6);
    assert_eq!(
        saved.settings.shard.map(|s| s.to_string()),
        Some("1/3".into())
    );
    assert!(saved.segments[1].done && saved.segments[4].done && !saved.segments[0].done);
    let mut other_total = migrate_args(&table, &db, &cp);
    other_total.extend(["--shard", "2/3", "--segments", "9"].map(String::from));
    let r = run(&other_total);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("every shard must use the same total"),
        "{}",
        r.stderr
    );
    let mut other_n = migrate_args(&table, &db, &cp);
    other_n.extend(["--shard", "0/2", "--segments", "6"].map(String::from));
    let r = run(&other_n);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("the same N"), "{}", r.stderr);
    // Without --segments, a shard of a table is refused (a size-derived total could differ).
    let mut no_total = migrate_args(&table, &db, &tempdir("no-total"));
    no_total.extend(["--shard", "0/3"].map(String::from));
    let r = run(&no_total);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("give --segments"), "{}", r.stderr);

    // verify --shard: each shard compares its segments; a row deleted from the target is
    // missing for exactly one shard, and the shards' matched add up to the rest.
    let verify = |shard: &str| {
        let mut a: Vec<String> = [
            "verify",
            "--table",
            &table,
            "--target",
            &db,
            "--endpoint-url",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend([
            crate::support::services().endpoint.clone(),
            "--shard".into(),
            shard.into(),
            "--segments".into(),
            "6".into(),
        ]);
        run(&a)
    };
    for i in 0..3 {
        let r = verify(&format!("{i}/3"));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.report["shard"], format!("{i}/3"));
    }
    crate::support::pg(&db)
        .await
        .batch_execute(&format!(
            "DELETE FROM \"{table}\" WHERE ctid = (SELECT ctid FROM \"{table}\" LIMIT 1)"
        ))
        .await
        .expect("delete a row");
    let results: Vec<_> = (0..3).map(|i| verify(&format!("{i}/3"))).collect();
    let codes: Vec<i32> = results.iter().map(|r| r.code).collect();
    assert_eq!(codes.iter().filter(|&&c| c == 3).count(), 1, "{codes:?}");
    let sum = |field: &str| -> u64 {
        results
            .iter()
            .map(|r| r.report["tables"][&table][field].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!((sum("matched"), sum("missing_in_target")), (n - 1, 1));

    // Local status shows the three shards done.
    let out = command(&["status".into(), "--checkpoint-dir".into(), cp_dir])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 shards, 3 done, 0 running, 0 failed, 0 not started")
            && text.contains(&format!("{n} items (complete)")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_follower_takes_over_a_load_done_in_shards() {
    use aws_sdk_dynamodb::types::{AttributeValue, StreamSpecification, StreamViewType};
    let n = 600;
    let table = sample_table(n).await;
    let client = crate::support::ddb().await;
    // The stream is on before the shards begin.
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
    let cp = tempdir("follow-shards");
    let shard = |s: &str| {
        let mut a = migrate_args(&table, &db, &cp);
        a.extend(["--shard", s, "--segments", "4"].map(String::from));
        run(&a)
    };
    let mut follow = migrate_args(&table, &db, &cp);
    follow.extend(["--follow", "--until-caught-up"].map(String::from));
    let r = shard("0/2");
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Changes while the load is under way (after shard 0, before shard 1).
    let first = ddb2pg::sample::item(1, 0);
    let mut changed = first.clone();
    changed.insert(
        "email".into(),
        AttributeValue::S("changed@example.com".into()),
    );
    crate::support::put(&client, &table, &changed).await;
    // Not every shard done: refused.
    let early = run(&follow);
    assert_eq!(early.code, 2, "{}", early.stderr);
    assert!(
        early.stderr.contains("shard 1/2 is not done"),
        "{}",
        early.stderr
    );
    let r = shard("1/2");
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A change after the load: a delete.
    let gone = ddb2pg::sample::item(1, 1);
    client
        .delete_item()
        .table_name(&table)
        .set_key(Some(
            ["PK", "SK"]
                .iter()
                .map(|k| (k.to_string(), gone[*k].clone()))
                .collect(),
        ))
        .send()
        .await
        .expect("delete");
    // --follow with --shard is refused outright.
    let mut both = follow.clone();
    both.extend(["--shard", "0/2"].map(String::from));
    assert_eq!(run(&both).code, 2);

    let r = run(&follow);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the load was done by 2 shards (600 items)")
            && !r.stderr.contains("cannot tell"),
        "{}",
        r.stderr
    );
    assert_eq!(r.report["status"], "caught_up", "{}", r.report);
    // It follows from when the first shard began (not from its own start), made of the
    // shards' segments.
    let load = |suffix: &str| {
        let f = std::fs::read_dir(&cp)
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let name = p.to_string_lossy();
                name.ends_with(suffix) && (suffix != ".json" || !name.contains(".shard-"))
            })
            .expect(suffix);
        Checkpoint::load(&f).expect("load").expect("present")
    };
    let follower = load(".json");
    let shard0 = load(".shard-0-of-2.json");
    assert_eq!(
        follower.stream.as_ref().map(|s| s.follow_from),
        Some(shard0.created_at)
    );
    assert!(follower.complete && follower.settings.shard.is_none());
    assert_eq!(follower.segments[2], shard0.segments[2]);
    let c = crate::support::pg(&db).await;
    let t = ddb2pg::plan::default_table_name(&table);
    let rows: i64 = c
        .query_one(&format!("SELECT count(*) FROM \"{t}\""), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, n as i64 - 1);
    let email: String = c
        .query_one(
            &format!("SELECT item->>'email' FROM \"{t}\" WHERE \"SK\" = 'PROFILE' AND \"PK\" = $1"),
            &[&"USER#00000000"],
        )
        .await
        .expect("item 0")
        .get(0);
    assert_eq!(email, "changed@example.com");
    let gone_left: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{t}\" WHERE \"PK\" = $1 AND \"SK\" = $2"),
            &[
                &"USER#00000000",
                &match &gone["SK"] {
                    AttributeValue::S(s) => s.clone(),
                    other => panic!("{other:?}"),
                },
            ],
        )
        .await
        .expect("item 1")
        .get(0);
    assert_eq!(gone_left, 0, "the delete after the load was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shards_rejects_live_in_s3_and_a_resume_elsewhere_cuts_uncommitted_lines() {
    use crate::trust_rejects_s3::{keys_under, put_part, rejects_named, stored_rejects};
    use ddb2pg::checkpoint::Storage;
    let client = crate::support::ddb().await;
    let table = unique("rejs3");
    crate::support::load_sample(&client, &table, 5, 40).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let work = tempdir("rejs3");
    let mapping = work.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"rejs3\"\nkey = [\"pk\", \"sk\"]\n[table.columns]\n\
         pk = { from = \"PK\", type = \"text\" }\nsk = { from = \"SK\", type = \"text\" }\n\
         x = { from = \"nope\", type = \"text\", required = true }\n",
    )
    .expect("mapping");
    let map = mapping.to_string_lossy().to_string();
    let extra = ["--mapping", map.as_str(), "--create-tables"];
    let shard_run = |shard: &str, more: &[&str]| {
        let mut e: Vec<&str> = extra.to_vec();
        e.extend(more);
        let args = shard_args(&table, &db, &dir, shard, &e);
        let out = command(&args)
            .current_dir(tempdir("rejs3-cwd"))
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for s in ["0/2", "1/2"] {
        let (code, err) = shard_run(s, &[]);
        assert_eq!(code, 4, "{err}");
    }
    let s3 = S3Dir::open(&dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir");
    let names = s3.list().expect("list");
    let rejects = [".shard-0-of-2.json", ".shard-1-of-2.json"].map(|s| rejects_named(&names, s));
    let count = |b: &[u8]| b.iter().filter(|&&b| b == b'\n').count();
    let mut total = 0;
    for r in &rejects {
        total += count(&stored_rejects(&dir, r).await);
    }
    assert_eq!(total, 40, "every item rejected once, in its shard's parts");
    let r0 = rejects[0].clone();
    let committed = stored_rejects(&dir, &r0).await;
    let cp0 = r0.replace(".rejects.jsonl", ".json");
    let (saved, _) = Checkpoint::load_from(&s3, &cp0)
        .expect("load")
        .expect("present");
    assert_eq!(saved.rejects_bytes, Some(committed.len() as u64));
    // What a kill -9 between uploading a page's reject lines and writing the checkpoint leaves.
    let folder = r0.replace(".jsonl", "/");
    let parts = keys_under(&dir, &folder).await.len() as u64;
    let uncommitted = b"{\"uncommitted\":1}\n".to_vec();
    put_part(&dir, &r0, parts + 1, uncommitted.into()).await;
    assert_eq!(stored_rejects(&dir, &r0).await.len(), committed.len() + 18);
    let (code, err) = shard_run("0/2", &[]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("removed") && err.contains(&dir), "{err}");
    assert_eq!(stored_rejects(&dir, &r0).await, committed);
    // --restart sets the stored rejects aside (kept, renamed) and rejects the items again.
    let (code, err) = shard_run("0/2", &["--restart"]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(stored_rejects(&dir, &r0).await.len(), committed.len());
    let stem = r0.trim_end_matches(".jsonl");
    let aside: std::collections::BTreeSet<String> = keys_under(&dir, &format!("{stem}."))
        .await
        .into_iter()
        .filter_map(|k| k.split('/').next().map(String::from))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?} {err}");
    assert_eq!(
        stored_rejects(
            &dir,
            &format!("{}.jsonl", aside.iter().next().expect("aside"))
        )
        .await,
        committed,
        "the earlier rejects kept whole"
    );
}
