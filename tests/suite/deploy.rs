//! The deployment files: the Kubernetes Indexed Job and the AWS Batch job definitions parse and
//! hold what a shard needs (checked without a cluster); the image runs as a numeric non-root
//! user from base images pinned by digest; the Job passes the Pod Security "restricted" profile
//! and the Batch definitions take the same care (read-only root, size-bounded writable /tmp, no
//! privileges, no host mounts); the report is kept in S3 beside the checkpoint (its test against
//! moto: `report_s3.rs`), not in a pod's temp folder; the Job's pods serve metrics on a named
//! port with liveness (/healthz) and readiness (/readyz) probes on it.

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
    // Metrics and probes: the named port the flag listens on, /healthz and /readyz on it.
    let port = &c["ports"][0];
    assert_eq!(port["name"], "metrics");
    let addr = after("--metrics-addr").expect("--metrics-addr in the Job's args");
    assert_eq!(
        addr.rsplit(':').next().and_then(|p| p.parse::<u64>().ok()),
        port["containerPort"].as_u64(),
        "--metrics-addr listens on the containerPort"
    );
    assert!(
        addr.starts_with("0.0.0.0:"),
        "reachable from the kubelet: {addr}"
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    let ann = &spec["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(
        ann["prometheus.io/port"]
            .as_str()
            .and_then(|p| p.parse::<u64>().ok()),
        port["containerPort"].as_u64()
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

// ---------------------------------------------------------------------------------------------
// The image: a numeric non-root user, base images pinned by digest.
// ---------------------------------------------------------------------------------------------

/// The Dockerfile's last `USER` as numbers (uid, gid); panics naming what is wrong.
fn image_user() -> (u64, u64) {
    let text = std::fs::read_to_string(repo_file("Dockerfile")).expect("Dockerfile");
    let user = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("USER "))
        .next_back()
        .expect("the Dockerfile sets USER")
        .trim()
        .to_string();
    let (uid, gid) = user.split_once(':').unwrap_or((&user, &user));
    let num = |s: &str| {
        s.parse::<u64>().unwrap_or_else(|_| {
            panic!(
                "USER {user}: not numeric; a kubelet asked for runAsNonRoot refuses an image whose \
                 user is a name (\"cannot verify user is non-root\")"
            )
        })
    };
    let (uid, gid) = (num(uid), num(gid));
    assert!(uid != 0 && gid != 0, "USER {user}: root");
    (uid, gid)
}

#[test]
fn the_image_runs_as_a_numeric_non_root_user_from_base_images_pinned_by_digest() {
    assert_eq!(
        image_user(),
        (65532, 65532),
        "distroless's nonroot user, by number"
    );
    let text = std::fs::read_to_string(repo_file("Dockerfile")).expect("Dockerfile");
    let froms: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM "))
        .collect();
    assert!(froms.len() >= 2, "a build stage and a run stage: {froms:?}");
    for from in froms {
        let image = from.split_whitespace().next().unwrap_or("");
        let digest = image.split_once("@sha256:").map(|(_, d)| d).unwrap_or("");
        assert!(
            digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
            "FROM {image}: not pinned by digest (@sha256: and 64 hex digits)"
        );
    }
}

/// On Fargate (platform 1.4+) a task volume with a name only is root-owned 0755, so user
/// 65532 could not make its working folder in /tmp; ECS copies the image's /tmp (distroless:
/// 1777) into it only when the image declares that path a `VOLUME`.
#[test]
fn the_image_declares_tmp_a_volume_so_fargate_keeps_it_writable() {
    let text = std::fs::read_to_string(repo_file("Dockerfile")).expect("Dockerfile");
    let run_stage = text.rsplit("\nFROM ").next().unwrap_or("");
    assert!(
        run_stage.lines().any(|l| l.trim() == r#"VOLUME ["/tmp"]"#),
        "the run stage declares VOLUME [\"/tmp\"]"
    );
    let batch = json_file("deploy/aws-batch/job-definition.json");
    let mounts = batch["containerProperties"]["mountPoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        mounts.iter().any(|m| m["containerPath"] == "/tmp"),
        "the Fargate definition mounts its task volume at the image's VOLUME path"
    );
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes Job: the Pod Security "restricted" profile, bounded writable storage.
// ---------------------------------------------------------------------------------------------

/// A Kubernetes quantity ("2Gi", "512Mi", "1G", "100") in bytes.
fn quantity(q: &serde_json::Value) -> u64 {
    let s = q.as_str().unwrap_or_else(|| panic!("quantity {q}"));
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (num, mult) = units
        .iter()
        .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n, *m)))
        .unwrap_or((s, 1));
    num.parse::<u64>()
        .unwrap_or_else(|_| panic!("quantity {s}"))
        * mult
}

