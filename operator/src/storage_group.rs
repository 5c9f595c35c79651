//! Reconciler of `StorageGroup`: resolves the Secrets and claims a group refers to and keeps
//! its status (`Ready` condition, target count) current.

use std::sync::Arc;
use std::time::Duration;

use hort_crds::storage_group::{StorageGroup, StorageGroupSpec};
use kube::ResourceExt;
use kube::runtime::controller::Action;

use crate::conditions::{self, Observation, Status};
use crate::context::Context;
use crate::error::Result;
use crate::events;
use crate::references::{self, Problem, Resolver};
use crate::status;

/// Name of the condition that tells whether backups can be written to the group.
pub const READY: &str = "Ready";

/// Keys a target's S3 credentials Secret must hold.
pub const S3_CREDENTIAL_KEYS: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

/// Reconciles one StorageGroup.
pub async fn reconcile(group: Arc<StorageGroup>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = status::namespace_of(&*group)?;
    let name = group.name_any();
    let resolver = Resolver::new(&ctx.client, &namespace);
    let problems = check_references(&group.spec, &resolver).await?;
    let observation = readiness(&problems);
    let ready = observation.status == Status::True;

    let mut status = group.status.clone().unwrap_or_default();
    status.observed_generation = group.metadata.generation;
    status.target_count = Some(group.spec.targets.len() as u32);
    let before = conditions::find(&status.conditions, READY).cloned();
    conditions::set(
        &mut status.conditions,
        observation.clone(),
        group.metadata.generation,
        ctx.clock.now(),
    );
    events::on_transition(&ctx, &*group, before.as_ref(), &observation).await;
    if group.status.as_ref() != Some(&status) {
        status::apply::<StorageGroup>(&ctx.client, &namespace, &name, &status).await?;
    }
    ctx.metrics
        .storage_group_ready
        .with_label_values(&[&namespace, &name])
        .set(i64::from(ready));
    Ok(Action::requeue(Duration::from_secs(
        group.spec.check_interval_seconds.into(),
    )))
}

/// Every Secret and claim the spec refers to that does not resolve.
async fn check_references(spec: &StorageGroupSpec, resolver: &Resolver) -> Result<Vec<Problem>> {
    let key = &spec.encryption.key_secret_ref;
    let mut problems = resolver
        .secret_keys(&key.name, &[key.key.as_str()], "spec.encryption.keySecretRef")
        .await?;
    for (i, target) in spec.targets.iter().enumerate() {
        if let Some(s3) = &target.s3 {
            let field = format!("spec.targets[{i}].s3.credentialsSecretRef");
            problems.extend(
                resolver
                    .secret_keys(&s3.credentials_secret_ref.name, &S3_CREDENTIAL_KEYS, &field)
                    .await?,
            );
        }
        if let Some(pvc) = &target.pvc {
            let field = format!("spec.targets[{i}].pvc.claimName");
            problems.extend(resolver.claim(&pvc.claim_name, &field).await?);
        }
    }
    Ok(problems)
}

/// Whether the group's spec refers to the Secret (`claim == false`) or claim named `name`.
pub fn refers_to(spec: &StorageGroupSpec, name: &str, claim: bool) -> bool {
    if claim {
        spec.targets
            .iter()
            .any(|t| t.pvc.as_ref().is_some_and(|p| p.claim_name == name))
    } else {
        spec.encryption.key_secret_ref.name == name
            || spec
                .targets
                .iter()
                .any(|t| t.s3.as_ref().is_some_and(|s| s.credentials_secret_ref.name == name))
    }
}

/// The `Ready` condition implied by the reference problems found.
///
/// With every reference resolved the group is not yet `Ready`: that needs the targets to be
/// checked for reachability and the repository to be initialised, which the agent does.
pub fn readiness(problems: &[Problem]) -> Observation {
    if problems.is_empty() {
        Observation {
            type_: READY,
            status: Status::Unknown,
            reason: "TargetsNotChecked",
            message: "all referenced Secrets and claims exist; targets have not been checked yet".into(),
        }
    } else {
        Observation {
            type_: READY,
            status: Status::False,
            reason: "ReferenceNotFound",
            message: references::describe(problems),
        }
    }
}
