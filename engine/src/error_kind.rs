//! What kind of failure an error is, so that callers tell failures apart without matching
//! every variant of every error type (the agent derives its exit codes from it).

/// The kind of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// There is no repository at the location.
    NoRepository,
    /// The password opens no key file.
    WrongPassword,
    /// The request itself was wrong (e.g. a new password too short): the fix is the input.
    Usage,
    /// Stored data is damaged or missing.
    Corrupt,
    /// Anything else: the storage, the operating system, a source that failed.
    Other,
}
