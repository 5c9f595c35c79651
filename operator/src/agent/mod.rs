//! Agent pods: how the operator runs `hort-agent` and reads what it reports.
//!
//! The contract itself (environment, commands, locations, reports, exit codes) is the
//! `hort-protocol` crate; this module puts it into pods:
//! - [`pod`]: the pure pod spec (repository access, security, overrides);
//! - [`outcome`]: the pure reading of a pod's state and of the agent's report;
//! - [`api`]: the API calls that create, list and delete agent pods;
//! - [`browse`] and [`browse_run`]: the short-lived pod that reads a repository for the
//!   plugin and the overview page, and running commands in it with the user's own client;
//! - per job, the command and what its report becomes in status: [`check`] (StorageGroup),
//!   [`backup`] (BackupJob), [`restore`] (RestoreRequest), [`retention`] (Schedule),
//!   [`verify`] (Verification of a snapshot), [`verify_repository`] (Verification of the
//!   repository), and [`verify_command`], the user's command over a volume verification's
//!   restored files.

pub mod api;
pub mod backup;
pub mod browse;
pub mod browse_run;
pub mod check;
pub mod outcome;
pub mod pod;
pub mod restore;
pub mod retention;
pub mod verify;
pub mod verify_command;
pub mod verify_repository;

use hort_protocol::AgentCommand;

/// What an agent pod does; the value of its [`ROLE_LABEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Checks a StorageGroup's targets and initialises its repository.
    Check,
    /// Backs up a BackupJob's source.
    Backup,
    /// Restores for a RestoreRequest.
    Restore,
    /// Applies a Schedule's retention.
    Prune,
    /// Restores a snapshot into scratch space and checks it, for a Verification.
    Verify,
    /// Reads the repository for `kubectl hort` (snapshots, ls, cat) and the overview page's
    /// snapshot browser, started with the user's own rights.
    Browse,
}

/// Label on every agent pod: its [`Role`].
pub const ROLE_LABEL: &str = "hort.dev/agent-role";

impl Role {
    /// The role of a pod that runs `command`.
    pub fn of(command: &AgentCommand) -> Role {
        match command {
            AgentCommand::Check { .. } => Role::Check,
            AgentCommand::Backup { .. } | AgentCommand::BackupDatabase { .. } => Role::Backup,
            AgentCommand::Restore { .. } | AgentCommand::RestoreDatabase { .. } => Role::Restore,
            AgentCommand::Forget { .. } => Role::Prune,
            AgentCommand::VerifyRestore { .. }
            | AgentCommand::VerifyRestoreDatabase { .. }
            | AgentCommand::Verify { .. } => Role::Verify,
            AgentCommand::Snapshots { .. }
            | AgentCommand::Ls { .. }
            | AgentCommand::Cat { .. }
            | AgentCommand::CatalogShow { .. } => Role::Browse,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Check => "check",
            Role::Backup => "backup",
            Role::Restore => "restore",
            Role::Prune => "prune",
            Role::Verify => "verify",
            Role::Browse => "browse",
        }
    }
}
