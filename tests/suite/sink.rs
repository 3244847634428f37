//! The sink's two ways of writing a batch (direct COPY into the target, or staging + upsert),
//! checked against a real PostgreSQL: the way each batch takes, and that the target ends the
//! same whichever way it took.

use ddb2pg::plan::Plan;
use ddb2pg::sink::{Path, Sink, TableCounts};
use ddb2pg::source::{KeyAttr, KeyAttrType, TableInfo};
use ddb2pg::transform::{Cell, Row};

use crate::support::{drop_database, new_database};

fn plan(key_type: KeyAttrType) -> Plan {
    Plan::default_for(&TableInfo {
        name: "Direct-Path".into(),
        arn: "arn:aws:dynamodb:us-east-1:000000000000:table/Direct-Path".into(),
        key: vec![KeyAttr {
            name: "PK".into(),
            ty: key_type,
        }],
        item_count: 0,
        size_bytes: 0,
    })
}

/// A new database with the plan's table, an admin connection and a sink.
async fn open(key_type: KeyAttrType) -> (String, Plan, tokio_postgres::Client, Sink) {
    let target = new_database().await;
    let plan = plan(key_type);
    let admin = ddb2pg::sink::connect(&target).await.expect("connect");
    ddb2pg::sink::prepare_target(&admin, &plan)
        .await
        .expect("prepare target");
    let sink = Sink::open(&target, &plan).await.expect("open sink");
    (target, plan, admin, sink)
}

fn row(pk: &str, doc: &str) -> Row {
    Row {
        table: 0,
        cells: vec![Cell::Text(pk.into()), Cell::Text(doc.into())],
    }
}

fn counts(staged: u64, distinct: u64, inserted: u64, updated: u64) -> Vec<TableCounts> {
    vec![TableCounts {
        staged,
        distinct,
        inserted,
        updated,
        earlier: 0,
    }]
}

async fn contents(client: &tokio_postgres::Client) -> Vec<(String, String, String)> {
    client
        .query(
            "SELECT \"PK\"::text, item::text, xmin::text FROM direct_path ORDER BY 1",
            &[],
        )
        .await
        .expect("read the target")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keys_go_direct_and_existing_keys_fall_back_to_the_upsert() {
    let (target, plan, admin, mut sink) = open(KeyAttrType::S).await;

    // New keys: COPY straight into the target.
    let c = sink
        .write(&[row("a", "1"), row("b", "2")])
        .await
        .expect("write new keys");
    assert_eq!(sink.last_path, Some(Path::Direct));
    assert_eq!(c, counts(2, 2, 2, 0));

    // One existing key among new ones: the COPY fails on it, the batch becomes an upsert.
    let c = sink
        .write(&[row("c", "3"), row("a", "10"), row("d", "4")])
        .await
        .expect("write a batch with an existing key");
    assert_eq!(sink.last_path, Some(Path::Upsert));
    assert_eq!(c, counts(3, 3, 2, 1));
    let before = contents(&admin).await;
    let docs: Vec<(&str, &str)> = before
        .iter()
        .map(|(k, v, _)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(docs, [("a", "10"), ("b", "2"), ("c", "3"), ("d", "4")]);

    // After a conflict the next batch is an upsert; one that finds only new keys lets the
    // following batch go direct again.
    let c = sink.write(&[row("e", "5")]).await.expect("upsert new keys");
    assert_eq!(sink.last_path, Some(Path::Upsert));
    assert_eq!(c, counts(1, 1, 1, 0));
    sink.write(&[row("f", "6")]).await.expect("direct again");
    assert_eq!(sink.last_path, Some(Path::Direct));

    // Writing what is there already changes nothing, whichever way it goes.
    let before = contents(&admin).await;
    let all: Vec<Row> = before.iter().map(|(k, v, _)| row(k, v)).collect();
    let c = sink.write(&all).await.expect("rewrite everything");
    assert_eq!(sink.last_path, Some(Path::Upsert));
    assert_eq!(c, counts(6, 6, 0, 0));
    assert_eq!(
        contents(&admin).await,
        before,
        "nothing rewritten (xmin kept)"
    );

    // A dry run's direct batch is rolled back.
    let mut dry = Sink::open_dry(&target, &plan, None, &Default::default())
        .await
        .expect("open sink");
    dry.write(&[row("z", "26")]).await.expect("dry run");
    assert_eq!(dry.last_path, Some(Path::Direct));
    assert_eq!(contents(&admin).await, before, "a dry run leaves no row");

    drop((sink, dry, admin));
    drop_database(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_equal_only_to_postgres_still_collapse_last_wins() {
    // "1.0" and "1" differ as text but are one numeric key: the direct COPY fails (23505),
    // the upsert without DISTINCT ON fails (21000), the one with it keeps the last row.
    let (target, _, admin, mut sink) = open(KeyAttrType::N).await;
    let c = sink
        .write(&[
            row("1.0", "\"first\""),
            row("2", "\"two\""),
            row("1", "\"last\""),
        ])
        .await
        .expect("write");
    assert_eq!(sink.last_path, Some(Path::UpsertDistinct));
    assert_eq!(c, counts(3, 2, 2, 0));
    let docs: Vec<(String, String)> = contents(&admin)
        .await
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    assert_eq!(
        docs,
        [
            ("1".to_string(), "\"last\"".to_string()),
            ("2".to_string(), "\"two\"".to_string())
        ]
    );
    drop((sink, admin));
    drop_database(&target).await;
}
