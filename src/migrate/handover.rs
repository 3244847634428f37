//! `migrate --export PATH --follow`: the export, then the table's stream from the export's
//! own time. AWS's recipe for a cutover without scanning: turn the stream on, export at T,
//! load the export, apply the stream from T.
//!
//! **The time.** An export's data is as of one instant: a full export's `exportTime`, an
//! incremental export's `exportToTime` (exclusive end), both from `manifest-summary.json`; a
//! folder without a manifest time needs `--follow-from TIME` (RFC 3339). It becomes the
//! checkpoint's `follow_from` (epoch seconds, rounded down) before anything is loaded, and the
//! follower applies the stream's records from it less the margin, as after a scan
//! (`crate::follow`). Unlike a scan's, this time does not depend on when the load runs, so a
//! load done earlier without `--follow` is followed from it too; a resume keeps it.
//!
//! **The table.** The manifest's `tableArn`, or `--table NAME` (which must name the same
//! table). DescribeTable's ARN must be the manifest's (the same account and region), and the
//! key for the default mapping comes from the table when `--key` is not given (a `--key` that
//! differs from the table's is refused).
//!
//! **Refused at start**, before anything is written (exit 2), each with the fix: flag
//! combinations that cannot be honoured (`check_flags`), an export without a time or a
//! table, a table without a stream (`--enable-stream` too: a stream turned on now lacks the
//! changes since the export), a stream created after the export's time (its label, an ISO
//! timestamp, is when it was created), and an export's time the stream no longer holds
//! (older than its 24-hour retention less the margin).

use crate::checkpoint::{now_secs, StreamState};
use crate::cli::MigrateArgs;
use crate::error::{Error, Result};
use crate::follow::MARGIN_SECS;
use crate::plan::Plan;
use crate::source::export::{table_of_arn, Export};
use crate::source::stream::Stream;
use crate::source::{KeyAttr, Source};

use super::origin::{parse_key, Origin};

/// Refuse the flag combinations of the export handover that cannot be honoured: every flag
/// given is used, or the run does not start.
pub(super) fn check_flags(args: &MigrateArgs) -> Result<()> {
    let export = args.export.is_some();
    if args.follow_from.is_some() && !(args.follow && export) {
        return Err(Error::config(
            "--follow-from TIME is the time an export's data is as of, from which --follow \
             applies the table's stream: it goes with --export PATH --follow (a table's load is \
             followed from when its scan begins); add them, or drop --follow-from",
        ));
    }
    if args.table.is_some() && export && !args.follow {
        return Err(Error::config(
            "--table with --export: the export is the source, and --table names the table \
             whose stream --follow applies after it; add --follow, or drop --table (or \
             --export, to load from the table)",
        ));
    }
    if export && args.enable_stream {
        return Err(Error::config(
            "--enable-stream with --export: a stream turned on now holds no changes made \
             between the export's time and now, so they would be missed. Turn the stream on \
             (NEW_AND_OLD_IMAGES), take a new export (or an incremental export) after that, \
             and migrate it with --follow, without --enable-stream",
        ));
    }
    if let Some(t) = &args.follow_from {
        parse_time("--follow-from", t)?;
    }
    Ok(())
}

/// An RFC 3339 time (`2024-05-14T11:14:20.608Z`) in milliseconds since the epoch.
fn parse_time(what: &str, text: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            Error::config(format!(
                "{what} {text:?}: not an RFC 3339 time ({e}); write it as \
                 2024-05-14T11:14:20Z (or with an offset, +02:00)"
            ))
        })
}

