//! The tenants of a ClusterStorageGroup (pure): what each selected namespace's newest check
//! found, which namespaces get a check pod now (at most [`MAX_RUNNING`] at a time), and the
//! `Ready` condition that follows.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hort_crds::cluster_storage_group::{TenantSnapshots, TenantStatus};
use hort_crds::storage_group::StorageGroupSpec;
use hort_protocol::SnapshotCount;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::agent::{check, outcome};
use crate::conditions::{Observation, Status};
use crate::storage_group::READY;

/// Label on a tenant check pod: the namespace whose repository it checks.
pub const TENANT_LABEL: &str = "hort.dev/tenant";
/// At most this many tenant check pods of one group run at a time, so that a thousand
/// namespaces do not start a thousand pods at once.
pub const MAX_RUNNING: usize = 4;
/// A tenant whose last check failed is checked again after this long (or the StorageGroup's
/// `checkIntervalSeconds`, if shorter).
pub const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How often a group with running or waiting checks looks at them again.
pub const POLL: Duration = Duration::from_secs(10);
/// Characters of a failed check's message kept in `status.tenants[].message`.
const MESSAGE_CHARS: usize = 300;
/// Namespaces named in a `Ready` message at most.
const NAMED: usize = 5;

/// What a finished tenant check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// The namespace's repository, with this id; its snapshots when the check counted them;
    /// the bytes it takes on all the group's targets together when every target measured
    /// its share.
    Found(String, Option<SnapshotCount>, Option<u64>),
    /// No repository (or another one than recorded): why.
    Failed(String),
}

/// Reads a finished tenant check pod of a namespace whose recorded repository is `recorded`:
/// a recorded id is never replaced, as for a StorageGroup.
pub fn read_check(spec: &StorageGroupSpec, recorded: Option<&str>, pod: &Pod) -> CheckResult {
    let name = pod.name_any();
    let succeeded = outcome::phase(pod) == "Succeeded";
    let report = match (succeeded, check::parse_report(&outcome::message(pod), spec)) {
        (true, Ok(report)) => report,
        (false, Ok(report)) if report.error.is_some() => {
            let error = report.error.unwrap_or_default();
            return CheckResult::Failed(format!("check pod {name:?} failed: {error}"));
        }
        (false, _) => {
            let why = outcome::failure(pod, MESSAGE_CHARS);
            return CheckResult::Failed(format!("check pod {name:?} failed: {why}"));
        }
        (true, Err(e)) => return CheckResult::Failed(format!("check pod {name:?}: {e}")),
    };
    match (report.repository_id, recorded) {
        (Some(id), Some(known)) if id != known => CheckResult::Failed(format!(
            "check pod {name:?} found repository {id}, not {known}, the one recorded for this namespace"
        )),
        (Some(id), _) => {
            let used: Option<Vec<u64>> = report.targets.iter().map(|t| t.bytes_used).collect();
            CheckResult::Found(id, report.snapshots, used.map(|u| u.iter().sum()))
        }
        (None, _) => CheckResult::Failed(format!(
            "check pod {name:?} could not open the repository: {}",
            report.error.as_deref().unwrap_or("the agent gave no reason")
        )),
    }
}

/// What the reconcile is to do with the tenants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// `status.tenants`: one entry per selected namespace, in name order.
    pub tenants: Vec<TenantStatus>,
    /// Namespaces whose newest check failed.
    pub failing: BTreeSet<String>,
    /// Namespaces that get a check pod now, with their recorded repository id.
    pub start: Vec<(String, Option<String>)>,
    /// Finished check pods to delete: all but each selected namespace's newest, and every
    /// finished one of a namespace no longer selected.
    pub delete: Vec<String>,
    /// When to look again.
    pub requeue: Duration,
}

/// What a plan is made from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The selected namespaces, in name order.
    pub selected: &'a [String],
    /// `status.tenants` as recorded.
    pub recorded: &'a [TenantStatus],
    /// The group's tenant check pods.
    pub pods: &'a [Pod],
    /// The shared StorageGroup's spec (its targets, for the reports).
    pub spec: &'a StorageGroupSpec,
    /// Whether the StorageGroup is Ready: no check starts until it is.
    pub group_ready: bool,
    /// The StorageGroup's `checkIntervalSeconds`: a tenant's repository is checked again
    /// after this long.
    pub interval: Duration,
    /// Now.
    pub now: Timestamp,
}

