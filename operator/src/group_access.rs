//! The group a BackupJob, RestoreRequest or Schedule names in `storageGroupRef`: a
//! StorageGroup of its namespace, or a ClusterStorageGroup shared with it. Finds it, says
//! whether it is ready for the namespace (a shared group must allow the namespace and have
//! created its repository), and gives the agent pod its repository access: the StorageGroup's
//! targets, or, for a shared group, only the group's proxy with the namespace's own password,
//! never the storage credentials.

use std::collections::BTreeMap;

use hort_crds::common::{GroupKind, GroupRef};
use hort_crds::storage_group::Bandwidth;
use hort_crds::{ClusterStorageGroup, StorageGroup};
use hort_protocol::location::{Location, StoreLocation};
use hort_protocol::{env, tenant};
use k8s_openapi::api::core::v1::{
    EnvVar, KeyToPath, Namespace, ProjectedVolumeSource, SecretProjection, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use kube::{Api, ResourceExt};

use crate::agent::pod::{self, RepositoryAccess};
use crate::backup_job::group_readiness;
use crate::cluster_storage_group::build::{CA_KEY, PASSWORD_KEY, password_secret_name};
use crate::cluster_storage_group::proxy::{PROXY_PORT, proxy_service_name};
use crate::cluster_storage_group::selector;
use crate::conditions::{Observation, Status};
use crate::context::Context;
use crate::error::Result;
use crate::storage_group::READY;

/// Condition type (shared with the StorageGroup path) that says whether the group is ready.
const STORAGE_GROUP_READY: &str = crate::backup_job::STORAGE_GROUP_READY;
/// Reason of a namespace a ClusterStorageGroup does not allow: the job fails.
pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
/// Where a tenant agent pod finds the CA that signed the proxy's certificate.
pub const STORE_CA_FILE: &str = "/etc/hort/store-ca/ca.crt";
/// Where a tenant agent pod finds its ServiceAccount token for the proxy.
pub const STORE_TOKEN_FILE: &str = "/var/run/secrets/hort-store/token";
/// Lifetime of that token; the kubelet renews it before it expires.
const TOKEN_SECONDS: i64 = 600;
/// Ready reasons of a ClusterStorageGroup that concern other namespaces only.
const TENANT_REASONS: [&str; 2] = ["TenantsPending", "TenantFailed"];

/// The group a job uses, as found.
#[derive(Clone, Debug)]
pub enum Group {
    /// A StorageGroup of the job's namespace.
    Local(Box<StorageGroup>),
    /// A ClusterStorageGroup that allows the job's namespace.
    Shared {
        /// The group's name.
        name: String,
        /// The operator's namespace, where the group's proxy runs.
        operator_namespace: String,
    },
}

impl Group {
    /// The agent pod's access to the repository, with a BackupJob's `spec.bandwidth` applied.
    pub fn access(&self, bandwidth: Option<&Bandwidth>) -> RepositoryAccess {
        match self {
            Group::Local(group) => pod::repository_access(&pod::with_job_bandwidth(&group.spec, bandwidth)),
            Group::Shared {
                name,
                operator_namespace,
            } => tenant_access(name, operator_namespace, bandwidth),
        }
    }

    /// The StorageGroup, when the job uses one of its own namespace.
    pub fn local(&self) -> Option<&StorageGroup> {
        match self {
            Group::Local(group) => Some(group),
            Group::Shared { .. } => None,
        }
    }
}

/// What [`find`] found: the group when it is ready for the namespace, and the observation to
/// record (`StorageGroupReady`).
#[derive(Debug)]
pub struct Found {
    /// The group, when ready.
    pub ready: Option<Group>,
    /// Whether it is, and why not.
    pub observation: Observation,
}

impl Found {
    /// True when the namespace may not use the group: waiting would not help.
    pub fn refused(&self) -> bool {
        self.observation.reason == NAMESPACE_NOT_ALLOWED
    }
}

/// Finds the group `reference` names for an object of `namespace` and whether it is ready.
pub async fn find(ctx: &Context, namespace: &str, reference: &GroupRef) -> Result<Found> {
    match reference.kind {
        GroupKind::StorageGroup => {
            let group = Api::<StorageGroup>::namespaced(ctx.client.clone(), namespace)
                .get_opt(&reference.name)
                .await?;
            let observation = group_readiness(&reference.name, namespace, group.as_ref());
            let ready = group
                .filter(|_| observation.status == Status::True)
                .map(|g| Group::Local(Box::new(g)));
            Ok(Found { ready, observation })
        }
        GroupKind::ClusterStorageGroup if !ctx.shares_groups => Ok(Found {
            ready: None,
            observation: not_allowed(format!(
                "ClusterStorageGroup {:?} (spec.storageGroupRef) cannot be used: this operator watches only its own namespace; shared groups need an operator that watches the whole cluster",
                reference.name
            )),
        }),
        GroupKind::ClusterStorageGroup => {
            let group = Api::<ClusterStorageGroup>::all(ctx.client.clone())
                .get_opt(&reference.name)
                .await?;
            let labels = Api::<Namespace>::all(ctx.client.clone())
                .get_opt(namespace)
                .await?
                .map(|n| n.labels().clone());
            let observation = shared_readiness(&reference.name, namespace, group.as_ref(), labels.as_ref());
            let ready = (observation.status == Status::True).then(|| Group::Shared {
                name: reference.name.clone(),
                operator_namespace: ctx.operator_namespace.clone(),
            });
            Ok(Found { ready, observation })
        }
    }
}

fn not_allowed(message: String) -> Observation {
    Observation {
        type_: STORAGE_GROUP_READY,
        status: Status::False,
        reason: NAMESPACE_NOT_ALLOWED,
        message,
    }
}

/// Whether ClusterStorageGroup `name` (`group`, if it exists) is ready for `namespace` (with
/// `labels`, if it exists): it must select the namespace, have recorded the namespace's
/// repository with no failed check since, and be Ready but for other namespaces' repositories.
pub fn shared_readiness(
    name: &str,
    namespace: &str,
    group: Option<&ClusterStorageGroup>,
    labels: Option<&BTreeMap<String, String>>,
) -> Observation {
    let waiting = |reason, message| Observation {
        type_: STORAGE_GROUP_READY,
        status: Status::False,
        reason,
        message,
    };
    let Some(group) = group else {
        let message = format!("ClusterStorageGroup {name:?} (spec.storageGroupRef) not found");
        return waiting("StorageGroupNotFound", message);
    };
    let allowed = labels.is_some_and(|labels| {
        selector::validate(&group.spec.allowed_namespaces).is_ok()
            && selector::matches(&group.spec.allowed_namespaces, labels)
    });
    if !allowed {
        return not_allowed(format!(
            "namespace {namespace:?} is not allowed to use ClusterStorageGroup {name:?} (spec.storageGroupRef): its spec.allowedNamespaces does not select the namespace's labels; ask the platform team to allow it"
        ));
    }
    let status = group.status.clone().unwrap_or_default();
    let tenant = status.tenants.iter().find(|t| t.namespace == namespace);
    match tenant {
        Some(t) if t.repository_id.is_some() && t.message.is_none() => {}
        Some(t) => {
            let why = t.message.as_deref().unwrap_or("not created yet");
            let message = format!(
                "waiting for ClusterStorageGroup {name:?} to create or check this namespace's repository: {why}"
            );
            return waiting("StorageGroupNotReady", message);
        }
        None => {
            let message = format!("waiting for ClusterStorageGroup {name:?} to take in namespace {namespace:?}");
            return waiting("StorageGroupNotReady", message);
        }
    }
    let ready = status.conditions.iter().find(|c| c.type_ == READY);
    match ready {
        Some(c) if c.status == "True" || TENANT_REASONS.contains(&c.reason.as_str()) => Observation {
            type_: STORAGE_GROUP_READY,
            status: Status::True,
            reason: "StorageGroupReady",
            message: format!("ClusterStorageGroup {name:?} is Ready for namespace {namespace:?}"),
        },
        Some(c) => {
            let message = format!(
                "waiting for ClusterStorageGroup {name:?} to become Ready: {}",
                c.message
            );
            waiting("StorageGroupNotReady", message)
        }
        None => waiting(
            "StorageGroupNotReady",
            format!("waiting for ClusterStorageGroup {name:?} to be checked"),
        ),
    }
}

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// How an agent pod of a tenant namespace reaches its repository in ClusterStorageGroup
/// `group`: the proxy's Service in `operator_namespace` over HTTPS, trusting only the CA of
/// key `ca.crt` of the tenant Secret, with a ServiceAccount token for the proxy's audience
/// and the namespace's password from the same Secret (both by reference). A BackupJob's
/// `spec.bandwidth` limits the agent's own transfers; the group's limits are the proxy's.
pub fn tenant_access(group: &str, operator_namespace: &str, bandwidth: Option<&Bandwidth>) -> RepositoryAccess {
    let secret = password_secret_name(group);
    let location = Location::Store(StoreLocation {
        host: format!("{}.{operator_namespace}.svc", proxy_service_name(group)),
        port: PROXY_PORT,
        group: group.into(),
        tls: true,
    });
    let mut access = RepositoryAccess::default();
    access.env.extend([
        value(env::REPOSITORY, location.to_string()),
        pod::secret_env(env::PASSWORD, &secret, PASSWORD_KEY),
        value(env::STORE_CA_FILE, STORE_CA_FILE),
        value(env::STORE_TOKEN_FILE, STORE_TOKEN_FILE),
        value(env::AWS_EC2_METADATA_DISABLED, "true"),
    ]);
    access.env.extend(pod::bandwidth_env(
        bandwidth,
        [env::LIMIT_UPLOAD, env::LIMIT_DOWNLOAD],
        1,
    ));
    let (ca_dir, ca_file) = STORE_CA_FILE.rsplit_once('/').expect("an absolute path");
    let (token_dir, token_file) = STORE_TOKEN_FILE.rsplit_once('/').expect("an absolute path");
    let projected = |name: &str, source: VolumeProjection| Volume {
        name: name.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![source]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    };
    access.volumes.push(projected(
        "store-ca",
        VolumeProjection {
            secret: Some(SecretProjection {
                name: secret,
                items: Some(vec![KeyToPath {
                    key: CA_KEY.into(),
                    path: ca_file.into(),
                    mode: None,
                }]),
                optional: Some(false),
            }),
            ..VolumeProjection::default()
        },
    ));
    access.volumes.push(projected(
        "store-token",
        VolumeProjection {
            service_account_token: Some(ServiceAccountTokenProjection {
                audience: Some(tenant::STORE_AUDIENCE.into()),
                expiration_seconds: Some(TOKEN_SECONDS),
                path: token_file.into(),
            }),
            ..VolumeProjection::default()
        },
    ));
    for (name, dir) in [("store-ca", ca_dir), ("store-token", token_dir)] {
        access.mounts.push(VolumeMount {
            name: name.into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    access
}

#[cfg(test)]
mod tests {
    use super::*;
    use hort_crds::cluster_storage_group::{ClusterStorageGroupSpec, ClusterStorageGroupStatus, TenantStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn group(tenants: Vec<TenantStatus>, ready: Option<(&str, &str)>) -> ClusterStorageGroup {
        let spec: ClusterStorageGroupSpec = serde_json::from_value(serde_json::json!({
            "storageGroupRef": {"name": "s3"},
            "allowedNamespaces": {"matchLabels": {"backup": "shared"}},
            "tenantKeySecretRef": {"name": "root", "key": "secret"},
        }))
        .expect("a valid spec");
        let mut group = ClusterStorageGroup::new("shared", spec);
        group.status = Some(ClusterStorageGroupStatus {
            tenants,
            conditions: ready
                .map(|(status, reason)| Condition {
                    type_: READY.into(),
                    status: status.into(),
                    reason: reason.into(),
                    message: format!("the group's own message ({reason})"),
                    last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                    observed_generation: None,
                })
                .into_iter()
                .collect(),
            ..ClusterStorageGroupStatus::default()
        });
        group
    }

    fn tenant(namespace: &str, id: Option<&str>, message: Option<&str>) -> TenantStatus {
        TenantStatus {
            namespace: namespace.into(),
            repository_id: id.map(Into::into),
            message: message.map(Into::into),
            snapshots: None,
        }
    }

    fn labels(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("backup".to_string(), value.to_string())])
    }

    #[test]
    fn a_namespace_the_group_does_not_select_is_refused_naming_both() {
        let group = group(
            vec![tenant("team-a", Some("ab12"), None)],
            Some(("True", "TenantsReady")),
        );
        let found = shared_readiness("shared", "team-b", Some(&group), Some(&labels("none")));
        assert_eq!((found.status, found.reason), (Status::False, NAMESPACE_NOT_ALLOWED));
        assert!(found.message.contains("\"team-b\"") && found.message.contains("\"shared\""));
        assert!(found.message.contains("spec.allowedNamespaces"));
        let unknown = shared_readiness("shared", "gone", Some(&group), None);
        assert_eq!(unknown.reason, NAMESPACE_NOT_ALLOWED);
        let refused = Found {
            ready: None,
            observation: found,
        };
        assert!(refused.refused());
    }

    #[test]
    fn a_missing_group_or_a_repository_not_yet_created_waits() {
        let missing = shared_readiness("shared", "team-a", None, Some(&labels("shared")));
        assert_eq!(
            (missing.status, missing.reason),
            (Status::False, "StorageGroupNotFound")
        );
        assert!(
            missing
                .message
                .contains("ClusterStorageGroup \"shared\" (spec.storageGroupRef) not found")
        );

        let not_taken_in = group(vec![], Some(("False", "TenantsPending")));
        let waits = shared_readiness("shared", "team-a", Some(&not_taken_in), Some(&labels("shared")));
        assert_eq!((waits.status, waits.reason), (Status::False, "StorageGroupNotReady"));

        let failing = group(
            vec![tenant("team-a", Some("ab12"), Some("check failed: target down"))],
            Some(("False", "TenantFailed")),
        );
        let waits = shared_readiness("shared", "team-a", Some(&failing), Some(&labels("shared")));
        assert_eq!(waits.status, Status::False);
        assert!(waits.message.contains("check failed: target down"), "{}", waits.message);
    }

    #[test]
    fn a_tenant_with_its_repository_is_ready_unless_the_whole_group_is_not() {
        let tenants = vec![
            tenant("team-a", Some("ab12"), None),
            tenant("team-b", None, Some("check failed")),
        ];
        // Another namespace's failure does not hold this one back.
        let others_failing = group(tenants.clone(), Some(("False", "TenantFailed")));
        let ready = shared_readiness("shared", "team-a", Some(&others_failing), Some(&labels("shared")));
        assert_eq!((ready.status, ready.reason), (Status::True, "StorageGroupReady"));
        // The shared StorageGroup (or the proxy) not ready holds every namespace back.
        let group_down = group(tenants, Some(("False", "StorageGroupNotReady")));
        let waits = shared_readiness("shared", "team-a", Some(&group_down), Some(&labels("shared")));
        assert_eq!(waits.status, Status::False);
        assert!(waits.message.contains("(StorageGroupNotReady)"), "{}", waits.message);
    }

    #[test]
    fn a_tenant_pod_reaches_only_the_proxy_with_its_own_password_and_token() {
        let slower = Bandwidth {
            upload_per_second: Some("1Mi".into()),
            download_per_second: None,
        };
        let access = tenant_access("shared", "hort-system", Some(&slower));
        let env = |name: &str| access.env.iter().find(|e| e.name == name).cloned();
        assert_eq!(
            env(env::REPOSITORY).and_then(|e| e.value).as_deref(),
            Some("hort+https://hort-store-shared.hort-system.svc:8443/shared")
        );
        let password = env(env::PASSWORD)
            .and_then(|e| e.value_from)
            .and_then(|v| v.secret_key_ref);
        let password = password.expect("the password by reference");
        assert_eq!(
            (password.name.as_str(), password.key.as_str()),
            ("hort-tenant-shared", "password")
        );
        assert_eq!(env(env::LIMIT_UPLOAD).and_then(|e| e.value).as_deref(), Some("1048576"));
        assert!(env(env::LIMIT_DOWNLOAD).is_none());
        // No storage credentials, no root secret, no target of the group's own.
        for e in &access.env {
            assert!(e.value_from.is_none() || e.name == env::PASSWORD, "{e:?}");
            assert!(
                !e.name.contains("AWS_ACCESS") && !e.name.contains("SECRET_ACCESS"),
                "{e:?}"
            );
        }
        let token = access
            .volumes
            .iter()
            .filter_map(|v| v.projected.as_ref())
            .flat_map(|p| p.sources.clone().unwrap_or_default())
            .find_map(|s| s.service_account_token)
            .expect("a projected token");
        assert_eq!(token.audience.as_deref(), Some(tenant::STORE_AUDIENCE));
        assert_eq!(token.expiration_seconds, Some(TOKEN_SECONDS));
        let mounted: Vec<String> = access.mounts.iter().map(|m| format!("{}/", m.mount_path)).collect();
        for file in [STORE_CA_FILE, STORE_TOKEN_FILE] {
            assert_eq!(
                env(if file == STORE_CA_FILE {
                    env::STORE_CA_FILE
                } else {
                    env::STORE_TOKEN_FILE
                })
                .and_then(|e| e.value)
                .as_deref(),
                Some(file)
            );
            assert!(
                mounted.iter().any(|dir| file.starts_with(dir.as_str())),
                "{file} is not mounted"
            );
        }
        assert!(access.mounts.iter().all(|m| m.read_only == Some(true)));
    }

    #[test]
    fn a_storage_group_gives_its_own_targets_as_before() {
        let spec: hort_crds::storage_group::StorageGroupSpec = serde_json::from_value(serde_json::json!({
            "targets": [{"name": "disk", "pvc": {"claimName": "backups"}}],
            "encryption": {"keySecretRef": {"name": "key"}},
        }))
        .expect("a valid spec");
        let local = Group::Local(Box::new(StorageGroup::new("disk", spec.clone())));
        assert_eq!(local.access(None), pod::repository_access(&spec));
        assert!(local.local().is_some());
        let shared = Group::Shared {
            name: "shared".into(),
            operator_namespace: "hort-system".into(),
        };
        assert!(shared.local().is_none());
        assert_eq!(shared.access(None), tenant_access("shared", "hort-system", None));
    }
}
