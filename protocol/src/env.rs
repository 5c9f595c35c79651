//! The environment of an agent pod: names set by the operator and read by the agent.
//!
//! Secrets reach the agent only through these variables (set from Secret references, never
//! by value and never as arguments).

/// One [`crate::Location`] per target of the storage group, comma-separated, in target order.
pub const REPOSITORY: &str = "HORT_REPOSITORY";
/// How the group's targets form one repository: [`crate::Strategy`] as text.
pub const STRATEGY: &str = "HORT_STRATEGY";
/// The targets' weights, comma-separated, in target order.
pub const WEIGHTS: &str = "HORT_WEIGHTS";
/// `Mirror`: how many targets must take each write, as a decimal number (default 1).
pub const MIN_HEALTHY_TARGETS: &str = "HORT_MIN_HEALTHY_TARGETS";
/// `UID:GID` that owns a directory target's files: an agent running as root hands every file
/// and directory it creates in a directory target to this user and group, so that agents
/// running as that user (Pod Security "restricted") can keep writing and deleting them. Unset,
/// or when the agent is not root: files belong to whoever creates them.
pub const REPOSITORY_OWNER: &str = "HORT_REPOSITORY_OWNER";
/// Bytes per second the agent may send to the repository, all targets together
/// ([`crate::BytesPerSecond`]); unset: no limit.
pub const LIMIT_UPLOAD: &str = "HORT_LIMIT_UPLOAD";
/// Bytes per second the agent may receive from the repository, all targets together
/// ([`crate::BytesPerSecond`]); unset: no limit.
pub const LIMIT_DOWNLOAD: &str = "HORT_LIMIT_DOWNLOAD";
/// A file holding the bearer token the agent shows `hort-store` for a `hort+https://` (or
/// loopback `hort+http://`) location (a projected ServiceAccount token; read again for every request, since the kubelet
/// replaces it before it expires).
pub const STORE_TOKEN_FILE: &str = "HORT_STORE_TOKEN_FILE";
/// A PEM file of the CA certificates that may sign `hort-store`'s certificate, for a
/// `hort+https://` location: the only roots the agent trusts for it.
pub const STORE_CA_FILE: &str = "HORT_STORE_CA_FILE";
/// A namespace whose own repository inside a shared group the agent opens
/// ([`crate::tenant`]): `tenants/<namespace>` is added to every location of [`REPOSITORY`],
/// and the password is derived from [`TENANT_ROOT_SECRET`] (or [`TENANT_ROOT_SECRET_FILE`])
/// instead of read from [`PASSWORD`]. Used by the operator's tenant repository checks and by
/// the CLI after a disaster; tenants' own pods reach their repository through `hort-store`.
pub const TENANT: &str = "HORT_TENANT";
/// The tenant root secret of a shared group (with [`TENANT`]).
pub const TENANT_ROOT_SECRET: &str = "HORT_TENANT_ROOT_SECRET";
/// A file holding the tenant root secret (the CLI's form of [`TENANT_ROOT_SECRET`]).
pub const TENANT_ROOT_SECRET_FILE: &str = "HORT_TENANT_ROOT_SECRET_FILE";
/// The repository password.
pub const PASSWORD: &str = "HORT_PASSWORD";
/// A file holding the repository password (the agent's command line; the operator uses
/// [`PASSWORD`]).
pub const PASSWORD_FILE: &str = "HORT_PASSWORD_FILE";
/// The password the repository was opened with before [`PASSWORD`] changed: a check with
/// `--rotate-key` makes [`PASSWORD`] the one password that opens it.
pub const PREVIOUS_PASSWORD: &str = "HORT_PREVIOUS_PASSWORD";
/// Directory where packs are spooled while they fill and upload.
pub const SPOOL_DIR: &str = "HORT_SPOOL_DIR";
/// The database user of a database backup or restore.
pub const DB_USER: &str = "HORT_DB_USER";
/// The database password.
pub const DB_PASSWORD: &str = "HORT_DB_PASSWORD";
/// A file holding the database password.
pub const DB_PASSWORD_FILE: &str = "HORT_DB_PASSWORD_FILE";
/// A backup pod's [`crate::Catalog`] as JSON: after a successful backup the agent stores it in
/// the repository (`crate::catalog`). It names Secrets, never holds their values.
pub const CATALOG: &str = "HORT_CATALOG";
/// How long a restore waits for packs in an archive storage class whose restore it requested,
/// e.g. `90m`; unset or `0`: it requests their restore and fails at once, naming them.
pub const ARCHIVE_WAIT: &str = "HORT_ARCHIVE_WAIT";
/// The [`crate::PROTOCOL_VERSION`] the operator speaks.
pub const PROTOCOL_VERSION: &str = "HORT_PROTOCOL_VERSION";
/// Where the agent writes its report, instead of [`TERMINATION_MESSAGE_PATH`] (for tests and
/// runs outside a pod).
pub const TERMINATION_LOG: &str = "HORT_TERMINATION_LOG";
/// Where the kubelet reads a container's termination message (its default path).
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Set to `true` in every agent pod: S3 credentials never come from instance metadata.
pub const AWS_EC2_METADATA_DISABLED: &str = "AWS_EC2_METADATA_DISABLED";
/// Suffix of a target's S3 access key id variable (see [`target_credentials`]).
pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// Suffix of a target's S3 secret access key variable (see [`target_credentials`]).
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// The prefix of the credential variables of target `index`: its keys are in
/// `<prefix>_AWS_ACCESS_KEY_ID` and `<prefix>_AWS_SECRET_ACCESS_KEY`, so that targets with
/// different credentials can form one group. Its location names the prefix
/// ([`crate::S3Location::credentials`]).
pub fn target_credentials(index: usize) -> String {
    format!("HORT_TARGET_{index}")
}

/// The variable holding `key` ([`ACCESS_KEY_ID`] or [`SECRET_ACCESS_KEY`]) for credentials
/// `prefix`.
pub fn credential_variable(prefix: &str, key: &str) -> String {
    format!("{prefix}_{key}")
}
