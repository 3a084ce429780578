//! The collection lease: one object in storage (`layout::gc_lease`) saying which process runs
//! garbage collection and until when, so replicas (and `image-registry gc`) take turns.
//!
//! The driver trait has no compare-and-swap (object stores have none we use), so a lease is taken
//! by **write, wait, read back**:
//! 1. read the lease; if another owner holds it and it has not expired, the run is skipped;
//! 2. write `{owner, expires}` (expires = now + `ttl`), wait `settle`, read it back: still ours
//!    means held; another owner's means that one won (a later write wins) and this run is skipped;
//! 3. while running, every `renew` (shorter than the run's grace) the holder reads the lease and
//!    rewrites its expiry; it also reads it right before its first write and right before its
//!    sweep. A read that shows another owner (or none) stops the run at once — a stopped run is a
//!    crashed run, which the collector is built to survive (see `lifecycle`).
//!
//! Why two runs never sweep at once: for B to take a lease A holds, B must read "free" before A's
//! write and write after A's read-back, i.e. pause between one read and one write for longer than
//! `settle` (B's own read-back then shows B, and A's next renewal, within `renew`, shows B and
//! stops A). A's sweep starts at least a grace after its read-back, B's sweep at least a grace
//! after B's write, and `renew` is shorter than the grace, so A has stopped before B sweeps.
//! Assumptions: storage is read-after-write consistent for one key (S3, GCS, Azure and
//! filesystems are), a storage call takes less than `renew`, and clocks of the replicas agree
//! to within `ttl` (expiry is a wall-clock time).
//! A holder that dies leaves the lease until it expires (`ttl` after its last renewal).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::storage::{layout, Result, StorageDriver};

/// The lease's timing.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimes {
    /// How long a written lease is valid without renewal.
    pub ttl: Duration,
    /// The wait between writing the lease and reading it back.
    pub settle: Duration,
    /// Time between renewals (and checks) while running.
    pub renew: Duration,
}

