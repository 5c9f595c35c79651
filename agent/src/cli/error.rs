//! A failed command, and the exit code (`hort_protocol::ExitCode`) it ends the agent with,
//! derived from the engine's [`ErrorKind`] of the failure.

use hort_protocol::ExitCode;

use super::tenant::TenantSetupError;
use crate::database::DatabaseError;
use hort_engine::archiver::BackupError;
use hort_engine::backend::BackendError;
use hort_engine::error_kind::ErrorKind;
use hort_engine::repair::RepairError;
use hort_engine::repository::RepositoryError;
use hort_engine::restorer::RestoreError;

/// A failed command and its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Repository-level failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Backend configuration or access failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Backup failure.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// Restore failure.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// `repair snapshots` failed.
    #[error(transparent)]
    Repair(#[from] RepairError),
    /// A database backup or restore failed.
    #[error("{context}: {source}")]
    Database {
        /// What was being done (server, snapshot).
        context: String,
        /// Why it failed.
        source: DatabaseError,
    },
    /// A tenant's repository cannot be opened as asked (`HORT_TENANT`).
    #[error(transparent)]
    Tenant(#[from] TenantSetupError),
    /// A usage problem found after parsing.
    #[error("{0}")]
    Usage(String),
    /// The command ran to its end but did not do everything (entries it could not read,
    /// damage it found).
    #[error("{message}")]
    Partial {
        /// Summary.
        message: String,
        /// What it means for the caller.
        exit: ExitCode,
    },
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        let of_kind = |kind: ErrorKind| match kind {
            ErrorKind::NoRepository => ExitCode::NoRepository,
            ErrorKind::WrongPassword => ExitCode::WrongPassword,
            ErrorKind::Usage => ExitCode::Usage,
            ErrorKind::Corrupt => ExitCode::Damaged,
            ErrorKind::Other => ExitCode::Error,
        };
        match self {
            CliError::Repository(e) => of_kind(e.kind()),
            CliError::Backup(e) => of_kind(e.kind()),
            CliError::Restore(e) => of_kind(e.kind()),
            CliError::Repair(e) => of_kind(e.kind()),
            CliError::Partial { exit, .. } => *exit,
            CliError::Usage(_) | CliError::Tenant(_) => ExitCode::Usage,
            CliError::Backend(_) | CliError::Database { .. } => ExitCode::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use hort_engine::backup_lock::LockLost;

    use super::*;

    #[test]
    fn exit_codes_follow_the_kind_of_the_engines_error() {
        let corrupt = || RepositoryError::Corrupt {
            what: "config".into(),
            reason: "damaged".into(),
        };
        let lost = LockLost {
            gap_seconds: 1300,
            limit_seconds: 1200,
        };
        let cases = [
            (CliError::Repair(RepairError::Repository(corrupt())), ExitCode::Damaged),
            (
                CliError::Repair(RepairError::Repository(RepositoryError::WrongPassword)),
                ExitCode::WrongPassword,
            ),
            (CliError::Repair(RepairError::LockLost(lost.clone())), ExitCode::Error),
            (CliError::Backup(BackupError::LockLost(lost)), ExitCode::Error),
            (CliError::Backup(BackupError::Repository(corrupt())), ExitCode::Damaged),
            (CliError::Repository(corrupt()), ExitCode::Damaged),
        ];
        for (error, exit) in cases {
            assert_eq!(error.exit_code(), exit, "{error}");
        }
    }
}
