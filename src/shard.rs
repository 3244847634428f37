//! `--shard I/N` and `--shards N`: one of N processes (a Kubernetes Indexed Job's pod, an AWS
//! Batch array job's child) takes the scan segments (or export files) `s` with `s % N == I`.
//!
//! Every shard must use the same total of segments, or two shards would scan overlapping key
//! ranges and miss others: the total is recorded in each shard's checkpoint and a shard whose
//! total (or N) differs from a sibling's is refused (see `checkpoint::siblings_agree`).
//!
//! N is at most [`MAX_SHARDS`], wherever it comes from: the command line, the environment, a
//! checkpoint's settings or the `.shard-I-of-N` suffix of a name in the checkpoint folder (a
//! folder others can write: `status` lists every shard up to N).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The environment variables the index is read from, in order.
pub const INDEX_VARS: [&str; 2] = ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"];
/// AWS Batch's array size: N, when `--shards` is not given a number.
pub const SIZE_VAR: &str = "AWS_BATCH_JOB_ARRAY_SIZE";
/// The most shards a migration is split in (a Kubernetes Indexed Job's most completions; AWS
/// Batch's arrays stop at 10,000): more is refused. `status` lists every shard up to N in time
/// linear in N, and reads only what the folder holds.
pub const MAX_SHARDS: u32 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `I/N` with 0 <= I < N.
    pub fn parse(s: &str) -> Result<Shard> {
        let bad =
            |why: &str| Error::config(format!("--shard {s:?}: {why}; expected I/N, e.g. 0/4"));
        let (i, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: u32 = i.trim().parse().map_err(|_| bad("I is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        Shard::new(index, count).map_err(|e| bad(&e))
    }

    /// A shard with 0 <= I < N <= [`MAX_SHARDS`], or why not.
    pub fn new(index: u32, count: u32) -> std::result::Result<Shard, String> {
        if count == 0 {
            return Err("N must be at least 1".into());
        }
        if count > MAX_SHARDS {
            return Err(format!("N must be at most {MAX_SHARDS}"));
        }
        if index >= count {
            return Err(format!("I must be below N (0..{})", count - 1));
        }
        Ok(Shard { index, count })
    }

    /// This shard, checked as [`Shard::new`] checks one (a shard read from a checkpoint).
    pub fn check(&self) -> std::result::Result<Shard, String> {
        Shard::new(self.index, self.count)
    }

    /// `--shards N` (N = 0: from `AWS_BATCH_JOB_ARRAY_SIZE`): the index from the first of
    /// [`INDEX_VARS`] that is set. Returns the shard and a sentence saying where I and N came from.
    pub fn from_env(
        count: Option<u32>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Shard, String)> {
        let (var, raw) = INDEX_VARS
            .iter()
            .find_map(|v| env(v).filter(|s| !s.trim().is_empty()).map(|s| (*v, s)))
            .ok_or_else(|| {
                Error::config(format!(
                    "--shards: neither {} nor {} is set (a Kubernetes Indexed Job and an AWS \
                     Batch array job set them); give --shard I/N instead",
                    INDEX_VARS[0], INDEX_VARS[1]
                ))
            })?;
        let index: u32 = raw
            .trim()
            .parse()
            .map_err(|_| Error::config(format!("--shards: {var}={raw:?} is not a number")))?;
        let (count, from) = match (count.filter(|&n| n > 0), env(SIZE_VAR)) {
            (Some(n), _) => (n, "--shards".to_string()),
            (None, Some(size)) => (
                size.trim().parse().map_err(|_| {
                    Error::config(format!("--shards: {SIZE_VAR}={size:?} is not a number"))
                })?,
                SIZE_VAR.to_string(),
            ),
            (None, None) => {
                return Err(Error::config(format!(
                    "--shards needs N (--shards 4) unless {SIZE_VAR} is set"
                )))
            }
        };
        let shard = Shard::new(index, count)
            .map_err(|e| Error::config(format!("--shards: {var}={index}, N={count}: {e}")))?;
        let note = format!("shard {shard} (index from {var}, N from {from})");
        Ok((shard, note))
    }

    /// Whether segment `s` belongs to this shard.
    pub fn owns(&self, s: u32) -> bool {
        s % self.count == self.index
    }

    /// This shard's segments out of `total`.
    pub fn segments(&self, total: u32) -> Vec<u32> {
        (self.index..total).step_by(self.count as usize).collect()
    }

    /// How many of `total` segments are this shard's (`segments(total).len()`, not built).
    pub fn segment_count(&self, total: u32) -> u32 {
        match total > self.index {
            true => (total - self.index - 1) / self.count + 1,
            false => 0,
        }
    }

    /// The suffix of this shard's checkpoint, lock and rejects names.
    pub fn suffix(&self) -> String {
        format!(".shard-{}-of-{}", self.index, self.count)
    }

    /// The shard a name suffix stands for (`.shard-I-of-N` at the end of `stem`); None also
    /// for a suffix out of bounds (N above [`MAX_SHARDS`]).
    pub fn from_suffix(stem: &str) -> Option<(String, Shard)> {
        let (base, rest) = stem.rsplit_once(".shard-")?;
        let (i, n) = rest.split_once("-of-")?;
        let shard = Shard::new(i.parse().ok()?, n.parse().ok()?).ok()?;
        Some((base.to_string(), shard))
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `--shard` / `--shards` as given: the shard of this process, or None when not sharded.
pub fn resolve(
    shard: Option<&str>,
    shards: Option<u32>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Shard>> {
    match (shard, shards) {
        (Some(_), Some(_)) => Err(Error::config("give --shard I/N or --shards N, not both")),
        (Some(s), None) => Ok(Some(Shard::parse(s)?)),
        (None, Some(n)) => {
            let (shard, note) = Shard::from_env(Some(n), env)?;
            crate::say!("{note}");
            Ok(Some(shard))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubernetes_indexed_job_of_100000_pods_is_a_shard_count() {
        assert!(Shard::new(99_999, 100_000).is_ok());
        assert!(Shard::new(0, 100_001).is_err());
        for total in [0, 1, 7, 64, 100_000] {
            for (index, count) in [(0, 1), (2, 4), (6, 7), (99_999, 100_000)] {
                let s = Shard { index, count };
                assert_eq!(s.segment_count(total) as usize, s.segments(total).len());
            }
        }
    }

    #[test]
    fn parse_and_ownership() {
        let s = Shard::parse("1/4").expect("parse");
        assert_eq!(s.segments(10), vec![1, 5, 9]);
        assert!(s.owns(5) && !s.owns(4));
        for bad in ["4/4", "1", "a/2", "0/0", "-1/3", "0/100001", "0/4294967295"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        // Every segment has exactly one owner.
        let all: Vec<u32> = (0..3)
            .flat_map(|i| Shard { index: i, count: 3 }.segments(8))
            .collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn index_from_the_environment() {
        let env = |k: &str| match k {
            "AWS_BATCH_JOB_ARRAY_INDEX" => Some("2".to_string()),
            "AWS_BATCH_JOB_ARRAY_SIZE" => Some("3".to_string()),
            _ => None,
        };
        let (s, note) = Shard::from_env(None, &env).expect("batch");
        assert_eq!(s, Shard { index: 2, count: 3 });
        assert!(
            note.contains("AWS_BATCH_JOB_ARRAY_INDEX") && note.contains("AWS_BATCH_JOB_ARRAY_SIZE")
        );
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "3".to_string());
        let (s, note) = Shard::from_env(Some(4), &k8s).expect("k8s");
        assert_eq!(s, Shard { index: 3, count: 4 });
        assert!(note.contains("JOB_COMPLETION_INDEX"), "{note}");
        assert!(Shard::from_env(Some(3), &k8s).is_err(), "index 3 of 3");
        assert!(Shard::from_env(None, &k8s).is_err(), "no N");
        assert!(Shard::from_env(Some(4), &|_| None).is_err(), "no index");
    }

    #[test]
    fn suffix_round_trip() {
        let s = Shard { index: 2, count: 8 };
        let stem = format!("app-0123{}", s.suffix());
        assert_eq!(Shard::from_suffix(&stem), Some(("app-0123".to_string(), s)));
        assert_eq!(Shard::from_suffix("app-0123"), None);
        assert_eq!(Shard::from_suffix("app.shard-0-of-4294967295"), None);
        assert_eq!(Shard::from_suffix("app.shard-0-of-0"), None);
        assert!(Shard { index: 0, count: 0 }.check().is_err());
        assert!(Shard { index: 3, count: 3 }.check().is_err());
    }
}
