//! `/metrics`: a `prometheus-client` collector that reads the run's [`Stats`] at scrape
//! time. Names follow Prometheus' conventions: the `ddb2pg_` prefix, base units (seconds,
//! bytes), and counters named without `_total`, which the encoder appends.
//!
//! [`NAMES`] lists every series name the exposition can hold (the dashboard's test checks its
//! queries against it).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{now_ms, Phase};
use crate::progress::Stats;

/// Every series name `/metrics` may expose (histograms: their base name and its suffixes).
pub const NAMES: &[&str] = &[
    "ddb2pg_build_info",
    "ddb2pg_phase",
    "ddb2pg_healthy",
    "ddb2pg_items_read_total",
    "ddb2pg_rows_written_total",
    "ddb2pg_rows_unchanged_total",
    "ddb2pg_rows_deleted_total",
    "ddb2pg_rejects_total",
    "ddb2pg_pg_retries_total",
    "ddb2pg_dynamodb_throttles_total",
    "ddb2pg_segments_done_total",
    "ddb2pg_segments",
    "ddb2pg_memory_held_bytes",
    "ddb2pg_memory_limit_bytes",
    "ddb2pg_changes_applied_total",
    "ddb2pg_lag_seconds",
    "ddb2pg_shard_lag_seconds",
    "ddb2pg_shards_open",
    "ddb2pg_shards_closed",
    "ddb2pg_checkpoint_age_seconds",
    "ddb2pg_follow_caught_up",
    "ddb2pg_batch_commit_seconds",
    "ddb2pg_batch_commit_seconds_bucket",
    "ddb2pg_batch_commit_seconds_sum",
    "ddb2pg_batch_commit_seconds_count",
];

/// What the exposition knows besides the counters.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The segments this process owns (0: not known yet, or none).
    pub segments: Arc<std::sync::atomic::AtomicU64>,
    /// Segments committed by earlier runs (the counter adds this run's).
    pub segments_done_before: Arc<std::sync::atomic::AtomicU64>,
}

/// The registry of one process: its collector reads `stats` on each scrape
/// (`stall_limit_s`: `--stall-limit`, for `ddb2pg_healthy`).
pub fn registry(stats: Arc<Stats>, info: RunInfo, stall_limit_s: u64) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(StatsCollector {
        stats,
        info,
        stall_limit_s,
    }));
    r
}

#[derive(Debug)]
struct StatsCollector {
    stats: Arc<Stats>,
    info: RunInfo,
    stall_limit_s: u64,
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// One unlabelled counter (`name` without `_total`).
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = ConstCounter::new(v);
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

/// One unlabelled gauge.
fn gauge<V>(e: &mut DescriptorEncoder, name: &str, help: &str, v: V) -> std::fmt::Result
where
    V: prometheus_client::encoding::EncodeGaugeValue + Clone,
{
    let m = ConstGauge::new(v);
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

/// One counter with a label taking each of `values`.
fn labelled_counter(
    e: &mut DescriptorEncoder,
    (name, help, label): (&str, &str, &str),
    values: &[(&str, u64)],
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = &*self.stats;
        self.run(&mut e)?;
        self.load(&mut e)?;
        self.follow(&mut e)?;
        let age = match s.checkpoint_written_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some((now_ms() - at).max(0) as f64 / 1000.0),
        };
        if let Some(age) = age {
            gauge(
                &mut e,
                "ddb2pg_checkpoint_age_seconds",
                "Seconds since the checkpoint was last written",
                age,
            )?;
        }
        let h = &s.commit_seconds.0;
        h.encode(e.encode_descriptor(
            "ddb2pg_batch_commit_seconds",
            "Time to commit one batch (a page of the load, a batch of the follower)",
            None,
            h.metric_type(),
        )?)
    }
}