/// Plans the tenants' checks and status.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let mut by_tenant: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    let mut pods: Vec<&Pod> = inputs.pods.iter().collect();
    pods.sort_by_key(|p| std::cmp::Reverse((outcome::created(p), p.name_any())));
    for pod in pods {
        let tenant = pod.labels().get(TENANT_LABEL).map_or("", String::as_str);
        by_tenant.entry(tenant).or_default().push(pod);
    }
    let recorded: BTreeMap<&str, &TenantStatus> = inputs.recorded.iter().map(|t| (t.namespace.as_str(), t)).collect();
    let mut plan = Plan {
        requeue: inputs.interval,
        ..Plan::default()
    };
    for (tenant, pods) in &by_tenant {
        let selected = inputs.selected.iter().any(|s| s == tenant);
        let finished = pods.iter().filter(|p| outcome::finished(p));
        plan.delete
            .extend(finished.skip(usize::from(selected)).map(|p| p.name_any()));
    }
    let running = by_tenant.values().flatten().filter(|p| !outcome::finished(p)).count();
    let mut due = vec![];
    for namespace in inputs.selected {
        let pods = by_tenant.get(namespace.as_str()).map_or(&[][..], Vec::as_slice);
        let mut id = recorded.get(namespace.as_str()).and_then(|t| t.repository_id.clone());
        // Kept from the status until a newer check counts them.
        let mut snapshots = recorded.get(namespace.as_str()).and_then(|t| t.snapshots.clone());
        let runs = pods.iter().find(|p| !outcome::finished(p));
        let newest = pods.iter().find(|p| outcome::finished(p));
        let mut message = None;
        let mut wait = inputs.interval;
        if let Some(pod) = newest {
            match read_check(inputs.spec, id.as_deref(), pod) {
                CheckResult::Found(found, counted, bytes_used) => {
                    id = Some(found);
                    if let Some(counted) = counted {
                        snapshots = Some(TenantSnapshots {
                            count: counted.count,
                            last_snapshot_id: counted.newest_id,
                            last_backup_time: counted.newest_time,
                            bytes_used,
                            checked_time: Time(outcome::finished_at(pod)),
                        });
                    }
                }
                CheckResult::Failed(why) => {
                    message = Some(why);
                    wait = wait.min(RETRY_AFTER);
                    plan.failing.insert(namespace.clone());
                }
            }
        }
        if let Some(pod) = runs {
            plan.requeue = plan.requeue.min(POLL);
            if id.is_none() {
                let waits = outcome::waiting(pod).map(|w| format!("; the pod waits: {w}"));
                message = Some(format!(
                    "creating the repository: check pod {:?} runs{}",
                    pod.name_any(),
                    waits.unwrap_or_default()
                ));
            }
        } else {
            let since = newest.map(|p| inputs.now.duration_since(outcome::finished_at(p)).unsigned_abs());
            match since {
                Some(since) if since < wait => {
                    plan.requeue = plan.requeue.min((wait - since).max(Duration::from_secs(1)))
                }
                _ => due.push((id.is_some(), namespace.clone(), id.clone())),
            }
        }
        plan.tenants.push(TenantStatus {
            namespace: namespace.clone(),
            repository_id: id,
            message,
            snapshots,
        });
    }
    if !inputs.group_ready {
        return plan;
    }
    // Namespaces without a repository first: they are waited for.
    due.sort();
    let free = MAX_RUNNING.saturating_sub(running);
    for (i, (_, namespace, id)) in due.into_iter().enumerate() {
        let tenant = plan
            .tenants
            .iter_mut()
            .find(|t| t.namespace == namespace)
            .expect("every due namespace has an entry");
        plan.requeue = plan.requeue.min(POLL);
        if i < free {
            if tenant.repository_id.is_none() && !plan.failing.contains(&namespace) {
                tenant.message = Some("creating the repository: its check pod starts".into());
            }
            plan.start.push((namespace, id));
        } else if tenant.repository_id.is_none() && !plan.failing.contains(&namespace) {
            tenant.message = Some(format!(
                "waiting for a check slot: at most {MAX_RUNNING} tenant checks of a group run at once"
            ));
        }
    }
    plan
}

