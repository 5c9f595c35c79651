//! The populator's next step for one claim, from what the reconcile found (pure).
//!
//! The order is lib-volume-populator's: a prime claim first, then the restore into it; after
//! the restore the prime claim's volume is handed to the claim by pointing the volume's
//! `claimRef` at it, and only once the claim is Bound to that volume are the prime claim and the
//! pod deleted. The volume is never released in between, so a reclaim policy `Delete` cannot
//! remove it.

use std::time::Duration;

use hort_protocol::RestoreReport;
use jiff::Timestamp;

/// The longest pause before another attempt after failed restores.
pub const LONGEST_BACKOFF: Duration = Duration::from_secs(600);

/// The restore pod of a claim, as found.
#[derive(Clone, Debug, PartialEq)]
pub enum PodFacts {
    /// It has not ended.
    Running,
    /// It succeeded with this report.
    Succeeded(RestoreReport),
    /// It failed (or its report could not be read).
    Failed {
        /// What went wrong.
        why: String,
        /// Which attempt it was (1 for the first).
        attempt: u32,
        /// When it ended.
        finished_at: Timestamp,
        /// Whether its failure was reported (an Event on the claim, marked on the pod).
        reported: bool,
    },
}

/// What the reconcile found about one claim whose `dataSourceRef` names a VolumeRestoreSource.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// The volume the claim is bound to (`spec.volumeName`), if any.
    pub claim_volume: Option<String>,
    /// Whether that volume is one the populator filled (it carries `hort.dev/populated-from`).
    pub claim_volume_populated: bool,
    /// Whether the claim's phase is Bound.
    pub claim_bound: bool,
    /// Whether the claim asks for a raw block device (`volumeMode: Block`).
    pub block: bool,
    /// Whether its StorageClass binds on first consumer (`WaitForFirstConsumer`).
    pub wait_for_first_consumer: bool,
    /// The node the scheduler chose (`volume.kubernetes.io/selected-node`), if any.
    pub selected_node: Option<String>,
    /// Whether the prime claim exists, and then the volume it is bound to.
    pub prime: Option<Option<String>>,
    /// The newest restore pod of the claim, if any.
    pub pod: Option<PodFacts>,
    /// The uid in the `claimRef` of the prime claim's volume (read once the pod succeeded).
    pub volume_claim_uid: Option<String>,
    /// The claim's uid.
    pub claim_uid: String,
    /// Pause before the second attempt; doubled for each further one.
    pub retry_backoff: Duration,
    /// Now.
    pub now: Timestamp,
}

/// What the reconcile does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Nothing: the claim is bound and nothing of the populator is left.
    Done,
    /// The claim cannot be populated: a restore writes files, and it asks for a block device.
    Unsupported,
    /// Wait for the scheduler to choose a node for the claim.
    WaitForNode,
    /// Create the prime claim (on `node` with WaitForFirstConsumer).
    CreatePrime {
        /// The selected node.
        node: Option<String>,
    },
    /// Resolve the source and start attempt `attempt` of the restore pod on `node`.
    StartPod {
        /// The attempt (1 for the first).
        attempt: u32,
        /// The selected node.
        node: Option<String>,
    },
    /// Wait for the running pod to end.
    Follow,
    /// The pod failed and nobody was told yet: report it (once), then retry after `wait`.
    ReportFailure {
        /// What went wrong.
        why: String,
        /// The failed attempt.
        attempt: u32,
        /// Time left before the next attempt (zero when it may start at once).
        wait: Duration,
    },
    /// The failure was reported: wait `wait` before the next attempt.
    BackOff {
        /// Time left before the next attempt.
        wait: Duration,
    },
    /// Delete the failed pod and start attempt `attempt`.
    Retry {
        /// The next attempt.
        attempt: u32,
        /// The selected node.
        node: Option<String>,
    },
    /// Wait until the prime claim is bound to a volume (the restore wrote into it).
    WaitForPrimeVolume,
    /// Point the prime claim's volume `volume` at the claim.
    Rebind {
        /// The volume.
        volume: String,
    },
    /// Wait for the PV controller to bind the claim to the volume.
    WaitForBind,
    /// The claim got a volume the populator did not fill (its provisioner did not leave it to
    /// the populator): say so, and delete the prime claim and pod if any are left.
    Bypassed {
        /// The claim's volume.
        volume: String,
    },
    /// The claim is bound: delete the prime claim and the pod, reporting `report` (once, while
    /// the prime claim still exists).
    CleanUp {
        /// The restore's report, to publish with the `Populated` Event.
        report: Option<RestoreReport>,
    },
}

