//! What the agent reports: one JSON object in its termination message when a command ends,
//! and progress lines on stdout while it works.
//!
//! The kubelet copies at most [`MESSAGE_LIMIT`] bytes of the termination message into the pod
//! status, where the operator reads it; every message carries [`crate::PROTOCOL_VERSION`]
//! as `protocolVersion`. On failure the agent exits non-zero and writes no report (the kubelet
//! then shows the end of its log), except:
//! - `check`, which reports the targets' findings even when it cannot open the repository;
//! - the verifications (`verify-restore`, `verify-restore-postgres`, `verify-restore-mariadb`,
//!   `verify`), which write a [`VerificationReport`] whenever they could run their checks: exit
//!   [`crate::ExitCode::Ok`] when every check passed, [`crate::ExitCode::Damaged`] when any
//!   failed (the report names what). Errors that keep the checks from running (no repository,
//!   wrong password, an unreachable server, a usage error) exit as for any other command,
//!   without a report.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;

/// At most this many bytes of a termination message reach the pod status.
pub const MESSAGE_LIMIT: usize = 4096;

/// A report in a termination message.
pub trait Report: Serialize + DeserializeOwned {
    /// Which command's report this is, for messages.
    const COMMAND: &'static str;
}

/// A termination message that is not the report the operator expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not JSON, or not this report's fields.
    #[error("the agent's {command} report is not valid ({detail})")]
    Invalid {
        /// The command.
        command: &'static str,
        /// What the parser said.
        detail: String,
    },
    /// Written by an agent of another protocol version.
    #[error(
        "the agent's {command} report is of protocol version {found}, the operator's is {PROTOCOL_VERSION}: \
         run the hort-agent image of the operator's release (chart value agent.image)"
    )]
    Version {
        /// The command.
        command: &'static str,
        /// The version in the report (0: none).
        found: u32,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<T> {
    #[serde(default)]
    protocol_version: u32,
    #[serde(flatten)]
    report: T,
}

/// The termination message for `report`.
pub fn encode<R: Report>(report: &R) -> String {
    let envelope = Envelope {
        protocol_version: PROTOCOL_VERSION,
        report,
    };
    serde_json::to_string(&envelope).expect("reports serialize")
}

/// Reads a termination message written by [`encode`].
pub fn decode<R: Report>(message: &str) -> Result<R, ReportError> {
    let envelope: Envelope<R> = serde_json::from_str(message.trim()).map_err(|e| ReportError::Invalid {
        command: R::COMMAND,
        detail: e.to_string(),
    })?;
    if envelope.protocol_version != PROTOCOL_VERSION {
        return Err(ReportError::Version {
            command: R::COMMAND,
            found: envelope.protocol_version,
        });
    }
    Ok(envelope.report)
}

/// What `backup`, `backup-postgres` and `backup-mariadb` report on success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    /// Id of the snapshot written.
    pub snapshot_id: String,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes of chunks new to the repository.
    pub bytes_new: u64,
    /// Bytes added to the storage group.
    pub bytes_stored: u64,
    /// Files or streams backed up.
    pub files: u64,
    /// Seconds the backup took.
    pub duration_seconds: f64,
    /// Targets of a `Mirror` group that missed some of this backup's files (down or
    /// failing): the snapshot is complete on the others, and these need a resync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets_behind: Vec<String>,
    /// Why Hort's catalog could not be stored after the backup (the snapshot is saved; the
    /// catalog that disaster recovery reads lacks it until a later backup stores one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_error: Option<String>,
}

impl Report for BackupReport {
    const COMMAND: &'static str = "backup";
}

/// What `restore`, `restore-postgres` and `restore-mariadb` report on success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot_id: String,
    /// Bytes written to the target (database restores: bytes of the dumps read).
    pub bytes_restored: u64,
    /// Files restored (database restores: streams read).
    pub files: u64,
    /// Existing files and links the overwrite policy kept as they were (volume restores).
    #[serde(default)]
    pub skipped: u64,
    /// Seconds the restore took.
    pub duration_seconds: f64,
    /// Rows per restored table, counted in the target after the restore (PostgreSQL tables
    /// schema-qualified: `db.public.orders`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub row_counts: BTreeMap<String, u64>,
}

