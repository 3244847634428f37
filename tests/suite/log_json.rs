//! `--log-format json` (or `DDB2PG_LOG_FORMAT=json`): every line on stderr is one JSON object
//! with `ts`, `level` and `msg` (migrate, verify, status, the fatal error, usage errors), the
//! end-of-run summary carries the `--report` file's figures, and no line shows a password.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::private_pg::PrivatePg;
use crate::support::{
    ddb, ddb2pg_command, load_sample, new_database, services, temp_dir, unique_name, Migration,
};

const PASSWORD: &str = "Pw-9xQz";

/// One finished run: exit code, stderr, its lines parsed, stdout.
struct Run {
    code: Option<i32>,
    stderr: String,
    lines: Vec<Value>,
    stdout: String,
}

/// `ddb2pg <args>` in `dir`, with `env` added to the suite's clean environment.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = ddb2pg_command()
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run ddb2pg");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines = json_lines(&stderr);
    Run {
        code: out.status.code(),
        stderr,
        lines,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Every line of `stderr` as a JSON object with a timestamp, a known level and a message; a
/// line that is anything else fails the test.
fn json_lines(stderr: &str) -> Vec<Value> {
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\nstderr:\n{stderr}"));
            let ts = v["ts"].as_str().unwrap_or_default();
            assert!(
                ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "ts of {l}"
            );
            assert!(
                matches!(
                    v["level"].as_str(),
                    Some("info" | "warn" | "error" | "debug" | "trace")
                ),
                "level of {l}"
            );
            assert!(v["msg"].is_string(), "msg of {l}");
            v
        })
        .collect();
    assert!(!stderr.ends_with("\n\n"), "an empty line: {stderr}");
    lines
}

fn no_password(r: &Run) {
    assert!(
        !r.stderr.contains(PASSWORD) && !r.stdout.contains(PASSWORD),
        "the password is shown:\n{}{}",
        r.stderr,
        r.stdout
    );
}

/// The one line whose msg is `msg`.
fn the<'a>(r: &'a Run, msg: &str) -> &'a Value {
    let found: Vec<&Value> = r.lines.iter().filter(|l| l["msg"] == msg).collect();
    assert_eq!(found.len(), 1, "one {msg:?} line:\n{}", r.stderr);
    found[0]
}

/// The summary line has the report's fields and values, and nothing else beside ts, level, msg.
fn summary_is_the_report(r: &Run, report: &Path) -> String {
    let report: Value = serde_json::from_slice(&std::fs::read(report).expect("read the report"))
        .expect("the report is JSON");
    let summary = the(r, "summary");
    let (Some(s), Some(rep)) = (summary.as_object(), report.as_object()) else {
        panic!("objects: {summary} {report}")
    };
    for (k, v) in rep {
        assert_eq!(&s[k], v, "summary field {k}:\n{summary}\nreport: {report}");
    }
    let extra: Vec<&String> = s
        .keys()
        .filter(|k| !rep.contains_key(*k) && !matches!(k.as_str(), "ts" | "level" | "msg"))
        .collect();
    assert!(
        extra.is_empty(),
        "summary fields not in the report: {extra:?}"
    );
    summary["level"].as_str().unwrap_or_default().to_string()
}

