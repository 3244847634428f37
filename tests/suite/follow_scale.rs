//! The follower at scale and through trouble: a table deleted and re-created (a new stream),
//! a DynamoDB Streams outage shorter than `--pg-retry-for`, and (through the many-shard
//! double, `support::stream_double`) many shards read at once, splits, trims, empty pages,
//! kill -9, every item's changes applied in order over several connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_dynamodb::Client;
use tokio::net::{TcpListener, TcpStream};

use crate::support::{ddb, new_database, pg, unique_name, Migration};

/// A table keyed by `pk` (string) with a NEW_AND_OLD_IMAGES stream.
pub(crate) async fn create_stream_table(client: &Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("stream"),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {table}: {e:?}"));
}

/// Put `pk` with version `ver` (and a payload that grows with it).
pub(crate) async fn put_ver(client: &Client, table: &str, pk: &str, ver: u64) {
    client
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.into()))
        .item("ver", AttributeValue::N(ver.to_string()))
        .item("tag", AttributeValue::S(format!("{pk}-v{ver}")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {pk}: {e:?}"));
}

pub(crate) async fn delete_pk(client: &Client, table: &str, pk: &str) {
    client
        .delete_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.into()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete {pk}: {e:?}"));
}

/// Every row of the default mapping's table, `pk=item` sorted.
pub(crate) async fn rows(db: &str, table: &str) -> Vec<String> {
    let c = pg(db).await;
    let mut v: Vec<String> = c
        .query(
            &format!("SELECT pk || '=' || item::text FROM \"{table}\""),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("read {table}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    v.sort();
    v
}

/// The final table migrated in one go into a fresh database: the rows a follow must end with.
pub(crate) async fn one_shot_rows(table: &str) -> Vec<String> {
    let fresh = new_database().await;
    Migration::new(table, &fresh).run(&[]).await.expect_code(0);
    rows(&fresh, table).await
}

// ---------------------------------------------------------------------------------------------
// A table deleted and re-created: its new stream is followed from its start.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_created_table_is_followed_from_its_new_stream() {
    let client = ddb().await;
    let table = unique_name("recreated");
    create_stream_table(&client, &table).await;
    for i in 0..20 {
        put_ver(&client, &table, &format!("old{i}"), 1).await;
    }
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("delete table");
    create_stream_table(&client, &table).await;
    for i in 0..129 {
        put_ver(&client, &table, &format!("k{i}"), 1).await;
    }
    let db = new_database().await;
    let m = Migration::new(&table, &db);
    let out = m.run(&["--follow", "--until-caught-up"]).await;
    out.expect_code(0);
    assert_eq!(out.num("changes_inserted"), 129, "{}", out.report());
    assert_eq!(rows(&db, &table).await, one_shot_rows(&table).await);
}

// ---------------------------------------------------------------------------------------------
// A Streams outage shorter than --pg-retry-for is ridden out.
// ---------------------------------------------------------------------------------------------

/// A TCP forwarder to DynamoDB Local that can be taken down (connections refused by closing
/// them at once, live ones cut) and brought back.
struct Switch {
    url: String,
    down: Arc<AtomicBool>,
}

async fn switch(upstream: &str) -> Switch {
    let up: SocketAddr = upstream
        .trim_start_matches("http://")
        .parse()
        .expect("upstream address");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if d.load(Ordering::SeqCst) {
                continue;
            }
            let d = d.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(up).await else {
                    return;
                };
                let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                let cut = async {
                    while !d.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::select! {
                    _ = copy => {}
                    _ = cut => {}
                }
            });
        }
    });
    Switch { url, down }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_outage_shorter_than_pg_retry_for_is_ridden_out() {
    let client = ddb().await;
    let table = unique_name("outage");
    create_stream_table(&client, &table).await;
    for i in 0..10 {
        put_ver(&client, &table, &format!("k{i}"), 1).await;
    }
    let sw = switch(&crate::support::services().endpoint).await;
    let db = new_database().await;
    let mut m = Migration::new(&table, &db);
    m.endpoint = sw.url.clone();
    let running = m.spawn(&["--follow", "--pg-retry-for", "60"]);
    // Loaded and following: the checkpoint follows the stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while m
        .live_checkpoint()
        .is_none_or(|cp| cp.stream.is_none_or(|s| s.first_round_at.is_none()))
    {
        assert!(std::time::Instant::now() < deadline, "never followed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sw.down.store(true, Ordering::SeqCst);
    // Changes made during the outage.
    for i in 0..10 {
        put_ver(&client, &table, &format!("k{i}"), 2).await;
    }
    delete_pk(&client, &table, "k0").await;
    // Longer than the SDK's own retries last (about 26 s for 10 attempts).
    tokio::time::sleep(Duration::from_secs(30)).await;
    sw.down.store(false, Ordering::SeqCst);
    // Still running after 30 s without DynamoDB.
    let mut running = running;
    assert!(!running.exited(), "the follower ended during the outage");
    crate::support::signal(running.pid(), "TERM");
    running.wait().await.expect_code(130);
    let out = m.run(&["--follow", "--until-caught-up"]).await;
    out.expect_code(0);
    assert!(
        std::fs::read_dir(&m.dir)
            .expect("test dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("stderr"))
            .any(|e| std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .contains("DynamoDB Streams failed")),
        "the outage was not reported as retried"
    );
    assert_eq!(rows(&db, &table).await, one_shot_rows(&table).await);
}
