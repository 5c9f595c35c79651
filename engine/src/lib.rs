//! Hort's repository engine: deduplicating, compressing, encrypting backups of file trees and
//! database dump streams to filesystem and S3 targets, alone or combined in storage groups.
//! No command line, no database and no printing: the `hort-agent` crate holds those.
//!
//! Layers, bottom up (the on-disk format is specified in `agent/FORMAT.md`):
//! - [`backend`]: where files live ([`backend::Backend`]; filesystem, S3, memory, groups);
//! - [`id`], [`crypto`], [`keyfile`], [`codec`], [`sealed`], [`chunker`], [`pack`], [`index`],
//!   [`tree`], [`snapshot`], [`config`], [`prune_marker`]: the format's building blocks;
//! - [`repository`] (with [`keyring`]): keys, config, index and checked blob reads;
//! - [`packer`], [`archiver`], [`restorer`] (with [`archive`]: packs in archive storage
//!   classes, and [`target_dir`]), [`verify`], [`restore_check`] (a restore compared with its
//!   snapshot), [`repair`], [`prune`] (with [`retention`] and [`backup_lock`]): the
//!   operations; [`filter`] selects paths; [`spool`] holds packs on local disk while they fill;
//! - [`streams`] and [`snapshot_streams`]: named streams to and from database dumps;
//!   [`progress`]: counters the operations update; [`location`]: repository locations;
//!   [`error_kind`]: what kind of failure an error is.

pub mod archive;
pub mod archiver;
pub mod backend;
pub mod backup_lock;
pub mod chunker;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod error_kind;
pub mod filter;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod keyring;
pub mod location;
pub mod memory_budget;
pub mod pack;
pub mod packer;
pub mod progress;
pub mod prune;
pub mod prune_marker;
pub mod repair;
pub mod repository;
pub mod restore_check;
pub mod restorer;
pub mod retention;
pub mod sealed;
pub mod snapshot;
pub mod snapshot_streams;
pub mod source_file;
pub mod spool;
pub mod streams;
pub mod target_dir;
pub mod tree;
pub mod verify;