impl StatsCollector {
    /// The build and the phase.
    fn run(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let mut m = e.encode_descriptor(
            "ddb2pg_build_info",
            "The ddb2pg build, as labels",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        let now = self.stats.phase();
        let mut m = e.encode_descriptor(
            "ddb2pg_phase",
            "The run's phase: 1 for the current one (starting, load, follow, done)",
            None,
            MetricType::Gauge,
        )?;
        for p in Phase::ALL {
            let labels = [("phase", p.name())];
            ConstGauge::new(i64::from(p == now)).encode(m.encode_family(&labels)?)?;
        }
        let live = super::health::liveness(&self.stats, self.stall_limit_s, now_ms());
        gauge(
            e,
            "ddb2pg_healthy",
            "1 while /healthz answers 200 (no stage stalled past --stall-limit)",
            i64::from(live.is_ok()),
        )
    }

    /// Items, rows, rejects, retries, segments and memory.
    fn load(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &*self.stats;
        counter(
            e,
            "ddb2pg_items_read",
            "Items read from the source",
            get(&s.items_read),
        )?;
        labelled_counter(
            e,
            (
                "ddb2pg_rows_written",
                "Rows written to PostgreSQL, by operation",
                "op",
            ),
            &[
                ("inserted", get(&s.rows_inserted)),
                ("updated", get(&s.rows_updated)),
            ],
        )?;
        let rows = [
            (
                "ddb2pg_rows_unchanged",
                "Rows already as the source has them",
                &s.rows_unchanged,
            ),
            ("ddb2pg_rows_deleted", "Rows deleted", &s.rows_deleted),
            ("ddb2pg_rejects", "Items and changes rejected", &s.rejected),
            (
                "ddb2pg_pg_retries",
                "PostgreSQL attempts retried after a transient failure",
                &s.pg_retries,
            ),
            (
                "ddb2pg_dynamodb_throttles",
                "DynamoDB and DynamoDB Streams calls throttled",
                &s.ddb_throttles,
            ),
        ];
        for (name, help, c) in rows {
            counter(e, name, help, get(c))?;
        }
        let before = get(&self.info.segments_done_before);
        counter(
            e,
            "ddb2pg_segments_done",
            "Segments read and committed to their end (with earlier runs')",
            before + get(&s.segments_done),
        )?;
        gauge(
            e,
            "ddb2pg_segments",
            "Segments of the load (this process's part)",
            get(&self.info.segments) as i64,
        )?;
        let budget = s.memory.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(b) = budget {
            gauge(
                e,
                "ddb2pg_memory_held_bytes",
                "Bytes of pages read and not yet written (under --max-memory)",
                b.reserved() as i64,
            )?;
            gauge(
                e,
                "ddb2pg_memory_limit_bytes",
                "--max-memory, in bytes",
                b.limit() as i64,
            )?;
        }
        Ok(())
    }

    /// Changes, lag and shards of `--follow`.
    fn follow(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &*self.stats;
        labelled_counter(
            e,
            (
                "ddb2pg_changes_applied",
                "Stream changes applied, by kind",
                "kind",
            ),
            &[
                ("insert", get(&s.changes_inserted)),
                ("modify", get(&s.changes_modified)),
                ("remove", get(&s.changes_removed)),
            ],
        )?;
        if let Some(lag) = crate::follow::lag_s(s) {
            gauge(
                e,
                "ddb2pg_lag_seconds",
                "The follower's largest shard lag",
                lag,
            )?;
        }
        let lags = s
            .shard_lag_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !lags.is_empty() {
            let mut m = e.encode_descriptor(
                "ddb2pg_shard_lag_seconds",
                "Lag of each shard being read",
                None,
                MetricType::Gauge,
            )?;
            for (shard, ms) in &lags {
                let labels = [("shard", shard.as_str())];
                ConstGauge::new(*ms as f64 / 1000.0).encode(m.encode_family(&labels)?)?;
            }
        }
        gauge(
            e,
            "ddb2pg_shards_open",
            "Stream shards not yet read to their end",
            get(&s.shards_open) as i64,
        )?;
        gauge(
            e,
            "ddb2pg_shards_closed",
            "Stream shards read and applied to their end",
            get(&s.shards_closed) as i64,
        )?;
        let caught_up = s.caught_up_since_ms.load(Ordering::Relaxed) != 0;
        gauge(
            e,
            "ddb2pg_follow_caught_up",
            "1 while the follower is caught up",
            i64::from(caught_up),
        )
    }
}

/// The exposition of `registry`: OpenMetrics when `openmetrics`, else the classic text format.
/// Returns the body and its content type.
pub fn encode(registry: &Registry, openmetrics: bool) -> (String, &'static str) {
    let mut out = String::new();
    if openmetrics {
        let _ = prometheus_client::encoding::text::encode(&mut out, registry);
        (
            out,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
        (
            out,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_named_in_names() {
        let stats = Arc::new(Stats::default());
        Stats::add(&stats.items_read, 7);
        stats
            .shard_lag_ms
            .lock()
            .unwrap()
            .insert("shardId-1".into(), 1500);
        stats.lag_known.store(true, Ordering::Relaxed);
        stats
            .checkpoint_written_ms
            .store(now_ms(), Ordering::Relaxed);
        *stats.memory.lock().unwrap() = Some(crate::budget::Budget::new(1 << 20));
        stats.commit_seconds.observe(std::time::Instant::now());
        let (text, _) = encode(&registry(stats, RunInfo::default(), 600), false);
        assert!(text.contains("ddb2pg_items_read_total 7"), "{text}");
        assert!(
            text.contains("ddb2pg_shard_lag_seconds{shard=\"shardId-1\"} 1.5"),
            "{text}"
        );
        assert!(
            text.contains("ddb2pg_rows_written_total{op=\"inserted\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("ddb2pg_phase{phase=\"starting\"} 1"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            assert!(NAMES.contains(&name), "{name} is not in NAMES");
        }
        for name in NAMES {
            assert!(text.contains(name), "{name} is not exposed:\n{text}");
        }
        let (om, ty) = encode(
            &registry(Arc::new(Stats::default()), RunInfo::default(), 600),
            true,
        );
        assert!(om.ends_with("# EOF\n") && ty.starts_with("application/openmetrics-text"));
    }
}
