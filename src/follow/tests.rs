use super::*;
use crate::follow::RETENTION_SECS;

fn shard(id: &str, parent: Option<&str>) -> ShardInfo {
    ShardInfo {
        id: id.into(),
        parent: parent.map(str::to_string),
        ended: false,
        start_seq: None,
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
    let Lineage {
        known, eligible, ..
    } = plan(&state(now, &[]), &described, now).expect("plan");
    assert_eq!(eligible, vec!["p".to_string()]);
    assert_eq!(known.len(), 2);
    // The parent open in the checkpoint: the child waits.
    let st = state(now, &[("p", None, false)]);
    let Lineage { eligible, .. } = plan(&st, &described, now).expect("plan");
    assert_eq!(eligible, vec!["p".to_string()]);
    // The parent read to its end: the child's turn, the parent's is over.
    let st = state(now, &[("p", None, true)]);
    let Lineage { eligible, .. } = plan(&st, &described, now).expect("plan");
    assert_eq!(eligible, vec!["c".to_string()]);
}

#[test]
fn a_parent_trimmed_before_it_was_seen_is_fine_only_within_the_retention() {
    let now = 1_000_000;
    let described = [shard("c", Some("gone"))];
    let Lineage { eligible, .. } = plan(&state(now, &[]), &described, now).expect("plan");
    assert_eq!(eligible, vec!["c".to_string()]);
    let mut old = state(now, &[("x", None, true)]);
    old.follow_from = now - RETENTION_SECS;
    let err = plan(&old, &described, now).expect_err("a gap").to_string();
    assert!(err.contains("data may have been missed"), "{err}");
}

#[test]
fn a_shard_gone_before_it_was_read_to_its_end_is_a_gap() {
    let now = 1_000_000;
    let st = state(now, &[("a", None, false), ("b", None, true)]);
    // b (closed) may vanish; a (open) may not.
    let err = plan(&st, &[shard("b", None)], now)
        .expect_err("a gap")
        .to_string();
    assert!(
        err.contains("shard a") && err.contains("--restart"),
        "{err}"
    );
    assert!(plan(&st, &[shard("a", None)], now).is_ok());
}

#[test]
fn a_load_longer_than_the_retention_is_refused_before_the_first_read() {
    let now = 1_000_000;
    let mut st = state(now, &[]);
    st.follow_from = now - RETENTION_SECS - 1;
    let err = plan(&st, &[shard("a", None)], now)
        .expect_err("too old")
        .to_string();
    assert!(
        err.contains("longer than the stream's 24-hour retention"),
        "{err}"
    );
    // A follower that has run for days is not refused.
    st.first_round_at = Some(now - 10);
    assert!(plan(&st, &[shard("a", None)], now).is_ok());
}

#[test]
fn a_listed_parent_is_waited_for_even_long_after_the_load() {
    // More than the retention after the load began, a child whose parent DescribeStream still
    // lists waits for it: not a gap.
    let now = 1_000_000;
    let mut st = state(now, &[("p", None, false)]);
    st.follow_from = now - RETENTION_SECS - 10;
    let described = [shard("p", None), shard("c", Some("p"))];
    let Lineage { eligible, .. } = plan(&st, &described, now).expect("not a gap");
    assert_eq!(eligible, vec!["p".to_string()]);
    // Also when the parent is listed but new to the checkpoint.
    let mut st = state(now, &[("x", None, true)]);
    st.follow_from = now - RETENTION_SECS - 10;
    let Lineage { eligible, .. } = plan(&st, &described, now).expect("not a gap");
    assert_eq!(eligible, vec!["p".to_string()]);
}

#[test]
fn done_shards_no_longer_listed_are_pruned_once_their_children_are_done() {
    let now = 1_000_000;
    // p done and gone; its child c still open: p stays (c's parent must stay known).
    let st = state(now, &[("p", None, true), ("c", Some("p"), false)]);
    let l = plan(&st, &[shard("c", Some("p"))], now).expect("plan");
    assert!(l.known.contains_key("p"));
    assert_eq!(l.pruned, 0);
    assert_eq!(l.eligible, vec!["c".to_string()]);
    // c done too: p goes; c is still listed, so it stays.
    let st = state(now, &[("p", None, true), ("c", Some("p"), true)]);
    let l = plan(&st, &[shard("c", Some("p"))], now).expect("plan");
    assert!(!l.known.contains_key("p"));
    assert!(l.known.contains_key("c"));
    assert_eq!(l.pruned, 1);
    // A done shard still listed is never pruned.
    let st = state(now, &[("p", None, true), ("c", Some("p"), true)]);
    let l = plan(&st, &[shard("p", None), shard("c", Some("p"))], now).expect("plan");
    assert_eq!(l.known.len(), 2);
}

#[test]
fn a_trim_of_a_shard_never_read_is_a_gap_only_if_it_may_hold_changes_since_the_load() {
    let now = 1_000_000;
    let st = state(now, &[]);
    // Within the retention: whatever was trimmed predates the load.
    assert!(!trim_is_gap(&st, now, None));
    let mut old = state(now, &[]);
    old.follow_from = now - RETENTION_SECS;
    // Past it: a gap, unless the oldest record still there is itself older than the load.
    assert!(trim_is_gap(&old, now, None));
    assert!(trim_is_gap(&old, now, Some(now as i64 * 1000)));
    let before = (old.follow_from - MARGIN_SECS - 1) as i64 * 1000;
    assert!(!trim_is_gap(&old, now, Some(before)));
}

#[test]
fn an_open_shard_read_for_a_day_whose_parent_aged_out_is_no_gap() {
    // First relist: shard c (parent p trimmed long ago) is fine and read.
    let now = 1_000_000;
    let described = [shard("c", Some("p"))];
    let st = state(now, &[]);
    assert!(plan(&st, &described, now).is_ok());
    // 25 hours later, c is still open (read, seq in the checkpoint), first round done.
    let later = now + 25 * 3600;
    let mut st = state(now, &[("c", Some("p"), false)]);
    st.first_round_at = Some(now);
    let r = plan(&st, &described, later);
    assert!(r.is_ok(), "false gap: {}", r.err().unwrap());
}

#[test]
fn a_shard_listed_as_its_own_ancestor_is_refused_not_waited_for() {
    let now = 1_000_000;
    for described in [
        vec![shard("a", Some("a"))],
        vec![shard("x", Some("y")), shard("y", Some("x"))],
    ] {
        let err = plan(&state(now, &[]), &described, now)
            .expect_err("a cycle")
            .to_string();
        assert!(err.contains("its own ancestor"), "{err}");
    }
}

#[test]
fn a_pruned_parent_listed_again_is_not_read_again_after_its_child() {
    let now = 1_000_000;
    // p done and unlisted, c (its child) done too: p is pruned.
    let st = state(
        now,
        &[
            ("p", None, true),
            ("c", Some("p"), true),
            ("g", Some("c"), false),
        ],
    );
    let l = plan(&st, &[shard("c", Some("p")), shard("g", Some("c"))], now).expect("plan");
    assert!(!l.known.contains_key("p"));
    // One later DescribeStream lists p again (an inconsistent listing): p is new again.
    let mut st2 = st.clone();
    st2.shards = l.known.clone();
    let l2 = plan(
        &st2,
        &[
            shard("p", None),
            shard("c", Some("p")),
            shard("g", Some("c")),
        ],
        now,
    )
    .expect("plan");
    assert!(
        !l2.eligible.contains(&"p".to_string()),
        "p would be re-read from its start after its child c moved on: {:?}",
        l2.eligible
    );
}
