//! `ddb2pg status` on finished, interrupted and live runs; settings from ddb2pg.toml with flags
//! overriding them.

use crate::support::harness::*;

/// The one checkpoint of `status --json` (the output is `{"checkpoints": [...], ...}`).
fn status_json(cp: &std::path::Path) -> serde_json::Value {
    let out = command(&[
        "status".into(),
        "--checkpoint-dir".into(),
        cp.to_string_lossy().to_string(),
        "--json".into(),
    ])
    .output()
    .expect("status");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let all = v["checkpoints"].as_array().expect("checkpoints");
    assert_eq!(all.len(), 1, "one checkpoint: {v}");
    all[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_segments_rejects_and_the_live_lock() {
    let n = 4000;
    let table = sample_table(n).await;
    let db = new_database().await;
    let with_password = db.replacen("postgres@", "postgres:s3cret@", 1);
    let cp = tempdir("status");
    let mut args = migrate_args(&table, &with_password, &cp);
    args.extend(
        [
            "--segments",
            "8",
            "--concurrency",
            "1",
            "--batch-size",
            "50",
            "--max-read-units",
            "40",
        ]
        .map(String::from),
    );
    // Interrupted mid-run: some segments done, one in progress, some pending.
    let mut child = spawn(&args);
    wait_for_items(&mut child, &cp, 1200);
    child.kill().expect("kill");
    let _ = child.wait();
    let s = status_json(&cp);
    assert_eq!(s["complete"], false);
    let (done, prog, pend) = (
        s["segments_done"].as_u64(),
        s["segments_in_progress"].as_u64(),
        s["segments_pending"].as_u64(),
    );
    assert_eq!(
        done.unwrap_or(0) + prog.unwrap_or(0) + pend.unwrap_or(0),
        8,
        "{s}"
    );
    assert!(done.unwrap_or(0) >= 1 && pend.unwrap_or(0) >= 1, "{s}");
    assert_eq!(s["running"], false);
    assert_eq!(s["settings"]["segments"], 8);
    assert!(!s.to_string().contains("s3cret"), "a password leaked: {s}");
    // While a run holds the lock, status says so.
    let lock_path = std::fs::read_dir(&cp)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "lock"))
        .expect("lock file");
    let lock = ddb2pg::checkpoint::Lock::acquire(&lock_path).expect("lock");
    assert_eq!(status_json(&cp)["running"], true);
    drop(lock);
    // Finished: everything done; the text form names the state.
    let r = run(&migrate_args(&table, &with_password, &cp)[..]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stderr.contains("s3cret"),
        "a password leaked: {}",
        r.stderr
    );
    let s = status_json(&cp);
    assert_eq!(
        (
            s["complete"].as_bool(),
            s["segments_done"].as_u64(),
            s["items"].as_u64()
        ),
        (Some(true), Some(8), Some(n))
    );
    let text = command(&[
        "status".into(),
        "--checkpoint-dir".into(),
        cp.to_string_lossy().to_string(),
    ])
    .output()
    .expect("status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("complete") && text.contains("8 done"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_ddb2pg_toml_and_flags_override_them() {
    let n = 300;
    let table = sample_table(n).await;
    let db = new_database().await;
    let dir = tempdir("config");
    std::fs::write(
        dir.join("ddb2pg.toml"),
        format!(
            "[migrate]\ntable = \"{table}\"\ntarget = \"{db}\"\nendpoint-url = \"{}\"\ncheckpoint_dir = \"cp\"\nprogress = \"none\"\nsegments = 4\n",
            services().endpoint
        ),
    )
    .expect("config");
    let out = command(&["migrate".into(), "--segments".into(), "2".into()])
        .current_dir(&dir)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: i64 = pg(&db)
        .await
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\"",
                ddb2pg::plan::default_table_name(&table)
            ),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, n as i64);
    // The flag won over the file.
    assert_eq!(status_json(&dir.join("cp"))["settings"]["segments"], 2);
    // A bad value in the file is a clear configuration error.
    std::fs::write(dir.join("bad.toml"), "[migrate]\nsegments = [4]\n").expect("bad");
    let out = command(&["--config".into(), "bad.toml".into(), "migrate".into()])
        .current_dir(&dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
}

