//! The probes' verdicts, pure functions of the run's [`Stats`] and the time.
//!
//! **Liveness** (`/healthz`): a stage is stalled when it has a call in flight (a batch commit,
//! a DynamoDB read) and no call of it started or ended for longer than `--stall-limit`. A
//! stage with nothing in flight is idle, not stalled: a follower caught up on a quiet stream,
//! a writer waiting for pages, a reader held back by `--max-memory` or `--max-read-units` are
//! all healthy. A writer retrying PostgreSQL through an outage is not stalled either: each
//! retry counts as progress (only a call that hangs without an error is a stall).
//! A stage's calls share one clock: while any of them starts or ends, the stage is not
//! stalled (a PostgreSQL that hangs, hangs every connection's commit).
//!
//! **Readiness** (`/readyz`): the load is done (in this run or an earlier one) and, when the
//! run follows the stream, the follower is caught up (`Stats::caught_up_since_ms`).

use std::sync::atomic::Ordering;

use super::Activity;
use crate::progress::Stats;

/// `Ok(())`, or why the process is wedged (one line).
pub fn liveness(stats: &Stats, stall_limit_s: u64, now_ms: i64) -> Result<(), String> {
    stalled(
        "writer",
        "batch commit",
        &stats.writer,
        stall_limit_s,
        now_ms,
    )?;
    stalled(
        "reader",
        "source read",
        &stats.reader,
        stall_limit_s,
        now_ms,
    )
}

fn stalled(
    who: &str,
    call: &str,
    a: &Activity,
    stall_limit_s: u64,
    now_ms: i64,
) -> Result<(), String> {
    let n = a.in_flight();
    let quiet_s = (now_ms - a.progress_ms()).max(0) / 1000;
    if n > 0 && quiet_s as u64 > stall_limit_s {
        return Err(format!(
            "{who} stalled: {n} {call}(s) in flight and no progress for {quiet_s} s \
             (--stall-limit {stall_limit_s})"
        ));
    }
    Ok(())
}

/// `Ok(())`, or why the run is not ready (one line). `follows`: the run follows the stream.
pub fn readiness(stats: &Stats, follows: bool) -> Result<(), String> {
    if !stats.load_done.load(Ordering::Relaxed) {
        let read = Stats::get(&stats.items_read);
        return Err(format!("loading: {read} items read so far"));
    }
    if follows && stats.caught_up_since_ms.load(Ordering::Relaxed) == 0 {
        let lag = match crate::follow::lag_s(stats) {
            Some(s) => format!("lag {s:.1} s"),
            None => "lag not known yet".into(),
        };
        return Err(format!("following: not caught up ({lag})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::now_ms;

    #[test]
    fn a_call_in_flight_without_progress_past_the_limit_is_a_stall() {
        let s = Stats::default();
        let now = now_ms();
        assert_eq!(liveness(&s, 2, now + 60_000), Ok(()), "idle is healthy");
        let busy = s.writer.begin();
        assert_eq!(liveness(&s, 2, now + 1_000), Ok(()));
        let why = liveness(&s, 2, now + 5_000).unwrap_err();
        assert!(
            why.starts_with("writer stalled: 1 batch commit(s)"),
            "{why}"
        );
        drop(busy);
        assert_eq!(liveness(&s, 2, now + 60_000), Ok(()), "done: idle again");
        let _read = s.reader.begin();
        assert!(liveness(&s, 2, now_ms() + 3_500)
            .unwrap_err()
            .starts_with("reader stalled"));
    }

    #[test]
    fn ready_once_loaded_and_when_following_once_caught_up() {
        let s = Stats::default();
        assert!(readiness(&s, false).unwrap_err().starts_with("loading"));
        s.load_done.store(true, Ordering::Relaxed);
        assert_eq!(readiness(&s, false), Ok(()));
        assert!(readiness(&s, true)
            .unwrap_err()
            .starts_with("following: not caught up"));
        s.caught_up_since_ms.store(now_ms(), Ordering::Relaxed);
        assert_eq!(readiness(&s, true), Ok(()));
    }
}
