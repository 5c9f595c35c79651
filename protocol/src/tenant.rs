//! A namespace's own repository inside a storage group shared with many namespaces (a
//! `ClusterStorageGroup`): where it lives in each target and the password that opens it.
//!
//! The password is derived, never stored: whoever holds the group's tenant root secret can
//! open every tenant's repository (the CLI after a disaster), and a tenant that knows its own
//! password learns nothing about the root secret or another tenant's password.
//!
//! [`location`] is the one place that says where a namespace's repository is inside a target:
//! the proxy `hort-store` and an agent with [`crate::env::TENANT`] both call it, so they
//! cannot disagree.

use std::fmt;

use crate::location::Location;

/// The directory (or S3 prefix) under each target that holds the tenants' repositories.
pub const TENANTS: &str = "tenants";

/// The audience of the ServiceAccount tokens agent pods present to the proxy `hort-store`.
pub const STORE_AUDIENCE: &str = "hort-store";

/// Fewest bytes a tenant root secret may have.
pub const MIN_ROOT_SECRET_BYTES: usize = 32;

/// Context string of the key derived from a root secret (BLAKE3 `derive_key`).
const ROOT_KEY_CONTEXT: &str = "hort.dev 2026-12-01 tenant root key";
/// What a tenant password is the keyed hash of, before the namespace's name.
const PASSWORD_LABEL: &[u8] = b"hort tenant password v1\0";

/// Why a tenant password cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// The root secret is too short to protect every tenant.
    #[error(
        "the tenant root secret has {0} bytes; it needs at least {MIN_ROOT_SECRET_BYTES}, e.g. from `openssl rand -hex 32`"
    )]
    RootSecretTooShort(usize),
    /// A `hort+http://` target: the proxy already serves each namespace its own repository.
    #[error(
        "`{0}` is a hort-store location, which already serves each namespace its own repository; give the group's own targets (directories or s3://)"
    )]
    ThroughStore(String),
}

/// A Kubernetes namespace name: a DNS label (lowercase letters, digits and `-`, at most 63,
/// starting and ending with a letter or digit).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// `text` if it is a namespace name.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let valid = !text.is_empty()
            && text.len() <= 63
            && text.chars().all(ok)
            && !text.starts_with('-')
            && !text.ends_with('-');
        valid.then(|| Self(text.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where this namespace's repository lives, relative to a target: [`prefix`].
    pub fn prefix(&self) -> String {
        prefix(&self.0)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The path of `namespace`'s repository inside a target: `tenants/<namespace>`.
pub fn prefix(namespace: &str) -> String {
    format!("{TENANTS}/{namespace}")
}

/// Where `namespace`'s repository lives in `target`: [`prefix`] appended to a directory or
/// to an S3 prefix. A `hort+http://` target is refused.
pub fn location(target: &Location, namespace: &Namespace) -> Result<Location, TenantError> {
    let inner = namespace.prefix();
    Ok(match target {
        Location::Path(path) => Location::Path(format!("{}/{inner}", path.trim_end_matches('/'))),
        Location::S3(s3) => {
            let mut s3 = s3.clone();
            s3.prefix = match s3.prefix.as_str() {
                "" => inner,
                outer => format!("{outer}/{inner}"),
            };
            Location::S3(s3)
        }
        Location::Store(_) => return Err(TenantError::ThroughStore(target.to_string())),
    })
}

/// The repository password of `namespace`: 64 hex digits of the keyed BLAKE3 hash of
/// `"hort tenant password v1\0" || namespace` under a key derived from `root_secret`.
pub fn password(root_secret: &[u8], namespace: &str) -> Result<String, TenantError> {
    if root_secret.len() < MIN_ROOT_SECRET_BYTES {
        return Err(TenantError::RootSecretTooShort(root_secret.len()));
    }
    let key = blake3::derive_key(ROOT_KEY_CONTEXT, root_secret);
    let mut hasher = blake3::Hasher::new_keyed(&key);
    hasher.update(PASSWORD_LABEL);
    hasher.update(namespace.as_bytes());
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn each_namespace_gets_its_own_stable_password() {
        let a = password(ROOT, "team-a").unwrap();
        assert_eq!(a, password(ROOT, "team-a").unwrap(), "derived anew, the same password");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, password(ROOT, "team-b").unwrap());
        assert_ne!(a, password(b"another root secret of 32+ bytes!", "team-a").unwrap());
        // Pinned: a change of the derivation would lock every tenant out of its repository.
        assert_eq!(a, "875e9911e2bd6a58901a121e95cefe15f8b6e3bc8918ae428fab837775379fe6");
    }

    #[test]
    fn a_short_root_secret_is_refused() {
        assert_eq!(password(b"short", "team-a"), Err(TenantError::RootSecretTooShort(5)));
        assert_eq!(prefix("team-a"), "tenants/team-a");
    }

    #[test]
    fn namespaces_are_dns_labels() {
        for good in ["a", "team-a", "x1", &"a".repeat(63)] {
            assert!(Namespace::parse(good).is_some(), "{good}");
        }
        for bad in ["", "..", "a/b", "Team", "-a", "a-", "a.b", "tenants/x", &"a".repeat(64)] {
            assert!(Namespace::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Namespace::parse("team-a").unwrap().prefix(), "tenants/team-a");
    }

    #[test]
    fn a_namespace_lives_below_its_prefix_of_every_target() {
        let team = Namespace::parse("team-a").unwrap();
        let within = |target: &str| location(&target.parse().unwrap(), &team).map(|l| l.to_string());
        assert_eq!(within("/srv/hort/").unwrap(), "/srv/hort/tenants/team-a");
        assert_eq!(within("file:/srv/hort").unwrap(), "/srv/hort/tenants/team-a");
        assert_eq!(
            within("s3://bucket/k8s?region=eu-west-1").unwrap(),
            "s3://bucket/k8s/tenants/team-a?region=eu-west-1"
        );
        assert_eq!(within("s3://bucket").unwrap(), "s3://bucket/tenants/team-a");
        let store = within("hort+http://h:1/g").unwrap_err().to_string();
        assert!(
            store.contains("hort+http://h:1/g") && store.contains("directories or s3://"),
            "{store}"
        );
    }
}
