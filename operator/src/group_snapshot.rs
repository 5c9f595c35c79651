//! Snapshots of the claims of a BackupJob's `claimSelector`, all at one point in time: one
//! VolumeGroupSnapshot (API group `groupsnapshot.storage.k8s.io/v1`) where the cluster can take
//! one, else one VolumeSnapshot per claim, all between the same pre and post hooks; then one
//! temporary claim per snapshot, which the agent pod mounts at `/source/CLAIM`.
//!
//! Names follow the attempt (`JOB-ATTEMPT`, the agent pod's name): the VolumeGroupSnapshot is
//! `JOB-ATTEMPT`; the claims, sorted by name, are numbered from 0, and claim `i` gets the
//! temporary claim `JOB-ATTEMPT-i` and, without a group, the VolumeSnapshot `JOB-ATTEMPT-i`.
//! The members of a group are created by the snapshot controller (owned by the group) under
//! names of its own and found by their owner; they go with the group. Everything Hort creates
//! is owned by the job and deleted by [`release`] when the attempt ends.

use std::collections::BTreeMap;

use hort_crds::backup_job::ClaimSnapshot;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use kube::api::{ApiResource, DeleteParams, ListParams, PostParams};
use kube::core::Object;
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::volume_snapshot::{
    self, POLL, READY_TIMEOUT, Readiness, SnapshotFailure, SnapshotPlan, UNANSWERED_TIMEOUT, VolumeSnapshot,
    VolumeSnapshotError, ignore_missing,
};

/// The API group of VolumeGroupSnapshots.
pub const GROUP: &str = "groupsnapshot.storage.k8s.io";

/// The spec of a VolumeGroupSnapshot.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotSpec {
    /// Which claims.
    pub source: VolumeGroupSnapshotSource,
    /// The class; the default group class of the claims' driver when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group_snapshot_class_name: Option<String>,
}

/// The claims a VolumeGroupSnapshot is taken of.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotSource {
    /// The labels of the claims, in the group's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// The status of a VolumeGroupSnapshot, as the snapshot controller writes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupSnapshotStatus {
    /// The VolumeGroupSnapshotContent bound to it: a controller has taken it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_group_snapshot_content_name: Option<String>,
    /// When the group was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// Whether every member is ready to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// The last error taking it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
}

/// A `groupsnapshot.storage.k8s.io/v1` VolumeGroupSnapshot.
pub type VolumeGroupSnapshot = Object<VolumeGroupSnapshotSpec, VolumeGroupSnapshotStatus>;

/// The API resource of VolumeGroupSnapshots.
pub fn resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: "v1".into(),
        api_version: format!("{GROUP}/v1"),
        kind: "VolumeGroupSnapshot".into(),
        plural: "volumegroupsnapshots".into(),
    }
}

/// The VolumeGroupSnapshots of `namespace`.
pub fn api(client: &kube::Client, namespace: &str) -> Api<VolumeGroupSnapshot> {
    Api::namespaced_with(client.clone(), namespace, &resource())
}

/// What an attempt of a `claimSelector` snapshots: the group, or else each claim alone.
#[derive(Clone, Debug)]
pub struct ClaimsPlan {
    /// The VolumeGroupSnapshot to create first.
    pub group: VolumeGroupSnapshot,
    /// Per selected claim (sorted by name): its VolumeSnapshot without a group, and its
    /// temporary claim (whose data source is pointed at the group's member when there is one).
    pub each: Vec<SnapshotPlan>,
    /// The selected claims' names, in the order of `each`.
    pub sources: Vec<String>,
    /// Whether the live claims are read when the cluster cannot snapshot them (`Auto`).
    pub live_fallback: bool,
}

/// The name of the temporary claim (and of the VolumeSnapshot without a group) of the
/// `index`th selected claim of attempt `name`.
pub fn member_name(name: &str, index: usize) -> String {
    format!("{name}-{index}")
}

