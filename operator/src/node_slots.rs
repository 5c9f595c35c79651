//! At most N agent pods on one node (`--max-jobs-per-node`, chart value
//! `operator.maxJobsPerNode`).
//!
//! The scheduler, not the operator, picks a pod's node, and only after the pod exists. So
//! with a limit every agent pod the operator builds is created held back by the scheduling
//! gate [`NODE_SLOT_GATE`], and one loop ([`run`], on the leader only) releases gated pods,
//! oldest first. Before it releases one it counts, from a fresh list of the agent pods, for
//! every node the pods bound to it plus the released pods not bound yet that may still go
//! there; the pod is released with a required node affinity that keeps it off every node at
//! the limit (`metadata.name NotIn`, which the API server lets the operator add while the pod
//! is gated). A pod that may go to a node that is not known by name (any node, unless it is
//! pinned to named ones) waits while as many released pods are still unbound as the limit.
//! So the limit holds exactly for the pods counted ([`plan`]); a released pod that cannot be
//! scheduled (e.g. no node has the memory it asks for) holds back the pods after it until it
//! is scheduled or ends.
//!
//! A BackupJob's agent pod that also carries [`PRE_HOOKS_GATE`](crate::agent::api::PRE_HOOKS_GATE) waits for its job's pre hooks
//! (`backup_hooks`): until they passed it may still be deleted and never run, so it is neither
//! released nor counted; it asks for its slot once that gate is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::agent::ROLE_LABEL;
use crate::agent::api::is_gated;
use crate::agent::outcome::{created, finished};
use crate::controllers::Scope;

/// The scheduling gate that holds an agent pod back until a node slot is free for it.
pub const NODE_SLOT_GATE: &str = "hort.dev/node-slot";
/// How often the loop looks even when no agent pod changed.
const TICK: Duration = Duration::from_secs(10);

/// An unfinished agent pod, as the count sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPod {
    /// Namespace and name.
    pub key: (String, String),
    /// Its creation time (oldest released first).
    pub created: Timestamp,
    /// It carries [`NODE_SLOT_GATE`].
    pub gated: bool,
    /// It carries [`PRE_HOOKS_GATE`](crate::agent::api::PRE_HOOKS_GATE): its pre hooks run, so it takes no slot and is not
    /// released.
    pub held_for_hooks: bool,
    /// The node it is bound to.
    pub node: Option<String>,
    /// The only nodes it may go to (its required node affinity names them in every term).
    pub pinned: Option<BTreeSet<String>>,
    /// Nodes its required node affinity keeps it off (in every term).
    pub excluded: BTreeSet<String>,
}

impl AgentPod {
    /// Whether it may still be placed on node `node` (it is released and not bound yet).
    fn may_go_to(&self, node: &str) -> bool {
        self.pinned.as_ref().is_none_or(|p| p.contains(node)) && !self.excluded.contains(node)
    }

    /// Reads a pod (`None` for a finished one).
    pub fn of(pod: &Pod) -> Option<Self> {
        if finished(pod) {
            return None;
        }
        let spec = pod.spec.as_ref()?;
        let gated = spec.scheduling_gates.iter().flatten().any(|g| g.name == NODE_SLOT_GATE);
        let terms = required_terms(pod);
        let names = |term: &NodeSelectorTerm, op: &str| -> BTreeSet<String> {
            term.match_fields
                .iter()
                .flatten()
                .filter(|r| r.key == "metadata.name" && r.operator == op)
                .flat_map(|r| r.values.clone().unwrap_or_default())
                .collect()
        };
        let pinned = if !terms.is_empty() && terms.iter().all(|t| !names(t, "In").is_empty()) {
            Some(terms.iter().flat_map(|t| names(t, "In")).collect())
        } else {
            None
        };
        let excluded = terms
            .iter()
            .map(|t| names(t, "NotIn"))
            .reduce(|a, b| a.intersection(&b).cloned().collect())
            .unwrap_or_default();
        Some(Self {
            key: (pod.namespace().unwrap_or_default(), pod.name_any()),
            created: created(pod),
            gated,
            held_for_hooks: is_gated(pod),
            node: spec.node_name.clone(),
            pinned,
            excluded,
        })
    }
}

/// The terms of a pod's required node affinity.
fn required_terms(pod: &Pod) -> Vec<NodeSelectorTerm> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|s| s.node_selector_terms.clone())
        .unwrap_or_default()
}

/// A gated pod to release, and the nodes to keep it off (those at the limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// Namespace and name of the pod.
    pub key: (String, String),
    /// Nodes it must not go to.
    pub exclude: Vec<String>,
}

