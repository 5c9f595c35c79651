//! Target groups: several targets behind one [`Backend`], with the strategies of the
//! operator's StorageGroup kind (named differently here: this is the engine's side of it).
//!
//! - `Spread`: each pack goes to one target, chosen by weight from the pack's name (stable,
//!   so every writer agrees); a target short of room for it (it reports less free space than
//!   twice the pack) is tried last, and if a target fails the write, the next one takes it.
//! - `Mirror`: every file goes to every target; a write succeeds when at least
//!   `min_healthy` targets took it (default 1), and the others are behind until a resync
//!   ([`crate::backend::resync`]).
//! - `Failover`: each pack goes to the first target (in list order) that accepts it.
//!
//! A target that fails a write is skipped by the later writes of this process and reported
//! by [`Backend::missed_writes`]. Metadata (index files, snapshots, markers, locks) is small
//! and needed to read anything, so every strategy writes it to every target; `Spread` and
//! `Failover` need one success. The repository's identity (config and key files) needs every
//! target under every strategy: a group never holds a repository on some targets only
//! because others were down when it was created. Deleting needs every target too, so a prune
//! never leaves a forgotten snapshot on a target that is down, for a resync to bring back.
//! Reads try the targets in order (the chosen one first for `Spread`) until one has the
//! file, so a restore finds each pack wherever it lives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::warn;

use super::{Backend, BackendError, FileKind, LocalFile};

/// How a group distributes files over its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Each pack on one target, chosen by weight.
    Spread,
    /// Every file on every target.
    Mirror,
    /// Each pack on the first target that accepts it.
    Failover,
}

impl From<hort_protocol::Strategy> for Strategy {
    fn from(strategy: hort_protocol::Strategy) -> Self {
        match strategy {
            hort_protocol::Strategy::Spread => Strategy::Spread,
            hort_protocol::Strategy::Mirror => Strategy::Mirror,
            hort_protocol::Strategy::Failover => Strategy::Failover,
        }
    }
}

/// One member of a group.
pub struct Target {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// Relative share of new packs under `Spread` (at least 1).
    pub weight: u32,
}

/// Several targets combined by a [`Strategy`].
pub struct TargetGroup {
    pub(super) targets: Vec<Target>,
    strategy: Strategy,
    /// `Mirror`: how many targets must take a write.
    min_healthy: usize,
    /// Targets that failed a write of this process; later writes skip them.
    down: Vec<AtomicBool>,
    /// Targets that did not get every file this process wrote to the group.
    missed: Vec<AtomicBool>,
}

impl TargetGroup {
    /// A group of `targets` (at least one) using `strategy`; `Mirror` writes need one target.
    pub fn new(targets: Vec<Target>, strategy: Strategy) -> Result<Self, BackendError> {
        if targets.is_empty() {
            return Err(BackendError::Config("a storage group needs at least one target".into()));
        }
        if targets.iter().any(|t| t.weight == 0) {
            return Err(BackendError::Config("target weights must be at least 1".into()));
        }
        let flags = || targets.iter().map(|_| AtomicBool::new(false)).collect();
        Ok(Self {
            down: flags(),
            missed: flags(),
            targets,
            strategy,
            min_healthy: 1,
        })
    }

    /// With `Mirror`, a write succeeds only when at least `n` targets (1 to all) took it.
    pub fn with_min_healthy(mut self, n: usize) -> Result<Self, BackendError> {
        if n == 0 || n > self.targets.len() {
            return Err(BackendError::Config(format!(
                "minimum healthy targets {n}: must be 1 to {} (the number of targets)",
                self.targets.len()
            )));
        }
        self.min_healthy = n;
        Ok(self)
    }

    /// Whether target `i` may lack room for a file of `size` bytes.
    fn short_of_space(&self, i: usize, size: u64) -> bool {
        self.targets[i]
            .backend
            .free_bytes()
            .is_some_and(|free| free < size.saturating_mul(2))
    }