/// The plan of attempt `name` in `namespace` for `sources` (the claims with `labels`, sorted by
/// name), with the classes asked for, everything owned by `owner`.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    sources: &[PersistentVolumeClaim],
    class: Option<&str>,
    group_class: Option<&str>,
    owner: OwnerReference,
    live_fallback: bool,
) -> ClaimsPlan {
    let each: Vec<SnapshotPlan> = sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            volume_snapshot::plan(
                &member_name(name, i),
                namespace,
                source,
                class,
                owner.clone(),
                live_fallback,
            )
        })
        .collect();
    let mut group = VolumeGroupSnapshot::new(
        name,
        &resource(),
        VolumeGroupSnapshotSpec {
            source: VolumeGroupSnapshotSource {
                selector: Some(LabelSelector {
                    match_labels: Some(labels.clone()),
                    match_expressions: None,
                }),
            },
            volume_group_snapshot_class_name: group_class.map(String::from),
        },
    );
    group.metadata.namespace = Some(namespace.into());
    group.metadata.owner_references = Some(vec![owner]);
    group.metadata.labels = Some([("app.kubernetes.io/managed-by".to_string(), "hort-operator".to_string())].into());
    ClaimsPlan {
        group,
        each,
        sources: sources.iter().map(ResourceExt::name_any).collect(),
        live_fallback,
    }
}

/// How the claims were taken.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimsTaken {
    /// The VolumeGroupSnapshot, when one was taken.
    pub group: Option<String>,
    /// Why no VolumeGroupSnapshot was taken (one VolumeSnapshot per claim instead).
    pub fallback: Option<String>,
    /// Each claim, its snapshot and its temporary claim.
    pub claims: Vec<ClaimSnapshot>,
    /// When the group was cut, or the last of the VolumeSnapshots.
    pub cut: Option<Time>,
}

