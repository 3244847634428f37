use super::*;

fn shard(id: &str, parent: Option<&str>) -> ShardInfo {
    ShardInfo {
        id: id.into(),
        parent: parent.map(str::to_string),
        ended: false,
    }
}

fn state(now: u64, shards: &[(&str, Option<&str>, bool)]) -> StreamState {
    StreamState {
        arn: "arn".into(),
        follow_from: now - 600,
        shards: shards
            .iter()
            .map(|(id, parent, closed)| {
                (
                    id.to_string(),
                    ShardState {
                        parent: parent.map(str::to_string),
                        seq: Some("1".into()),
                        closed: *closed,
                    },
                )
            })
            .collect(),
        ..StreamState::default()
    }
}

#[test]
fn a_child_waits_for_its_parent_to_be_read_to_its_end() {
    let now = 1_000_000;
    let described = [shard("p", None), shard("c", Some("p"))];
    // First sight: the parent is new (in this DescribeStream): the child waits for it.
    let (known, eligible) = plan_shards(&state(now, &[]), &described, now).expect("plan");
    assert_eq!(eligible, vec!["p".to_string()]);
    assert_eq!(known.len(), 2);
    // The parent open in the checkpoint: the child waits.
    let st = state(now, &[("p", None, false)]);
    let (_, eligible) = plan_shards(&st, &described, now).expect("plan");
    assert_eq!(eligible, vec!["p".to_string()]);
    // The parent read to its end: the child's turn, the parent's is over.
    let st = state(now, &[("p", None, true)]);
    let (_, eligible) = plan_shards(&st, &described, now).expect("plan");
    assert_eq!(eligible, vec!["c".to_string()]);
}

#[test]
fn a_parent_trimmed_before_it_was_seen_is_fine_only_within_the_retention() {
    let now = 1_000_000;
    let described = [shard("c", Some("gone"))];
    let (_, eligible) = plan_shards(&state(now, &[]), &described, now).expect("plan");
    assert_eq!(eligible, vec!["c".to_string()]);
    let mut old = state(now, &[("x", None, true)]);
    old.follow_from = now - RETENTION_SECS;
    let err = plan_shards(&old, &described, now)
        .expect_err("a gap")
        .to_string();
    assert!(err.contains("data may have been missed"), "{err}");
}

#[test]
fn a_shard_gone_before_it_was_read_to_its_end_is_a_gap() {
    let now = 1_000_000;
    let st = state(now, &[("a", None, false), ("b", None, true)]);
    // b (closed) may vanish; a (open) may not.
    let err = plan_shards(&st, &[shard("b", None)], now)
        .expect_err("a gap")
        .to_string();
    assert!(
        err.contains("shard a") && err.contains("--restart"),
        "{err}"
    );
    assert!(plan_shards(&st, &[shard("a", None)], now).is_ok());
}

#[test]
fn a_load_longer_than_the_retention_is_refused_before_the_first_read() {
    let now = 1_000_000;
    let mut st = state(now, &[]);
    st.follow_from = now - RETENTION_SECS - 1;
    let err = plan_shards(&st, &[shard("a", None)], now)
        .expect_err("too old")
        .to_string();
    assert!(
        err.contains("longer than the stream's 24-hour retention"),
        "{err}"
    );
    // A follower that has run for days is not refused.
    st.first_round_at = Some(now - 10);
    assert!(plan_shards(&st, &[shard("a", None)], now).is_ok());
}
