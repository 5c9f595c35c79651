//! Backup locks (`locks/<id>`, FORMAT.md §11): a running backup announces itself in the
//! repository, and a prune sweep never deletes a pack that such a backup may still use.
//!
//! A backup writes its lock before it loads the index and rewrites it every
//! [`LockTiming::refresh`]; a lock not rewritten for [`LockTiming::stale`] is dead to prune.
//! Before it writes its snapshot, the backup checks that its lock never went that long
//! without a rewrite ([`BackupLock::ensure_held`]); if it did, a sweep may have taken its
//! packs, so it fails instead of writing a snapshot that could refer to lost data.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chrono::{DateTime, Duration, Utc};
use crossbeam_channel::{Sender, bounded};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::backend::{Backend, FileKind};
use crate::crypto::Keys;
use crate::repository::{Repository, RepositoryError, hostname};

/// Associated data of sealed backup locks.
pub const AAD: &[u8] = b"hort.v1.lock";

/// Contents of a `locks/<id>` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockFile {
    /// Lock format version (1).
    pub version: u32,
    /// The machine (pod) running the backup.
    pub hostname: String,
    /// When the backup took the lock, before it loaded the index.
    pub started: DateTime<Utc>,
    /// When this file was written.
    pub refreshed: DateTime<Utc>,
}

/// How often a lock is rewritten and when it counts as dead.
#[derive(Debug, Clone, Copy)]
pub struct LockTiming {
    /// Interval between rewrites.
    pub refresh: Duration,
    /// A lock not rewritten for this long is dead to prune.
    pub stale: Duration,
    /// How much earlier than `stale` a backup gives up: room for clock skew between the
    /// backup's and prune's machines and for writing the snapshot.
    pub margin: Duration,
}

impl Default for LockTiming {
    fn default() -> Self {
        Self {
            refresh: Duration::minutes(5),
            stale: Duration::minutes(30),
            margin: Duration::minutes(10),
        }
    }
}

/// Clock skew tolerated between machines when prune compares a backup's start with the time
/// a prune run replaced the index.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// A backup lock that went longer without a refresh than prune tolerates: prune may have
/// taken it for dead and deleted packs the backup uses, so the backup writes no snapshot.
/// The fix is to run the backup again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the backup lock went {gap_seconds} s without a refresh (limit {limit_seconds} s): a prune may have deleted data this backup uses, so no snapshot is written; run the backup again"
)]
pub struct LockLost {
    /// The longest time between two rewrites of the lock, in seconds.
    pub gap_seconds: i64,
    /// The longest time allowed ([`LockTiming::stale`] less [`LockTiming::margin`]), in seconds.
    pub limit_seconds: i64,
}

/// The lock's history as its holder saw it.
#[derive(Debug, Clone)]
struct Held {
    name: String,
    started: DateTime<Utc>,
    refreshed: DateTime<Utc>,
    /// The longest time between two successful writes so far.
    longest_gap: Duration,
}

impl Held {
    /// Whether prune can have seen this lock as dead at any time up to `now`.
    fn check(&self, now: DateTime<Utc>, timing: &LockTiming) -> Result<(), LockLost> {
        let gap = self.longest_gap.max(now - self.refreshed);
        let limit = timing.stale - timing.margin;
        if gap >= limit {
            return Err(LockLost {
                gap_seconds: gap.num_seconds(),
                limit_seconds: limit.num_seconds(),
            });
        }
        Ok(())
    }
}

