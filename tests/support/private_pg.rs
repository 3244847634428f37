//! A PostgreSQL server of a test's own (initdb + pg_ctl on a free loopback port), for tests that
//! restart the server mid-run without disturbing the shared one.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::prometheus::free_port;

pub struct PrivatePg {
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
    extra: String,
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (run scripts/setup.sh)")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("a PostgreSQL bin directory")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Run a server binary, as the postgres user when we are root.
fn run(bin: &std::path::Path, tool: &str, args: &[&str]) {
    let exe = bin.join(tool);
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&exe)
            .args(args)
            .output()
    } else {
        Command::new(&exe).args(args).output()
    }
    .expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        Self::start_with(|_| String::new())
    }

    /// `extra(dir)` returns more server options (`-c name=value ...`); it may put files in dir
    /// (they are handed to the postgres user).
    pub fn start_with(extra: impl FnOnce(&std::path::Path) -> String) -> PrivatePg {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ddb2pg-private-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("pg dir");
        let extra = extra(&dir);
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let bin = pg_bin();
        let port = free_port();
        let data = dir.join("data");
        let data_s = data.to_string_lossy().to_string();
        run(
            &bin,
            "initdb",
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let pg = PrivatePg {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            port,
            extra,
        };
        pg.ctl(&["start", "-w"]);
        pg
    }

    fn ctl(&self, args: &[&str]) {
        let data = self.dir.join("data").to_string_lossy().to_string();
        let log = self.dir.join("pg.log").to_string_lossy().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {}",
            self.port,
            self.dir.to_string_lossy(),
            self.extra
        );
        let mut all = vec!["-D", data.as_str(), "-l", log.as_str(), "-o", opts.as_str()];
        all.extend_from_slice(args);
        run(&self.bin, "pg_ctl", &all);
    }

    /// Stop (fast: connections are terminated) and start again.
    pub fn restart(&self) {
        self.ctl(&["restart", "-m", "fast", "-w"]);
    }

    pub fn stop(&self) {
        self.ctl(&["stop", "-m", "immediate", "-w"]);
    }

    pub fn start_again(&self) {
        self.ctl(&["start", "-w"]);
    }

    /// The postmaster (from its pid file) and its children (backends, checkpointer, ...):
    /// every process of this server, for `kill -STOP` / `kill -CONT`.
    pub fn server_pids(&self) -> Vec<u32> {
        let pidfile = self.dir.join("data").join("postmaster.pid");
        let text = std::fs::read_to_string(&pidfile).expect("read postmaster.pid");
        let main: u32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid on postmaster.pid's first line");
        let out = Command::new("pgrep")
            .args(["-P", &main.to_string()])
            .output()
            .expect("run pgrep");
        let mut pids = vec![main];
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok()),
        );
        pids
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.join("data").to_string_lossy().to_string();
        let exe = self.bin.join("pg_ctl");
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(["-D", &data, "stop", "-m", "immediate"])
                .status()
        } else {
            Command::new(&exe)
                .args(["-D", &data, "stop", "-m", "immediate"])
                .status()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