/// Whether the error of a VolumeGroupSnapshot says that the driver cannot take group
/// snapshots (no group class for it, or the call is not implemented): then each claim is
/// snapshotted alone.
pub fn cannot_group(message: &str) -> bool {
    let message = message.to_lowercase();
    [
        "group snapshot class",
        "groupsnapshotclass",
        "not supported",
        "does not support",
        "unimplemented",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// Pairs each claim of `sources` with the member of the group with uid `group_uid` taken of it
/// (the VolumeSnapshots the snapshot controller created, owned by the group, naming the claim
/// in `spec.source.persistentVolumeClaimName`); `Err` names the claims without one.
pub fn members(group_uid: &str, snapshots: &[VolumeSnapshot], sources: &[String]) -> Result<Vec<String>, Vec<String>> {
    let by_claim: BTreeMap<&str, String> = snapshots
        .iter()
        .filter(|s| {
            s.owner_references()
                .iter()
                .any(|o| o.kind == "VolumeGroupSnapshot" && o.uid == group_uid)
        })
        .filter_map(|s| {
            let claim = s.spec.source.persistent_volume_claim_name.as_deref()?;
            Some((claim, s.name_any()))
        })
        .collect();
    let missing: Vec<String> = sources
        .iter()
        .filter(|c| !by_claim.contains_key(c.as_str()))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(sources.iter().map(|c| by_claim[c.as_str()].clone()).collect())
    } else {
        Err(missing)
    }
}

/// Why a group snapshot was not used.
enum GroupFailure {
    /// The cluster cannot take one: snapshot each claim alone (says why).
    CannotGroup(String),
    /// It failed otherwise.
    Failed(SnapshotFailure),
}

/// Takes the plan's VolumeGroupSnapshot and waits until it is ready to use; where the cluster
/// cannot take one, takes one VolumeSnapshot per claim and waits until all are ready.
pub async fn take(client: &kube::Client, plan: &ClaimsPlan) -> Result<ClaimsTaken, SnapshotFailure> {
    let namespace = plan.group.namespace().unwrap_or_default();
    let snapshots = volume_snapshot::api(client, &namespace);
    let groups = api(client, &namespace);
    match take_group(&groups, &snapshots, plan).await {
        Ok(taken) => Ok(taken),
        Err(GroupFailure::Failed(failure)) => Err(failure),
        Err(GroupFailure::CannotGroup(why)) => {
            // A group that failed goes at once; one that never existed is fine.
            ignore_missing(
                groups
                    .delete(&plan.group.name_any(), &DeleteParams::background())
                    .await
                    .map(|_| ()),
            )
            .map_err(|e| SnapshotFailure::Failed(format!("deleting the VolumeGroupSnapshot failed: {e}")))?;
            take_each(&snapshots, plan, why).await
        }
    }
}

async fn take_group(
    groups: &Api<VolumeGroupSnapshot>,
    snapshots: &Api<VolumeSnapshot>,
    plan: &ClaimsPlan,
) -> Result<ClaimsTaken, GroupFailure> {
    let name = plan.group.name_any();
    match groups.create(&PostParams::default(), &plan.group).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {
            return Err(GroupFailure::CannotGroup(format!(
                "the cluster serves no VolumeGroupSnapshot API ({GROUP}/v1)"
            )));
        }
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Err(GroupFailure::CannotGroup(format!(
                "the operator may not create VolumeGroupSnapshots (its RBAC): {}",
                e.message
            )));
        }
        Err(e) => {
            return Err(GroupFailure::Failed(SnapshotFailure::Failed(format!(
                "creating VolumeGroupSnapshot {name:?} failed: {e}"
            ))));
        }
    }
    let failed =
        |what: &str, e: kube::Error| GroupFailure::Failed(SnapshotFailure::Failed(format!("{what} failed: {e}")));
    let started = tokio::time::Instant::now();
    loop {
        let current = groups
            .get(&name)
            .await
            .map_err(|e| failed(&format!("reading VolumeGroupSnapshot {name:?}"), e))?;
        let waited = started.elapsed();
        match readiness(&current) {
            Readiness::Ready(cut) => {
                let listed = snapshots
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| failed("listing VolumeSnapshots", e))?;
                let uid = current.uid().unwrap_or_default();
                match members(&uid, &listed.items, &plan.sources) {
                    Ok(members) => {
                        let claims = plan
                            .sources
                            .iter()
                            .zip(&plan.each)
                            .zip(members)
                            .map(|((claim, each), snapshot)| ClaimSnapshot {
                                claim_name: claim.clone(),
                                snapshot,
                                temporary_claim: each.claim.name_any(),
                            })
                            .collect();
                        return Ok(ClaimsTaken {
                            group: Some(name),
                            fallback: None,
                            claims,
                            cut,
                        });
                    }
                    Err(missing) if waited >= READY_TIMEOUT => {
                        return Err(GroupFailure::Failed(SnapshotFailure::Failed(format!(
                            "VolumeGroupSnapshot {name:?} is ready but holds no VolumeSnapshot of claims {}",
                            missing.join(", ")
                        ))));
                    }
                    Err(_) => tokio::time::sleep(POLL).await,
                }
            }
            Readiness::Error(message) if cannot_group(&message) => {
                return Err(GroupFailure::CannotGroup(format!(
                    "VolumeGroupSnapshot {name:?} failed: {message}"
                )));
            }
            Readiness::Error(message) => {
                return Err(GroupFailure::Failed(SnapshotFailure::Unavailable(format!(
                    "VolumeGroupSnapshot {name:?} failed: {message}"
                ))));
            }
            Readiness::Unanswered if waited >= UNANSWERED_TIMEOUT => {
                return Err(GroupFailure::CannotGroup(format!(
                    "no snapshot controller took up VolumeGroupSnapshot {name:?} within {}s",
                    UNANSWERED_TIMEOUT.as_secs()
                )));
            }
            Readiness::Pending | Readiness::Unanswered if waited >= READY_TIMEOUT => {
                return Err(GroupFailure::Failed(SnapshotFailure::Failed(format!(
                    "VolumeGroupSnapshot {name:?} was not ready to use after {}s",
                    READY_TIMEOUT.as_secs()
                ))));
            }
            Readiness::Pending | Readiness::Unanswered => tokio::time::sleep(POLL).await,
        }
    }
}