impl Report for RestoreReport {
    const COMMAND: &'static str = "restore";
}

impl RestoreReport {
    /// The termination message, with as many row counts as fit into [`MESSAGE_LIMIT`] (in
    /// table order), and how many of them it holds.
    pub fn encode_within_limit(&self) -> (String, usize) {
        let mut fitted = RestoreReport {
            row_counts: BTreeMap::new(),
            ..self.clone()
        };
        // `"rowCounts":{}` and its comma.
        let mut room = MESSAGE_LIMIT.saturating_sub(encode(&fitted).len() + 15);
        for (table, rows) in &self.row_counts {
            // `"table":rows,` (the last entry needs no comma, which leaves a byte to spare).
            let entry = serde_json::to_string(table).map_or(usize::MAX, |t| t.len()) + rows.to_string().len() + 2;
            if entry > room {
                break;
            }
            room -= entry;
            fitted.row_counts.insert(table.clone(), *rows);
        }
        (encode(&fitted), fitted.row_counts.len())
    }
}

/// What `check` reports: the repository, and one entry per location of
/// [`crate::env::REPOSITORY`], in target order. Written also when the repository could not be
/// opened or created (then without `repository_id`, with `error`, and a non-zero exit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// Id of the repository the group holds; absent when it could not be opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<String>,
    /// Whether this check created the repository.
    #[serde(default)]
    pub created: bool,
    /// Per-target findings, in target order.
    pub targets: Vec<TargetReport>,
    /// Why the repository could not be opened or created, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What `--rotate-key` did, when it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_rotation: Option<KeyRotationReport>,
    /// The repository's snapshots, when `--snapshots` asked and the repository opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<SnapshotCount>,
}

/// How many snapshots a repository holds, and its newest (`check --snapshots`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCount {
    /// Snapshots in the repository.
    pub count: u64,
    /// Id (hex) of the snapshot whose backup started last; none in an empty repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_id: Option<String>,
    /// When that backup started (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_time: Option<String>,
}

/// The outcome of a check's key rotation (`--rotate-key`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotationReport {
    /// The key file added for the repository password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<String>,
    /// The previous password's key file, removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
    /// The repository password opens the repository and the previous one opens nothing.
    pub done: bool,
    /// Why the rotation did not finish (or could not be done), when `done` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report for CheckReport {
    const COMMAND: &'static str = "check";
}

/// The agent's findings for one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetReport {
    /// The target answered (a listing worked).
    pub reachable: bool,
    /// A probe object could be written, read back and deleted.
    pub writable: bool,
    /// Bytes of the repository's files: a directory's, walked; an S3 target's, the sizes the
    /// listing gives under its prefix (the whole bucket without one), current versions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_used: Option<u64>,
    /// Free bytes of the target's file system (directory targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_free: Option<u64>,
    /// With `check --resync`: files the other targets hold that this one still lacks
    /// after the copy (0: level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_files: Option<u64>,
    /// S3 targets: whether the bucket has Object Lock enabled (`None`: not S3, or the
    /// server does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock_enabled: Option<bool>,
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `forget` reports on success (not with `--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForgetReport {
    /// Snapshots kept by the rules.
    pub snapshots_kept: u32,
    /// Snapshots removed.
    pub snapshots_removed: u32,
}

impl Report for ForgetReport {
    const COMMAND: &'static str = "forget";
}

/// What a verification reports (`verify-restore`, `verify-restore-postgres`,
/// `verify-restore-mariadb`, `verify`), also when a check failed (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationReport {
    /// The snapshot verified (none for the repository's `verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Whether every check passed.
    pub ok: bool,
    /// Seconds the restore itself took: the measured recovery time (0 for `verify`).
    pub restore_seconds: f64,
    /// Seconds the checks took after the restore.
    pub check_seconds: f64,
    /// What was checked, one human line each (e.g. `database shop: 4 tables, row counts
    /// match the backup`, `assertion balance (shop): true`, `packs: 37 of 370 read (10%)`).
    pub checked: Vec<String>,
    /// What failed, in the order found; cut to fit the message (see [`Self::failures_total`]).
    pub failures: Vec<VerificationFailure>,
    /// How many failures were found, also those cut from [`Self::failures`].
    pub failures_total: u64,
    /// Files compared (volume snapshots).
    pub files: u64,
    /// Bytes of the files compared (volume snapshots) or of the dumps restored (databases).
    pub bytes: u64,
    /// Tables checked (database snapshots).
    pub tables: u64,
    /// What the repository's `verify` read (none for the other verifications, and from an
    /// agent older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packs: Option<PacksRead>,
}

