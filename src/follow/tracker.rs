//! Where each shard is committed up to, when its records are applied out of order (pure).
//!
//! A shard's reader hands its records, in sequence order, to the lanes (one per connection,
//! chosen by the item's key), which commit them in batches of their own: a later record of
//! one shard may be committed on one lane before an earlier one on another. Each record gets
//! a ticket (its index in the shard's reading order) when it is dispatched; a lane completes
//! the tickets of a batch once the batch is committed. The shard's **watermark** is the
//! sequence number of the last record below which every ticket is complete: that, and only
//! that, is what the checkpoint records, so a resume re-reads every record not known to be
//! committed (re-applying a committed one is harmless, see `crate::changes`).
//!
//! Records older than the load (skipped) are complete as soon as they are dispatched.
//!
//! The reject lines of committed changes wait in their shard's track until the watermark
//! passes them, and are written with it: so the rejects hold exactly the changes the
//! checkpoint's position covers, and a resume that re-applies the others writes their lines
//! once.
//!
//! The tracker also knows what lag and caught-up need: the oldest record not yet committed,
//! and whether the reader last saw the shard's end.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// An idle shard's last empty page counts as "at its end, now" for this long (its reader asks
/// again every second; a busy machine or a slow answer may take a few more).
pub const IDLE_SLACK_MS: i64 = 5_000;

/// One shard's reading and committing progress.
#[derive(Debug, Default)]
pub struct ShardTrack {
    /// The next ticket to hand out.
    next: u64,
    /// Every ticket below this is complete.
    done_upto: u64,
    /// Complete tickets at or above `done_upto`.
    finished: BTreeSet<u64>,
    /// Sequence number and creation time (ms) of tickets `done_upto..next`.
    pending: VecDeque<(String, Option<i64>)>,
    /// The watermark: the last sequence number below which all is committed.
    pub committed_seq: Option<String>,
    /// Creation time of the last record the watermark passed.
    pub committed_created_ms: Option<i64>,
    /// The reader read the shard to its end (no more records will come).
    pub read_to_end: bool,
    /// Empty pages in a row since the last record (an open shard at its end).
    pub empty_pages: u32,
    /// When the current run of empty pages began (ms since the epoch).
    pub empty_since_ms: Option<i64>,
    /// When the call that answered the last page began (ms since the epoch): that page holds
    /// every record the stream had then, and no later one.
    pub last_call_ms: Option<i64>,
    /// Reject lines of committed changes, by ticket, waiting for the watermark to pass them.
    held: BTreeMap<u64, Vec<String>>,
}

impl ShardTrack {
    /// A shard committed up to `seq` by earlier runs.
    pub fn resumed(seq: Option<String>) -> ShardTrack {
        ShardTrack {
            committed_seq: seq,
            ..ShardTrack::default()
        }
    }

    /// A ticket for the next record read.
    pub fn dispatch(&mut self, seq: String, created_ms: Option<i64>) -> u64 {
        let t = self.next;
        self.next += 1;
        self.pending.push_back((seq, created_ms));
        t
    }

    /// Ticket `t` is committed; whether the watermark moved.
    pub fn complete(&mut self, t: u64) -> bool {
        if t < self.done_upto || t >= self.next {
            return false;
        }
        self.finished.insert(t);
        let mut moved = false;
        while self.finished.remove(&self.done_upto) {
            self.done_upto += 1;
            if let Some((seq, created)) = self.pending.pop_front() {
                self.committed_seq = Some(seq);
                self.committed_created_ms = created;
            }
            moved = true;
        }
        moved
    }

    /// Keep the reject line of ticket `t`'s change until the watermark passes it.
    pub fn hold(&mut self, t: u64, line: String) {
        self.held.entry(t).or_default().push(line);
    }

    /// The held reject lines the watermark has passed (to be written with it).
    pub fn release(&mut self) -> Vec<String> {
        let later = self.held.split_off(&self.done_upto);
        let passed = std::mem::replace(&mut self.held, later);
        passed.into_values().flatten().collect()
    }

    /// Records dispatched and not yet committed.
    pub fn in_flight(&self) -> u64 {
        self.next - self.done_upto
    }

    /// Read to its end and every record committed: its children may start.
    pub fn done(&self) -> bool {
        self.read_to_end && self.in_flight() == 0
    }

    /// A page came back at `now_ms`, with records or empty, from a call begun at `called_ms`.
    pub fn page(&mut self, records: usize, called_ms: i64, now_ms: i64) {
        self.last_call_ms = Some(called_ms);
        if records > 0 {
            self.empty_pages = 0;
            self.empty_since_ms = None;
        } else {
            self.empty_pages = self.empty_pages.saturating_add(1);
            self.empty_since_ms.get_or_insert(now_ms);
        }
    }

