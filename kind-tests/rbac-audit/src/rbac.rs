//! The rights a rendered chart (`helm template`, `helm get manifest`) gives one service
//! account: the rules of its Roles and ClusterRoles, through its RoleBindings and
//! ClusterRoleBindings, one verb on one resource at a time.

use std::fmt;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::audit::Request;

/// Where a grant applies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Every namespace and the cluster-scoped objects (a ClusterRoleBinding).
    Cluster,
    /// One namespace (a RoleBinding).
    Namespace(String),
}

/// One verb on one resource, granted by one rule of a role.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// The role holding the rule, `Kind/name`.
    pub role: String,
    /// API group; empty for the core group.
    pub group: String,
    /// Resource, `resource/subresource` for a subresource.
    pub resource: String,
    /// Verb.
    pub verb: String,
    /// The rule's `resourceNames`; empty when it names none (every object).
    pub names: Vec<String>,
    /// Where the binding makes the rule apply.
    pub scope: Scope,
}

impl Grant {
    /// Whether this grant authorizes the request (wildcards included).
    pub fn allows(&self, request: &Request) -> bool {
        let any = |granted: &str, asked: &str| granted == "*" || granted == asked;
        request.path.is_none()
            && any(&self.group, &request.group)
            && any(&self.resource, &request.resource)
            && any(&self.verb, &request.verb)
            && (self.names.is_empty() || request.name.as_ref().is_some_and(|n| self.names.contains(n)))
            && match &self.scope {
                Scope::Cluster => true,
                Scope::Namespace(ns) => request.namespace.as_ref() == Some(ns),
            }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        write!(f, "{} {group} {} {}", self.role, self.resource, self.verb)?;
        if !self.names.is_empty() {
            write!(f, " (names {})", self.names.join(","))?;
        }
        match &self.scope {
            Scope::Cluster => write!(f, " [cluster-wide]"),
            Scope::Namespace(ns) => write!(f, " [in {ns}]"),
        }
    }
}

/// An object of the rendered chart, as far as RBAC is concerned.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Object {
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    role_ref: Option<RoleRef>,
    #[serde(default)]
    subjects: Vec<Subject>,
}

#[derive(Deserialize, Debug)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

#[derive(Deserialize, Debug)]
struct RoleRef {
    kind: String,
    name: String,
}