/// What the repository's `verify` walked and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PacksRead {
    /// Snapshots walked (their trees and blobs checked against the index).
    pub snapshots: u64,
    /// Packs the repository stores.
    pub stored: u64,
    /// Packs read, decrypted and hashed.
    pub read: u64,
    /// Bytes of the packs read and found intact.
    pub bytes_read: u64,
}

/// One failed check of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationFailure {
    /// What failed: a file path, a table, an assertion's name, a pack id.
    pub subject: String,
    /// How it failed.
    pub detail: String,
}

impl Report for VerificationReport {
    const COMMAND: &'static str = "verify";
}

/// Longest subject or detail of a failure in a termination message, in bytes.
const FAILURE_TEXT_LIMIT: usize = 300;

/// `text` cut to at most `limit` bytes at a character boundary, marked with `…` when cut.
fn shortened(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl VerificationReport {
    /// The termination message, within [`MESSAGE_LIMIT`]: each failure's subject and detail
    /// cut to 300 bytes, then failures dropped from the end, then checked lines, as needed.
    /// [`Self::failures_total`] keeps the true count.
    pub fn encode_within_limit(&self) -> String {
        let mut fitted = self.clone();
        for failure in &mut fitted.failures {
            failure.subject = shortened(&failure.subject, FAILURE_TEXT_LIMIT);
            failure.detail = shortened(&failure.detail, FAILURE_TEXT_LIMIT);
        }
        let failures = std::mem::take(&mut fitted.failures);
        let checked = std::mem::take(&mut fitted.checked);
        // The longest prefix of `items` that fits, found by bisection (the message grows with it).
        fn longest_fit<T: Clone>(
            report: &mut VerificationReport,
            items: &[T],
            set: fn(&mut VerificationReport, Vec<T>),
        ) -> usize {
            let (mut fits, mut too_many) = (0, items.len() + 1);
            while too_many - fits > 1 {
                let mid = (fits + too_many) / 2;
                set(report, items[..mid].to_vec());
                if encode(report).len() <= MESSAGE_LIMIT {
                    fits = mid;
                } else {
                    too_many = mid;
                }
            }
            set(report, items[..fits].to_vec());
            fits
        }
        let kept = longest_fit(&mut fitted, &failures, |r, f| r.failures = f);
        if kept == failures.len() {
            longest_fit(&mut fitted, &checked, |r, c| r.checked = c);
        }
        encode(&fitted)
    }
}

/// The kind of a JSON line on the agent's stdout that the operator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    /// A [`ProgressLine`].
    Progress,
}

/// One progress line, printed about once a second while a backup or restore runs (JSON, one
/// object per line, snake_case keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressLine {
    /// Always [`LineKind::Progress`] (`"type": "progress"`).
    #[serde(rename = "type")]
    pub kind: LineKind,
    /// `backup` or `restore`.
    pub operation: String,
    /// Seconds since the operation started.
    pub elapsed_secs: f64,
    /// Files (or streams) done.
    pub files: u64,
    /// Bytes of content done.
    pub bytes: u64,
    /// Bytes of content in all, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Plaintext bytes of new blobs.
    pub new_bytes: u64,
    /// Entries that failed.
    pub errors: u64,
    /// Bytes per second since the start.
    pub bytes_per_sec: f64,
}

