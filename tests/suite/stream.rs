//! `migrate --follow`: after the full load, the table's DynamoDB Stream is applied until stopped
//! (`--until-caught-up`, SIGTERM). Each change replaces the item's rows exactly: rows the old
//! image produced and the new one does not are deleted (shrunken lists, an item that moved
//! between table rules), a REMOVE deletes all of them. kill -9 and resume is exact; a replaced
//! stream stops the run; deletes PostgreSQL refuses go to the rejects file. Incremental exports
//! follow the same rules.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use ddb2pg::value::Item;
use serde_json::{json, Value};

use crate::support::harness::{rejects_in, run};
use crate::support::{
    assert_target_is, ddb, delete_table, drop_database, item, n, new_database, pg, put, s,
    services, signal, temp_dir, unique_name, Migration, Outcome, Running,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

pub(crate) fn example(file: &str) -> String {
    format!(
        "{}/examples/single-table/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

pub(crate) fn mapping() -> String {
    example("mapping.toml")
}

pub(crate) fn migrations() -> String {
    example("migrations")
}

/// Create `table` (PK, SK strings, on demand), with a stream of `view` when given.
pub(crate) async fn create_table(client: &Client, table: &str, view: Option<StreamViewType>) {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute definition")
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .expect("key schema element")
    };
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("PK"))
        .attribute_definitions(attr("SK"))
        .key_schema(key("PK", KeyType::Hash))
        .key_schema(key("SK", KeyType::Range));
    if let Some(v) = view {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(v)
                .build()
                .expect("stream specification"),
        );
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("CreateTable {table}: {}", DisplayErrorContext(&e)));
    wait_active(client, table).await;
}

/// A table with a stream of `view` holding sample items `0..count` of `seed`; returns its
/// name and the items.
pub(crate) async fn stream_table(
    client: &Client,
    prefix: &str,
    seed: u64,
    count: u64,
    view: Option<StreamViewType>,
) -> (String, Vec<Item>) {
    let table = unique_name(prefix);
    create_table(client, &table, view).await;
    // sample::load creates the table only when it is missing: it keeps ours, stream included.
    ddb2pg::sample::load(client, &table, seed, count)
        .await
        .unwrap_or_else(|e| panic!("load {count} sample items into {table}: {e}"));
    let items = (0..count).map(|i| ddb2pg::sample::item(seed, i)).collect();
    (table, items)
}

pub(crate) async fn wait_active(client: &Client, table: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeTable {table}: {}", DisplayErrorContext(&e)));
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "table {table} not ACTIVE after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The table's stream: (enabled, view type, latest stream ARN).
pub(crate) async fn stream_of(
    client: &Client,
    table: &str,
) -> (bool, Option<StreamViewType>, Option<String>) {
    let d = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeTable {table}: {}", DisplayErrorContext(&e)));
    let t = d.table().expect("table description");
    let spec = t.stream_specification();
    (
        spec.map(|s| s.stream_enabled()).unwrap_or(false),
        spec.and_then(|s| s.stream_view_type()).cloned(),
        t.latest_stream_arn().map(str::to_string),
    )
}

/// Turn the table's stream on (with `view`) or off.
async fn set_stream(client: &Client, table: &str, view: Option<StreamViewType>) {
    let spec = match view {
        Some(v) => StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(v)
            .build(),
        None => StreamSpecification::builder().stream_enabled(false).build(),
    }
    .expect("stream specification");
    client
        .update_table()
        .table_name(table)
        .stream_specification(spec)
        .send()
        .await
        .unwrap_or_else(|e| panic!("UpdateTable {table} stream: {}", DisplayErrorContext(&e)));
    wait_active(client, table).await;
}

pub(crate) fn key_of(it: &Item) -> (String, String) {
    let get = |k: &str| match it.get(k) {
        Some(AttributeValue::S(v)) => v.clone(),
        other => panic!("key {k}: {other:?}"),
    };
    (get("PK"), get("SK"))
}

pub(crate) fn str_attr(it: &Item, k: &str) -> String {
    match it.get(k) {
        Some(AttributeValue::S(v)) | Some(AttributeValue::N(v)) => v.clone(),
        other => panic!("attribute {k}: {other:?}"),
    }
}

pub(crate) fn lines_len(it: &Item) -> usize {
    match it.get("lines") {
        Some(AttributeValue::L(l)) => l.len(),
        _ => 0,
    }
}

/// One element of an order's `lines`.
pub(crate) fn line(sku: &str, qty: u32, price: &str) -> AttributeValue {
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

pub(crate) fn with_lines(mut it: Item, lines: Vec<AttributeValue>) -> Item {
    it.insert("lines".into(), AttributeValue::L(lines));
    it
}

/// The first `lines[..keep]` of an order.
pub(crate) fn truncated(it: &Item, keep: usize) -> Item {
    let Some(AttributeValue::L(l)) = it.get("lines") else {
        panic!("an order with lines: {it:?}")
    };
    with_lines(it.clone(), l[..keep].to_vec())
}

/// An order item for user `user` (8 digits) with its own order id and `lines`.
pub(crate) fn order(user: &str, order_id: &str, status: &str, lines: Vec<AttributeValue>) -> Item {
    with_lines(
        item(
            &format!("USER#{user}"),
            &format!("ORDER#{order_id}"),
            vec![
                ("orderId", s(order_id)),
                ("status", s(status)),
                ("total", n("12.34")),
            ],
        ),
        lines,
    )
}

/// A profile item for user `user`.
pub(crate) fn profile(user: &str, email: &str, name: &str) -> Item {
    item(
        &format!("USER#{user}"),
        "PROFILE",
        vec![
            ("email", s(email)),
            ("name", s(name)),
            ("age", n("33")),
            ("score", n("1.50")),
            ("active", AttributeValue::Bool(true)),
            ("createdAt", s("2024-05-06T10:00:00Z")),
            ("tags", AttributeValue::Ss(vec!["x".into(), "y".into()])),
        ],
    )
}

pub(crate) async fn delete(client: &Client, table: &str, pk: &str, sk: &str) {
    client
        .delete_item()
        .table_name(table)
        .key("PK", s(pk))
        .key("SK", s(sk))
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteItem {pk}/{sk}: {}", DisplayErrorContext(&e)));
}

pub(crate) async fn delete_item(client: &Client, table: &str, it: &Item) {
    let (pk, sk) = key_of(it);
    delete(client, table, &pk, &sk).await;
}

/// UpdateItem: a profile's email and name change.
pub(crate) async fn update_profile(
    client: &Client,
    table: &str,
    pk: &str,
    email: &str,
    name: &str,
) {
    client
        .update_item()
        .table_name(table)
        .key("PK", s(pk))
        .key("SK", s("PROFILE"))
        .update_expression("SET email = :e, #n = :n")
        .expression_attribute_names("#n", "name")
        .expression_attribute_values(":e", s(email))
        .expression_attribute_values(":n", s(name))
        .send()
        .await
        .unwrap_or_else(|e| panic!("UpdateItem {pk}: {}", DisplayErrorContext(&e)));
}

/// UpdateItem with an arbitrary expression on (pk, sk); `#name` in it is attribute `name`.
async fn update(
    client: &Client,
    table: &str,
    pk: &str,
    sk: &str,
    expr: &str,
    values: Vec<(&str, AttributeValue)>,
) {
    let mut req = client
        .update_item()
        .table_name(table)
        .key("PK", s(pk))
        .key("SK", s(sk))
        .update_expression(expr);
    for (k, v) in values {
        req = req.expression_attribute_values(k, v);
    }
    // `#name` placeholders stand for the attribute of that name (many names are reserved).
    for name in expr.split(|c: char| !(c == '#' || c.is_alphanumeric() || c == '_')) {
        if let Some(attr) = name.strip_prefix('#') {
            req = req.expression_attribute_names(name, attr);
        }
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("UpdateItem {pk}/{sk} {expr}: {}", DisplayErrorContext(&e)));
}

/// Every item of the table (a full Scan), for the record of what the source ended as.
pub(crate) async fn scan_all(client: &Client, table: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let mut start: Option<std::collections::HashMap<String, AttributeValue>> = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap_or_else(|e| panic!("Scan {table}: {}", DisplayErrorContext(&e)));
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return out,
        }
    }
}