/// `pod`'s setting `key`, from the container's securityContext or else the pod's.
fn effective<'a>(
    pod: &'a serde_json::Value,
    c: &'a serde_json::Value,
    key: &str,
) -> &'a serde_json::Value {
    match &c["securityContext"][key] {
        serde_json::Value::Null => &pod["securityContext"][key],
        v => v,
    }
}

/// The checks of the "restricted" Pod Security Standard (and the baseline's under it) that a
/// Job's pod can fail, as the Kubernetes docs list them, and this project's own: numeric user
/// matching the image, read-only root, every writable volume an emptyDir with a size limit
/// within the container's ephemeral-storage limit.
fn check_restricted(pod: &serde_json::Value, (uid, gid): (u64, u64)) {
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(pod[host], true, "{host}");
    }
    let allowed = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    for v in &volumes {
        let kinds: Vec<&String> = v
            .as_object()
            .expect("volume")
            .keys()
            .filter(|k| *k != "name")
            .collect();
        assert!(
            kinds.iter().all(|k| allowed.contains(&k.as_str())),
            "volume {v}: a type the restricted profile refuses"
        );
    }
    let containers = pod["containers"].as_array().expect("containers");
    let inits = pod["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in containers.iter().chain(&inits) {
        let name = &c["name"];
        assert_eq!(
            effective(pod, c, "runAsNonRoot"),
            true,
            "{name}: runAsNonRoot"
        );
        assert_eq!(
            effective(pod, c, "runAsUser").as_u64(),
            Some(uid),
            "{name}: runAsUser must be the image's numeric user {uid}: without it the kubelet \
             cannot check runAsNonRoot against a named USER"
        );
        assert_eq!(
            effective(pod, c, "runAsGroup").as_u64(),
            Some(gid),
            "{name}: runAsGroup"
        );
        let seccomp = effective(pod, c, "seccompProfile")["type"].as_str();
        assert!(
            matches!(seccomp, Some("RuntimeDefault" | "Localhost")),
            "{name}: seccompProfile.type is {seccomp:?}, the restricted profile wants \
             RuntimeDefault"
        );
        let sc = &c["securityContext"];
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{name}: allowPrivilegeEscalation"
        );
        assert_ne!(sc["privileged"], true, "{name}: privileged");
        let drop: Vec<&str> = sc["capabilities"]["drop"]
            .as_array()
            .map(|d| d.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        assert!(drop.contains(&"ALL"), "{name}: capabilities.drop [ALL]");
        let add = sc["capabilities"]["add"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            add.iter().all(|a| a == "NET_BIND_SERVICE"),
            "{name}: adds {add:?}"
        );
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{name}: readOnlyRootFilesystem"
        );
        let ports = c["ports"].as_array().cloned().unwrap_or_default();
        assert!(
            ports.iter().all(|p| p["hostPort"].is_null()),
            "{name}: hostPort"
        );

        // Writable storage: explicit, bounded, and within the container's ephemeral storage.
        let limit = &c["resources"]["limits"]["ephemeral-storage"];
        assert!(
            !limit.is_null() && !c["resources"]["requests"]["ephemeral-storage"].is_null(),
            "{name}: resources requests/limits ephemeral-storage (exports and rejects land in \
             the temp folder)"
        );
        let mut writable = 0;
        let mut tmp = false;
        for m in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
            if m["readOnly"] == true {
                continue;
            }
            let v = volumes
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap_or_else(|| panic!("{name}: mount {m} has no volume"));
            let size = &v["emptyDir"]["sizeLimit"];
            assert!(
                !size.is_null() && v["emptyDir"]["medium"] != "Memory",
                "{name}: writable mount {} is not a disk emptyDir with a sizeLimit: {v}",
                m["mountPath"]
            );
            writable += quantity(size);
            tmp |= m["mountPath"] == "/tmp";
        }
        assert!(tmp, "{name}: a writable /tmp (ddb2pg's working files)");
        assert!(
            writable <= quantity(limit),
            "{name}: the writable volumes' sizeLimits exceed the ephemeral-storage limit"
        );
    }
}

