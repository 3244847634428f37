//! `migrate --export PATH --follow`: an export of a table with a stream is loaded, then the
//! table's stream is applied from the export's own time (the manifest's `exportTime`, an
//! incremental export's `exportToTime`, or `--follow-from`). Through kill -9, SIGTERM and
//! `--until-caught-up` the target ends equal to a one-shot migration of the final table, with
//! an incremental export in between too, and from a folder without a manifest given
//! `--follow-from`. What cannot be honoured is refused at start: see `export_refusals`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use aws_sdk_dynamodb::Client;
use ddb2pg::value::Item;
use serde_json::{json, Value};

use super::stream::{
    assert_same_rows, checkpoint_json, delete_item, key_of, line, lines_len, mapping, migrations,
    order, profile, scan_all, stream_seqs, stream_table, truncated, update_profile, verify_args,
    wait_while_running, with_lines,
};
use crate::support::harness::run;
use crate::support::json::ddb_json;
use crate::support::{
    assert_target_is, ddb, delete_table, drop_database, new_database, pg, put, s, services, signal,
    temp_dir, Migration,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The table's ARN, as DescribeTable gives it (what an export's manifest names).
pub(crate) async fn table_arn(client: &Client, table: &str) -> String {
    client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .expect("DescribeTable")
        .table()
        .and_then(|t| t.table_arn())
        .expect("a table ARN")
        .to_string()
}

/// Now (chrono is built without its clock).
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis();
    chrono::DateTime::from_timestamp_millis(ms as i64).expect("a representable time")
}

pub(crate) fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An export in AWS's layout under `dir/AWSDynamoDB/<id>/`: `lines` over `files` data files,
/// `manifest-files.json`, and a `manifest-summary.json` made of `summary` (the times, the
/// type) with the table's ARN.
fn write_export(dir: &Path, id: &str, lines: &[Value], files: usize, arn: &str, summary: Value) {
    let base = dir.join("AWSDynamoDB").join(id);
    std::fs::create_dir_all(base.join("data")).expect("export dirs");
    let mut manifest = String::new();
    let per = lines.len().div_ceil(files).max(1);
    for (k, chunk) in lines.chunks(per).enumerate() {
        let name = format!("part-{k}.json");
        let mut f = std::fs::File::create(base.join("data").join(&name)).expect("data file");
        for l in chunk {
            writeln!(f, "{l}").expect("write line");
        }
        manifest.push_str(&format!(
            "{}\n",
            json!({ "itemCount": chunk.len(), "dataFileS3Key": format!("AWSDynamoDB/{id}/data/{name}") })
        ));
    }
    std::fs::write(base.join("manifest-files.json"), manifest).expect("manifest-files");
    let mut summary = summary;
    summary["version"] = json!("2020-06-30");
    summary["tableArn"] = json!(arn);
    summary["exportArn"] = json!(format!("{arn}/export/{id}"));
    summary["itemCount"] = json!(lines.len());
    summary["outputFormat"] = json!("DYNAMODB_JSON");
    std::fs::write(base.join("manifest-summary.json"), summary.to_string()).expect("summary");
}

/// A full export of `items` taken at `at`.
pub(crate) fn full_export(
    dir: &Path,
    items: &[Item],
    arn: &str,
    at: chrono::DateTime<chrono::Utc>,
) {
    let lines: Vec<Value> = items
        .iter()
        .map(|it| json!({ "Item": ddb_json(it) }))
        .collect();
    let summary = json!({ "exportType": "FULL_EXPORT", "exportTime": rfc3339(at) });
    write_export(dir, "01700000000000-full", &lines, 4, arn, summary);
}

fn keys_json(it: &Item) -> Value {
    json!({ "PK": ddb_json(it)["PK"], "SK": ddb_json(it)["SK"] })
}

