//! The pure decisions of the BackupJob reconciler: what an attempt's prologue outcome does to
//! the job ([`prologue_ended`]) and to an agent pod it left held back ([`abandons_held_pod`]),
//! and what the next step is once the facts about the latest
//! attempt are gathered ([`decide`]). No API calls: the reconciler gathers the facts and
//! carries the step out, and the fixture tests below need no API server.

use std::time::Duration;

use hort_protocol::BackupReport;
use jiff::Timestamp;

use crate::agent::backup;
use crate::backup_hooks::{HookRun, Outcome};
use crate::hook_runs::Poll;

/// What the message of a job whose pre hook failed says (no agent pod ran).
pub const PRE_HOOK_FAILED: &str = "a pre hook failed, no data was read: ";
/// What the message of a job says whose post hook failed right after its snapshot was taken.
pub const POST_HOOK_FAILED: &str = "a post hook failed after the snapshot was taken, no data was read: ";
/// What the message of a job whose last attempt's snapshot failed says.
pub const SNAPSHOT_FAILED: &str = "the volume snapshot failed, no data was read: ";

/// Why a job failed for good: the reason of its `Failed` condition and Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// A hook with `onError: Fail` failed.
    HookFailed,
    /// The volume snapshot of the last attempt could not be taken or used.
    SnapshotFailed,
    /// Every attempt allowed by `backoffLimit` failed.
    BackoffLimitExceeded,
    /// A referenced Secret or claim cannot be used as it is.
    InvalidReference,
    /// The namespace may not use the ClusterStorageGroup the job names.
    NamespaceNotAllowed,
}

impl FailureReason {
    /// The condition and Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::HookFailed => "HookFailed",
            FailureReason::SnapshotFailed => "SnapshotFailed",
            FailureReason::BackoffLimitExceeded => "BackoffLimitExceeded",
            FailureReason::InvalidReference => "InvalidReference",
            FailureReason::NamespaceNotAllowed => crate::group_access::NAMESPACE_NOT_ALLOWED,
        }
    }
}

/// How an attempt whose prologue broke off ends: the job fails (with the reason), or the
/// next attempt may start. Always says why in `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrologueEnd {
    /// Set when the job failed for good.
    pub failed: Option<FailureReason>,
    /// The job's status message.
    pub message: String,
}

/// What a prologue that did not create the attempt's agent pod (`outcome` is not
/// [`Outcome::Done`]) does to attempt `attempt` of a job with `backoff_limit`: a failed hook
/// fails the job; a snapshot or pod that could not be made is retried up to the limit.
pub fn prologue_ended(attempt: u32, backoff_limit: u32, outcome: &Outcome) -> PrologueEnd {
    let last = attempt > backoff_limit;
    let of = backoff_limit + 1;
    let (failed, message) = match outcome {
        Outcome::PreHookFailed(why) => (
            Some(FailureReason::HookFailed),
            format!("attempt {attempt}: {PRE_HOOK_FAILED}{why}"),
        ),
        Outcome::PostHookFailed(why) => (
            Some(FailureReason::HookFailed),
            format!("attempt {attempt}: {POST_HOOK_FAILED}{why}"),
        ),
        Outcome::SnapshotFailed(why) if last => (
            Some(FailureReason::SnapshotFailed),
            format!("attempt {attempt} of {of}: {SNAPSHOT_FAILED}{why}"),
        ),
        Outcome::SnapshotFailed(why) => (None, format!("attempt {attempt}: {SNAPSHOT_FAILED}{why}; retrying")),
        Outcome::PodNotCreated(why) if last => (
            Some(FailureReason::BackoffLimitExceeded),
            format!("attempt {attempt} of {of} failed: {why}"),
        ),
        Outcome::PodNotCreated(why) => (None, format!("attempt {attempt} failed: {why}; retrying")),
        Outcome::Done => (None, String::new()),
    };
    PrologueEnd { failed, message }
}

/// Whether an attempt's agent pod, found still held back by the pre-hooks gate, is abandoned
/// by its `prologue` and must be deleted so that it never runs: the prologue is not known
/// (the operator stopped during the pre hooks) or ended without letting the pod go. While the
/// prologue runs, or once it let the pod go, the pod stays.
pub fn abandons_held_pod(prologue: &Poll<HookRun>) -> bool {
    match prologue {
        Poll::Running => false,
        Poll::Unknown => true,
        Poll::Done(run) => run.outcome != Outcome::Done,
    }
}

