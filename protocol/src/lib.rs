//! The contract between Hort's operator and its agent, in one place both compile against.
//!
//! The operator never moves backup data: it starts `hort-agent` in pods and reads what the
//! agent reports. Everything that crosses that boundary is typed here, so that a renamed flag
//! or report field fails the build or a unit test instead of an end-to-end run:
//! - [`env`]: the environment variables an agent pod gets;
//! - [`bandwidth`]: the rates of bandwidth limits;
//! - [`catalog`]: Hort's own catalog, which the agent stores after each backup;
//! - [`location`]: the repository locations in `HORT_REPOSITORY`;
//! - [`command`]: the commands the operator runs, rendered to the agent's arguments;
//! - [`report`]: the reports the agent leaves in its termination message, and its progress lines;
//! - [`exit`]: the agent's exit codes;
//! - [`period`]: the calendar periods of retention rules;
//! - [`tenant`]: a namespace's repository inside a storage group shared by many;
//! - [`units`]: how sizes are shown to people;
//! - [`PROTOCOL_VERSION`]: checked by both sides.
//!
//! This crate has no Kubernetes dependency: it is what an agent binary and an operator binary
//! of the same release agree on.

pub mod bandwidth;
pub mod catalog;
pub mod command;
pub mod env;
pub mod exit;
pub mod location;
pub mod owner;
pub mod period;
pub mod report;
pub mod tenant;
pub mod units;

pub use bandwidth::BytesPerSecond;
pub use catalog::{Catalog, CatalogBackup, CatalogList, CatalogObject, StoredCatalog};
pub use command::{
    AgentCommand, DatabaseKind, DatabaseMapping, DatabaseTls, Keep, Overwrite, ReadData, SqlAssertion, Strategy,
    TlsMode,
};
pub use exit::ExitCode;
pub use location::{Location, LockMode, ObjectLock, S3Location, StoreLocation};
pub use owner::RepositoryOwner;
pub use period::Period;
pub use report::{
    BackupReport, CheckReport, EntryKind, ForgetReport, KeyRotationReport, ListedEntry, ListedStream, ListedTable,
    Listing, PacksRead, ProgressLine, RestoreReport, SnapshotCount, SnapshotList, SnapshotSummary, TargetReport,
    VerificationFailure, VerificationReport,
};

/// Version of this contract. The operator passes it to every agent pod
/// ([`env::PROTOCOL_VERSION`]) and the agent refuses to run under another one
/// ([`ExitCode::ProtocolMismatch`]); every report carries it and the operator refuses reports
/// of another version. Raise it with any change that an agent or operator of the previous
/// release would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// An agent started under another protocol version than its own; the message says which
/// image to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the operator speaks agent protocol version {asked:?}, this agent speaks {PROTOCOL_VERSION}: \
     run the hort-agent image of the operator's release (chart value agent.image)"
)]
pub struct VersionMismatch {
    /// The version asked for, as given.
    pub asked: String,
}

/// Checks the version the operator asked for (the value of [`env::PROTOCOL_VERSION`]) against
/// [`PROTOCOL_VERSION`].
pub fn check_version(asked: &str) -> Result<(), VersionMismatch> {
    match asked.trim().parse::<u32>() {
        Ok(PROTOCOL_VERSION) => Ok(()),
        _ => Err(VersionMismatch {
            asked: asked.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_version_is_accepted() {
        assert!(check_version(&PROTOCOL_VERSION.to_string()).is_ok());
        assert!(check_version(" 1\n").is_ok(), "white space around it is ignored");
        let err = check_version("999").unwrap_err();
        assert_eq!(err, VersionMismatch { asked: "999".into() });
        assert_eq!(
            err.to_string(),
            "the operator speaks agent protocol version \"999\", this agent speaks 1: \
             run the hort-agent image of the operator's release (chart value agent.image)"
        );
        assert_eq!(check_version("one"), Err(VersionMismatch { asked: "one".into() }));
    }
}
