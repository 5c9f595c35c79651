//! Reconciler of `StorageGroup`: resolves the Secrets and claims a group refers to, checks
//! its targets through agent pods, and keeps its status (`Ready`, per-target health) current;
//! with `spec.verification`, also creates Verifications of its repository on their own cron
//! (`scheduled_verifications`).

use std::sync::Arc;
use std::time::Duration;

use hort_crds::storage_group::{StorageGroup, StorageGroupSpec, StorageGroupStatus, Strategy};
use hort_protocol::AgentCommand;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use crate::agent::pod::{self, AgentPod};
use crate::agent::{Role, api, check, outcome};
use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::Result;
use crate::events;
use crate::references::{self, Problem, Reference, Resolver};
use crate::{scheduled_verifications, status, verification_plan};

/// Name of the condition that tells whether backups can be written to the group.
pub const READY: &str = "Ready";
/// Name of the condition that tells how far the rotation of `spec.encryption.previousKeySecretRef`
/// got.
pub const KEY_ROTATED: &str = "KeyRotated";
/// Name of the condition that tells whether `spec.verification` is valid and scheduled.
pub const VERIFICATION_SCHEDULED: &str = "VerificationScheduled";
/// Label on the Verifications a group creates (`spec.verification`): the group's name.
pub const STORAGE_GROUP_LABEL: &str = "hort.dev/storage-group";

/// Keys a target's S3 credentials Secret must hold.
pub const S3_CREDENTIAL_KEYS: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

/// Label on check pods: the group generation they check.
pub const GENERATION_LABEL: &str = "hort.dev/generation";
/// Seconds a check pod may run.
pub(crate) const CHECK_DEADLINE_SECONDS: i64 = 300;

/// Reconciles one StorageGroup: resolves its references, runs a check pod (which also
/// initialises the repository) when the last check is older than `checkIntervalSeconds` or
/// was of an older generation, and derives status from the newest finished check.
pub async fn reconcile(cached: Arc<StorageGroup>, ctx: Arc<Context>) -> Result<Action> {
    let name = cached.name_any();
    let Some((namespace, group)) = status::refetch(&ctx.client, &*cached).await? else {
        return Ok(Action::await_change());
    };
    let generation = group.metadata.generation.unwrap_or_default();
    let now = ctx.clock.now();
    let interval = Duration::from_secs(group.spec.check_interval_seconds.into());
    let mut status = group.status.clone().unwrap_or_default();
    status.observed_generation = group.metadata.generation;
    status.target_count = Some(group.spec.targets.len() as u32);

    let problems = Resolver::new(&ctx.client, &namespace)
        .check(&references(&group.spec))
        .await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let checks = api::owned(&pods, group.uid().as_deref(), Role::Check).await?;
    let running = checks.iter().find(|p| !outcome::finished(p));
    let newest_finished = checks.iter().find(|p| outcome::finished(p));
    // Older finished checks are superseded by the newest one, which stays for `kubectl logs`.
    for old in checks.iter().filter(|p| outcome::finished(p)).skip(1) {
        api::delete(&pods, old).await?;
    }

    let mut requeue = interval;
    let observation = if !problems.is_empty() {
        requeue = requeue.min(references::RECHECK_INTERVAL);
        references_missing(&problems)
    } else {
        let due = match newest_finished {
            None => true,
            Some(pod) => {
                pod_generation(pod) != Some(generation)
                    || now.duration_since(outcome::finished_at(pod)).unsigned_abs() >= interval
            }
        };
        let mut started = None;
        if due && running.is_none() {
            let pod = check_pod(&ctx, &group, &namespace, generation, now);
            api::create(&pods, &pod).await?;
            started = pod.metadata.name.clone();
        }
        let rotating = group.spec.encryption.previous_key_secret_ref.is_some()
            && newest_finished.is_none_or(|pod| pod_generation(pod) != Some(generation));
        match newest_finished {
            // Until this generation's check rotated the key, the password in keySecretRef may
            // open nothing: no backup may start with it.
            _ if rotating => Observation {
                type_: READY,
                status: Status::False,
                reason: "KeyRotating",
                message: format!(
                    "check pod {:?} rotates the repository key to spec.encryption.keySecretRef; backups wait for it",
                    running.map(|p| p.name_any()).or(started).unwrap_or_default()
                ),
            },
            Some(pod) => from_check(&group, pod, &mut status),
            None => Observation {
                type_: READY,
                status: Status::Unknown,
                reason: "CheckRunning",
                message: format!(
                    "checking the targets and initialising the repository (pod {:?}){}",
                    running.map(|p| p.name_any()).or(started).unwrap_or_default(),
                    running
                        .and_then(outcome::waiting)
                        .map(|w| format!("; the pod waits: {w}"))
                        .unwrap_or_default()
                ),
            },
        }
    };
    if running.is_some() {
        requeue = requeue.min(Duration::from_secs(10));
    }
    let ready = observation.status == Status::True;
    events::set_condition(&ctx, &group, &mut status.conditions, observation, now).await;
    key_rotation(&ctx, &group, newest_finished, &mut status).await;
    if let Some(next) = verifications(&ctx, &group, &namespace, &mut status).await? {
        let until = next.duration_since(now).unsigned_abs();
        requeue = requeue.min(until.max(Duration::from_secs(1)));
    }
    if group.status.as_ref() != Some(&status) {
        status::apply(&ctx.client, &group, &status).await?;
    }
    ctx.metrics
        .storage_group_ready
        .with_label_values(&[&namespace, &name])
        .set(i64::from(ready));
    Ok(Action::requeue(requeue))
}

