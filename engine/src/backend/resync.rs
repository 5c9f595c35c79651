//! Resync of a storage group: copies every file that one target holds and another lacks, so
//! that each target alone holds the whole repository again (what `Mirror` promises after a
//! target was down or was added later). Files are named by the hash of their bytes (except
//! `config`), so a copy is checked against its name before it is written.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;
use tracing::{info, warn};

use super::group::TargetGroup;
use super::{Backend, BackendError, FileKind};
use crate::id::Id;

/// Kinds in the order they are copied: identity first, then packs before the index files
/// and snapshots that refer to them, so a target that is caught up part-way never holds a
/// snapshot whose data it lacks.
const ORDER: [FileKind; 6] = [
    FileKind::Config,
    FileKind::Key,
    FileKind::Pack,
    FileKind::Index,
    FileKind::Snapshot,
    FileKind::Prune,
];

/// How far one target is behind the others, and what a resync copied to it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TargetLag {
    /// The target, described.
    pub target: String,
    /// Files the others hold and this one still lacks (`None`: it could not be listed).
    pub missing_files: Option<u64>,
    /// Files copied to it.
    pub copied_files: u64,
    /// Bytes copied to it.
    pub copied_bytes: u64,
    /// Why it could not be listed or written.
    pub error: Option<String>,
}

/// One target's listing, per kind in [`ORDER`].
type Listing = Vec<BTreeSet<String>>;

fn listing(backend: &dyn Backend) -> Result<Listing, BackendError> {
    ORDER
        .iter()
        .map(|&kind| Ok(backend.list(kind)?.into_iter().collect()))
        .collect()
}

/// Whether `data` is the file `name` of `kind` (its name is the hash of its bytes).
fn intact(kind: FileKind, name: &str, data: &[u8]) -> bool {
    kind == FileKind::Config || Id::of_file(data).to_hex() == name
}

impl TargetGroup {
    /// Copies to each target what others hold and it lacks (with `copy == false`, only
    /// counts it; after `until`, only counts the rest); returns each target's lag. A pack is
    /// written as the kind `pack_kind` tells from its bytes, so that a target with an archive
    /// storage class keeps tree packs readable (see [`crate::pack::kind_of_pack`]). Fails
    /// without copying anything if the targets hold different repositories (their `config`
    /// files differ).
    pub fn resync(
        &self,
        copy: bool,
        until: Option<Instant>,
        pack_kind: &dyn Fn(&[u8]) -> FileKind,
    ) -> Result<Vec<TargetLag>, BackendError> {
        let mut lags: Vec<TargetLag> = self
            .targets
            .iter()
            .map(|t| TargetLag {
                target: t.backend.describe(),
                ..TargetLag::default()
            })
            .collect();
        let mut listings: Vec<Option<Listing>> = Vec::new();
        for (target, lag) in self.targets.iter().zip(&mut lags) {
            match listing(target.backend.as_ref()) {
                Ok(l) => listings.push(Some(l)),
                Err(e) => {
                    warn!(target_location = %lag.target, error = %e, "cannot list the target; it is not resynced");
                    lag.error = Some(e.to_string());
                    listings.push(None);
                }
            }
        }
        self.same_repository(&listings)?;
        for (k, &kind) in ORDER.iter().enumerate() {
            let union: BTreeSet<&String> = listings.iter().flatten().flat_map(|l| &l[k]).collect();
            for name in union {
                let holders: Vec<usize> = (0..self.targets.len())
                    .filter(|&i| listings[i].as_ref().is_some_and(|l| l[k].contains(name)))
                    .collect();
                let lacking = (0..self.targets.len())
                    .filter(|&i| listings[i].is_some() && !holders.contains(&i) && lags[i].error.is_none());
                let lacking: Vec<usize> = lacking.collect();
                if lacking.is_empty() {
                    continue;
                }
                let data = if copy && until.is_none_or(|t| Instant::now() < t) {
                    self.read_intact(kind, name, &holders)
                } else {
                    None
                };
                let write_kind = match (&data, kind) {
                    (Some(data), FileKind::Pack) => pack_kind(data),
                    _ => kind,
                };
                for i in lacking {
                    match &data {
                        None => *lags[i].missing_files.get_or_insert(0) += 1,
                        Some(data) => match self.targets[i].backend.write(write_kind, name, data) {
                            Ok(()) => {
                                lags[i].copied_files += 1;
                                lags[i].copied_bytes += data.len() as u64;
                            }
                            Err(e) => {
                                warn!(target_location = %lags[i].target, error = %e, "resync write failed; the target stays behind");
                                lags[i].error = Some(e.to_string());
                                *lags[i].missing_files.get_or_insert(0) += 1;
                            }
                        },
                    }
                }
            }
        }
        for (lag, listing) in lags.iter_mut().zip(&listings) {
            if listing.is_some() && lag.error.is_none() {
                lag.missing_files.get_or_insert(0);
            }
            if lag.copied_files > 0 {
                info!(target_location = %lag.target, files = lag.copied_files, bytes = lag.copied_bytes, "target resynced");
            }
        }
        Ok(lags)
    }

    /// The bytes of `name` from the first of `holders` whose copy is intact; `None` if no
    /// copy is (the damage is left for `verify` to report, not copied).
    fn read_intact(&self, kind: FileKind, name: &str, holders: &[usize]) -> Option<Vec<u8>> {
        for &i in holders {
            match self.targets[i].backend.read(kind, name) {
                Ok(data) if intact(kind, name, &data) => return Some(data),
                Ok(_) => warn!(target_location = %self.targets[i].backend.describe(), file = %kind.path(name),
                               "copy does not match its name; not copied"),
                Err(e) => {
                    warn!(target_location = %self.targets[i].backend.describe(), error = %e, "cannot read a copy")
                }
            }
        }
        None
    }

    /// Fails if two targets hold different `config` files: two repositories, which a resync
    /// must never mix.
    fn same_repository(&self, listings: &[Option<Listing>]) -> Result<(), BackendError> {
        let mut first: Option<(usize, Vec<u8>)> = None;
        for (i, listing) in listings.iter().enumerate() {
            if listing.as_ref().is_none_or(|l| l[0].is_empty()) {
                continue;
            }
            let config = self.targets[i].backend.read(FileKind::Config, "config")?;
            match &first {
                None => first = Some((i, config)),
                Some((j, other)) if *other != config => {
                    return Err(BackendError::Refused {
                        location: self.describe(),
                        message: format!(
                            "targets {} and {} hold different repositories (their config files differ); not resyncing",
                            self.targets[*j].backend.describe(),
                            self.targets[i].backend.describe()
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
