//! The lease an S3 lock is made of: a small JSON object `<stem>.lock` saying who holds the run
//! and until when. It is created with `If-None-Match: *` and replaced (renewed, taken over,
//! released) with `If-Match: <the ETag read>`, so of two processes racing for it exactly one
//! wins. The holder renews it every third of the lease; a holder that died stops renewing and
//! its lock is taken over once `expires_at` has passed. The holder stops writing a sixth of the
//! lease (10 s of 60) before `expires_at`, so clocks of the machines must agree within that
//! (NTP keeps them within milliseconds).
//!
//! The lock keeps a second process from starting; the checkpoint's own conditional writes
//! (`If-Match` on the version this process wrote last) keep a process that lost its lock (paused
//! past its lease, then taken over) from overwriting the new holder's checkpoint.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// "pid N on HOST".
    pub holder: String,
    /// Tells this holder's records from an earlier run of the same pid and host.
    pub token: String,
    pub acquired_at: u64,
    pub renewed_at: u64,
    /// Epoch seconds after which another process may take the lock.
    pub expires_at: u64,
    pub lease_s: u64,
    /// Set by a clean exit: the lock is free at once.
    #[serde(default)]
    pub released: bool,
}

/// What a process finds when it wants the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No lock, or a released one: take it.
    Free,
    /// A lease that ended without a release (its holder died or hung): take it over.
    Expired { holder: String, ago_s: u64 },
    /// A live holder: refuse to start.
    Held { holder: String, left_s: u64 },
}

impl Lease {
    pub fn new(holder: String, lease_s: u64, now: u64) -> Lease {
        Lease {
            holder,
            token: format!("{:x}", rand_token()),
            acquired_at: now,
            renewed_at: now,
            expires_at: now + lease_s,
            lease_s,
            released: false,
        }
    }

    pub fn renewed(&self, now: u64) -> Lease {
        Lease {
            renewed_at: now,
            expires_at: now + self.lease_s,
            ..self.clone()
        }
    }

    pub fn released(&self, now: u64) -> Lease {
        Lease {
            renewed_at: now,
            expires_at: now,
            released: true,
            ..self.clone()
        }
    }

    pub fn found(existing: Option<&Lease>, now: u64) -> Found {
        match existing {
            None => Found::Free,
            Some(l) if l.released => Found::Free,
            Some(l) if l.expires_at <= now => Found::Expired {
                holder: l.holder.clone(),
                ago_s: now - l.expires_at,
            },
            Some(l) => Found::Held {
                holder: l.holder.clone(),
                left_s: l.expires_at - now,
            },
        }
    }
}

/// A token unlikely to repeat: time, pid and an address, hashed.
fn rand_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_until_it_expires_or_is_released() {
        let l = Lease::new("pid 1 on a".into(), 60, 1000);
        assert_eq!(Lease::found(None, 1000), Found::Free);
        assert_eq!(
            Lease::found(Some(&l), 1010),
            Found::Held {
                holder: "pid 1 on a".into(),
                left_s: 50
            }
        );
        // Renewed at 1050: held until 1110.
        let r = l.renewed(1050);
        assert!(matches!(
            Lease::found(Some(&r), 1100),
            Found::Held { left_s: 10, .. }
        ));
        assert!(matches!(
            Lease::found(Some(&r), 1115),
            Found::Expired { ago_s: 5, .. }
        ));
        assert_eq!(Lease::found(Some(&r.released(1060)), 1061), Found::Free);
        assert_ne!(l.token, Lease::new("pid 1 on a".into(), 60, 1000).token);
    }
}
