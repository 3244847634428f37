//! Stopping and resuming through the binary: SIGINT, a resume under a changed mapping, retries
//! that run out during a PostgreSQL outage, and the edges of segmentation (an empty table,
//! fewer items than segments).

use std::time::{Duration, Instant};

use ddb2pg::checkpoint::Checkpoint;

use crate::support::private_pg::PrivatePg;
use crate::support::{
    assert_target_is, clean_env, committed, count_rows, ddb, ddb2pg_exe, held_cursors, load_sample,
    new_database, pg, signal, unique_name, Migration, Outcome,
};

/// The command the run printed after "to resume, run the same command again:".
fn printed_resume_line(out: &Outcome) -> String {
    let mut lines = out.stderr.lines();
    lines
        .find(|l| l.contains("to resume, run the same command again:"))
        .unwrap_or_else(|| panic!("no resume line:\n{}", out.stderr));
    lines
        .next()
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("nothing after the resume line:\n{}", out.stderr))
}

/// Run a printed `ddb2pg ...` line through the shell (its quoting is the shell's), in the
/// suite's clean environment.
fn run_printed_line(line: &str, files: &std::path::Path) -> Outcome {
    let rest = line
        .strip_prefix("ddb2pg ")
        .unwrap_or_else(|| panic!("the resume line starts with ddb2pg: {line:?}"));
    let script = files.join("resume.sh");
    std::fs::write(&script, format!("exec '{}' {rest}\n", ddb2pg_exe())).expect("script");
    let stderr = files.join("resume.stderr");
    let mut sh = std::process::Command::new("sh");
    clean_env(&mut sh);
    let status = sh
        .arg(&script)
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .status()
        .expect("run the printed line");
    Outcome {
        code: status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&status),
        stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
        report: None,
    }
}

/// SIGINT (Ctrl-C) stops like SIGTERM: exit 130, every committed batch flushed, a valid
/// checkpoint with a segment held mid-way. A resume under another mapping is refused (exit 2,
/// the difference named, nothing touched); the same command then resumes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_130_and_a_resume_under_a_changed_mapping_is_refused() {
    const N: u64 = 4000;
    let client = ddb().await;
    let table = unique_name("sigint");
    let target = new_database().await;
    let items = load_sample(&client, &table, 66, N).await;
    let m = Migration::new(&table, &target);
    let args = [
        "--batch-size",
        "100",
        "--concurrency",
        "2",
        "--segments",
        "4",
        "--max-read-units",
        "30",
    ];
    let ready = |cp: &Checkpoint| committed(cp) >= N / 5 && held_cursors(cp) > 0;
    let (running, seen) = match m.spawn_until_checkpoint(&args, ready).await {
        Ok((r, cp)) => (r, committed(&cp)),
        Err(out) => panic!("the run ended before it could be interrupted: {out:?}"),
    };
    signal(running.pid(), "INT");
    let out = running.wait().await;
    out.expect_code(130);
    assert_eq!(out.status(), "interrupted");
    let line = printed_resume_line(&out);
    assert!(
        line.contains("migrate") && line.contains(&format!("--table {table}")),
        "{line}"
    );
    let cp = m.checkpoint();
    let at_stop = committed(&cp);
    assert!(
        !cp.complete && at_stop >= seen && at_stop < N,
        "{at_stop} of {N}"
    );
    let held = held_cursors(&cp) as u64;
    assert!(held > 0, "a segment stopped mid-way: {:?}", cp.segments);
    let db = pg(&target).await;
    let t = m.pg_table();
    assert_eq!(count_rows(&db, &t).await as u64, at_stop, "all flushed");

    // Another mapping: refused before anything is read or written.
    let cp_bytes = std::fs::read(m.checkpoint_path().expect("checkpoint")).expect("read");
    let other = unique_name("other");
    db.batch_execute(&format!(
        "CREATE TABLE {other} (pk text, sk text, PRIMARY KEY (pk, sk))"
    ))
    .await
    .expect("the other mapping's table");
    let mapping = m.dir.join("other.toml");
    std::fs::write(
        &mapping,
        format!(
            "[[table]]\nname = \"{other}\"\nkey = [\"pk\", \"sk\"]\n[table.columns]\n\
             pk = {{ from = \"PK\", type = \"text\" }}\nsk = {{ from = \"SK\", type = \"text\" }}\n"
        ),
    )
    .expect("mapping");
    let map = mapping.to_string_lossy().to_string();
    let with_mapping: Vec<&str> = args.iter().copied().chain(["--mapping", &map]).collect();
    let refused = m.run(&with_mapping).await;
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("different settings")
            && refused
                .stderr
                .contains("mapping: checkpoint has \"default mapping")
            && refused.stderr.contains("this run has \"mapping file")
            && refused.stderr.contains("--restart"),
        "{}",
        refused.stderr
    );
    assert!(refused.report.is_none(), "a refused run writes no report");
    assert_eq!(
        std::fs::read(m.checkpoint_path().expect("checkpoint")).expect("read"),
        cp_bytes,
        "the refused run left the checkpoint alone"
    );
    assert_eq!(count_rows(&db, &t).await as u64, at_stop);
    assert_eq!(count_rows(&db, &other).await, 0);

    let done = m.run(&args).await;
    done.expect_code(0);
    assert_eq!(done.status(), "complete");
    assert_eq!(
        done.num("items_read"),
        N - at_stop,
        "read only what was missing"
    );
    assert_eq!(done.num("segments_resumed"), held);
    assert_eq!(done.num("segments_skipped"), cp.segments_done() as u64);
    assert_eq!(committed(&m.checkpoint()), N);
    assert_target_is(&db, &t, &items).await;
}