    /// Target indices in the order reads and writes should try them for `name`.
    fn order(&self, kind: FileKind, name: &str) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.targets.len()).collect();
        if self.strategy == Strategy::Spread && kind.is_pack() {
            let total: u64 = self.targets.iter().map(|t| u64::from(t.weight)).sum();
            let hash = blake3::hash(name.as_bytes());
            let mut first8 = [0u8; 8];
            first8.copy_from_slice(&hash.as_bytes()[..8]);
            let mut point = u64::from_le_bytes(first8) % total;
            let chosen = self
                .targets
                .iter()
                .position(|t| {
                    let w = u64::from(t.weight);
                    if point < w {
                        true
                    } else {
                        point -= w;
                        false
                    }
                })
                .unwrap_or(0);
            order.rotate_left(chosen);
        }
        order
    }

    /// Stores a file of `size` bytes with `write` on the targets the strategy asks for
    /// (see the module): identity files on every target, metadata and (`Mirror`) packs on
    /// every target that is not down, other packs on the first target, in
    /// [`TargetGroup::order`] with targets short of space last, that accepts them.
    fn write_with(
        &self,
        kind: FileKind,
        name: &str,
        size: u64,
        write: impl Fn(&dyn Backend) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        if matches!(kind, FileKind::Config | FileKind::Key) {
            for target in &self.targets {
                write(target.backend.as_ref())?;
            }
            return Ok(());
        }
        let everywhere = kind.is_metadata() || self.strategy == Strategy::Mirror;
        let needed = if self.strategy == Strategy::Mirror {
            self.min_healthy
        } else {
            1
        };
        let mut order = self.order(kind, name);
        if self.strategy == Strategy::Spread && !everywhere {
            order.sort_by_key(|&i| self.short_of_space(i, size));
        }
        let mut first_error = None;
        let mut written = 0;
        for i in order {
            let target = &self.targets[i];
            if self.down[i].load(Ordering::Relaxed) {
                if everywhere {
                    self.missed[i].store(true, Ordering::Relaxed);
                }
                continue;
            }
            match write(target.backend.as_ref()) {
                Ok(()) => {
                    written += 1;
                    if !everywhere {
                        return Ok(());
                    }
                }
                Err(e) => {
                    warn!(target_location = %target.backend.describe(), error = %e,
                          "write failed on one target; this run writes no more to it");
                    self.down[i].store(true, Ordering::Relaxed);
                    if everywhere {
                        self.missed[i].store(true, Ordering::Relaxed);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        if written >= needed {
            return Ok(());
        }
        Err(first_error.unwrap_or_else(|| BackendError::Remote {
            location: format!("{}: {}", self.describe(), kind.path(name)),
            message: format!(
                "{written} targets took the write, {needed} needed; the others failed earlier writes of this run"
            ),
        }))
    }

    fn first_success<T>(
        &self,
        kind: FileKind,
        name: &str,
        op: impl Fn(&dyn Backend) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut last_error = None;
        for i in self.order(kind, name) {
            match op(self.targets[i].backend.as_ref()) {
                Ok(value) => return Ok(value),
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    warn!(target_location = %self.targets[i].backend.describe(), error = %e, "target failed, trying the next");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| BackendError::NotFound {
            location: format!("{}: {}", self.describe(), kind.path(name)),
        }))
    }
}

impl Backend for TargetGroup {
    fn describe(&self) -> String {
        let members: Vec<String> = self.targets.iter().map(|t| t.backend.describe()).collect();
        format!("{:?}[{}]", self.strategy, members.join(", "))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        let mut all = std::collections::BTreeSet::new();
        let mut first_error = None;
        let mut any_ok = false;
        for target in &self.targets {
            match target.backend.list(kind) {
                Ok(names) => {
                    any_ok = true;
                    all.extend(names);
                }
                Err(e) => {
                    warn!(target_location = %target.backend.describe(), error = %e, "listing failed on one target");
                    first_error.get_or_insert(e);
                }
            }
        }
        match (any_ok, first_error) {
            (false, Some(e)) => Err(e),
            _ => Ok(all.into_iter().collect()),
        }
    }

    fn list_every_target(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        let mut all = std::collections::BTreeSet::new();
        for target in &self.targets {
            all.extend(target.backend.list_every_target(kind)?);
        }
        Ok(all.into_iter().collect())
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.first_success(kind, name, |b| b.read(kind, name))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
        self.first_success(kind, name, |b| b.read_range(kind, name, offset, length))
    }

    fn read_tail(&self, kind: FileKind, name: &str, length: u64) -> Result<Vec<u8>, BackendError> {
        self.first_success(kind, name, |b| b.read_tail(kind, name, length))
    }

    fn copies(&self) -> usize {
        self.targets.len()
    }

    fn read_range_copy(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        copy: usize,
    ) -> Result<Vec<u8>, BackendError> {
        let target = self
            .order(kind, name)
            .get(copy)
            .copied()
            .ok_or_else(|| BackendError::NotFound {
                location: format!("{}: copy {copy} of {}", self.describe(), kind.path(name)),
            })?;
        self.targets[target].backend.read_range(kind, name, offset, length)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.write_with(kind, name, data.len() as u64, |backend| backend.write(kind, name, data))
    }

    fn write_file(&self, kind: FileKind, name: &str, source: LocalFile<'_>) -> Result<(), BackendError> {
        self.write_with(kind, name, source.size, |backend| {
            backend.write_file(kind, name, source)
        })
    }

    fn missed_writes(&self) -> Vec<String> {
        self.targets
            .iter()
            .zip(&self.missed)
            .filter(|(_, missed)| missed.load(Ordering::Relaxed))
            .map(|(t, _)| t.backend.describe())
            .collect()
    }

    fn retained_until(
        &self,
        kind: FileKind,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, BackendError> {
        let mut latest = None;
        for target in &self.targets {
            latest = latest.max(target.backend.retained_until(kind, name)?);
        }
        Ok(latest)
    }

    fn archives(&self) -> Result<bool, BackendError> {
        for target in &self.targets {
            if target.backend.archives()? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Only packs that no target outside an archive class lists are restored from the
    /// archive targets, each on the first archive target (in list order) that holds it.
    fn make_readable(&self, names: &[String], wait: std::time::Duration) -> Result<Vec<String>, BackendError> {
        let mut archive_targets = Vec::new();
        let mut other_targets = Vec::new();
        for target in &self.targets {
            match target.backend.archives()? {
                true => archive_targets.push(target),
                false => other_targets.push(target),
            }
        }
        if archive_targets.is_empty() {
            return Ok(Vec::new());
        }
        let mut left: Vec<String> = names.to_vec();
        for target in other_targets {
            if let Ok(listed) = target.backend.list(FileKind::Pack) {
                let listed: std::collections::HashSet<String> = listed.into_iter().collect();
                left.retain(|n| !listed.contains(n));
            }
        }
        let mut restored = Vec::new();
        for target in archive_targets {
            let held = target.backend.make_readable(&left, wait)?;
            left.retain(|n| !held.contains(n));
            restored.extend(held);
        }
        Ok(restored)
    }

    /// Deletes on every target, or on none while a target still retains the file.
    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        if let Some(until) = self.retained_until(kind, name)? {
            return Err(BackendError::Retained {
                location: format!("{}: {}", self.describe(), kind.path(name)),
                until,
            });
        }
        let mut first_error = None;
        for target in &self.targets {
            if let Err(e) = target.backend.delete(kind, name) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    fn group(strategy: Strategy, weights: &[u32]) -> (TargetGroup, Vec<Arc<MemoryBackend>>) {
        let members: Vec<Arc<MemoryBackend>> = weights.iter().map(|_| Arc::new(MemoryBackend::new())).collect();
        let targets = members
            .iter()
            .zip(weights)
            .map(|(m, &weight)| Target {
                backend: m.clone() as Arc<dyn Backend>,
                weight,
            })
            .collect();
        (TargetGroup::new(targets, strategy).unwrap(), members)
    }

    fn name(i: u32) -> String {
        crate::id::Id::of_file(&i.to_le_bytes()).to_hex()
    }

    #[test]
    fn spread_follows_weights_and_reads_find_every_pack() {
        let (g, members) = group(Strategy::Spread, &[3, 1]);
        for i in 0..400 {
            g.write(FileKind::Pack, &name(i), b"x").unwrap();
        }
        let (a, b) = (members[0].count(FileKind::Pack), members[1].count(FileKind::Pack));
        assert_eq!(a + b, 400, "each pack on exactly one target");
        assert!((250..350).contains(&a), "weight 3:1 gave {a}:{b}");
        for i in 0..400 {
            assert_eq!(g.read(FileKind::Pack, &name(i)).unwrap(), b"x");
        }
        g.write(FileKind::Index, "i", b"m").unwrap();
        assert_eq!(members[0].count(FileKind::Index) + members[1].count(FileKind::Index), 2);
    }

    #[test]
    fn mirror_writes_on_with_a_target_down_and_says_which_one_is_behind() {
        let (g, members) = group(Strategy::Mirror, &[1, 1, 1]);
        g.write(FileKind::Pack, &name(1), b"data").unwrap();
        members[0].delete(FileKind::Pack, &name(1)).unwrap();
        assert_eq!(g.read(FileKind::Pack, &name(1)).unwrap(), b"data");
        assert!(g.missed_writes().is_empty());
        members[1].set_offline(true);
        g.write(FileKind::Pack, &name(2), b"data").unwrap();
        g.write(FileKind::Index, "i", b"index").unwrap();
        assert_eq!(g.missed_writes(), ["memory"], "the one target that is down");
        members[1].set_offline(false);
        g.write(FileKind::Pack, &name(3), b"data").unwrap();
        assert_eq!(
            members[1].count(FileKind::Pack),
            1,
            "a target that failed is skipped for the run"
        );
        assert_eq!(
            (members[0].count(FileKind::Pack), members[2].count(FileKind::Pack)),
            (2, 3)
        );

        // With two healthy targets required, losing two of three fails the write.
        let (g, members) = group(Strategy::Mirror, &[1, 1, 1]);
        let g = g.with_min_healthy(2).unwrap();
        members[0].set_offline(true);
        g.write(FileKind::Pack, &name(1), b"data").unwrap();
        members[1].set_offline(true);
        let error = g.write(FileKind::Pack, &name(2), b"data").unwrap_err();
        assert!(error.to_string().contains("offline"), "{error}");
        assert!(g.write(FileKind::Index, "j", b"index").is_err());
        let (g, _) = group(Strategy::Mirror, &[1, 1]);
        assert!(g.with_min_healthy(3).is_err());
    }

    #[test]
    fn spread_puts_new_packs_on_targets_with_room() {
        let (g, members) = group(Strategy::Spread, &[1, 1]);
        members[0].set_free_bytes(Some(10));
        members[1].set_free_bytes(Some(1 << 30));
        for i in 0..50 {
            g.write(FileKind::Pack, &name(i), b"0123456789").unwrap();
        }
        assert_eq!(members[1].count(FileKind::Pack), 50, "the full target takes none");
        members[1].set_offline(true);
        g.write(FileKind::Pack, &name(99), b"0123456789").unwrap();
        assert_eq!(members[0].count(FileKind::Pack), 1, "a full target is still tried last");
        assert!(g.missed_writes().is_empty(), "Spread puts a pack on one target");
    }

    #[test]
    fn the_repository_identity_needs_every_target_under_every_strategy() {
        for strategy in [Strategy::Spread, Strategy::Mirror, Strategy::Failover] {
            let (g, members) = group(strategy, &[1, 1]);
            members[1].set_offline(true);
            assert!(g.write(FileKind::Config, "config", b"c").is_err(), "{strategy:?}");
            assert!(g.write(FileKind::Key, "k", b"k").is_err(), "{strategy:?}");
            assert!(g.list(FileKind::Config).is_ok(), "{strategy:?}: reads go on");
            assert!(g.list_every_target(FileKind::Config).is_err(), "{strategy:?}");
            if strategy != Strategy::Mirror {
                g.write(FileKind::Index, "i", b"i").unwrap();
            }
        }
    }

    #[test]
    fn failover_uses_the_first_healthy_target() {
        let (g, members) = group(Strategy::Failover, &[1, 1]);
        g.write(FileKind::Pack, &name(1), b"a").unwrap();
        assert_eq!(members[0].count(FileKind::Pack), 1);
        members[0].set_offline(true);
        g.write(FileKind::Pack, &name(2), b"b").unwrap();
        assert_eq!(members[1].count(FileKind::Pack), 1);
        assert_eq!(g.read(FileKind::Pack, &name(2)).unwrap(), b"b");
        assert!(g.read(FileKind::Pack, &name(3)).is_err());
    }
}
