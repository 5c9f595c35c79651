//! The hooks of a BackupJob's attempts, run outside the reconcile loop ([`crate::hook_runs`]).
//!
//! An attempt with pre hooks begins with its *prologue*: its agent pod, when it is known
//! before the hooks (a live read, or the reader of a `CSI` snapshot), is created held back by
//! the scheduling gate [`PRE_HOOKS_GATE`](api::PRE_HOOKS_GATE), so a pod the namespace refuses
//! ends the attempt before any hook ran; then the pre hooks; then the gate is removed (or the
//! snapshots are taken, the post hooks run, and the pod is let go or created). When a pre hook
//! fails or the pod cannot be made to run after them, the post hooks run at once (they undo
//! what the pre hooks did), the prologue says why the attempt ended, and the reconcile that
//! takes that in deletes a pod still held back, which never runs. An attempt that ended any
//! other way (its pod finished or vanished, or the operator stopped during its prologue) has
//! its post hooks run by its *epilogue*. Which of them is due is decided by
//! [`crate::hooks::next_step`] from the job's status; the reconcile starts the run and picks up
//! its [`HookRun`] on a later pass.

use hort_crds::backup_job::{BackupJob, Hook};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use crate::agent::api;
use crate::group_snapshot::{self, ClaimsPlan, ClaimsTaken};
use crate::hook_runs::Runs;
use crate::hooks;
use crate::volume_snapshot::{self, SnapshotFailure, SnapshotPlan};

/// Which hooks of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookStage {
    /// `spec.hooks.pre`, run by the prologue.
    Pre,
    /// `spec.hooks.post`, run by the epilogue (or by a prologue that failed).
    Post,
}

/// A run of one job's attempt: the job's uid, the attempt, and the prologue (`Pre`) or the
/// epilogue (`Post`).
pub type RunKey = (String, u32, HookStage);

/// The runs of every BackupJob's prologues and epilogues.
pub type BackupHookRuns = Runs<RunKey, HookRun>;

/// The key of `job`'s run of `stage` in `attempt`.
pub fn run_key(job: &BackupJob, attempt: u32, stage: HookStage) -> RunKey {
    (job.uid().unwrap_or_default(), attempt, stage)
}

/// How a prologue or an epilogue ended.
#[derive(Clone, Debug, PartialEq)]
pub struct HookRun {
    /// Every hook failure, tolerated or not, for Warning events.
    pub failures: Vec<String>,
    /// What the run means for the attempt.
    pub outcome: Outcome,
    /// How a prologue with a snapshot plan read the volume.
    pub snapshot: Option<SnapshotOutcome>,
}

/// How a prologue with a snapshot plan read the volume.
#[derive(Clone, Debug, PartialEq)]
pub enum SnapshotOutcome {
    /// The snapshot was cut (at this time) and the post hooks ran; the agent pod reads the
    /// temporary claim. `pause` is the time from the end of the pre hooks to the end of the
    /// post hooks, when the job has hooks.
    Taken {
        /// When the snapshot was cut.
        cut: Option<Time>,
        /// Seconds the hooks held the application.
        pause: Option<f64>,
    },
    /// The claims of a selector were snapshotted (one group, or one VolumeSnapshot each) and
    /// the post hooks ran; the agent pod reads the temporary claims.
    ClaimsTaken {
        /// What was taken.
        taken: ClaimsTaken,
        /// Seconds the hooks held the application.
        pause: Option<f64>,
    },
    /// The cluster cannot snapshot the claim (this says why): the agent pod reads the live
    /// volume (`Auto`), and the post hooks run after it.
    ReadLive(String),
}