impl ProgressLine {
    /// Percent done, when the total is known.
    pub fn percent(&self) -> Option<u8> {
        self.bytes_total
            .filter(|total| *total > 0)
            .map(|total| (self.bytes.saturating_mul(100) / total).min(100) as u8)
    }

    /// The newest progress line in `log` (the tail of the agent's output, which also holds
    /// other lines).
    pub fn newest_in(log: &str) -> Option<ProgressLine> {
        log.lines()
            .rev()
            .find_map(|line| serde_json::from_str::<ProgressLine>(line.trim()).ok())
    }
}

/// What `snapshots --json` prints on stdout: the repository's snapshots, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotList {
    /// One entry per snapshot (those carrying every tag asked for).
    pub snapshots: Vec<SnapshotSummary>,
}

impl Report for SnapshotList {
    const COMMAND: &'static str = "snapshots";
}

/// One snapshot in a [`SnapshotList`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSummary {
    /// Its id (hex).
    pub id: String,
    /// When the backup started (RFC 3339, UTC).
    pub time: String,
    /// The host name recorded (for volumes: `namespace/claim`).
    pub hostname: String,
    /// The directory backed up; unset for a snapshot of streams (database dumps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The streams of a database backup, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<ListedStream>,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Bytes of content it holds (files and streams).
    pub bytes: u64,
    /// Files it holds (tree snapshots).
    pub files: u64,
}

/// One stream of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedStream {
    /// Its name, e.g. `postgres/db/shop.dump`.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
}

/// What `ls --json` prints on stdout: the entries of one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    /// The snapshot listed (full id).
    pub snapshot_id: String,
    /// Its entries in depth-first order (directories before what they hold), or its streams.
    pub entries: Vec<ListedEntry>,
    /// The tables of a database backup with the rows each held when it was dumped (from the
    /// backup's manifest); empty for files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<ListedTable>,
}

/// One table of a database backup, as its manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedTable {
    /// The database.
    pub database: String,
    /// The table, `schema.name` for PostgreSQL.
    pub table: String,
    /// Rows in the dump.
    pub rows: u64,
}

impl Report for Listing {
    const COMMAND: &'static str = "ls";
}

/// The kind of a listed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named stream (a database dump).
    Stream,
    /// A pipe, device or socket.
    Other,
}

