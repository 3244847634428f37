//! `migrate --follow`: a change deletes only rows that are still the removed item's. Items
//! that share a row (an order moved to another user: the new item put, the old one deleted; a
//! lookup table keyed by an e-mail address that passes from one item to another) end as a
//! one-shot migration of the final table ends, whether the changes come in one batch or in
//! several runs; re-applying the whole stream from a rewound checkpoint changes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType};
use aws_sdk_dynamodb::Client;
use ddb2pg::checkpoint::Checkpoint;
use ddb2pg::value::Item;

use crate::support::{
    ddb, delete_table, drop_database, item, n, new_database, pg, put, s, temp_dir, unique_name,
    Migration,
};

const TABLES: [&str; 4] = ["users", "emails", "orders", "order_lines"];

/// The example mapping plus a lookup table keyed by e-mail address.
fn mapping() -> String {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/single-table/mapping.toml"
    ))
    .expect("example mapping");
    format!(
        "{example}\n[[table]]\nname = \"emails\"\nkey = [\"email\"]\n\
         when = {{ SK = \"PROFILE\", PK = {{ begins_with = \"USER#\" }} }}\n\
         [table.columns]\nemail = {{ from = \"email\", type = \"text\" }}\n\
         user_id = {{ from = \"PK\", strip_prefix = \"USER#\", type = \"text\" }}\n"
    )
}

/// The mapping file and the migrations dir (the example's, plus the lookup table).
pub(crate) fn setup(name: &str) -> (String, String) {
    let dir = temp_dir(name);
    let map = dir.join("mapping.toml");
    std::fs::write(&map, mapping()).expect("mapping");
    let migs = dir.join("migrations");
    std::fs::create_dir_all(&migs).expect("migrations dir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/single-table/migrations");
    for f in ["001_users.sql", "002_orders.sql"] {
        std::fs::copy(example.join(f), migs.join(f)).expect("copy migration");
    }
    std::fs::write(
        migs.join("003_emails.sql"),
        "CREATE TABLE emails (email text PRIMARY KEY, user_id text NOT NULL);\n",
    )
    .expect("migration");
    (
        map.to_string_lossy().into_owned(),
        migs.to_string_lossy().into_owned(),
    )
}

async fn create_table(client: &Client, table: &str) {
    crate::stream::create_table(client, table, Some(StreamViewType::NewAndOldImages)).await;
}

fn line(sku: &str, qty: u32, price: &str) -> AttributeValue {
    AttributeValue::M(
        [
            ("sku".to_string(), s(sku)),
            ("qty".to_string(), n(&qty.to_string())),
            ("price".to_string(), n(price)),
        ]
        .into_iter()
        .collect(),
    )
}

/// Order `order_id` of user `user`, with two lines (the same for every user: a moved order).
pub(crate) fn order(user: &str, order_id: &str) -> Item {
    item(
        &format!("USER#{user}"),
        &format!("ORDER#{order_id}"),
        vec![
            ("orderId", s(order_id)),
            ("status", s("NEW")),
            ("total", n("12.50")),
            (
                "lines",
                AttributeValue::L(vec![line("A-1", 1, "2.50"), line("B-2", 2, "5.00")]),
            ),
        ],
    )
}

pub(crate) fn profile(user: &str, email: &str) -> Item {
    item(
        &format!("USER#{user}"),
        "PROFILE",
        vec![("email", s(email)), ("name", s(user))],
    )
}

