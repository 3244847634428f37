//! Running the binary: the one clean command (`ddb2pg_command`), a run's `Outcome`, a
//! `Running` child, and `Migration`, one test's `migrate` invocation with its checkpoint files.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ddb2pg::checkpoint::Checkpoint;
use serde_json::Value;

use super::{services, temp_dir};

/// What one run of the binary did.
#[derive(Debug)]
pub struct Outcome {
    /// None when killed by a signal.
    pub code: Option<i32>,
    /// The signal that ended the run, when one did.
    pub signal: Option<i32>,
    pub stderr: String,
    /// The `--report` JSON, when the run wrote one.
    pub report: Option<Value>,
}

impl Outcome {
    /// The report, or a panic that shows stderr.
    pub fn report(&self) -> &Value {
        self.report
            .as_ref()
            .unwrap_or_else(|| panic!("no report written; stderr:\n{}", self.stderr))
    }

    /// A numeric field of the report.
    pub fn num(&self, field: &str) -> u64 {
        self.report()[field]
            .as_u64()
            .unwrap_or_else(|| panic!("report field {field}: {}", self.report()))
    }

    pub fn status(&self) -> &str {
        self.report()["status"]
            .as_str()
            .unwrap_or_else(|| panic!("report status: {}", self.report()))
    }

    /// Assert that a SIGKILL ended the run (it did not exit on its own first), that it wrote
    /// no report, and return the report-less outcome.
    pub fn expect_killed_by_9(&self) -> &Self {
        assert_eq!(
            (self.code, self.signal),
            (None, Some(9)),
            "the run was to be ended by SIGKILL; stderr:\n{}",
            self.stderr
        );
        assert!(self.report.is_none(), "a killed run writes no report");
        self
    }

    /// Assert the exit code, showing stderr when it differs.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code; stderr:\n{}\nreport: {:?}",
            self.stderr,
            self.report
        );
        self
    }
}

/// Variables of the caller's environment that would change what the binary does; every `PG*`
/// variable (libpq's) goes too.
const CLEARED_VARS: &[&str] = &[
    "DATABASE_URL",
    "RUST_LOG",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_S3",
    "DDB2PG_NO_DIRECT_COPY",
];

/// The one way the suite starts the binary: nothing of the caller's PostgreSQL (`DATABASE_URL`,
/// `PG*`), endpoint, log or write-path environment reaches it, `NO_COLOR` is set and stdin is
/// empty. A test that wants a variable sets it on the command.
pub fn ddb2pg_command() -> Command {
    let mut c = Command::new(ddb2pg_exe());
    clean_env(&mut c);
    c
}

/// The binary under test: this tree's, or `DDB2PG_TEST_BINARY` (to show that a new test
/// fails on an older build).
pub fn ddb2pg_exe() -> &'static str {
    static EXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        std::env::var("DDB2PG_TEST_BINARY")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_ddb2pg").into())
    })
}

/// The environment of [`ddb2pg_command`], on any command (a shell that runs the binary).
pub fn clean_env(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            c.env_remove(&k);
        }
    }
    for k in CLEARED_VARS {
        c.env_remove(k);
    }
    c.env("NO_COLOR", "1").stdin(Stdio::null());
}

/// Run `ddb2pg <args> --report <fresh file in dir>` to its end.
pub fn run_in(dir: &Path, args: &[String]) -> Outcome {
    let Running {
        mut child,
        report_path,
        stderr_path,
    } = spawn_in(dir, args);
    let status = child.wait().expect("wait for ddb2pg");
    collect(status, &stderr_path, &report_path)
}