/// The time a stream was created, from the label its ARN ends with
/// (`.../stream/2024-05-14T11:14:20.608`, DescribeTable's LatestStreamLabel), in ms.
fn stream_created_ms(arn: &str) -> Option<i64> {
    let label = arn.rsplit_once("/stream/")?.1;
    let t = chrono::NaiveDateTime::parse_from_str(label, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(t.and_utc().timestamp_millis())
}

/// A time in ms as RFC 3339, for messages.
fn shown(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// The export's handover to the table's stream, decided before anything is written.
pub(super) struct Handover {
    source: Source,
    /// The table whose stream is applied.
    table: String,
    /// The time the export's data is as of (ms since the epoch), and where it was read.
    as_of_ms: i64,
    from: String,
}

impl Handover {
    /// The checkpoint's `follow_from`: the export's time in epoch seconds, rounded down.
    pub(super) fn as_of_secs(&self) -> u64 {
        u64::try_from(self.as_of_ms.div_euclid(1000)).unwrap_or(0)
    }

    /// The table's stream, checked: of a view type that can serve the plan, holding the
    /// export's time still (unless `state`, the checkpoint's, shows the stream already read),
    /// and on since before that time.
    pub(super) async fn open_stream(
        &self,
        plan: &Plan,
        key_attrs: &[String],
        state: Option<&StreamState>,
    ) -> Result<Stream> {
        let table = &self.table;
        let at = format!("{} ({})", shown(self.as_of_ms), self.from);
        let missing = || match state {
            Some(_) => Error::Source {
                message: format!(
                    "--follow: table {table:?} has no stream any more, but this checkpoint \
                     follows one: the stream was disabled, and the changes since then are \
                     lost, so data may have been missed. Turn the stream on \
                     (NEW_AND_OLD_IMAGES), take a new export after that, empty the target \
                     tables and migrate the new export with --follow"
                ),
                retryable: false,
            },
            None => Error::config(format!(
                "--follow: table {table:?} has no stream enabled, so the changes made since \
                 the export's time {at} are in no stream. Turn the stream on \
                 (NEW_AND_OLD_IMAGES), take a new export after that, and migrate it with \
                 --follow"
            )),
        };
        let source = &self.source;
        let stream = crate::follow::open_existing(source, table, missing, plan, key_attrs).await?;
        let read = state.is_some_and(|s| {
            s.first_round_at.is_some() || s.shards.values().any(|sh| sh.seq.is_some())
        });
        let now = now_secs();
        if !read && !crate::follow::within_retention(self.as_of_secs(), now) {
            return Err(Error::config(format!(
                "--follow: the export's time {at} is {} h ago, and DynamoDB Streams keeps \
                 records for 24 hours (less a {MARGIN_SECS} s margin): the changes made just \
                 after it are no longer in the stream. Take an incremental export from the \
                 export's time to a recent time, migrate it, and follow from it: migrate \
                 --export <incremental export> --follow",
                now.saturating_sub(self.as_of_secs()) / 3600
            )));
        }
        match stream_created_ms(&stream.arn) {
            Some(created) if created > self.as_of_ms => {
                return Err(Error::config(format!(
                    "--follow: the stream of {table:?} was created at {}, after the export's \
                     time {at}: the changes made in between are in no stream. Take a new \
                     export now that the stream is on (or an incremental export from the \
                     export's time to after {}), and migrate it with --follow",
                    shown(created),
                    shown(created)
                )))
            }
            Some(_) => {}
            None => crate::say!(
                warn: "cannot tell from {} when the stream was created: it must \
                 have been on since the export's time {at}, or changes made in between are \
                 missed",
                stream.arn
            ),
        }
        Ok(stream)
    }
}

/// With `--export --follow`: the export's time and the table to follow, checked, and the
/// origin completed from the table (its name for a folder without a manifest, the key when
/// neither `--key` nor `--mapping` gives one). None without `--follow` or for a table.
pub(super) async fn resolve(args: &MigrateArgs, origin: &mut Origin) -> Result<Option<Handover>> {
    let Some(export) = origin.export.as_ref().filter(|_| args.follow) else {
        return Ok(None);
    };
    let (as_of_ms, from) = export_time(args, export)?;
    let now_ms = i64::try_from(now_secs())
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    if as_of_ms > now_ms + 1000 {
        // Records before it (less the margin) would be skipped: changes since the real time of
        // the data would be lost.
        return Err(Error::config(format!(
            "--follow: the export's time {} ({from}) is in the future: the stream's records \
             before it would be skipped. Give the time the export's data is as of",
            shown(as_of_ms)
        )));
    }
    let table = table_to_follow(args, export)?;
    let source = Source::connect(&args.aws).await?;
    let info = source.describe(&table).await?;
    if let Some(arn) = export.table_arn.as_deref().filter(|&a| a != info.arn) {
        return Err(Error::config(format!(
            "--follow: the export is of table {arn:?} (its manifest's tableArn), but table \
             {table:?} at {} is {}: another account or region. Check --region, --profile and \
             --endpoint-url",
            source.describe_location(),
            info.arn
        )));
    }
    match &args.key {
        Some(k) => same_key(k, &parse_key(k)?, &info.key, &table)?,
        None if origin.info.key.is_empty() => origin.info.key = info.key.clone(),
        None => {}
    }
    if export.table_arn.is_none() {
        origin.info.name = table.clone();
    }
    crate::say!(
        "--follow: after the export, the stream of {table:?} is applied from {} ({from})",
        shown(as_of_ms)
    );
    Ok(Some(Handover {
        source,
        table,
        as_of_ms,
        from,
    }))
}

/// The export's time: its manifest's, or `--follow-from` for an export without one.
fn export_time(args: &MigrateArgs, export: &Export) -> Result<(i64, String)> {
    match (&export.as_of, &args.follow_from) {
        (Some((field, text)), None) => {
            let what = format!("the export's manifest-summary.json {field}");
            Ok((parse_time(&what, text)?, format!("the manifest's {field}")))
        }
        (Some((field, text)), Some(_)) => Err(Error::config(format!(
            "--follow-from: the export's manifest-summary.json gives its time ({field} \
             {text:?}), which the stream is applied from; --follow-from is for an export without \
             one. Drop --follow-from"
        ))),
        (None, Some(t)) => Ok((parse_time("--follow-from", t)?, "--follow-from".into())),
        (None, None) => Err(Error::config(
            "--export PATH --follow: this export has no manifest-summary.json with its time \
             (exportTime, or exportToTime for an incremental export), so where the stream \
             takes over is unknown; give --follow-from TIME (RFC 3339: the time the export's \
             data is as of) and --table NAME (the table whose stream to apply)",
        )),
    }
}

/// The table whose stream is applied: the manifest's `tableArn`, or `--table` (which must
/// agree with it).
fn table_to_follow(args: &MigrateArgs, export: &Export) -> Result<String> {
    let manifest = export.table_arn.as_deref().map(|a| (a, table_of_arn(a)));
    match (manifest, &args.table) {
        (Some((arn, Some(name))), Some(t)) if name != t => Err(Error::config(format!(
            "--table {t:?}: the export is of table {name:?} (its manifest's tableArn {arn:?}); \
             the stream applied after an export must be its own table's. Drop --table, or \
             give --table {name}"
        ))),
        (Some((_, Some(name))), _) => Ok(name.to_string()),
        (_, Some(t)) => Ok(t.clone()),
        (Some((arn, None)), None) => Err(Error::config(format!(
            "--export PATH --follow: the manifest's tableArn {arn:?} names no table; give \
             --table NAME, the table whose stream to apply"
        ))),
        (None, None) => Err(Error::config(
            "--export PATH --follow: the export has no manifest naming its table (tableArn); \
             give --table NAME, the table whose stream to apply",
        )),
    }
}

/// `--key` must be the followed table's key: the stream's records carry that one.
fn same_key(spec: &str, given: &[KeyAttr], table: &[KeyAttr], name: &str) -> Result<()> {
    let show = |k: &[KeyAttr]| {
        k.iter()
            .map(|a| format!("{}:{:?}", a.name, a.ty))
            .collect::<Vec<_>>()
            .join(",")
    };
    if show(given) != show(table) {
        return Err(Error::config(format!(
            "--key {spec}: table {name:?}, whose stream is applied, has the key {}; give that \
             --key (or none: with --follow it is read from the table)",
            show(table)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_and_stream_labels_are_creation_times() {
        assert_eq!(
            parse_time("t", "2024-05-14T11:14:20.608Z").ok(),
            Some(1_715_685_260_608)
        );
        assert_eq!(
            parse_time("t", "2024-05-14T13:14:20+02:00").ok(),
            Some(1_715_685_260_000)
        );
        let e = parse_time("--follow-from", "yesterday")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("RFC 3339")));
        let arn = "arn:aws:dynamodb:ddblocal:000000000000:table/t/stream/2024-05-14T11:14:20.608";
        assert_eq!(stream_created_ms(arn), Some(1_715_685_260_608));
        assert_eq!(stream_created_ms("arn:aws:dynamodb:x:1:table/t"), None);
        assert_eq!(shown(1_715_685_260_608), "2024-05-14T11:14:20.608Z");
    }
}
