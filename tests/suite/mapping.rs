//! Mapping files end to end: the shipped single-table example, rejects, collisions, and the
//! checks of the mapping against the real target before any item is read.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::support::harness::*;

fn example(file: &str) -> String {
    format!(
        "{}/examples/single-table/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_table_example_lands_in_typed_tables() {
    let n = 2000;
    let table = sample_table(n).await;
    let db = new_database().await;
    let cp = tempdir("map-example");
    let mut args = migrate_args(&table, &db, &cp);
    args.extend([
        "--mapping".into(),
        example("mapping.toml"),
        "--migrations".into(),
        example("migrations"),
    ]);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // What the source holds, counted from the generator itself.
    let (mut users, mut orders, mut lines, mut events) = (0i64, 0i64, 0i64, 0u64);
    for i in 0..n {
        let it = ddb2pg::sample::item(1, i);
        match it.get("SK") {
            Some(AttributeValue::S(sk)) if sk == "PROFILE" => users += 1,
            Some(AttributeValue::S(sk)) if sk.starts_with("ORDER#") => {
                orders += 1;
                if let Some(AttributeValue::L(l)) = it.get("lines") {
                    lines += l.len() as i64;
                }
            }
            _ => events += 1,
        }
    }
    let c = pg(&db).await;
    let count = |t: &'static str| {
        let c = &c;
        async move {
            c.query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("users").await, users);
    assert_eq!(count("orders").await, orders);
    assert_eq!(count("order_lines").await, lines);
    assert_eq!(
        r.report["skipped"], events,
        "events are unrouted and skipped"
    );
    assert_eq!(r.report["tables"]["order_lines"]["rows_inserted"], lines);

    // Typed values of one user and one order line, as the generator made them.
    let u = ddb2pg::sample::item(1, 5); // user 1's profile
    let row = c
        .query_one(
            "SELECT email, age, score::text, active, lang, tags, avatar, created_at::text, doc->>'PK' \
             FROM users WHERE user_id = '00000001'",
            &[],
        )
        .await
        .expect("user row");
    let s = |k: &str| match u.get(k) {
        Some(AttributeValue::S(v)) | Some(AttributeValue::N(v)) => v.clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(row.get::<_, String>(0), s("email"));
    assert_eq!(row.get::<_, i32>(1).to_string(), s("age"));
    assert_eq!(row.get::<_, String>(2), s("score"));
    assert_eq!(
        Some(row.get::<_, bool>(3)),
        match u.get("active") {
            Some(AttributeValue::Bool(b)) => Some(*b),
            _ => None,
        }
    );
    assert_eq!(row.get::<_, Vec<String>>(5).len(), 2);
    match u.get("avatar") {
        Some(AttributeValue::B(b)) => assert_eq!(row.get::<_, Vec<u8>>(6), b.as_ref().to_vec()),
        other => panic!("avatar {other:?}"),
    }
    assert!(row.get::<_, String>(7).starts_with(&s("createdAt")[..10]));
    assert_eq!(row.get::<_, String>(8), "USER#00000001");
    let line: (String, i32) = {
        let r = c
            .query_one(
                "SELECT sku, qty FROM order_lines WHERE order_id = 'O-1-1' AND line_no = 0",
                &[],
            )
            .await
            .expect("line");
        (r.get(0), r.get(1))
    };
    let o = ddb2pg::sample::item(1, 6);
    let Some(AttributeValue::L(l)) = o.get("lines") else {
        panic!("lines")
    };
    let AttributeValue::M(first) = &l[0] else {
        panic!("line 0")
    };
    assert_eq!(Some(&AttributeValue::S(line.0)), first.get("sku"));
    assert_eq!(
        Some(&AttributeValue::N(line.1.to_string())),
        first.get("qty")
    );

    // Again from scratch: the migrations are not applied twice, nothing is rewritten.
    args.push("--restart".into());
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("0 applied"), "{}", r.stderr);
    assert_eq!(r.report["rows_written"], 0);
    let applied: i64 = c
        .query_one("SELECT count(*) FROM ddb2pg_schema_migrations", &[])
        .await
        .expect("migrations table")
        .get(0);
    assert_eq!(applied, 2);
}

async fn put(client: &aws_sdk_dynamodb::Client, table: &str, pairs: Vec<(&str, AttributeValue)>) {
    let item = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .expect("put");
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_go_to_the_rejects_file_and_nothing_else_is_missing() {
    let n = 300;
    let table = sample_table(n).await;
    let client = ddb().await;
    // Three bad profiles: an age that is no integer, no email (required), NUL in the name.
    put(
        &client,
        &table,
        vec![
            ("PK", s("USER#bad1")),
            ("SK", s("PROFILE")),
            ("email", s("a@x")),
            ("age", s("old")),
        ],
    )
    .await;
    put(
        &client,
        &table,
        vec![("PK", s("USER#bad2")), ("SK", s("PROFILE"))],
    )
    .await;
    put(
        &client,
        &table,
        vec![
            ("PK", s("USER#bad3")),
            ("SK", s("PROFILE")),
            ("email", s("c@x")),
            ("name", s("x\0y")),
        ],
    )
    .await;
    let db = new_database().await;
    let cp = tempdir("map-rejects");
    let mut args = migrate_args(&table, &db, &cp);
    args.extend([
        "--mapping".into(),
        example("mapping.toml"),
        "--create-tables".into(),
    ]);
    let r = run(&args);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(r.report["rejected"], 3);
    let reasons = r.report["rejects_by_reason"]
        .as_object()
        .expect("by reason");
    for k in [
        "users: invalid value",
        "users: required attribute missing",
        "users: text contains U+0000",
    ] {
        assert_eq!(
            reasons.get(k),
            Some(&serde_json::json!(1)),
            "{k} in {reasons:?}"
        );
    }
    let file = std::fs::read_dir(&cp)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".rejects.jsonl"))
        .expect("rejects file");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let mut keys: Vec<String> = lines
        .iter()
        .map(|l| l["key"]["PK"]["S"].as_str().unwrap_or("").to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, ["USER#bad1", "USER#bad2", "USER#bad3"]);
    let bad1 = lines
        .iter()
        .find(|l| l["key"]["PK"]["S"] == "USER#bad1")
        .expect("bad1");
    assert_eq!(
        (bad1["table"].as_str(), bad1["column"].as_str()),
        (Some("users"), Some("age"))
    );
    assert_eq!(bad1["item"]["age"]["S"], "old");
    // Everything else landed: every sample profile is a user row.
    let users: i64 = pg(&db)
        .await
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, (n / 5) as i64);
    // A resume appends, never truncates: the rejects are still there after a second run.
    let r2 = run(&args);
    assert_eq!(r2.report["status"], "nothing_to_do");
    assert_eq!(
        std::fs::read_to_string(&file)
            .expect("read")
            .lines()
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_items_on_one_key_are_counted_as_collisions() {
    let table = sample_table(10).await;
    let client = ddb().await;
    // Both strip to the same user_id "7".
    put(
        &client,
        &table,
        vec![
            ("PK", s("USER#7")),
            ("SK", s("PROFILE")),
            ("email", s("a@x")),
        ],
    )
    .await;
    put(
        &client,
        &table,
        vec![
            ("PK", s("USER#07")),
            ("SK", s("PROFILE")),
            ("email", s("b@x")),
        ],
    )
    .await;
    let dir = tempdir("map-collide");
    let mapping = dir.join("m.toml");
    std::fs::write(
        &mapping,
        "[[table]]\nname = \"people\"\nkey = [\"id\"]\nwhen = { SK = \"PROFILE\" }\n[table.columns]\n\
         id = { from = \"PK\", strip_prefix = \"USER#\", type = \"integer\" }\nemail = { from = \"email\", type = \"text\" }\n",
    )
    .expect("mapping");
    let db = new_database().await;
    let mut args = migrate_args(&table, &db, &dir.join("cp"));
    args.extend([
        "--mapping".into(),
        mapping.to_string_lossy().to_string(),
        "--create-tables".into(),
    ]);
    // One item per page, one segment at a time: the two land in different batches. (Two
    // transactions in flight at once may miss each other: see the README.)
    args.extend(["--batch-size", "1", "--segments", "4", "--concurrency", "1"].map(String::from));
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.report["tables"]["people"]["collisions"], 1,
        "{}",
        r.report
    );
    let rows: i64 = pg(&db)
        .await
        .query_one("SELECT count(*) FROM people WHERE id = 7", &[])
        .await
        .expect("c")
        .get(0);
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_does_not_fit_the_mapping_is_refused_before_reading() {
    let table = sample_table(10).await;
    let db = new_database().await;
    pg(&db)
        .await
        .batch_execute(
            "CREATE TABLE users (user_id text PRIMARY KEY, email text, age uuid, doc jsonb);
             CREATE TABLE orders (order_id text PRIMARY KEY, user_id text, status text, total numeric)",
        )
        .await
        .expect("schema");
    let cp = tempdir("map-mismatch");
    let mut args = migrate_args(&table, &db, &cp);
    args.extend(["--mapping".into(), example("mapping.toml")]);
    let r = run(&args);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for needle in [
        "\"age\"",
        "not assignable",
        "no column \"name\"",
        "order_lines does not exist",
        "--create-tables",
    ] {
        assert!(
            r.stderr.contains(needle),
            "missing {needle:?} in {}",
            r.stderr
        );
    }
    // Nothing was read: no checkpoint was written.
    assert_eq!(committed_items(&cp), 0);
    assert!(!std::fs::read_dir(&cp)
        .map(|d| d
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "json")))
        .unwrap_or(false));
}
