//! An s3:// checkpoint directory's lease and conditional writes, driven through the storage
//! itself against moto's S3: two `S3Dir`s on one prefix stand for two machines running one
//! shard, the first still believing it holds the lease (its clock behind the second's, or
//! paused between its lease check and its PUT), the second having taken the lock over; a
//! holder stopped past its lease; S3 objects too large to read whole; S3 errors as shown.

use std::path::Path;
use std::time::{Duration, Instant};

use ddb2pg::checkpoint::{Checkpoint, Names, S3Dir, Storage};

use crate::shards::{
    committed_in_s3, no_aws, s3_checkpoint_dir, shard_args, spawn_in, status_json, stderr_of,
};
use crate::support::harness::{
    command, default_mapping_differences, moto_s3, new_database, run, sample_table, tempdir,
};
use crate::support::{pg, signal};
use crate::trust_rejects_s3::{put_part, rejects_named, stored_rejects};

const LOCK: &str = "t.shard-0-of-2.lock";
const REJECTS: &str = "t.shard-0-of-2.rejects.jsonl";

fn open(dir: &str) -> S3Dir {
    S3Dir::open(dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir")
}

fn append(path: &Path, line: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open local rejects");
    f.write_all(line.as_bytes()).expect("append");
}

/// The lock `LOCK` replaced by a lease that ended long ago, as the second machine's clock
/// sees the first's lease (clocks apart by more than the lease).
async fn expire_lock(dir: &str) {
    put_lease(dir, LOCK, 2).await
}

/// The lock `name` replaced by a lease of another holder that expires at `expires_at`.
async fn put_lease(dir: &str, name: &str, expires_at: u64) {
    let (bucket, prefix) = ddb2pg::source::s3::parse(dir).expect("s3 url");
    let s3 = ddb2pg::source::s3::client(&no_aws(), &Some(moto_s3().to_string()))
        .await
        .expect("s3 client");
    let lease = serde_json::json!({
        "holder": "pid 1 on machine-a", "token": "a", "acquired_at": 1, "renewed_at": 1,
        "expires_at": expires_at, "lease_s": 60, "released": false
    });
    s3.put_object()
        .bucket(bucket)
        .key(format!("{prefix}/{name}"))
        .body(serde_json::to_vec(&lease).expect("json").into())
        .send()
        .await
        .expect("put lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holder_cannot_replace_the_new_holders_rejects() {
    let dir = s3_checkpoint_dir().await;
    let (a, b) = (open(&dir), open(&dir));
    let (local_a, local_b) = (
        tempdir("lease-a").join(REJECTS),
        tempdir("lease-b").join(REJECTS),
    );
    let _held_a = a.lock(LOCK, Duration::from_secs(60)).expect("a locks");
    a.fetch(REJECTS, &local_a, None).expect("a fetches");
    append(&local_a, "a1\n");
    a.publish(REJECTS, &local_a).expect("a publishes");

    expire_lock(&dir).await;
    let _held_b = b.lock(LOCK, Duration::from_secs(60)).expect("b takes over");
    b.fetch(REJECTS, &local_b, None).expect("b fetches");
    append(&local_b, "b1\n");
    b.publish(REJECTS, &local_b).expect("b publishes");

    // The first machine, its lease renewal not yet due, publishes its own copy.
    append(&local_a, "a2\n");
    let err = a
        .publish(REJECTS, &local_a)
        .expect_err("a stale holder's rejects must not replace the new holder's");
    assert!(err.to_string().contains("another process"), "{err}");
    assert_eq!(stored_rejects(&dir, REJECTS).await, b"a1\nb1\n");
}

/// Rows of the default mapping's table.
async fn rows(db: &str, table: &str) -> i64 {
    let t = ddb2pg::plan::default_table_name(table);
    pg(db)
        .await
        .query_one(&format!("SELECT count(*) FROM \"{t}\""), &[])
        .await
        .expect("count")
        .get(0)
}

/// Backends of `db` (other than the asking one) inside a statement or a transaction.
async fn busy_backends(db: &str) -> i64 {
    pg(db)
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND state <> 'idle'",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_lease_ran_out_writes_no_more_rows() {
    let n = 2000;
    let table = sample_table(n).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let s3 = open(&dir);
    let target_id = ddb2pg::pgconn::resolve(Some(&db))
        .expect("target")
        .identity();
    let names = Names::new(
        &table,
        &format!("arn:aws:dynamodb:ddblocal:000000000000:table/{table}"),
        &target_id,
        Some(ddb2pg::shard::Shard::parse("0/2").expect("shard")),
    );
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
    let holder = spawn_in(
        &shard_args(&table, &db, &dir, "0/2", &slow),
        &tempdir("lost-lease"),
    );
    let t0 = Instant::now();
    while committed_in_s3(&s3, &names.checkpoint) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(60), "never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stopped between two pages (none of its transactions open), so that every row it writes
    // from here on is written after it wakes.
    loop {
        signal(holder.id(), "STOP");
        if busy_backends(&db).await == 0 {
            break;
        }
        signal(holder.id(), "CONT");
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "never between pages"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let before = rows(&db, &table).await;
    // Its 3 s lease runs out while it is stopped, and another process takes the shard.
    std::thread::sleep(Duration::from_secs(4));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    put_lease(&dir, &names.lock, now + 3600).await;
    signal(holder.id(), "CONT");
    let (code, err) = stderr_of(holder);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not written"), "{err}");
    assert_eq!(
        rows(&db, &table).await,
        before,
        "a holder whose lease ran out kept writing rows to the target"
    );
}

/// `ddb2pg status --json ...`: its exit code and its JSON (or its stderr as a string).
fn status_of(args: &[String]) -> (i32, serde_json::Value) {
    let out = command(args).output().expect("status");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| String::from_utf8_lossy(&out.stderr).into());
    (out.status.code().unwrap_or(-1), json)
}

/// The largest resident size (bytes) of the children this test waited for so far.
fn children_max_rss() -> u64 {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut r) };
    assert_eq!(rc, 0, "getrusage");
    r.ru_maxrss as u64 * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_stored_rejects_file_is_fetched_and_counted_in_bounded_memory() {
    let table = sample_table(100).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let target_id = ddb2pg::pgconn::resolve(Some(&db))
        .expect("target")
        .identity();
    let names = Names::new(
        &table,
        &format!("arn:aws:dynamodb:ddblocal:000000000000:table/{table}"),
        &target_id,
        Some(ddb2pg::shard::Shard::parse("0/2").expect("shard")),
    );
    let args = shard_args(&table, &db, &dir, "0/2", &[]);
    let status = [
        "status",
        "--json",
        "--checkpoint-dir",
        &dir,
        "--s3-endpoint-url",
        moto_s3(),
    ]
    .map(String::from);
    let first = run(&args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(status_of(&status).0, 0);
    let baseline = children_max_rss();

    // 96 MiB of reject lines in S3 (a run that rejected many items).
    let lines: u64 = 96 * 1024;
    let line = format!("{{\"reason\":\"{}\"}}\n", "x".repeat(1024 - 14));
    assert_eq!(line.len(), 1024);
    // Written to a file and sent from it, so that this test process stays small: a child's
    // peak resident size counts its parent's at the fork.
    let file = tempdir("large-rejects").join("rejects.jsonl");
    {
        use std::io::Write as _;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        for _ in 0..lines {
            f.write_all(line.as_bytes()).expect("write");
        }
        f.flush().expect("flush");
    }
    let body = aws_sdk_s3::primitives::ByteStream::from_path(&file)
        .await
        .expect("body");
    put_part(&dir, &names.rejects, 1, body).await;
    // Counted by the checkpoint as committed (else the resume cuts them).
    let s3 = open(&dir);
    let (mut cp, tag) = Checkpoint::load_from(&s3, &names.checkpoint)
        .expect("load")
        .expect("present");
    cp.rejects_bytes = Some(lines * 1024);
    s3.write(&names.checkpoint, &cp.encode().expect("encode"), &tag)
        .expect("checkpoint");

    // A run of the shard on this machine fetches it (and removes its copy when it ends);
    // status counts its lines.
    let again = run(&args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let local = s3.local_dir().expect("local dir").join(&names.rejects);
    assert!(!local.exists(), "the local copy is removed");
    assert_eq!(s3.lines(&names.rejects).expect("lines"), Some(lines));
    let (code, json) = status_of(&status);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["checkpoints"][0]["rejects_lines"], lines, "{json}");
    let grown = children_max_rss().saturating_sub(baseline);
    assert!(
        grown < 32 << 20,
        "a 96 MiB rejects object grew ddb2pg's resident size by {} MiB",
        grown >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_lock_object_is_refused_unread() {
    let dir = s3_checkpoint_dir().await;
    let (bucket, prefix) = ddb2pg::source::s3::parse(&dir).expect("s3 url");
    ddb2pg::source::s3::client(&no_aws(), &Some(moto_s3().to_string()))
        .await
        .expect("s3 client")
        .put_object()
        .bucket(bucket)
        .key(format!("{prefix}/{LOCK}"))
        .body(vec![b'{'; 1 << 20].into())
        .send()
        .await
        .expect("put");
    let err = open(&dir)
        .lock(LOCK, Duration::from_secs(60))
        .expect_err("not a lock")
        .to_string();
    assert!(
        err.contains("larger than 65536 bytes") && err.contains(LOCK),
        "{err}"
    );
}

#[test]
fn an_s3_checkpoint_dir_without_a_region_is_an_error_not_a_panic() {
    // No region anywhere (and no local endpoint, which implies one): the S3 client cannot be made. The runtime built for it used to be
    // dropped inside the async caller: a panic (exit 101) instead of the message.
    let out = command(&[
        "status".into(),
        "--checkpoint-dir".into(),
        "s3://bucket/prefix".into(),
    ])
    .env_remove("AWS_REGION")
    .env_remove("AWS_DEFAULT_REGION")
    .env_remove("AWS_PROFILE")
    .env("AWS_CONFIG_FILE", "/dev/null")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    .output()
    .expect("status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ddb2pg: error: no AWS region") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn an_s3_checkpoint_dir_error_names_s3_not_dynamodb() {
    let out = command(&[
        "status".into(),
        "--checkpoint-dir".into(),
        "s3://ddb2pg-no-such-bucket/prefix".into(),
        "--s3-endpoint-url".into(),
        moto_s3().into(),
    ])
    .output()
    .expect("status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ddb2pg: error: S3: list s3://ddb2pg-no-such-bucket/prefix: NoSuchBucket")
            && !err.contains("DynamoDB"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_is_taken_over_and_then_writes_nothing() {
    let n = 2000;
    let table = sample_table(n).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let s3 = S3Dir::open(&dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir");
    let target_id = ddb2pg::pgconn::resolve(Some(&db))
        .expect("target")
        .identity();
    let names = Names::new(
        &table,
        &format!("arn:aws:dynamodb:ddblocal:000000000000:table/{table}"),
        &target_id,
        Some(ddb2pg::shard::Shard::parse("0/2").expect("shard")),
    );
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
    let paused = spawn_in(
        &shard_args(&table, &db, &dir, "0/2", &slow),
        &tempdir("paused"),
    );
    let t0 = Instant::now();
    while committed_in_s3(&s3, &names.checkpoint) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(60), "never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(paused.id(), "STOP");
    std::thread::sleep(Duration::from_secs(4));
    // Its lease ran out while it was stopped: another process takes the shard and finishes it.
    let other = run(&shard_args(
        &table,
        &db,
        &dir,
        "0/2",
        &["--lock-lease", "3"],
    ));
    assert_eq!(other.code, 0, "{}", other.stderr);
    assert!(
        other.stderr.contains("taking over the lock"),
        "{}",
        other.stderr
    );
    let (done, _) = Checkpoint::load_from(&s3, &names.checkpoint)
        .expect("load")
        .expect("present");
    assert!(done.complete);
    // Woken, the old holder writes nothing more: it stops with exit 1 and says why.
    signal(paused.id(), "CONT");
    let (code, err) = stderr_of(paused);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not written") || err.contains("changed by another process"),
        "{err}"
    );
    let (after, _) = Checkpoint::load_from(&s3, &names.checkpoint)
        .expect("load")
        .expect("present");
    assert_eq!(
        after, done,
        "the stale holder overwrote the new holder's checkpoint"
    );
    let r = run(&shard_args(&table, &db, &dir, "1/2", &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(default_mapping_differences(&db, &table, n).await, (0, 0));
    assert_eq!(status_json(&dir)["migrations"][0]["items"], n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_does_not_call_shards_complete_that_disagree_on_the_segment_total() {
    let table = sample_table(50).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let r = run(&shard_args(&table, &db, &dir, "0/2", &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Shard 1/2 done over 16 segments (started at the same moment as shard 0 with another
    // --segments, before either had a checkpoint to compare with): segments 9, 11, 13, 15 of
    // 16 cover keys that 8 segments split otherwise, and keys of 0..8's odd half are unread.
    let s3 = open(&dir);
    let first = s3
        .list()
        .expect("list")
        .into_iter()
        .find(|n| n.ends_with(".shard-0-of-2.json"))
        .expect("shard 0's checkpoint");
    let (cp0, _) = Checkpoint::load_from(&s3, &first)
        .expect("load")
        .expect("present");
    let mut settings = cp0.settings.clone();
    settings.segments = 16;
    settings.shard = Some(ddb2pg::shard::Shard::parse("1/2").expect("shard"));
    let mut cp1 = Checkpoint::new(settings);
    for i in cp1.owned() {
        cp1.segments[i as usize].done = true;
    }
    cp1.complete = true;
    let name = first.replace(".shard-0-of-2.json", ".shard-1-of-2.json");
    s3.write(
        &name,
        &cp1.encode().expect("encode"),
        &ddb2pg::checkpoint::Tag::Absent,
    )
    .expect("write shard 1");
    let st = status_json(&dir);
    let m = &st["migrations"][0];
    assert_eq!(m["shards_done"], 2, "{m}");
    assert_eq!(m["complete"], false, "{m}");
    assert!(
        m["problem"]
            .as_str()
            .is_some_and(|p| p.contains("segment total") && p.contains("8") && p.contains("16")),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_lines_uploaded_before_a_first_checkpoint_are_not_kept_twice() {
    let client = crate::support::ddb().await;
    let table = crate::support::harness::unique("rejfirst");
    crate::support::load_sample(&client, &table, 5, 40).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let work = tempdir("rejfirst");
    let mapping = work.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"rejfirst\"\nkey = [\"pk\", \"sk\"]\n[table.columns]\n\
         pk = { from = \"PK\", type = \"text\" }\nsk = { from = \"SK\", type = \"text\" }\n\
         x = { from = \"nope\", type = \"text\", required = true }\n",
    )
    .expect("mapping");
    let map = mapping.to_string_lossy().to_string();
    let args = shard_args(
        &table,
        &db,
        &dir,
        "0/2",
        &["--mapping", &map, "--create-tables"],
    );
    let first = run(&args);
    assert_eq!(first.code, 4, "{}", first.stderr);
    let s3 = open(&dir);
    let rejects = rejects_named(&s3.list().expect("list"), ".shard-0-of-2.json");
    let checkpoint = rejects.replace(".rejects.jsonl", ".json");
    let all = stored_rejects(&dir, &rejects).await;
    let count = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count();
    let committed = count(&all);
    assert!(committed > 1, "{committed}");
    // What a kill -9 leaves between uploading the first rejecting page's lines and writing
    // the checkpoint that counts them: the run's first checkpoint, and those lines in S3.
    let (done, tag) = Checkpoint::load_from(&s3, &checkpoint)
        .expect("load")
        .expect("present");
    let mut fresh = Checkpoint::new(done.settings.clone());
    s3.write(&checkpoint, &fresh.encode().expect("encode"), &tag)
        .expect("checkpoint");
    let copy = tempdir("rejfirst-copy").join("r.jsonl");
    s3.rename(&rejects, "aside.rejects.jsonl")
        .expect("set aside");
    let first_line = all.split_inclusive(|&c| c == b'\n').next().expect("a line");
    put_part(&dir, &rejects, 1, first_line.to_vec().into()).await;
    s3.fetch(&rejects, &copy, None).expect("fetch");
    assert_eq!(std::fs::read(&copy).expect("copy"), first_line);
    // The resume reads every item again and rejects each once more: each line once in all.
    let again = run(&args);
    assert_eq!(again.code, 4, "{}", again.stderr);
    let after = stored_rejects(&dir, &rejects).await;
    assert_eq!(count(&after), committed, "{}", again.stderr);
}
