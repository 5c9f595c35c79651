//! Named streams: how a database backup hands its dumps to the engine and how a restore reads
//! them back. The database code (in the agent) pushes into a [`StreamSink`] and reads from a
//! [`StreamSource`]; the engine implements both ([`crate::archiver::StreamBackup`],
//! [`crate::snapshot_streams::SnapshotStreams`]) and knows nothing of databases.

use std::io::{self, Read};

/// Receives the streams of a database backup (implemented by the repository engine).
pub trait StreamSink {
    /// Stores one complete stream named `name`, reading `data` to its end. Names are unique
    /// within one backup.
    fn put(&mut self, name: &str, data: &mut dyn Read) -> io::Result<u64>;

    /// Takes an estimate of the bytes all streams of this backup will hold (from the
    /// databases' sizes on the server), for progress; called at most once, before the dumps.
    fn expect_total(&mut self, bytes: u64) {
        let _ = bytes;
    }
}

/// Hands out the streams of a database backup for a restore (implemented by the engine).
pub trait StreamSource: Sync {
    /// Opens the stream `name` from its beginning; may be called more than once per name.
    fn open(&self, name: &str) -> io::Result<Box<dyn Read + Send + '_>>;
}
