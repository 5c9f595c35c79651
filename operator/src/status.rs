//! Reading objects fresh and writing their status subresource by server-side apply, as the
//! operator's field manager.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::FIELD_MANAGER;

/// Reads object `name` from the API server rather than from the controller's cache. A
/// reconcile triggered by another object's event may be handed a cached copy older than its
/// own last status write; computing a status from that copy would undo the write.
pub async fn fresh<K>(client: &Client, namespace: &str, name: &str) -> kube::Result<Option<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    Api::<K>::namespaced(client.clone(), namespace).get_opt(name).await
}

/// The namespace of the object a reconcile was handed and a fresh copy of it (see [`fresh`]);
/// `None` when the object is gone.
pub async fn refetch<K>(client: &Client, cached: &K) -> crate::error::Result<Option<(String, K)>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    let namespace = namespace_of(cached)?;
    let name = cached.meta().name.clone().unwrap_or_default();
    Ok(fresh::<K>(client, &namespace, &name).await?.map(|obj| (namespace, obj)))
}

/// The namespace of a namespaced object, or an error naming its kind.
pub fn namespace_of<K: Resource<DynamicType = ()>>(obj: &K) -> crate::error::Result<String> {
    obj.meta()
        .namespace
        .clone()
        .ok_or(crate::error::Error::MissingObjectField {
            kind: std::any::type_name::<K>().rsplit("::").next().unwrap_or("object"),
            field: "metadata.namespace",
        })
}

/// Applies `status` as the whole status of `obj`, sending only `apiVersion`, `kind`, the
/// object's `resourceVersion` and `status`. The resourceVersion makes the write conditional:
/// if the object changed since `obj` was read, the API server answers 409 Conflict and the
/// reconcile is retried from a fresh read instead of overwriting the newer state. Returns the
/// object as written.
pub async fn apply<K>(client: &Client, obj: &K, status: &impl Serialize) -> crate::error::Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    let namespace = namespace_of(obj)?;
    let name = obj.meta().name.clone().ok_or(crate::error::Error::MissingObjectField {
        kind: std::any::type_name::<K>().rsplit("::").next().unwrap_or("object"),
        field: "metadata.name",
    })?;
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"resourceVersion": obj.meta().resource_version},
        "status": status,
    });
    Ok(api
        .patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body))
        .await?)
}
