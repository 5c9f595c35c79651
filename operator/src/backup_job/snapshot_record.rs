//! What a BackupJob's attempt did with volume snapshots: how its prologue read the volume
//! (recorded in `status.volumeSnapshot` and the `VolumeSnapshot` condition), and deleting what
//! an attempt took once it ended.

use hort_crds::backup_job::{BackupJob, BackupJobStatus, VolumeSnapshotRecord};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use crate::agent::{api, backup};
use crate::backup_hooks::SnapshotOutcome;
use crate::conditions;
use crate::context::Context;
use crate::error::Result;
use crate::events;
use crate::group_snapshot;
use crate::status;
use crate::volume_snapshot;

/// Takes in how a prologue read the volume: the snapshot's cut time and the pause in the
/// job's record and its `VolumeSnapshot` condition; or, for a live read, the condition that
/// says why, after deleting the snapshot that could not be taken.
pub(super) async fn record_snapshot(
    ctx: &Context,
    job: &BackupJob,
    status: &mut BackupJobStatus,
    snapshot: Option<&SnapshotOutcome>,
    now: Timestamp,
) -> Result<()> {
    let (Some(snapshot), Some(volume)) = (snapshot, &job.spec.source.volume) else {
        return Ok(());
    };
    let observation = match snapshot {
        SnapshotOutcome::Taken { cut, pause } => {
            let Some(record) = status.volume_snapshot.as_mut() else {
                return Ok(());
            };
            record.creation_time = cut.clone();
            record.hooks_pause_seconds = *pause;
            status.post_hooks_attempt = Some(status.attempts);
            let cut = cut.as_ref().map_or("an unknown time".to_string(), |t| t.0.to_string());
            backup::snapshot_taken(volume, &record.name, &cut, *pause)
        }
        SnapshotOutcome::ClaimsTaken { taken, pause } => {
            let Some(record) = status.volume_snapshot.as_mut() else {
                return Ok(());
            };
            record.creation_time = taken.cut.clone();
            record.hooks_pause_seconds = *pause;
            record.group = taken.group.clone();
            record.claims = taken.claims.clone();
            status.post_hooks_attempt = Some(status.attempts);
            let cut = taken
                .cut
                .as_ref()
                .map_or("an unknown time".to_string(), |t| t.0.to_string());
            backup::claims_taken(
                &taken.claims,
                taken.group.as_deref(),
                taken.fallback.as_deref(),
                &cut,
                *pause,
            )
        }
        SnapshotOutcome::ReadLive(why) => {
            // The live read's agent pod has the snapshot's name: only the snapshots go.
            if let Some(record) = status.volume_snapshot.take() {
                release_snapshots(ctx, &status::namespace_of(job)?, &record).await?;
            }
            backup::live_read(
                volume,
                &format!("snapshot is Auto and the cluster cannot snapshot it: {why}"),
            )
        }
    };
    let before = conditions::find(&status.conditions, backup::VOLUME_SNAPSHOT).cloned();
    events::on_transition(ctx, job, before.as_ref(), &observation).await;
    conditions::set(&mut status.conditions, observation, job.metadata.generation, now);
    Ok(())
}

/// Deletes what the attempt of `record` took: its VolumeSnapshot, the temporary claim and the
/// agent pod that read it (which would keep the claim).
pub(super) async fn release_snapshot(
    ctx: &Context,
    namespace: &str,
    record: Option<&VolumeSnapshotRecord>,
) -> Result<()> {
    if let Some(record) = record {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
        if let Some(pod) = pods.get_opt(&record.name).await? {
            api::delete(&pods, &pod).await?;
        }
        release_snapshots(ctx, namespace, record).await?;
    }
    Ok(())
}

/// Deletes the temporary claims and the snapshots of `record` (not its agent pod).
async fn release_snapshots(ctx: &Context, namespace: &str, record: &VolumeSnapshotRecord) -> Result<()> {
    if record.claims.is_empty() {
        volume_snapshot::release(&ctx.client, namespace, &record.name).await?;
    } else {
        group_snapshot::release(&ctx.client, namespace, &record.name, record.claims.len()).await?;
    }
    Ok(())
}

/// The temporary claims the agent pod of `record`'s attempt reads.
pub(super) fn temporary_claims(record: &VolumeSnapshotRecord) -> impl Iterator<Item = &str> {
    std::iter::once(record.claim_name.as_str())
        .filter(|c| !c.is_empty())
        .chain(record.claims.iter().map(|c| c.temporary_claim.as_str()))
}