/// Start `ddb2pg <args> --report <fresh file in dir>`, stderr to a file in `dir`.
pub fn spawn_in(dir: &Path, args: &[String]) -> Running {
    let k = REPORTS.fetch_add(1, Ordering::Relaxed);
    let report_path = dir.join(format!("report-{k}.json"));
    let stderr_path = dir.join(format!("stderr-{k}.txt"));
    let _ = std::fs::remove_file(&report_path);
    let err = std::fs::File::create(&stderr_path).expect("create stderr file");
    let child = ddb2pg_command()
        .args(args)
        .arg("--report")
        .arg(&report_path)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn ddb2pg");
    Running {
        child,
        report_path,
        stderr_path,
    }
}

/// A `ddb2pg migrate` invocation of one test: source table, target, checkpoint directory.
#[derive(Debug, Clone)]
pub struct Migration {
    pub table: String,
    /// `--endpoint-url` (DynamoDB Local, or a proxy or double in front of it).
    pub endpoint: String,
    pub target: String,
    /// The test's own directory (reports, the working directory of the binary).
    pub dir: PathBuf,
    pub checkpoint_dir: PathBuf,
}

static REPORTS: AtomicU64 = AtomicU64::new(0);

/// A child run in progress, with the report file it will write.
pub struct Running {
    pub child: Child,
    pub report_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Running {
    /// Wait for the exit and collect the outcome.
    pub async fn wait(self) -> Outcome {
        let Running {
            mut child,
            report_path,
            stderr_path,
        } = self;
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join the waiting thread")
            .expect("wait for ddb2pg");
        collect(status, &stderr_path, &report_path)
    }

    /// SIGKILL (what `Child::kill` sends), then wait.
    pub async fn kill9(mut self) -> Outcome {
        self.child.kill().expect("kill -9 the run");
        self.wait().await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Exited already?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

fn collect(status: ExitStatus, stderr_path: &Path, report_path: &Path) -> Outcome {
    let stderr = std::fs::read(stderr_path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let report = std::fs::read(report_path).ok().map(|b| {
        serde_json::from_slice(&b).unwrap_or_else(|e| {
            panic!(
                "report {} is not JSON ({e}): {}",
                report_path.display(),
                String::from_utf8_lossy(&b)
            )
        })
    });
    Outcome {
        code: status.code(),
        signal: status.signal(),
        stderr,
        report,
    }
}

impl Migration {
    /// A migration of `table` into `target`, files in a fresh temp dir.
    pub fn new(table: &str, target: &str) -> Migration {
        let dir = temp_dir(table);
        let checkpoint_dir = dir.join("checkpoints");
        Migration {
            table: table.to_string(),
            endpoint: services().endpoint.clone(),
            target: target.to_string(),
            dir,
            checkpoint_dir,
        }
    }

    /// The binary with a clean environment: see [`ddb2pg_command`].
    pub fn bare_command() -> Command {
        ddb2pg_command()
    }

    /// `ddb2pg migrate --table T --target URL --endpoint-url E --checkpoint-dir D
    /// --progress none --report R <extra>`.
    pub fn command(&self, extra: &[&str], report: &Path) -> Command {
        let mut c = Self::bare_command();
        c.current_dir(&self.dir)
            .arg("migrate")
            .args(["--table", &self.table])
            .args(["--target", &self.target])
            .args(["--endpoint-url", &self.endpoint])
            .arg("--checkpoint-dir")
            .arg(&self.checkpoint_dir)
            .args(["--progress", "none"])
            .arg("--report")
            .arg(report)
            .args(extra);
        c
    }

    fn next_files(&self) -> (PathBuf, PathBuf) {
        let k = REPORTS.fetch_add(1, Ordering::Relaxed);
        let report = self.dir.join(format!("report-{k}.json"));
        let stderr = self.dir.join(format!("stderr-{k}.txt"));
        let _ = std::fs::remove_file(&report);
        (report, stderr)
    }

    /// Start the binary; stderr goes to a file in the test dir.
    pub fn spawn(&self, extra: &[&str]) -> Running {
        let (report_path, stderr_path) = self.next_files();
        let err = std::fs::File::create(&stderr_path).expect("create stderr file");
        let child = self
            .command(extra, &report_path)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn ddb2pg");
        Running {
            child,
            report_path,
            stderr_path,
        }
    }

    /// Run the binary to its end.
    pub async fn run(&self, extra: &[&str]) -> Outcome {
        self.spawn(extra).wait().await
    }

    /// The checkpoint file: the single `*.json` in the checkpoint dir.
    pub fn checkpoint_path(&self) -> Option<PathBuf> {
        let entries = std::fs::read_dir(&self.checkpoint_dir).ok()?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        assert!(
            found.len() <= 1,
            "more than one checkpoint in {}: {found:?}",
            self.checkpoint_dir.display()
        );
        found.pop()
    }

    /// The file next to the checkpoint with another suffix (`.lock`, `.rejects.jsonl`).
    pub fn sibling(&self, suffix: &str) -> PathBuf {
        let cp = self.checkpoint_path().expect("a checkpoint file");
        let stem = cp
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".json").to_string())
            .expect("checkpoint file name");
        cp.with_file_name(format!("{stem}{suffix}"))
    }

    /// Load the checkpoint (must exist and be valid, checksum included).
    pub fn checkpoint(&self) -> Checkpoint {
        let p = self.checkpoint_path().expect("a checkpoint file");
        Checkpoint::load(&p)
            .unwrap_or_else(|e| panic!("load {}: {e}", p.display()))
            .unwrap_or_else(|| panic!("{} vanished", p.display()))
    }

    /// The checkpoint as a reader beside a live run sees it: absent, or whole and valid (the
    /// run replaces it atomically), never damaged.
    pub fn live_checkpoint(&self) -> Option<Checkpoint> {
        let p = self.checkpoint_path()?;
        Checkpoint::load(&p)
            .unwrap_or_else(|e| panic!("reading {} beside a live run: {e}", p.display()))
    }

    /// Committed items over all segments, if the checkpoint exists.
    pub fn committed(&self) -> Option<u64> {
        self.live_checkpoint().map(|cp| committed(&cp))
    }

    /// The target table's SQL name (default mapping: named after the source).
    pub fn pg_table(&self) -> String {
        format!(
            "\"{}\"",
            ddb2pg::plan::default_table_name(&self.table).replace('"', "\"\"")
        )
    }

    /// Start the binary and wait until its checkpoint records at least `threshold` committed
    /// items, with that count. If the run ends first, its outcome is the `Err`.
    pub async fn spawn_until(
        &self,
        extra: &[&str],
        threshold: u64,
    ) -> Result<(Running, u64), Outcome> {
        let (running, cp) = self
            .spawn_until_checkpoint(extra, |cp| committed(cp) >= threshold)
            .await?;
        Ok((running, committed(&cp)))
    }

    /// Start the binary and wait until its live checkpoint satisfies `ready`; returns that
    /// checkpoint. If the run ends first, its outcome is the `Err`.
    pub async fn spawn_until_checkpoint(
        &self,
        extra: &[&str],
        ready: impl Fn(&Checkpoint) -> bool,
    ) -> Result<(Running, Checkpoint), Outcome> {
        let mut running = self.spawn(extra);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(cp) = self.live_checkpoint() {
                if ready(&cp) {
                    return Ok((running, cp));
                }
            }
            if running.exited() {
                return Err(running.wait().await);
            }
            assert!(
                Instant::now() < deadline,
                "the checkpoint never got ready in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Segments stopped mid-way: not done, a cursor held.
pub fn held_cursors(cp: &Checkpoint) -> usize {
    cp.segments
        .iter()
        .filter(|s| !s.done && s.cursor.is_some())
        .count()
}

/// Sum of the committed items of every segment.
pub fn committed(cp: &Checkpoint) -> u64 {
    cp.segments.iter().map(|s| s.items).sum()
}

/// Send a signal with kill(1) (no libc in the tests).
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid}: {st:?}");
}
