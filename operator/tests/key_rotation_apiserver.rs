//! Rotating a storage group's repository password against a real API server:
//! `spec.encryption.previousKeySecretRef` makes the next check rotate the key, backups wait
//! for it, and conditions and Events say what happened.

mod metrics_wait;
mod support;

use hort_crds::{BackupJob, StorageGroup};
use hort_operator::clock::Clock;
use hort_protocol::report::encode;
use hort_protocol::{CheckReport, KeyRotationReport};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use metrics_wait::metrics_showing;
use serde_json::json;
use support::{
    TestEnv, create, finish_pod, healthy_check, ready_s3_group, unfinished_check_pod, usable_claim, wait_for,
    wait_for_event,
};

/// The group's condition `type_`, as (status, reason, message).
fn condition(group: &StorageGroup, type_: &str) -> Option<(String, String, String)> {
    let c = group.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn reason_is(group: &StorageGroup, type_: &str, reason: &str) -> bool {
    condition(group, type_).is_some_and(|(_, r, _)| r == reason)
}

/// The Secret name and key an agent container's variable `name` comes from.
fn from_secret(pod: &Pod, name: &str) -> Option<(String, String)> {
    let env = pod.spec.as_ref()?.containers[0].env.as_ref()?;
    let var = env.iter().find(|v| v.name == name)?;
    let key = var.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((key.name.clone(), key.key.clone()))
}

#[tokio::test]
#[ignore = "needs a kube-apiserver: run scripts/test.sh"]
async fn a_previous_key_secret_rotates_the_key_at_the_next_check_and_backups_wait_for_it() {
    let env = TestEnv::start("hort-key-rotation", Clock::System).await;
    let (client, ns) = (&env.client, &env.ns);
    ready_s3_group(client, ns).await;
    usable_claim(client, ns, "data").await;
    let secrets: Api<Secret> = env.api();
    let groups: Api<StorageGroup> = env.api();
    let jobs: Api<BackupJob> = env.api();
    let pods: Api<Pod> = env.api();
    create(
        &secrets,
        json!({"metadata": {"name": "key-2", "labels": {"hort.dev/usable": "true"}},
               "stringData": {"password": "the second password"}}),
    )
    .await;

    // The new password in a new Secret, the old one as the previous: one apply.
    let rotate = json!({"spec": {"encryption": {"keySecretRef": {"name": "key-2"},
                                                "previousKeySecretRef": {"name": "key"}}}});
    groups
        .patch("s3", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .unwrap();
    wait_for(&groups, "s3", "Ready False while the key rotates", |g| {
        condition(g, "Ready").is_some_and(|(s, r, _)| s == "False" && r == "KeyRotating")
            && reason_is(g, "KeyRotated", "Rotating")
    })
    .await;
    let not_ready = format!(r#"hort_storage_group_ready{{namespace="{ns}",storage_group="s3"}} 0"#);
    metrics_showing(&env.metrics, &[not_ready]).await;

    // A backup created meanwhile waits for the group: its pod would get a password that may
    // open nothing yet.
    create(
        &jobs,
        json!({"apiVersion": "hort.dev/v1alpha1", "kind": "BackupJob", "metadata": {"name": "during"},
               "spec": {"storageGroupRef": {"name": "s3"},
                        "source": {"volume": {"claimName": "data", "snapshot": "None"}}}}),
    )
    .await;
    wait_for(&jobs, "during", "the job to wait for the group", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == "StorageGroupReady"
                    && c.status == "False"
                    && c.message.contains("rotates the repository key")
            })
        })
    })
    .await;
    assert!(pods.get_opt("during-1").await.unwrap().is_none(), "no backup pod yet");

    // The check rotates: the previous password comes from its Secret by reference.
    let check = unfinished_check_pod(&pods).await;
    let args = check.spec.as_ref().unwrap().containers[0].args.clone().unwrap();
    assert_eq!(args, ["check", "--rotate-key", "--repository-id", "r"]);
    assert_eq!(
        from_secret(&check, "HORT_PREVIOUS_PASSWORD"),
        Some(("key".into(), "password".into()))
    );
    assert_eq!(
        from_secret(&check, "HORT_PASSWORD"),
        Some(("key-2".into(), "password".into()))
    );
    let report = CheckReport {
        key_rotation: Some(KeyRotationReport {
            added: Some("aaaabbbbccccdddd".into()),
            removed: Some("1111222233334444".into()),
            done: true,
            error: None,
        }),
        ..healthy_check("r")
    };
    finish_pod(&pods, &check.name_any(), 0, &encode(&report)).await;
    wait_for(&groups, "s3", "Ready again and KeyRotated", |g| {
        condition(g, "Ready").is_some_and(|(s, _, _)| s == "True")
            && condition(g, "KeyRotated")
                .is_some_and(|(s, r, m)| s == "True" && r == "Rotated" && m.contains("(111122223333) removed"))
    })
    .await;
    let notes = wait_for_event(client, ns, "s3", "Rotated").await;
    assert!(notes[0].contains("Secret \"key-2\""), "{notes:?}");
    // The waiting backup starts now.
    wait_for(&pods, "during-1", "the backup pod", |_| true).await;

    // Once the field is removed, so is the condition.
    let done = json!({"spec": {"encryption": {"previousKeySecretRef": null}}});
    groups
        .patch("s3", &PatchParams::default(), &Patch::Merge(&done))
        .await
        .unwrap();
    wait_for(&groups, "s3", "KeyRotated removed", |g| {
        condition(g, "KeyRotated").is_none()
    })
    .await;

    // A previous Secret its owner did not mark for Hort is never read.
    create(
        &secrets,
        json!({"metadata": {"name": "unmarked"}, "stringData": {"password": "the old password"}}),
    )
    .await;
    let unmarked = json!({"spec": {"encryption": {"previousKeySecretRef": {"name": "unmarked"}}}});
    groups
        .patch("s3", &PatchParams::default(), &Patch::Merge(&unmarked))
        .await
        .unwrap();
    wait_for(&groups, "s3", "ReferenceNotUsable naming the field", |g| {
        condition(g, "Ready").is_some_and(|(s, r, m)| {
            s == "False" && r == "ReferenceNotUsable" && m.contains("spec.encryption.previousKeySecretRef")
        })
    })
    .await;

    env.stop().await;
}
