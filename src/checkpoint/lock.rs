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
//!
//! Anyone who can write the prefix can write a lock, so a lease is checked when read: one that
//! ends further ahead than the longest lease ddb2pg grants ([`MAX_LEASE_S`], plus
//! [`CLOCK_SLACK_S`] for clocks that disagree), or claims a longer lease, was not written by a
//! live ddb2pg. It is [`Found::Invalid`]: neither taken over nor waited for, but refused with
//! what to do (a hostile lock ending in the year 2500 would otherwise block every run).

use serde::{Deserialize, Serialize};

/// The longest lease ddb2pg grants (`--lock-lease`, seconds).
pub const MAX_LEASE_S: u64 = 3600;
/// The longest `--lock-wait` (seconds): a day.
pub const MAX_LOCK_WAIT_S: u64 = 86_400;
/// How far another machine's clock may be ahead of this one's for its lease to still count as
/// one ddb2pg wrote.
pub const CLOCK_SLACK_S: u64 = 300;

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
    /// A lease no ddb2pg grants (see the module's documentation): refuse to start, saying why.
    Invalid { holder: String, why: String },
}

impl Lease {
    pub fn new(holder: String, lease_s: u64, now: u64) -> Lease {
        Lease {
            holder,
            token: format!("{:x}", rand_token()),
            acquired_at: now,
            renewed_at: now,
            expires_at: now.saturating_add(lease_s),
            lease_s,
            released: false,
        }
    }

    pub fn renewed(&self, now: u64) -> Lease {
        Lease {
            renewed_at: now,
            expires_at: now.saturating_add(self.lease_s),
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

    /// Why this lease cannot be one a live ddb2pg holds, if it cannot.
    pub fn invalid(&self, now: u64) -> Option<String> {
        if self.lease_s > MAX_LEASE_S {
            return Some(format!(
                "it claims a lease of {} s, longer than the {MAX_LEASE_S} s ddb2pg grants",
                self.lease_s
            ));
        }
        let limit = now.saturating_add(MAX_LEASE_S + CLOCK_SLACK_S);
        (self.expires_at > limit).then(|| {
            format!(
                "it ends in {} s, but a ddb2pg lease lasts at most {MAX_LEASE_S} s (renewed \
                 while its run lives): either ddb2pg did not write it, or its holder's clock is \
                 more than {CLOCK_SLACK_S} s ahead of this machine's",
                self.expires_at - now
            )
        })
    }

    pub fn found(existing: Option<&Lease>, now: u64) -> Found {
        let l = match existing {
            None => return Found::Free,
            Some(l) if l.released => return Found::Free,
            Some(l) => l,
        };
        if let Some(why) = l.invalid(now) {
            return Found::Invalid {
                holder: l.holder.clone(),
                why,
            };
        }
        if l.expires_at <= now {
            Found::Expired {
                holder: l.holder.clone(),
                ago_s: now - l.expires_at,
            }
        } else {
            Found::Held {
                holder: l.holder.clone(),
                left_s: l.expires_at - now,
            }
        }
    }
}

/// A token unlikely to repeat: time, pid and an address, hashed.
pub(crate) fn rand_token() -> u64 {
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

    #[test]
    fn a_lease_no_ddb2pg_grants_is_invalid() {
        let mut l = Lease::new("x".into(), MAX_LEASE_S, 1000);
        assert!(matches!(Lease::found(Some(&l), 1000), Found::Held { .. }));
        // A machine whose clock is ahead by up to the slack.
        l.expires_at += CLOCK_SLACK_S;
        assert!(matches!(Lease::found(Some(&l), 1000), Found::Held { .. }));
        l.expires_at += 1;
        assert!(matches!(
            Lease::found(Some(&l), 1000),
            Found::Invalid { .. }
        ));
        l.expires_at = u64::MAX;
        let Found::Invalid { why, .. } = Lease::found(Some(&l), 1000) else {
            panic!("invalid")
        };
        assert!(why.contains("3600"), "{why}");
        // A live holder whose clock is far ahead is one reason, not only a foreign writer.
        assert!(
            why.contains("clock is more than 300 s ahead") && why.contains("did not write"),
            "{why}"
        );
        assert!(matches!(
            Lease::found(Some(&l), u64::MAX),
            Found::Expired { ago_s: 0, .. }
        ));
        let long = Lease::new("x".into(), MAX_LEASE_S + 1, 1000);
        assert!(matches!(
            Lease::found(Some(&long), 1000),
            Found::Invalid { .. }
        ));
        // Released: free, whatever it claims.
        assert_eq!(Lease::found(Some(&l.released(1000)), 1000), Found::Free);
    }
}
