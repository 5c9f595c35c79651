//! Reading a kube-apiserver audit log (JSON lines of `audit.k8s.io/v1` events) into the
//! requests one user made.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context as _, bail};
use jiff::Timestamp;
use serde::Deserialize;

/// One API request as the audit log recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// API group; empty for the core group.
    pub group: String,
    /// Resource, with `/subresource` when there is one (`pods/exec`); empty for a request that
    /// is not about a resource (see `path`).
    pub resource: String,
    /// Verb as the authorizer saw it: get, list, watch, create, update, patch, delete, ...
    pub verb: String,
    /// Namespace of the request; `None` for cluster-wide lists and watches and for
    /// cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name of the object, when the request names one.
    pub name: Option<String>,
    /// Path of a request that is not about a resource (`/version`, `/api`).
    pub path: Option<String>,
    /// HTTP status of the response; 0 when the log has none.
    pub code: u16,
    /// Why the authorizer decided as it did (`authorization.k8s.io/reason`), when recorded.
    pub reason: String,
}

impl Request {
    /// Whether the request reached all namespaces or a cluster-scoped object.
    pub fn cluster_wide(&self) -> bool {
        self.namespace.is_none()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: String,
    verb: String,
    user: User,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(rename = "requestURI")]
    request_uri: String,
    #[serde(default)]
    response_status: Option<ResponseStatus>,
    request_received_timestamp: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct User {
    username: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    api_group: Option<String>,
}

#[derive(Deserialize)]
struct ResponseStatus {
    #[serde(default)]
    code: u16,
}

/// The requests `user` made at or after `since`, one per request (a watch is logged when its
/// response starts and again when it ends). Events of other users, and lines that are not
/// events of a finished or started response, are skipped; a line that is not JSON is an error.
pub fn requests(log: &str, user: &str, since: Option<Timestamp>) -> anyhow::Result<Vec<Request>> {
    let mut out: Vec<Request> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in log.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(line).with_context(|| format!("audit log line {}", i + 1))?;
        if event.user.username != user
            || !matches!(event.stage.as_str(), "ResponseStarted" | "ResponseComplete" | "Panic")
        {
            continue;
        }
        if let Some(since) = since {
            let at: Timestamp = event
                .request_received_timestamp
                .parse()
                .with_context(|| format!("audit log line {}: requestReceivedTimestamp", i + 1))?;
            if at < since {
                continue;
            }
        }
        let code = event.response_status.as_ref().map_or(0, |s| s.code);
        if let Some(&at) = seen.get(&event.audit_id) {
            if code != 0 {
                out[at].code = code;
            }
            continue;
        }
        seen.insert(event.audit_id.clone(), out.len());
        out.push(request(event, code));
    }
    Ok(out)
}

fn request(event: Event, code: u16) -> Request {
    let reason = event
        .annotations
        .get("authorization.k8s.io/reason")
        .cloned()
        .unwrap_or_default();
    match event.object_ref {
        Some(o) if !o.resource.is_empty() => Request {
            group: o.api_group.unwrap_or_default(),
            resource: match o.subresource {
                Some(sub) if !sub.is_empty() => format!("{}/{sub}", o.resource),
                _ => o.resource,
            },
            verb: event.verb,
            namespace: o.namespace.filter(|n| !n.is_empty()),
            name: o.name.filter(|n| !n.is_empty()),
            path: None,
            code,
            reason,
        },
        _ => Request {
            group: String::new(),
            resource: String::new(),
            verb: event.verb,
            namespace: None,
            name: None,
            path: Some(event.request_uri.split('?').next().unwrap_or_default().to_string()),
            code,
            reason,
        },
    }
}

/// A user name in the form the audit log records for a service account.
pub fn service_account_user(namespace: &str, name: &str) -> anyhow::Result<String> {
    if namespace.is_empty() || name.is_empty() {
        bail!("a service account needs a namespace and a name");
    }
    Ok(format!("system:serviceaccount:{namespace}:{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SA: &str = "system:serviceaccount:hort-system:hort-operator";

    /// An audit event line; `at` is a time on 2026-11-30 (UTC).
    fn line((id, stage, user, verb, object, code, at): (&str, &str, &str, &str, &str, u16, &str)) -> String {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"{stage}","requestURI":"/x?watch=true","verb":"{verb}","user":{{"username":"{user}","groups":["system:serviceaccounts"]}},{object}"responseStatus":{{"metadata":{{}},"code":{code}}},"requestReceivedTimestamp":"2026-11-30T{at}Z","stageTimestamp":"2026-11-30T{at}Z","annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}}}}"#
        )
    }

    #[test]
    fn one_request_per_audit_id_of_the_user_with_subresources_and_scope() {
        let pods = r#""objectRef":{"resource":"pods","apiVersion":"v1"},"#;
        let exec = r#""objectRef":{"resource":"pods","namespace":"app","name":"db-0","subresource":"exec","apiVersion":"v1"},"#;
        let lease = r#""objectRef":{"resource":"leases","namespace":"hort-system","name":"l","apiGroup":"coordination.k8s.io","apiVersion":"v1"},"#;
        let other = "system:serviceaccount:other:sa";
        let log = [
            ("1", "ResponseStarted", SA, "watch", pods, 200, "01:00:01.5"),
            ("1", "ResponseComplete", SA, "watch", pods, 200, "01:00:01.5"),
            ("2", "ResponseComplete", SA, "get", exec, 101, "01:00:02"),
            ("3", "ResponseComplete", other, "get", exec, 200, "01:00:02"),
            ("4", "ResponseComplete", SA, "update", lease, 403, "01:00:03"),
            ("5", "ResponseComplete", SA, "get", "", 200, "01:00:04"),
            ("6", "ResponseComplete", SA, "list", pods, 200, "00:59:59"),
        ]
        .map(line)
        .join("\n");
        let since = Some("2026-11-30T01:00:00Z".parse().unwrap());
        let got = requests(&log, SA, since).unwrap();
        let summary: Vec<_> = got
            .iter()
            .map(|r| {
                (
                    r.group.as_str(),
                    r.resource.as_str(),
                    r.verb.as_str(),
                    r.cluster_wide(),
                    r.code,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("", "pods", "watch", true, 200),
                ("", "pods/exec", "get", false, 101),
                ("coordination.k8s.io", "leases", "update", false, 403),
                ("", "", "get", true, 200),
            ]
        );
        assert_eq!(got[3].path.as_deref(), Some("/x"));
        assert_eq!(got[1].name.as_deref(), Some("db-0"));
    }

    #[test]
    fn a_line_that_is_not_an_event_is_an_error_naming_the_line() {
        let err = requests("\nnot json\n", SA, None).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
}
