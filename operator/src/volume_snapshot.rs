//! CSI VolumeSnapshots of a BackupJob's claim: the VolumeSnapshot object (API group
//! `snapshot.storage.k8s.io/v1`, served by the cluster's snapshot CRDs), the temporary claim
//! provisioned from it, waiting until it is ready to use, and deleting both.
//!
//! Each attempt of a job with a snapshot takes its own, named after the attempt's agent pod
//! (`JOB-ATTEMPT`), owned by the job (so the garbage collector removes what a deleted job left
//! behind), and deleted with that pod as soon as the attempt ends.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, TypedLocalObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{ApiResource, DeleteParams, PostParams};
use kube::core::Object;
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};

/// The API group of VolumeSnapshots.
pub const GROUP: &str = "snapshot.storage.k8s.io";
/// How long a snapshot may take to become ready to use.
pub const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `Auto` waits for a snapshot controller to take up a VolumeSnapshot before it
/// concludes that the cluster cannot snapshot the claim.
pub const UNANSWERED_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a VolumeSnapshot is read while it is not ready.
pub const POLL: Duration = Duration::from_millis(500);

/// The spec of a VolumeSnapshot.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    /// What to snapshot.
    pub source: VolumeSnapshotSource,
    /// The class; the default class of the claim's driver when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

/// The claim a VolumeSnapshot is taken of.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    /// Name of the claim, in the snapshot's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
}

/// The status of a VolumeSnapshot, as the snapshot controller writes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// The VolumeSnapshotContent bound to it: a controller has taken it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_snapshot_content_name: Option<String>,
    /// When the snapshot was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// Whether a claim can be provisioned from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// The last error taking it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
}

/// An error of a VolumeSnapshot.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct VolumeSnapshotError {
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A `snapshot.storage.k8s.io/v1` VolumeSnapshot.
pub type VolumeSnapshot = Object<VolumeSnapshotSpec, VolumeSnapshotStatus>;

/// The API resource of VolumeSnapshots.
pub fn resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: "v1".into(),
        api_version: format!("{GROUP}/v1"),
        kind: "VolumeSnapshot".into(),
        plural: "volumesnapshots".into(),
    }
}

/// The VolumeSnapshots of `namespace`.
pub fn api(client: &kube::Client, namespace: &str) -> Api<VolumeSnapshot> {
    Api::namespaced_with(client.clone(), namespace, &resource())
}

/// What an attempt's snapshot is made of: the VolumeSnapshot of the claim and the temporary
/// claim provisioned from it.
#[derive(Clone, Debug)]
pub struct SnapshotPlan {
    /// The VolumeSnapshot to create.
    pub snapshot: VolumeSnapshot,
    /// The claim to provision from it once it is ready.
    pub claim: PersistentVolumeClaim,
    /// Whether the live volume is read when the cluster cannot snapshot the claim (`Auto`).
    pub live_fallback: bool,
}

/// The snapshot named `name` of `source` (a claim in `namespace`) with `class`, and the
/// temporary claim of the same name provisioned from it, both owned by `owner`.
pub fn plan(
    name: &str,
    namespace: &str,
    source: &PersistentVolumeClaim,
    class: Option<&str>,
    owner: OwnerReference,
    live_fallback: bool,
) -> SnapshotPlan {
    let metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        owner_references: Some(vec![owner]),
        labels: Some([("app.kubernetes.io/managed-by".to_string(), "hort-operator".to_string())].into()),
        ..ObjectMeta::default()
    };
    let mut snapshot = VolumeSnapshot::new(
        name,
        &resource(),
        VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(source.name_any()),
            },
            volume_snapshot_class_name: class.map(String::from),
        },
    );
    snapshot.metadata = metadata.clone();
    let from = source.spec.clone().unwrap_or_default();
    let claim = PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: from.access_modes,
            storage_class_name: from.storage_class_name,
            volume_mode: from.volume_mode,
            resources: from.resources,
            data_source: Some(TypedLocalObjectReference {
                api_group: Some(GROUP.into()),
                kind: "VolumeSnapshot".into(),
                name: name.into(),
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };
    SnapshotPlan {
        snapshot,
        claim,
        live_fallback,
    }
}

/// Why a snapshot could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotFailure {
    /// The cluster cannot snapshot the claim: no VolumeSnapshot API, no controller took the
    /// snapshot up, or the controller reports an error.
    Unavailable(String),
    /// Anything else (the API server refused a call, the snapshot did not become ready in time).
    Failed(String),
}

/// Where a VolumeSnapshot stands, from its status.
#[derive(Clone, Debug, PartialEq)]
pub enum Readiness {
    /// Ready to use; cut at this time.
    Ready(Option<Time>),
    /// The snapshot controller reports this error.
    Error(String),
    /// A controller took it up and it is not ready yet.
    Pending,
    /// No controller has taken it up yet.
    Unanswered,
}

/// Where `snapshot` stands.
pub fn readiness(snapshot: &VolumeSnapshot) -> Readiness {
    let Some(status) = &snapshot.status else {
        return Readiness::Unanswered;
    };
    if status.ready_to_use == Some(true) {
        return Readiness::Ready(status.creation_time.clone());
    }
    if let Some(message) = status.error.as_ref().and_then(|e| e.message.clone()) {
        return Readiness::Error(message);
    }
    if status.bound_volume_snapshot_content_name.is_some() || status.creation_time.is_some() {
        Readiness::Pending
    } else {
        Readiness::Unanswered
    }
}

/// Creates the plan's VolumeSnapshot and waits until it is ready to use; returns when it was
/// cut. One that exists already (an earlier try of the same attempt) is waited for.
pub async fn take(snapshots: &Api<VolumeSnapshot>, plan: &SnapshotPlan) -> Result<Option<Time>, SnapshotFailure> {
    create(snapshots, &plan.snapshot).await?;
    wait_ready(snapshots, &plan.snapshot.name_any()).await
}