/// The `KeyRotated` condition: what this generation's newest check did with
/// `spec.encryption.previousKeySecretRef` (removed when the field is unset).
async fn key_rotation(ctx: &Context, group: &StorageGroup, newest: Option<&Pod>, status: &mut StorageGroupStatus) {
    let Some(previous) = &group.spec.encryption.previous_key_secret_ref else {
        status.conditions.retain(|c| c.type_ != KEY_ROTATED);
        return;
    };
    let generation = group.metadata.generation.unwrap_or_default();
    let report = newest
        .filter(|pod| pod_generation(pod) == Some(generation))
        .and_then(|pod| check::parse_report(&outcome::message(pod), &group.spec).ok())
        .and_then(|report| report.key_rotation);
    let observation = check::key_rotated(&group.spec.encryption.key_secret_ref, previous, report.as_ref());
    let before = conditions::find(&status.conditions, KEY_ROTATED).cloned();
    events::on_transition(ctx, group, before.as_ref(), &observation).await;
    let now = ctx.clock.now();
    conditions::set(&mut status.conditions, observation, group.metadata.generation, now);
}

/// The repository verifications of `spec.verification`: runs them when due and records the
/// `VerificationScheduled` condition (False naming the field when the schedule or time zone is
/// invalid; removed when unset). Returns when the next one is due.
async fn verifications(
    ctx: &Context,
    group: &StorageGroup,
    namespace: &str,
    status: &mut StorageGroupStatus,
) -> Result<Option<Timestamp>> {
    let Some(policy) = &group.spec.verification else {
        status.conditions.retain(|c| c.type_ != VERIFICATION_SCHEDULED);
        status.verification_runs.next_verification_time = None;
        return Ok(None);
    };
    let parsed = verification_plan::parse(
        &policy.schedule,
        policy.time_zone.as_deref(),
        "spec.verification.timeZone",
    );
    let (next, observation) = match parsed {
        Ok(cron) => {
            let runs = &mut status.verification_runs;
            let next = scheduled_verifications::reconcile_group(ctx, group, namespace, policy, &cron, runs).await?;
            let message = match next {
                Some(next) => format!(
                    "the next repository verification (reading {}% of the packs) is due at {next}",
                    policy.read_data_percent
                ),
                None => "the schedule has no further time".into(),
            };
            let observation = Observation {
                type_: VERIFICATION_SCHEDULED,
                status: Status::True,
                reason: "Scheduled",
                message,
            };
            (next, observation)
        }
        Err(invalid) => {
            status.verification_runs.next_verification_time = None;
            let observation = Observation {
                type_: VERIFICATION_SCHEDULED,
                status: Status::False,
                reason: "InvalidSchedule",
                message: format!("{invalid}; no repository verification runs until it is fixed"),
            };
            (None, observation)
        }
    };
    let before = conditions::find(&status.conditions, VERIFICATION_SCHEDULED).cloned();
    if observation.status == Status::False {
        events::on_transition(ctx, group, before.as_ref(), &observation).await;
    }
    let now = ctx.clock.now();
    conditions::set(&mut status.conditions, observation, group.metadata.generation, now);
    Ok(next)
}

