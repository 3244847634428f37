//! Folders ddb2pg shares, as deployments make them: a setgid temp folder (a Kubernetes emptyDir
//! with fsGroup), a checkpoint folder writable by a group of ours (a volume with fsGroup), a
//! sticky one where another user put a file first, and an `s3://` export's download folder
//! shared by shards on one host. The cases that change user run only as root.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::export::{export_args, new_bucket, upload, write_export};
use crate::shards::{s3_checkpoint_dir, spawn_in, stderr_of};
use crate::support::harness::*;

/// The user deploy/ runs ddb2pg as (distroless's nonroot).
const NONROOT: u32 = 65532;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `ddb2pg <args>` as `uid`:`gid` (no supplementary groups) with TMPDIR and HOME `dir`, run
/// in it: exit code and stderr.
fn run_as(uid: u32, gid: u32, args: &[String], dir: &Path) -> (i32, String) {
    let out = command(args)
        .env("TMPDIR", dir)
        .env("HOME", dir)
        .current_dir(dir)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run ddb2pg");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `dir` owned by `uid`:`gid` with `mode`.
fn give(dir: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

async fn count(db: &str, sql: &str) -> i64 {
    pg(db)
        .await
        .query_one(sql, &[])
        .await
        .expect("count")
        .get(0)
}

/// The pods of deploy/kubernetes/job.yaml: /tmp is an emptyDir that fsGroup makes
/// root:65532 2777, and the working folder made in it inherits the setgid bit (2700).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_folder_made_in_a_setgid_temp_folder_is_used() {
    let table = sample_table(30).await;
    let db = new_database().await;
    let url = s3_checkpoint_dir().await;
    let tmp = tempdir("shared-setgid");
    let mut args = migrate_args(&table, &db, Path::new(&url));
    args.extend(["--s3-endpoint-url".to_string(), moto_s3().to_string()]);
    // As root, the pod's user; otherwise this user, in a setgid folder of its own group.
    let (uid, gid) = if is_root() {
        (NONROOT, NONROOT)
    } else {
        // SAFETY: getuid/getgid have no preconditions.
        unsafe { (libc::getuid(), libc::getgid()) }
    };
    let owner = if is_root() { 0 } else { uid };
    give(&tmp, owner, gid, 0o2777);
    let (code, stderr) = run_as(uid, gid, &args, &tmp);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("migration complete"), "{stderr}");
    let made: Vec<_> = std::fs::read_dir(&tmp)
        .expect("read")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ddb2pg-s3-"))
        .map(|e| e.path())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let mode = std::fs::metadata(&made[0])
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o7777,
        0o2700,
        "private, with the inherited setgid bit"
    );
    assert_eq!(
        count(&db, &format!("SELECT count(*) FROM \"{table}\"")).await,
        30
    );
    // Run again: the folder made last time is found and used.
    let (code, stderr) = run_as(uid, gid, &args, &tmp);
    assert_eq!(code, 0, "{stderr}");
}

/// A Kubernetes PersistentVolume with fsGroup as a local --checkpoint-dir: root-owned, mode
/// 2775, group the pod's, with lost+found in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_folder_only_a_group_of_ours_can_write_to_is_used() {
    if !is_root() {
        return;
    }
    let table = sample_table(20).await;
    let db = new_database().await;
    let home = tempdir("shared-group-home");
    give(&home, NONROOT, NONROOT, 0o700);
    let cp = tempdir("shared-group-cp");
    std::fs::create_dir(cp.join("lost+found")).expect("mkdir");
    give(&cp, 0, NONROOT, 0o2775);
    let args = migrate_args(&table, &db, &cp);
    let (code, stderr) = run_as(NONROOT, NONROOT, &args, &home);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        count(&db, &format!("SELECT count(*) FROM \"{table}\"")).await,
        20
    );
    assert!(
        std::fs::read_dir(&cp)
            .expect("read")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".json")),
        "the checkpoint is there"
    );

    // The same folder writable by a group we are not in: refused, and the message says so.
    let other = tempdir("shared-group-other");
    std::fs::create_dir(other.join("lost+found")).expect("mkdir");
    give(&other, 0, NONROOT + 1, 0o2775);
    let (code, stderr) = run_as(NONROOT, NONROOT, &migrate_args(&table, &db, &other), &home);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&other.display().to_string())
            && stderr.contains(&format!("group {}, which you are not in", NONROOT + 1)),
        "{stderr}"
    );
    // Writable by anyone (no sticky bit): refused too.
    give(&other, 0, NONROOT, 0o0777);
    let (code, stderr) = run_as(NONROOT, NONROOT, &migrate_args(&table, &db, &other), &home);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("any user can write to it"), "{stderr}");
}