#[derive(Deserialize, Debug)]
struct Subject {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// The objects of a multi-document YAML stream; empty documents (comments only) are skipped.
fn objects(yaml: &str) -> anyhow::Result<Vec<Object>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml::Value::deserialize(doc).with_context(|| format!("YAML document {}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string();
        if matches!(
            kind.as_str(),
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
        ) {
            out.push(serde_yaml::from_value(value).with_context(|| format!("{kind} in YAML document {}", i + 1))?);
        }
    }
    Ok(out)
}

/// `Kind/name` of every ClusterRole and ClusterRoleBinding in the rendered chart.
pub fn cluster_objects(yaml: &str) -> anyhow::Result<Vec<String>> {
    Ok(objects(yaml)?
        .into_iter()
        .filter(|o| o.kind.starts_with("Cluster"))
        .map(|o| format!("{}/{}", o.kind, o.metadata.name))
        .collect())
}

/// Everything the chart's bindings grant the service account `name` in `namespace`.
pub fn grants(yaml: &str, namespace: &str, name: &str) -> anyhow::Result<Vec<Grant>> {
    let objects = objects(yaml)?;
    let mut out = Vec::new();
    for binding in objects.iter().filter(|o| o.kind.ends_with("Binding")) {
        let binds_us = binding
            .subjects
            .iter()
            .any(|s| s.kind == "ServiceAccount" && s.name == name && s.namespace.as_deref() == Some(namespace));
        if !binds_us {
            continue;
        }
        let Some(role_ref) = &binding.role_ref else {
            bail!("{}/{} has no roleRef", binding.kind, binding.metadata.name);
        };
        let scope = if binding.kind == "ClusterRoleBinding" {
            Scope::Cluster
        } else {
            Scope::Namespace(binding.metadata.namespace.clone().unwrap_or_default())
        };
        let role = objects
            .iter()
            .find(|o| {
                o.kind == role_ref.kind
                    && o.metadata.name == role_ref.name
                    && (o.kind == "ClusterRole"
                        || Scope::Namespace(o.metadata.namespace.clone().unwrap_or_default()) == scope)
            })
            .with_context(|| {
                format!(
                    "{}/{} refers to {}/{}, which the chart does not render",
                    binding.kind, binding.metadata.name, role_ref.kind, role_ref.name
                )
            })?;
        for rule in &role.rules {
            for group in &rule.api_groups {
                for resource in &rule.resources {
                    for verb in &rule.verbs {
                        out.push(Grant {
                            role: format!("{}/{}", role.kind, role.metadata.name),
                            group: group.clone(),
                            resource: resource.clone(),
                            verb: verb.clone(),
                            names: rule.resource_names.clone(),
                            scope: scope.clone(),
                        });
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHART: &str = r#"
---
# Source: hort/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata: {name: hort-operator, namespace: hort-system}
---
kind: ClusterRole
metadata: {name: hort-operator}
rules:
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get]
---
kind: ClusterRoleBinding
metadata: {name: hort-operator}
roleRef: {kind: ClusterRole, name: hort-operator}
subjects: [{kind: ServiceAccount, name: hort-operator, namespace: hort-system}]
---
kind: Role
metadata: {name: leader, namespace: hort-system}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, update]
    resourceNames: [hort-operator-leader]
---
kind: RoleBinding
metadata: {name: leader, namespace: hort-system}
roleRef: {kind: Role, name: leader}
subjects: [{kind: ServiceAccount, name: hort-operator, namespace: hort-system}]
---
kind: RoleBinding
metadata: {name: someone-else, namespace: hort-system}
roleRef: {kind: Role, name: missing}
subjects: [{kind: ServiceAccount, name: other, namespace: hort-system}]
"#;

    fn request(group: &str, resource: &str, verb: &str, namespace: Option<&str>, name: Option<&str>) -> Request {
        Request {
            group: group.into(),
            resource: resource.into(),
            verb: verb.into(),
            namespace: namespace.map(Into::into),
            name: name.map(Into::into),
            path: None,
            code: 200,
            reason: String::new(),
        }
    }

    #[test]
    fn bindings_give_rules_their_scope_and_names() {
        let grants = grants(CHART, "hort-system", "hort-operator").unwrap();
        let shown: Vec<String> = grants.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "ClusterRole/hort-operator core secrets get [cluster-wide]",
                "Role/leader coordination.k8s.io leases get (names hort-operator-leader) [in hort-system]",
                "Role/leader coordination.k8s.io leases update (names hort-operator-leader) [in hort-system]",
            ]
        );
        let secret_get = &grants[0];
        assert!(secret_get.allows(&request("", "secrets", "get", Some("app"), Some("s"))));
        assert!(!secret_get.allows(&request("", "secrets", "list", Some("app"), None)));
        let lease_get = &grants[1];
        assert!(lease_get.allows(&request(
            "coordination.k8s.io",
            "leases",
            "get",
            Some("hort-system"),
            Some("hort-operator-leader")
        )));
        assert!(!lease_get.allows(&request(
            "coordination.k8s.io",
            "leases",
            "get",
            Some("app"),
            Some("hort-operator-leader")
        )));
        assert!(!lease_get.allows(&request(
            "coordination.k8s.io",
            "leases",
            "get",
            Some("hort-system"),
            Some("other")
        )));
    }

    #[test]
    fn cluster_objects_are_named() {
        assert_eq!(
            cluster_objects(CHART).unwrap(),
            ["ClusterRole/hort-operator", "ClusterRoleBinding/hort-operator"]
        );
    }

    #[test]
    fn roles_bound_to_nobody_grant_the_operator_nothing() {
        // The chart's users' roles (templates/user-roles.yaml): aggregated into the cluster's
        // view, edit and admin roles, never bound by the chart.
        let chart = format!(
            "{CHART}\n---\n{}",
            r#"
kind: ClusterRole
metadata:
  name: hort-edit
  labels: {rbac.authorization.k8s.io/aggregate-to-edit: "true"}
rules:
  - apiGroups: [hort.dev]
    resources: [backupjobs]
    verbs: [create, delete]
"#
        );
        let grants = grants(&chart, "hort-system", "hort-operator").unwrap();
        assert!(grants.iter().all(|g| g.role != "ClusterRole/hort-edit"), "{grants:?}");
        assert_eq!(grants.len(), 3);
    }

    #[test]
    fn a_binding_of_a_role_the_chart_lacks_is_an_error() {
        let err = grants(CHART, "hort-system", "other").unwrap_err();
        assert!(err.to_string().contains("Role/missing"), "{err}");
    }
}
