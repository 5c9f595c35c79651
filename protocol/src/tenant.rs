//! A namespace's own repository inside a storage group shared with many namespaces (a
//! `ClusterStorageGroup`): where it lives in each target and the password that opens it.
//!
//! The password is derived, never stored: whoever holds the group's tenant root secret can
//! open every tenant's repository (the CLI after a disaster), and a tenant that knows its own
//! password learns nothing about the root secret or another tenant's password.

/// The directory (or S3 prefix) under each target that holds the tenants' repositories.
pub const TENANTS: &str = "tenants";

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
}

/// The path of `namespace`'s repository inside a target: `tenants/<namespace>`.
pub fn prefix(namespace: &str) -> String {
    format!("{TENANTS}/{namespace}")
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
}