/// Where the latest attempt stands, as the reconciler found it.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptState {
    /// No attempt is under way: none yet, or the last one's prologue broke off and may be
    /// retried.
    Idle,
    /// The last attempt's prologue failed the job (in this reconcile).
    PrologueFailed(FailureReason),
    /// The attempt's agent pod has not finished.
    Running,
    /// The agent pod succeeded with this report.
    Succeeded(BackupReport),
    /// The agent pod failed or its report could not be read (`finished_at`: when it ended),
    /// or it vanished (`None`): why.
    Failed {
        /// What went wrong.
        why: String,
        /// When the pod ended; `None` for a pod that vanished or was never created.
        finished_at: Option<Timestamp>,
    },
}

/// Whether a job that has not started may take a slot of its group (`maxConcurrentJobs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// It may start: the group has no limit, or a slot is free and no older job waits for it.
    Free,
    /// It waits: `running` jobs of the group hold slots and `ahead` older jobs wait before it.
    Wait {
        /// The StorageGroup's name.
        group: String,
        /// `maxConcurrentJobs`.
        limit: u32,
        /// Jobs of the group that hold a slot.
        running: u32,
        /// Older jobs of the group that wait for a slot too.
        ahead: u32,
    },
}

impl Slot {
    /// The status message and Event note of a job that waits; empty for [`Slot::Free`].
    pub fn message(&self) -> String {
        match self {
            Slot::Free => String::new(),
            Slot::Wait {
                group,
                limit,
                running,
                ahead,
            } => format!(
                "waiting for a slot of StorageGroup {group:?}: {running} of its {limit} (spec.maxConcurrentJobs) \
                 BackupJobs run, {ahead} older job(s) wait before this one"
            ),
        }
    }
}

/// A BackupJob of the same StorageGroup that has not finished, as slot counting sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupJob {
    /// Its name.
    pub name: String,
    /// Its creation time.
    pub created: Timestamp,
    /// It holds a slot: its first attempt started (recorded in status, or its agent pod exists).
    pub started: bool,
    /// It has not started and waits for a slot or has not been looked at yet; a job that got a
    /// slot but waits for something else (a Secret that does not exist yet) is not in line.
    pub in_line: bool,
}

/// The slot of job `me` (not started) in group `group` with `limit` (`None`: no limit), given
/// the group's unfinished jobs `others` (`me` among them or not). Oldest first: a job starts
/// only when the jobs holding slots and the older jobs in line leave a slot free.
pub fn slot(group: &str, limit: Option<u32>, me: &GroupJob, others: &[GroupJob]) -> Slot {
    let Some(limit) = limit else {
        return Slot::Free;
    };
    let others = others.iter().filter(|j| j.name != me.name);
    let (mut running, mut ahead) = (0u32, 0u32);
    for job in others {
        if job.started {
            running += 1;
        } else if job.in_line && (&job.created, &job.name) < (&me.created, &me.name) {
            ahead += 1;
        }
    }
    if running + ahead < limit {
        Slot::Free
    } else {
        Slot::Wait {
            group: group.into(),
            limit,
            running,
            ahead,
        }
    }
}

/// What the reconciler knows when it decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// The latest attempt (`status.attempts`).
    pub attempt: u32,
    /// `spec.backoffLimit`.
    pub backoff_limit: u32,
    /// The latest attempt.
    pub state: AttemptState,
    /// A post hook of the attempt that must not fail did (its message).
    pub post_hook_failure: Option<String>,
    /// The retry backoff of the second attempt (doubling from there).
    pub retry_backoff: Duration,
    /// The job's slot in its group; looked at only before its first attempt (a started job
    /// keeps its slot through its retries).
    pub slot: Slot,
    /// Now.
    pub now: Timestamp,
}

/// What the reconciler does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Start the next attempt (when the group and references allow).
    Start,
    /// Wait for a slot of the group (`maxConcurrentJobs`); the first attempt has not started.
    WaitForSlot(Slot),
    /// Follow the running attempt's progress.
    Follow,
    /// The job succeeded with this snapshot.
    Succeed(BackupReport),
    /// The snapshot was written, but a post hook failed: the job fails and keeps it.
    FailKeepingSnapshot {
        /// The snapshot's report.
        report: BackupReport,
        /// How the post hook failed.
        why: String,
    },
    /// The attempt failed; the next one starts after `wait` (zero: now).
    Retry {
        /// Why the attempt failed.
        why: String,
        /// How long until the next attempt.
        wait: Duration,
    },
    /// The job failed for good.
    Fail {
        /// Why, as a condition reason.
        reason: FailureReason,
        /// The status message; `None` keeps the one the prologue wrote.
        message: Option<String>,
    },
}