/// A backup's lock, rewritten by a thread while it is held and deleted when dropped.
pub struct BackupLock {
    held: Arc<Mutex<Held>>,
    timing: LockTiming,
    backend: Arc<dyn Backend>,
    stop: Option<Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

fn write_lock(backend: &dyn Backend, keys: &Keys, file: &LockFile) -> Result<String, RepositoryError> {
    crate::sealed::write(backend, keys, FileKind::Lock, AAD, file)
        .map(|id| id.to_hex())
        .map_err(|e| RepositoryError::from_sealed_write(e, "new backup lock"))
}

fn lock_of(held: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

impl BackupLock {
    /// Writes a lock for a backup of `repo` and starts rewriting it. Take it before loading
    /// the index: prune trusts `started` to say which index the backup can have seen.
    pub fn acquire(repo: &Repository) -> Result<Self, RepositoryError> {
        Self::acquire_with(repo, LockTiming::default())
    }

    /// [`BackupLock::acquire`] with other timing (tests).
    pub fn acquire_with(repo: &Repository, timing: LockTiming) -> Result<Self, RepositoryError> {
        let now = Utc::now();
        let file = LockFile {
            version: 1,
            hostname: hostname(),
            started: now,
            refreshed: now,
        };
        let backend = repo.backend().clone();
        let name = write_lock(backend.as_ref(), repo.keys(), &file)?;
        debug!(lock = %name, "backup lock written");
        let held = Arc::new(Mutex::new(Held {
            name,
            started: now,
            refreshed: now,
            longest_gap: Duration::zero(),
        }));
        let (stop, stopped) = bounded::<()>(0);
        let refresher = {
            let held = held.clone();
            let backend = backend.clone();
            let keys = repo.keys().clone();
            let interval = timing.refresh.to_std().unwrap_or(std::time::Duration::from_secs(300));
            std::thread::spawn(move || {
                // A message or a dropped sender both end the loop.
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    refresh(&held, backend.as_ref(), &keys);
                }
            })
        };
        Ok(Self {
            held,
            timing,
            backend,
            stop: Some(stop),
            refresher: Some(refresher),
        })
    }

    /// Fails when prune may have seen this lock as dead since it was taken (see the module).
    pub fn ensure_held(&self) -> Result<(), LockLost> {
        lock_of(&self.held).check(Utc::now(), &self.timing)
    }
}

/// Writes a new lock file and deletes the previous one (in this order, so one always exists).
fn refresh(held: &Mutex<Held>, backend: &dyn Backend, keys: &Keys) {
    let (old, started) = {
        let h = lock_of(held);
        (h.name.clone(), h.started)
    };
    let now = Utc::now();
    let file = LockFile {
        version: 1,
        hostname: hostname(),
        started,
        refreshed: now,
    };
    match write_lock(backend, keys, &file) {
        Ok(name) => {
            {
                let mut h = lock_of(held);
                h.longest_gap = h.longest_gap.max(now - h.refreshed);
                h.refreshed = now;
                h.name = name;
            }
            if let Err(e) = backend.delete(FileKind::Lock, &old) {
                warn!(lock = %old, error = %e, "cannot delete the previous backup lock");
            }
        }
        Err(e) => warn!(error = %e, "cannot refresh the backup lock; trying again later"),
    }
}

impl Drop for BackupLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.refresher.take() {
            let _ = thread.join();
        }
        let name = lock_of(&self.held).name.clone();
        if let Err(e) = self.backend.delete(FileKind::Lock, &name) {
            warn!(lock = %name, error = %e, "cannot delete the backup lock; prune ignores it once it is stale");
        }
    }
}

/// The backups prune must respect, read from `locks/`.
#[derive(Debug, Default)]
pub struct LiveBackups {
    /// Start times of the backups whose locks are fresh.
    pub started: Vec<DateTime<Utc>>,
    /// A lock vanished between listing and reading (its backup just rewrote it): a live
    /// backup whose start is unknown.
    pub unknown: bool,
    /// Names of dead (stale) lock files.
    pub stale: Vec<String>,
}

impl LiveBackups {
    /// Reads every lock of `repo` as seen at `now`.
    pub fn read(repo: &Repository, now: DateTime<Utc>, timing: &LockTiming) -> Result<Self, RepositoryError> {
        let mut live = LiveBackups::default();
        for name in repo.backend().list(FileKind::Lock)? {
            match repo.read_sealed::<LockFile>(FileKind::Lock, AAD, &name) {
                Ok(file) if now - file.refreshed < timing.stale => live.started.push(file.started),
                Ok(_) => live.stale.push(name),
                Err(RepositoryError::Backend(e)) if e.is_not_found() => live.unknown = true,
                Err(e) => return Err(e),
            }
        }
        Ok(live)
    }

