//! Finishing a follower at cutover, against DynamoDB Local's stream: a change written just
//! before `ddb2pg finish` is applied before the follower exits 0; a request made while a
//! resumed follower is still setting up is honoured (it is for this run); SIGUSR1 to a load
//! without --follow does not end it; a `.finish` file that is not a request (a link to an
//! endless device, a FIFO, a large file) neither hangs nor floods the follower.

use std::path::Path;
use std::time::Duration;

use crate::follow_verdict::{
    caught_up_follower, ddb2pg, follow_args, follower, orders_table, request_path, wait_exit,
    wait_for,
};
use crate::stream::{count, line, migrations, order};
use crate::support::harness::{migrate_args, run, sample_table};
use crate::support::{
    ddb, delete_table, drop_database, new_database, put, signal, spawn_in, temp_dir,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_written_just_before_finish_is_applied_before_the_follower_exits() {
    let (table, db, cp, r) = caught_up_follower("finishlate").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_asked_while_a_resumed_follower_sets_up_is_honoured() {
    let (table, db) = orders_table("finishsetup").await;
    let dir = temp_dir(&table);
    let cp = dir.join("checkpoints").to_string_lossy().to_string();
    let migs = dir.join("migrations");
    std::fs::create_dir_all(&migs).expect("migrations dir");
    for e in std::fs::read_dir(migrations())
        .expect("example migrations")
        .flatten()
    {
        std::fs::copy(e.path(), migs.join(e.file_name())).expect("copy a migration");
    }
    let mut args = follow_args(&table, &db, &cp, &[]);
    let at = args
        .iter()
        .position(|a| a == "--migrations")
        .expect("--migrations")
        + 1;
    args[at] = migs.to_string_lossy().to_string();
    let mut first = args.clone();
    first.push("--until-caught-up".into());
    let once = run(&first);
    assert_eq!(once.code, 0, "{}", once.stderr);
    // The resumed run holds its lock for a while before it follows (a slow migration).
    std::fs::write(migs.join("003_slow.sql"), "SELECT pg_sleep(6);\n").expect("migration");
    let mut r = spawn_in(&dir, &args);
    wait_for("the resumed run holding its lock", 30, &mut r, || {
        follower(&cp)["state"] == "loading" || follower(&cp)["state"] == "following"
    })
    .await;
    // During the setup: SIGUSR1 does not end it, and the request is for this run.
    signal(r.pid(), "USR1");
    let (code, _, err) = ddb2pg(&["finish", "--table", &table], &cp);
    assert_eq!(code, 0, "finish: {err}");
    let out = wait_exit(r, 90).await;
    out.expect_code(0);
    assert!(
        !out.stderr.contains("made before this run started")
            && out.stderr.contains("finish requested by ")
            && out.stderr.contains("caught up: lag"),
        "{}",
        out.stderr
    );
    assert!(!request_path(Path::new(&cp)).exists(), "the request stays");
    delete_table(&ddb().await, &table).await;
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_does_not_end_a_load_without_follow() {
    let table = sample_table(1000).await;
    let db = new_database().await;
    let dir = temp_dir(&table);
    let cp = dir.join("checkpoints");
    let mut args = migrate_args(&table, &db, &cp);
    args.extend(["--max-read-units", "40", "--concurrency", "1"].map(String::from));
    let mut r = spawn_in(&dir, &args);
    let err_path = r.stderr_path.clone();
    wait_for("the load started", 30, &mut r, || {
        std::fs::read_to_string(&err_path).is_ok_and(|e| e.contains(" -> "))
    })
    .await;
    signal(r.pid(), "USR1");
    let out = wait_exit(r, 120).await;
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("SIGUSR1 ignored: this run does not follow a stream"),
        "{}",
        out.stderr
    );
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_file_that_is_no_request_is_ignored_once_unread() {
    let (table, db, cp, mut r) = caught_up_follower("finishbad").await;
    let req = request_path(Path::new(&cp));
    // An endless device behind a link (read whole, it would fill the memory), a FIFO (opened
    // for reading, it would wait for a writer), a large file, text that is no request.
    std::os::unix::fs::symlink("/dev/zero", &req).expect("link");
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::remove_file(&req).expect("remove the link");
    let fifo = std::process::Command::new("mkfifo")
        .arg(&req)
        .status()
        .expect("mkfifo");
    assert!(fifo.success());
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::remove_file(&req).expect("remove the fifo");
    std::fs::write(&req, vec![b'{'; 1 << 20]).expect("a large file");
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::write(&req, "not json\n").expect("text");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !r.exited(),
        "the follower exited on a file that is no request"
    );
    std::fs::remove_file(&req).expect("remove the text");
    // It still answers a real request.
    let (code, _, err) = ddb2pg(&["finish", "--table", &table], &cp);
    assert_eq!(code, 0, "finish: {err}");
    let out = wait_exit(r, 60).await;
    out.expect_code(0);
    let said = |what: &str| out.stderr.matches(what).count();
    assert_eq!(said("a symbolic link, not read"), 1, "{}", out.stderr);
    assert_eq!(said("not a regular file, not read"), 1, "{}", out.stderr);
    assert_eq!(
        said("larger than 4096 bytes, not read"),
        1,
        "{}",
        out.stderr
    );
    assert_eq!(
        said("is not a finish request ddb2pg writes"),
        1,
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("finish requested by ddb2pg finish"),
        "{}",
        out.stderr
    );
    delete_table(&ddb().await, &table).await;
    drop_database(&db).await;
}
