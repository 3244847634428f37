//! The double's virtual stream: shards with hash ranges over the records' keys, their records
//! with the double's own sequence numbers, splits, trims, forgotten shards, and the iterators
//! (opaque, checksummed tokens the double validates on use).
//!
//! Sequence numbers come from one counter for the whole stream, so they increase within a shard
//! and along a lineage (a child's first number is reserved when it is made, after its parent's
//! last). The counter's step grows with its length (900, 910, ... 990, 1000, 1100, ...), so
//! numbers of 3 to 30+ digits follow each other quickly: a client comparing them as strings
//! orders them wrongly.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::Value;

/// One shard as the double lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    pub parent: Option<String>,
    pub open: bool,
    /// StartingSequenceNumber (the number its first record gets).
    pub start_seq: String,
    /// EndingSequenceNumber, once split.
    pub end_seq: Option<String>,
    /// Records still held (trimmed ones are not counted).
    pub records: usize,
    /// Records dropped by `trim`.
    pub trimmed: usize,
}

/// GetRecords figures of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub id: String,
    /// GetRecords calls that named this shard (throttled ones included).
    pub get_records: u64,
    /// Most GetRecords calls on this shard in flight at once.
    pub max_in_flight: u64,
    /// Most GetRecords calls on this shard within one second (throttled ones included).
    pub max_per_sec: u64,
    /// Calls answered with LimitExceededException.
    pub throttled: u64,
    /// Empty pages served before records a reader had not been shown (`Config::empty_pages`).
    pub empty_pages: u64,
    /// Records served (a record read twice counts twice).
    pub records_served: u64,
}

/// All shards' figures (forgotten shards included).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub shards: Vec<ShardStats>,
}

impl Stats {
    pub fn get_records(&self) -> u64 {
        self.shards.iter().map(|s| s.get_records).sum()
    }
    pub fn max_in_flight(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.max_in_flight)
            .max()
            .unwrap_or(0)
    }
    pub fn max_per_sec(&self) -> u64 {
        self.shards.iter().map(|s| s.max_per_sec).max().unwrap_or(0)
    }
    pub fn throttled(&self) -> u64 {
        self.shards.iter().map(|s| s.throttled).sum()
    }
    pub fn empty_pages(&self) -> u64 {
        self.shards.iter().map(|s| s.empty_pages).sum()
    }
    pub fn shard(&self, id: &str) -> Option<&ShardStats> {
        self.shards.iter().find(|s| s.id == id)
    }
}

pub(super) struct Record {
    pub seq: u128,
    /// The whole stream record, with the double's SequenceNumber.
    pub body: Value,
}

pub(super) struct VShard {
    pub id: String,
    pub parent: Option<String>,
    /// Inclusive hash range of the keys it takes while open.
    lo: u64,
    hi: u64,
    pub start_seq: u128,
    start_used: bool,
    pub end_seq: Option<u128>,
    /// Records from logical position `base` on (`base` records were trimmed).
    pub records: Vec<Record>,
    pub base: usize,
    /// Sequence number of the last trimmed record.
    pub trimmed_upto: Option<u128>,
    pub forgotten: bool,
    /// Logical position up to which records were served to some reader.
    pub shown_upto: usize,
    pub stats: ShardStats,
    pub in_flight: u64,
    /// Instants of all GetRecords calls (and of the accepted ones) in the last second.
    pub calls: VecDeque<Instant>,
    pub accepted: VecDeque<Instant>,
}

impl VShard {
    pub fn open(&self) -> bool {
        self.end_seq.is_none()
    }

    /// Logical position after the last record.
    pub fn end(&self) -> usize {
        self.base + self.records.len()
    }

    /// The highest sequence number that belongs to this shard so far.
    pub fn max_seq(&self) -> u128 {
        if let Some(e) = self.end_seq {
            return e;
        }
        self.records
            .last()
            .map(|r| r.seq)
            .or(self.trimmed_upto)
            .unwrap_or(self.start_seq)
    }

    /// Logical position of the first record with a number >= `seq` (`after`: > `seq`).
    pub fn position(&self, seq: u128, after: bool) -> usize {
        self.base
            + self
                .records
                .partition_point(|r| if after { r.seq <= seq } else { r.seq < seq })
    }