/// `host=... port=... dbname=... user=...` for a `postgres://user@host:port/db` URL.
fn key_value_form(url: &str) -> String {
    let t = ddb2pg::pgconn::resolve(Some(url)).expect("resolve");
    let c = &t.config;
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        other => panic!("a TCP host: {other:?}"),
    };
    format!(
        "host={host} port={} dbname={} user={}",
        c.get_ports()[0],
        c.get_dbname().expect("dbname"),
        c.get_user().expect("user")
    )
}

/// Everything under `dir` as text.
fn all_text_in(dir: &std::path::Path) -> String {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default()).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_show_whatever_form_the_target_has() {
    let table = sample_table(3000).await;
    let db = new_database().await;
    let cp = tempdir("secrets");
    let report = cp.with_extension("report.json");
    // The shared server trusts loopback connections: any password is accepted.
    let targets = [
        format!("{} password=hunter2", key_value_form(&db)),
        format!("{} password = 'hunter2'", key_value_form(&db)),
        format!("{db}?password=hunter2"),
        db.replacen("postgres@", "postgres:hunter2@", 1),
    ];
    for target in &targets {
        let mut args = migrate_args(&table, target, &cp);
        args.extend(
            [
                "-vv",
                "--concurrency",
                "1",
                "--batch-size",
                "25",
                "--max-read-units",
                "10",
                "--report",
                &report.to_string_lossy(),
            ]
            .map(String::from),
        );
        let before = committed_items(&cp);
        let mut child = spawn(&args);
        wait_for_items(&mut child, &cp, before + 100);
        crate::support::signal(child.id(), "TERM");
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{target}: {stderr}");
        assert!(stderr.contains("to resume"), "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "{target}: a password leaked:\n{stderr}"
        );
        let files = all_text_in(&cp);
        assert!(
            !files.contains("hunter2"),
            "{target}: a password in the checkpoint dir"
        );
        let r = std::fs::read_to_string(&report).expect("report");
        assert!(
            !r.contains("hunter2"),
            "{target}: a password in the report: {r}"
        );
        let s = status_json(&cp).to_string();
        assert!(
            !s.contains("hunter2"),
            "{target}: a password in status: {s}"
        );
    }
    // A syntax error in ddb2pg.toml quotes the line: without the password.
    let dir = tempdir("secrets-toml");
    for line in [
        format!("target = \"{}\n", targets[0]),
        format!("target = \"{}\n", targets[3]),
    ] {
        std::fs::write(dir.join("ddb2pg.toml"), format!("[migrate]\n{line}")).expect("toml");
        let out = command(&["migrate".into(), "--table".into(), table.clone()])
            .current_dir(&dir)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("invalid TOML"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "a password leaked:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_beats_ddb2pg_toml_which_is_named() {
    let n = 200;
    let table = sample_table(n).await;
    let db = new_database().await;
    let dir = tempdir("precedence");
    // The file's target is unreachable; DATABASE_URL names the real one.
    std::fs::write(
        dir.join("ddb2pg.toml"),
        format!(
            "[migrate]\ntable = \"{table}\"\ntarget = \"postgres://postgres@127.0.0.1:1/nowhere\"\nendpoint-url = \"{}\"\ncheckpoint_dir = \"cp\"\nprogress = \"none\"\n",
            services().endpoint
        ),
    )
    .expect("config");
    let out = command(&["migrate".into()])
        .env("DATABASE_URL", &db)
        .current_dir(&dir)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("settings file ddb2pg.toml ([migrate])")
            && stderr.contains("target (DATABASE_URL)"),
        "{stderr}"
    );
    let rows: i64 = pg(&db)
        .await
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\"",
                ddb2pg::plan::default_table_name(&table)
            ),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, n as i64);
    // A flag still beats the environment: --target to the unreachable server fails.
    let out = command(&[
        "migrate".into(),
        "--target".into(),
        "postgres://postgres@127.0.0.1:1/nowhere".into(),
    ])
    .env("DATABASE_URL", &db)
    .current_dir(&dir)
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