/// PostgreSQL goes away and stays away longer than --pg-retry-for: the run gives up with exit
/// 1, a valid checkpoint strictly between 0 and n, and the command to resume; that printed
/// line, run once the server is back, reads exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_exit_1_and_the_printed_line_resumes_exactly() {
    const N: u64 = 4000;
    let client = ddb().await;
    let table = unique_name("exhaust");
    let items = load_sample(&client, &table, 77, N).await;
    let server = PrivatePg::start();
    let target = crate::support::harness::new_database_on(&server.url).await;
    let m = Migration::new(&table, &target);
    let args = [
        "--batch-size",
        "100",
        "--concurrency",
        "2",
        "--segments",
        "4",
        "--max-read-units",
        "30",
        "--pg-retry-for",
        "2",
    ];
    let ready = |cp: &Checkpoint| committed(cp) >= N / 5;
    let (running, _) = match m.spawn_until_checkpoint(&args, ready).await {
        Ok(r) => r,
        Err(out) => panic!("the run ended before the outage: {out:?}"),
    };
    server.stop();
    let stopped = Instant::now();
    let out = running.wait().await;
    let took = stopped.elapsed();
    out.expect_code(1);
    assert!(
        took < Duration::from_secs(60),
        "gave up after {took:?} with --pg-retry-for 2"
    );
    assert_eq!(out.status(), "failed");
    let at_failure = committed(&m.checkpoint());
    assert!(at_failure > 0 && at_failure < N, "{at_failure} of {N}");
    assert_eq!(out.num("items_total"), at_failure);
    let line = printed_resume_line(&out);
    assert!(
        line.contains("--pg-retry-for 2") && line.contains(&format!("--table {table}")),
        "{line}"
    );

    server.start_again();
    let resumed = run_printed_line(&line, &m.dir);
    resumed.expect_code(0);
    // The printed line names the same --report file: the resume's report.
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            line.split_whitespace()
                .skip_while(|a| *a != "--report")
                .nth(1)
                .map(|p| p.trim_matches('\''))
                .expect("--report in the line"),
        )
        .expect("the resume's report"),
    )
    .expect("report JSON");
    assert_eq!(report["status"], "complete", "{report}");
    assert_eq!(report["items_read"], N - at_failure, "{report}");
    assert_eq!(committed(&m.checkpoint()), N);
    let db = pg(&target).await;
    assert_target_is(&db, &m.pg_table(), &items).await;
}

/// An empty table: every segment done, nothing read, the target table created and empty; a
/// second run has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_table_completes_with_an_empty_target() {
    let client = ddb().await;
    let table = unique_name("empty");
    load_sample(&client, &table, 1, 0).await;
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let out = m.run(&["--segments", "4"]).await;
    out.expect_code(0);
    assert_eq!(out.status(), "complete", "{}", out.stderr);
    assert_eq!(out.num("items_read"), 0);
    assert_eq!(out.num("rows_written"), 0);
    assert_eq!(out.num("segments_done"), 4);
    let cp = m.checkpoint();
    assert!(cp.complete && cp.segments.iter().all(|s| s.done && s.items == 0));
    let db = pg(&target).await;
    assert_eq!(count_rows(&db, &m.pg_table()).await, 0);
    let again = m.run(&["--segments", "4"]).await;
    again.expect_code(0);
    assert_eq!(again.status(), "nothing_to_do");
}

/// Three items over eight segments: most segments are empty, all end done, the three land once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_items_than_segments_give_the_exact_table() {
    let client = ddb().await;
    let table = unique_name("few");
    let items = load_sample(&client, &table, 88, 3).await;
    let target = new_database().await;
    let m = Migration::new(&table, &target);
    let out = m.run(&["--segments", "8", "--concurrency", "4"]).await;
    out.expect_code(0);
    assert_eq!(out.num("items_read"), 3);
    assert_eq!(out.num("rows_inserted"), 3);
    assert_eq!(out.num("segments_done"), 8);
    let cp = m.checkpoint();
    assert!(cp.complete && cp.segments.iter().all(|s| s.done && s.cursor.is_none()));
    assert_eq!(committed(&cp), 3);
    assert!(
        cp.segments.iter().filter(|s| s.items == 0).count() >= 5,
        "{:?}",
        cp.segments
    );
    let db = pg(&target).await;
    assert_target_is(&db, &m.pg_table(), &items).await;
    let again = m.run(&["--segments", "8"]).await;
    again.expect_code(0);
    assert_eq!(again.status(), "nothing_to_do");
}