    fn info(&self) -> ShardInfo {
        ShardInfo {
            id: self.id.clone(),
            parent: self.parent.clone(),
            open: self.open(),
            start_seq: self.start_seq.to_string(),
            end_seq: self.end_seq.map(|s| s.to_string()),
            records: self.records.len(),
            trimmed: self.base,
        }
    }
}

/// A decoded iterator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Iter {
    pub shard: String,
    pub pos: usize,
    pub issued_ms: u64,
    pub nonce: u64,
    /// Empty pages this reader was served at `pos` so far.
    pub empties: u32,
}

pub(super) struct State {
    pub shards: Vec<VShard>,
    next_seq: u128,
    shard_counter: u64,
    id_base: u64,
    pub iter_nonce: u64,
    /// Iterators with a nonce below this are expired (`expire_iterators`).
    pub expired_below: u64,
    secret: u64,
    draws: u64,
    /// The stream served: its ARN, and its upstream description without shards.
    pub arn: Option<String>,
    pub meta: Option<Value>,
    /// The upstream error of the last ingest round, if it failed.
    pub last_error: Option<String>,
}

/// FNV-1a, 64 bits.
pub(super) fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The stable hash of a record's `Keys`: FNV-1a over `name=value;` in name order, each value
/// its compact JSON ({"S":"..."}).
pub(super) fn key_hash(keys: &Value) -> u64 {
    let mut text = String::new();
    if let Some(m) = keys.as_object() {
        let mut names: Vec<&String> = m.keys().collect();
        names.sort();
        for k in names {
            text.push_str(&serde_json::to_string(k).unwrap_or_default());
            text.push('=');
            text.push_str(&m[k].to_string());
            text.push(';');
        }
    }
    fnv(0, text.as_bytes())
}

