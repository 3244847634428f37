//! The follower's verdict and `ddb2pg finish`, against DynamoDB Local's stream: an idle applied
//! table is caught up with lag 0 in the log, `status` (text and --json) and the checkpoint while
//! the follower keeps running; `ddb2pg finish` (or SIGUSR1) ends it with exit 0 and the verdict;
//! a stale request is not honoured; a rejected change makes exit 4 for the run that rejected it
//! only; `status --json` has one shape for one checkpoint and for several.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::StreamViewType;
use serde_json::Value;

use crate::stream::{count, create_table, line, mapping, migrations, order};
use crate::support::harness::{command, migrate_args, moto_s3, run, sample_table};
use crate::support::{
    ddb, delete_table, drop_database, new_database, put, signal, spawn_in, temp_dir, unique_name,
    Running,
};

/// `migrate --follow` of `table` with the example mapping, log lines on stderr.
pub(crate) fn follow_args(table: &str, db: &str, cp: &str, extra: &[&str]) -> Vec<String> {
    let mut a = migrate_args(table, db, Path::new(cp));
    let at = a.iter().position(|x| x == "none").expect("--progress none");
    a[at] = "log".into();
    let (map, migs) = (mapping(), migrations());
    a.extend(["--mapping", &map, "--migrations", &migs, "--follow"].map(String::from));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// `ddb2pg <args>` (with the moto endpoint for s3://): exit code, stdout, stderr.
pub(crate) fn ddb2pg(args: &[&str], cp: &str) -> (i32, String, String) {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.extend(["--checkpoint-dir".to_string(), cp.to_string()]);
    if cp.starts_with("s3://") {
        v.extend(["--s3-endpoint-url".to_string(), moto_s3().to_string()]);
    }
    let out = command(&v).output().expect("run ddb2pg");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `status --json`: the whole object.
fn status_json(cp: &str) -> Value {
    let (code, out, err) = ddb2pg(&["status", "--json"], cp);
    assert_eq!(code, 0, "status: {err}");
    serde_json::from_str(&out).expect("status --json is JSON")
}

/// The followed checkpoint's `stream` object in `status --json` (null while there is no
/// checkpoint yet).
pub(crate) fn follower(cp: &str) -> Value {
    let (code, out, err) = ddb2pg(&["status", "--json"], cp);
    if code != 0 {
        eprintln!("status: exit {code}: {err}");
        return Value::Null;
    }
    let v: Value = serde_json::from_str(&out).expect("status --json is JSON");
    v["checkpoints"][0]["stream"].clone()
}

/// Wait up to `secs` for `ready`, failing with `what` (and the run's stderr).
pub(crate) async fn wait_for(
    what: &str,
    secs: u64,
    r: &mut Running,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        let stderr = std::fs::read_to_string(&r.stderr_path).unwrap_or_default();
        assert!(!r.exited(), "the follower exited before {what}:\n{stderr}");
        assert!(
            Instant::now() < deadline,
            "not {what} in {secs} s:\n{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) async fn wait_exit(r: Running, secs: u64) -> crate::support::Outcome {
    tokio::time::timeout(Duration::from_secs(secs), r.wait())
        .await
        .unwrap_or_else(|_| panic!("the follower did not exit within {secs} s"))
}

/// A table with a NEW_AND_OLD_IMAGES stream and two orders; a new database.
pub(crate) async fn orders_table(prefix: &str) -> (String, String) {
    let client = ddb().await;
    let table = unique_name(prefix);
    create_table(&client, &table, Some(StreamViewType::NewAndOldImages)).await;
    for (user, id) in [("00000001", "keep-1"), ("00000002", "bad-2")] {
        let o = order(user, id, "NEW", vec![line("a", 1, "1.00")]);
        put(&client, &table, &o).await;
    }
    (table, new_database().await)
}

/// A follower of a new orders table (prefix `prefix`), caught up in `status`: the table, the
/// database, the checkpoint dir and the run.
pub(crate) async fn caught_up_follower(prefix: &str) -> (String, String, String, Running) {
    let (table, db) = orders_table(prefix).await;
    let dir = temp_dir(&table);
    let cp = dir.join("checkpoints").to_string_lossy().to_string();
    let mut r = spawn_in(&dir, &follow_args(&table, &db, &cp, &[]));
    wait_for("caught up", 90, &mut r, || {
        follower(&cp)["caught_up"] == true
    })
    .await;
    (table, db, cp, r)
}

/// The `.finish` request beside the only checkpoint of `dir`.
pub(crate) fn request_path(dir: &Path) -> PathBuf {
    checkpoint_path(dir).with_extension("finish")
}

/// The only checkpoint of `dir`.
pub(crate) fn checkpoint_path(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("checkpoint dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().to_string());
            n.is_some_and(|n| n.ends_with(".json") && !n.ends_with(".report.json"))
        })
        .expect("a checkpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_follower_is_caught_up_with_lag_zero_and_finish_ends_it_with_exit_0() {
    let (table, db) = orders_table("verdict").await;
    let dir = temp_dir(&table);
    let cp = dir.join("checkpoints").to_string_lossy().to_string();
    let mut r = spawn_in(&dir, &follow_args(&table, &db, &cp, &[]));
    wait_for("caught up in status", 90, &mut r, || {
        follower(&cp)["caught_up"] == true
    })
    .await;
    let first = follower(&cp);
    let saved = std::fs::read(checkpoint_path(Path::new(&cp))).expect("checkpoint");
    // Idle for a while: still caught up since the same moment, lag 0 (not growing), and the
    // checkpoint not written again (nothing changed: no write per tick).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let again = std::fs::read(checkpoint_path(Path::new(&cp))).expect("checkpoint");
    assert!(
        saved == again,
        "an idle follower wrote its checkpoint again"
    );
    let st = follower(&cp);
    assert_eq!(st["state"], "following", "{st}");
    assert_eq!(st["caught_up"], true, "{st}");
    assert_eq!(st["caught_up_since"], first["caught_up_since"], "{st}");
    assert_eq!(st["lag_s"].as_f64(), Some(0.0), "{st}");
    assert_eq!(st["shards_behind"], 0, "{st}");
    assert_eq!(st["rejected_since_load"], 0, "{st}");
    assert!(st["changes_inserted"].is_u64(), "{st}");
    // The text form speaks of the follower; the load is one line, its segments on request.
    let (code, text, err) = ddb2pg(&["status"], &cp);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("follower following now")
            && text.contains("verdict  caught up since")
            && text.contains("(lag 0.0 s)")
            && text.contains("rejects  0 since the load")
            && text.contains("segments done (complete)"),
        "{text}"
    );
    assert!(!text.contains("    segment "), "segments listed:\n{text}");
    let (_, listed, _) = ddb2pg(&["status", "--segments"], &cp);
    assert!(listed.contains("    segment "), "{listed}");
    // The log says when the load ended and the follow began, and the verdict.
    let log_path = r.stderr_path.clone();
    wait_for("a log line with the verdict", 20, &mut r, || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        log.contains("| caught up since ") && log.contains("| 0 rejected since the load")
    })
    .await;
    let log = std::fs::read_to_string(&r.stderr_path).unwrap_or_default();
    assert!(
        log.contains("ddb2pg: load done: ") && log.contains("; following the stream of "),
        "{log}"
    );
    assert!(!log.contains("finish requested"), "{log}");

    // `ddb2pg finish`: the follower exits 0 with its verdict and removes the request.
    let (code, _, err) = ddb2pg(&["finish", "--table", &table], &cp);
    assert_eq!(code, 0, "finish: {err}");
    let out = wait_exit(r, 60).await;
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("finish requested by ddb2pg finish (pid ")
            && out.stderr.contains(
                "caught up: lag 0.0 s, 0 shards behind, every change applied; no change \
                 rejected since the load"
            ),
        "{}",
        out.stderr
    );
    let f = out.report();
    assert_eq!(f["caught_up"], true, "{f}");
    assert!(f["caught_up_since"].is_string(), "{f}");
    assert_eq!(f["rejected_since_load"], 0, "{f}");
    assert!(!request_path(Path::new(&cp)).exists(), "the request stays");
    // Nothing runs now: a finish is refused.
    let (code, _, err) = ddb2pg(&["finish", "--table", &table], &cp);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no follower is running"), "{err}");
    assert_eq!(follower(&cp)["state"], "stopped");
    delete_table(&ddb().await, &table).await;
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_request_is_not_honoured_and_sigusr1_finishes() {
    let (table, db, cp, mut r) = caught_up_follower("verdictsig").await;
    // A request made before this run began (for an earlier one): removed, not honoured.
    let req = request_path(Path::new(&cp));
    std::fs::write(&req, r#"{"requested_at_ms":1000,"by":"pid 1 on old"}"#).expect("request");
    wait_for("the stale request removed", 20, &mut r, || !req.exists()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!r.exited(), "a stale request ended the follower");
    signal(r.pid(), "USR1");
    let out = wait_exit(r, 60).await;
    out.expect_code(0);
    assert!(
        out.stderr.contains("made before this run started")
            && out.stderr.contains("finish requested by SIGUSR1")
            && out.stderr.contains("caught up: lag 0.0 s"),
        "{}",
        out.stderr
    );
    delete_table(&ddb().await, &table).await;
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_change_exits_4_once_and_the_verdict_keeps_counting_it() {
    let (table, db) = orders_table("verdictrej").await;
    let dir = temp_dir(&table);
    let cp = dir.join("checkpoints").to_string_lossy().to_string();
    let args = follow_args(&table, &db, &cp, &["--until-caught-up"]);
    let first = run(&args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    // A line with qty 0: the example's CHECK refuses it.
    let client = ddb().await;
    let bad = order("00000002", "bad-2", "PAID", vec![line("z", 0, "9.00")]);
    put(&client, &table, &bad).await;
    let second = run(&args);
    assert_eq!(second.code, 4, "{}", second.stderr);
    assert!(
        second.stderr.contains("this run rejected 1")
            && second
                .stderr
                .contains("; 1 change rejected since the load (see "),
        "{}",
        second.stderr
    );
    assert_eq!(second.report["rejected_since_load"], 1);
    assert_eq!(second.report["caught_up"], true);
    // Nothing new: exit 0, and the verdict still counts the reject since the load.
    let third = run(&args);
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(
        third
            .stderr
            .contains("every change applied; 1 change rejected since the load (see "),
        "{}",
        third.stderr
    );
    assert_eq!(third.report["rejected_since_load"], 1);
    assert_eq!(follower(&cp)["rejected_since_load"], 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM orders WHERE order_id = 'keep-1'").await,
        1
    );
    delete_table(&client, &table).await;
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_has_one_shape_for_one_checkpoint_and_for_several() {
    let (a, b) = (sample_table(5).await, sample_table(5).await);
    let db = new_database().await;
    let dir = temp_dir("statusshape");
    let cp = dir.join("checkpoints");
    let cps = cp.to_string_lossy().to_string();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort();
        k
    };
    let one = run(&migrate_args(&a, &db, &cp));
    assert_eq!(one.code, 0, "{}", one.stderr);
    let v1 = status_json(&cps);
    assert_eq!(v1["checkpoints"].as_array().map(Vec::len), Some(1), "{v1}");
    assert_eq!(v1["migrations"].as_array().map(Vec::len), Some(0), "{v1}");
    let two = run(&migrate_args(&b, &db, &cp));
    assert_eq!(two.code, 0, "{}", two.stderr);
    let v2 = status_json(&cps);
    assert_eq!(v2["checkpoints"].as_array().map(Vec::len), Some(2), "{v2}");
    assert_eq!(keys(&v1), keys(&v2));
    assert_eq!(keys(&v1["checkpoints"][0]), keys(&v2["checkpoints"][1]));
    // `finish` on a checkpoint that does not follow: refused, exit 2.
    let (code, _, err) = ddb2pg(&["finish", "--table", &a], &cps);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not follow a stream"), "{err}");
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_finish_work_on_an_s3_checkpoint_dir() {
    let (table, db) = orders_table("verdicts3").await;
    let dir = temp_dir(&table);
    let cp = crate::shards::s3_checkpoint_dir().await;
    let mut args = follow_args(&table, &db, &cp, &[]);
    args.extend(["--s3-endpoint-url".to_string(), moto_s3().to_string()]);
    let mut r = spawn_in(&dir, &args);
    wait_for("caught up in an s3 status", 120, &mut r, || {
        follower(&cp)["caught_up"] == true
    })
    .await;
    let (code, text, err) = ddb2pg(&["status"], &cp);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("verdict  caught up since"), "{text}");
    let (code, _, err) = ddb2pg(&["finish", "--table", &table], &cp);
    assert_eq!(code, 0, "finish: {err}");
    let out = wait_exit(r, 60).await;
    out.expect_code(0);
    assert!(
        out.stderr.contains("finish requested by ddb2pg finish"),
        "{}",
        out.stderr
    );
    assert_eq!(follower(&cp)["state"], "stopped");
    delete_table(&ddb().await, &table).await;
    drop_database(&db).await;
}