/// What a prologue starts after the pre hooks.
#[derive(Clone, Debug)]
pub enum AgentStart {
    /// This agent pod.
    Pod(Box<Pod>),
    /// The snapshots of the plan, then the post hooks, then the temporary claims and the pod
    /// `from_snapshot` that reads them; or, when the cluster cannot take the snapshots and the
    /// plan allows it, the pod `live`.
    Snapshots {
        /// The snapshots and the temporary claims.
        plan: SnapshotsPlan,
        /// The agent pod that reads the temporary claims.
        from_snapshot: Box<Pod>,
        /// The agent pod that reads the live claims (`Auto` only).
        live: Option<Box<Pod>>,
    },
}

/// The snapshots a prologue takes.
#[derive(Clone, Debug)]
pub enum SnapshotsPlan {
    /// One claim's VolumeSnapshot and its temporary claim.
    One(Box<SnapshotPlan>),
    /// The snapshots of a selector's claims (a group, or one each) and their temporary claims.
    Claims(Box<ClaimsPlan>),
}

impl SnapshotsPlan {
    /// Takes the snapshots and waits until they are ready to use: how they were taken (with
    /// `pause` left to fill in) and the temporary claims to create from them.
    async fn take(&self, pods: &Api<Pod>) -> Result<(SnapshotOutcome, Vec<PersistentVolumeClaim>), SnapshotFailure> {
        let client = pods.clone().into_client();
        match self {
            SnapshotsPlan::One(plan) => {
                let snapshots = volume_snapshot::api(&client, &plan.snapshot.namespace().unwrap_or_default());
                let cut = volume_snapshot::take(&snapshots, plan).await?;
                Ok((SnapshotOutcome::Taken { cut, pause: None }, vec![plan.claim.clone()]))
            }
            SnapshotsPlan::Claims(plan) => {
                let taken = group_snapshot::take(&client, plan).await?;
                let claims = group_snapshot::temporary_claims(plan, &taken);
                Ok((SnapshotOutcome::ClaimsTaken { taken, pause: None }, claims))
            }
        }
    }
}

/// What a run means for its attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A prologue created the agent pod; an epilogue's hooks passed (or failed with `Continue`).
    Done,
    /// A pre hook failed (`onError: Fail`); the post hooks ran.
    PreHookFailed(String),
    /// The agent pod could not be created: before the pre hooks (no hook ran), or after them
    /// (the post hooks ran); or, created before them, it could not be let go after them (the
    /// post hooks ran). Says why, and how a failing post hook failed.
    PodNotCreated(String),
    /// A post hook failed (`onError: Fail`).
    PostHookFailed(String),
    /// The attempt's snapshot could not be taken or used; the post hooks ran. Says why.
    SnapshotFailed(String),
}

/// The hooks of `stage` that `job` lists.
pub fn stage_hooks(job: &BackupJob, stage: HookStage) -> &[Hook] {
    match (&job.spec.hooks, stage) {
        (None, _) => &[],
        (Some(spec), HookStage::Pre) => &spec.pre,
        (Some(spec), HookStage::Post) => &spec.post,
    }
}

/// Whether `job` has hooks of `stage`.
pub fn has_hooks(job: &BackupJob, stage: HookStage) -> bool {
    !stage_hooks(job, stage).is_empty()
}

/// Runs `hooks` (the `stage` hooks) and adds their failures to `failures`; returns the one
/// that fails the attempt.
async fn run_stage(pods: &Api<Pod>, name: &str, list: &[Hook], failures: &mut Vec<String>) -> Option<String> {
    if list.is_empty() {
        return None;
    }
    match hooks::run(pods, name, list).await {
        Ok(tolerated) => {
            failures.extend(tolerated);
            None
        }
        Err(failure) => {
            failures.push(failure.clone());
            Some(failure)
        }
    }
}