/// The `Ready` condition and target status from a finished check pod.
fn from_check(group: &StorageGroup, pod: &Pod, status: &mut StorageGroupStatus) -> Observation {
    let failed = |reason: &'static str, message: String| Observation {
        type_: READY,
        status: Status::False,
        reason,
        message,
    };
    let message = outcome::message(pod);
    let succeeded = outcome::phase(pod) == "Succeeded";
    let report = match (succeeded, check::parse_report(&message, &group.spec)) {
        (true, Ok(report)) => report,
        // A failed check that still reported its targets: say which target failed and why.
        (false, Ok(report)) if report.repository_id.is_none() => report,
        (false, _) => {
            return failed(
                "CheckFailed",
                format!("check pod {:?} failed: {}", pod.name_any(), outcome::failure(pod, 600)),
            );
        }
        (true, Err(e)) => return failed("CheckFailed", format!("check pod {:?}: {e}", pod.name_any())),
    };
    let at = Time(outcome::finished_at(pod));
    status.targets = check::target_statuses(&group.spec, &report, &at);
    status.used_size = check::used_size(&status.targets);
    let observation = check::readiness(&group.spec, &status.targets);
    match report.repository_id {
        // The agent refuses this too; the recorded identity is never replaced.
        Some(id) if status.repository_id.as_ref().is_some_and(|known| *known != id) => failed(
            "RepositoryChanged",
            format!(
                "check pod {:?} found repository {id}, not {}, the one this group recorded",
                pod.name_any(),
                status.repository_id.as_deref().unwrap_or_default()
            ),
        ),
        Some(id) => {
            status.repository_id = Some(id);
            observation
        }
        // Every target may answer and still the repository cannot be opened (a wrong
        // password, say): the report says why.
        None if observation.status == Status::True => failed(
            "CheckFailed",
            format!(
                "check pod {:?} could not open the repository: {}",
                pod.name_any(),
                report.error.as_deref().unwrap_or("the agent gave no reason")
            ),
        ),
        None => observation,
    }
}

fn references_missing(problems: &[Problem]) -> Observation {
    Observation {
        type_: READY,
        status: Status::False,
        reason: if problems.iter().any(|p| matches!(p, Problem::NotUsable { .. })) {
            "ReferenceNotUsable"
        } else {
            "ReferenceNotFound"
        },
        message: references::describe(problems),
    }
}

fn pod_generation(pod: &Pod) -> Option<i64> {
    pod.labels().get(GENERATION_LABEL)?.parse().ok()
}

/// The check of a group: one that has recorded its repository checks that the targets still
/// hold that one; only a group without one may create it (the agent does so only when every
/// target answers and none holds a repository), so a check never splits a group. A `Mirror`
/// group's check also copies to each target what it lacks (after an outage, or a target
/// added later). With `snapshots` (a tenant's repository) it also counts the snapshots.
pub(crate) fn check_command(
    recorded: Option<String>,
    strategy: Strategy,
    rotate_key: bool,
    snapshots: bool,
) -> AgentCommand {
    AgentCommand::Check {
        init: recorded.is_none(),
        resync: recorded.is_some() && strategy == Strategy::Mirror,
        repository_id: recorded,
        rotate_key,
        snapshots,
    }
}

