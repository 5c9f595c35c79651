//! An agent that opens a namespace's own repository inside a shared storage group directly
//! ([`env::TENANT`]): the operator's tenant checks and the CLI after a disaster. The
//! repository is where `hort-store` keeps it ([`tenant::location`] on every target) and the
//! password is derived from the group's tenant root secret ([`tenant::password`]).
//!
//! The root secret is read from [`env::TENANT_ROOT_SECRET`] or, byte for byte (a trailing
//! newline is part of it, as it is of the Secret it came from), from the file
//! [`env::TENANT_ROOT_SECRET_FILE`] names; it never appears in arguments, logs or errors.

use std::path::Path;

use hort_protocol::tenant::{self, Namespace, TenantError};
use hort_protocol::{Location, env};

/// Why a tenant's repository cannot be opened as asked; each names the variable and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TenantSetupError {
    /// [`env::TENANT`] is not a namespace name.
    #[error(
        "{var} `{0}` is not a namespace name (a DNS label: at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit)",
        var = env::TENANT
    )]
    NotANamespace(String),
    /// A password was given as well as the tenant.
    #[error(
        "{0} is set together with {tenant}: a tenant's repository is opened with the password derived from {secret} or {file}; unset {0}",
        tenant = env::TENANT,
        secret = env::TENANT_ROOT_SECRET,
        file = env::TENANT_ROOT_SECRET_FILE
    )]
    PasswordGiven(&'static str),
    /// Neither root secret variable is set.
    #[error(
        "{tenant} is set but neither {secret} nor {file} is: set one of them to the group's tenant root secret",
        tenant = env::TENANT,
        secret = env::TENANT_ROOT_SECRET,
        file = env::TENANT_ROOT_SECRET_FILE
    )]
    NoRootSecret,
    /// Both root secret variables are set.
    #[error(
        "both {secret} and {file} are set: set only one of them",
        secret = env::TENANT_ROOT_SECRET,
        file = env::TENANT_ROOT_SECRET_FILE
    )]
    TwoRootSecrets,
    /// A root secret without a tenant.
    #[error(
        "{0} is set without {tenant}: set {tenant} to the namespace whose repository to open, or unset {0}",
        tenant = env::TENANT
    )]
    RootSecretWithoutTenant(&'static str),
    /// The root secret file cannot be read.
    #[error("{var} {path}: {source}", var = env::TENANT_ROOT_SECRET_FILE)]
    RootSecretFile {
        /// The file.
        path: String,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The root secret is too short (or otherwise refused by [`tenant::password`]).
    #[error("{variable}: {source}")]
    RootSecret {
        /// The variable the secret came from.
        variable: &'static str,
        /// What is wrong with it.
        source: TenantError,
    },
    /// A location of [`env::REPOSITORY`] cannot hold a tenant's repository.
    #[error("{var} with {tenant}: {problem}", var = env::REPOSITORY, tenant = env::TENANT)]
    Location {
        /// What is wrong (names the location).
        problem: String,
    },
}

/// The namespace [`env::TENANT`] names (`tenant`), if any. Fails if a root secret (or the
/// file `root_secret_file`) is given without it.
pub(super) fn namespace(
    tenant: Option<&str>,
    root_secret_file: Option<&Path>,
) -> Result<Option<Namespace>, TenantSetupError> {
    let Some(text) = tenant else {
        if std::env::var_os(env::TENANT_ROOT_SECRET).is_some() {
            return Err(TenantSetupError::RootSecretWithoutTenant(env::TENANT_ROOT_SECRET));
        }
        if root_secret_file.is_some() {
            return Err(TenantSetupError::RootSecretWithoutTenant(env::TENANT_ROOT_SECRET_FILE));
        }
        return Ok(None);
    };
    Namespace::parse(text)
        .map(Some)
        .ok_or_else(|| TenantSetupError::NotANamespace(text.to_owned()))
}

/// The locations of `namespace`'s repository on the group's targets `repo`.
pub(super) fn locations(repo: &[String], namespace: &Namespace) -> Result<Vec<String>, TenantSetupError> {
    let problem = |problem: String| TenantSetupError::Location { problem };
    repo.iter()
        .map(|spec| {
            let target: Location = spec
                .parse()
                .map_err(|e: hort_protocol::location::LocationError| problem(e.to_string()))?;
            let inner = tenant::location(&target, namespace).map_err(|e| problem(e.to_string()))?;
            Ok(inner.to_string())
        })
        .collect()
}

/// `namespace`'s password, derived from the root secret. `password_file` is the repository
/// password file the arguments name; it, like [`env::PASSWORD`], must not be set.
pub(super) fn password(
    namespace: &Namespace,
    password_file: Option<&Path>,
    root_secret_file: Option<&Path>,
) -> Result<Vec<u8>, TenantSetupError> {
    if password_file.is_some() {
        return Err(TenantSetupError::PasswordGiven(env::PASSWORD_FILE));
    }
    if std::env::var_os(env::PASSWORD).is_some() {
        return Err(TenantSetupError::PasswordGiven(env::PASSWORD));
    }
    let (variable, secret) = match (std::env::var_os(env::TENANT_ROOT_SECRET), root_secret_file) {
        (Some(_), Some(_)) => return Err(TenantSetupError::TwoRootSecrets),
        (None, None) => return Err(TenantSetupError::NoRootSecret),
        (Some(secret), None) => (env::TENANT_ROOT_SECRET, secret.into_encoded_bytes()),
        (None, Some(file)) => {
            let secret = std::fs::read(file).map_err(|source| TenantSetupError::RootSecretFile {
                path: file.display().to_string(),
                source,
            })?;
            (env::TENANT_ROOT_SECRET_FILE, secret)
        }
    };
    let password = tenant::password(&secret, namespace.as_str())
        .map_err(|source| TenantSetupError::RootSecret { variable, source })?;
    Ok(password.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_gets_the_namespace_prefix_and_a_proxy_is_refused() {
        let team = Namespace::parse("team-a").unwrap();
        let repo = ["/srv/hort".to_owned(), "s3://bucket/k8s?region=r".to_owned()];
        assert_eq!(
            locations(&repo, &team).unwrap(),
            ["/srv/hort/tenants/team-a", "s3://bucket/k8s/tenants/team-a?region=r"]
        );
        let proxy = locations(&["hort+http://h:1/g".to_owned()], &team)
            .unwrap_err()
            .to_string();
        assert!(
            proxy.contains("HORT_REPOSITORY") && proxy.contains("hort+http://h:1/g") && proxy.contains("s3://"),
            "{proxy}"
        );
        let bad = namespace(Some("Team_A"), None).unwrap_err().to_string();
        assert!(
            bad.contains("HORT_TENANT `Team_A`") && bad.contains("DNS label"),
            "{bad}"
        );
    }
}