/// The `Ready` condition of a group whose StorageGroup `group` is Ready (`group_ready`
/// carries its `Ready` message otherwise): True when every selected namespace has its
/// repository and no namespace's newest check or password Secret failed.
pub fn readiness(
    group: &str,
    group_ready: Result<(), String>,
    tenants: &[TenantStatus],
    failing: &BTreeSet<String>,
) -> Observation {
    let observation = |status, reason, message| Observation {
        type_: READY,
        status,
        reason,
        message,
    };
    if let Err(why) = group_ready {
        return observation(
            Status::False,
            "StorageGroupNotReady",
            format!("StorageGroup {group:?} (spec.storageGroupRef.name) is not Ready: {why}"),
        );
    }
    let pending: Vec<&TenantStatus> = tenants
        .iter()
        .filter(|t| t.repository_id.is_none() || failing.contains(&t.namespace))
        .collect();
    if pending.is_empty() {
        return observation(
            Status::True,
            "TenantsReady",
            format!(
                "StorageGroup {group:?} is Ready and all {} selected namespaces have their repository",
                tenants.len()
            ),
        );
    }
    let mut named: Vec<String> = pending
        .iter()
        .take(NAMED)
        .map(|t| {
            let why = t.message.as_deref().unwrap_or("no repository yet");
            format!("namespace {:?}: {why}", t.namespace)
        })
        .collect();
    if pending.len() > NAMED {
        named.push(format!("and {} more (status.tenants)", pending.len() - NAMED));
    }
    let reason = if pending.iter().any(|t| failing.contains(&t.namespace)) {
        "TenantFailed"
    } else {
        "TenantsPending"
    };
    let message = format!(
        "{} of {} selected namespaces are not ready: {}",
        pending.len(),
        tenants.len(),
        named.join("; ")
    );
    observation(Status::False, reason, message)
}

#[cfg(test)]
mod tests {
    use hort_protocol::report::{decode, encode};
    use hort_protocol::{CheckReport, TargetReport};

    use super::*;

    fn spec() -> StorageGroupSpec {
        serde_yaml::from_str("targets: [{name: a, pvc: {claimName: a}}]\nencryption: {keySecretRef: {name: k}}")
            .unwrap()
    }

    fn report(id: Option<&str>, error: Option<&str>) -> String {
        encode(&CheckReport {
            repository_id: id.map(Into::into),
            created: id.is_some(),
            targets: vec![TargetReport {
                reachable: true,
                writable: true,
                ..TargetReport::default()
            }],
            error: error.map(Into::into),
            key_rotation: None,
            snapshots: None,
        })
    }

    const NOW: &str = "2026-12-01T12:00:00Z";

    /// A check pod of `tenant` created `age` seconds before [`NOW`], finished with
    /// `(phase, message)` or running.
    fn pod(name: &str, tenant: &str, age: i64, end: Option<(&str, &str)>) -> Pod {
        let created: Timestamp = NOW.parse::<Timestamp>().unwrap() - jiff::SignedDuration::from_secs(age);
        let mut value = serde_json::json!({
            "metadata": {"name": name, "namespace": "hort-system", "labels": {TENANT_LABEL: tenant},
                         "creationTimestamp": created.to_string()},
            "status": {"phase": "Running"}
        });
        if let Some((phase, message)) = end {
            value["status"] = serde_json::json!({"phase": phase, "containerStatuses": [{
                "name": "agent", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                "state": {"terminated": {"exitCode": if phase == "Succeeded" {0} else {1},
                                         "message": message, "finishedAt": created.to_string()}}}]});
        }
        serde_json::from_value(value).unwrap()
    }