/// The pod that checks the group's targets and initialises its repository if absent; with
/// `spec.encryption.previousKeySecretRef`, it first rotates the key (the previous password in
/// its own variable, from the Secret by reference).
fn check_pod(ctx: &Context, group: &StorageGroup, namespace: &str, generation: i64, now: Timestamp) -> Pod {
    let name = format!("{}-check-{generation}-{}", group.name_any(), now.as_second());
    let previous = group.spec.encryption.previous_key_secret_ref.as_ref();
    let mut repository = pod::repository_access(&group.spec);
    if let Some(previous) = previous {
        let variable = hort_protocol::env::PREVIOUS_PASSWORD;
        repository
            .env
            .push(pod::secret_env(variable, &previous.name, &previous.key));
    }
    pod::build(
        &ctx.agent,
        AgentPod {
            name,
            namespace: namespace.into(),
            owner: group
                .controller_owner_ref(&())
                .expect("a stored object has a name and uid"),
            labels: [(GENERATION_LABEL.to_string(), generation.to_string())].into(),
            command: check_command(
                group.status.as_ref().and_then(|s| s.repository_id.clone()),
                group.spec.strategy,
                previous.is_some(),
                false,
            ),
            repository,
            overrides: group.spec.agent.as_ref(),
            active_deadline_seconds: Some(CHECK_DEADLINE_SECONDS),
            node: None,
        },
    )
}

/// The Secrets and claims the agent pods of a group use: each must exist and be marked usable
/// by its owner.
pub fn references(spec: &StorageGroupSpec) -> Vec<Reference> {
    let key = &spec.encryption.key_secret_ref;
    let mut references = vec![Reference::secret(
        &key.name,
        &[key.key.as_str()],
        "spec.encryption.keySecretRef",
    )];
    if let Some(previous) = &spec.encryption.previous_key_secret_ref {
        references.push(Reference::secret(
            &previous.name,
            &[previous.key.as_str()],
            "spec.encryption.previousKeySecretRef",
        ));
    }
    for (i, target) in spec.targets.iter().enumerate() {
        if let Some(s3) = &target.s3 {
            let field = format!("spec.targets[{i}].s3.credentialsSecretRef");
            references.push(Reference::secret(
                &s3.credentials_secret_ref.name,
                &S3_CREDENTIAL_KEYS,
                field,
            ));
        }
        if let Some(pvc) = &target.pvc {
            references.push(Reference::claim(
                &pvc.claim_name,
                format!("spec.targets[{i}].pvc.claimName"),
            ));
        }
    }
    references
}

/// Whether one of the group's targets is the claim named `name`.
pub fn refers_to_claim(spec: &StorageGroupSpec, name: &str) -> bool {
    spec.targets
        .iter()
        .any(|t| t.pvc.as_ref().is_some_and(|p| p.claim_name == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_group_without_a_recorded_repository_may_create_one() {
        for strategy in [Strategy::Spread, Strategy::Mirror] {
            assert_eq!(
                check_command(None, strategy, false, false),
                AgentCommand::Check {
                    init: true,
                    repository_id: None,
                    resync: false,
                    rotate_key: false,
                    snapshots: false,
                }
            );
        }
        assert_eq!(
            check_command(Some("ab".into()), Strategy::Spread, false, false).to_args(),
            ["check", "--repository-id", "ab"],
            "a recorded repository is checked, never created again"
        );
        assert_eq!(
            check_command(Some("ab".into()), Strategy::Mirror, false, false).to_args(),
            ["check", "--resync", "--repository-id", "ab"],
            "a Mirror group brings its targets level"
        );
        assert_eq!(
            check_command(Some("ab".into()), Strategy::Spread, true, false).to_args(),
            ["check", "--rotate-key", "--repository-id", "ab"],
            "previousKeySecretRef rotates the key first"
        );
        assert_eq!(
            check_command(Some("ab".into()), Strategy::Spread, false, true).to_args(),
            ["check", "--snapshots", "--repository-id", "ab"],
            "a tenant's check counts its snapshots"
        );
    }
}
