//! `--max-memory`: pages read and not yet written stay within one byte budget shared by all
//! segments, with the target slowed on purpose (a trigger that sleeps per statement).

use crate::support::{
    assert_target_is, ddb, delete_table, drop_database, load_sample, new_database, pg, unique_name,
    Migration,
};

/// The most bytes queued at once, from the `-v` log line.
fn queued_peak(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("pages read and not yet written held at most"))
        .unwrap_or_else(|| panic!("no budget line in:\n{stderr}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let n = nums.len();
    assert!(n >= 2, "{line}");
    (nums[n - 2], nums[n - 1])
}

/// The default mapping's table, made beforehand with a trigger that sleeps 0.15 s per
/// statement: each batch's COPY (or upsert) waits, so the scan outruns the writes.
async fn slow_target(m: &Migration, target: &str) {
    let t = m.pg_table();
    let db = pg(target).await;
    db.batch_execute(&format!(
        "CREATE TABLE {t} (\"PK\" text, \"SK\" text, item jsonb, PRIMARY KEY (\"PK\", \"SK\"));
         CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(0.15); RETURN NULL; END $$;
         CREATE TRIGGER slow BEFORE INSERT ON {t} FOR EACH STATEMENT EXECUTE FUNCTION slow();"
    ))
    .await
    .expect("slow target table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_pages_stay_within_max_memory() {
    const N: u64 = 6000;
    let client = ddb().await;
    let table = unique_name("maxmem");
    let items = load_sample(&client, &table, 31, N).await;
    let args = [
        "-v",
        "--segments",
        "8",
        "--concurrency",
        "4",
        "--batch-size",
        "200",
    ];

    // Without a tight budget the queues fill past 1 MiB (4 segments x 3 pages of ~200 items).
    let loose_target = new_database().await;
    let loose = Migration::new(&table, &loose_target);
    slow_target(&loose, &loose_target).await;
    let out = loose.run(&args).await;
    out.expect_code(0);
    let (peak, budget) = queued_peak(&out.stderr);
    assert_eq!(budget, 256 << 20, "the default is 256 MiB");
    assert!(
        peak > 1 << 20,
        "the slow target must make pages queue up: {peak}"
    );

    // With 1 MiB, no more than 1 MiB is ever queued, and every item still lands.
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    slow_target(&m, &target).await;
    let mut tight = args.to_vec();
    tight.extend(["--max-memory", "1MiB"]);
    let out = m.run(&tight).await;
    out.expect_code(0);
    assert_eq!(out.num("rows_inserted"), N);
    let (peak, budget) = queued_peak(&out.stderr);
    assert_eq!(budget, 1 << 20);
    assert!(peak > 0 && peak <= 1 << 20, "queued {peak} bytes");
    let db = pg(&target).await;
    assert_target_is(&db, &m.pg_table(), &items).await;

    // A size that is not one is refused before anything runs.
    let bad = m.run(&["--max-memory", "lots"]).await;
    bad.expect_code(2);
    assert!(bad.stderr.contains("is not a size"), "{}", bad.stderr);

    delete_table(&client, &table).await;
    drop(db);
    drop_database(&target).await;
    drop_database(&loose_target).await;
}