/// Which gated pods among `pods` (the unfinished agent pods) may be released with at most
/// `limit` on a node, oldest first; a pod that can go nowhere yet is passed over. Pods held
/// for their pre hooks are left out: neither released nor counted.
pub fn plan(limit: u32, pods: &[AgentPod]) -> Vec<Release> {
    let limit = limit as usize;
    let pods: Vec<&AgentPod> = pods.iter().filter(|p| !p.held_for_hooks).collect();
    let mut bound: BTreeMap<&str, usize> = BTreeMap::new();
    for node in pods.iter().filter_map(|p| p.node.as_deref()) {
        *bound.entry(node).or_default() += 1;
    }
    // Released and not bound yet: they may still go to any node they may go to.
    let mut unbound: Vec<AgentPod> = pods
        .iter()
        .filter(|p| !p.gated && p.node.is_none())
        .map(|p| (*p).clone())
        .collect();
    let mut gated: Vec<&AgentPod> = pods.iter().copied().filter(|p| p.gated && p.node.is_none()).collect();
    gated.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
    let mut releases = Vec::new();
    for pod in gated {
        // Nodes known by name: those with pods on them, and those pods are pinned to.
        let named: BTreeSet<String> = bound
            .keys()
            .map(|n| n.to_string())
            .chain(
                unbound
                    .iter()
                    .chain([pod])
                    .flat_map(|p| p.pinned.iter().flatten().cloned()),
            )
            .collect();
        let count =
            |node: &str| bound.get(node).copied().unwrap_or(0) + unbound.iter().filter(|p| p.may_go_to(node)).count();
        let full: BTreeSet<String> = named.into_iter().filter(|n| count(n) >= limit).collect();
        let free = match &pod.pinned {
            Some(nodes) => nodes.iter().any(|n| !full.contains(n) && !pod.excluded.contains(n)),
            // Any other node: it holds the released pods that may go anywhere.
            None => unbound.iter().filter(|p| p.pinned.is_none()).count() < limit,
        };
        if !free {
            continue;
        }
        let exclude: Vec<String> = full.into_iter().filter(|n| pod.may_go_to(n)).collect();
        let mut released = pod.clone();
        released.gated = false;
        released.excluded.extend(exclude.iter().cloned());
        unbound.push(released);
        releases.push(Release {
            key: pod.key.clone(),
            exclude,
        });
    }
    releases
}

