//! The comparison of what the chart grants with what the operator asked for.

use std::collections::BTreeMap;
use std::fmt;

use crate::allowlist::{self, Allowed};
use crate::audit::Request;
use crate::rbac::Grant;

/// What a run used, what it did not, and what it was refused.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests by (group, resource, verb, "cluster-wide" or "namespaced"), with their count.
    pub used: BTreeMap<(String, String, String, &'static str), usize>,
    /// Grants no request used, each with the allowlist entry that explains it, if one does.
    pub unused: Vec<(Grant, Option<&'static Allowed>)>,
    /// Requests answered 403 Forbidden.
    pub forbidden: Vec<Request>,
    /// Requests allowed although no grant of the chart covers them (the cluster's default
    /// roles, e.g. discovery).
    pub elsewhere: Vec<Request>,
}

/// Compares the grants with the requests. `check_unused` is false for a run that does not
/// take every code path: then only forbidden requests count.
pub fn compare(grants: &[Grant], requests: &[Request], check_unused: bool) -> Report {
    let mut report = Report::default();
    let mut hits = vec![0usize; grants.len()];
    for r in requests {
        let scope = if r.cluster_wide() { "cluster-wide" } else { "namespaced" };
        let what = match &r.path {
            Some(path) => (String::new(), path.clone(), r.verb.clone(), scope),
            None => (r.group.clone(), r.resource.clone(), r.verb.clone(), scope),
        };
        *report.used.entry(what).or_default() += 1;
        if r.code == 403 {
            report.forbidden.push(r.clone());
            continue;
        }
        let mut covered = false;
        for (i, g) in grants.iter().enumerate() {
            if g.allows(r) {
                hits[i] += 1;
                covered = true;
            }
        }
        if !covered {
            report.elsewhere.push(r.clone());
        }
    }
    if check_unused {
        report.unused = grants
            .iter()
            .zip(hits)
            .filter(|(_, n)| *n == 0)
            .map(|(g, _)| (g.clone(), allowlist::find(&g.group, &g.resource, &g.verb)))
            .collect();
    }
    report
}

impl Report {
    /// One line per failure: a grant no request used and no allowlist entry explains, a
    /// forbidden request.
    pub fn failures(&self) -> Vec<String> {
        let unused = self
            .unused
            .iter()
            .filter(|(_, allowed)| allowed.is_none())
            .map(|(g, _)| format!("granted but never used: {g}"));
        let forbidden = self.forbidden.iter().map(|r| format!("forbidden: {}", describe(r)));
        unused.chain(forbidden).collect()
    }
}

fn describe(r: &Request) -> String {
    let group = if r.group.is_empty() { "core" } else { &r.group };
    match &r.path {
        Some(path) => format!("{} {path} ({})", r.verb, r.reason),
        None => format!(
            "{} {group} {} {}/{} ({})",
            r.verb,
            r.resource,
            r.namespace.as_deref().unwrap_or("-"),
            r.name.as_deref().unwrap_or("-"),
            r.reason
        ),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "requests (group resource verb scope: count):")?;
        for ((group, resource, verb, scope), n) in &self.used {
            let group = if group.is_empty() { "core" } else { group };
            writeln!(f, "  {group} {resource} {verb} {scope}: {n}")?;
        }
        if !self.elsewhere.is_empty() {
            writeln!(f, "allowed by the cluster's own roles, not the chart's:")?;
            for r in &self.elsewhere {
                writeln!(f, "  {}", describe(r))?;
            }
        }
        for (g, allowed) in &self.unused {
            if let Some(a) = allowed {
                writeln!(f, "unused but allowed: {g}: {}", a.reason)?;
            }
        }
        for line in self.failures() {
            writeln!(f, "FAIL {line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::Scope;

    fn grant(group: &str, resource: &str, verb: &str) -> Grant {
        Grant {
            role: "ClusterRole/hort-operator".into(),
            group: group.into(),
            resource: resource.into(),
            verb: verb.into(),
            names: vec![],
            scope: Scope::Cluster,
        }
    }

    fn request(resource: &str, verb: &str, code: u16) -> Request {
        Request {
            group: String::new(),
            resource: resource.into(),
            verb: verb.into(),
            namespace: Some("app".into()),
            name: Some("x".into()),
            path: None,
            code,
            reason: "RBAC: none".into(),
        }
    }

    #[test]
    fn unused_grants_fail_unless_allowlisted_and_forbidden_requests_fail() {
        let grants = [
            grant("", "secrets", "get"),
            grant("", "secrets", "list"),
            grant("", "pods/exec", "get"),
            grant("", "pods/exec", "create"),
        ];
        let requests = [
            request("secrets", "get", 200),
            request("pods/exec", "get", 101),
            request("pods/log", "get", 403),
            request("namespaces", "get", 200),
        ];
        let report = compare(&grants, &requests, true);
        assert_eq!(
            report.failures(),
            [
                "granted but never used: ClusterRole/hort-operator core secrets list [cluster-wide]",
                "forbidden: get core pods/log app/x (RBAC: none)",
            ]
        );
        assert_eq!(report.elsewhere, [request("namespaces", "get", 200)]);
        assert!(
            report
                .to_string()
                .contains("unused but allowed: ClusterRole/hort-operator core pods/exec create")
        );
        assert_eq!(
            report.used[&(String::new(), "secrets".into(), "get".into(), "namespaced")],
            1
        );

        let forbidden_only = compare(&grants, &requests, false);
        assert_eq!(forbidden_only.failures().len(), 1, "{forbidden_only}");
    }
}