    /// Whether the shard is quiet at its end: `pages` empty pages in a row over at least
    /// `quiet_ms`, nothing in flight, and the last of them asked for at or after `after_ms`
    /// (an empty page from before a record was written says nothing of it).
    pub fn quiet(&self, pages: u32, quiet_ms: i64, now_ms: i64, after_ms: i64) -> bool {
        self.in_flight() == 0
            && self.last_call_ms.is_some_and(|t| t >= after_ms)
            && self.empty_pages >= pages
            && self
                .empty_since_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= quiet_ms)
    }

    /// How far behind the shard is (ms): now minus the creation of its oldest record not yet
    /// committed; zero when read to its end, or when nothing is in flight and its last page
    /// was empty (idle at its end), as long as that page is recent: past `IDLE_SLACK_MS` (the
    /// reader cannot reach the stream), the time since; otherwise now minus the last
    /// committed record's creation (records may wait unread). None when nothing is known.
    pub fn lag_ms(&self, now_ms: i64) -> Option<i64> {
        if let Some((_, created)) = self.pending.front() {
            return created.map(|c| (now_ms - c).max(0));
        }
        if self.read_to_end {
            return Some(0);
        }
        if self.empty_pages > 0 {
            let since = self.last_call_ms.map_or(0, |c| now_ms - c - IDLE_SLACK_MS);
            return Some(since.max(0));
        }
        self.committed_created_ms.map(|c| (now_ms - c).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_waits_for_every_earlier_ticket() {
        let mut s = ShardTrack::resumed(Some("5".into()));
        let a = s.dispatch("10".into(), Some(1));
        let b = s.dispatch("200".into(), Some(2));
        let c = s.dispatch("3000".into(), Some(3));
        assert!(!s.complete(c));
        assert_eq!(s.committed_seq.as_deref(), Some("5"));
        assert!(!s.complete(b));
        assert_eq!(s.committed_seq.as_deref(), Some("5"));
        assert!(s.complete(a));
        assert_eq!(s.committed_seq.as_deref(), Some("3000"));
        assert_eq!(s.in_flight(), 0);
        // Completing again, or an unknown ticket, changes nothing.
        assert!(!s.complete(a));
        assert!(!s.complete(99));
        assert_eq!(s.committed_seq.as_deref(), Some("3000"));
    }

    #[test]
    fn reject_lines_wait_for_the_watermark() {
        let mut s = ShardTrack::default();
        let (a, b, c) = (
            s.dispatch("1".into(), None),
            s.dispatch("2".into(), None),
            s.dispatch("3".into(), None),
        );
        // b's and c's changes were rejected and committed before a's: their lines wait.
        s.hold(b, "b".into());
        s.complete(b);
        s.hold(c, "c1".into());
        s.hold(c, "c2".into());
        s.complete(c);
        assert!(s.release().is_empty(), "a's position not passed yet");
        assert!(s.complete(a));
        assert_eq!(s.release(), ["b", "c1", "c2"]);
        assert!(s.release().is_empty(), "each line once");
    }

    #[test]
    fn every_completion_order_ends_at_the_last_ticket() {
        // All 5! orders of five tickets: the watermark only ever names a ticket whose
        // predecessors are all complete, and ends at the last.
        let seqs: Vec<String> = (0..5).map(|i| format!("{}", 9 + i * 7)).collect();
        let mut orders = vec![vec![]];
        for _ in 0..5 {
            let mut next = Vec::new();
            for o in &orders {
                for t in 0..5u64 {
                    if !o.contains(&t) {
                        let mut o2 = o.clone();
                        o2.push(t);
                        next.push(o2);
                    }
                }
            }
            orders = next;
        }
        assert_eq!(orders.len(), 120);
        for order in orders {
            let mut s = ShardTrack::default();
            for q in &seqs {
                s.dispatch(q.clone(), None);
            }
            let mut done = std::collections::BTreeSet::new();
            for t in order {
                s.complete(t);
                done.insert(t);
                let prefix = (0..5u64).take_while(|i| done.contains(i)).count();
                let want = prefix.checked_sub(1).map(|i| seqs[i].clone());
                assert_eq!(s.committed_seq, want);
            }
        }
    }

    #[test]
    fn a_shard_is_done_only_read_to_its_end_and_all_committed() {
        let mut s = ShardTrack::default();
        let t = s.dispatch("1".into(), None);
        s.read_to_end = true;
        assert!(!s.done());
        s.complete(t);
        assert!(s.done());
    }

    #[test]
    fn lag_is_the_oldest_uncommitted_record_and_zero_when_idle_at_the_end() {
        let mut s = ShardTrack::default();
        assert_eq!(s.lag_ms(10_000), None);
        let a = s.dispatch("1".into(), Some(4_000));
        s.dispatch("2".into(), Some(9_000));
        assert_eq!(s.lag_ms(10_000), Some(6_000));
        s.complete(a);
        assert_eq!(s.lag_ms(10_000), Some(1_000));
        s.complete(1);
        s.page(2, 10_000, 10_000);
        // Committed, but the last page had records: more may wait unread.
        assert_eq!(s.lag_ms(12_000), Some(3_000));
        s.page(0, 12_000, 12_000);
        assert_eq!(s.lag_ms(12_000 + IDLE_SLACK_MS), Some(0));
        // No page since (the stream cannot be reached): records may wait unread.
        assert_eq!(s.lag_ms(60_000), Some(60_000 - 12_000 - IDLE_SLACK_MS));
        s.page(0, 59_000, 59_500);
        assert_eq!(s.lag_ms(60_000), Some(0));
    }

    #[test]
    fn quiet_needs_enough_empty_pages_over_enough_time() {
        let mut s = ShardTrack::default();
        for i in 0..3 {
            s.page(0, 1_000 + i * 100, 1_000 + i * 100);
        }
        assert!(!s.quiet(5, 2_000, 1_300, 0));
        s.page(0, 1_400, 1_400);
        s.page(0, 1_500, 1_500);
        assert!(!s.quiet(5, 2_000, 1_500, 0));
        assert!(s.quiet(5, 2_000, 3_000, 0));
        // Quiet, but the last page was asked for before a record written at 1_600 could be in
        // it: not known to be at the end.
        assert!(!s.quiet(5, 2_000, 3_000, 1_600));
        s.page(0, 1_700, 1_750);
        assert!(s.quiet(5, 2_000, 3_000, 1_600));
        s.page(1, 3_100, 3_100);
        assert!(!s.quiet(5, 2_000, 9_000, 0));
    }
}