/// Decides the next step from `facts`.
pub fn decide(facts: Facts) -> Step {
    let attempt = facts.attempt;
    let (why, finished_at) = match facts.state {
        AttemptState::Idle if attempt == 0 && facts.slot != Slot::Free => return Step::WaitForSlot(facts.slot),
        AttemptState::Idle => return Step::Start,
        AttemptState::PrologueFailed(reason) => return Step::Fail { reason, message: None },
        AttemptState::Running => return Step::Follow,
        AttemptState::Succeeded(report) => {
            return match facts.post_hook_failure {
                Some(why) => Step::FailKeepingSnapshot { report, why },
                None => Step::Succeed(report),
            };
        }
        AttemptState::Failed { why, finished_at } => (why, finished_at),
    };
    if attempt > facts.backoff_limit {
        return Step::Fail {
            reason: FailureReason::BackoffLimitExceeded,
            message: Some(format!(
                "attempt {attempt} of {} failed: {why}",
                facts.backoff_limit + 1
            )),
        };
    }
    // A pod that vanished (deleted, evicted, its node lost) left no end time to count the
    // backoff from: the next attempt starts at once.
    let wait = match finished_at {
        Some(ended) => backup::backoff(facts.retry_backoff, attempt + 1)
            .saturating_sub(facts.now.duration_since(ended).unsigned_abs()),
        None => Duration::ZERO,
    };
    Step::Retry { why, wait }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BackupReport {
        BackupReport {
            snapshot_id: "ab12cd34".into(),
            bytes_read: 10,
            bytes_new: 5,
            bytes_stored: 3,
            files: 1,
            duration_seconds: 1.5,
            targets_behind: vec![],
            catalog_error: None,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn facts(attempt: u32, state: AttemptState) -> Facts {
        Facts {
            attempt,
            backoff_limit: 2,
            state,
            post_hook_failure: None,
            retry_backoff: Duration::from_secs(10),
            slot: Slot::Free,
            now: at(100),
        }
    }

    fn job(name: &str, created: i64, started: bool) -> GroupJob {
        GroupJob {
            name: name.into(),
            created: at(created),
            started,
            in_line: !started,
        }
    }

    #[test]
    fn a_job_beyond_max_concurrent_jobs_waits_and_its_retries_keep_the_slot() {
        let full = slot(
            "s3",
            Some(1),
            &job("b", 2, false),
            &[job("a", 1, true), job("b", 2, false)],
        );
        assert_eq!(
            full,
            Slot::Wait {
                group: "s3".into(),
                limit: 1,
                running: 1,
                ahead: 0
            }
        );
        assert_eq!(
            full.message(),
            "waiting for a slot of StorageGroup \"s3\": 1 of its 1 (spec.maxConcurrentJobs) BackupJobs run, \
             0 older job(s) wait before this one"
        );
        let mut waiting = facts(0, AttemptState::Idle);
        waiting.slot = full.clone();
        assert_eq!(decide(waiting), Step::WaitForSlot(full.clone()));
        // An attempt that broke off during its prologue holds its slot: the retry starts.
        let mut retry = facts(1, AttemptState::Idle);
        retry.slot = full;
        assert_eq!(decide(retry), Step::Start);
        // The first job finished (it is no longer among the unfinished ones): a slot is free.
        assert_eq!(
            slot("s3", Some(1), &job("b", 2, false), &[job("b", 2, false)]),
            Slot::Free
        );
        assert_eq!(slot("s3", None, &job("b", 2, false), &[job("a", 1, true)]), Slot::Free);
    }

    #[test]
    fn slots_go_to_the_oldest_waiting_job_first() {
        let jobs = [job("old", 1, false), job("new", 5, false), job("run", 0, true)];
        // Two slots, one held: the oldest waiting job takes the other, the newer one waits.
        assert_eq!(slot("g", Some(2), &jobs[0], &jobs), Slot::Free);
        assert!(matches!(
            slot("g", Some(2), &jobs[1], &jobs),
            Slot::Wait {
                running: 1,
                ahead: 1,
                ..
            }
        ));
        // Same creation time: by name.
        let same = [job("a", 3, false), job("b", 3, false)];
        assert_eq!(slot("g", Some(1), &same[0], &same), Slot::Free);
        assert!(matches!(
            slot("g", Some(1), &same[1], &same),
            Slot::Wait { ahead: 1, .. }
        ));
        // An older job that got a slot but waits for a Secret does not hold the line.
        let mut blocked = job("old", 1, false);
        blocked.in_line = false;
        assert_eq!(slot("g", Some(1), &jobs[1], &[blocked, jobs[1].clone()]), Slot::Free);
    }

    fn failed(why: &str, finished_at: Option<Timestamp>) -> AttemptState {
        AttemptState::Failed {
            why: why.into(),
            finished_at,
        }
    }

    #[test]
    fn idle_starts_and_running_follows() {
        assert_eq!(decide(facts(0, AttemptState::Idle)), Step::Start);
        assert_eq!(decide(facts(1, AttemptState::Running)), Step::Follow);
    }

    #[test]
    fn a_report_succeeds_unless_a_post_hook_failed() {
        assert_eq!(
            decide(facts(1, AttemptState::Succeeded(report()))),
            Step::Succeed(report())
        );
        let mut hook_failed = facts(1, AttemptState::Succeeded(report()));
        hook_failed.post_hook_failure = Some("resume exited 1".into());
        assert_eq!(
            decide(hook_failed),
            Step::FailKeepingSnapshot {
                report: report(),
                why: "resume exited 1".into()
            }
        );
    }

    #[test]
    fn a_failed_pod_retries_after_what_is_left_of_the_backoff() {
        // Attempt 1 ended 4 s ago; the second attempt waits 10 s after it.
        assert_eq!(
            decide(facts(1, failed("exit 1", Some(at(96))))),
            Step::Retry {
                why: "exit 1".into(),
                wait: Duration::from_secs(6)
            }
        );
        // Attempt 2 ended 30 s ago; the third waits 20 s: now.
        assert_eq!(
            decide(facts(2, failed("exit 1", Some(at(70))))),
            Step::Retry {
                why: "exit 1".into(),
                wait: Duration::ZERO
            }
        );
    }

    #[test]
    fn a_vanished_pod_retries_at_once() {
        assert_eq!(
            decide(facts(1, failed("agent pod \"j-1\" disappeared", None))),
            Step::Retry {
                why: "agent pod \"j-1\" disappeared".into(),
                wait: Duration::ZERO
            }
        );
    }

    #[test]
    fn the_last_attempt_fails_the_job() {
        let Step::Fail { reason, message } = decide(facts(3, failed("exit 1", Some(at(0))))) else {
            panic!("the third of three attempts failed");
        };
        assert_eq!(reason, FailureReason::BackoffLimitExceeded);
        assert_eq!(message.as_deref(), Some("attempt 3 of 3 failed: exit 1"));
    }

    #[test]
    fn a_prologue_failure_keeps_its_reason_and_message() {
        assert_eq!(
            decide(facts(1, AttemptState::PrologueFailed(FailureReason::HookFailed))),
            Step::Fail {
                reason: FailureReason::HookFailed,
                message: None
            }
        );
    }

    #[test]
    fn a_held_pod_is_deleted_once_its_prologue_no_longer_lets_it_go() {
        let done = |outcome: Outcome| {
            Poll::Done(HookRun {
                failures: vec![],
                outcome,
                snapshot: None,
            })
        };
        assert!(!abandons_held_pod(&Poll::Running), "the pre hooks still run");
        assert!(abandons_held_pod(&Poll::Unknown), "the operator stopped during them");
        assert!(abandons_held_pod(&done(Outcome::PreHookFailed(
            "freeze: exit 1".into()
        ))));
        assert!(abandons_held_pod(&done(Outcome::PodNotCreated(
            "removing the gate: 403".into()
        ))));
        // Done: the prologue removed the gate (the pod was read before it did).
        assert!(!abandons_held_pod(&done(Outcome::Done)));
    }

    #[test]
    fn failed_hooks_fail_the_job_at_once() {
        let end = prologue_ended(1, 5, &Outcome::PreHookFailed("flush exited 2".into()));
        assert_eq!(end.failed, Some(FailureReason::HookFailed));
        assert_eq!(end.message, format!("attempt 1: {PRE_HOOK_FAILED}flush exited 2"));
        let end = prologue_ended(1, 5, &Outcome::PostHookFailed("thaw exited 1".into()));
        assert_eq!(end.failed, Some(FailureReason::HookFailed));
        assert!(end.message.contains(POST_HOOK_FAILED));
    }

    #[test]
    fn snapshots_and_pods_that_could_not_be_made_are_retried_up_to_the_limit() {
        let end = prologue_ended(1, 1, &Outcome::SnapshotFailed("class missing".into()));
        assert_eq!(end.failed, None);
        assert_eq!(
            end.message,
            format!("attempt 1: {SNAPSHOT_FAILED}class missing; retrying")
        );
        let end = prologue_ended(2, 1, &Outcome::SnapshotFailed("class missing".into()));
        assert_eq!(end.failed, Some(FailureReason::SnapshotFailed));
        assert_eq!(end.message, format!("attempt 2 of 2: {SNAPSHOT_FAILED}class missing"));
        let end = prologue_ended(1, 1, &Outcome::PodNotCreated("quota".into()));
        assert_eq!(
            (end.failed, end.message.as_str()),
            (None, "attempt 1 failed: quota; retrying")
        );
        let end = prologue_ended(2, 1, &Outcome::PodNotCreated("quota".into()));
        assert_eq!(end.failed, Some(FailureReason::BackoffLimitExceeded));
        assert_eq!(end.message, "attempt 2 of 2 failed: quota");
    }
}
