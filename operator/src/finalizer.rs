//! The finalizer of objects that run agent pods (BackupJob, RestoreRequest, Verification): when such an object
//! is deleted, its agent pods are deleted first, so a running backup or restore stops with its
//! object instead of running on unowned until the garbage collector gets to it, and an object
//! recreated under the same name never meets the old object's pods.

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::{Role, api};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::status;

/// The finalizer Hort puts on BackupJobs, RestoreRequests and Verifications.
pub const FINALIZER: &str = "hort.dev/agent-pods";

/// Runs `apply` for a live object; for one being deleted, deletes its agent pods of `role` and
/// then lets the deletion finish. Adds the finalizer on first sight (kube-runtime's helper).
pub async fn with_finalizer<K, F, Fut>(ctx: Arc<Context>, obj: Arc<K>, role: Role, apply: F) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action>>,
{
    let namespace = status::namespace_of(&*obj)?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer::finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(obj) => apply(obj, ctx.clone()).await,
            Event::Cleanup(obj) => {
                for pod in api::owned(&pods, obj.meta().uid.as_deref(), role).await? {
                    api::delete(&pods, &pod).await?;
                }
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other @ (finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer) => {
            Error::Finalizer(other.to_string())
        }
    })
}
