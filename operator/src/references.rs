//! Resolution of the objects a Hort resource refers to (Secrets, claims), with problems
//! reported by object name and the spec field that refers to it.
//!
//! Whoever may create Hort objects in a namespace must not get through Hort what their own
//! RBAC withholds: the operator uses a Secret or a claim on their behalf only when the owner of
//! that object marked it with [`USABLE_LABEL`] (see `docs/security.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hort_crds::common::{DatabaseTls, SecretRef};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::{Api, Client};

/// Label by which the owner of a Secret or claim allows Hort to use it (value `"true"`): to pass
/// the Secret's values to agent pods, or to mount the claim in them.
pub const USABLE_LABEL: &str = "hort.dev/usable";

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
    /// No claim has the labels of a claim selector.
    NoneSelected {
        /// The selector as `k=v,…`.
        selector: String,
        /// The spec field that holds it.
        field: String,
    },
    /// The referenced object exists but its owner has not marked it with [`USABLE_LABEL`].
    NotUsable {
        /// Kind of the referenced object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The spec field that refers to it.
        field: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotFound { kind, name, field } => write!(f, "{kind} {name:?} ({field}) not found"),
            Problem::NoneSelected { selector, field } => write!(
                f,
                "no PersistentVolumeClaim in the namespace has the labels {selector} ({field})"
            ),
            Problem::MissingKey { name, key, field } => write!(f, "Secret {name:?} ({field}) has no key {key:?}"),
            Problem::NotUsable { kind, name, field } => write!(
                f,
                "{kind} {name:?} ({field}) is not marked for use by Hort; its owner allows it with \
                 `kubectl label {} {name} {USABLE_LABEL}=true`",
                kind.to_lowercase()
            ),
        }
    }
}

impl Reference {
    /// A Secret that must hold `keys`.
    pub fn secret(name: &str, keys: &[&str], field: impl Into<String>) -> Self {
        Reference::Secret {
            name: name.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            field: field.into(),
        }
    }

    /// A claim.
    pub fn claim(name: &str, field: impl Into<String>) -> Self {
        Reference::Claim {
            name: name.into(),
            field: field.into(),
        }
    }
}

impl Problem {
    /// Whether waiting may resolve the problem (the object may yet be created, e.g. by a GitOps
    /// tool applying in another order); a missing key or mark needs its owner to act.
    pub fn may_resolve_itself(&self) -> bool {
        matches!(self, Problem::NotFound { .. } | Problem::NoneSelected { .. })
    }
}

/// How soon an object that waits for a missing Secret or claim looks again. The operator does
/// not watch Secrets: a watch (even of metadata) needs `list` and `watch` on every Secret in
/// its scope, and `list` returns their values. So a Secret created after the object that
/// refers to it is noticed by this requeue.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Keys a database credentials Secret must hold.
pub const DATABASE_CREDENTIAL_KEYS: [&str; 2] = ["username", "password"];

/// The Secrets of a database connection at spec path `field` (e.g. `spec.source.postgres`):
/// its credentials and, with `VerifyFull`, its CA.
pub fn database_references(credentials: &SecretRef, tls: Option<&DatabaseTls>, field: &str) -> Vec<Reference> {
    let mut references = vec![Reference::secret(
        &credentials.name,
        &DATABASE_CREDENTIAL_KEYS,
        format!("{field}.credentialsSecretRef"),
    )];
    if let Some(ca) = tls.and_then(|t| t.ca_secret_ref.as_ref()) {
        references.push(Reference::secret(
            &ca.name,
            &["ca.crt"],
            format!("{field}.tls.caSecretRef"),
        ));
    }
    references
}

/// One object a spec refers to, with the field that refers to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A Secret that must hold `keys`.
    Secret {
        /// Its name.
        name: String,
        /// Keys the Secret must hold.
        keys: Vec<String>,
        /// The spec field that refers to it.
        field: String,
    },
    /// A PersistentVolumeClaim.
    Claim {
        /// Its name.
        name: String,
        /// The spec field that refers to it.
        field: String,
    },
    /// Every PersistentVolumeClaim with these labels (at least one must exist).
    ClaimSelector {
        /// The labels.
        labels: BTreeMap<String, String>,
        /// The spec field that holds them.
        field: String,
    },
}

