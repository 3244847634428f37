//! What ddb2pg reads from places others can write (a checkpoint folder or an s3:// prefix, its
//! lock, a stream record) is checked before it is used, and the run's lock is held before the
//! target is touched: crafted checkpoints and locks end with a clear message and exit 2 (never
//! a panic, an endless loop, or a wait without end), names from outside are printed with their
//! control characters escaped, `--lock-wait` is bounded, and a stream value of an unknown type
//! is rejected with the reason. `verify`'s part is in `trust_verify.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ddb2pg::checkpoint::{Checkpoint, Lock, S3Dir, Settings, Storage};
use ddb2pg::shard::Shard;

use super::follow_scale::{create_stream_table, put_ver};
use crate::shards::{no_aws, s3_checkpoint_dir};
use crate::support::harness::{migrate_args, moto_s3, sample_table};
use crate::support::stream_double::{synthetic, Config, StreamDouble};
use crate::support::{
    ddb, ddb2pg_command, new_database, pg, services, temp_dir, unique_name, Migration,
};

const ESC: char = '\u{1b}';

/// A holder name that would recolour a terminal and start a new line.
const HOSTILE_HOLDER: &str = "pid 1 on evil\u{1b}[31m\u{1b}]0;owned\u{7}\nddb2pg: all good";

/// `ddb2pg status <args>`, killed if it runs longer than `limit`: (exit code, stdout, stderr,
/// how long it ran). A run killed for its time has code None.
fn status(args: &[&str], limit: Duration) -> (Option<i32>, String, String, Duration) {
    let dir = temp_dir("status-out");
    let (out, err) = (dir.join("out"), dir.join("err"));
    let mut child = ddb2pg_command()
        .arg("status")
        .args(args)
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn ddb2pg status");
    let t0 = Instant::now();
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into();
    (code, read(&out), read(&err), t0.elapsed())
}

/// What a run in `cwd` did: exit code, stderr, report.
pub(crate) struct Ran {
    pub(crate) code: Option<i32>,
    pub(crate) stderr: String,
    pub(crate) report: Option<serde_json::Value>,
}

/// `ddb2pg <args> --report <cwd>/report.json` run to its end with `cwd` as working directory.
pub(crate) fn run_at(cwd: &Path, args: &[String]) -> Ran {
    let report = cwd.join("report.json");
    let _ = std::fs::remove_file(&report);
    let out = ddb2pg_command()
        .current_dir(cwd)
        .args(args)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run ddb2pg");
    Ran {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: std::fs::read(&report)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
    }
}

/// A checkpoint with these settings, written (with a valid checksum) as `dir/name`.
fn craft_checkpoint(dir: &Path, name: &str, shard: Option<Shard>) -> PathBuf {
    let mut cp = Checkpoint::new(Settings {
        source: "arn:aws:dynamodb:us-east-1:1:table/t".into(),
        target: "postgres://u@h:5432/d".into(),
        mapping: "default".into(),
        segments: 4,
        shard,
    });
    let path = dir.join(name);
    cp.save(&path).expect("write the crafted checkpoint");
    path
}

