//! Reconciler of `Verification`: resolves the snapshot, waits for the StorageGroup, runs the
//! agent pod (with a throwaway database server, or a temporary claim and the user's command
//! over it; or, for the repository, reading its packs), records what was checked, and
//! removes the scratch resources (pod, claim, password Secret) when the run ends.

use std::sync::Arc;

use hort_crds::common::Phase;
use hort_crds::verification::{Verification, VerificationCommand, VerificationStatus};
use hort_protocol::VerificationReport;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::agent::pod::{self, AgentPod};
use crate::agent::{api, outcome, verify, verify_command, verify_repository};
use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::group_access;
use crate::references;
use crate::restore_request::{COMPLETE, FAILED};
use crate::schedule::SCHEDULE_LABEL;
use crate::snapshot_source::{self, Resolved, SourceStatus};
use crate::status;
use crate::storage_group::STORAGE_GROUP_LABEL;

/// Reason of a run whose checks ran and found a failure.
const CHECK_FAILED: &str = "CheckFailed";
/// Reason of a run that could not check (the pod failed without a report).
const VERIFY_FAILED: &str = "VerificationFailed";
/// Reason of a run whose throwaway database server never started.
const SERVER_FAILED: &str = "ServerFailed";

/// Reconciles one Verification.
pub async fn reconcile(cached: Arc<Verification>, ctx: Arc<Context>) -> Result<Action> {
    let Some((namespace, verification)) = status::refetch(&ctx.client, &*cached).await? else {
        return Ok(Action::await_change());
    };
    let mut status = verification.status.clone().unwrap_or_default();
    if status.phase.is_terminal() {
        // Also after a restart between the status write and the cleanup.
        remove_scratch(&ctx, &namespace, &verification).await?;
        return Ok(Action::await_change());
    }
    let generation = verification.metadata.generation;
    let now = ctx.clock.now();
    status.observed_generation = generation;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);

    let mut action = Action::await_change();
    let command = verification.spec.volume.as_ref().and_then(|v| v.command.as_ref());
    let ended = match &status.agent_pod {
        Some(name) => match pods.get_opt(name).await? {
            Some(pod)
                if !outcome::finished(&pod)
                    && let Some(why) = verify::server_failed(&pod) =>
            {
                let log = api::log_tail(&pods, name, verify::SERVER_CONTAINER).await;
                let log = outcome::tail(log.trim(), 1024);
                Some(Err((SERVER_FAILED, format!("{why}; its log ends: {log}"))))
            }
            Some(pod) if !outcome::finished(&pod) => {
                match command.and_then(|c| Some((c, verify_command::deadline(&pod, c)?))) {
                    Some((command, deadline)) if now >= deadline => {
                        let log = api::log_tail(&pods, name, verify_command::COMMAND_CONTAINER).await;
                        let late = Err(verify_command::timed_out(command, &log));
                        Some(ended(&pod, Some((command, late))))
                    }
                    Some((_, deadline)) => {
                        let wait = deadline.duration_since(now).unsigned_abs();
                        action = Action::requeue(wait + std::time::Duration::from_secs(1));
                        None
                    }
                    None => None,
                }
            }
            Some(pod) => Some(ended(&pod, command.map(|c| (c, verify_command::result(&pod))))),
            None => Some(Err((VERIFY_FAILED, format!("agent pod {name:?} disappeared")))),
        },
        None => match start(&ctx, &verification, &mut status, now).await? {
            Start::Started => None,
            Start::Waiting => {
                action = Action::requeue(references::RECHECK_INTERVAL);
                None
            }
            Start::NotAllowed(why) => Some(Err((group_access::NAMESPACE_NOT_ALLOWED, why))),
        },
    };
    let passed = match ended {
        Some(Ok(report)) if verification.spec.repository.is_some() => {
            Some(verify_repository::record(&report, &mut status))
        }
        Some(Ok(report)) => {
            let passed = verify::record(&report, &mut status);
            let kind = verify::data_kind(&verification.spec);
            ctx.metrics
                .restore_duration
                .with_label_values(&[&namespace, kind])
                .observe(report.restore_seconds);
            Some(passed)
        }
        Some(Err((reason, why))) => {
            status.message = Some(format!("verification failed before its checks ran: {why}"));
            let failed = Observation {
                type_: FAILED,
                status: Status::True,
                reason,
                message: why,
            };
            publish(&ctx, &verification, EventType::Warning, reason, failed.message.clone()).await;
            conditions::set(&mut status.conditions, failed, generation, now);
            status.phase = Phase::Failed;
            None
        }
        None => None,
    };
    if let Some(passed) = passed {
        let message = status.message.clone().unwrap_or_default();
        let (type_, reason, phase, event) = if passed {
            (COMPLETE, "Verified", Phase::Succeeded, EventType::Normal)
        } else {
            (FAILED, CHECK_FAILED, Phase::Failed, EventType::Warning)
        };
        publish(&ctx, &verification, event, reason, message.clone()).await;
        let observation = Observation {
            type_,
            status: Status::True,
            reason,
            message,
        };
        conditions::set(&mut status.conditions, observation, generation, now);
        status.phase = phase;
    }
    if status.phase.is_terminal() {
        status.completion_time = Some(Time(now));
    }
    if verification.status.as_ref() != Some(&status) {
        status::apply(&ctx.client, &verification, &status).await?;
    }
    if status.phase.is_terminal() {
        let result = if status.phase == Phase::Succeeded {
            "succeeded"
        } else {
            "failed"
        };
        ctx.metrics.verifications.with_label_values(&[&namespace, result]).inc();
        if status.phase == Phase::Succeeded {
            let seconds = now.as_millisecond() as f64 / 1000.0;
            if verification.spec.repository.is_some() {
                let group = &verification.spec.storage_group_ref.name;
                ctx.metrics.record_repository_verified(&namespace, group, seconds);
            } else {
                let schedule = verification.labels().get(SCHEDULE_LABEL).cloned().unwrap_or_default();
                ctx.metrics.record_verified(&namespace, &schedule, seconds);
            }
        }
        remove_scratch(&ctx, &namespace, &verification).await?;
    }
    Ok(action)
}

