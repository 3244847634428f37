//! What a user reads when the source is not what they think: DynamoDB Local's tables per
//! access key, an endpoint nobody listens on. One readable line, naming the fix.

use crate::support::{ddb, delete_table, load_sample, new_database, unique_name, Migration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_another_access_key_on_dynamodb_local_says_so() {
    let client = ddb().await;
    let table = unique_name("otherkey");
    load_sample(&client, &table, 1, 3).await;
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
    delete_table(&client, &table).await;
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