#[test]
fn status_refuses_a_checkpoint_of_zero_shards_with_a_message_not_a_panic() {
    let dir = temp_dir("zero-shards");
    let path = craft_checkpoint(
        &dir,
        "t-0123456789ab.json",
        Some(Shard { index: 0, count: 0 }),
    );
    let d = dir.to_string_lossy().to_string();
    let (code, out, err, _) = status(&["--checkpoint-dir", &d], Duration::from_secs(20));
    assert!(!err.contains("panicked"), "status panicked:\n{err}");
    assert_eq!(code, Some(2), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(&path.display().to_string()) && err.contains("shard"),
        "the message names the file and what is wrong with it:\n{err}"
    );
    // The same refusal for the file given on its own, and as JSON.
    let (code, _, err, _) = status(
        &["--json", "--checkpoint-dir", &path.to_string_lossy()],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn status_is_not_driven_by_a_shard_count_in_a_file_name() {
    // The count read from a name (and a checkpoint that agrees with it) must not make status
    // loop over every shard up to it.
    for (name, shard) in [
        (
            "t-0123456789ab.shard-0-of-4294967295.json",
            Some(Shard {
                index: 0,
                count: u32::MAX,
            }),
        ),
        ("t-0123456789ab.shard-0-of-400000.json", None),
    ] {
        let dir = temp_dir("many-shards");
        craft_checkpoint(&dir, name, shard);
        let d = dir.to_string_lossy().to_string();
        let (code, out, err, took) = status(&["--checkpoint-dir", &d], Duration::from_secs(8));
        assert!(
            code.is_some(),
            "{name}: status still running after {took:?} (killed)"
        );
        assert!(
            took < Duration::from_secs(5),
            "{name}: status took {took:?}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
        match shard {
            // A count past the shards ddb2pg runs: refused, naming the file.
            Some(_) => {
                assert_eq!(code, Some(2), "{name}: {out}{err}");
                assert!(err.contains(name) && err.contains("shard"), "{err}");
            }
            None => assert_eq!(code, Some(0), "{name}: {out}{err}"),
        }
    }
}

/// The one `*.lock` object under the s3:// folder `dir`.
fn lock_name(dir: &S3Dir) -> String {
    let locks: Vec<String> = dir
        .list()
        .expect("list the prefix")
        .into_iter()
        .filter(|n| n.ends_with(".lock"))
        .collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    locks[0].clone()
}

/// Replace the lock object `name` under `dir` with a lease of `holder` until `expires_at`.
async fn put_lease(dir: &str, name: &str, holder: &str, expires_at: u64) {
    let (bucket, prefix) = ddb2pg::source::s3::parse(dir).expect("s3 url");
    let s3 = ddb2pg::source::s3::client(&no_aws(), &Some(moto_s3().to_string()))
        .await
        .expect("s3 client");
    let lease = serde_json::json!({
        "holder": holder, "token": "a", "acquired_at": 1, "renewed_at": 1,
        "expires_at": expires_at, "lease_s": 60, "released": false
    });
    s3.put_object()
        .bucket(bucket)
        .key(format!("{prefix}/{name}"))
        .body(serde_json::to_vec(&lease).expect("json").into())
        .send()
        .await
        .expect("put the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_longer_than_ddb2pg_grants_is_refused_and_its_holder_escaped() {
    let table = sample_table(50).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let cwd = temp_dir("hostile-lease");
    let mut args = migrate_args(&table, &db, Path::new(&dir));
    args.extend(["--s3-endpoint-url".to_string(), moto_s3().to_string()]);
    let first = run_at(&cwd, &args);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let storage = S3Dir::open(&dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir");
    let lock = lock_name(&storage);
    put_lease(&dir, &lock, HOSTILE_HOLDER, u64::MAX - 10).await;

    let mut waiting = args.clone();
    waiting.extend(["--lock-wait".to_string(), "30".to_string()]);
    let t0 = Instant::now();
    let out = run_at(&cwd, &waiting);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "a lock no ddb2pg could have written is not waited for ({:?})",
        t0.elapsed()
    );
    let err = &out.stderr;
    assert!(!err.contains(ESC), "a raw escape sequence printed:\n{err}");
    assert!(!err.contains("owned\u{7}"), "a raw BEL printed:\n{err}");
    assert!(
        err.contains(&storage.show(&lock)),
        "names the lock object:\n{err}"
    );
    assert!(
        err.contains("3600") && err.contains("delete"),
        "says the lease is longer than any ddb2pg grants, and what to do:\n{err}"
    );
    assert!(err.contains(r"\u{1b}"), "the holder, escaped:\n{err}");

    // status: no raw escapes either, and the lock is not taken for a live run's.
    let (code, text, serr, _) = status(
        &["--checkpoint-dir", &dir, "--s3-endpoint-url", moto_s3()],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{text}{serr}");
    assert!(!text.contains(ESC) && !serr.contains(ESC), "{text}{serr}");
    assert!(!text.contains("running now"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_lock_holder_name_is_printed_escaped() {
    let table = sample_table(20).await;
    let db = new_database().await;
    let m = Migration::new(&table, &db);
    m.run(&[]).await.expect_code(0);
    let lock = m.sibling(".lock");
    // A run of another host (taken as alive by status), its name crafted.
    std::fs::write(&lock, HOSTILE_HOLDER.replace("evil", "elsewhere-host")).expect("craft");
    let d = m.checkpoint_dir.to_string_lossy().to_string();
    let (code, text, serr, _) = status(&["--checkpoint-dir", &d], Duration::from_secs(20));
    assert_eq!(code, Some(0), "{text}{serr}");
    assert!(text.contains("running now"), "{text}");
    assert!(!text.contains(ESC) && !text.contains('\u{7}'), "{text}");
    assert!(
        !text.contains("\nddb2pg: all good"),
        "a holder's line break:\n{text}"
    );
    // A run taking over the lock left by a dead one names the previous holder: escaped.
    let out = m.run(&[]).await;
    out.expect_code(0);
    assert!(out.stderr.contains("taking over"), "{}", out.stderr);
    assert!(!out.stderr.contains(ESC), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_wait_past_its_bound_is_refused_at_the_start() {
    let table = sample_table(10).await;
    let db = new_database().await;
    let m = Migration::new(&table, &db);
    let out = m.run(&["--lock-wait", "18446744073709551615"]).await;
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out.expect_code(2);
    assert!(
        out.stderr.contains("--lock-wait") && out.stderr.contains("86400"),
        "names the flag and its bound:\n{}",
        out.stderr
    );
    assert!(
        m.checkpoint_path().is_none(),
        "refused before anything is written"
    );
    // The bound itself is accepted.
    m.run(&["--lock-wait", "86400"]).await.expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_migrate_takes_the_lock_before_it_touches_the_target() {
    let table = sample_table(20).await;
    let db = new_database().await;
    let m = Migration::new(&table, &db);
    m.run(&[]).await.expect_code(0);
    let migrations = m.dir.join("migrations");
    std::fs::create_dir_all(&migrations).expect("migrations dir");
    std::fs::write(
        migrations.join("001_made.sql"),
        "CREATE TABLE made_by_migration (id int);",
    )
    .expect("a migration");

    // A live run (a follower) holds the checkpoint's lock.
    let held = Lock::acquire(&m.sibling(".lock")).expect("hold the run's lock");
    let mig = migrations.to_string_lossy().to_string();
    let out = m.run(&["--migrations", &mig]).await;
    out.expect_code(2);
    let me = format!("pid {}", std::process::id());
    assert!(
        out.stderr.contains(&me),
        "names the holder:\n{}",
        out.stderr
    );
    let c = pg(&db).await;
    let present: Vec<Option<String>> = c
        .query(
            "SELECT to_regclass('made_by_migration')::text \
             UNION ALL SELECT to_regclass($1)::text",
            &[&ddb2pg::migrations::TABLE],
        )
        .await
        .expect("look the tables up")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        present,
        vec![None, None],
        "the migrations were applied before the lock was taken; stderr:\n{}",
        out.stderr
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_value_of_an_unknown_type_is_rejected_with_the_reason() {
    let client = ddb().await;
    let table = unique_name("unknowntype");
    create_stream_table(&client, &table).await;
    put_ver(&client, &table, "k0", 1).await;
    let arn = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe")
        .table
        .and_then(|t| t.latest_stream_arn)
        .expect("a stream");
    let double = StreamDouble::start(
        &services().endpoint,
        Config {
            stream_arn: Some(arn),
            shards: 1,
            ..Config::default()
        },
    )
    .expect("start the double");
    // An INSERT whose new image holds a value of a type this ddb2pg does not know.
    let mut odd = synthetic::record("u1", 1, None, false, synthetic::now_ms());
    odd["dynamodb"]["NewImage"]["odd"] = serde_json::json!({"QQ": "from the future"});
    let good = synthetic::record("u2", 1, None, false, synthetic::now_ms());
    double.inject(vec![odd, good]);

    let db = new_database().await;
    let mut m = Migration::new(&table, &db);
    m.endpoint = double.url();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        m.run(&["--follow", "--until-caught-up"]),
    )
    .await
    .expect("caught up within 120 s");
    let c = pg(&db).await;
    let rows: Vec<(String, String)> = c
        .query(
            &format!("SELECT pk, item::text FROM {} ORDER BY pk", m.pg_table()),
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        rows.iter().all(|(pk, _)| pk != "u1"),
        "the change with an unknown type was written: {rows:?}\n{}",
        out.stderr
    );
    assert!(rows.iter().any(|(pk, _)| pk == "u2"), "{rows:?}");
    out.expect_code(4);
    let lines = std::fs::read_to_string(m.sibling(".rejects.jsonl")).expect("rejects file");
    let line: serde_json::Value = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .find(|l: &serde_json::Value| l["key"]["pk"]["S"] == "u1")
        .unwrap_or_else(|| panic!("no reject line of u1:\n{lines}"));
    let reason = line["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("unsupported attribute type") && reason.contains("odd"),
        "{line}"
    );
}

#[test]
fn status_lists_every_checkpoint_beside_one_it_cannot_read() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = temp_dir("status-junk");
    let good = "t-0123456789ab.json";
    craft_checkpoint(&dir, good, None);
    std::fs::write(dir.join("junk.json"), "{}").expect("junk");
    let d = dir.to_string_lossy().to_string();
    for json in [false, true] {
        let mut args = vec!["--checkpoint-dir", d.as_str()];
        if json {
            args.push("--json");
        }
        let (code, out, err, _) = status(&args, Duration::from_secs(20));
        assert!(!err.contains("panicked"), "{err}");
        // Exit 2 (a damaged checkpoint), once every checkpoint is listed.
        assert_eq!(code, Some(2), "json {json}: {out}{err}");
        assert!(out.contains(good), "the readable one is listed:\n{out}");
        assert!(out.contains("junk.json"), "the bad one is listed:\n{out}");
        assert!(err.contains("junk.json"), "and named on stderr:\n{err}");
        assert!(
            !out.contains("--restart") && !err.contains("--restart"),
            "no advice status cannot take:\n{out}{err}"
        );
        if json {
            let v: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
            let all = v["checkpoints"]
                .as_array()
                .expect("an array of checkpoints");
            assert_eq!(all.len(), 2, "{v}");
            let bad = all
                .iter()
                .find(|c| {
                    c["checkpoint"]
                        .as_str()
                        .is_some_and(|s| s.ends_with("/junk.json"))
                })
                .expect("junk entry");
            assert!(bad["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        }
    }
    // A name that is not UTF-8 is not read (ddb2pg never writes one): the rest is listed.
    std::fs::remove_file(dir.join("junk.json")).expect("rm junk");
    let odd = dir.join(std::ffi::OsStr::from_bytes(b"x\xff.json"));
    std::fs::write(&odd, "").expect("odd name");
    let (code, out, err, _) = status(&["--checkpoint-dir", &d], Duration::from_secs(20));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(good), "{out}");
}

/// Two `verify` pods on one database are each PID 1: a verify must not drop a scratch table
/// another one (of the same PID) is comparing in.
#[test]
fn status_lists_a_migration_of_100000_shards_quickly() {
    let dir = temp_dir("status-100k");
    let name = "t-0123456789ab.shard-7-of-100000.json";
    craft_checkpoint(
        &dir,
        name,
        Some(Shard {
            index: 7,
            count: 100_000,
        }),
    );
    let d = dir.to_string_lossy().to_string();
    let (code, out, err, took) =
        status(&["--json", "--checkpoint-dir", &d], Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    assert!(took < Duration::from_secs(10), "status took {took:?}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    let m = &v["migrations"][0];
    assert_eq!(m["shards_total"], 100_000, "{m}");
    assert_eq!(m["shards_not_started"], 99_999);
    assert_eq!(m["shards"].as_array().map(Vec::len), Some(100_000));
    eprintln!("status of 100,000 shards: {took:?}");
}