/// Joins problems into one condition message.
pub fn describe(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Whether the owner of the object with `meta` allows Hort to use it.
pub fn usable(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .is_some_and(|labels| labels.get(USABLE_LABEL).is_some_and(|v| v == "true"))
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

    /// Checks every reference of `references`; returns their problems in order.
    pub async fn check(&self, references: &[Reference]) -> kube::Result<Vec<Problem>> {
        let mut problems = vec![];
        for reference in references {
            problems.extend(match reference {
                Reference::Secret { name, keys, field } => {
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    self.secret_keys(name, &keys, field).await?
                }
                Reference::Claim { name, field } => self.claim(name, field).await?,
                Reference::ClaimSelector { labels, field } => self.selected_claims(labels, field).await?.1,
            });
        }
        Ok(problems)
    }

    /// Checks that Secret `name` exists, is marked usable and holds every key of `keys`. Only
    /// key names are read; values never leave the API server's answer.
    pub async fn secret_keys(&self, name: &str, keys: &[&str], field: &str) -> kube::Result<Vec<Problem>> {
        let Some(secret) = self.secrets.get_opt(name).await? else {
            return Ok(vec![Problem::NotFound {
                kind: "Secret",
                name: name.into(),
                field: field.into(),
            }]);
        };
        if !usable(&secret.metadata) {
            return Ok(vec![Problem::NotUsable {
                kind: "Secret",
                name: name.into(),
                field: field.into(),
            }]);
        }
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

    /// Checks that PersistentVolumeClaim `name` exists and is marked usable.
    pub async fn claim(&self, name: &str, field: &str) -> kube::Result<Vec<Problem>> {
        Ok(match self.claims.get_metadata_opt(name).await? {
            Some(claim) if usable(&claim.metadata) => vec![],
            Some(_) => vec![Problem::NotUsable {
                kind: "PersistentVolumeClaim",
                name: name.into(),
                field: field.into(),
            }],
            None => vec![Problem::NotFound {
                kind: "PersistentVolumeClaim",
                name: name.into(),
                field: field.into(),
            }],
        })
    }
}

/// `labels` as a label selector (`k=v,…`, sorted by key).
pub fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Resolver {
    /// The claims with all of `labels`, sorted by name, and the problems: none selected, or
    /// each one not marked usable.
    pub async fn selected_claims(
        &self,
        labels: &BTreeMap<String, String>,
        field: &str,
    ) -> kube::Result<(Vec<PersistentVolumeClaim>, Vec<Problem>)> {
        let selector = selector(labels);
        let mut claims = self.claims.list(&ListParams::default().labels(&selector)).await?.items;
        claims.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let problems = if claims.is_empty() {
            vec![Problem::NoneSelected {
                selector,
                field: field.into(),
            }]
        } else {
            claims
                .iter()
                .filter(|c| !usable(&c.metadata))
                .map(|c| Problem::NotUsable {
                    kind: "PersistentVolumeClaim",
                    name: c.metadata.name.clone().unwrap_or_default(),
                    field: field.into(),
                })
                .collect()
        };
        Ok((claims, problems))
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
            Problem::NotUsable {
                kind: "PersistentVolumeClaim",
                name: "data".into(),
                field: "spec.source.volume.claimName".into(),
            },
        ];
        assert_eq!(
            describe(&problems),
            "Secret \"s3-credentials\" (spec.targets[0].s3.credentialsSecretRef) not found; \
             Secret \"key\" (spec.encryption.keySecretRef) has no key \"password\"; \
             PersistentVolumeClaim \"data\" (spec.source.volume.claimName) is not marked for use by Hort; \
             its owner allows it with `kubectl label persistentvolumeclaim data hort.dev/usable=true`"
        );
    }

    #[test]
    fn a_selector_that_selects_nothing_is_waited_for_and_named() {
        let labels: BTreeMap<String, String> = [("tier".into(), "db".into()), ("app".into(), "shop".into())].into();
        let problem = Problem::NoneSelected {
            selector: selector(&labels),
            field: "spec.source.volume.claimSelector".into(),
        };
        assert!(problem.may_resolve_itself());
        assert_eq!(
            problem.to_string(),
            "no PersistentVolumeClaim in the namespace has the labels app=shop,tier=db \
             (spec.source.volume.claimSelector)"
        );
    }

    #[test]
    fn only_the_value_true_of_the_label_marks_an_object_usable() {
        let meta = |labels: &[(&str, &str)]| ObjectMeta {
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..ObjectMeta::default()
        };
        assert!(usable(&meta(&[(USABLE_LABEL, "true")])));
        assert!(!usable(&meta(&[(USABLE_LABEL, "false")])));
        assert!(!usable(&meta(&[(USABLE_LABEL, "")])));
        assert!(!usable(&meta(&[("hort.dev/usable-not", "true")])));
        assert!(!usable(&ObjectMeta::default()));
    }
}
