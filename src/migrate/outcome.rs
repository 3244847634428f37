//! How a migration ended: its status word, the summary (human and `--report` JSON), the resume
//! line, and the exit code. Everything here reads what the run left; nothing writes rows.

use std::path::PathBuf;

use crate::checkpoint::Checkpoint;
use crate::cli::MigrateArgs;
use crate::error::Result;
use crate::follow::FollowEnd;
use crate::plan::Plan;
use crate::progress::Stats;
use crate::report::Report;

use super::origin::Origin;
use super::{EXIT_INTERRUPTED, EXIT_REJECTS};

/// What the load and the follower did, as `finish` needs it.
pub(super) struct Ended {
    pub(super) result: Result<()>,
    pub(super) follow_end: Option<FollowEnd>,
    pub(super) interrupted: bool,
    pub(super) stream_arn: Option<String>,
}

/// The facts of the run the summary names besides the checkpoint's.
pub(super) struct Facts<'a> {
    pub(super) args: &'a MigrateArgs,
    pub(super) target_id: &'a str,
    pub(super) plan: &'a Plan,
    pub(super) segments_skipped: u64,
    pub(super) segments_resumed: u64,
    pub(super) already_complete: bool,
    /// This run's segments: its shard's, or all.
    pub(super) segments: u32,
    pub(super) shard: Option<crate::shard::Shard>,
    pub(super) checkpoint: PathBuf,
    /// The local rejects file, and where it is kept (a path or an s3:// URL).
    pub(super) rejects: PathBuf,
    pub(super) rejects_shown: String,
    pub(super) duration_s: f64,
}

/// The run's status word, as the summary, the report and `status` print it.
pub(super) fn status_of(ended: &Ended, facts: &Facts, cp: &Checkpoint) -> &'static str {
    let dry = facts.args.dry_run;
    if ended.result.is_err() {
        "failed"
    } else if let Some(end) = ended.follow_end {
        match end {
            FollowEnd::CaughtUp => "caught_up",
            FollowEnd::Interrupted => "interrupted",
        }
    } else if facts.already_complete {
        "nothing_to_do"
    } else if dry && !ended.interrupted {
        "dry_run"
    } else if ended.interrupted && !cp.complete {
        "interrupted"
    } else {
        "complete"
    }
}

/// Rejects of any run of this checkpoint, not only this one.
pub(super) fn rejected_total(cp: &Checkpoint) -> u64 {
    cp.rejected()
}

/// The summary of the run.
pub(super) fn report(
    facts: &Facts,
    ended: &Ended,
    cp: &Checkpoint,
    origin: &mut Origin,
    stats: &Stats,
    status: &str,
) -> Report {
    let args = facts.args;
    // With --limit the scanners read ahead of what was used: report what was used.
    let items_read = if args.limit.is_some() {
        Stats::get(&stats.items_committed)
    } else {
        Stats::get(&stats.items_read)
    };
    let rejected_total = rejected_total(cp);
    let downloads = origin
        .downloads
        .take()
        .map(|d| d.settle(status, args.keep_downloads));
    let duration = facts.duration_s;
    Report {
        status: status.to_string(),
        source_table: origin.describe(),
        target: format!("{} table {}", facts.target_id, table_names(facts.plan)),
        items_read,
        rows_written: stats.rows_written(),
        rows_inserted: Stats::get(&stats.rows_inserted),
        rows_updated: Stats::get(&stats.rows_updated),
        rows_unchanged: Stats::get(&stats.rows_unchanged),
        rows_deleted: Stats::get(&stats.rows_deleted),
        collisions: Stats::get(&stats.collisions),
        skipped: Stats::get(&stats.skipped),
        tables: stats.tables.lock().map(|m| m.clone()).unwrap_or_default(),
        rejected: Stats::get(&stats.rejected),
        rejected_total,
        rejects_by_reason: stats
            .rejects_by_reason
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default(),
        segments_total: facts.segments as u64,
        segments_done: cp.segments_done() as u64,
        segments_resumed: facts.segments_resumed,
        segments_skipped: facts.segments_skipped,
        items_total: cp.segments.iter().map(|s| s.items).sum(),
        duration_s: duration,
        items_per_s: if duration > 0.0 {
            items_read as f64 / duration
        } else {
            0.0
        },
        checkpoint: facts.checkpoint.display().to_string(),
        rejects_file: (rejected_total > 0 || facts.rejects.exists())
            .then(|| facts.rejects_shown.clone()),
        shard: facts.shard.map(|s| s.to_string()),
        error: ended.result.as_ref().err().map(|e| e.to_string()),
        changes_unsure: Stats::get(&stats.changes_unsure),
        unsure_reason: stats
            .unsure_reason
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
        dry_run: args.dry_run,
        downloads,
        follow: ended
            .stream_arn
            .as_ref()
            .map(|arn| crate::follow::FollowSummary::of(arn, stats, cp.stream.as_ref())),
    }
}