type Case<'a> = (Vec<&'a str>, &'a [(&'a str, &'a str)], &'a str);

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A migrate (progress lines, -v logs), a verify and a status in json, the password given as a
/// URL, as key=value and as PGPASSWORD: every line parses, the summaries equal the reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_verify_and_status_write_json_lines_whose_summary_is_the_report() {
    let table = unique_name("logjson");
    load_sample(&ddb().await, &table, 5, 2000).await;
    let plain = new_database().await;
    let with_pw = plain.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    assert_ne!(with_pw, plain, "a password went in: {plain}");
    let dir = temp_dir("logjson");
    let (cp, r1, r2, r3) = (
        dir.join("cp"),
        dir.join("r1.json"),
        dir.join("r2.json"),
        dir.join("v.json"),
    );
    let endpoint = services().endpoint.as_str();
    let migrate = |target: &str, report: &Path, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "migrate",
            "--table",
            &table,
            "--target",
            target,
            "--endpoint-url",
            endpoint,
        ];
        let (cp, report) = (s(&cp), s(report));
        args.extend(["--checkpoint-dir", &cp, "--report", &report]);
        args.extend(extra);
        run(&dir, &args, env)
    };

    let m = migrate(
        &with_pw,
        &r1,
        &[
            "--log-format",
            "json",
            "-v",
            "--progress",
            "log",
            "--progress-interval",
            "0.1",
        ],
        &[],
    );
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    no_password(&m);
    assert_eq!(summary_is_the_report(&m, &r1), "info");
    let progress: Vec<&Value> = m.lines.iter().filter(|l| l["msg"] == "progress").collect();
    assert!(!progress.is_empty(), "a progress line:\n{}", m.stderr);
    for p in &progress {
        assert_eq!(
            p["segments_total"],
            the(&m, "summary")["segments_total"],
            "{p}"
        );
        for f in ["items_read", "rows_written", "rejected", "segments_done"] {
            assert!(p[f].is_u64(), "{f} in {p}");
        }
        assert!(p["rate"].is_number(), "{p}");
    }
    assert!(
        m.lines.iter().any(|l| l["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("ddb2pg::"))),
        "a tracing event (-v) with its target:\n{}",
        m.stderr
    );
    assert_eq!(the(&m, "summary")["items_read"], 2000);

    // Again, the password in key=value form and then in PGPASSWORD, the format from the
    // environment: nothing to do, said in JSON.
    let place = plain.trim_start_matches("postgres://postgres@");
    let (host_port, db) = place.split_once('/').expect("host:port/db");
    let (host, port) = host_port.split_once(':').expect("host:port");
    let conninfo = format!("host={host} port={port} dbname={db} user=postgres password={PASSWORD}");
    let env = [("DDB2PG_LOG_FORMAT", "json")];
    let again = migrate(&conninfo, &r2, &["--progress", "none"], &env);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    no_password(&again);
    summary_is_the_report(&again, &r2);
    let pgpw = migrate(
        &plain,
        &r2,
        &["--progress", "none"],
        &[("DDB2PG_LOG_FORMAT", "json"), ("PGPASSWORD", PASSWORD)],
    );
    assert_eq!(pgpw.code, Some(0), "{}", pgpw.stderr);
    no_password(&pgpw);
    summary_is_the_report(&pgpw, &r2);

    let v = run(
        &dir,
        &[
            "verify",
            "--table",
            &table,
            "--target",
            &with_pw,
            "--endpoint-url",
            endpoint,
            "--checkpoint-dir",
            &s(&cp),
            "--progress",
            "log",
            "--progress-interval",
            "0.1",
            "--report",
            &s(&r3),
        ],
        &env,
    );
    assert_eq!(v.code, Some(0), "{}", v.stderr);
    no_password(&v);
    assert_eq!(summary_is_the_report(&v, &r3), "info");
    assert_eq!(the(&v, "summary")["status"], "identical");

    let st = run(&dir, &["status", "--checkpoint-dir", &s(&cp)], &env);
    assert_eq!(st.code, Some(0), "{}", st.stderr);
    assert!(st.stdout.contains(&table), "{}", st.stdout);
    no_password(&st);
}

/// Refusals before and after the command line parses are one error line each, with the exit
/// code, and show no password, even where the text they quote holds one.
#[test]
fn refusals_are_one_json_error_line_with_the_exit_code_and_no_password() {
    let dir = temp_dir("logjson-refusals");
    std::fs::write(dir.join("bad.toml"), "garbage [[[").expect("write the mapping");
    std::fs::write(
        dir.join("settings.toml"),
        format!("[migrate]\ntarget = \"postgres://u:{PASSWORD}@h/db\n"),
    )
    .expect("write the settings file");
    let conninfo = format!("host=127.0.0.1 port=1 user=u password={PASSWORD}");
    let url = format!("postgres://u:{PASSWORD}@127.0.0.1:1/db");
    let endpoint = services().endpoint.as_str();
    let json = [("DDB2PG_LOG_FORMAT", "json")];
    let to_url = [
        "migrate",
        "--table",
        "t",
        "--target",
        &url,
        "--endpoint-url",
        endpoint,
    ];
    // The arguments, the environment, what the error line says.
    let cases: Vec<Case> = vec![
        (vec!["schema", "--mapping", "bad.toml"], &json, "bad.toml"),
        (
            vec![
                "migrate",
                "--table",
                "t",
                "--target",
                &conninfo,
                "--segments",
                "0",
            ],
            &json,
            "--segments",
        ),
        // clap's usage error, quoting the argument.
        (
            vec![
                "--log-format",
                "json",
                "migrate",
                "--table",
                "t",
                "--segments",
                &url,
            ],
            &[],
            "--segments",
        ),
        // The settings file's syntax error quotes its line.
        (
            vec![
                "--config",
                "settings.toml",
                "--log-format=json",
                "migrate",
                "--table",
                "t",
            ],
            &[],
            "settings.toml",
        ),
        (
            [&to_url[..], &["--progress", "bar"]].concat(),
            &json,
            "--progress bar",
        ),
        (to_url.to_vec(), &json, ""),
    ];
    for (args, env, says) in cases {
        let r = run(&dir, &args, env);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        no_password(&r);
        let last = r
            .lines
            .last()
            .unwrap_or_else(|| panic!("{args:?}: no line"));
        assert_eq!(last["level"], "error", "{args:?}: {last}");
        assert_eq!(last["exit_code"], 2, "{args:?}: {last}");
        assert!(
            last["msg"].as_str().is_some_and(|m| m.contains(says)),
            "{args:?} says {says:?}: {last}"
        );
    }
}

/// A run whose target goes away for good: its error line (exit_code 1), a summary of level
/// error equal to the report, and the resume command as a field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_says_error_exit_1_a_failed_summary_and_the_resume_command() {
    const N: u64 = 3000;
    let table = unique_name("logjsonfail");
    load_sample(&ddb().await, &table, 7, N).await;
    let server = PrivatePg::start();
    let target = crate::support::harness::new_database_on(&server.url).await;
    let m = Migration::new(&table, &target);
    let args = [
        "--log-format",
        "json",
        "--batch-size",
        "100",
        "--concurrency",
        "2",
        "--segments",
        "4",
        "--max-read-units",
        "30",
        "--pg-retry-for",
        "2",
    ];
    let ready = |cp: &ddb2pg::checkpoint::Checkpoint| crate::support::committed(cp) >= N / 5;
    let (running, _) = match m.spawn_until_checkpoint(&args, ready).await {
        Ok(r) => r,
        Err(out) => panic!("the run ended before the outage: {out:?}"),
    };
    server.stop();
    let report_path = running.report_path.clone();
    let out = tokio::time::timeout(Duration::from_secs(120), running.wait())
        .await
        .expect("the run gives up");
    let r = Run {
        code: out.code,
        lines: json_lines(&out.stderr),
        stderr: out.stderr,
        stdout: String::new(),
    };
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(summary_is_the_report(&r, &report_path), "error");
    assert_eq!(the(&r, "summary")["status"], "failed");
    let resume = the(&r, "to resume, run the same command again");
    assert!(
        resume["command"]
            .as_str()
            .is_some_and(|c| c.starts_with("ddb2pg ") && c.contains(&table)),
        "{resume}"
    );
    let last = r.lines.last().expect("lines");
    assert_eq!(
        (&last["level"], &last["exit_code"]),
        (&"error".into(), &1.into()),
        "{last}"
    );
}