/// An incremental export from `before` (the table at `from`) to `after` (at `to`): one line
/// per key that differs, with its new image (none: deleted) and old image.
fn incremental_export(
    dir: &Path,
    (before, after): (&[Item], &[Item]),
    arn: &str,
    (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
) -> usize {
    let map = |v: &[Item]| {
        v.iter()
            .map(|it| (key_of(it), it.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (old, new) = (map(before), map(after));
    let mut keys: Vec<_> = old.keys().chain(new.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let mut lines = Vec::new();
    for k in keys {
        let (o, n) = (old.get(&k), new.get(&k));
        if o == n {
            continue;
        }
        let mut l = json!({
            "Metadata": { "WriteTimestampMicros": { "N": (to.timestamp_micros() - 1).to_string() } },
            "Keys": keys_json(n.or(o).expect("a key of one side")),
        });
        if let Some(n) = n {
            l["NewImage"] = ddb_json(n);
        }
        if let Some(o) = o {
            l["OldImage"] = ddb_json(o);
        }
        lines.push(l);
    }
    let summary = json!({
        "exportType": "INCREMENTAL_EXPORT",
        "exportFromTime": rfc3339(from),
        "exportToTime": rfc3339(to),
        "outputView": "NEW_AND_OLD_IMAGES",
    });
    write_export(dir, "01700000000001-incr", &lines, 2, arn, summary);
    lines.len()
}

/// About `want` changes of every kind to the table as it is now, varied by `round`: orders'
/// lines shrunk and grown, items deleted, deleted then put again (other lines, another status),
/// profiles updated, new users and orders. Returns the number of writes made.
async fn churn(client: &Client, table: &str, round: usize, want: usize) -> usize {
    let mut items = scan_all(client, table).await;
    items.sort_by_key(key_of);
    let mut n = 0;
    for (k, it) in items.iter().enumerate() {
        if n >= want {
            break;
        }
        let (pk, sk) = key_of(it);
        let is_order = sk.starts_with("ORDER#");
        match (k + round) % 7 {
            0 => {
                delete_item(client, table, it).await;
                n += 1;
            }
            1 if is_order => {
                delete_item(client, table, it).await;
                let mut again = with_lines(it.clone(), vec![line(&format!("R{round}"), 2, "9.99")]);
                again.insert("status".into(), s("reborn"));
                put(client, table, &again).await;
                n += 2;
            }
            2 | 3 if is_order && lines_len(it) >= 2 => {
                put(client, table, &truncated(it, 1)).await;
                n += 1;
            }
            2 | 3 if is_order => {
                let grown = (0..4)
                    .map(|j| line(&format!("G{round}-{j}"), j + 1, &format!("{j}.50")))
                    .collect();
                put(client, table, &with_lines(it.clone(), grown)).await;
                n += 1;
            }
            4 if sk == "PROFILE" => {
                let email = format!("r{round}-{k}@example.com");
                update_profile(client, table, &pk, &email, "Churned").await;
                n += 1;
            }
            _ => {}
        }
    }
    for j in 0..want / 10 {
        let user = format!("9{round:03}{j:04}");
        put(
            client,
            table,
            &profile(&user, &format!("{user}@example.com"), "New"),
        )
        .await;
        let lines = (0..(j % 3) as u32 + 1)
            .map(|q| line(&format!("N{j}-{q}"), q + 1, "1.25"))
            .collect();
        put(
            client,
            table,
            &order(&user, &format!("O-{user}"), "new", lines),
        )
        .await;
        n += 2;
    }
    n
}

/// `migrate --export DIR --target DB --checkpoint-dir CP` with the example mapping, without
/// `--table` (the Migration helper adds one).
pub(crate) fn export_args(export: &Path, db: &str, cp: &Path, extra: &[&str]) -> Vec<String> {
    let (map, migs) = (mapping(), migrations());
    let mut v: Vec<String> = [
        "migrate",
        "--export",
        &export.to_string_lossy(),
        "--target",
        db,
        "--checkpoint-dir",
        &cp.to_string_lossy(),
        "--endpoint-url",
        &services().endpoint,
        "--progress",
        "none",
        "--mapping",
        &map,
        "--migrations",
        &migs,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The checkpoint's `stream.follow_from`, if it has one.
fn follow_from(m: &Migration) -> Option<u64> {
    checkpoint_json(m).and_then(|cp| cp["stream"]["follow_from"].as_u64())
}

/// `status --json` of the migration's checkpoint folder.
fn status_json(m: &Migration) -> Value {
    let out = Migration::bare_command()
        .args(["status", "--json", "--checkpoint-dir"])
        .arg(&m.checkpoint_dir)
        .output()
        .expect("run ddb2pg status");
    assert_eq!(out.status.code(), Some(0), "status: {out:?}");
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

/// The follow runs of one test: `--export DIR --follow` (with `--table`, from `Migration`),
/// small batches and one reader so a kill lands mid-load.
fn follow_args(export: &Path) -> Vec<String> {
    let (map, migs) = (mapping(), migrations());
    [
        "--export",
        &export.to_string_lossy(),
        "--mapping",
        &map,
        "--migrations",
        &migs,
        "--follow",
        "--batch-size",
        "10",
        "--concurrency",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// kill -9 once the load has begun (the checkpoint already records where the stream is
/// followed from), more changes, a resume stopped by SIGTERM once it applied stream records
/// (exit 130), a few changes, then `--until-caught-up` (exit 0).
async fn follow_through_kill_and_sigterm(
    client: &Client,
    m: &Migration,
    args: &[String],
    as_of: u64,
) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let loading = m
        .spawn_until_checkpoint(&args, |cp| crate::support::committed(cp) >= 30)
        .await;
    let running = loading
        .unwrap_or_else(|o| panic!("the run ended early: {}", o.stderr))
        .0;
    let out = running.kill9().await;
    out.expect_killed_by_9();
    assert_eq!(
        follow_from(m),
        Some(as_of),
        "the checkpoint records the export's time before the load: {:?}",
        checkpoint_json(m)
    );
    let cp = m.checkpoint();
    eprintln!(
        "kill -9 at {} items committed (complete: {})",
        crate::support::committed(&cp),
        cp.complete
    );

    assert!(churn(client, &m.table, 3, 150).await > 100);

    let mut running = m.spawn(&args);
    let moved = wait_while_running(&mut running, "stream records applied", 30, || {
        stream_seqs(m).values().any(Option::is_some)
    })
    .await;
    eprintln!("SIGTERM (stream records applied: {moved})");
    signal(running.pid(), "TERM");
    let out = tokio::time::timeout(Duration::from_secs(60), running.wait())
        .await
        .expect("the run did not stop within 60 s of SIGTERM");
    out.expect_code(130);
    assert_eq!(out.status(), "interrupted");
    assert_eq!(follow_from(m), Some(as_of), "a resume keeps follow_from");

    churn(client, &m.table, 4, 40).await;
    let mut until = args.clone();
    until.push("--until-caught-up");
    let out = tokio::time::timeout(Duration::from_secs(120), m.run(&until))
        .await
        .expect("--until-caught-up did not finish within 120 s");
    out.expect_code(0);
    assert_eq!(out.status(), "caught_up");
    assert!(out.num("changes_removed") > 0, "{}", out.report());
    assert_eq!(follow_from(m), Some(as_of));
    let st = status_json(m);
    assert_eq!(
        st["checkpoints"][0]["stream"]["follow_from"].as_u64(),
        Some(as_of),
        "{st}"
    );
}

/// The followed target equals a one-shot `migrate --table` of the final table, and verify
/// agrees.
async fn assert_equals_one_shot(m: &Migration) {
    let fresh = new_database().await;
    let one_shot = Migration::new(&m.table, &fresh);
    let (map, migs) = (mapping(), migrations());
    one_shot
        .run(&["--mapping", &map, "--migrations", &migs])
        .await
        .expect_code(0);
    assert_same_rows(&m.target, &fresh, &["users", "orders", "order_lines"]).await;
    let v = run(&verify_args(&m.table, &m.target, &map));
    assert_eq!(v.code, 0, "verify --table after the handover: {}", v.stderr);
    drop_database(&fresh).await;
}

fn epoch_s(t: chrono::DateTime<chrono::Utc>) -> u64 {
    u64::try_from(t.timestamp()).expect("a time after 1970")
}

// ---------------------------------------------------------------------------------------------
// 1. A full export, then the stream from its exportTime.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_then_its_stream_ends_equal_to_a_one_shot_migration() {
    let client = ddb().await;
    let view = Some(StreamViewType::NewAndOldImages);
    let (table, _) = stream_table(&client, "expfollow", 21, 600, view).await;
    let arn = table_arn(&client, &table).await;
    let at = now();
    let dir = temp_dir("expfollow-export");
    full_export(&dir, &scan_all(&client, &table).await, &arn, at);

    // About 1,000 changes after the export's time, before anything runs.
    let mut made = 0;
    for round in 0..3 {
        made += churn(&client, &table, round, 500).await;
    }
    assert!(made >= 900, "{made} changes");

    let target = new_database().await;
    let m = Migration::new(&table, &target);
    follow_through_kill_and_sigterm(&client, &m, &follow_args(&dir), epoch_s(at)).await;
    assert_equals_one_shot(&m).await;

    delete_table(&client, &table).await;
    drop_database(&target).await;
}

// ---------------------------------------------------------------------------------------------
// 2. A full export, an incremental export, then the stream from its exportToTime.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_export_then_the_stream_from_its_end() {
    let client = ddb().await;
    let view = Some(StreamViewType::NewAndOldImages);
    let (table, _) = stream_table(&client, "incfollow", 22, 400, view).await;
    let arn = table_arn(&client, &table).await;
    let t1 = now();
    let at_t1 = scan_all(&client, &table).await;
    let full = temp_dir("incfollow-full");
    full_export(&full, &at_t1, &arn, t1);

    churn(&client, &table, 1, 300).await;
    let t2 = now();
    let at_t2 = scan_all(&client, &table).await;
    let inc = temp_dir("incfollow-incr");
    let lines = incremental_export(&inc, (&at_t1, &at_t2), &arn, (t1, t2));
    assert!(lines > 100, "{lines} incremental lines");
    // After the incremental export's end: only in the stream.
    churn(&client, &table, 2, 300).await;

    let target = new_database().await;
    let cp_full = temp_dir("incfollow-full-cp");
    let r = run(&export_args(&full, &target, &cp_full, &[]));
    assert_eq!(r.code, 0, "the full export: {}", r.stderr);
    let m = Migration::new(&table, &target);
    follow_through_kill_and_sigterm(&client, &m, &follow_args(&inc), epoch_s(t2)).await;
    assert_equals_one_shot(&m).await;

    delete_table(&client, &table).await;
    drop_database(&target).await;
}

/// A bare folder of `.json` data files (no manifest), of `items`.
pub(crate) fn bare_export(dir: &Path, items: &[Item]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("bare export dir");
    let mut f = std::fs::File::create(dir.join("part-0.json")).expect("data file");
    for it in items {
        writeln!(f, "{}", json!({ "Item": ddb_json(it) })).expect("write line");
    }
    dir.to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// 3. A folder without a manifest: --table and --follow-from, the default mapping (key from the
//    table), a resume that must keep its time, --restart to take another.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_without_a_manifest_follows_from_the_time_given() {
    let client = ddb().await;
    let view = Some(StreamViewType::NewAndOldImages);
    let (table, _) = stream_table(&client, "barefollow", 24, 200, view).await;
    let at = now();
    let bare = bare_export(
        &temp_dir("barefollow-export"),
        &scan_all(&client, &table).await,
    );
    churn(&client, &table, 1, 200).await;

    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let (dir, stamp) = (bare.to_string_lossy().to_string(), rfc3339(at));
    let args = ["--export", &dir, "--follow", "--follow-from", &stamp];
    let mut until = args.to_vec();
    until.push("--until-caught-up");
    let out = m.run(&until).await;
    out.expect_code(0);
    assert_eq!(out.status(), "caught_up");
    assert_eq!(follow_from(&m), Some(epoch_s(at)));
    // The default mapping's table is named after --table, keyed by the table's key.
    let source = scan_all(&client, &table).await;
    assert_target_is(&pg(&target).await, &m.pg_table(), &source).await;
    let v = run(&[
        "verify",
        "--table",
        &table,
        "--target",
        &target,
        "--endpoint-url",
        &services().endpoint,
    ]
    .map(String::from));
    assert_eq!(v.code, 0, "verify --table: {}", v.stderr);

    // Another time on a resume is refused: the checkpoint follows from the first.
    // (Later than the first: the stream was created just before it.)
    let other_t = at + chrono::Duration::seconds(2);
    while now() <= other_t {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = rfc3339(other_t);
    let moved = ["--export", &dir, "--follow", "--follow-from", &other];
    let mut moved_until = moved.to_vec();
    moved_until.push("--until-caught-up");
    let out = m.run(&moved_until).await;
    out.expect_code(2);
    assert!(
        out.stderr.contains("follows the stream from") && out.stderr.contains("--restart"),
        "{}",
        out.stderr
    );
    assert_eq!(
        follow_from(&m),
        Some(epoch_s(at)),
        "the refused run changed nothing"
    );
    // --restart loads again and follows from the new time.
    churn(&client, &table, 2, 60).await;
    moved_until.push("--restart");
    m.run(&moved_until).await.expect_code(0);
    assert_eq!(follow_from(&m), Some(epoch_s(other_t)));
    let source = scan_all(&client, &table).await;
    assert_target_is(&pg(&target).await, &m.pg_table(), &source).await;

    delete_table(&client, &table).await;
    drop_database(&target).await;
}
