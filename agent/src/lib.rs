//! Hort's repository engine: deduplicating, compressing, encrypting backups of file trees and
//! database dump streams to filesystem and S3 targets, alone or combined in storage groups.
//!
//! Layers, bottom up (the on-disk format is specified in `FORMAT.md`):
//! - [`backend`]: where files live ([`backend::Backend`]; filesystem, S3, memory, groups);
//! - [`crypto`], [`keyfile`], [`codec`], [`chunker`], [`pack`], [`index`], [`tree`],
//!   [`snapshot`], [`config`]: the format's building blocks;
//! - [`repository`]: keys, config, index and checked blob reads;
//! - [`packer`], [`archiver`], [`restorer`] (with [`archive`]: packs in archive storage
//!   classes), [`verify`], [`restore_check`] (a restore compared with its snapshot),
//!   [`repair`], [`prune`] (with [`retention`], [`prune_marker`] and [`backup_lock`]): the
//!   operations; [`filter`] selects paths;
//! - [`location`], [`progress`], [`cli`]: the `hort-agent` command line.

pub mod archive;
pub mod archiver;
pub mod backend;
pub mod backup_lock;
pub mod chunker;
pub mod cli;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod database;
pub mod filter;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod keyring;
pub mod location;
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
pub mod spool;
pub mod target_dir;
pub mod tree;
pub mod verify;