/// The argument after `flag` in `args`.
fn after<'a>(args: &'a [serde_json::Value], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|a| a.as_str())
}

/// The run's report is kept in S3 beside the checkpoint, not written into the container.
fn check_report_in_s3(args: &[serde_json::Value], what: &str) {
    assert!(
        after(args, "--checkpoint-dir").is_some_and(|d| d.starts_with("s3://")),
        "{what}: --checkpoint-dir s3://... (checkpoints, rejects and the report outlive the \
         container)"
    );
    assert!(
        !args.iter().any(|a| a == "--report"),
        "{what}: --report writes into the container's temp folder, lost with it; the report is \
         kept beside the S3 checkpoint"
    );
}

#[test]
fn the_kubernetes_job_passes_the_restricted_pod_security_profile() {
    let job = json_file("deploy/kubernetes/job.yaml");
    let pod = &job["spec"]["template"]["spec"];
    check_restricted(pod, image_user());
    // IRSA's token comes from the EKS webhook's own projected volume (aws-iam-token), which
    // does not depend on the Kubernetes API token: the pod needs none.
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "automountServiceAccountToken"
    );
    let sa = json_file("deploy/kubernetes/serviceaccount.yaml");
    assert_eq!(sa["automountServiceAccountToken"], false);
    let args = pod["containers"][0]["args"].as_array().expect("args");
    check_report_in_s3(args, "job.yaml");
}