fn digits(n: u128) -> u32 {
    n.checked_ilog10().unwrap_or(0) + 1
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl State {
    pub fn new(shards: usize, secret: u64, now_ms: u64) -> State {
        let mut st = State {
            shards: Vec::new(),
            next_seq: 900,
            shard_counter: 0,
            id_base: now_ms * 1000,
            iter_nonce: 0,
            expired_below: 0,
            secret,
            draws: 0,
            arn: None,
            meta: None,
            last_error: None,
        };
        let n = shards.max(1) as u128;
        let width = (u128::from(u64::MAX) + 1) / n;
        for i in 0..n {
            let lo = (i * width) as u64;
            let hi = if i + 1 == n {
                u64::MAX
            } else {
                ((i + 1) * width - 1) as u64
            };
            st.new_shard(None, lo, hi);
        }
        st
    }

    fn alloc_seq(&mut self) -> u128 {
        let s = self.next_seq;
        self.next_seq = s + 10u128.pow(digits(s).min(30) - 2);
        s
    }

    fn new_shard(&mut self, parent: Option<String>, lo: u64, hi: u64) -> String {
        self.shard_counter += 1;
        let tag = fnv(self.secret, &self.shard_counter.to_le_bytes()) as u32;
        let id = format!(
            "shardId-{:020}-{tag:08x}",
            self.id_base + self.shard_counter
        );
        let start_seq = self.alloc_seq();
        self.shards.push(VShard {
            id: id.clone(),
            parent,
            lo,
            hi,
            start_seq,
            start_used: false,
            end_seq: None,
            records: Vec::new(),
            base: 0,
            trimmed_upto: None,
            forgotten: false,
            shown_upto: 0,
            stats: ShardStats {
                id: id.clone(),
                ..ShardStats::default()
            },
            in_flight: 0,
            calls: VecDeque::new(),
            accepted: VecDeque::new(),
        });
        id
    }

    pub fn shard(&self, id: &str) -> Option<&VShard> {
        self.shards.iter().find(|s| s.id == id)
    }

    pub fn shard_mut(&mut self, id: &str) -> Option<&mut VShard> {
        self.shards.iter_mut().find(|s| s.id == id)
    }

    /// Put a record (as read upstream) on the open shard of its keys' hash, with the next
    /// sequence number of that shard.
    pub fn route(&mut self, mut body: Value) {
        let h = key_hash(&body["dynamodb"]["Keys"]);
        let Some(i) = self
            .shards
            .iter()
            .position(|s| s.open() && s.lo <= h && h <= s.hi)
        else {
            return; // cannot happen: the open shards' ranges cover every hash
        };
        let seq = if self.shards[i].start_used {
            self.alloc_seq()
        } else {
            self.shards[i].start_used = true;
            self.shards[i].start_seq
        };
        if let Some(d) = body.get_mut("dynamodb").and_then(Value::as_object_mut) {
            d.insert("SequenceNumber".into(), Value::String(seq.to_string()));
        }
        self.shards[i].records.push(Record { seq, body });
    }

    /// Close `id` at its last record; two children take the halves of its hash range.
    pub fn split(&mut self, id: &str) -> Result<(String, String), String> {
        let s = self
            .shard_mut(id)
            .ok_or_else(|| format!("split: no shard {id}"))?;
        if !s.open() {
            return Err(format!("split: shard {id} is closed already"));
        }
        if s.lo == s.hi {
            return Err(format!("split: shard {id} has a one-hash range"));
        }
        let (lo, hi) = (s.lo, s.hi);
        let mid = lo + (hi - lo) / 2;
        s.end_seq = Some(s.max_seq());
        let a = self.new_shard(Some(id.to_string()), lo, mid);
        let b = self.new_shard(Some(id.to_string()), mid + 1, hi);
        Ok((a, b))
    }

    /// Drop the `n` oldest records of `id`; returns how many were dropped.
    pub fn trim(&mut self, id: &str, n: usize) -> Result<usize, String> {
        let s = self
            .shard_mut(id)
            .ok_or_else(|| format!("trim: no shard {id}"))?;
        let n = n.min(s.records.len());
        if n > 0 {
            s.trimmed_upto = Some(s.records[n - 1].seq);
            s.records.drain(..n);
            s.base += n;
        }
        Ok(n)
    }

    /// DescribeStream no longer lists `id`; reading it answers ResourceNotFoundException.
    pub fn forget(&mut self, id: &str) -> Result<(), String> {
        let s = self
            .shard_mut(id)
            .ok_or_else(|| format!("forget: no shard {id}"))?;
        if s.open() {
            return Err(format!(
                "forget: shard {id} is open (AWS drops only closed shards past retention); \
                 split it first"
            ));
        }
        s.forgotten = true;
        Ok(())
    }

    /// The listed shards, in creation order (which is their id order).
    pub fn infos(&self) -> Vec<ShardInfo> {
        self.shards
            .iter()
            .filter(|s| !s.forgotten)
            .map(VShard::info)
            .collect()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            shards: self.shards.iter().map(|s| s.stats.clone()).collect(),
        }
    }

    /// A pseudo-random number in 0..100.
    pub fn percent_draw(&mut self) -> u64 {
        self.draws += 1;
        let mut z = (self.draws ^ self.secret).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % 100
    }

    /// A new iterator token: `<arn>|dbl|<hex payload>.<checksum>`.
    pub fn issue(&mut self, shard: &str, pos: usize, empties: u32, now_ms: u64) -> String {
        self.iter_nonce += 1;
        let payload = format!("{shard}|{pos}|{now_ms}|{}|{empties}", self.iter_nonce);
        let mac = fnv(self.secret, payload.as_bytes());
        format!(
            "{}|dbl|{}.{mac:016x}",
            self.arn.as_deref().unwrap_or(""),
            hex(payload.as_bytes())
        )
    }

    /// Decode a token this double issued (None: malformed, foreign or altered).
    pub fn decode(&self, token: &str) -> Option<Iter> {
        let rest = token.strip_prefix(self.arn.as_deref()?)?;
        let (payload, mac) = rest.strip_prefix("|dbl|")?.split_once('.')?;
        let payload = String::from_utf8(unhex(payload)?).ok()?;
        if format!("{:016x}", fnv(self.secret, payload.as_bytes())) != mac {
            return None;
        }
        let mut f = payload.split('|');
        let it = Iter {
            shard: f.next()?.to_string(),
            pos: f.next()?.parse().ok()?,
            issued_ms: f.next()?.parse().ok()?,
            nonce: f.next()?.parse().ok()?,
            empties: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(it)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_grow_in_length() {
        let mut st = State::new(1, 7, 0);
        let mut last = 0u128;
        let mut lengths = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let s = st.alloc_seq();
            assert!(s > last);
            last = s;
            lengths.insert(digits(s));
        }
        assert!(lengths.len() > 4, "{lengths:?}");
    }
}
