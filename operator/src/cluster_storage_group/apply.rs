//! The API calls of a ClusterStorageGroup's reconcile: its proxy (certificates, Deployment and
//! Service, by server-side apply), its tenants' password Secrets (written, corrected, deleted
//! when a namespace leaves the selection) and check pods (started and cleaned up as
//! [`tenants::plan`] says).

use hort_crds::ClusterStorageGroup;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::build::{self, SecretAction, TenantCheck};
use super::certs::{self, ProxyTls, Renewal};
use super::proxy::{self, ProxyDeployment};
use super::tenants::{self, Inputs, Plan};
use super::{Dereferenced, check_interval, group_ready};
use crate::agent::{Role, api};
use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};

/// The group's proxy as applied.
#[derive(Debug)]
pub struct Proxy {
    /// The CA certificate (PEM) tenants check the proxy's certificate against.
    pub ca: String,
    /// Whether its Deployment has an available replica; why not otherwise.
    pub ready: Result<Option<String>, String>,
}

/// Keeps the group's proxy in the operator's namespace: its certificates (reused while good,
/// see [`certs::renewal`]), Deployment and Service.
pub async fn proxy(ctx: &Context, group: &ClusterStorageGroup, found: &Dereferenced, now: Timestamp) -> Result<Proxy> {
    let operator = &ctx.operator_namespace;
    let name = group.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), operator);
    let secret_name = proxy::tls_secret_name(&name);
    let owned = |s: &Secret| {
        s.owner_references()
            .iter()
            .any(|o| Some(&o.uid) == group.uid().as_ref())
    };
    let stored = secrets
        .get_opt(&secret_name)
        .await?
        .filter(owned)
        .and_then(|s| ProxyTls::from_data(s.data.as_ref()?));
    let names = proxy::dns_names(&name, operator);
    let renewal = certs::renewal(stored.as_ref(), &names, now);
    let tls = match (renewal, stored) {
        (Renewal::Keep, Some(tls)) => tls,
        (_, stored) => {
            let tls = certs::issue(stored.as_ref(), renewal, &name, &names, now)
                .map_err(|e| Error::Certificate(format!("group {name:?}: {e}")))?;
            let secret = proxy::tls_secret(group, operator, &tls);
            secrets.patch(&secret_name, &params, &Patch::Apply(&secret)).await?;
            tracing::info!(group = %name, secret = %secret_name, ?renewal, "issued the proxy's certificate");
            tls
        }
    };
    let wanted = proxy::deployment(
        &ctx.agent,
        ProxyDeployment {
            group,
            storage_group: &found.storage_group,
            namespace: operator,
            tls_hash: proxy::tls_hash(&tls),
        },
    );
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), operator);
    let service_name = proxy::proxy_service_name(&name);
    let applied = deployments
        .patch(&service_name, &params, &Patch::Apply(&wanted))
        .await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), operator);
    services
        .patch(&service_name, &params, &Patch::Apply(&proxy::service(group, operator)))
        .await?;
    Ok(Proxy {
        ca: tls.ca_cert,
        ready: proxy::ready(&applied),
    })
}

/// Plans the tenants, keeps their password Secrets (with the proxy's CA `ca`), deletes
/// superseded check pods and starts the planned ones. A Secret that cannot be written fails its
/// namespace (named in the plan), not the reconcile.
pub async fn tenants(
    ctx: &Context,
    group: &ClusterStorageGroup,
    found: &Dereferenced,
    ca: &str,
    now: Timestamp,
) -> Result<Plan> {
    let operator = &ctx.operator_namespace;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), operator);
    let owned = api::owned(&pods, group.uid().as_deref(), Role::Check).await?;
    let recorded = group.status.as_ref().map(|s| &s.tenants[..]).unwrap_or_default();
    let mut plan = tenants::plan(&Inputs {
        selected: &found.selected,
        recorded,
        pods: &owned,
        spec: &found.storage_group.spec,
        group_ready: group_ready(&found.storage_group).is_ok(),
        interval: check_interval(&found.storage_group),
        now,
    });
    for name in &plan.delete {
        if let Some(pod) = owned.iter().find(|p| &p.name_any() == name) {
            api::delete(&pods, pod).await?;
        }
    }
    for tenant in &mut plan.tenants {
        let password = found.root.password(&tenant.namespace);
        let wanted = build::password_secret(group, &tenant.namespace, &password, ca);
        if let Some(problem) = password_secret(ctx, &wanted).await? {
            tenant.message = Some(problem);
            plan.failing.insert(tenant.namespace.clone());
        }
    }
    for left in recorded.iter().filter(|t| !found.selected.contains(&t.namespace)) {
        forget_password_secret(ctx, group, &left.namespace).await?;
    }
    for (namespace, id) in &plan.start {
        let check = TenantCheck {
            group,
            storage_group: &found.storage_group,
            operator_namespace: operator,
            namespace,
            recorded: id.clone(),
            now,
        };
        api::create(&pods, &build::check_pod(&ctx.agent, check)).await?;
    }
    Ok(plan)
}

/// Makes the tenant password Secret `wanted` exist as built (server-side apply); the problem,
/// naming the Secret, when it cannot: one of that name the group does not own, or a refused
/// write.
async fn password_secret(ctx: &Context, wanted: &Secret) -> Result<Option<String>> {
    let namespace = wanted.namespace().unwrap_or_default();
    let name = wanted.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let found = secrets.get_opt(&name).await?;
    match build::secret_action(found.as_ref(), wanted) {
        SecretAction::Keep => Ok(None),
        SecretAction::Foreign => Ok(Some(format!(
            "Secret {name:?} exists in the namespace and is not this group's; rename or delete it so the group can \
             write the namespace's repository password there"
        ))),
        SecretAction::Write => {
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match secrets.patch(&name, &params, &Patch::Apply(wanted)).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(e)) => Ok(Some(format!(
                    "writing Secret {name:?} with the namespace's repository password failed: {}",
                    e.message
                ))),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Deletes the password Secret of a namespace that left the group's selection, if the group
/// owns it (it can be derived again should the namespace return).
async fn forget_password_secret(ctx: &Context, group: &ClusterStorageGroup, namespace: &str) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let name = build::password_secret_name(&group.name_any());
    let Some(secret) = secrets.get_opt(&name).await? else {
        return Ok(());
    };
    if !secret
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == group.uid().as_ref())
    {
        return Ok(());
    }
    match secrets.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