/// What an ended agent pod says ([`verify_command::report_of`]), or why the run failed.
fn ended(
    pod: &Pod,
    command: Option<(&VerificationCommand, std::result::Result<(), String>)>,
) -> std::result::Result<VerificationReport, (&'static str, String)> {
    verify_command::report_of(pod, command).map_err(|why| (VERIFY_FAILED, why))
}

async fn publish(ctx: &Context, verification: &Verification, type_: EventType, reason: &str, note: String) {
    events::publish(ctx, verification, type_, reason, note).await;
}

/// What [`start`] did.
enum Start {
    /// The agent pod was created.
    Started,
    /// The snapshot or the group is not ready yet (why, in `status`).
    Waiting,
    /// The namespace may not use the shared group: the Verification fails.
    NotAllowed(String),
}

/// Resolves the snapshot and the group; when both are ready, creates the password Secret (for
/// a database) and the agent pod.
async fn start(
    ctx: &Context,
    verification: &Verification,
    status: &mut VerificationStatus,
    now: Timestamp,
) -> Result<Start> {
    let namespace = status::namespace_of(verification)?;
    let spec = &verification.spec;
    let source_status = SourceStatus {
        phase: &mut status.phase,
        snapshot_id: &mut status.snapshot_id,
        message: &mut status.message,
        conditions: &mut status.conditions,
    };
    let resolved = snapshot_source::resolve(
        ctx,
        verification,
        &namespace,
        spec.source.as_ref(),
        &spec.storage_group_ref,
        source_status,
        now,
    );
    let group = match resolved.await? {
        Resolved::Ready(group) => group,
        Resolved::Waiting => return Ok(Start::Waiting),
        Resolved::Refused(why) => return Ok(Start::NotAllowed(why)),
    };
    let snapshot = status.snapshot_id.clone();
    // The group's own Secrets and claims are checked by the group (it would not be Ready).
    let name = verify::pod_name(&verification.name_any());
    let owner = verification
        .controller_owner_ref(&())
        .expect("a stored object has a name and uid");
    let mut access = group.access(None);
    let command = match &spec.repository {
        Some(repository) => Some(verify_repository::command(repository)),
        None => verify::command(spec, snapshot.as_deref(), &name, &mut access),
    };
    let command = command.ok_or(Error::MissingObjectField {
        kind: "Verification",
        field: "spec.database, spec.volume or spec.repository",
    })?;
    if let Some(db) = &spec.database {
        create_secret(ctx, &namespace, &name, verify::superuser(db), owner.clone()).await?;
    }
    let mut agent_pod = pod::build(
        &ctx.agent,
        AgentPod {
            name: name.clone(),
            namespace: namespace.clone(),
            owner,
            labels: [SCHEDULE_LABEL, STORAGE_GROUP_LABEL]
                .into_iter()
                .filter_map(|label| Some((label.to_string(), verification.labels().get(label)?.clone())))
                .collect(),
            command,
            repository: access,
            overrides: spec.agent.as_ref(),
            active_deadline_seconds: spec.active_deadline_seconds,
            node: None,
        },
    );
    if let Some(db) = &spec.database {
        verify::add_server(&mut agent_pod, db, &name);
    }
    let command = spec.volume.as_ref().and_then(|v| v.command.as_ref());
    if let Some(command) = command {
        verify_command::add_command(&mut agent_pod, command);
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    api::create(&pods, &agent_pod).await?;
    status.phase = Phase::Running;
    status.agent_pod = Some(name.clone());
    status.start_time = Some(Time(now));
    let then = command
        .map(|c| format!(", then runs the command of image {}", c.image))
        .unwrap_or_default();
    status.message = Some(match (&spec.database, &spec.repository) {
        (Some(db), _) => format!(
            "agent pod {name:?} restores the snapshot into a throwaway {} server and checks it",
            verify::kind(db).display_name()
        ),
        (None, Some(repository)) => format!(
            "agent pod {name:?} checks the repository's index and snapshots and reads {}% of its packs",
            repository.read_data_percent
        ),
        (None, None) => {
            format!("agent pod {name:?} restores the snapshot into a temporary claim and checks it{then}")
        }
    });
    publish(
        ctx,
        verification,
        EventType::Normal,
        "VerificationStarted",
        status.message.clone().unwrap_or_default(),
    )
    .await;
    Ok(Start::Started)
}

/// Creates the Secret with the throwaway server's superuser and a fresh random password,
/// owned by the Verification. One that exists (from an earlier reconcile whose status write
/// was lost) is kept: the server may already run with its password.
async fn create_secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
    user: &str,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: Some(vec![owner]),
            labels: Some([("app.kubernetes.io/managed-by".to_string(), "hort-operator".to_string())].into()),
            ..ObjectMeta::default()
        },
        data: Some(
            [
                (verify::SECRET_KEYS[0].to_string(), ByteString(user.as_bytes().to_vec())),
                (
                    verify::SECRET_KEYS[1].to_string(),
                    ByteString(random_password()?.into_bytes()),
                ),
            ]
            .into(),
        ),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 32 random hexadecimal digits from the operating system's generator.
fn random_password() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Deletes the run's agent pod (its ephemeral claim goes with it) and password Secret; ones
/// already gone are fine.
async fn remove_scratch(ctx: &Context, namespace: &str, verification: &Verification) -> Result<()> {
    let name = verify::pod_name(&verification.name_any());
    delete_named::<Pod>(ctx, namespace, &name).await?;
    if verification.spec.database.is_some() {
        delete_named::<Secret>(ctx, namespace, &name).await?;
    }
    Ok(())
}

async fn delete_named<K>(ctx: &Context, namespace: &str, name: &str) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match Api::<K>::namespaced(ctx.client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