impl LeaseTimes {
    /// The defaults for a run whose grace (tombstone → verify) is `grace`: ttl 60 s, settle 2 s,
    /// renew at most every ttl/4 and at least twice per grace.
    pub fn for_grace(grace: Duration) -> LeaseTimes {
        let ttl = Duration::from_secs(60);
        LeaseTimes {
            ttl,
            settle: Duration::from_secs(2),
            renew: (grace / 2).min(ttl / 4).max(Duration::from_millis(100)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    owner: String,
    /// Unix milliseconds.
    expires: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The outcome of [`acquire`].
#[derive(Debug)]
pub enum Claim {
    Held(Held),
    /// Another process holds it.
    Busy {
        owner: String,
        until: SystemTime,
    },
}

/// A lease this process holds.
#[derive(Debug, Clone)]
pub struct Held {
    pub owner: String,
    pub times: LeaseTimes,
}

/// Why a held lease is no longer ours.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the collection lease is no longer ours (now: {now})")]
pub struct Lost {
    pub now: String,
}

async fn read(driver: &dyn StorageDriver) -> Result<Option<Record>> {
    match driver.get_content(&layout::gc_lease()).await {
        // An unreadable record counts as none (a torn write of a dead holder).
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

async fn write(driver: &dyn StorageDriver, owner: &str, ttl: Duration) -> Result<()> {
    let r = Record {
        owner: owner.to_owned(),
        expires: unix_ms(SystemTime::now() + ttl),
    };
    let body = serde_json::to_vec(&r).unwrap_or_default();
    driver
        .put_content(&layout::gc_lease(), Bytes::from(body))
        .await
}

/// A fresh owner id: the host name (a pod's name in Kubernetes), the pid and a random part.
pub fn new_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "host".to_owned());
    let r = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &r[..8])
}

/// Takes the lease for `owner` (write, settle, read back).
pub async fn acquire(driver: &dyn StorageDriver, owner: &str, times: LeaseTimes) -> Result<Claim> {
    let now = unix_ms(SystemTime::now());
    if let Some(r) = read(driver).await? {
        if r.owner != owner && r.expires > now {
            return Ok(Claim::Busy {
                until: UNIX_EPOCH + Duration::from_millis(r.expires),
                owner: r.owner,
            });
        }
    }
    write(driver, owner, times.ttl).await?;
    tokio::time::sleep(times.settle).await;
    match read(driver).await? {
        Some(r) if r.owner == owner => Ok(Claim::Held(Held {
            owner: owner.to_owned(),
            times,
        })),
        Some(r) => Ok(Claim::Busy {
            until: UNIX_EPOCH + Duration::from_millis(r.expires),
            owner: r.owner,
        }),
        None => Ok(Claim::Busy {
            owner: "(removed while taking it)".to_owned(),
            until: SystemTime::now(),
        }),
    }
}

impl Held {
    /// Reads the lease: still ours and not expired, or [`Lost`].
    pub async fn confirm(&self, driver: &dyn StorageDriver) -> Result<Result<(), Lost>> {
        let now = unix_ms(SystemTime::now());
        Ok(match read(driver).await? {
            Some(r) if r.owner == self.owner && r.expires > now => Ok(()),
            Some(r) => Err(Lost {
                now: format!("held by {}", r.owner),
            }),
            None => Err(Lost {
                now: "removed".to_owned(),
            }),
        })
    }

    /// Confirms, then extends the expiry.
    pub async fn renew(&self, driver: &dyn StorageDriver) -> Result<Result<(), Lost>> {
        if let Err(l) = self.confirm(driver).await? {
            return Ok(Err(l));
        }
        write(driver, &self.owner, self.times.ttl).await?;
        Ok(Ok(()))
    }

    /// Deletes the lease if it is still ours.
    pub async fn release(&self, driver: &dyn StorageDriver) {
        match read(driver).await {
            Ok(Some(r)) if r.owner == self.owner => {
                if let Err(e) = driver.delete(&layout::gc_lease()).await {
                    if !e.is_not_found() {
                        tracing::warn!(error = %e, "cannot release the collection lease; it expires by itself");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot release the collection lease; it expires by itself")
            }
        }
    }
}

/// When the last successful run ended (`layout::gc_last_run`), if recorded.
pub async fn last_run(driver: &dyn StorageDriver) -> Result<Option<SystemTime>> {
    match driver.get_content(&layout::gc_last_run()).await {
        Ok(b) => Ok(std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records that a run ended now.
pub async fn record_run(driver: &dyn StorageDriver) -> Result<()> {
    driver
        .put_content(
            &layout::gc_last_run(),
            Bytes::from(unix_ms(SystemTime::now()).to_string()),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryDriver;

    fn fast() -> LeaseTimes {
        LeaseTimes {
            ttl: Duration::from_secs(5),
            settle: Duration::from_millis(50),
            renew: Duration::from_millis(50),
        }
    }

    #[tokio::test]
    async fn one_of_two_racing_claims_wins_and_the_loser_of_an_overwrite_stops() {
        let d = MemoryDriver::new();
        let (a, b) = tokio::join!(acquire(&d, "a", fast()), acquire(&d, "b", fast()));
        let held: Vec<_> = [a.unwrap(), b.unwrap()]
            .into_iter()
            .filter_map(|c| match c {
                Claim::Held(h) => Some(h),
                Claim::Busy { .. } => None,
            })
            .collect();
        assert_eq!(held.len(), 1, "exactly one holder: {held:?}");
        let h = &held[0];
        assert!(h.confirm(&d).await.unwrap().is_ok());
        // Someone else now holds it (say, after a pause longer than the settle): the old holder's
        // next check fails.
        write(&d, "c", fast().ttl).await.unwrap();
        assert!(h.confirm(&d).await.unwrap().is_err());
        let lost = h.renew(&d).await.unwrap().unwrap_err();
        assert!(lost.to_string().contains("held by c"), "{lost}");
        // Busy while c's lease lasts; release by a non-holder leaves it.
        h.release(&d).await;
        assert!(matches!(
            acquire(&d, "a", fast()).await.unwrap(),
            Claim::Busy { owner, .. } if owner == "c"
        ));
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_and_a_released_one_is_free() {
        let d = MemoryDriver::new();
        write(&d, "dead", Duration::ZERO).await.unwrap();
        let Claim::Held(h) = acquire(&d, "a", fast()).await.unwrap() else {
            panic!("an expired lease is free");
        };
        h.release(&d).await;
        assert!(read(&d).await.unwrap().is_none());
        assert!(last_run(&d).await.unwrap().is_none());
        record_run(&d).await.unwrap();
        let t = last_run(&d).await.unwrap().unwrap();
        assert!(SystemTime::now().duration_since(t).unwrap() < Duration::from_secs(5));
    }
}
