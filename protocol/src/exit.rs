//! The agent's exit codes: what a failed agent pod's exit code tells the operator.

/// How `hort-agent` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Ok,
    /// Any failure not listed below (a server refused, a dump failed, storage failed).
    Error,
    /// The command line or its inputs were wrong.
    Usage,
    /// A backup finished but some entries could not be read; the snapshot lacks them.
    Incomplete,
    /// Damaged or missing data was found; a verification also ends so when any of its checks
    /// failed, after writing its report.
    Damaged,
    /// There is no repository at the location.
    NoRepository,
    /// The password opens no key file.
    WrongPassword,
    /// The operator speaks another protocol version ([`crate::check_version`]).
    ProtocolMismatch,
}

impl ExitCode {
    /// Every exit code, for tests and documentation.
    pub const ALL: [ExitCode; 8] = [
        ExitCode::Ok,
        ExitCode::Error,
        ExitCode::Usage,
        ExitCode::Incomplete,
        ExitCode::Damaged,
        ExitCode::NoRepository,
        ExitCode::WrongPassword,
        ExitCode::ProtocolMismatch,
    ];

    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Error => 1,
            ExitCode::Usage => 2,
            ExitCode::Incomplete => 3,
            ExitCode::Damaged => 4,
            ExitCode::NoRepository => 10,
            ExitCode::WrongPassword => 12,
            ExitCode::ProtocolMismatch => 13,
        }
    }

    /// The exit code of status `code`, if the agent defines it.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// What the exit code means, for status messages.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => "success",
            ExitCode::Error => "failed",
            ExitCode::Usage => "invalid arguments or inputs",
            ExitCode::Incomplete => "some entries could not be read",
            ExitCode::Damaged => "damaged or missing data in the repository",
            ExitCode::NoRepository => "no repository at the storage group's targets",
            ExitCode::WrongPassword => "the repository password opens no key",
            ExitCode::ProtocolMismatch => "the agent image does not match the operator",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        for code in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(code.code()), Some(code));
        }
        let mut numbers: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        numbers.dedup();
        assert_eq!(numbers.len(), ExitCode::ALL.len());
        assert_eq!(ExitCode::from_code(137), None);
    }
}
