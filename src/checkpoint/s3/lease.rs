//! An S3 lock held: taken (a new lease, or over an expired or released one), renewed in the
//! background every third of the lease, released when dropped; and the [`Fence`] that stops a
//! process that lost it from writing. The lease itself is [`crate::checkpoint::lock`]; one that
//! no ddb2pg grants (`Found::Invalid`) is refused with what to do, never waited for.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::{detail, s3_err, status, S3Dir, LOCK_LIMIT};
use crate::checkpoint::lock::{Found, Lease};
use crate::checkpoint::storage::{Held, Storage, Tag};
use crate::checkpoint::{now_secs, printable};
use crate::error::{Error, Result};

/// What keeps a process that lost its lock from writing: set by the lock's renewals. A write
/// (of the checkpoint, the rejects, or a page to the target: `still_held`) is refused once the
/// lease this process last renewed has (nearly) run out, or once a renewal found the lock
/// taken by another process. (A process paused between this check and its PUT
/// could still write once; the checkpoint's `If-Match` then stops the other holder, whose
/// retry resumes from that checkpoint, still never ahead of what is committed.)
#[derive(Debug, Default)]
pub(super) struct Fence {
    lost: AtomicBool,
    /// Epoch seconds the held lease runs to; 0: no lock held (nothing to check).
    held_until: AtomicU64,
    /// How long before `held_until` writes stop: a sixth of the lease (10 s of 60), so that a
    /// taker whose clock is ahead of this machine's by less than that finds this process
    /// stopped (at least 1 s).
    margin_s: AtomicU64,
}

impl Fence {
    /// A lease of `lease_s` seconds held until `until`.
    fn hold(&self, until: u64, lease_s: u64) {
        self.margin_s.store((lease_s / 6).max(1), Ordering::Release);
        self.held_until.store(until, Ordering::Release);
    }

    pub(super) fn check(&self, what: &str) -> Result<()> {
        self.check_at(what, now_secs())
    }

    fn check_at(&self, what: &str, now: u64) -> Result<()> {
        let until = self.held_until.load(Ordering::Acquire);
        let margin = self.margin_s.load(Ordering::Acquire).max(1);
        let expired = until != 0 && now + margin >= until;
        if self.lost.load(Ordering::Acquire) || expired {
            return Err(Error::file(
                what,
                format!(
                    "not written (neither rows, rejects nor checkpoint): this run's lock lease {}; \
                 another run may hold the shard now. This one stops (the stored checkpoint \
                 stays valid); run it again to resume",
                    if expired {
                        "ran out before it could be renewed (the process was paused, or S3 \
                     unreachable)"
                    } else {
                        "was taken over by another process"
                    }
                ),
            ));
        }
        Ok(())
    }
}

/// What is wrong with the lease `shown` (a URL) that no ddb2pg grants (`why`), and what to do.
pub(super) fn not_ddb2pgs(why: &str, shown: &str) -> String {
    format!(
        "{why}. It would block every run. Only if no ddb2pg run of this checkpoint is alive \
         (`ddb2pg status` on this prefix shows the holder), delete it (aws s3 rm {}) and run \
         again; if its holder runs on a machine whose clock is ahead, fix that clock. And check \
         who can write this prefix",
        printable(shown)
    )
}

impl S3Dir {
    /// Take the lock `name` (see `Storage::lock`).
    pub(super) fn take(&self, name: &str, lease: Duration) -> Result<Box<dyn Held>> {
        let lease_s = lease.as_secs().max(2);
        let existing = self.read_lease(name)?;
        let now = now_secs();
        let found = Lease::found(existing.as_ref().map(|(l, _)| l), now);
        match &found {
            Found::Held { holder, left_s } => {
                return Err(Error::config(format!(
                    "another ddb2pg run ({}) holds {} (its lease ends in {left_s} s unless \
                     renewed); wait for it to finish or stop it first",
                    printable(holder),
                    self.show(name)
                )))
            }
            Found::Invalid { holder, why } => {
                return Err(Error::config(format!(
                    "lock {} (holder {}) cannot be taken over or waited for: {}",
                    self.show(name),
                    printable(holder),
                    not_ddb2pgs(why, &self.show(name))
                )))
            }
            _ => {}
        }
        let mine = Lease::new(crate::checkpoint::local::holder_id(), lease_s, now);
        let bytes = serde_json::to_vec(&mine).map_err(|e| s3_err("encode the lock", e))?;
        let expect = existing
            .as_ref()
            .map_or(Tag::Absent, |(_, e)| Tag::ETag(e.clone()));
        let Some(etag) = self.put(name, &bytes, &expect)? else {
            // Another process took it between our read and our write.
            let holder = self
                .read_lease(name)
                .ok()
                .flatten()
                .map_or("unknown".to_string(), |(l, _)| l.holder);
            return Err(Error::config(format!(
                "another ddb2pg run ({}) took {} at the same moment; wait for it to \
                 finish or stop it first",
                printable(&holder),
                self.show(name)
            )));
        };
        if let Found::Expired { holder, ago_s } = &found {
            crate::say!(
                "taking over the lock {} of {}, whose lease ended {ago_s} s ago \
                 (the process died or hung)",
                self.show(name),
                printable(holder)
            );
        }
        self.hold(name, mine, etag)
    }