/// Creates one VolumeSnapshot per claim, then waits until all are ready.
async fn take_each(
    snapshots: &Api<VolumeSnapshot>,
    plan: &ClaimsPlan,
    why: String,
) -> Result<ClaimsTaken, SnapshotFailure> {
    for each in &plan.each {
        volume_snapshot::create(snapshots, &each.snapshot).await?;
    }
    let mut last: Option<Time> = None;
    for each in &plan.each {
        let cut = volume_snapshot::wait_ready(snapshots, &each.snapshot.name_any()).await?;
        if cut.as_ref().map(|t| t.0) > last.as_ref().map(|t| t.0) {
            last = cut;
        }
    }
    Ok(ClaimsTaken {
        group: None,
        fallback: Some(why),
        claims: plan
            .sources
            .iter()
            .zip(&plan.each)
            .map(|(claim, each)| ClaimSnapshot {
                claim_name: claim.clone(),
                snapshot: each.snapshot.name_any(),
                temporary_claim: each.claim.name_any(),
            })
            .collect(),
        cut: last,
    })
}

/// The temporary claims of `plan`, each provisioned from the snapshot `taken` names for it.
pub fn temporary_claims(plan: &ClaimsPlan, taken: &ClaimsTaken) -> Vec<PersistentVolumeClaim> {
    plan.each
        .iter()
        .zip(&taken.claims)
        .map(|(each, claim)| {
            let mut temporary = each.claim.clone();
            if let Some(source) = temporary.spec.as_mut().and_then(|s| s.data_source.as_mut()) {
                source.name = claim.snapshot.clone();
            }
            temporary
        })
        .collect()
}

/// Where a VolumeGroupSnapshot stands, from its status.
pub fn readiness(group: &VolumeGroupSnapshot) -> Readiness {
    let Some(status) = &group.status else {
        return Readiness::Unanswered;
    };
    if status.ready_to_use == Some(true) {
        return Readiness::Ready(status.creation_time.clone());
    }
    if let Some(message) = status.error.as_ref().and_then(|e| e.message.clone()) {
        return Readiness::Error(message);
    }
    if status.bound_volume_group_snapshot_content_name.is_some() || status.creation_time.is_some() {
        Readiness::Pending
    } else {
        Readiness::Unanswered
    }
}

