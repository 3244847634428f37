//! What a user reads when the source is not what they think: a table DynamoDB Local does not
//! show (it keeps tables per access key unless started with -sharedDb), an endpoint nobody
//! listens on. One readable line, naming the fix.

use crate::support::{new_database, unique_name, Migration};

/// The services run DynamoDB Local with -sharedDb (every key sees every table), so the hint
/// is checked on a table that is missing for every key: it names the key and region ddb2pg
/// signed with, and -sharedDb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_dynamodb_local_does_not_show_names_the_key_and_region() {
    let table = unique_name("otherkey");
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let report = m.dir.join("r.json");
    let out = m
        .command(&[], &report)
        .env("AWS_ACCESS_KEY_ID", "someoneelse")
        .env("AWS_SECRET_ACCESS_KEY", "someoneelse")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not found")
            && stderr.contains("-sharedDb")
            && stderr.contains("\"someoneelse\"")
            && stderr.contains("us-east-1"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_endpoint_is_one_readable_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let out = Migration::bare_command()
        .args([
            "migrate",
            "--table",
            "t",
            "--target",
            "postgres://u@127.0.0.1:1/db",
        ])
        .args(["--endpoint-url", &format!("http://127.0.0.1:{port}")])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot reach the endpoint"), "{stderr}");
    assert!(
        !stderr.contains("DispatchFailure") && !stderr.contains("ConnectorError"),
        "the SDK's Debug dump: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// An endpoint variable set but empty (as a shell `export AWS_ENDPOINT_URL_DYNAMODB=` leaves it)
/// is refused by name: the SDK reads the same variable and panicked on it ("URL was unset").
#[test]
fn an_empty_endpoint_variable_is_refused_by_name() {
    for (var, extra) in [
        ("AWS_ENDPOINT_URL_DYNAMODB", ["--table", "t"]),
        (
            "AWS_ENDPOINT_URL_S3",
            [
                "--export",
                "s3://bucket/exports/AWSDynamoDB/01234567890123-abcdefgh",
            ],
        ),
    ] {
        let out = Migration::bare_command()
            .args(["migrate", "--target", "postgres://u@127.0.0.1:1/db"])
            .args(extra)
            .env(var, "")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert!(
            stderr.contains(&format!("{var} is set but empty")) && !stderr.contains("panicked"),
            "{var}: {stderr}"
        );
    }
}

/// Usage errors and target parse errors quote what the user typed: never the password. An
/// empty sslmode is refused as libpq does, not read as "prefer".
#[test]
fn usage_and_target_errors_never_show_a_password_and_an_empty_sslmode_is_refused() {
    let runs: [&[&str]; 4] = [
        // An unquoted key=value target: clap sees `password=...` as an extra argument.
        &[
            "migrate",
            "--export",
            "x",
            "--key",
            "pk",
            "--target",
            "host=h",
            "password=hunter2",
        ],
        &[
            "migrate",
            "--table",
            "t",
            "--segments",
            "postgres://u:hunter2@h/db",
        ],
        &[
            "migrate",
            "--table",
            "t",
            "--target",
            "host=h password=hunter2 horse",
        ],
        &[
            "migrate",
            "--table",
            "t",
            "--target",
            "postgres://u:hun?ter2@h/db?sslmode=bogus",
        ],
    ];
    for args in runs {
        let out = Migration::bare_command().args(args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for secret in ["hunter2", "ter2", "horse"] {
            assert!(!stderr.contains(secret), "{args:?}: {stderr}");
        }
    }
    let out = Migration::bare_command()
        .args([
            "migrate",
            "--table",
            "t",
            "--endpoint-url",
            "http://127.0.0.1:1",
        ])
        .args([
            "--target",
            "host=127.0.0.1 port=1 user=u dbname=d sslmode=''",
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sslmode"), "{stderr}");
}
