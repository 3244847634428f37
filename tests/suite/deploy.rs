//! The deployment files: the Kubernetes Indexed Job and the AWS Batch job definition parse and
//! hold what a shard needs (checked without a cluster), and the Dockerfile is there.

use std::path::{Path, PathBuf};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn json_file(rel: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(repo_file(rel)).expect(rel);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{rel} is not JSON(-compatible YAML): {e}"))
}

#[test]
fn the_kubernetes_indexed_job_and_the_batch_job_definition_parse_and_run_shards() {
    let job = json_file("deploy/kubernetes/job.yaml");
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert!(spec["completions"].as_u64().is_some_and(|c| c > 1));
    assert_eq!(spec["completions"], spec["parallelism"]);
    assert!(spec["backoffLimitPerIndex"].as_u64().is_some());
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let after = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1))
            .copied()
    };
    assert_eq!(
        after("--shards"),
        spec["completions"]
            .as_u64()
            .map(|n| n.to_string())
            .as_deref()
    );
    assert!(
        after("--segments").is_some()
            && after("--checkpoint-dir").is_some_and(|d| d.starts_with("s3://"))
    );
    // The target's URL (with its password) comes from a Secret, not the manifest.
    let env = c["env"].as_array().expect("env");
    assert!(
        env.iter()
            .any(|e| e["name"] == "DATABASE_URL"
                && e["valueFrom"]["secretKeyRef"]["name"].is_string())
    );
    assert!(
        pod["serviceAccountName"].is_string(),
        "IRSA service account"
    );
    let sa = json_file("deploy/kubernetes/serviceaccount.yaml");
    assert!(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_string());

    let def = json_file("deploy/aws-batch/job-definition.json");
    assert_eq!(def["type"], "container");
    let cmd: Vec<&str> = def["containerProperties"]["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        cmd.contains(&"--shards") && cmd.contains(&"--segments"),
        "{cmd:?}"
    );
    let secrets = def["containerProperties"]["secrets"]
        .as_array()
        .expect("secrets");
    assert!(secrets.iter().any(|s| s["name"] == "DATABASE_URL"));
    let submit = json_file("deploy/aws-batch/submit-job.json");
    assert!(submit["arrayProperties"]["size"]
        .as_u64()
        .is_some_and(|n| n >= 2));
    assert!(repo_file("Dockerfile").exists());
}