/// Deletes what attempt `name` of a selector of `count` claims may have left, those that
/// exist, in this order: the temporary claims `name-i`, the VolumeSnapshots `name-i`, the
/// VolumeGroupSnapshot `name` (its members go with it). A claim is not deleted while a pod
/// mounts it, even one that ended: delete that first.
pub async fn release(client: &kube::Client, namespace: &str, name: &str, count: usize) -> kube::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let snapshots = volume_snapshot::api(client, namespace);
    for i in 0..count {
        let member = member_name(name, i);
        ignore_missing(claims.delete(&member, &DeleteParams::background()).await.map(|_| ()))?;
    }
    for i in 0..count {
        let member = member_name(name, i);
        ignore_missing(snapshots.delete(&member, &DeleteParams::background()).await.map(|_| ()))?;
    }
    ignore_missing(
        api(client, namespace)
            .delete(name, &DeleteParams::background())
            .await
            .map(|_| ()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": "shop"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "hort-csi",
                     "resources": {"requests": {"storage": "1Gi"}}},
        }))
        .unwrap()
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "hort.dev/v1alpha1".into(),
            kind: "BackupJob".into(),
            name: "job".into(),
            uid: "u".into(),
            ..OwnerReference::default()
        }
    }

    #[test]
    fn the_plan_selects_the_claims_by_their_labels_and_numbers_them() {
        let labels: BTreeMap<String, String> = [("app".into(), "shop".into())].into();
        let plan = plan(
            "job-1",
            "ns",
            &labels,
            &[claim("db"), claim("wal")],
            Some("snap"),
            Some("group"),
            owner(),
            false,
        );
        let group = serde_json::to_value(&plan.group).unwrap();
        assert_eq!(group["apiVersion"], "groupsnapshot.storage.k8s.io/v1");
        assert_eq!(group["kind"], "VolumeGroupSnapshot");
        assert_eq!(group["metadata"]["name"], "job-1");
        assert_eq!(group["metadata"]["ownerReferences"][0]["name"], "job");
        assert_eq!(group["spec"]["source"]["selector"]["matchLabels"]["app"], "shop");
        assert_eq!(group["spec"]["volumeGroupSnapshotClassName"], "group");
        assert_eq!(plan.sources, ["db", "wal"]);
        let names: Vec<_> = plan
            .each
            .iter()
            .map(|e| (e.snapshot.name_any(), e.claim.name_any()))
            .collect();
        assert_eq!(
            names,
            [
                ("job-1-0".into(), "job-1-0".into()),
                ("job-1-1".into(), "job-1-1".into())
            ]
        );
        assert_eq!(
            plan.each[1]
                .snapshot
                .spec
                .source
                .persistent_volume_claim_name
                .as_deref(),
            Some("wal")
        );
        assert_eq!(
            plan.each[1].snapshot.spec.volume_snapshot_class_name.as_deref(),
            Some("snap")
        );
        // From a group, each temporary claim is provisioned from the group's member of its claim.
        let taken = ClaimsTaken {
            group: Some("job-1".into()),
            fallback: None,
            claims: vec![
                ClaimSnapshot {
                    claim_name: "db".into(),
                    snapshot: "snapshot-aa".into(),
                    temporary_claim: "job-1-0".into(),
                },
                ClaimSnapshot {
                    claim_name: "wal".into(),
                    snapshot: "snapshot-bb".into(),
                    temporary_claim: "job-1-1".into(),
                },
            ],
            cut: None,
        };
        let temporary = temporary_claims(&plan, &taken);
        let from: Vec<_> = temporary
            .iter()
            .map(|c| {
                let source = c.spec.as_ref().unwrap().data_source.as_ref().unwrap();
                (c.name_any(), source.kind.clone(), source.name.clone())
            })
            .collect();
        assert_eq!(
            from,
            [
                ("job-1-0".into(), "VolumeSnapshot".into(), "snapshot-aa".into()),
                ("job-1-1".into(), "VolumeSnapshot".into(), "snapshot-bb".into())
            ]
        );
    }

    fn member(name: &str, claim: &str, owner_uid: &str) -> VolumeSnapshot {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": "ns", "ownerReferences": [{
                "apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshot",
                "name": "job-1", "uid": owner_uid}]},
            "spec": {"source": {"persistentVolumeClaimName": claim}},
        }))
        .unwrap()
    }

    #[test]
    fn members_are_found_by_their_owner_and_mapped_by_their_claim() {
        let sources = ["db".to_string(), "wal".to_string()];
        let listed = [
            member("snapshot-bb", "wal", "g1"),
            member("snapshot-old", "db", "g0"),
            member("snapshot-aa", "db", "g1"),
        ];
        assert_eq!(
            members("g1", &listed, &sources),
            Ok(vec!["snapshot-aa".to_string(), "snapshot-bb".to_string()])
        );
        assert_eq!(members("g0", &listed, &sources), Err(vec!["wal".to_string()]));
    }

    #[test]
    fn errors_that_say_the_driver_cannot_group_fall_back_to_one_snapshot_per_claim() {
        assert!(cannot_group(
            "Failed to set default group snapshot class with error cannot find default group snapshot class"
        ));
        assert!(cannot_group("rpc error: code = Unimplemented desc = unknown service"));
        assert!(cannot_group("driver csi.example does not support group snapshots"));
        assert!(!cannot_group("failed to take group snapshot: disk full"));
    }

    #[test]
    fn group_readiness_follows_its_status() {
        let group = |status: serde_json::Value| -> VolumeGroupSnapshot {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshot",
                "metadata": {"name": "job-1"}, "spec": {"source": {}}, "status": status,
            }))
            .unwrap()
        };
        assert_eq!(readiness(&group(serde_json::Value::Null)), Readiness::Unanswered);
        assert_eq!(
            readiness(&group(serde_json::json!({"boundVolumeGroupSnapshotContentName": "c"}))),
            Readiness::Pending
        );
        assert_eq!(
            readiness(&group(serde_json::json!({"error": {"message": "no"}}))),
            Readiness::Error("no".into())
        );
        assert!(matches!(
            readiness(&group(serde_json::json!({"readyToUse": true}))),
            Readiness::Ready(None)
        ));
    }
}
