//! `migrate --follow`: a guarded deletion racing another connection's writes. Changes of two
//! items that share rows go to the lanes their own keys hash to, so one connection may delete
//! the old item's rows while another writes the new item's. Here the test's own transaction
//! plays the other lane, deterministically: it writes the new item's rows the way the sink
//! does and commits only once the follower's deletion waits for it.

use std::time::{Duration, Instant};

use crate::follow_deletes::{assert_as_one_shot, delete, follow, followed, order, profile, setup};
use crate::support::{ddb, delete_table, drop_database, pg, put};

/// An order moves to another user (O-1: user 1's item removed, user 2's put). The new item's
/// rows are being written, uncommitted, when the follower deletes the old item's: the
/// follower's deletion of the `order_lines` waits for that writer, and after its commit must
/// see that the parent `orders` row is no longer the old item's. The lines stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_waiting_for_another_lane_sees_its_parent_row() {
    let client = ddb().await;
    let (map, migs) = setup("racing");
    let old = order("00000001", "O-1");
    let (table, target, m) = followed(
        &client,
        "racing",
        &[
            profile("00000001", "a@x"),
            profile("00000002", "b@x"),
            old.clone(),
            order("00000003", "O-3"),
        ],
    )
    .await;
    follow(&m, &map, &migs).await;
    delete(&client, &table, &old).await;

    // The other lane: user 2's O-1, written as the sink's upserts write it (the identical
    // lines are locked, not rewritten), not committed yet.
    let other = pg(&target).await;
    other
        .batch_execute(
            "BEGIN;
             INSERT INTO orders AS t VALUES ('O-1', '00000002', 'NEW', 12.50)
               ON CONFLICT (order_id) DO UPDATE
               SET user_id = EXCLUDED.user_id, status = EXCLUDED.status, total = EXCLUDED.total
               WHERE ROW(t.user_id, t.status, t.total)
                 IS DISTINCT FROM ROW(EXCLUDED.user_id, EXCLUDED.status, EXCLUDED.total);
             INSERT INTO order_lines AS t VALUES ('O-1', 0, 'A-1', 1, 2.50), ('O-1', 1, 'B-2', 2, 5.00)
               ON CONFLICT (order_id, line_no) DO UPDATE
               SET sku = EXCLUDED.sku, qty = EXCLUDED.qty, price = EXCLUDED.price
               WHERE ROW(t.sku, t.qty, t.price)
                 IS DISTINCT FROM ROW(EXCLUDED.sku, EXCLUDED.qty, EXCLUDED.price);",
        )
        .await
        .expect("the other lane's writes");

    let mut run = m.spawn(&[
        "--mapping",
        &map,
        "--migrations",
        &migs,
        "--follow",
        "--until-caught-up",
    ]);
    // The follower's deletion waits for the other lane's locks.
    let watch = pg(&target).await;
    let since = Instant::now();
    loop {
        let waiting: i64 = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE 'DELETE%'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            !run.exited(),
            "the follower ended without waiting for the other lane"
        );
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "the follower's deletion never waited for the other lane"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    other.batch_execute("COMMIT").await.expect("commit");
    let out = tokio::time::timeout(Duration::from_secs(120), run.wait())
        .await
        .expect("--until-caught-up did not finish within 120 s");
    out.expect_code(0);
    assert_eq!(out.status(), "caught_up", "{}", out.stderr);

    let owner: String = watch
        .query_one("SELECT user_id FROM orders WHERE order_id = 'O-1'", &[])
        .await
        .expect("orders")
        .get(0);
    assert_eq!(owner, "00000002", "order O-1 belongs to its new user");
    let lines: i64 = watch
        .query_one(
            "SELECT count(*) FROM order_lines WHERE order_id = 'O-1'",
            &[],
        )
        .await
        .expect("lines")
        .get(0);
    assert_eq!(lines, 2, "order O-1 keeps its lines");

    // The item the other lane stood for, followed: the target is a one-shot migration's.
    put(&client, &table, &order("00000002", "O-1")).await;
    follow(&m, &map, &migs).await;
    assert_as_one_shot(&table, &target, &map, &migs).await;

    delete_table(&client, &table).await;
    drop((other, watch));
    drop_database(&target).await;
}