/// Each rule of [`check_restricted`] bites: the Job with one setting taken back (each one the
/// Job lacked before) is refused.
#[test]
fn the_restricted_checks_refuse_each_setting_the_job_lacked() {
    type Mutation = fn(&mut serde_json::Value);
    let mutations: [(&str, Mutation); 9] = [
        ("no numeric runAsUser", |p| {
            p["securityContext"]["runAsUser"] = serde_json::Value::Null;
            p["containers"][0]["securityContext"]["runAsUser"] = serde_json::Value::Null;
        }),
        ("no seccompProfile", |p| {
            p["securityContext"]["seccompProfile"] = serde_json::Value::Null;
            p["containers"][0]["securityContext"]["seccompProfile"] = serde_json::Value::Null;
        }),
        ("capabilities not dropped", |p| {
            p["containers"][0]["securityContext"]["capabilities"] = serde_json::json!({});
        }),
        ("privilege escalation", |p| {
            p["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = true.into();
        }),
        ("writable root", |p| {
            p["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = false.into();
        }),
        ("temp volume without a size limit", |p| {
            p["volumes"][0]["emptyDir"] = serde_json::json!({});
        }),
        ("no ephemeral-storage limit", |p| {
            p["containers"][0]["resources"]["limits"]["ephemeral-storage"] =
                serde_json::Value::Null;
        }),
        ("a hostPath volume", |p| {
            p["volumes"][0] = serde_json::json!({"name": "tmp", "hostPath": {"path": "/tmp"}});
        }),
        ("runAsNonRoot off", |p| {
            p["securityContext"]["runAsNonRoot"] = false.into();
            p["containers"][0]["securityContext"]["runAsNonRoot"] = false.into();
        }),
    ];
    let job = json_file("deploy/kubernetes/job.yaml");
    let pod = job["spec"]["template"]["spec"].clone();
    check_restricted(&pod, image_user());
    for (what, mutate) in mutations {
        let mut bad = pod.clone();
        mutate(&mut bad);
        let refused = std::panic::catch_unwind(|| check_restricted(&bad, (65532, 65532)));
        assert!(refused.is_err(), "{what}: not refused");
    }
}

/// `kubectl apply --dry-run=client` on the manifests where kubectl can reach a cluster (it
/// reads the API's schema even for a client-side dry run); skipped with a note otherwise.
#[test]
fn kubectl_accepts_the_manifests_where_a_cluster_is_reachable() {
    let dir = repo_file("deploy/kubernetes");
    let out = match std::process::Command::new("kubectl")
        .args(["apply", "--dry-run=client", "-f"])
        .arg(&dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("note: kubectl not run ({e}): the manifests were checked without it");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let unreachable = [
        "connection refused",
        "unable to recognize",
        "failed to download openapi",
        "no configuration has been provided",
        "Unable to connect to the server",
    ];
    if !out.status.success() && unreachable.iter().any(|u| stderr.contains(u)) {
        eprintln!("note: kubectl found no cluster to validate against; skipped:\n{stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "kubectl apply --dry-run=client:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// The AWS Batch job definitions (Fargate and EC2): the same care.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_batch_job_definitions_run_unprivileged_with_a_read_only_root_and_bounded_tmp() {
    let (uid, gid) = image_user();
    for (file, fargate) in [
        ("deploy/aws-batch/job-definition.json", true),
        ("deploy/aws-batch/job-definition-ec2.json", false),
    ] {
        let def = json_file(file);
        let platform = if fargate { "FARGATE" } else { "EC2" };
        assert_eq!(def["platformCapabilities"][0], platform, "{file}");
        let cp = &def["containerProperties"];
        assert_eq!(
            cp["user"].as_str(),
            Some(format!("{uid}:{gid}").as_str()),
            "{file}: user, by number, the image's"
        );
        assert_eq!(cp["privileged"], false, "{file}: privileged");
        assert_eq!(
            cp["readonlyRootFilesystem"], true,
            "{file}: readonlyRootFilesystem"
        );
        let volumes = cp["volumes"].as_array().cloned().unwrap_or_default();
        assert!(
            volumes.iter().all(|v| v["host"].is_null()),
            "{file}: a host mount"
        );
        let lp = &cp["linuxParameters"];
        assert!(lp["devices"].is_null(), "{file}: host devices");
        let tmpfs = lp["tmpfs"].as_array().cloned().unwrap_or_default();
        let mut tmp = false;
        for m in cp["mountPoints"].as_array().cloned().unwrap_or_default() {
            if m["readOnly"] == true {
                continue;
            }
            let v = volumes
                .iter()
                .find(|v| v["name"] == m["sourceVolume"])
                .unwrap_or_else(|| panic!("{file}: mount point {m} has no volume"));
            // A task volume on the task's ephemeral storage, bounded by ephemeralStorage.
            assert!(
                v.as_object().is_some_and(|o| o.len() == 1) && fargate,
                "{file}: writable volume {v} is not bounded (on EC2 use a tmpfs with a size)"
            );
            tmp |= m["containerPath"] == "/tmp";
        }
        for t in &tmpfs {
            assert!(!fargate, "{file}: tmpfs is not available on Fargate");
            assert!(t["size"].as_u64().is_some_and(|s| s > 0), "{file}: {t}");
            tmp |= t["containerPath"] == "/tmp";
        }
        assert!(tmp, "{file}: a writable /tmp (ddb2pg's working files)");
        if fargate {
            let size = cp["ephemeralStorage"]["sizeInGiB"].as_u64();
            assert!(
                size.is_some_and(|s| (21..=200).contains(&s)),
                "{file}: ephemeralStorage.sizeInGiB (21-200) bounds the task's storage"
            );
        } else {
            assert!(cp["ephemeralStorage"].is_null(), "{file}: Fargate only");
        }
        let cmd = cp["command"].as_array().expect("command");
        check_report_in_s3(cmd, file);
    }
}
