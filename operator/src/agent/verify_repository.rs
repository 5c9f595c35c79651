//! A Verification of the repository itself (`spec.repository`), pure: the agent's `verify`
//! command with the share of packs to read, and what its report becomes in status. The pod
//! needs nothing beyond the group's repository access: no scratch claim, no server.

use hort_crds::verification::{RepositoryTotals, RepositoryVerification, VerificationStatus};
use hort_protocol::units::Bytes;
use hort_protocol::{AgentCommand, ReadData, VerificationReport};

use super::verify;

/// `verify --read-data` for 100 percent, else `verify --read-data-subset N%`.
pub fn command(repository: &RepositoryVerification) -> AgentCommand {
    let read_data = match repository.read_data_percent {
        100.. => ReadData::All,
        percent => ReadData::Subset { percent },
    };
    AgentCommand::Verify { read_data }
}

/// Records a finished run's report in `status`: what was checked and read, the damaged packs
/// and the snapshot files or streams they hold (as failures), and a message naming the first.
/// Returns whether nothing is damaged.
pub fn record(report: &VerificationReport, status: &mut VerificationStatus) -> bool {
    let passed = verify::record(report, status);
    // Nothing was restored: no restore time, no restored totals.
    status.restore_duration_seconds = None;
    status.restored = None;
    status.repository = report.packs.map(|p| RepositoryTotals {
        snapshots: p.snapshots,
        packs_stored: p.stored,
        packs_read: p.read,
        bytes_read: p.bytes_read,
    });
    let read = match report.packs {
        Some(p) => format!(
            "{} of {} packs read ({}) in {} snapshots",
            p.read,
            p.stored,
            Bytes(p.bytes_read),
            p.snapshots
        ),
        None => "packs read (the agent did not say how many)".into(),
    };
    status.message = Some(match report.failures.first() {
        _ if passed => format!("repository verified: {read}, nothing damaged"),
        Some(first) => {
            let more = match status.failures_total {
                0 | 1 => String::new(),
                n => format!(" (and {} more failures)", n - 1),
            };
            format!("repository damaged: {}: {}{more}; {read}", first.subject, first.detail)
        }
        None => format!("repository verification failed (the agent named no damage); {read}"),
    });
    passed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(percent: u8) -> RepositoryVerification {
        RepositoryVerification {
            read_data_percent: percent,
        }
    }

    #[test]
    fn the_percent_becomes_the_agents_read_data_argument() {
        assert_eq!(command(&spec(100)).to_args(), ["verify", "--read-data"]);
        assert_eq!(command(&spec(10)).to_args(), ["verify", "--read-data-subset", "10%"]);
        assert_eq!(command(&spec(1)).to_args(), ["verify", "--read-data-subset", "1%"]);
    }

    /// The agent's report of a repository `verify` (12 snapshots, 412 of 4120 packs, 1 GiB)
    /// with `failures` (a JSON array), in the report's JSON form.
    fn agent_report(failures: &str) -> VerificationReport {
        let total = failures.matches("subject").count();
        serde_json::from_str(&format!(
            r#"{{"ok":{ok},"restoreSeconds":0.0,"checkSeconds":31.5,
                "checked":["snapshots: 12 walked, every tree and content blob indexed, every indexed pack present",
                           "packs: 412 of 4120 read (10%, 1.0 GiB), 9000 blobs decrypted and hashed"],
                "failures":{failures},"failuresTotal":{total},"files":0,"bytes":0,"tables":0,
                "packs":{{"snapshots":12,"stored":4120,"read":412,"bytesRead":1073741824}}}}"#,
            ok = total == 0
        ))
        .unwrap()
    }

    #[test]
    fn a_clean_report_succeeds_with_what_was_read() {
        let mut status = VerificationStatus::default();
        assert!(record(&agent_report("[]"), &mut status));
        assert_eq!(
            status.message.as_deref(),
            Some("repository verified: 412 of 4120 packs read (1.0 GiB) in 12 snapshots, nothing damaged")
        );
        assert_eq!(
            status.repository,
            Some(RepositoryTotals {
                snapshots: 12,
                packs_stored: 4120,
                packs_read: 412,
                bytes_read: 1 << 30
            })
        );
        assert!(status.checked[1].starts_with("packs: 412 of 4120 read (10%"));
        assert_eq!(status.check_duration_seconds, Some(31.5));
        assert_eq!(
            (
                status.restore_duration_seconds,
                &status.restored,
                status.snapshot_id.as_deref()
            ),
            (None, &None, None),
            "nothing restored, no snapshot"
        );
        assert_eq!(status.failures_total, 0);
    }

    #[test]
    fn damage_fails_naming_the_pack_and_the_files_that_lose_data() {
        let pack = "9f".repeat(32);
        let mut status = VerificationStatus::default();
        let damaged = agent_report(&format!(
            r#"[{{"subject":"pack {pack}","detail":"damaged: content does not match its name"}},
                {{"subject":"snapshot 1a2b3c4d: file /data/orders.csv","detail":"damaged (pack {pack})"}}]"#
        ));
        assert!(!record(&damaged, &mut status));
        assert_eq!(status.failures_total, 2);
        assert_eq!(status.failures[0].subject, format!("pack {pack}"));
        assert_eq!(status.failures[1].subject, "snapshot 1a2b3c4d: file /data/orders.csv");
        assert_eq!(
            status.message.as_deref(),
            Some(&*format!(
                "repository damaged: pack {pack}: damaged: content does not match its name (and 1 more failures); \
                 412 of 4120 packs read (1.0 GiB) in 12 snapshots"
            ))
        );
        // A report that says not ok fails also without a named failure.
        let mut silent = agent_report("[]");
        silent.ok = false;
        assert!(!record(&silent, &mut VerificationStatus::default()));
    }
}
