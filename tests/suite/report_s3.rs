//! The report kept in S3 beside each shard's checkpoint (`<stem>.report.json`, against moto),
//! so it outlives a pod's temp folder; `--report s3://...` refused before the run.
/// The report's object name beside the checkpoint `names.checkpoint`: `<stem>.report.json`.
fn report_name(names: &ddb2pg::checkpoint::Names) -> String {
    let stem = names
        .checkpoint
        .strip_suffix(".json")
        .expect("checkpoint name");
    format!("{stem}.report.json")
}

/// The report object `name` under the S3 checkpoint location `dir`, parsed (None: absent).
fn stored_report(s3: &ddb2pg::checkpoint::S3Dir, name: &str) -> Option<serde_json::Value> {
    use ddb2pg::checkpoint::Storage;
    let (bytes, _) = s3.read(name).expect("read the report object")?;
    Some(serde_json::from_slice(&bytes).expect("the stored report is the report's JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shards_report_is_kept_in_s3_beside_its_checkpoint() {
    use crate::shards::{no_aws, s3_checkpoint_dir, shard_args, status_json};
    use crate::support::harness::{moto_s3, new_database, run, sample_table};
    use ddb2pg::checkpoint::{Names, S3Dir};

    let table = sample_table(600).await;
    let db = new_database().await;
    let dir = s3_checkpoint_dir().await;
    let s3 = S3Dir::open(&dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir");
    let arn = format!("arn:aws:dynamodb:ddblocal:000000000000:table/{table}");
    let target_id = ddb2pg::pgconn::resolve(Some(&db))
        .expect("target")
        .identity();
    let mut items = 0;
    for shard in ["0/2", "1/2"] {
        let out = run(&shard_args(&table, &db, &dir, shard, &[]));
        assert_eq!(out.code, 0, "{}", out.stderr);
        let names = Names::new(
            &table,
            &arn,
            &target_id,
            Some(ddb2pg::shard::Shard::parse(shard).expect("shard")),
        );
        let at = format!("{dir}/{}", report_name(&names));
        assert!(
            out.stderr.contains(&format!("report {at}")),
            "the summary says where the report is kept:\n{}",
            out.stderr
        );
        let kept = stored_report(&s3, &report_name(&names))
            .unwrap_or_else(|| panic!("no report object {at} beside the shard's checkpoint"));
        // The same document as the local --report file of this run.
        for key in [
            "status",
            "shard",
            "items_read",
            "rows_inserted",
            "rejected",
            "segments_total",
            "segments_done",
            "items_total",
            "checkpoint",
        ] {
            assert_eq!(kept[key], out.report[key], "{key} of shard {shard}");
        }
        assert_eq!(kept["status"], "complete");
        items += kept["items_read"].as_u64().expect("items_read");
    }
    assert_eq!(items, 600, "the shards' reports add up to the table");
    // Reports are not checkpoints: `status` still sees one migration of two shards.
    let status = status_json(&dir);
    let migrations = status["migrations"].as_array().expect("migrations");
    assert_eq!(migrations.len(), 1, "{status}");
    assert_eq!(
        migrations[0]["shards"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );

    // A retry after success finds nothing to do and keeps the report of the run that worked.
    let again = run(&shard_args(&table, &db, &dir, "0/2", &[]));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.report["status"], "nothing_to_do");
    let names = Names::new(
        &table,
        &arn,
        &target_id,
        Some(ddb2pg::shard::Shard::parse("0/2").expect("shard")),
    );
    let kept = stored_report(&s3, &report_name(&names)).expect("report object");
    assert_eq!(kept["status"], "complete", "{kept}");
    assert!(kept["items_read"].as_u64().is_some_and(|n| n > 0));
}

/// `--report s3://...` is not an S3 upload (it would be a local path named `s3:`, failing only
/// after the whole run): refused before anything is done, saying where the report goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_to_an_s3_url_is_refused_before_the_run() {
    use crate::support::harness::{command, migrate_args, new_database, sample_table, tempdir};

    let table = sample_table(50).await;
    let db = new_database().await;
    let cwd = tempdir("report-s3");
    let mut args = migrate_args(&table, &db, &cwd.join("cp"));
    args.extend(["--report".to_string(), "s3://bucket/run.json".to_string()]);
    let out = command(&args).current_dir(&cwd).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--report") && stderr.contains("beside its checkpoint"),
        "{stderr}"
    );
    assert!(!cwd.join("cp").exists(), "no checkpoint written");
    assert!(!cwd.join("s3:").exists(), "no local folder named s3:");
    let tables: i64 = crate::support::pg(&db)
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', \
             'information_schema')",
            &[],
        )
        .await
        .expect("count tables")
        .get(0);
    assert_eq!(tables, 0, "nothing written to the target");
}