/// The follower's line: its counts by kind, lag and shards as fields; the summary of a caught-up
/// follow is the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_followers_line_has_its_changes_lag_and_shards_as_fields() {
    let table = unique_name("logjsonfollow");
    load_sample(&ddb().await, &table, 9, 50).await;
    let db = new_database().await;
    let dir = temp_dir("logjsonfollow");
    let report = dir.join("r.json");
    let (cp, rep) = (s(&dir.join("cp")), s(&report));
    let f = run(
        &dir,
        &[
            "migrate",
            "--table",
            &table,
            "--target",
            &db,
            "--endpoint-url",
            &services().endpoint,
            "--checkpoint-dir",
            &cp,
            "--report",
            &rep,
            "--follow",
            "--until-caught-up",
            "--enable-stream",
            "--progress",
            "log",
            "--progress-interval",
            "0.1",
        ],
        &[("DDB2PG_LOG_FORMAT", "json")],
    );
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    assert_eq!(summary_is_the_report(&f, &report), "info");
    assert_eq!(the(&f, "summary")["status"], "caught_up");
    let following: Vec<&Value> = f.lines.iter().filter(|l| l["msg"] == "following").collect();
    assert!(!following.is_empty(), "a follower line:\n{}", f.stderr);
    for l in following {
        for k in [
            "changes_inserted",
            "changes_modified",
            "changes_removed",
            "shards_open",
            "shards_closed",
            "shards_reading",
        ] {
            assert!(l[k].is_u64(), "{k} in {l}");
        }
        assert!(l["lag_s"].is_number() || l["lag_s"].is_null(), "{l}");
    }
}