/// The prologue of an attempt of `job`: the agent pod of `start` if it is known before the
/// pre hooks (created held back), its pre hooks, then the rest of `start` (letting the pod go,
/// or the snapshots, the post hooks and then the pod).
pub fn prologue(pods: Api<Pod>, job: &BackupJob, start: AgentStart) -> impl Future<Output = HookRun> + Send + 'static {
    let pre = stage_hooks(job, HookStage::Pre).to_vec();
    let post = stage_hooks(job, HookStage::Post).to_vec();
    async move {
        let mut failures = Vec::new();
        // Created first, held back: a pod the namespace refuses (a quota, an admission check)
        // ends the attempt before any hook paused the application.
        let first = created_first(&start, !pre.is_empty()).map(|pod| api::gated(pod.clone()));
        if let Some(pod) = &first
            && let Err(e) = api::create(&pods, pod).await
        {
            let why = format!("creating agent pod {:?} failed: {e}", pod.name_any());
            return HookRun {
                failures,
                outcome: Outcome::PodNotCreated(why),
                snapshot: None,
            };
        }
        let created_first = first.is_some();
        if let Some(why) = run_stage(&pods, "pre", &pre, &mut failures).await {
            // The held pod is deleted by the reconcile that takes this in.
            run_stage(&pods, "post", &post, &mut failures).await;
            return HookRun {
                failures,
                outcome: Outcome::PreHookFailed(why),
                snapshot: None,
            };
        }
        let (pod, snapshot) = match start {
            AgentStart::Pod(pod) => {
                let outcome = match release(&pods, &pod).await {
                    Ok(()) => Outcome::Done,
                    Err(why) => not_created(&pods, &post, &mut failures, why).await,
                };
                return HookRun {
                    failures,
                    outcome,
                    snapshot: None,
                };
            }
            AgentStart::Snapshots {
                plan,
                from_snapshot,
                live,
            } => {
                let held = tokio::time::Instant::now();
                match (plan.take(&pods).await, live) {
                    (Ok((mut snapshot, claims)), _) => {
                        // Post hooks only once every snapshot is ready.
                        let post_failed = run_stage(&pods, "post", &post, &mut failures).await;
                        let held = (!pre.is_empty() || !post.is_empty()).then(|| held.elapsed().as_secs_f64());
                        if let SnapshotOutcome::Taken { pause, .. } | SnapshotOutcome::ClaimsTaken { pause, .. } =
                            &mut snapshot
                        {
                            *pause = held;
                        }
                        let outcome = match post_failed {
                            Some(why) => Outcome::PostHookFailed(why),
                            None => create_claims_and_pod(&pods, &claims, &from_snapshot, created_first).await,
                        };
                        return HookRun {
                            failures,
                            outcome,
                            snapshot: Some(snapshot),
                        };
                    }
                    (Err(SnapshotFailure::Unavailable(why)), Some(live)) => {
                        (*live, Some(SnapshotOutcome::ReadLive(why)))
                    }
                    (Err(SnapshotFailure::Unavailable(why) | SnapshotFailure::Failed(why)), _) => {
                        let outcome = match run_stage(&pods, "post", &post, &mut failures).await {
                            Some(post) => Outcome::SnapshotFailed(format!("{why}; {post}")),
                            None => Outcome::SnapshotFailed(why),
                        };
                        return HookRun {
                            failures,
                            outcome,
                            snapshot: None,
                        };
                    }
                }
            }
        };
        // The live read of `Auto`: its post hooks run once it ends.
        let outcome = match api::create(&pods, &pod).await {
            Ok(()) => Outcome::Done,
            Err(e) => {
                let why = format!("creating agent pod {:?} failed: {e}", pod.name_any());
                not_created(&pods, &post, &mut failures, why).await
            }
        };
        HookRun {
            failures,
            outcome,
            snapshot,
        }
    }
}

/// The agent pod of `start` that a prologue creates before its pre hooks (`pre_hooks`: the job
/// has some), held back: the pod of a live read, and the pod that reads the snapshots of
/// `CSI`. With `Auto`, which of its two pods runs is known only once the snapshots were tried,
/// so that one is created after the hooks; without pre hooks nothing is paused, and the
/// reader of a snapshot is created once its claims exist.
fn created_first(start: &AgentStart, pre_hooks: bool) -> Option<&Pod> {
    match start {
        _ if !pre_hooks => None,
        AgentStart::Pod(pod)
        | AgentStart::Snapshots {
            from_snapshot: pod,
            live: None,
            ..
        } => Some(pod),
        AgentStart::Snapshots { .. } => None,
    }
}

