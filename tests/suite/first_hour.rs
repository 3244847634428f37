//! A user's first hour with a fresh clone: what they run must not greet them with a warning
//! about the repository's own files. The clone's `checkpoints/` (kept in git by its `.gitkeep`,
//! mode 0755 from the umask) is the default checkpoint directory; it holds nothing of anyone's,
//! so ddb2pg makes it private (0700) without a word.

use std::os::unix::fs::PermissionsExt;

use crate::support::{ddb, ddb2pg_command, delete_table, load_sample, new_database, services};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_clone_migrates_without_a_warning() {
    let root = crate::support::temp_dir("clone");
    let clone = root.join("ddb2pg");
    let cloned = std::process::Command::new("git")
        .args(["clone", "-q", "--depth", "1"])
        .arg(format!("file://{}", env!("CARGO_MANIFEST_DIR")))
        .arg(&clone)
        .status()
        .expect("run git clone");
    assert!(cloned.success());
    let cp = clone.join("checkpoints");
    assert!(cp.join(".gitkeep").exists(), "the clone keeps checkpoints/");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    // As a clone under the common umask 022 has it.
    std::fs::set_permissions(&cp, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let client = ddb().await;
    let table = crate::support::unique_name("clone");
    load_sample(&client, &table, 1, 20).await;
    let target = new_database().await;
    let out = ddb2pg_command()
        .current_dir(&clone)
        .args(["migrate", "--table", &table, "--progress", "none"])
        .args(["--endpoint-url", &services().endpoint, "--target", &target])
        .output()
        .expect("run ddb2pg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("warning") && !stderr.contains("open to others"),
        "{stderr}"
    );
    assert_eq!(mode(&cp), 0o700, "made private: it holds the checkpoint");
    assert!(
        std::fs::read_dir(&cp)
            .expect("list")
            .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))),
        "the checkpoint is in the clone's checkpoints/"
    );
    // Nothing of the run shows in `git status`: checkpoints/* is ignored, a mode is not tracked.
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(&clone)
        .output()
        .expect("git status");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "");
    delete_table(&client, &table).await;
}
