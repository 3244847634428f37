//! Running the ddb2pg binary and checking its results, for the suite's tests; the services,
//! names, databases and clients come from the parent module.

pub use super::{ddb, new_database, pg, services, temp_dir as tempdir, unique_name as unique};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A fresh database on `server_url`'s server (not the shared one); returns its URL.
pub async fn new_database_on(server_url: &str) -> String {
    let name = unique("db");
    pg(server_url)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    super::with_database(server_url, &name)
}

/// A sample table of `n` items (seed 1); returns its name.
pub async fn sample_table(n: u64) -> String {
    let table = unique("t");
    ddb2pg::sample::load(&ddb().await, &table, 1, n)
        .await
        .expect("load sample");
    table
}

pub struct Run {
    pub code: i32,
    pub stderr: String,
    pub report: serde_json::Value,
}

/// The usual `migrate` arguments against the test services.
pub fn migrate_args(table: &str, target: &str, checkpoints: &Path) -> Vec<String> {
    [
        "migrate",
        "--table",
        table,
        "--target",
        target,
        "--endpoint-url",
        &services().endpoint,
        "--checkpoint-dir",
        &checkpoints.to_string_lossy(),
        "--progress",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The binary with `args`, in the suite's clean environment (`super::ddb2pg_command`).
pub fn command(args: &[String]) -> Command {
    let mut c = super::ddb2pg_command();
    c.args(args);
    c
}

/// Run to the end; the report is read from a fresh --report file.
pub fn run(args: &[String]) -> Run {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempdir("runs"));
    let out = super::run_in(dir, args);
    Run {
        code: out.code.unwrap_or(-1),
        stderr: out.stderr,
        report: out.report.unwrap_or(serde_json::Value::Null),
    }
}

/// Start in the background.
pub fn spawn(args: &[String]) -> Child {
    command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ddb2pg")
}

/// Items committed so far according to the checkpoint in `dir` (0 while there is none).
pub fn committed_items(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            if let Ok(Some(cp)) = ddb2pg::checkpoint::Checkpoint::load(&p) {
                return cp.segments.iter().map(|s| s.items).sum();
            }
        }
    }
    0
}

/// The checkpoint in `dir` (must be there and valid).
pub fn read_checkpoint(dir: &Path) -> ddb2pg::checkpoint::Checkpoint {
    std::fs::read_dir(dir)
        .expect("checkpoint dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .find_map(|p| ddb2pg::checkpoint::Checkpoint::load(&p).ok().flatten())
        .unwrap_or_else(|| panic!("no valid checkpoint in {}", dir.display()))
}

/// Wait until the checkpoint in `dir` claims at least `n` items (or the child exits).
pub fn wait_for_items(child: &mut Child, dir: &Path, n: u64) {
    let t0 = Instant::now();
    while committed_items(dir) < n && t0.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every line of every rejects file (`*.rejects.jsonl`) in checkpoint directory `dir`.
pub fn rejects_in(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(dir)
        .expect("checkpoint dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".rejects.jsonl"))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .expect("read rejects")
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Wait until the checkpoint in `dir` claims at least `n` items, with the child still running,
/// and return that count: the proof that what the test does next lands mid-work. Panics when the
/// child exits first (with its stderr, if piped) or after 120 s.
pub fn wait_until_committed(child: &mut Child, dir: &Path, n: u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let c = committed_items(dir);
        if c >= n {
            return c;
        }
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the run ended ({st:?}) at {c} committed items, before {n}:\n{err}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the checkpoint never reached {n} items (at {c})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Assert that `status` is that of a process ended by SIGKILL, not one that exited.
pub fn assert_killed_by_9(status: std::process::ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        (status.code(), status.signal()),
        (None, Some(9)),
        "the run was to be ended by kill -9, it ended with {status:?}"
    );
}

/// How many of items 0..n of the sample (seed 1) are NOT in `table` of `db` exactly as the
/// default mapping writes them (jsonb equality, so PostgreSQL compares), plus the rows the
/// table has beyond them.
pub async fn default_mapping_differences(db: &str, table: &str, n: u64) -> (i64, i64) {
    let mut pks = Vec::new();
    let mut sks = Vec::new();
    let mut docs = Vec::new();
    for i in 0..n {
        let item = ddb2pg::sample::item(1, i);
        let key = |k: &str| match item.get(k) {
            Some(aws_sdk_dynamodb::types::AttributeValue::S(v)) => v.clone(),
            other => panic!("{k}: {other:?}"),
        };
        pks.push(key("PK"));
        sks.push(key("SK"));
        docs.push(super::json::doc(&item));
    }
    let c = pg(db).await;
    let t = ddb2pg::plan::default_table_name(table);
    let missing: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM unnest($1::text[], $2::text[], $3::text[]) e(pk, sk, doc) \
                 WHERE NOT EXISTS (SELECT 1 FROM \"{t}\" a WHERE a.\"PK\" = e.pk AND a.\"SK\" = e.sk \
                 AND a.item = e.doc::jsonb)"
            ),
            &[&pks, &sks, &docs],
        )
        .await
        .expect("compare")
        .get(0);
    let total: i64 = c
        .query_one(&format!("SELECT count(*) FROM \"{t}\""), &[])
        .await
        .expect("count")
        .get(0);
    (missing, total - (n as i64 - missing))
}

/// moto's S3 server on a free loopback port (started once; it exits with this process).
pub fn moto_s3() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let script = format!(
            "python3 -m moto.server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
             while kill -0 {} 2>/dev/null; do sleep 1; done; kill $m",
            std::process::id()
        );
        // The watchdog shell outlives this call on purpose: it stops moto when we exit.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (scripts/setup.sh installs moto[server])");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("http://127.0.0.1:{port}")
    })
}