    pub(super) fn read_lease(&self, name: &str) -> Result<Option<(Lease, String)>> {
        let Some((bytes, etag)) = self.get(name, LOCK_LIMIT)? else {
            return Ok(None);
        };
        let lease: Lease = serde_json::from_slice(&bytes).map_err(|e| {
            Error::config(format!(
                "lock {} is not a ddb2pg lock ({}); remove it if no run is active",
                self.show(name),
                printable(&e.to_string())
            ))
        })?;
        Ok(Some((lease, etag)))
    }
}

/// A held S3 lock: renewed in the background every third of the lease; released (a record
/// with `released: true`) when dropped.
struct S3Lock {
    renew: Option<tokio::task::JoinHandle<()>>,
    /// The lease and its ETag as last written by this process.
    current: Arc<Mutex<(Lease, String)>>,
    rt: tokio::runtime::Handle,
    client: Client,
    bucket: String,
    key: String,
}

impl std::fmt::Debug for S3Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Lock({})", self.key)
    }
}

impl Held for S3Lock {}

impl S3Dir {
    fn hold(&self, name: &str, lease: Lease, etag: String) -> Result<Box<dyn Held>> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| Error::config("internal error: the S3 runtime is gone"))?
            .handle()
            .clone();
        let every = Duration::from_secs((lease.lease_s / 3).max(1));
        self.fence.hold(lease.expires_at, lease.lease_s);
        let current = Arc::new(Mutex::new((lease, etag)));
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key(name));
        let (shown, fence) = (self.show(name), self.fence.clone());
        let task = {
            let (current, client, bucket, key) =
                (current.clone(), client.clone(), bucket.clone(), key.clone());
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let (lease, etag) = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let next = lease.renewed(now_secs());
                    let Ok(bytes) = serde_json::to_vec(&next) else {
                        continue;
                    };
                    let sent = client
                        .put_object()
                        .bucket(&bucket)
                        .key(&key)
                        .if_match(&etag)
                        .body(ByteStream::from(bytes))
                        .send()
                        .await;
                    match sent {
                        Ok(o) => {
                            let e = o.e_tag().unwrap_or_default().to_string();
                            fence.hold(next.expires_at, next.lease_s);
                            *current.lock().unwrap_or_else(|p| p.into_inner()) = (next, e);
                        }
                        Err(e) if matches!(status(&e), Some(412 | 409)) => {
                            crate::say!(
                                error: "the lock {shown} was taken by another process \
                                 (this run's lease had expired); no more checkpoint writes"
                            );
                            fence.lost.store(true, Ordering::Release);
                            return;
                        }
                        // A network failure: try again at the next tick (the lease is 3
                        // ticks long).
                        Err(e) => tracing::warn!("renewing the lock {shown}: {}", detail(&e)),
                    }
                }
            })
        };
        Ok(Box::new(S3Lock {
            renew: Some(task),
            current,
            rt,
            client,
            bucket,
            key,
        }))
    }
}

impl Drop for S3Lock {
    fn drop(&mut self) {
        if let Some(t) = self.renew.take() {
            t.abort();
        }
        let (lease, etag) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Ok(bytes) = serde_json::to_vec(&lease.released(now_secs())) else {
            return;
        };
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .if_match(etag)
            .body(ByteStream::from(bytes));
        let handle = &self.rt;
        // Best effort: if it fails, the lease simply expires.
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    handle.block_on(async {
                        tokio::time::timeout(Duration::from_secs(10), req.send()).await
                    })
                })
                .join();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stop_a_sixth_of_the_lease_before_it_ends() {
        let fence = Fence::default();
        assert!(fence.check_at("x", 1000).is_ok(), "no lock held");
        // A 60 s lease held until 1060: a taker whose clock is up to 10 s ahead takes it at
        // (our) 1050 at the earliest; by then this process writes nothing.
        fence.hold(1060, 60);
        assert!(fence.check_at("x", 1040).is_ok());
        assert!(fence.check_at("x", 1049).is_ok());
        let err = fence
            .check_at("x", 1050)
            .expect_err("10 s left")
            .to_string();
        assert!(err.contains("ran out"), "{err}");
        // The shortest lease keeps a margin of 1 s.
        fence.hold(1003, 3);
        assert!(fence.check_at("x", 1001).is_ok());
        assert!(fence.check_at("x", 1002).is_err());
        fence.hold(2000, 60);
        fence.lost.store(true, Ordering::Release);
        let err = fence.check_at("x", 1000).expect_err("taken").to_string();
        assert!(err.contains("taken over"), "{err}");
    }
}
