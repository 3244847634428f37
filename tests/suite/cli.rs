//! The command-line interface changes only on purpose: `--help` of every subcommand is compared
//! with tests/snapshots/. After an intended change: `UPDATE_SNAPSHOTS=1 cargo test --test main help`.

const PAGES: &[(&str, &[&str])] = &[
    ("help", &["--help"]),
    ("migrate-help", &["migrate", "--help"]),
    ("schema-help", &["schema", "--help"]),
    ("verify-help", &["verify", "--help"]),
    ("status-help", &["status", "--help"]),
    ("finish-help", &["finish", "--help"]),
    ("sample-help", &["sample", "--help"]),
    ("completions-help", &["completions", "--help"]),
];

#[test]
fn help_pages_match_their_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut stale = Vec::new();
    for (name, args) in PAGES {
        let out = crate::support::ddb2pg_command()
            .args(*args)
            .output()
            .expect("run ddb2pg");
        assert!(out.status.success(), "{args:?} exited {:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let path = dir.join(format!("{name}.txt"));
        if update {
            std::fs::write(&path, &text).expect("write snapshot");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if want != text {
            stale.push(format!(
                "{name}: ddb2pg {}\n--- snapshot\n{want}\n--- now\n{text}",
                args.join(" ")
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "help changed (UPDATE_SNAPSHOTS=1 to accept):\n{}",
        stale.join("\n")
    );
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    let out = crate::support::ddb2pg_command()
        .args(["migrate", "--table", "t", "--segments", "0"])
        .output()
        .expect("run ddb2pg");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--segments"));
    let out = crate::support::ddb2pg_command()
        .args(["schema", "--mapping", "/nonexistent/mapping.toml"])
        .output()
        .expect("run ddb2pg");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/mapping.toml"));
    // --scan-only writes nothing and takes no lock: the flags about rejects and the lock are
    // refused beside it, not ignored.
    for flag in ["--max-rejects", "--lock-wait"] {
        let out = crate::support::ddb2pg_command()
            .args(["migrate", "--table", "t", "--scan-only", flag, "5"])
            .output()
            .expect("run ddb2pg");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains(flag) && err.contains("--scan-only"), "{err}");
    }
}

#[test]
fn schema_prints_the_example_ddl_and_completions_work() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = crate::support::ddb2pg_command()
        .args([
            "schema",
            "--mapping",
            &format!("{root}/examples/single-table/mapping.toml"),
        ])
        .output()
        .expect("run ddb2pg");
    assert_eq!(out.status.code(), Some(0));
    let ddl = String::from_utf8_lossy(&out.stdout);
    assert!(
        ddl.contains("CREATE TABLE IF NOT EXISTS \"order_lines\""),
        "{ddl}"
    );
    assert!(
        ddl.contains("PRIMARY KEY (\"order_id\", \"line_no\")"),
        "{ddl}"
    );
    assert!(ddl.contains("\"email\" text NOT NULL"), "{ddl}");
    for shell in ["bash", "zsh", "fish"] {
        let out = crate::support::ddb2pg_command()
            .args(["completions", shell])
            .output()
            .expect("run ddb2pg");
        assert_eq!(out.status.code(), Some(0));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("migrate"),
            "{shell}"
        );
    }
}