/// One entry of a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedEntry {
    /// Path below the snapshot root (`/`-separated, no leading `/`), or the stream's name.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (files and streams; 0 otherwise).
    pub size: u64,
    /// Permission bits, octal (e.g. `644`); empty for streams.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Modification time (RFC 3339, UTC); unset for streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<String>,
    /// Target of a symbolic link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A digest of a file's content (of its chunks' ids, so no data is read): equal digests
    /// mean equal bytes, within one repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restore(row_counts: BTreeMap<String, u64>) -> RestoreReport {
        RestoreReport {
            snapshot_id: "ab".repeat(32),
            bytes_restored: 1,
            files: 2,
            skipped: 0,
            duration_seconds: 0.5,
            row_counts,
        }
    }

    #[test]
    fn reports_round_trip_and_carry_the_version() {
        let report = BackupReport {
            snapshot_id: "ab12".into(),
            bytes_read: 3000,
            bytes_new: 1500,
            bytes_stored: 1000,
            files: 7,
            duration_seconds: 1.5,
            targets_behind: vec!["s3://backups/hort".into()],
            catalog_error: None,
        };
        let message = encode(&report);
        assert!(message.contains("\"protocolVersion\":1"), "{message}");
        assert!(message.contains("\"snapshotId\":\"ab12\""), "{message}");
        assert_eq!(decode::<BackupReport>(&message), Ok(report));
        let check = CheckReport {
            repository_id: None,
            created: false,
            targets: vec![TargetReport {
                reachable: true,
                error: Some("denied".into()),
                ..TargetReport::default()
            }],
            error: Some("wrong password".into()),
            key_rotation: None,
            snapshots: None,
        };
        assert_eq!(decode::<CheckReport>(&encode(&check)), Ok(check.clone()));
        let counted = CheckReport {
            repository_id: Some("cd34".into()),
            error: None,
            snapshots: Some(SnapshotCount {
                count: 2,
                newest_id: Some("ef56".into()),
                newest_time: Some("2026-12-01T02:00:00Z".into()),
            }),
            ..check
        };
        assert_eq!(decode::<CheckReport>(&encode(&counted)), Ok(counted));
    }

    #[test]
    fn other_versions_and_other_text_are_refused() {
        let old = r#"{"snapshotsKept": 1, "snapshotsRemoved": 2}"#;
        let err = decode::<ForgetReport>(old).unwrap_err();
        assert_eq!(
            err,
            ReportError::Version {
                command: "forget",
                found: 0
            }
        );
        assert!(err.to_string().contains("agent.image"), "{err}");
        let err = decode::<ForgetReport>("killed").unwrap_err().to_string();
        assert!(err.contains("forget report is not valid"), "{err}");
        let wrong_kind = encode(&ForgetReport {
            snapshots_kept: 1,
            snapshots_removed: 0,
        });
        assert!(decode::<BackupReport>(&wrong_kind).is_err());
    }

    #[test]
    fn row_counts_are_cut_to_the_message_limit() {
        let few = BTreeMap::from([("shop.public.orders".to_owned(), 42)]);
        let (message, n) = restore(few.clone()).encode_within_limit();
        assert_eq!(n, 1);
        assert_eq!(decode::<RestoreReport>(&message).unwrap().row_counts, few);
        let many: BTreeMap<String, u64> = (0..1000)
            .map(|i| (format!("shop.public.table_{i:04}"), i * 1000))
            .collect();
        let (message, n) = restore(many).encode_within_limit();
        assert!(n > 50 && n < 1000, "{n}");
        assert!(
            message.len() <= MESSAGE_LIMIT && message.len() > MESSAGE_LIMIT - 40,
            "{}",
            message.len()
        );
        assert_eq!(decode::<RestoreReport>(&message).unwrap().row_counts.len(), n);
    }

    fn verification(failures: usize, checked: usize) -> VerificationReport {
        VerificationReport {
            snapshot_id: Some("cd".repeat(32)),
            ok: failures == 0,
            restore_seconds: 12.5,
            check_seconds: 3.25,
            checked: (0..checked)
                .map(|i| format!("database db_{i}: 4 tables, row counts match the backup"))
                .collect(),
            failures: (0..failures)
                .map(|i| VerificationFailure {
                    subject: format!("/data/dir/file_{i:05}.bin"),
                    detail: "content differs from the snapshot (chunk 3 of 7)".into(),
                })
                .collect(),
            failures_total: failures as u64,
            files: 1204,
            bytes: 3 << 30,
            tables: 4,
            packs: None,
        }
    }

    #[test]
    fn verification_reports_round_trip_and_fit_the_message() {
        let small = verification(2, 3);
        let message = small.encode_within_limit();
        assert!(message.contains("\"restoreSeconds\":12.5"), "{message}");
        assert!(message.contains("\"failuresTotal\":2"), "{message}");
        assert_eq!(decode::<VerificationReport>(&message), Ok(small.clone()));
        assert!(
            !encode(&small).contains("packs"),
            "only the repository's verify reports packs"
        );
        assert_eq!(decode::<VerificationReport>(&encode(&small)), Ok(small));
        let repository = VerificationReport {
            snapshot_id: None,
            packs: Some(PacksRead {
                snapshots: 12,
                stored: 4120,
                read: 412,
                bytes_read: 7 << 30,
            }),
            ..verification(0, 1)
        };
        let message = encode(&repository);
        assert!(!message.contains("snapshotId"));
        assert!(
            message.contains(r#""packs":{"snapshots":12,"stored":4120,"read":412,"bytesRead":7516192768}"#),
            "{message}"
        );
        assert_eq!(decode::<VerificationReport>(&message), Ok(repository.clone()));
        assert_eq!(
            decode::<VerificationReport>(&repository.encode_within_limit()),
            Ok(repository)
        );

        // Thousands of failures: the first ones stay, the count stays true, checked lines go.
        let many = verification(5000, 40);
        let message = many.encode_within_limit();
        assert!(message.len() <= MESSAGE_LIMIT, "{}", message.len());
        let fitted = decode::<VerificationReport>(&message).unwrap();
        assert_eq!(fitted.failures_total, 5000);
        assert!(!fitted.ok);
        assert!(
            fitted.failures.len() > 20 && fitted.failures.len() < 5000,
            "{}",
            fitted.failures.len()
        );
        assert_eq!(fitted.failures[..], many.failures[..fitted.failures.len()]);
        assert!(fitted.checked.is_empty());
        assert!(message.len() > MESSAGE_LIMIT - 150, "{}", message.len());

        // Many checked lines and no failure: the checked lines are cut instead.
        let fitted = decode::<VerificationReport>(&verification(0, 500).encode_within_limit()).unwrap();
        assert!(
            fitted.checked.len() > 10 && fitted.checked.len() < 500,
            "{}",
            fitted.checked.len()
        );

        // One enormous failure (an SQL error) is shortened, not dropped.
        let mut huge = verification(1, 1);
        huge.failures[0].detail = "é".repeat(10_000);
        let fitted = decode::<VerificationReport>(&huge.encode_within_limit()).unwrap();
        assert_eq!(fitted.failures.len(), 1);
        assert!(fitted.failures[0].detail.len() <= 300 && fitted.failures[0].detail.ends_with('…'));
        assert_eq!(fitted.checked.len(), 1);
    }

    #[test]
    fn progress_is_the_newest_progress_line() {
        let line = |bytes: u64, total: Option<u64>| {
            serde_json::to_string(&ProgressLine {
                kind: LineKind::Progress,
                operation: "backup".into(),
                elapsed_secs: 1.0,
                files: 1,
                bytes,
                bytes_total: total,
                new_bytes: 0,
                errors: 0,
                bytes_per_sec: 1.0,
            })
            .unwrap()
        };
        let log = format!(
            "starting\n{}\n{}\n{{\"type\":\"summary\",\"bytes\":1}}\na warning\n",
            line(100, Some(400)),
            line(300, Some(400))
        );
        let newest = ProgressLine::newest_in(&log).unwrap();
        assert_eq!((newest.bytes, newest.percent()), (300, Some(75)));
        assert!(line(5, None).contains("\"type\":\"progress\""));
        assert!(!line(5, None).contains("bytes_total"));
        assert_eq!(ProgressLine::newest_in(&line(5, None)).unwrap().percent(), None);
        assert!(ProgressLine::newest_in("no json here").is_none());
    }

    #[test]
    fn listings_round_trip_with_the_version() {
        let list = SnapshotList {
            snapshots: vec![SnapshotSummary {
                id: "ab".repeat(32),
                time: "2026-11-30T02:30:00Z".into(),
                hostname: "shop/data".into(),
                path: None,
                streams: vec![ListedStream {
                    name: "postgres/shop.dump".into(),
                    size: 42,
                }],
                tags: vec!["nightly".into()],
                bytes: 42,
                files: 0,
            }],
        };
        let message = encode(&list);
        assert!(message.contains("\"protocolVersion\":1"), "{message}");
        assert_eq!(decode::<SnapshotList>(&message), Ok(list));
        let listing = Listing {
            snapshot_id: "cd".repeat(32),
            entries: vec![ListedEntry {
                path: "media/a.jpg".into(),
                kind: EntryKind::File,
                size: 7,
                mode: "644".into(),
                mtime: Some("2026-11-30T02:30:00Z".into()),
                target: None,
                content: Some("0f".repeat(16)),
            }],
            tables: vec![ListedTable {
                database: "shop".into(),
                table: "public.orders".into(),
                rows: 1200,
            }],
        };
        let message = encode(&listing);
        assert!(message.contains("\"kind\":\"file\""), "{message}");
        assert_eq!(decode::<Listing>(&message), Ok(listing));
    }
}