/// The plan's target tables, as the summary names them.
pub(super) fn table_names(plan: &Plan) -> String {
    plan.tables
        .iter()
        .map(|t| t.display_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The exit code of a run that did not fail. A follower's (`followed`) says whether THIS run
/// rejected anything (`rejected_now`): "caught up" and "there are rejects" stay apart, and a
/// later run that rejects nothing exits 0 again (its verdict still counts the earlier ones).
pub(super) fn exit_code(status: &str, cp: &Checkpoint, followed: bool, rejected_now: u64) -> u8 {
    match status {
        "interrupted" => EXIT_INTERRUPTED,
        _ if followed => match rejected_now {
            0 => 0,
            _ => EXIT_REJECTS,
        },
        // Rejects of any run of this checkpoint, not only this one: a resume that finishes a
        // migration whose earlier run rejected items still says so.
        _ if rejected_total(cp) > 0 => EXIT_REJECTS,
        _ => 0,
    }
}

/// The verdict of a follower that exits caught up, as one paragraph on stderr.
pub(super) fn print_verdict(ended: &Ended, cp: &Checkpoint, stats: &Stats, rejects_shown: &str) {
    if ended.follow_end != Some(FollowEnd::CaughtUp) || ended.result.is_err() {
        return;
    }
    let text = crate::follow::verdict::paragraph(&crate::follow::verdict::Ending {
        lag_s: crate::follow::lag_s(stats).unwrap_or(0.0),
        behind: Stats::get(&stats.shards_behind),
        rejected_this_run: Stats::get(&stats.rejected),
        rejected_since_load: cp.stream.as_ref().map_or(0, |s| s.rejected),
        rejects_file: rejects_shown,
    });
    crate::say!("{text}");
}

/// After a failed or interrupted run (not a dry run): how to resume it.
pub(super) fn print_resume_line(status: &str, dry: bool) {
    if matches!(status, "failed" | "interrupted") && !dry {
        let command = resume_command();
        crate::say::event(
            crate::say::Level::Info,
            "to resume, run the same command again",
            crate::say::field("command", command.as_str()),
            || format!("ddb2pg: to resume, run the same command again:\n  {command}"),
        );
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command line that resumes this run: the same one, without --restart.
fn resume_command() -> String {
    let args: Vec<String> = std::env::args()
        .enumerate()
        .filter(|(_, a)| a != "--restart")
        .map(|(i, a)| {
            if i == 0 {
                "ddb2pg".to_string()
            } else {
                shell_quote(&crate::pgconn::redact(&a))
            }
        })
        .collect();
    args.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_exits_4_only_for_its_own_rejects() {
        let mut cp = Checkpoint::new(crate::checkpoint::Settings {
            source: "arn:t".into(),
            target: "postgres://u@h/d".into(),
            mapping: "m".into(),
            segments: 1,
            shard: None,
        });
        cp.stream = Some(crate::checkpoint::StreamState {
            rejected: 2,
            ..Default::default()
        });
        // Rejects since the load, none in this run: caught up and clean, 0.
        assert_eq!(exit_code("caught_up", &cp, true, 0), 0);
        assert_eq!(exit_code("caught_up", &cp, true, 1), EXIT_REJECTS);
        assert_eq!(exit_code("interrupted", &cp, true, 1), EXIT_INTERRUPTED);
        // A load says so for any run of its checkpoint.
        assert_eq!(exit_code("complete", &cp, false, 0), EXIT_REJECTS);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("--table=app"), "--table=app");
    }
}
