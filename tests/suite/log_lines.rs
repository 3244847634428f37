//! What reaches stderr in the corners of `--log-format json` and `-q`: a panic is one redacted
//! line of the chosen format, `-q` turns off `verify`'s progress as `migrate`'s, and `-q` with
//! a `--progress` that asks for lines is refused.

use std::process::Stdio;

use serde_json::Value;

use crate::support::{ddb2pg_command, load_sample, new_database, services, unique_name, Migration};

/// Every line of `stderr` as a JSON object with `level` and `msg`; anything else fails.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\nstderr:\n{stderr}"));
            assert!(v["level"].is_string() && v["msg"].is_string(), "{l}");
            v
        })
        .collect()
}

/// `ddb2pg <args>` with its stdout a pipe whose reader is already closed: a write to it fails
/// (a broken pipe), and `completions` panics on that failure.
fn run_into_closed_pipe(args: &[&str], backtrace: &str) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = ddb2pg_command()
        .args(args)
        .env("RUST_BACKTRACE", backtrace)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run ddb2pg");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_panic_is_one_error_line_in_the_chosen_format() {
    for backtrace in ["0", "1"] {
        let (code, stderr) =
            run_into_closed_pipe(&["--log-format", "json", "completions", "bash"], backtrace);
        assert_eq!(code, Some(101), "{stderr}");
        let lines = json_lines(&stderr);
        assert_eq!(lines.len(), 1, "{stderr}");
        assert_eq!(lines[0]["level"], "error", "{stderr}");
        let msg = lines[0]["msg"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with("internal error: thread 'main' panicked at ") && msg.contains("Broken"),
            "{msg}"
        );
        assert_eq!(
            lines[0]["backtrace"].is_string(),
            backtrace == "1",
            "{stderr}"
        );
    }
    let (code, stderr) = run_into_closed_pipe(&["completions", "bash"], "0");
    assert_eq!(code, Some(101), "{stderr}");
    assert!(
        stderr.starts_with("ddb2pg: error: internal error: thread 'main' panicked at ")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}

/// `-q` means only errors and the summary: `verify -q` writes no progress line, and `-q` with
/// `--progress log` (or `bar`), which asks for them, is refused rather than one of them
/// ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_shows_no_progress_and_refuses_a_progress_that_asks_for_it() {
    let table = unique_name("logquiet");
    load_sample(&crate::support::ddb().await, &table, 3, 2000).await;
    let db = new_database().await;
    let m = Migration::new(&table, &db);
    m.run(&[]).await.expect_code(0);
    let endpoint = services().endpoint.as_str();
    let verify = |extra: &[&str]| {
        let out = ddb2pg_command()
            .current_dir(&m.dir)
            .args(["--log-format", "json", "verify", "--table", &table])
            .args(["--target", &db, "--endpoint-url", endpoint])
            .args(["--progress-interval", "0.1"])
            .args(extra)
            .output()
            .expect("run ddb2pg verify");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), json_lines(&stderr), stderr)
    };
    let progress = |lines: &[Value]| lines.iter().filter(|l| l["msg"] == "progress").count();

    // The same verify without -q writes progress lines: the check below can fail.
    let (code, lines, stderr) = verify(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(progress(&lines) > 0, "progress lines without -q:\n{stderr}");

    let (code, lines, stderr) = verify(&["-q"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(progress(&lines), 0, "no progress line with -q:\n{stderr}");
    assert!(lines.iter().any(|l| l["msg"] == "summary"), "{stderr}");

    for mode in ["log", "bar"] {
        let (code, lines, stderr) = verify(&["-q", "--progress", mode]);
        assert_eq!(code, Some(2), "verify -q --progress {mode}: {stderr}");
        let said = lines.last().and_then(|l| l["msg"].as_str()).unwrap_or("");
        assert!(said.contains("-q"), "verify -q --progress {mode}: {stderr}");
    }
    let cp = m.checkpoint_dir.to_string_lossy();
    let out = ddb2pg_command()
        .current_dir(&m.dir)
        .args(["migrate", "--table", &table, "--target", &db])
        .args(["--endpoint-url", endpoint, "--checkpoint-dir", &cp])
        .args(["-q", "--progress", "log"])
        .output()
        .expect("run ddb2pg migrate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "migrate -q --progress log: {stderr}"
    );
    assert!(stderr.contains("-q"), "{stderr}");
}
