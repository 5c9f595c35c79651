//! Resolution of the objects a Hort resource refers to (Secrets, claims, storage groups),
//! with problems reported by object name and the spec field that refers to it.

use std::fmt;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::{Api, Client};

/// A reference that does not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The referenced object does not exist.
    NotFound {
        /// Kind of the referenced object, e.g. `Secret`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The spec field that refers to it, e.g. `spec.encryption.keySecretRef`.
        field: String,
    },
    /// The referenced Secret lacks a key.
    MissingKey {
        /// Name of the Secret.
        name: String,
        /// The missing key.
        key: String,
        /// The spec field that refers to it.
        field: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotFound { kind, name, field } => write!(f, "{kind} {name:?} ({field}) not found"),
            Problem::MissingKey { name, key, field } => write!(f, "Secret {name:?} ({field}) has no key {key:?}"),
        }
    }
}

/// Joins problems into one condition message.
pub fn describe(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Looks references up in one namespace.
pub struct Resolver {
    secrets: Api<Secret>,
    claims: Api<PersistentVolumeClaim>,
}

impl Resolver {
    /// A resolver for objects in `namespace`.
    pub fn new(client: &Client, namespace: &str) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), namespace),
            claims: Api::namespaced(client.clone(), namespace),
        }
    }

    /// Checks that Secret `name` exists and holds every key of `keys`. Only key names are
    /// read; values never leave the API server's answer.
    pub async fn secret_keys(&self, name: &str, keys: &[&str], field: &str) -> kube::Result<Vec<Problem>> {
        let Some(secret) = self.secrets.get_opt(name).await? else {
            return Ok(vec![Problem::NotFound {
                kind: "Secret",
                name: name.into(),
                field: field.into(),
            }]);
        };
        let has = |key: &str| {
            secret.data.as_ref().is_some_and(|d| d.contains_key(key))
                || secret.string_data.as_ref().is_some_and(|d| d.contains_key(key))
        };
        Ok(keys
            .iter()
            .filter(|key| !has(key))
            .map(|key| Problem::MissingKey {
                name: name.into(),
                key: (*key).into(),
                field: field.into(),
            })
            .collect())
    }

    /// Checks that PersistentVolumeClaim `name` exists.
    pub async fn claim(&self, name: &str, field: &str) -> kube::Result<Vec<Problem>> {
        Ok(match self.claims.get_opt(name).await? {
            Some(_) => vec![],
            None => vec![Problem::NotFound {
                kind: "PersistentVolumeClaim",
                name: name.into(),
                field: field.into(),
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_object_and_field() {
        let problems = [
            Problem::NotFound {
                kind: "Secret",
                name: "s3-credentials".into(),
                field: "spec.targets[0].s3.credentialsSecretRef".into(),
            },
            Problem::MissingKey {
                name: "key".into(),
                key: "password".into(),
                field: "spec.encryption.keySecretRef".into(),
            },
        ];
        assert_eq!(
            describe(&problems),
            "Secret \"s3-credentials\" (spec.targets[0].s3.credentialsSecretRef) not found; \
             Secret \"key\" (spec.encryption.keySecretRef) has no key \"password\""
        );
    }
}
