//! Finishing a follower at cutover, against DynamoDB Local's stream: a change written just
//! before `ddb2pg finish` is applied before the follower exits 0.

use std::time::Duration;

use crate::follow_verdict::{ddb2pg, follow_args, follower, orders_table, wait_exit, wait_for};
use crate::stream::{count, line, order};
use crate::support::{ddb, delete_table, drop_database, put, spawn_in, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_written_just_before_finish_is_applied_before_the_follower_exits() {
    let (table, db) = orders_table("finishlate").await;
    let dir = temp_dir(&table);
    let cp = dir.join("checkpoints").to_string_lossy().to_string();
    let mut r = spawn_in(&dir, &follow_args(&table, &db, &cp, &[]));
    wait_for("caught up", 90, &mut r, || {
        follower(&cp)["caught_up"] == true
    })
    .await;
    // Long idle: the reader asks its shard once a second, the verdict is long settled.
    tokio::time::sleep(Duration::from_secs(12)).await;
    // The writers' last change, then at once the cutover's finish.
    let client = ddb().await;
    put(
        &client,
        &table,
        &order("00000003", "late-3", "NEW", vec![line("a", 1, "1.00")]),
    )
    .await;
    let (code, _, err) = ddb2pg(&["finish", "--table", &table], &cp);
    assert_eq!(code, 0, "finish: {err}");
    let out = wait_exit(r, 60).await;
    out.expect_code(0);
    assert!(
        out.stderr.contains("every change applied"),
        "{}",
        out.stderr
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM orders WHERE order_id = 'late-3'").await,
        1,
        "the follower exited 0 (every change applied) without the change written before \
         the finish:\n{}",
        out.stderr
    );
    delete_table(&client, &table).await;
    drop_database(&db).await;
}