pub(crate) async fn delete(client: &Client, table: &str, it: &Item) {
    let key = |k: &str| it.get(k).cloned().expect("key attribute");
    client
        .delete_item()
        .table_name(table)
        .key("PK", key("PK"))
        .key("SK", key("SK"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteItem: {}", DisplayErrorContext(&e)));
}

/// Every row of every mapped table, as jsonb text, sorted.
async fn dump(db: &str) -> BTreeMap<&'static str, Vec<String>> {
    let c = pg(db).await;
    let mut out = BTreeMap::new();
    for t in TABLES {
        let rows = c
            .query(
                &format!("SELECT to_jsonb(t)::text FROM {t} t ORDER BY 1"),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("dump {t}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        out.insert(t, rows);
    }
    out
}

/// `followed`'s mapped tables hold exactly what a one-shot migration of the table holds now.
pub(crate) async fn assert_as_one_shot(table: &str, followed: &str, map: &str, migs: &str) {
    let fresh = new_database().await;
    Migration::new(table, &fresh)
        .run(&["--mapping", map, "--migrations", migs])
        .await
        .expect_code(0);
    let (got, want) = (dump(followed).await, dump(&fresh).await);
    drop_database(&fresh).await;
    for t in TABLES {
        assert!(!want[t].is_empty(), "{t} is empty in the one-shot target");
        assert_eq!(
            got[t], want[t],
            "{t}: the followed target (left) differs from a one-shot migration (right)"
        );
    }
}

/// `migrate --follow --until-caught-up` with the mapping: exit 0, caught up.
pub(crate) async fn follow(m: &Migration, map: &str, migs: &str) {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        m.run(&[
            "--mapping",
            map,
            "--migrations",
            migs,
            "--follow",
            "--until-caught-up",
        ]),
    )
    .await
    .expect("--until-caught-up did not finish within 120 s");
    out.expect_code(0);
    assert_eq!(out.status(), "caught_up", "{}", out.stderr);
}

/// A followed table whose items start as `before`; returns (table, target, migration).
pub(crate) async fn followed(
    client: &Client,
    name: &str,
    before: &[Item],
) -> (String, String, Migration) {
    let table = unique_name(name);
    create_table(client, &table).await;
    for it in before {
        put(client, &table, it).await;
    }
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    (table, target, m)
}

// ---------------------------------------------------------------------------------------------

/// Orders moved to another user the usual DynamoDB way (put the new item, delete the old):
/// one in the same batch, one across runs (the old item deleted in a later run). Their
/// `orders` rows and `order_lines` stay, as in a one-shot migration of the final table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_moved_to_another_user_keeps_its_rows() {
    let client = ddb().await;
    let (map, migs) = setup("moved");
    let (a1, a2) = (order("00000001", "O-1"), order("00000001", "O-2"));
    let keep = order("00000003", "O-3");
    let (table, target, m) = followed(
        &client,
        "moved",
        &[
            profile("00000001", "a@x"),
            profile("00000002", "b@x"),
            a1.clone(),
            a2.clone(),
            keep,
        ],
    )
    .await;
    follow(&m, &map, &migs).await;

    // O-1 moves in one batch; O-2's new item lands in this run, its old one goes in the next.
    put(&client, &table, &order("00000002", "O-1")).await;
    delete(&client, &table, &a1).await;
    put(&client, &table, &order("00000002", "O-2")).await;
    follow(&m, &map, &migs).await;
    delete(&client, &table, &a2).await;
    follow(&m, &map, &migs).await;

    let c = pg(&target).await;
    for o in ["O-1", "O-2"] {
        let owner: Vec<String> = c
            .query("SELECT user_id FROM orders WHERE order_id = $1", &[&o])
            .await
            .expect("orders")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(owner, ["00000002"], "order {o} belongs to its new user");
        let lines: i64 = c
            .query_one(
                "SELECT count(*) FROM order_lines WHERE order_id = $1",
                &[&o],
            )
            .await
            .expect("lines")
            .get(0);
        assert_eq!(lines, 2, "order {o} keeps its lines");
    }
    assert_as_one_shot(&table, &target, &map, &migs).await;

    delete_table(&client, &table).await;
    drop(c);
    drop_database(&target).await;
}

/// An e-mail address passes from X to Y (the lookup table's row becomes Y's); then X is
/// deleted, or changes its address: Y's row stays. In one batch and across runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_row_taken_over_by_another_item_stays() {
    let client = ddb().await;
    let (map, migs) = setup("lookup");
    let users = [
        "00000001", "00000002", "00000003", "00000004", "00000005", "00000006",
    ];
    let before: Vec<Item> = users
        .iter()
        .map(|u| profile(u, &format!("{u}@x")))
        .chain([order("00000001", "O-1")])
        .collect();
    let (table, target, m) = followed(&client, "lookup", &before).await;
    follow(&m, &map, &migs).await;

    // Same batch: Y takes X's address, then X is deleted / X changes its address.
    put(&client, &table, &profile("00000002", "00000001@x")).await;
    delete(&client, &table, &profile("00000001", "00000001@x")).await;
    put(&client, &table, &profile("00000004", "00000003@x")).await;
    put(&client, &table, &profile("00000003", "other3@x")).await;
    // Across runs: Y takes it now, X goes in the next run.
    put(&client, &table, &profile("00000006", "00000005@x")).await;
    follow(&m, &map, &migs).await;
    delete(&client, &table, &profile("00000005", "00000005@x")).await;
    follow(&m, &map, &migs).await;

    let c = pg(&target).await;
    let emails: Vec<(String, String)> = c
        .query("SELECT email, user_id FROM emails ORDER BY email", &[])
        .await
        .expect("emails")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want: Vec<(String, String)> = [
        ("00000001@x", "00000002"),
        ("00000003@x", "00000004"),
        ("00000005@x", "00000006"),
        ("other3@x", "00000003"),
    ]
    .iter()
    .map(|(e, u)| (e.to_string(), u.to_string()))
    .collect();
    assert_eq!(emails, want);
    assert_as_one_shot(&table, &target, &map, &migs).await;

    delete_table(&client, &table).await;
    drop(c);
    drop_database(&target).await;
}

/// Both kinds of shared rows, then the checkpoint rewound to the start of the stream: the
/// whole stream applied again (from every item's first put) changes no row, and the target
/// still ends as a one-shot migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_the_stream_again_from_a_rewound_checkpoint_changes_nothing() {
    let client = ddb().await;
    let (map, migs) = setup("rewound");
    let a1 = order("00000001", "O-1");
    let before = [
        profile("00000001", "a@x"),
        profile("00000002", "b@x"),
        a1.clone(),
    ];
    let (table, target, m) = followed(&client, "rewound", &before).await;
    follow(&m, &map, &migs).await;
    // The new items in one run, the old ones deleted or changed in the next.
    put(&client, &table, &order("00000002", "O-1")).await;
    put(&client, &table, &profile("00000002", "a@x")).await;
    follow(&m, &map, &migs).await;
    delete(&client, &table, &a1).await;
    put(&client, &table, &profile("00000001", "c@x")).await;
    follow(&m, &map, &migs).await;
    let once = dump(&target).await;

    let path = m.checkpoint_path().expect("a checkpoint file");
    let mut cp = Checkpoint::load(&path)
        .expect("checkpoint")
        .expect("checkpoint exists");
    let stream = cp.stream.as_mut().expect("the checkpoint follows a stream");
    assert!(stream.shards.values().any(|s| s.seq.is_some()), "applied");
    for s in stream.shards.values_mut() {
        s.seq = None;
        s.closed = false;
    }
    cp.save(&path).expect("save the rewound checkpoint");
    follow(&m, &map, &migs).await;
    assert_eq!(dump(&target).await, once, "re-applying changed rows");
    assert_as_one_shot(&table, &target, &map, &migs).await;

    delete_table(&client, &table).await;
    drop_database(&target).await;
}