/// Ends a prologue whose agent pod could not be made to run after the pre hooks (`why`): runs
/// the post hooks, which undo them.
async fn not_created(pods: &Api<Pod>, post: &[Hook], failures: &mut Vec<String>, why: String) -> Outcome {
    match run_stage(pods, "post", post, failures).await {
        Some(post) => Outcome::PodNotCreated(format!("{why}; {post}")),
        None => Outcome::PodNotCreated(why),
    }
}

/// Lets the agent pod created before the pre hooks be scheduled, or says why it could not.
async fn release(pods: &Api<Pod>, pod: &Pod) -> Result<(), String> {
    api::release(pods, &pod.name_any())
        .await
        .map_err(|e| format!("letting agent pod {:?} be scheduled failed: {e}", pod.name_any()))
}

/// Creates the temporary claims `temporary` and then `pod`, which reads them, or lets it go
/// when it was `created_first`, held back (the post hooks ran already).
async fn create_claims_and_pod(
    pods: &Api<Pod>,
    temporary: &[PersistentVolumeClaim],
    pod: &Pod,
    created_first: bool,
) -> Outcome {
    for claim in temporary {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(pods.clone().into_client(), &claim.namespace().unwrap_or_default());
        match claims.create(&PostParams::default(), claim).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                return Outcome::PodNotCreated(format!(
                    "creating claim {:?} from the snapshot failed: {e}",
                    claim.name_any()
                ));
            }
        }
    }
    if created_first {
        return match release(pods, pod).await {
            Ok(()) => Outcome::Done,
            Err(why) => Outcome::PodNotCreated(why),
        };
    }
    match api::create(pods, pod).await {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::PodNotCreated(format!("creating agent pod {:?} failed: {e}", pod.name_any())),
    }
}

/// The epilogue of an attempt of `job`: its post hooks.
pub fn epilogue(pods: Api<Pod>, job: &BackupJob) -> impl Future<Output = HookRun> + Send + 'static {
    let post = stage_hooks(job, HookStage::Post).to_vec();
    async move {
        let mut failures = Vec::new();
        let outcome = match run_stage(&pods, "post", &post, &mut failures).await {
            Some(why) => Outcome::PostHookFailed(why),
            None => Outcome::Done,
        };
        HookRun {
            failures,
            outcome,
            snapshot: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn pod(name: &str) -> Box<Pod> {
        Box::new(serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap())
    }

    fn snapshots(auto: bool) -> AgentStart {
        let source: PersistentVolumeClaim =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "data"}})).unwrap();
        let plan = volume_snapshot::plan("j-1", "ns", &source, None, OwnerReference::default(), auto);
        AgentStart::Snapshots {
            plan: SnapshotsPlan::One(Box::new(plan)),
            from_snapshot: pod("reads-snapshot"),
            live: auto.then(|| pod("reads-live")),
        }
    }

    fn first(start: &AgentStart, pre_hooks: bool) -> Option<String> {
        created_first(start, pre_hooks).map(ResourceExt::name_any)
    }

    #[test]
    fn the_pod_known_before_the_pre_hooks_is_created_before_them() {
        assert_eq!(first(&AgentStart::Pod(pod("live")), true).as_deref(), Some("live"));
        // CSI: the pod that reads the snapshot is the only one the attempt may run.
        assert_eq!(first(&snapshots(false), true).as_deref(), Some("reads-snapshot"));
        // Auto: the snapshot decides which pod runs.
        assert_eq!(first(&snapshots(true), true), None);
        // No pre hooks: no application is paused while the pod is made.
        assert_eq!(first(&snapshots(false), false), None);
    }
}