/// The pause after failed attempt `attempt`: `base` doubled for each attempt after the first,
/// at most [`LONGEST_BACKOFF`].
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(LONGEST_BACKOFF)
}

/// Decides the next step for a claim from `facts`.
pub fn decide(facts: Facts) -> Step {
    let ours_left = facts.prime.is_some() || facts.pod.is_some();
    if let Some(volume) = facts.claim_volume {
        if !facts.claim_volume_populated {
            return Step::Bypassed { volume };
        }
        if !ours_left {
            return Step::Done;
        }
        if !facts.claim_bound {
            return Step::WaitForBind;
        }
        let report = match (&facts.prime, facts.pod) {
            (Some(_), Some(PodFacts::Succeeded(report))) => Some(report),
            _ => None,
        };
        return Step::CleanUp { report };
    }
    if facts.block {
        return Step::Unsupported;
    }
    if facts.wait_for_first_consumer && facts.selected_node.is_none() {
        return Step::WaitForNode;
    }
    let node = facts.selected_node.filter(|_| facts.wait_for_first_consumer);
    let Some(prime_volume) = facts.prime else {
        return Step::CreatePrime { node };
    };
    match facts.pod {
        None => Step::StartPod { attempt: 1, node },
        Some(PodFacts::Running) => Step::Follow,
        Some(PodFacts::Failed {
            why,
            attempt,
            finished_at,
            reported,
        }) => {
            let pause = backoff(facts.retry_backoff, attempt);
            let passed = facts.now.duration_since(finished_at).unsigned_abs();
            let wait = pause.saturating_sub(passed);
            if !reported {
                return Step::ReportFailure { why, attempt, wait };
            }
            if wait.is_zero() {
                return Step::Retry {
                    attempt: attempt + 1,
                    node,
                };
            }
            Step::BackOff { wait }
        }
        Some(PodFacts::Succeeded(_)) => match (prime_volume, facts.volume_claim_uid) {
            (None, _) => Step::WaitForPrimeVolume,
            (Some(_), Some(uid)) if uid == facts.claim_uid => Step::WaitForBind,
            (Some(volume), _) => Step::Rebind { volume },
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const UID: &str = "0c7e1c2a-0000-4000-8000-000000000001";

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn report() -> RestoreReport {
        RestoreReport {
            snapshot_id: "ab12cd34".into(),
            bytes_restored: 4096,
            files: 2,
            skipped: 0,
            duration_seconds: 1.5,
            row_counts: BTreeMap::new(),
        }
    }

    /// An unbound claim of an Immediate class that nothing was done for yet.
    fn fresh() -> Facts {
        Facts {
            claim_volume: None,
            claim_volume_populated: false,
            claim_bound: false,
            block: false,
            wait_for_first_consumer: false,
            selected_node: None,
            prime: None,
            pod: None,
            volume_claim_uid: None,
            claim_uid: UID.into(),
            retry_backoff: Duration::from_secs(10),
            now: t(0),
        }
    }

    #[test]
    fn an_unbound_claim_gets_a_prime_claim_then_a_restore_pod() {
        assert_eq!(decide(fresh()), Step::CreatePrime { node: None });
        let primed = Facts {
            prime: Some(None),
            ..fresh()
        };
        assert_eq!(decide(primed.clone()), Step::StartPod { attempt: 1, node: None });
        let running = Facts {
            pod: Some(PodFacts::Running),
            ..primed
        };
        assert_eq!(decide(running), Step::Follow);
    }

    #[test]
    fn a_block_claim_is_not_populated() {
        let block = Facts { block: true, ..fresh() };
        assert_eq!(decide(block), Step::Unsupported);
    }

    #[test]
    fn wait_for_first_consumer_waits_for_the_selected_node_and_works_there() {
        let waiting = Facts {
            wait_for_first_consumer: true,
            ..fresh()
        };
        assert_eq!(decide(waiting.clone()), Step::WaitForNode);
        let selected = Facts {
            selected_node: Some("node-a".into()),
            ..waiting
        };
        assert_eq!(
            decide(selected.clone()),
            Step::CreatePrime {
                node: Some("node-a".into())
            }
        );
        let primed = Facts {
            prime: Some(None),
            ..selected
        };
        assert_eq!(
            decide(primed),
            Step::StartPod {
                attempt: 1,
                node: Some("node-a".into())
            }
        );
        let immediate = Facts {
            selected_node: Some("node-a".into()),
            prime: Some(None),
            ..fresh()
        };
        assert_eq!(
            decide(immediate),
            Step::StartPod { attempt: 1, node: None },
            "an Immediate class does not pin the pod"
        );
    }

    #[test]
    fn a_failed_pod_is_reported_once_and_retried_after_a_doubling_backoff() {
        let failed = |attempt, now, reported| Facts {
            prime: Some(Some("pv-1".into())),
            pod: Some(PodFacts::Failed {
                why: "exit 1".into(),
                attempt,
                finished_at: t(0),
                reported,
            }),
            now,
            ..fresh()
        };
        assert_eq!(
            decide(failed(1, t(4), false)),
            Step::ReportFailure {
                why: "exit 1".into(),
                attempt: 1,
                wait: Duration::from_secs(6)
            }
        );
        assert_eq!(
            decide(failed(1, t(12), false)),
            Step::ReportFailure {
                why: "exit 1".into(),
                attempt: 1,
                wait: Duration::ZERO
            },
            "reported even when the pause has passed"
        );
        assert_eq!(
            decide(failed(1, t(4), true)),
            Step::BackOff {
                wait: Duration::from_secs(6)
            }
        );
        assert_eq!(decide(failed(1, t(10), true)), Step::Retry { attempt: 2, node: None });
        assert_eq!(
            decide(failed(3, t(30), true)),
            Step::BackOff {
                wait: Duration::from_secs(10)
            },
            "the third failure waits 40 s"
        );
        assert_eq!(decide(failed(3, t(40), true)), Step::Retry { attempt: 4, node: None });
        assert_eq!(backoff(Duration::from_secs(10), 30), LONGEST_BACKOFF);
    }

    #[test]
    fn after_the_restore_the_volume_is_rebound_and_then_the_claim_waits_for_the_binder() {
        let succeeded = Facts {
            prime: Some(None),
            pod: Some(PodFacts::Succeeded(report())),
            ..fresh()
        };
        assert_eq!(decide(succeeded.clone()), Step::WaitForPrimeVolume);
        let prime_bound = Facts {
            prime: Some(Some("pv-1".into())),
            volume_claim_uid: Some("uid-of-the-prime-claim".into()),
            ..succeeded
        };
        assert_eq!(decide(prime_bound.clone()), Step::Rebind { volume: "pv-1".into() });
        let rebound = Facts {
            volume_claim_uid: Some(UID.into()),
            ..prime_bound.clone()
        };
        assert_eq!(decide(rebound), Step::WaitForBind);
        let volume_named_not_bound = Facts {
            claim_volume: Some("pv-1".into()),
            claim_volume_populated: true,
            ..prime_bound
        };
        assert_eq!(decide(volume_named_not_bound), Step::WaitForBind);
    }

    #[test]
    fn once_bound_the_prime_claim_and_pod_go_and_the_report_is_published_once() {
        let bound = Facts {
            claim_volume: Some("pv-1".into()),
            claim_volume_populated: true,
            claim_bound: true,
            prime: Some(None),
            pod: Some(PodFacts::Succeeded(report())),
            volume_claim_uid: Some(UID.into()),
            ..fresh()
        };
        assert_eq!(decide(bound.clone()), Step::CleanUp { report: Some(report()) });
        let prime_gone = Facts {
            prime: None,
            ..bound.clone()
        };
        assert_eq!(decide(prime_gone), Step::CleanUp { report: None });
        let all_gone = Facts {
            prime: None,
            pod: None,
            ..bound
        };
        assert_eq!(decide(all_gone), Step::Done);
    }

    #[test]
    fn a_volume_the_populator_did_not_fill_is_reported_whatever_else_is_left() {
        let provisioned = Facts {
            claim_volume: Some("pvc-empty".into()),
            claim_bound: true,
            ..fresh()
        };
        let bypassed = Step::Bypassed {
            volume: "pvc-empty".into(),
        };
        assert_eq!(decide(provisioned.clone()), bypassed, "before any prime claim");
        let with_pod = Facts {
            prime: Some(Some("pv-prime".into())),
            pod: Some(PodFacts::Running),
            ..provisioned
        };
        assert_eq!(decide(with_pod), bypassed, "while a restore runs");
    }
}