/// A sticky folder anyone can add names to, as --checkpoint-dir: another user put a file
/// with the name of the run's checkpoint there first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_another_user_put_in_a_sticky_folder_is_refused_by_name() {
    if !is_root() {
        return;
    }
    let table = sample_table(10).await;
    let db = new_database().await;
    // The checkpoint's name, from a run elsewhere (it depends on the table and the target).
    let first = tempdir("shared-sticky-first");
    let r = run(&migrate_args(&table, &db, &first));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let name = std::fs::read_dir(&first)
        .expect("read")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".json"))
        .expect("a checkpoint");
    // The target as before any run, so that a refused run's table would show.
    let t = ddb2pg::plan::default_table_name(&table);
    pg(&db)
        .await
        .batch_execute(&format!("DROP TABLE \"{t}\""))
        .await
        .expect("drop");
    let sticky = tempdir("shared-sticky");
    give(&sticky, 0, 0, 0o1777);
    let planted = sticky.join(&name);
    std::fs::write(&planted, "{}").expect("plant");
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).expect("chown");
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let home = tempdir("shared-sticky-home");
    give(&home, NONROOT, NONROOT, 0o700);
    for (uid, who) in [(NONROOT, "another user"), (0, "root")] {
        let (code, stderr) = run_as(uid, uid, &migrate_args(&table, &db, &sticky), &home);
        assert_eq!(code, 2, "{who}: {stderr}");
        assert!(
            stderr.contains(&planted.display().to_string())
                && stderr.contains("belongs to user 65534")
                && stderr.contains("Remove it"),
            "{who}: {stderr}"
        );
        assert_eq!(std::fs::read_to_string(&planted).expect("read"), "{}");
        // Refused before the target is touched: the mapping's table was not created.
        let sql = format!("SELECT count(*) FROM pg_tables WHERE tablename = '{t}'");
        let made = count(&db, &sql).await;
        assert_eq!(made, 0, "{who}: the table was created before the refusal");
    }
}

/// A download folder someone else made is refused before the target is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_folder_refused_leaves_the_target_untouched() {
    let dir = tempdir("shared-refused-export");
    write_export(&dir, 0..20, 10);
    let (s3, bucket) = new_bucket().await;
    upload(&s3, &bucket, "exports/app", &dir).await;
    let db = new_database().await;
    let cp = tempdir("shared-refused-cp");
    let folder = cp.join(format!("s3-{bucket}_exports_app"));
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let url = format!("s3://{bucket}/exports/app");
    let mut args = export_args(Path::new(&url), &db, &cp);
    args.extend(["--s3-endpoint-url".to_string(), moto_s3().to_string()]);
    let r = run(&args);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&folder.display().to_string()) && r.stderr.contains("mode 0777"),
        "{}",
        r.stderr
    );
    let tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'exp'";
    assert_eq!(count(&db, tables).await, 0, "the target was not touched");
}

/// Shards on one host load one s3:// export into one target, all at once, with one local
/// checkpoint directory (so one download folder), then with S3 checkpoints (one working
/// folder in the temp directory): every shard completes, every item lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_on_one_host_share_an_s3_exports_downloads() {
    let items = 2_400;
    let dir = tempdir("shared-shards-export");
    write_export(&dir, 0..items, 60);
    let (s3, bucket) = new_bucket().await;
    upload(&s3, &bucket, "exports/app", &dir).await;
    let url = format!("s3://{bucket}/exports/app");
    let cwd = tempdir("shared-shards-run");
    let s3_cp = s3_checkpoint_dir().await;
    for (checkpoints, shards) in [
        (tempdir("shared-shards-cp").display().to_string(), 4),
        (s3_cp, 3),
    ] {
        let db = new_database().await;
        let children: Vec<_> = (0..shards)
            .map(|i| {
                let mut args = export_args(Path::new(&url), &db, Path::new(&checkpoints));
                let shard = format!("{i}/{shards}");
                args.extend(
                    [
                        "--shard",
                        &shard,
                        "--segments",
                        "12",
                        "--s3-endpoint-url",
                        moto_s3(),
                    ]
                    .map(String::from),
                );
                spawn_in(&args, &cwd)
            })
            .collect();
        for (i, child) in children.into_iter().enumerate() {
            let (code, stderr) = stderr_of(child);
            assert_eq!(code, 0, "{checkpoints}, shard {i}/{shards}: {stderr}");
        }
        assert_eq!(
            count(&db, "SELECT count(*) FROM exp").await,
            items as i64,
            "{checkpoints}"
        );
    }
}
