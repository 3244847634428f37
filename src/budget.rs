//! `--max-memory`: one byte budget shared by every segment's queue. A reader reserves a
//! page's estimated size before it queues the page, and the reservation is released when the
//! page is written (or dropped), so pages read but not yet written never hold more than the
//! budget, however many segments read at once and however slow the target is. A page larger
//! than the whole budget waits until nothing else is reserved, then goes alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::value::Item;

/// Reservations are counted in KiB: a semaphore hands out at most u32::MAX permits at once,
/// so budgets up to 4 TiB.
const UNIT: u64 = 1024;

#[derive(Debug)]
pub struct Budget {
    sem: Arc<Semaphore>,
    units: u32,
    /// Bytes reserved now, and the most ever reserved at once (for the report).
    reserved: AtomicU64,
    peak: AtomicU64,
    /// Bytes and items of the scan pages seen so far: the first guess of a segment's page.
    seen_bytes: AtomicU64,
    seen_items: AtomicU64,
    /// The largest scan page seen so far, in bytes.
    largest_page: AtomicU64,
}

/// A page's reservation; dropping it gives the bytes back.
#[derive(Debug)]
pub struct Reserved {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
    budget: Arc<Budget>,
}

impl Reserved {
    /// Make the reservation `bytes` (a Scan page reserves a guess before its request, then
    /// its actual size): waits for room when it grows.
    pub async fn resize(&mut self, bytes: u64) {
        let b = self.budget.clone();
        let want = b.units_for(bytes) as usize;
        let have = self._permit.as_ref().map_or(0, |p| p.num_permits());
        // The count of reserved bytes never runs behind the permits: it rises after permits
        // are taken and falls before they are given back.
        if want > have {
            match b.sem.clone().try_acquire_many_owned((want - have) as u32) {
                Ok(more) => match &mut self._permit {
                    Some(p) => p.merge(more),
                    None => self._permit = Some(more),
                },
                // No holding while waiting (readers holding guesses, each waiting for more,
                // could take the whole budget): give the guess back, wait for the whole size.
                Err(_) => {
                    b.adjust(self.bytes, 0);
                    self.bytes = 0;
                    drop(self._permit.take());
                    self._permit = b.sem.clone().acquire_many_owned(want as u32).await.ok();
                }
            }
            b.adjust(self.bytes, bytes);
        } else {
            b.adjust(self.bytes, bytes);
            if let Some(p) = &mut self._permit {
                drop(p.split(have - want));
            }
        }
        self.bytes = bytes;
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.budget
            .reserved
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Budget {
    pub fn new(max_bytes: u64) -> Arc<Budget> {
        let units = (max_bytes / UNIT).clamp(1, u64::from(u32::MAX)) as u32;
        Arc::new(Budget {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
            reserved: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            seen_bytes: AtomicU64::new(0),
            seen_items: AtomicU64::new(0),
            largest_page: AtomicU64::new(0),
        })
    }

    /// Bytes reserved now (pages read and not yet written).
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }

    /// The budget, in bytes (as counted: whole KiB).
    pub fn limit(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    fn units_for(&self, bytes: u64) -> u32 {
        bytes.div_ceil(UNIT).clamp(1, u64::from(self.units)) as u32
    }

    fn account(self: &Arc<Self>, permit: Option<OwnedSemaphorePermit>, bytes: u64) -> Reserved {
        let now = self.reserved.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Reserved {
            _permit: permit,
            bytes,
            budget: self.clone(),
        }
    }

    /// Wait until `bytes` fit in the budget (all of it, for a page larger than the budget).
    pub async fn reserve(self: &Arc<Self>, bytes: u64) -> Reserved {
        let permit = self
            .sem
            .clone()
            .acquire_many_owned(self.units_for(bytes))
            .await
            .ok();
        self.account(permit, bytes)
    }

    /// `reserve` from a blocking thread (an export's reader).
    pub fn reserve_blocking(self: &Arc<Self>, bytes: u64) -> Reserved {
        let units = self.units_for(bytes);
        let permit = match tokio::runtime::Handle::try_current() {
            Ok(h) => h.block_on(self.sem.clone().acquire_many_owned(units)).ok(),
            Err(_) => None,
        };
        self.account(permit, bytes)
    }

    /// A reservation of `from` bytes becomes `to` bytes.
    fn adjust(&self, from: u64, to: u64) {
        if to >= from {
            let now = self.reserved.fetch_add(to - from, Ordering::Relaxed) + (to - from);
            self.peak.fetch_max(now, Ordering::Relaxed);
        } else {
            self.reserved.fetch_sub(from - to, Ordering::Relaxed);
        }
    }

    /// A guess of the size of a page of up to `limit` items, from the pages seen so far (1 MiB
    /// before any: DynamoDB ends a page at 1 MB of item data). No more than the largest page
    /// seen: with large items DynamoDB's 1 MB ends pages long before `limit` items, and bytes
    /// per item x `limit` would reserve many times a page (clamped to the whole budget, such a
    /// guess waits until nothing else is reserved).
    pub fn page_guess(&self, limit: u32) -> u64 {
        let (bytes, items) = (
            self.seen_bytes.load(Ordering::Relaxed),
            self.seen_items.load(Ordering::Relaxed),
        );
        let largest = self.largest_page.load(Ordering::Relaxed);
        bytes.checked_div(items).map_or(1 << 20, |per_item| {
            per_item.saturating_mul(u64::from(limit)).min(largest)
        })
    }

    /// Record a scan page's actual size (for `page_guess`).
    pub fn observe(&self, bytes: u64, items: usize) {
        self.seen_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.seen_items.fetch_add(items as u64, Ordering::Relaxed);
        self.largest_page.fetch_max(bytes, Ordering::Relaxed);
    }

    /// The most bytes reserved at once so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// The largest budget (u32::MAX permits of a KiB, one KiB short of it).
const MAX_BYTES: u64 = 4 << 40;

/// Parse a `--max-memory` value: bytes, with an optional unit (`KiB`, `MiB`, `GiB`, `TiB`,
/// `KB`, `MB`, `GB`, `TB` (powers of 1000), `K`, `M`, `G`, `T` (powers of 1024), `B`), a
/// fraction allowed before a unit (`1.5GiB`); at least 1 MiB, at most 4 TiB.
pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || {
        Error::config(format!(
            "--max-memory {text:?} is not a size: write bytes with an optional unit, e.g. \
             268435456, 256MiB, 1.5GiB"
        ))
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || frac.contains('.') || (number.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let too_large = || {
        Error::config(format!(
            "--max-memory {text:?} is more than the largest budget, 4TiB"
        ))
    };
    let bytes = scaled(whole, frac, mult).ok_or_else(too_large)?;
    if bytes > MAX_BYTES {
        return Err(too_large());
    }
    if bytes < 1 << 20 {
        return Err(Error::config(format!(
            "--max-memory {text:?} is below 1MiB: pages of a few MB would go one at a time"
        )));
    }
    Ok(bytes)
}

/// `whole.frac` x `mult`, rounded down, in integers (None: past u64).
fn scaled(whole: &str, frac: &str, mult: u64) -> Option<u64> {
    let whole = whole.parse::<u64>().ok()?.checked_mul(mult)?;
    // The fraction's first 20 digits: the rest add less than a byte, whatever the unit.
    let digits = &frac[..frac.len().min(20)];
    let part = match digits {
        "" => 0,
        d => u128::from(mult) * d.parse::<u128>().ok()? / 10u128.pow(d.len() as u32),
    };
    whole.checked_add(u64::try_from(part).ok()?)
}

/// Estimated heap bytes of a scan page's items, plus the rows its transform adds while the
/// page is written (about the items' text once more).
pub fn scan_page_bytes(items: &[Item]) -> u64 {
    let held: usize = items.iter().map(crate::value::approx_bytes).sum();
    (held + held / 2) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("256 MiB").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("2g").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        // Fractions, by hand: 1.5 x 2^30, 0.25 x 2^20 x 4.
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_bytes("2.25 MiB").unwrap(), 2_359_296);
        assert_eq!(parse_bytes("1.0000001GB").unwrap(), 1_000_000_100);
        assert_eq!(parse_bytes("4TiB").unwrap(), 4 << 40);
        for bad in [
            "",
            "MiB",
            "12 parsecs",
            "-5MiB",
            ".5GiB",
            "1.GiB",
            "1.2.3MiB",
            "1e9",
        ] {
            let e = parse_bytes(bad).unwrap_err().to_string();
            assert!(e.contains("is not a size"), "{bad}: {e}");
        }
        for huge in [
            "99999999999999TiB",
            "5TiB",
            "18446744073709551616",
            "4.5TiB",
        ] {
            let e = parse_bytes(huge).unwrap_err().to_string();
            assert!(
                e.contains("more than the largest budget, 4TiB"),
                "{huge}: {e}"
            );
        }
        assert!(parse_bytes("512KiB")
            .unwrap_err()
            .to_string()
            .contains("below 1MiB"));
    }

    #[test]
    fn a_page_guess_is_no_larger_than_the_largest_page_seen() {
        let b = Budget::new(256 << 20);
        assert_eq!(b.page_guess(4000), 1 << 20);
        // Pages of 200 KB items, ended by DynamoDB's 1 MB at 5 items (~1.5 MB estimated).
        b.observe(1_500_000, 5);
        b.observe(1_200_000, 4);
        assert_eq!(b.page_guess(4000), 1_500_000);
        // Small items, pages ended by the Limit: bytes per item x Limit.
        let b = Budget::new(256 << 20);
        b.observe(600_000, 2000);
        assert_eq!(b.page_guess(1000), 300_000);
        assert_eq!(b.page_guess(2000), 600_000);
    }

    #[tokio::test]
    async fn reservations_wait_for_room_and_a_big_page_goes_alone() {
        let b = Budget::new(4 << 20);
        let one = b.reserve(3 << 20).await;
        // 2 MiB more does not fit until the first is given back.
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.reserve(2 << 20).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(one);
        let two = waiting.await.unwrap();
        assert_eq!(b.peak(), 3 << 20);
        // Larger than the budget: waits for everything, then holds all of it.
        let big = tokio::spawn({
            let b = b.clone();
            async move { b.reserve(10 << 20).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!big.is_finished());
        drop(two);
        let big = big.await.unwrap();
        assert_eq!(b.sem.available_permits(), 0);
        drop(big);
        assert_eq!(b.sem.available_permits(), 4 << 10);
        assert_eq!(b.peak(), 10 << 20);
        // A guess grows to the page's size (waiting for room), or shrinks and gives back.
        let mut r = b.reserve(1 << 20).await;
        let other = b.reserve(3 << 20).await;
        let grow = tokio::spawn(async move {
            r.resize(2 << 20).await;
            r
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!grow.is_finished());
        drop(other);
        let mut r = grow.await.unwrap();
        assert_eq!(b.sem.available_permits(), 2 << 10);
        r.resize(512 << 10).await;
        assert_eq!(b.sem.available_permits(), (4 << 10) - 512);
        drop(r);
        assert_eq!(b.sem.available_permits(), 4 << 10);
    }
}