    /// Whether a live backup may have loaded an index written before `index_replaced`
    /// (`None`: unknown, so any live backup counts).
    pub fn may_have_seen(&self, index_replaced: Option<DateTime<Utc>>) -> bool {
        match index_replaced {
            None => self.unknown || !self.started.is_empty(),
            Some(t) => self.unknown || self.started.iter().any(|s| *s < t + CLOCK_SKEW),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_rewritten_while_held_and_removed_when_dropped() {
        let (repo, backend) = crate::repository::in_memory();
        let timing = LockTiming {
            refresh: Duration::milliseconds(50),
            ..LockTiming::default()
        };
        let lock = BackupLock::acquire_with(&repo, timing).unwrap();
        let first = backend.list(FileKind::Lock).unwrap();
        assert_eq!(first.len(), 1);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let names = backend.list(FileKind::Lock).unwrap();
        assert_eq!(names.len(), 1, "the old file is deleted after the new one is written");
        assert_ne!(names, first, "rewritten");
        let file: LockFile = repo.read_sealed(FileKind::Lock, AAD, &names[0]).unwrap();
        assert!(file.refreshed > file.started, "{file:?}");
        let live = LiveBackups::read(&repo, Utc::now(), &timing).unwrap();
        assert_eq!(live.started, vec![file.started]);
        lock.ensure_held().unwrap();
        drop(lock);
        assert!(backend.list(FileKind::Lock).unwrap().is_empty());
    }

    fn held(started_min_ago: i64, refreshed_min_ago: i64, longest_gap_min: i64, now: DateTime<Utc>) -> Held {
        Held {
            name: String::new(),
            started: now - Duration::minutes(started_min_ago),
            refreshed: now - Duration::minutes(refreshed_min_ago),
            longest_gap: Duration::minutes(longest_gap_min),
        }
    }

    #[test]
    fn a_lock_refreshed_in_time_is_held_and_a_long_gap_past_or_present_is_not() {
        let now = Utc::now();
        let timing = LockTiming::default();
        assert!(
            held(120, 4, 6, now).check(now, &timing).is_ok(),
            "refreshed every 6 min"
        );
        let silent = held(120, 21, 5, now).check(now, &timing).unwrap_err();
        assert_eq!(
            silent,
            LockLost {
                gap_seconds: 1260,
                limit_seconds: 1200
            }
        );
        assert!(
            silent.to_string().contains("1260 s without a refresh (limit 1200 s)")
                && silent.to_string().ends_with("run the backup again"),
            "{silent}"
        );
        let earlier = held(120, 1, 25, now).check(now, &timing).unwrap_err();
        assert_eq!(earlier.gap_seconds, 1500, "a gap that ended still counts: {earlier}");
    }

    #[test]
    fn live_backups_block_markers_whose_index_they_may_have_seen() {
        let now = Utc::now();
        let live = LiveBackups {
            started: vec![now - Duration::hours(2)],
            ..Default::default()
        };
        assert!(
            live.may_have_seen(Some(now - Duration::hours(1))),
            "started before the index changed"
        );
        assert!(!live.may_have_seen(Some(now - Duration::hours(3))), "started after it");
        assert!(
            live.may_have_seen(Some(now - Duration::hours(2) - Duration::minutes(3))),
            "within the clock skew"
        );
        assert!(live.may_have_seen(None), "a marker of an interrupted prune");
        assert!(!LiveBackups::default().may_have_seen(None), "no backup runs");
        let unknown = LiveBackups {
            unknown: true,
            ..Default::default()
        };
        assert!(unknown.may_have_seen(Some(now - Duration::days(9))));
    }
}
