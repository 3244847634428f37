//! An s3:// checkpoint directory's lease and conditional writes, driven through the storage
//! itself against moto's S3: two `S3Dir`s on one prefix stand for two machines running one
//! shard, the first still believing it holds the lease (its clock behind the second's, or
//! paused between its lease check and its PUT), the second having taken the lock over.

use std::path::Path;
use std::time::Duration;

use ddb2pg::checkpoint::{S3Dir, Storage};

use crate::shards::{no_aws, s3_checkpoint_dir};
use crate::support::harness::{moto_s3, tempdir};

const LOCK: &str = "t.shard-0-of-2.lock";
const REJECTS: &str = "t.shard-0-of-2.rejects.jsonl";

fn open(dir: &str) -> S3Dir {
    S3Dir::open(dir, &no_aws(), &Some(moto_s3().to_string())).expect("s3 dir")
}

fn append(path: &Path, line: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open local rejects");
    f.write_all(line.as_bytes()).expect("append");
}

/// The stored object `name` under `dir` (s3://bucket/prefix), read with a plain client.
async fn stored(dir: &str, name: &str) -> Vec<u8> {
    let (bucket, prefix) = ddb2pg::source::s3::parse(dir).expect("s3 url");
    let s3 = ddb2pg::source::s3::client(&no_aws(), &Some(moto_s3().to_string()))
        .await
        .expect("s3 client");
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(format!("{prefix}/{name}"))
        .send()
        .await
        .expect("get");
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

/// The lock `LOCK` replaced by a lease that ended long ago, as the second machine's clock
/// sees the first's lease (clocks apart by more than the lease).
async fn expire_lock(dir: &str) {
    let (bucket, prefix) = ddb2pg::source::s3::parse(dir).expect("s3 url");
    let s3 = ddb2pg::source::s3::client(&no_aws(), &Some(moto_s3().to_string()))
        .await
        .expect("s3 client");
    let lease = serde_json::json!({
        "holder": "pid 1 on machine-a", "token": "a", "acquired_at": 1, "renewed_at": 1,
        "expires_at": 2, "lease_s": 60, "released": false
    });
    s3.put_object()
        .bucket(bucket)
        .key(format!("{prefix}/{LOCK}"))
        .body(serde_json::to_vec(&lease).expect("json").into())
        .send()
        .await
        .expect("put lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holder_cannot_replace_the_new_holders_rejects() {
    let dir = s3_checkpoint_dir().await;
    let (a, b) = (open(&dir), open(&dir));
    let (local_a, local_b) = (
        tempdir("lease-a").join(REJECTS),
        tempdir("lease-b").join(REJECTS),
    );
    let _held_a = a.lock(LOCK, Duration::from_secs(60)).expect("a locks");
    a.fetch(REJECTS, &local_a).expect("a fetches");
    append(&local_a, "a1\n");
    a.publish(REJECTS, &local_a).expect("a publishes");

    expire_lock(&dir).await;
    let _held_b = b.lock(LOCK, Duration::from_secs(60)).expect("b takes over");
    b.fetch(REJECTS, &local_b).expect("b fetches");
    append(&local_b, "b1\n");
    b.publish(REJECTS, &local_b).expect("b publishes");

    // The first machine, its lease renewal not yet due, publishes its own copy.
    append(&local_a, "a2\n");
    let err = a
        .publish(REJECTS, &local_a)
        .expect_err("a stale holder's rejects must not replace the new holder's");
    assert!(err.to_string().contains("another process"), "{err}");
    assert_eq!(stored(&dir, REJECTS).await, b"a1\nb1\n");
}
