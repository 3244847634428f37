//! Files holding personal data: the checkpoint directory and its files, and the copies of an
//! s3:// export, are owner-only (0700 / 0600), never written through a symbolic link, and the
//! copies are removed once a run completes unless --keep-downloads.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::harness::*;
use crate::support::{item, put, s};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every directory and file under `root` (itself included), depth first.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut all = vec![root.to_path_buf()];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            all.push(p);
        }
    }
    all
}

/// The files of `dir` whose names end with `suffix`.
fn ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

fn assert_owner_only(dir: &Path) {
    for p in walk(dir) {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&p), want, "{} is {:04o}", p.display(), mode(&p));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_files_are_owner_only_and_never_written_through_a_link() {
    let table = sample_table(40).await;
    // One item the default mapping rejects (U+0000 in text): a rejects file with its whole item.
    put(
        &ddb().await,
        &table,
        &item("USER#nul", "PROFILE", vec![("bio", s("a\u{0}b"))]),
    )
    .await;
    let db = new_database().await;
    let root = tempdir("files-cp");
    let cp = root.join("nested").join("checkpoints");
    let r = run(&migrate_args(&table, &db, &cp));
    assert_eq!(r.code, 4, "{}", r.stderr);
    let (json, lock, rejects) = (
        ending(&cp, ".json"),
        ending(&cp, ".lock"),
        ending(&cp, ".rejects.jsonl"),
    );
    assert_eq!((json.len(), lock.len(), rejects.len()), (1, 1, 1), "{cp:?}");
    assert_eq!(mode(&root.join("nested")), 0o700, "a created parent");
    assert_owner_only(&cp);

    // Files and a directory left open to others (an earlier version, a umask) are tightened.
    std::fs::set_permissions(&cp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for f in [&json[0], &lock[0], &rejects[0]] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let r = run(&migrate_args(&table, &db, &cp));
    assert_eq!(r.code, 4, "nothing to do, earlier rejects: {}", r.stderr);
    assert!(r.stderr.contains("tightened to 0700"), "{}", r.stderr);
    assert_owner_only(&cp);

    // A link in place of the rejects file is refused before anything is written through it.
    let outside = root.join("outside.txt");
    std::fs::write(&outside, "not yours\n").expect("write");
    std::fs::remove_file(&rejects[0]).expect("rm");
    std::os::unix::fs::symlink(&outside, &rejects[0]).expect("symlink");
    let mut args = migrate_args(&table, &db, &cp);
    args.push("--restart".into());
    let r = run(&args);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("symbolic link") && r.stderr.contains(".rejects.jsonl"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&outside).expect("read"),
        "not yours\n"
    );
    // So is a link as the checkpoint directory.
    let link = root.join("cp-link");
    std::os::unix::fs::symlink(root.join("elsewhere"), &link).expect("symlink");
    let r = run(&migrate_args(&table, &db, &link));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert!(
        !root.join("elsewhere").exists(),
        "nothing created through it"
    );
}

/// Upload every file under `dir` to a fresh bucket of moto's S3 at `prefix/`; returns the
/// endpoint and the bucket.
async fn upload(dir: &Path, prefix: &str) -> (&'static str, String) {
    let endpoint = moto_s3();
    let aws = ddb2pg::cli::AwsArgs {
        endpoint_url: None,
        region: None,
        profile: None,
    };
    let shared = ddb2pg::source::aws_config(&aws, Some(endpoint))
        .await
        .expect("aws config");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("bucket").replace('_', "-");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    for p in walk(dir).into_iter().filter(|p| p.is_file()) {
        let rel = p
            .strip_prefix(dir)
            .expect("rel")
            .to_string_lossy()
            .to_string();
        s3.put_object()
            .bucket(&bucket)
            .key(format!("{prefix}/{rel}"))
            .body(aws_sdk_s3::primitives::ByteStream::from(
                std::fs::read(&p).expect("read"),
            ))
            .send()
            .await
            .expect("put");
    }
    (endpoint, bucket)
}

fn s3_args(url: &str, endpoint: &str, db: &str, cp: &Path) -> Vec<String> {
    [
        "migrate",
        "--export",
        url,
        "--key",
        "PK,SK",
        "--s3-endpoint-url",
        endpoint,
        "--target",
        db,
        "--checkpoint-dir",
        &cp.to_string_lossy(),
        "--progress",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_export_copies_are_owner_only_and_removed_after_a_complete_run() {
    let dir = tempdir("files-s3-export");
    crate::export::write_export(&dir, 0..600, 250);
    let (endpoint, bucket) = upload(&dir, "exports/app").await;
    let url = format!("s3://{bucket}/exports/app");
    let downloads =
        |cp: &Path| -> Vec<PathBuf> { ending(cp, "").into_iter().filter(|p| p.is_dir()).collect() };

    // By default a complete run removes them, and says so.
    let cp = tempdir("files-s3-remove").join("checkpoints");
    let r = run(&s3_args(&url, endpoint, &new_database().await, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["items_read"], 600);
    assert!(downloads(&cp).is_empty(), "{:?}", downloads(&cp));
    assert!(
        r.stderr.contains("export copies removed from"),
        "{}",
        r.stderr
    );
    assert_eq!(r.report["downloads"]["removed"], true, "{}", r.report);
    assert_owner_only(&cp);

    // --keep-downloads: the copies stay, owner-only, and the summary says where.
    let cp = tempdir("files-s3-keep").join("checkpoints");
    let mut args = s3_args(&url, endpoint, &new_database().await, &cp);
    args.push("--keep-downloads".into());
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let kept = downloads(&cp);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(walk(&kept[0]).len() > 4, "manifests and data files");
    assert_owner_only(&cp);
    assert!(
        r.stderr.contains("export copies kept in") && r.stderr.contains("--keep-downloads"),
        "{}",
        r.stderr
    );
    assert_eq!(r.report["downloads"]["removed"], false, "{}", r.report);
}