/// Creates `snapshot`; one that exists already (an earlier try of the same attempt) is fine.
pub async fn create(snapshots: &Api<VolumeSnapshot>, snapshot: &VolumeSnapshot) -> Result<(), SnapshotFailure> {
    let name = snapshot.name_any();
    match snapshots.create(&PostParams::default(), snapshot).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(SnapshotFailure::Unavailable(format!(
            "the cluster serves no VolumeSnapshot API ({GROUP}/v1): {}",
            e.message
        ))),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(SnapshotFailure::Unavailable(format!(
            "the operator may not create VolumeSnapshots (its RBAC): {}",
            e.message
        ))),
        Err(e) => Err(SnapshotFailure::Failed(format!(
            "creating VolumeSnapshot {name:?} failed: {e}"
        ))),
    }
}

/// Waits until VolumeSnapshot `name` is ready to use; returns when it was cut.
pub async fn wait_ready(snapshots: &Api<VolumeSnapshot>, name: &str) -> Result<Option<Time>, SnapshotFailure> {
    let started = tokio::time::Instant::now();
    loop {
        let current = snapshots
            .get(name)
            .await
            .map_err(|e| SnapshotFailure::Failed(format!("reading VolumeSnapshot {name:?} failed: {e}")))?;
        let waited = started.elapsed();
        match readiness(&current) {
            Readiness::Ready(cut) => return Ok(cut),
            Readiness::Error(message) => {
                return Err(SnapshotFailure::Unavailable(format!(
                    "VolumeSnapshot {name:?} failed: {message}"
                )));
            }
            Readiness::Unanswered if waited >= UNANSWERED_TIMEOUT => {
                return Err(SnapshotFailure::Unavailable(format!(
                    "no snapshot controller took up VolumeSnapshot {name:?} within {}s",
                    UNANSWERED_TIMEOUT.as_secs()
                )));
            }
            Readiness::Pending | Readiness::Unanswered if waited >= READY_TIMEOUT => {
                return Err(SnapshotFailure::Failed(format!(
                    "VolumeSnapshot {name:?} was not ready to use after {}s",
                    READY_TIMEOUT.as_secs()
                )));
            }
            Readiness::Pending | Readiness::Unanswered => tokio::time::sleep(POLL).await,
        }
    }
}

/// Deletes the temporary claim and the VolumeSnapshot named `name` in `namespace`, those
/// that exist, in this order (a snapshot is not deleted while a claim is provisioned from it).
/// A claim is not deleted while a pod mounts it, even one that ended: delete that first.
pub async fn release(client: &kube::Client, namespace: &str, name: &str) -> kube::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    ignore_missing(claims.delete(name, &DeleteParams::background()).await.map(|_| ()))?;
    ignore_missing(
        api(client, namespace)
            .delete(name, &DeleteParams::background())
            .await
            .map(|_| ()),
    )
}

/// `Ok` for a result that failed only because the object (or its API) does not exist.
pub fn ignore_missing(result: kube::Result<()>) -> kube::Result<()> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(status: serde_json::Value) -> VolumeSnapshot {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "job-1", "namespace": "ns"},
            "spec": {"source": {"persistentVolumeClaimName": "data"}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn readiness_follows_the_status_the_snapshot_controller_writes() {
        assert_eq!(readiness(&snapshot(serde_json::Value::Null)), Readiness::Unanswered);
        assert_eq!(
            readiness(&snapshot(serde_json::json!({"boundVolumeSnapshotContentName": "c"}))),
            Readiness::Pending
        );
        assert_eq!(
            readiness(&snapshot(
                serde_json::json!({"readyToUse": false, "error": {"message": "no class"}})
            )),
            Readiness::Error("no class".into())
        );
        let ready = readiness(&snapshot(
            serde_json::json!({"readyToUse": true, "creationTime": "2026-11-30T05:00:00Z"}),
        ));
        assert!(
            matches!(&ready, Readiness::Ready(Some(t)) if t.0.to_string() == "2026-11-30T05:00:00Z"),
            "{ready:?}"
        );
    }

    #[test]
    fn the_temporary_claim_copies_the_source_claim_and_names_the_snapshot() {
        let source: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data", "namespace": "ns"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "hort-csi",
                "resources": {"requests": {"storage": "1Gi"}},
                "volumeName": "pv-1",
            },
        }))
        .unwrap();
        let owner = OwnerReference {
            api_version: "hort.dev/v1alpha1".into(),
            kind: "BackupJob".into(),
            name: "job".into(),
            uid: "u".into(),
            ..OwnerReference::default()
        };
        let plan = plan("job-1", "ns", &source, Some("fast"), owner, true);
        let json = serde_json::to_value(&plan.snapshot).unwrap();
        assert_eq!(json["apiVersion"], "snapshot.storage.k8s.io/v1");
        assert_eq!(json["kind"], "VolumeSnapshot");
        assert_eq!(json["spec"]["source"]["persistentVolumeClaimName"], "data");
        assert_eq!(json["spec"]["volumeSnapshotClassName"], "fast");
        assert_eq!(json["metadata"]["ownerReferences"][0]["name"], "job");
        let claim = serde_json::to_value(&plan.claim).unwrap();
        assert_eq!(claim["metadata"]["name"], "job-1");
        assert_eq!(claim["spec"]["storageClassName"], "hort-csi");
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert_eq!(claim["spec"]["dataSource"]["kind"], "VolumeSnapshot");
        assert_eq!(claim["spec"]["dataSource"]["name"], "job-1");
        assert!(claim["spec"].get("volumeName").is_none(), "{claim}");
        assert!(plan.live_fallback);
    }
}
