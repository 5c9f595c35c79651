//! `spec.tenantKeySecretRef` (pure): the tenant root secret read from its Secret, or why it
//! cannot be used. The value never reaches a log, an Event, a status or `Debug`.

use std::fmt;

use hort_crds::cluster_storage_group::OperatorSecretKeyRef;
use hort_protocol::tenant::{self, MIN_ROOT_SECRET_BYTES};
use k8s_openapi::api::core::v1::Secret;

use crate::references::{self, Problem};

/// The field of the reference, for messages.
pub const FIELD: &str = "spec.tenantKeySecretRef";

/// The tenant root secret. `Debug` shows only its length.
pub struct RootSecret(Vec<u8>);

impl fmt::Debug for RootSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootSecret({} bytes)", self.0.len())
    }
}

impl RootSecret {
    /// The repository password of `namespace`, derived from this secret.
    pub fn password(&self, namespace: &str) -> String {
        tenant::password(&self.0, namespace).expect("the length was checked when it was read")
    }
}

/// Why the tenant root secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// The Secret is missing, not marked usable, or lacks the key.
    #[error("{0}")]
    Reference(Problem),
    /// The key holds fewer bytes than a root secret needs.
    #[error(
        "key {key:?} of Secret {name:?} ({FIELD}) holds {bytes} bytes; a tenant root secret needs at least \
         {MIN_ROOT_SECRET_BYTES}: write one from `openssl rand -hex 32` before any tenant repository exists \
         (changing it later locks every tenant out of its repository)"
    )]
    TooShort {
        /// The Secret.
        name: String,
        /// The key.
        key: String,
        /// Bytes it holds.
        bytes: usize,
    },
}

impl KeyProblem {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyProblem::Reference(Problem::NotUsable { .. }) => "ReferenceNotUsable",
            KeyProblem::Reference(Problem::MissingKey { .. }) | KeyProblem::TooShort { .. } => "TenantKeyInvalid",
            KeyProblem::Reference(_) => "ReferenceNotFound",
        }
    }
}

/// The root secret in `found`, the Secret `reference` names (`None`: there is none).
pub fn read(found: Option<&Secret>, reference: &OperatorSecretKeyRef) -> Result<RootSecret, KeyProblem> {
    let name = reference.name.clone();
    let Some(secret) = found else {
        return Err(KeyProblem::Reference(Problem::NotFound {
            kind: "Secret",
            name,
            field: FIELD.into(),
        }));
    };
    if !references::usable(&secret.metadata) {
        return Err(KeyProblem::Reference(Problem::NotUsable {
            kind: "Secret",
            name,
            field: FIELD.into(),
        }));
    }
    let Some(value) = secret.data.as_ref().and_then(|d| d.get(&reference.key)) else {
        return Err(KeyProblem::Reference(Problem::MissingKey {
            name,
            key: reference.key.clone(),
            field: FIELD.into(),
        }));
    };
    if value.0.len() < MIN_ROOT_SECRET_BYTES {
        return Err(KeyProblem::TooShort {
            name,
            key: reference.key.clone(),
            bytes: value.0.len(),
        });
    }
    Ok(RootSecret(value.0.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(usable: bool, value: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "root", "labels": {"hort.dev/usable": usable.to_string()}},
            "data": {"secret": k8s_openapi::ByteString(value.as_bytes().to_vec())}
        }))
        .unwrap()
    }

    fn reference(key: &str) -> OperatorSecretKeyRef {
        OperatorSecretKeyRef {
            name: "root".into(),
            key: key.into(),
        }
    }

    const GOOD: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_usable_long_enough_key_derives_the_tenant_passwords() {
        let root = read(Some(&secret(true, GOOD)), &reference("secret")).unwrap();
        assert_eq!(
            root.password("team-a"),
            tenant::password(GOOD.as_bytes(), "team-a").unwrap()
        );
        assert_eq!(format!("{root:?}"), "RootSecret(32 bytes)", "the value is never shown");
    }

    #[test]
    fn a_missing_unmarked_keyless_or_short_secret_is_named_with_its_field() {
        let missing = read(None, &reference("secret")).unwrap_err();
        assert_eq!(missing.reason(), "ReferenceNotFound");
        assert_eq!(
            missing.to_string(),
            "Secret \"root\" (spec.tenantKeySecretRef) not found"
        );
        let unmarked = read(Some(&secret(false, GOOD)), &reference("secret")).unwrap_err();
        assert_eq!(unmarked.reason(), "ReferenceNotUsable");
        assert!(
            unmarked
                .to_string()
                .contains("kubectl label secret root hort.dev/usable=true"),
            "{unmarked}"
        );
        let keyless = read(Some(&secret(true, GOOD)), &reference("other")).unwrap_err();
        assert_eq!(
            keyless.to_string(),
            "Secret \"root\" (spec.tenantKeySecretRef) has no key \"other\""
        );
        let short = read(Some(&secret(true, "short")), &reference("secret")).unwrap_err();
        assert_eq!(short.reason(), "TenantKeyInvalid");
        assert!(
            short
                .to_string()
                .starts_with("key \"secret\" of Secret \"root\" (spec.tenantKeySecretRef) holds 5 bytes; a tenant root secret needs at least 32"),
            "{short}"
        );
        assert!(!short.to_string().contains("short\""), "the value is not shown");
    }
}
