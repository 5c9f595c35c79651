//! Grants the chart may hold although no request in an audit log shows them used: each is
//! authorized inside another request, where the audit log does not record it, or only on a
//! Kubernetes release newer than the one tested. Every entry says why, so a reader can check it.

/// A verb on resources of one API group that the chart may grant although no request of its
/// own uses it.
#[derive(Debug)]
pub struct Allowed {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// The resources the entry covers.
    pub resources: &'static [&'static str],
    /// Verb.
    pub verb: &'static str,
    /// Why no request of its own shows it.
    pub reason: &'static str,
}

/// The allowlist.
pub const ALLOWED: &[Allowed] = &[
    Allowed {
        group: "apiextensions.k8s.io",
        resources: &["customresourcedefinitions"],
        verb: "create",
        reason: "operator/src/crd_install.rs applies the CRDs (a server-side apply is a patch \
                 request); when a CRD does not exist yet, kube-apiserver also authorizes that \
                 patch as create (apiserver/pkg/endpoints/handlers/patch.go, \
                 createAuthorizerAttributes). In the e2e Helm has installed crds/ first.",
    },
    Allowed {
        group: "apiextensions.k8s.io",
        resources: &["customresourcedefinitions"],
        verb: "watch",
        reason: "operator/src/crd_install.rs waits for each CRD to be Established with \
                 kube-runtime's await_condition: a list, and a watch only when the list does \
                 not show it Established yet, i.e. just after the operator created it. In the \
                 e2e the CRDs exist before the operator starts.",
    },
    Allowed {
        group: "hort.dev",
        resources: &[
            "storagegroups/finalizers",
            "backupjobs/finalizers",
            "schedules/finalizers",
            "restorerequests/finalizers",
            "verifications/finalizers",
        ],
        verb: "update",
        reason: "agent pods, scheduled BackupJobs and Verifications, and a Verification's \
                 password Secret carry a controller owner reference with \
                 blockOwnerDeletion; the admission plugin OwnerReferencesPermissionEnforcement \
                 (on in kind-tests/cluster.sh, and on OpenShift) then checks update on the \
                 owner's finalizers inside the create request. A missing grant shows as a 403 \
                 on that create.",
    },
    Allowed {
        group: "hort.dev",
        resources: &["clusterstoragegroups/finalizers"],
        verb: "update",
        reason: "a ClusterStorageGroup's tenant check pods and password Secrets carry a \
                 controller owner reference with blockOwnerDeletion \
                 (operator/src/cluster_storage_group/build.rs); OwnerReferencesPermissionEnforcement \
                 checks update on the group's finalizers inside those create requests.",
    },
    Allowed {
        group: "apps",
        resources: &["deployments"],
        verb: "create",
        reason: "a ClusterStorageGroup's proxy Deployment is written by server-side apply (a \
                 patch request, which the e2e case tenants makes); when it is missing, \
                 kube-apiserver also authorizes that patch as create \
                 (apiserver/pkg/endpoints/handlers/patch.go, createAuthorizerAttributes).",
    },
    Allowed {
        group: "",
        resources: &["services"],
        verb: "create",
        reason: "a ClusterStorageGroup's proxy Service is written by server-side apply (a patch \
                 request, which the e2e case tenants makes); when it is missing, kube-apiserver \
                 also authorizes that patch as create.",
    },
    Allowed {
        group: "",
        resources: &["persistentvolumeclaims/finalizers"],
        verb: "update",
        reason: "with populator.enabled, the populator's prime claim and restore pod name the \
                 claim they populate as controller owner with blockOwnerDeletion \
                 (operator/src/populator/build.rs); OwnerReferencesPermissionEnforcement checks \
                 update on the claim's finalizers inside those create requests.",
    },
    Allowed {
        group: "",
        resources: &["pods/exec"],
        verb: "create",
        reason: "hooks (operator/src/hooks.rs) exec over a websocket, a GET that Kubernetes \
                 1.34 authorizes as get; from 1.35 the feature gate \
                 AuthorizePodWebsocketUpgradeCreatePermission (beta, on by default) also \
                 requires create (kubernetes/kubernetes#134577).",
    },
];

/// The entry that covers `verb` on `resource` of `group`, if any.
pub fn find(group: &str, resource: &str, verb: &str) -> Option<&'static Allowed> {
    ALLOWED
        .iter()
        .find(|a| a.group == group && a.verb == verb && a.resources.contains(&resource))
}