/// Keeps releasing gated agent pods in `scope` with at most `limit` agent pods per node,
/// until the task is dropped.
pub async fn run(client: kube::Client, scope: Scope, limit: u32) {
    let pods: Api<Pod> = match &scope {
        Scope::Cluster => Api::all(client.clone()),
        Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
    };
    let mut changes = watcher(pods.clone(), watcher::Config::default().labels(ROLE_LABEL))
        .touched_objects()
        .boxed();
    loop {
        if let Err(error) = pass(&client, &pods, limit).await {
            tracing::warn!(%error, "releasing agent pods for their node slots failed; trying again");
        }
        tokio::select! {
            _ = changes.next() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// One look: lists the agent pods and releases those that [`plan`] lets go.
async fn pass(client: &kube::Client, pods: &Api<Pod>, limit: u32) -> kube::Result<()> {
    let listed = pods.list(&ListParams::default().labels(ROLE_LABEL)).await?.items;
    let views: Vec<AgentPod> = listed.iter().filter_map(AgentPod::of).collect();
    for release in plan(limit, &views) {
        let (namespace, name) = &release.key;
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let Some(pod) = listed
            .iter()
            .find(|p| p.namespace().as_ref() == Some(namespace) && &p.name_any() == name)
        else {
            continue;
        };
        if !release.exclude.is_empty() {
            // Added to every term of the required node affinity (or as its one term): while
            // the pod is gated the API server allows adding requirements, not changing them.
            // A field requirement takes one node name.
            let avoid = release.exclude.iter().map(|node| NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "NotIn".into(),
                values: Some(vec![node.clone()]),
            });
            let mut terms = required_terms(pod);
            if terms.is_empty() {
                terms.push(NodeSelectorTerm::default());
            }
            for term in &mut terms {
                term.match_fields.get_or_insert_with(Vec::new).extend(avoid.clone());
            }
            let patch = json!({"spec": {"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        let ungate = json!({"spec": {"schedulingGates": [{"$patch": "delete", "name": NODE_SLOT_GATE}]}});
        api.patch(name, &PatchParams::default(), &Patch::Strategic(ungate))
            .await?;
        tracing::info!(namespace = %namespace, pod = %name, avoid = ?release.exclude, "released an agent pod for a node slot");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: i64, gated: bool, node: Option<&str>) -> AgentPod {
        AgentPod {
            key: ("ns".into(), name.into()),
            created: Timestamp::from_second(1_800_000_000 + created).unwrap(),
            gated,
            held_for_hooks: false,
            node: node.map(Into::into),
            pinned: None,
            excluded: BTreeSet::new(),
        }
    }

    fn pinned(mut p: AgentPod, nodes: &[&str]) -> AgentPod {
        p.pinned = Some(nodes.iter().map(|n| n.to_string()).collect());
        p
    }

    fn released(releases: &[Release]) -> Vec<(&str, Vec<&str>)> {
        releases
            .iter()
            .map(|r| (r.key.1.as_str(), r.exclude.iter().map(String::as_str).collect()))
            .collect()
    }

    #[test]
    fn a_pod_is_kept_off_the_nodes_at_the_limit() {
        let pods = [pod("a", 0, false, Some("n1")), pod("b", 1, true, None)];
        assert_eq!(released(&plan(1, &pods)), [("b", vec!["n1"])]);
        assert_eq!(released(&plan(2, &pods)), [("b", vec![])], "n1 has a free slot");
    }

    #[test]
    fn released_pods_not_yet_bound_count_against_every_node_they_may_go_to() {
        // b was released (kept off n1) and is not bound: with a limit of 1 any other node may
        // get it, so c waits; d, pinned to n1, waits for n1.
        let mut b = pod("b", 1, false, None);
        b.excluded.insert("n1".into());
        let pods = [
            pod("a", 0, false, Some("n1")),
            b.clone(),
            pod("c", 2, true, None),
            pinned(pod("d", 3, true, None), &["n1"]),
        ];
        assert_eq!(released(&plan(1, &pods)), []);
        // a ends: d may go to n1 (b never will); c still waits for b to be bound.
        let pods = [
            b.clone(),
            pod("c", 2, true, None),
            pinned(pod("d", 3, true, None), &["n1"]),
        ];
        assert_eq!(released(&plan(1, &pods)), [("d", vec![])]);
        // b is bound to n2 and d is released: c is kept off both.
        let pods = [
            pod("b", 1, false, Some("n2")),
            pod("c", 2, true, None),
            pinned(pod("d", 3, false, None), &["n1"]),
        ];
        assert_eq!(released(&plan(1, &pods)), [("c", vec!["n1", "n2"])]);
    }

    #[test]
    fn a_pod_held_for_its_pre_hooks_is_not_released_and_takes_no_slot() {
        // "hooks" is the oldest and carries both gates; with a limit of 1 it would be released
        // first and, unbound, fill every node. Held for its pre hooks, it is passed over.
        let mut hooks = pod("hooks", 0, true, None);
        hooks.held_for_hooks = true;
        let pods = [hooks.clone(), pod("b", 1, true, None)];
        assert_eq!(released(&plan(1, &pods)), [("b", vec![])]);
        // Held with only the pre-hooks gate (no node-slot gate): still no slot.
        hooks.gated = false;
        let pods = [hooks.clone(), pod("b", 1, true, None)];
        assert_eq!(released(&plan(1, &pods)), [("b", vec![])]);
        // Once its pre hooks passed it asks for its slot like any other.
        let mut passed = pod("hooks", 0, true, None);
        passed.held_for_hooks = false;
        assert_eq!(
            released(&plan(1, &[passed, pod("b", 1, true, None)])),
            [("hooks", vec![])]
        );
    }

    #[test]
    fn oldest_first_within_one_look() {
        // Limit 2, nothing runs: the two oldest go, the third waits for one to be bound.
        let pods = [
            pod("new", 5, true, None),
            pod("old", 1, true, None),
            pod("mid", 3, true, None),
        ];
        assert_eq!(released(&plan(2, &pods)), [("old", vec![]), ("mid", vec![])]);
    }

    #[test]
    fn the_pod_spec_is_read_for_pins_and_exclusions() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "x", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [], "schedulingGates": [{"name": NODE_SLOT_GATE}],
                     "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                         {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]},
                                          {"key": "metadata.name", "operator": "NotIn", "values": ["n2"]}]}]}}}}
        }))
        .unwrap();
        let view = AgentPod::of(&p).unwrap();
        assert!(view.gated);
        assert!(!view.held_for_hooks);
        let held = AgentPod::of(&crate::agent::api::gated(p.clone())).unwrap();
        assert!(held.gated && held.held_for_hooks, "both gates are read");
        assert_eq!(view.pinned, Some(BTreeSet::from(["n1".to_string()])));
        assert_eq!(view.excluded, BTreeSet::from(["n2".to_string()]));
        let done: Pod = serde_json::from_value(json!({"metadata": {"name": "y"}, "spec": {"containers": []},
                                                       "status": {"phase": "Succeeded"}}))
        .unwrap();
        assert!(AgentPod::of(&done).is_none(), "finished pods hold no slot");
    }
}