/// The checkpoint file as raw JSON (the run replaces it atomically: whole or absent).
pub(crate) fn checkpoint_json(m: &Migration) -> Option<Value> {
    let p = m.checkpoint_path()?;
    let bytes = std::fs::read(&p).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "checkpoint {} is not JSON beside a live run ({e}): {}",
            p.display(),
            String::from_utf8_lossy(&bytes)
        )
    }))
}

/// The checkpoint's stream shards: shard id -> last applied sequence number.
pub(crate) fn stream_seqs(m: &Migration) -> BTreeMap<String, Option<String>> {
    checkpoint_json(m)
        .and_then(|cp| cp["stream"]["shards"].as_object().cloned())
        .map(|shards| {
            shards
                .into_iter()
                .map(|(id, st)| (id, st["seq"].as_str().map(str::to_string)))
                .collect()
        })
        .unwrap_or_default()
}

/// Wait (at most `secs`) for `cond`; false when the time ran out. A run that ends first is a
/// failure: its outcome is shown.
pub(crate) async fn wait_while_running(
    running: &mut Running,
    what: &str,
    secs: u64,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if running.exited() {
            let stderr = std::fs::read_to_string(&running.stderr_path).unwrap_or_default();
            panic!("the --follow run ended while waiting for {what}; stderr:\n{stderr}");
        }
        if Instant::now() >= deadline {
            eprintln!("note: no {what} within {secs} s; going on");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every row of `table`, as jsonb text, sorted: two databases compare row for row.
pub(crate) async fn dump(db: &str, table: &str) -> Vec<String> {
    pg(db)
        .await
        .query(
            &format!("SELECT to_jsonb(t)::text AS r FROM {table} t ORDER BY 1"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("dump {table}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The tables of `got` and `want` hold the same rows; the differences are shown otherwise.
pub(crate) async fn assert_same_rows(got: &str, want: &str, tables: &[&str]) {
    let mut problems = Vec::new();
    for t in tables {
        let a = dump(got, t).await;
        let b = dump(want, t).await;
        if a == b {
            assert!(!a.is_empty(), "{t} is empty in both databases");
            continue;
        }
        let sa: BTreeSet<&String> = a.iter().collect();
        let sb: BTreeSet<&String> = b.iter().collect();
        let extra: Vec<_> = sa.difference(&sb).take(8).collect();
        let missing: Vec<_> = sb.difference(&sa).take(8).collect();
        problems.push(format!(
            "{t}: {} rows followed, {} rows from the one-shot migration\n  only in the followed \
             target: {extra:#?}\n  only in the one-shot target: {missing:#?}",
            a.len(),
            b.len()
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

pub(crate) async fn query_strings(db: &str, sql: &str) -> Vec<String> {
    pg(db)
        .await
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

pub(crate) async fn count(db: &str, sql: &str) -> i64 {
    pg(db)
        .await
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The stream fields of a `--follow` report are numbers.
fn assert_stream_report(out: &Outcome) {
    for f in [
        "changes_inserted",
        "changes_modified",
        "changes_removed",
        "shards_open",
        "shards_closed",
        "lag_s",
    ] {
        assert!(
            out.report()[f].is_number(),
            "report field {f} is not a number: {}",
            out.report()
        );
    }
}

/// The checkpoint's stream section: the table's stream ARN, a start time, shards with parent,
/// last applied sequence number and closed flag.
async fn assert_stream_checkpoint(m: &Migration, client: &Client) {
    let cp = checkpoint_json(m).expect("a checkpoint file");
    let st = &cp["stream"];
    let (_, _, arn) = stream_of(client, &m.table).await;
    assert_eq!(
        st["arn"].as_str(),
        arn.as_deref(),
        "checkpoint stream ARN: {st}"
    );
    assert!(st["follow_from"].is_u64(), "follow_from: {st}");
    let shards = st["shards"]
        .as_object()
        .expect("stream.shards is an object");
    assert!(!shards.is_empty(), "no shards in the checkpoint: {st}");
    for (id, sh) in shards {
        assert!(sh.get("parent").is_some(), "shard {id} has no parent: {sh}");
        assert!(
            sh["seq"].is_null() || sh["seq"].is_string(),
            "shard {id} seq: {sh}"
        );
        assert!(sh["closed"].is_boolean(), "shard {id} closed: {sh}");
    }
    assert!(
        shards.values().any(|sh| sh["seq"].is_string()),
        "no shard records an applied sequence number: {st}"
    );
}

pub(crate) fn verify_args(table: &str, db: &str, mapping: &str) -> Vec<String> {
    [
        "verify",
        "--table",
        table,
        "--target",
        db,
        "--mapping",
        mapping,
        "--endpoint-url",
        &services().endpoint,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Sample items of `seed` among `range` that are orders with `lines` in `min..=max`, not in
/// `taken`; takes the first.
pub(crate) fn pick_order(
    seed: u64,
    range: std::ops::Range<u64>,
    min: usize,
    max: usize,
    taken: &mut BTreeSet<u64>,
) -> Item {
    for i in range.clone() {
        if !(1..=3).contains(&(i % 5)) || taken.contains(&i) {
            continue;
        }
        let it = ddb2pg::sample::item(seed, i);
        let l = lines_len(&it);
        if (min..=max).contains(&l) {
            taken.insert(i);
            return it;
        }
    }
    panic!("no order with {min}..={max} lines in {range:?} (seed {seed})")
}

// ---------------------------------------------------------------------------------------------
// 1. Follow through kill -9 and SIGTERM: the end equals a one-shot migration of the final table.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_table_ends_equal_to_a_one_shot_migration() {
    const SEED: u64 = 7;
    const N: u64 = 600;
    let client = ddb().await;
    let (table, _) = stream_table(
        &client,
        "follow",
        SEED,
        N,
        Some(StreamViewType::NewAndOldImages),
    )
    .await;
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let (map, migs) = (mapping(), migrations());
    let follow = [
        "--mapping",
        map.as_str(),
        "--migrations",
        migs.as_str(),
        "--follow",
        "--batch-size",
        "50",
    ];
    let item_of = |i: u64| ddb2pg::sample::item(SEED, i);
    let mut taken = BTreeSet::new();

    // Run 1: load and follow, changed while it runs; kill -9 once the stream shows progress.
    let mut running = m.spawn(&follow);
    // Changes of every kind while the run loads (or already follows).
    let shrink = pick_order(SEED, 0..N, 3, 4, &mut taken);
    put(&client, &table, &truncated(&shrink, 1)).await;
    let grow = pick_order(SEED, 0..N, 1, 1, &mut taken);
    let grown = with_lines(
        grow.clone(),
        (0..5)
            .map(|k| line(&format!("GROW-{k}"), k + 1, &format!("{k}.25")))
            .collect(),
    );
    put(&client, &table, &grown).await;
    // Deleted: a profile, an order with lines, an event.
    delete_item(&client, &table, &item_of(15)).await;
    let gone = pick_order(SEED, 0..N, 2, 4, &mut taken);
    delete_item(&client, &table, &gone).await;
    delete_item(&client, &table, &item_of(19)).await;
    // Deleted, then put again with other content (fewer, other lines; another status).
    let again = pick_order(SEED, 0..N, 3, 4, &mut taken);
    delete_item(&client, &table, &again).await;
    let mut reborn = with_lines(again.clone(), vec![line("REBORN-1", 2, "9.99")]);
    reborn.insert("status".into(), s("cancelled"));
    reborn.insert("total".into(), n("9.99"));
    put(&client, &table, &reborn).await;
    // New items: a user and two orders.
    put(
        &client,
        &table,
        &profile("90000000", "new@example.com", "Neu"),
    )
    .await;
    put(
        &client,
        &table,
        &order(
            "90000000",
            "O-new-1",
            "new",
            vec![line("N-1", 1, "1.00"), line("N-2", 2, "2.00")],
        ),
    )
    .await;
    put(
        &client,
        &table,
        &order("90000000", "O-new-2", "paid", vec![line("N-3", 3, "3.00")]),
    )
    .await;
    // Profiles updated in place.
    for u in [5u64, 6, 30] {
        update_profile(
            &client,
            &table,
            &format!("USER#{u:08}"),
            &format!("changed{u}@example.com"),
            "Changed",
        )
        .await;
    }
    let progressed = wait_while_running(
        &mut running,
        "stream progress in the checkpoint",
        30,
        || stream_seqs(&m).values().any(Option::is_some),
    )
    .await;
    let out = running.kill9().await;
    assert_eq!(out.code, None, "killed by SIGKILL; stderr:\n{}", out.stderr);
    let at_kill = stream_seqs(&m);
    eprintln!("kill -9 (stream progress seen: {progressed}); shards {at_kill:?}");

    // Changed while nothing runs.
    let empty = pick_order(SEED, 0..N, 2, 4, &mut taken);
    put(&client, &table, &with_lines(empty.clone(), vec![])).await;
    put(&client, &table, &truncated(&grown, 2)).await;
    let gone2 = pick_order(SEED, 0..N, 1, 4, &mut taken);
    delete_item(&client, &table, &gone2).await;
    // `lines` removed altogether: the order has no line rows any more.
    let no_lines = pick_order(SEED, 0..N, 2, 4, &mut taken);
    let (nl_pk, nl_sk) = key_of(&no_lines);
    update(&client, &table, &nl_pk, &nl_sk, "REMOVE #lines", vec![]).await;
    put(
        &client,
        &table,
        &order(
            "90000000",
            "O-new-1",
            "shipped",
            vec![line("N-9", 9, "9.00")],
        ),
    )
    .await;
    // The deleted profile comes back, different.
    put(
        &client,
        &table,
        &profile("00000003", "back@example.com", "Back"),
    )
    .await;
    let mut refunded = reborn.clone();
    refunded.insert("status".into(), s("refunded"));
    put(&client, &table, &refunded).await;

    // Run 2: resumes; SIGTERM once it applied something new -> 130, interrupted.
    let mut running = m.spawn(&follow);
    let moved = wait_while_running(
        &mut running,
        "new stream progress after the resume",
        30,
        || {
            let now = stream_seqs(&m);
            !now.is_empty() && now != at_kill
        },
    )
    .await;
    eprintln!("SIGTERM (new stream progress seen: {moved})");
    signal(running.pid(), "TERM");
    let out = tokio::time::timeout(Duration::from_secs(60), running.wait())
        .await
        .expect("the run did not stop within 60 s of SIGTERM");
    out.expect_code(130);
    assert_eq!(out.status(), "interrupted");
    assert_stream_report(&out);

    // One change of each kind after the interruption: the last run applies them.
    put(
        &client,
        &table,
        &profile("90000001", "late@example.com", "Late"),
    )
    .await;
    update_profile(&client, &table, "USER#00000040", "late40@example.com", "L").await;
    let gone3 = pick_order(SEED, 0..N, 1, 4, &mut taken);
    delete_item(&client, &table, &gone3).await;

    // Run 3: to the end of the stream.
    let mut until = follow.to_vec();
    until.push("--until-caught-up");
    let out = tokio::time::timeout(Duration::from_secs(120), m.run(&until))
        .await
        .expect("--until-caught-up did not finish within 120 s");
    out.expect_code(0);
    assert_eq!(out.status(), "caught_up");
    assert_stream_report(&out);
    for f in ["changes_inserted", "changes_modified", "changes_removed"] {
        assert!(out.num(f) > 0, "{f} = 0: {}", out.report());
    }
    assert_stream_checkpoint(&m, &client).await;

    // The same table, migrated in one go into a fresh database.
    let fresh = new_database().await;
    let one_shot = Migration::new(&table, &fresh);
    one_shot
        .run(&["--mapping", &map, "--migrations", &migs])
        .await
        .expect_code(0);
    assert_same_rows(&target, &fresh, &["users", "orders", "order_lines"]).await;

    // Spot checks, against what the source holds.
    let oid = |it: &Item| str_attr(it, "orderId");
    let lines_of = |o: String| {
        let target = target.clone();
        async move {
            query_strings(
                &target,
                &format!("SELECT sku FROM order_lines WHERE order_id = '{o}' ORDER BY line_no"),
            )
            .await
        }
    };
    assert_eq!(lines_of(oid(&shrink)).await.len(), 1, "shrunk to one line");
    assert_eq!(
        lines_of(oid(&grow)).await,
        ["GROW-0", "GROW-1"],
        "grown to 5, then shrunk to 2"
    );
    assert_eq!(lines_of(oid(&empty)).await.len(), 0, "emptied list");
    assert_eq!(lines_of(oid(&no_lines)).await.len(), 0, "list removed");
    assert_eq!(lines_of(oid(&again)).await, ["REBORN-1"]);
    assert_eq!(lines_of("O-new-1".into()).await, ["N-9"]);
    for g in [&gone, &gone2, &gone3] {
        assert_eq!(lines_of(oid(g)).await.len(), 0, "deleted order {}", oid(g));
        assert_eq!(
            count(
                &target,
                &format!("SELECT count(*) FROM orders WHERE order_id = '{}'", oid(g))
            )
            .await,
            0
        );
    }
    let statuses = query_strings(
        &target,
        &format!(
            "SELECT status FROM orders WHERE order_id = '{}'",
            oid(&again)
        ),
    )
    .await;
    assert_eq!(statuses, ["refunded"]);
    assert_eq!(
        query_strings(
            &target,
            "SELECT email FROM users WHERE user_id IN ('00000003', '00000006', '90000001') \
             ORDER BY user_id"
        )
        .await,
        [
            "back@example.com",
            "changed6@example.com",
            "late@example.com"
        ]
    );
    // Sanity: the source has what the target has (users and orders counted by scan).
    let source = scan_all(&client, &table).await;
    let profiles = source.iter().filter(|it| key_of(it).1 == "PROFILE").count() as i64;
    assert_eq!(count(&target, "SELECT count(*) FROM users").await, profiles);

    let v = run(&verify_args(&table, &target, &map));
    assert_eq!(v.code, 0, "verify after --until-caught-up: {}", v.stderr);

    delete_table(&client, &table).await;
    drop_database(&target).await;
    drop_database(&fresh).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Items routed by a non-key attribute move between tables: nothing stays behind.
// ---------------------------------------------------------------------------------------------

const KIND_MAPPING: &str = r#"
unrouted = "skip"

[[table]]
name = "a_items"
key  = ["id"]
when = { kind = "a" }
[table.columns]
id  = { from = "PK", type = "text" }
val = { from = "val", type = "integer" }

[[table]]
name = "b_items"
key  = ["id"]
when = { kind = "b" }
[table.columns]
id  = { from = "PK", type = "text" }
val = { from = "val", type = "integer" }
"#;

const KIND_SQL: &str = "CREATE TABLE a_items (id text PRIMARY KEY, val integer NOT NULL);\n\
                        CREATE TABLE b_items (id text PRIMARY KEY, val integer NOT NULL);\n";

fn kind_item(id: u32, kind: &str, val: i64) -> Item {
    item(
        &format!("I#{id}"),
        "X",
        vec![("kind", s(kind)), ("val", n(&val.to_string()))],
    )
}

async fn rows_of(db: &str, table: &str) -> Vec<(String, i32)> {
    pg(db)
        .await
        .query(&format!("SELECT id, val FROM {table} ORDER BY id"), &[])
        .await
        .unwrap_or_else(|e| panic!("rows of {table}: {e}"))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn expect_rows(v: &[(u32, i32)]) -> Vec<(String, i32)> {
    let mut out: Vec<(String, i32)> = v.iter().map(|(i, x)| (format!("I#{i}"), *x)).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_that_move_between_table_rules_leave_no_rows_behind() {
    let client = ddb().await;
    let table = unique_name("kinds");
    create_table(&client, &table, Some(StreamViewType::NewAndOldImages)).await;
    let dir = temp_dir("kinds");
    let map = dir.join("kinds.toml");
    std::fs::write(&map, KIND_MAPPING).expect("mapping");
    let migs = dir.join("migrations");
    std::fs::create_dir_all(&migs).expect("migrations dir");
    std::fs::write(migs.join("001_items.sql"), KIND_SQL).expect("migration");
    let (map, migs) = (
        map.to_string_lossy().to_string(),
        migs.to_string_lossy().to_string(),
    );

    for (id, kind, val) in [
        (1, "a", 1),
        (2, "b", 2),
        (3, "a", 3),
        (4, "b", 4),
        (5, "a", 5),
        (6, "c", 6),
        (7, "a", 7),
        (8, "a", 8),
        (9, "a", 9),
    ] {
        put(&client, &table, &kind_item(id, kind, val)).await;
    }
    // Before the first run: history in the stream that the scan does not see.
    put(&client, &table, &kind_item(9, "b", 90)).await;
    put(&client, &table, &kind_item(10, "a", 10)).await;
    put(&client, &table, &kind_item(10, "c", 100)).await;

    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let args = [
        "--mapping",
        map.as_str(),
        "--migrations",
        migs.as_str(),
        "--follow",
        "--until-caught-up",
    ];
    let out = m.run(&args).await;
    out.expect_code(0);
    assert_eq!(out.status(), "caught_up");
    assert_eq!(
        rows_of(&target, "a_items").await,
        expect_rows(&[(1, 1), (3, 3), (5, 5), (7, 7), (8, 8)]),
        "a_items after the first run"
    );
    assert_eq!(
        rows_of(&target, "b_items").await,
        expect_rows(&[(2, 2), (4, 4), (9, 90)]),
        "b_items after the first run"
    );

    // Kinds change: a -> b, b -> a, to a kind no table takes, back and forth, from nowhere.
    put(&client, &table, &kind_item(1, "b", 11)).await;
    update(
        &client,
        &table,
        "I#2",
        "X",
        "SET kind = :k, val = :v",
        vec![(":k", s("a")), (":v", n("12"))],
    )
    .await;
    put(&client, &table, &kind_item(3, "c", 13)).await;
    update(
        &client,
        &table,
        "I#4",
        "X",
        "SET kind = :k",
        vec![(":k", s("zzz"))],
    )
    .await;
    put(&client, &table, &kind_item(5, "b", 55)).await;
    put(&client, &table, &kind_item(5, "a", 15)).await;
    put(&client, &table, &kind_item(6, "a", 16)).await;
    put(&client, &table, &kind_item(8, "b", 18)).await;
    delete(&client, &table, "I#8", "X").await;
    put(&client, &table, &kind_item(9, "a", 19)).await;
    // `kind` removed altogether: no rule matches any more.
    update(&client, &table, "I#9", "X", "REMOVE kind", vec![]).await;
    put(&client, &table, &kind_item(11, "b", 21)).await;

    let out = m.run(&args).await;
    out.expect_code(0);
    assert_eq!(out.status(), "caught_up");
    assert_eq!(
        rows_of(&target, "a_items").await,
        expect_rows(&[(2, 12), (5, 15), (6, 16), (7, 7)]),
        "a_items holds exactly the items whose final kind is a"
    );
    assert_eq!(
        rows_of(&target, "b_items").await,
        expect_rows(&[(1, 11), (11, 21)]),
        "b_items holds exactly the items whose final kind is b"
    );

    delete_table(&client, &table).await;
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 3. A delete PostgreSQL refuses goes to the rejects file; the other changes land; exit 4.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delete_is_rejected_and_the_rest_lands() {
    const SEED: u64 = 3;
    let client = ddb().await;
    let (table, _) = stream_table(
        &client,
        "refused",
        SEED,
        50,
        Some(StreamViewType::NewAndOldImages),
    )
    .await;
    // The example's migrations plus a table ddb2pg does not write, referencing users.
    let dir = temp_dir("refused");
    let migs = dir.join("migrations");
    std::fs::create_dir_all(&migs).expect("migrations dir");
    for f in ["001_users.sql", "002_orders.sql"] {
        std::fs::copy(Path::new(&migrations()).join(f), migs.join(f)).expect("copy migration");
    }
    std::fs::write(
        migs.join("003_user_notes.sql"),
        "CREATE TABLE user_notes (note_id serial PRIMARY KEY, \
         user_id text NOT NULL REFERENCES users (user_id), note text);\n",
    )
    .expect("migration");
    let (map, migs) = (mapping(), migs.to_string_lossy().to_string());
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let args = [
        "--mapping",
        map.as_str(),
        "--migrations",
        migs.as_str(),
        "--follow",
        "--until-caught-up",
    ];
    let out = m.run(&args).await;
    out.expect_code(0);
    pg(&target)
        .await
        .batch_execute("INSERT INTO user_notes (user_id, note) VALUES ('00000001', 'keep me')")
        .await
        .expect("insert the note");

    // User 1's profile is referenced: its delete is refused. The others are not.
    let order3 = pick_order(SEED, 15..20, 1, 4, &mut BTreeSet::new());
    let order3_id = str_attr(&order3, "orderId");
    delete(&client, &table, "USER#00000001", "PROFILE").await;
    delete(&client, &table, "USER#00000002", "PROFILE").await;
    delete_item(&client, &table, &order3).await;
    delete_item(&client, &table, &ddb2pg::sample::item(SEED, 24)).await; // an event
    put(
        &client,
        &table,
        &profile("90000000", "new@example.com", "Neu"),
    )
    .await;
    update_profile(&client, &table, "USER#00000004", "four@example.com", "Four").await;

    let out = m.run(&args).await;
    out.expect_code(4);
    let rejects = rejects_in(&m.checkpoint_dir);
    let refused: Vec<&Value> = rejects
        .iter()
        .filter(|r| r.to_string().contains("00000001"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "one reject for user 1's profile: {rejects:#?}"
    );
    let reason = refused[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        reason.contains("23503") || reason.contains("foreign key"),
        "the reason names the foreign key refusal: {}",
        refused[0]
    );
    assert_eq!(rejects.len(), 1, "nothing else rejected: {rejects:#?}");

    let users = query_strings(
        &target,
        "SELECT user_id FROM users WHERE user_id IN ('00000001', '00000002', '90000000') \
         ORDER BY user_id",
    )
    .await;
    assert_eq!(
        users,
        ["00000001", "90000000"],
        "user 1 kept (refused), user 2 deleted, the new user inserted"
    );
    assert_eq!(
        query_strings(
            &target,
            "SELECT email FROM users WHERE user_id = '00000004'"
        )
        .await,
        ["four@example.com"]
    );
    assert_eq!(
        count(
            &target,
            &format!("SELECT count(*) FROM orders WHERE order_id = '{order3_id}'")
        )
        .await,
        0,
        "the deleted order"
    );
    assert_eq!(
        count(
            &target,
            &format!("SELECT count(*) FROM order_lines WHERE order_id = '{order3_id}'")
        )
        .await,
        0,
        "the deleted order's lines"
    );
    assert_eq!(
        count(&target, "SELECT count(*) FROM user_notes").await,
        1,
        "the referencing row is untouched"
    );

    delete_table(&client, &table).await;
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 4. The stream was disabled and enabled again (a new ARN): the run stops, data may be missing.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_was_replaced_stops_with_data_may_have_been_missed() {
    let client = ddb().await;
    let (table, mut items) = stream_table(
        &client,
        "replaced",
        5,
        40,
        Some(StreamViewType::NewAndOldImages),
    )
    .await;
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let args = ["--follow", "--until-caught-up"];
    let out = m.run(&args).await;
    out.expect_code(0);
    assert_eq!(out.status(), "caught_up");
    let first_arn = checkpoint_json(&m).expect("checkpoint")["stream"]["arn"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no stream.arn in the checkpoint"));

    set_stream(&client, &table, None).await;
    let off = item(
        "USER#77777777",
        "PROFILE",
        vec![("email", s("off@example.com"))],
    );
    put(&client, &table, &off).await; // written while no stream records it
    items.push(off);
    tokio::time::sleep(Duration::from_millis(50)).await; // stream labels are timestamps (ms)
    set_stream(&client, &table, Some(StreamViewType::NewAndOldImages)).await;
    let (on, _, new_arn) = stream_of(&client, &table).await;
    assert!(on, "the stream is enabled again");
    assert_ne!(
        new_arn.as_deref(),
        Some(first_arn.as_str()),
        "precondition: re-enabling made a new stream"
    );
    let after = item(
        "USER#88888888",
        "PROFILE",
        vec![("email", s("on@example.com"))],
    );
    put(&client, &table, &after).await;
    items.push(after);

    let out = m.run(&args).await;
    out.expect_code(1);
    assert!(
        out.stderr.contains("data may have been missed") && out.stderr.contains("--restart"),
        "stderr: {}",
        out.stderr
    );

    // What the message advises: start over, on the new stream.
    let mut restart = args.to_vec();
    restart.push("--restart");
    let out = m.run(&restart).await;
    out.expect_code(0);
    assert_eq!(out.status(), "caught_up");
    assert_target_is(&pg(&target).await, &m.pg_table(), &items).await;

    delete_table(&client, &table).await;
    drop_database(&target).await;
}

/// Through a proxy in front of DynamoDB Local: every third GetRecords answers
/// ExpiredIteratorException (renewed from the last sequence number, nothing lost); then every
/// GetRecords answers TrimmedDataAccessException: exit 1, "data may have been missed", and the
/// checkpoint's shard positions do not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_iterators_are_renewed_and_a_trimmed_shard_stops_the_follower() {
    use crate::support::fault_proxy::{self, Faults};
    let client = ddb().await;
    let (table, mut items) = stream_table(
        &client,
        "trimmed",
        9,
        30,
        Some(StreamViewType::NewAndOldImages),
    )
    .await;
    let target = new_database().await;
    let proxy = fault_proxy::start(
        &crate::support::services().endpoint,
        Faults {
            expire_every: 3,
            ..Faults::none()
        },
    )
    .await;
    let m = Migration::new(&table, &target);
    // Migration::command names the real endpoint: this run goes through the proxy instead.
    let run_through = |url: &str| {
        let out = Migration::bare_command()
            .current_dir(&m.dir)
            .arg("migrate")
            .args([
                "--table",
                &table,
                "--target",
                &target,
                "--endpoint-url",
                url,
            ])
            .arg("--checkpoint-dir")
            .arg(&m.checkpoint_dir)
            .args(["--progress", "none", "--batch-size", "7"])
            .args(["--follow", "--until-caught-up"])
            .output()
            .expect("run ddb2pg");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Changes after the load, recorded by the stream: 20 new items.
    for i in 0..20 {
        let it = item(
            &format!("USER#9{i:03}"),
            "PROFILE",
            vec![("email", s("e@x.io"))],
        );
        put(&client, &table, &it).await;
        items.push(it);
    }
    let (code, stderr) = run_through(&proxy.url);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(
        proxy
            .stats
            .expired
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the proxy expired no iterator"
    );
    assert_target_is(&pg(&target).await, &m.pg_table(), &items).await;
    let before = stream_seqs(&m);
    assert!(before.values().any(Option::is_some), "{before:?}");

    let trimming = fault_proxy::start(
        &crate::support::services().endpoint,
        Faults {
            trim_after: Some(0),
            ..Faults::none()
        },
    )
    .await;
    put(
        &client,
        &table,
        &item("USER#9999", "PROFILE", vec![("email", s("late@x.io"))]),
    )
    .await;
    let (code, stderr) = run_through(&trimming.url);
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("data may have been missed")
            && stderr.contains("--restart")
            && stderr.contains("24-hour retention"),
        "stderr: {stderr}"
    );
    assert_eq!(
        stream_seqs(&m),
        before,
        "a refused read moved the checkpoint"
    );
    delete_table(&client, &table).await;
    drop_database(&target).await;
}

/// A change whose new rows PostgreSQL refuses (a line with qty 0 against the example's CHECK)
/// must not leave the item's old rows behind: a one-shot load of the final table has none of
/// them either. Exit 4, the rejects file names the refusal, and the targets are equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_leaves_none_of_the_items_old_rows() {
    let client = ddb().await;
    let table = unique_name("refusedw");
    create_table(&client, &table, Some(StreamViewType::NewAndOldImages)).await;
    let keep = order("00000001", "keep-1", "NEW", vec![line("a", 1, "1.00")]);
    let bad = order(
        "00000002",
        "bad-2",
        "NEW",
        vec![line("a", 1, "1.00"), line("b", 2, "2.00")],
    );
    put(&client, &table, &keep).await;
    put(&client, &table, &bad).await;
    let (map, migs) = (mapping(), migrations());
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let args = [
        "--mapping",
        map.as_str(),
        "--migrations",
        migs.as_str(),
        "--follow",
        "--until-caught-up",
    ];
    m.run(&args).await.expect_code(0);
    assert_eq!(count(&target, "SELECT count(*) FROM order_lines").await, 3);
    // The order is paid and loses a line, but its one line now has qty 0: refused.
    put(
        &client,
        &table,
        &order("00000002", "bad-2", "PAID", vec![line("z", 0, "9.00")]),
    )
    .await;
    put(
        &client,
        &table,
        &order("00000001", "keep-1", "PAID", vec![line("a", 5, "1.00")]),
    )
    .await;
    let out = m.run(&args).await;
    out.expect_code(4);
    let rejects = rejects_in(&m.checkpoint_dir);
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert!(
        rejects[0].to_string().contains("qty"),
        "the reject names the refusal: {}",
        rejects[0]
    );
    assert_eq!(
        count(
            &target,
            "SELECT count(*) FROM orders WHERE order_id = 'bad-2'"
        )
        .await,
        0,
        "the refused order's old row stayed"
    );
    assert_eq!(
        count(
            &target,
            "SELECT count(*) FROM order_lines WHERE order_id = 'bad-2'"
        )
        .await,
        0,
        "the refused order's old lines stayed"
    );
    let once = new_database().await;
    let one_shot = Migration::new(&table, &once);
    one_shot
        .run(&["--mapping", map.as_str(), "--migrations", migs.as_str()])
        .await
        .expect_code(4);
    assert_same_rows(&target, &once, &["orders", "order_lines"]).await;
    delete_table(&client, &table).await;
    drop_database(&target).await;
    drop_database(&once).await;
}

/// A resumed --follow whose table no longer has a stream: the changes since it was disabled
/// are lost, so exit 1 and "data may have been missed" (not the exit 2 of a first run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_follow_whose_stream_was_disabled_says_data_may_have_been_missed() {
    let client = ddb().await;
    let (table, _) = stream_table(
        &client,
        "disabled",
        6,
        20,
        Some(StreamViewType::NewAndOldImages),
    )
    .await;
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let args = ["--follow", "--until-caught-up"];
    m.run(&args).await.expect_code(0);
    set_stream(&client, &table, None).await;
    let out = m.run(&args).await;
    out.expect_code(1);
    assert!(
        out.stderr.contains("data may have been missed") && out.stderr.contains("--restart"),
        "stderr: {}",
        out.stderr
    );
    delete_table(&client, &table).await;
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 5. No stream, or one without the new and old images: refused before the scan.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_refuses_tables_without_a_usable_stream() {
    let client = ddb().await;
    let target = new_database().await;

    // No stream at all.
    let (table, items) = stream_table(&client, "nostream", 9, 30, None).await;
    let m = Migration::new(&table, &target);
    let out = m.run(&["--follow", "--until-caught-up"]).await;
    out.expect_code(2);
    assert!(
        out.stderr.contains("--enable-stream"),
        "stderr: {}",
        out.stderr
    );
    assert_eq!(m.committed().unwrap_or(0), 0, "refused before the scan");

    // Streams without the images.
    for (view, name) in [
        (StreamViewType::KeysOnly, "KEYS_ONLY"),
        (StreamViewType::OldImage, "OLD_IMAGE"),
    ] {
        let (t, _) = stream_table(&client, "badview", 9, 30, Some(view)).await;
        let db = new_database().await;
        let mv = Migration::new(&t, &db);
        let out = mv.run(&["--follow", "--until-caught-up"]).await;
        out.expect_code(2);
        assert!(
            out.stderr.contains(name) && out.stderr.contains("NEW_AND_OLD_IMAGES"),
            "a {name} stream: stderr: {}",
            out.stderr
        );
        assert_eq!(
            mv.committed().unwrap_or(0),
            0,
            "{name}: refused before the scan"
        );
        delete_table(&client, &t).await;
        drop_database(&db).await;
    }

    // --enable-stream turns it on and says so; the run then loads and catches up.
    let out = m
        .run(&["--follow", "--enable-stream", "--until-caught-up"])
        .await;
    out.expect_code(0);
    assert_eq!(out.status(), "caught_up");
    let said = out.stderr.to_lowercase();
    assert!(
        said.contains("enabl") && said.contains("stream"),
        "stderr says the stream was enabled: {}",
        out.stderr
    );
    let (on, view, _) = stream_of(&client, &table).await;
    assert!(on, "the table has a stream now");
    assert_eq!(view, Some(StreamViewType::NewAndOldImages));
    assert_target_is(&pg(&target).await, &m.pg_table(), &items).await;

    delete_table(&client, &table).await;
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 6. An incremental export replaces the item's rows exactly, in every table of the mapping.
// ---------------------------------------------------------------------------------------------

/// `items` as a full export (AWS layout, one plain data file).
fn write_full_export(dir: &Path, items: &[Item]) {
    write_export_file(
        dir,
        "01700000000000-full",
        &items
            .iter()
            .map(|it| json!({ "Item": crate::support::json::ddb_json(it) }))
            .collect::<Vec<_>>(),
        "FULL_EXPORT",
    );
}

fn write_export_file(dir: &Path, id: &str, lines: &[Value], kind: &str) {
    let base = dir.join("AWSDynamoDB").join(id);
    std::fs::create_dir_all(base.join("data")).expect("dirs");
    let mut f = std::fs::File::create(base.join("data/part.json")).expect("data file");
    for l in lines {
        writeln!(f, "{l}").expect("write line");
    }
    std::fs::write(
        base.join("manifest-files.json"),
        format!(
            "{{\"itemCount\":{},\"dataFileS3Key\":\"AWSDynamoDB/{id}/data/part.json\"}}\n",
            lines.len()
        ),
    )
    .expect("manifest");
    std::fs::write(
        base.join("manifest-summary.json"),
        json!({
            "exportType": kind,
            "tableArn": "arn:aws:dynamodb:us-east-1:000000000000:table/exp",
            "itemCount": lines.len(),
        })
        .to_string(),
    )
    .expect("summary");
}

fn export_migrate(export: &Path, db: &str, cp: &Path) -> Vec<String> {
    [
        "migrate",
        "--export",
        &export.to_string_lossy(),
        "--target",
        db,
        "--checkpoint-dir",
        &cp.to_string_lossy(),
        "--progress",
        "none",
        "--mapping",
        &mapping(),
        "--migrations",
        &migrations(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn keys_json(it: &Item) -> Value {
    json!({
        "PK": crate::support::json::ddb_value(&it["PK"]),
        "SK": crate::support::json::ddb_value(&it["SK"]),
    })
}

fn change(ts: u64, keys: &Item, new: Option<&Item>, old: Option<&Item>) -> Value {
    let mut v = json!({
        "Metadata": { "WriteTimestampMicros": { "N": (1_700_000_000_000_000u64 + ts).to_string() } },
        "Keys": keys_json(keys),
    });
    if let Some(new) = new {
        v["NewImage"] = crate::support::json::ddb_json(new);
    }
    if let Some(old) = old {
        v["OldImage"] = crate::support::json::ddb_json(old);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_export_replaces_rows_exactly() {
    const N: u64 = 200;
    let mut items: Vec<Item> = (0..N).map(|i| ddb2pg::sample::item(1, i)).collect();
    let full = temp_dir("inc-full");
    write_full_export(&full, &items);
    let db = new_database().await;
    let r = run(&export_migrate(&full, &db, &temp_dir("inc-full-cp")));
    assert_eq!(r.code, 0, "full export: {}", r.stderr);

    let mut taken = BTreeSet::new();
    let shrink = pick_order(1, 0..N, 3, 3, &mut taken);
    let shrunk = truncated(&shrink, 1);
    let gone = pick_order(1, 0..N, 2, 4, &mut taken);
    let again = pick_order(1, 0..N, 3, 4, &mut taken);
    let reborn = {
        let mut it = with_lines(
            again.clone(),
            vec![line("REBORN-A", 1, "1.10"), line("REBORN-B", 2, "2.20")],
        );
        it.insert("status".into(), s("cancelled"));
        it
    };
    let new_order = order(
        "00000001",
        "O-1-9",
        "new",
        vec![line("NEW-A", 3, "3.30"), line("NEW-B", 4, "4.40")],
    );
    let old_profile = ddb2pg::sample::item(1, 10);
    let mut new_profile = old_profile.clone();
    new_profile.insert("email".into(), s("changed@example.com"));

    let inc = temp_dir("inc-changes");
    write_export_file(
        &inc,
        "01700000000001-incr",
        &[
            change(1, &shrink, Some(&shrunk), Some(&shrink)),
            change(2, &gone, None, Some(&gone)),
            change(3, &again, None, Some(&again)),
            change(4, &again, Some(&reborn), None),
            change(5, &new_order, Some(&new_order), None),
            change(6, &old_profile, Some(&new_profile), Some(&old_profile)),
        ],
        "INCREMENTAL_EXPORT",
    );
    let r = run(&export_migrate(&inc, &db, &temp_dir("inc-changes-cp")));
    assert_eq!(r.code, 0, "incremental export: {}", r.stderr);

    // What the table now holds, as a full export into a fresh database: the same rows.
    let key = |it: &Item| key_of(it);
    for it in items.iter_mut() {
        let k = key(it);
        if k == key(&shrink) {
            *it = shrunk.clone();
        } else if k == key(&again) {
            *it = reborn.clone();
        } else if k == key(&old_profile) {
            *it = new_profile.clone();
        }
    }
    items.retain(|it| key(it) != key(&gone));
    items.push(new_order.clone());
    let want_dir = temp_dir("inc-want");
    write_full_export(&want_dir, &items);
    let want = new_database().await;
    let r = run(&export_migrate(&want_dir, &want, &temp_dir("inc-want-cp")));
    assert_eq!(r.code, 0, "expected state: {}", r.stderr);
    assert_same_rows(&db, &want, &["users", "orders", "order_lines"]).await;

    // And directly.
    let skus = |o: String| {
        let db = db.clone();
        async move {
            query_strings(
                &db,
                &format!("SELECT sku FROM order_lines WHERE order_id = '{o}' ORDER BY line_no"),
            )
            .await
        }
    };
    let oid = |it: &Item| str_attr(it, "orderId");
    assert_eq!(skus(oid(&shrink)).await.len(), 1, "3 lines shrunk to 1");
    assert_eq!(skus(oid(&gone)).await.len(), 0, "deleted order's lines");
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM orders WHERE order_id = '{}'",
                oid(&gone)
            )
        )
        .await,
        0,
        "deleted order"
    );
    assert_eq!(skus(oid(&again)).await, ["REBORN-A", "REBORN-B"]);
    assert_eq!(
        query_strings(
            &db,
            &format!(
                "SELECT status FROM orders WHERE order_id = '{}'",
                oid(&again)
            )
        )
        .await,
        ["cancelled"]
    );
    assert_eq!(skus("O-1-9".into()).await, ["NEW-A", "NEW-B"]);
    assert_eq!(
        query_strings(&db, "SELECT email FROM users WHERE user_id = '00000002'").await,
        ["changed@example.com"]
    );

    drop_database(&db).await;
    drop_database(&want).await;
}