    fn inputs<'a>(
        selected: &'a [String],
        recorded: &'a [TenantStatus],
        pods: &'a [Pod],
        spec: &'a StorageGroupSpec,
    ) -> Inputs<'a> {
        Inputs {
            selected,
            recorded,
            pods,
            spec,
            group_ready: true,
            interval: Duration::from_secs(3600),
            now: NOW.parse().unwrap(),
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_found_repository_is_recorded_and_never_replaced() {
        let spec = spec();
        let found = pod("p", "a", 5, Some(("Succeeded", &report(Some("r1"), None))));
        assert_eq!(
            read_check(&spec, None, &found),
            CheckResult::Found("r1".into(), None, None)
        );
        assert_eq!(
            read_check(&spec, Some("r1"), &found),
            CheckResult::Found("r1".into(), None, None)
        );
        let CheckResult::Failed(why) = read_check(&spec, Some("r0"), &found) else {
            panic!("another repository replaced the recorded one")
        };
        assert_eq!(
            why,
            "check pod \"p\" found repository r1, not r0, the one recorded for this namespace"
        );
        let refused = pod("q", "a", 5, Some(("Failed", &report(None, Some("wrong password")))));
        assert_eq!(
            read_check(&spec, None, &refused),
            CheckResult::Failed("check pod \"q\" failed: wrong password".into())
        );
        let crashed = pod("c", "a", 5, Some(("Failed", "panic: oops")));
        let CheckResult::Failed(why) = read_check(&spec, None, &crashed) else {
            panic!()
        };
        assert!(
            why.starts_with("check pod \"c\" failed: ") && why.contains("panic: oops"),
            "{why}"
        );
    }

    #[test]
    fn each_selected_namespace_gets_one_check_at_a_time_and_the_status_is_in_name_order() {
        let spec = spec();
        let selected = names(&["b", "a", "c"]);
        let mut sorted = selected.clone();
        sorted.sort();
        let pods = [
            pod("a-old", "a", 600, Some(("Failed", "boom"))),
            pod("a-new", "a", 30, Some(("Succeeded", &report(Some("ra"), None)))),
            pod("b-run", "b", 5, None),
            pod("gone-1", "gone", 5, Some(("Succeeded", &report(Some("rg"), None)))),
        ];
        let plan = plan(&inputs(&sorted, &[], &pods, &spec));
        assert_eq!(
            plan.tenants,
            vec![
                TenantStatus {
                    namespace: "a".into(),
                    repository_id: Some("ra".into()),
                    message: None,
                    snapshots: None,
                },
                TenantStatus {
                    namespace: "b".into(),
                    repository_id: None,
                    message: Some("creating the repository: check pod \"b-run\" runs".into()),
                    snapshots: None,
                },
                TenantStatus {
                    namespace: "c".into(),
                    repository_id: None,
                    message: Some("creating the repository: its check pod starts".into()),
                    snapshots: None,
                },
            ]
        );
        assert_eq!(
            plan.start,
            vec![("c".into(), None)],
            "b runs already; a checked 30 s ago"
        );
        assert_eq!(plan.delete, names(&["a-old", "gone-1"]));
        assert_eq!(plan.requeue, POLL);
        let ready = readiness("shared", Ok(()), &plan.tenants, &plan.failing);
        assert_eq!((ready.status, ready.reason), (Status::False, "TenantsPending"));
        assert_eq!(
            ready.message,
            "2 of 3 selected namespaces are not ready: namespace \"b\": creating the repository: check pod \"b-run\" runs; \
             namespace \"c\": creating the repository: its check pod starts"
        );
    }

    #[test]
    fn a_recorded_repository_is_checked_again_after_the_interval_with_its_id() {
        let spec = spec();
        let selected = names(&["a"]);
        let recorded = [TenantStatus {
            namespace: "a".into(),
            repository_id: Some("ra".into()),
            message: None,
            snapshots: None,
        }];
        let pods = [pod("a-1", "a", 3599, Some(("Succeeded", &report(Some("ra"), None))))];
        let early = plan(&inputs(&selected, &recorded, &pods, &spec));
        assert!(early.start.is_empty());
        assert_eq!(early.requeue, Duration::from_secs(1));
        let pods = [pod("a-1", "a", 3600, Some(("Succeeded", &report(Some("ra"), None))))];
        let due = plan(&inputs(&selected, &recorded, &pods, &spec));
        assert_eq!(due.start, vec![("a".into(), Some("ra".into()))], "never an init again");
        let ready = readiness("shared", Ok(()), &due.tenants, &due.failing);
        assert_eq!((ready.status, ready.reason), (Status::True, "TenantsReady"));
        // A failed later check keeps the id and is retried sooner; Ready says which failed.
        let pods = [pod(
            "a-2",
            "a",
            59,
            Some(("Failed", &report(None, Some("target a: timeout")))),
        )];
        let failed = plan(&inputs(&selected, &recorded, &pods, &spec));
        assert_eq!(failed.tenants[0].repository_id.as_deref(), Some("ra"));
        assert_eq!(failed.requeue, Duration::from_secs(1));
        let ready = readiness("shared", Ok(()), &failed.tenants, &failed.failing);
        assert_eq!((ready.status, ready.reason), (Status::False, "TenantFailed"));
        assert!(
            ready
                .message
                .contains("namespace \"a\": check pod \"a-2\" failed: target a: timeout"),
            "{ready:?}"
        );
    }

    #[test]
    fn at_most_four_checks_run_and_none_before_the_storage_group_is_ready() {
        let spec = spec();
        let selected: Vec<String> = (0..10).map(|i| format!("ns-{i:02}")).collect();
        let pods = [pod("r", "ns-09", 5, None)];
        let mut inputs = inputs(&selected, &[], &pods, &spec);
        let planned = plan(&inputs);
        assert_eq!(
            planned.start.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
            ["ns-00", "ns-01", "ns-02"]
        );
        assert_eq!(
            planned.tenants[3].message.as_deref(),
            Some("waiting for a check slot: at most 4 tenant checks of a group run at once")
        );
        inputs.group_ready = false;
        assert!(plan(&inputs).start.is_empty());
        let ready = readiness(
            "shared",
            Err("2 of 2 targets unhealthy".into()),
            &planned.tenants,
            &planned.failing,
        );
        assert_eq!((ready.status, ready.reason), (Status::False, "StorageGroupNotReady"));
        assert_eq!(
            ready.message,
            "StorageGroup \"shared\" (spec.storageGroupRef.name) is not Ready: 2 of 2 targets unhealthy"
        );
        let all = readiness("shared", Ok(()), &planned.tenants, &planned.failing);
        assert!(
            all.message.starts_with("10 of 10 selected namespaces are not ready"),
            "{all:?}"
        );
        assert!(all.message.ends_with("; and 5 more (status.tenants)"), "{all:?}");
    }

    #[test]
    fn the_snapshots_a_check_counted_are_recorded_and_kept_until_a_newer_count() {
        let spec: StorageGroupSpec = serde_yaml::from_str(
            "targets: [{name: a, pvc: {claimName: a}}, {name: b, pvc: {claimName: b}}]\nstrategy: Mirror\nencryption: {keySecretRef: {name: k}}",
        )
        .unwrap();
        let selected = names(&["a"]);
        let counted = encode(&CheckReport {
            repository_id: Some("ra".into()),
            created: false,
            targets: vec![
                TargetReport {
                    reachable: true,
                    writable: true,
                    bytes_used: Some(4096),
                    ..TargetReport::default()
                },
                TargetReport {
                    reachable: true,
                    writable: true,
                    bytes_used: Some(1024),
                    ..TargetReport::default()
                },
            ],
            error: None,
            key_rotation: None,
            snapshots: Some(SnapshotCount {
                count: 3,
                newest_id: Some("ab12".into()),
                newest_time: Some("2026-12-01T02:00:00Z".into()),
            }),
        });
        let pods = [pod("a-1", "a", 30, Some(("Succeeded", &counted)))];
        let first = plan(&inputs(&selected, &[], &pods, &spec));
        let snapshots = first.tenants[0].snapshots.clone().unwrap();
        assert_eq!(snapshots.count, 3);
        assert_eq!(snapshots.last_snapshot_id.as_deref(), Some("ab12"));
        assert_eq!(snapshots.last_backup_time.as_deref(), Some("2026-12-01T02:00:00Z"));
        assert_eq!(snapshots.checked_time.0.to_string(), "2026-12-01T11:59:30Z");
        assert_eq!(snapshots.bytes_used, Some(5120), "both targets together");
        // A later check that failed, or counted nothing, leaves the recorded count.
        let uncounted = |id: Option<&str>, error: Option<&str>| {
            let mut report: CheckReport = decode(&self::report(id, error)).unwrap();
            report.targets.push(report.targets[0].clone());
            encode(&report)
        };
        let later = [
            ("Failed", uncounted(None, Some("target a: timeout"))),
            ("Succeeded", uncounted(Some("ra"), None)),
        ];
        for (phase, report) in later {
            let pods = [pod("a-2", "a", 10, Some((phase, &report)))];
            let later = plan(&inputs(&selected, &first.tenants, &pods, &spec));
            assert_eq!(later.tenants[0].snapshots, Some(snapshots.clone()));
        }
        // A count with a target that could not be measured has no size.
        let mut partly: CheckReport = decode(&counted).unwrap();
        partly.targets[1].bytes_used = None;
        let pods = [pod("a-3", "a", 5, Some(("Succeeded", &encode(&partly))))];
        let counted_again = plan(&inputs(&selected, &first.tenants, &pods, &spec));
        let snapshots = counted_again.tenants[0].snapshots.clone().unwrap();
        assert_eq!((snapshots.count, snapshots.bytes_used), (3, None));
    }

    #[test]
    fn no_selected_namespace_is_ready() {
        let ready = readiness("shared", Ok(()), &[], &BTreeSet::new());
        assert_eq!(ready.status, Status::True);
    }
}
