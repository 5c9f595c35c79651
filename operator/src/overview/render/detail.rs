//! A job's detail: its facts, statistics and the timeline of its conditions and Events.

use hort_protocol::units::Bytes;
use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;

use super::jobs::progress;
use super::{View, escape, page, state_badge, url_component, when};
use crate::overview::gather::LOG_TAIL_LINES;
use crate::overview::model::{EventsView, JobDetail, LogView, TimelineEntry};

/// The page of one BackupJob.
pub fn job_detail(now: Timestamp, user: &str, job: &JobDetail) -> String {
    let row = &job.row;
    let ns = escape(&row.namespace);
    let mut body = String::new();
    let schedule = match &row.schedule {
        Some(s) => format!(
            r#"<a href="/?namespace={}&amp;schedule={}">{}</a>"#,
            url_component(&row.namespace),
            url_component(s),
            escape(s)
        ),
        None => "manual (no schedule)".into(),
    };
    let _ = write!(
        body,
        r#"<p><a href="/?namespace={nsq}">All jobs in {ns}</a></p>
<section aria-labelledby="facts"><h2 id="facts">Facts</h2><dl class="facts">
<dt>State</dt><dd>{state} {progress}</dd>
<dt>Namespace</dt><dd>{ns}</dd><dt>Schedule</dt><dd>{schedule}</dd>
<dt>Storage group</dt><dd>{group}</dd><dt>Source</dt><dd>{source}</dd>
<dt>Tags</dt><dd>{tags}</dd>
<dt>Snapshot</dt><dd>{snapshot}</dd>
<dt>Created</dt><dd>{created}</dd><dt>Started</dt><dd>{started}</dd><dt>Finished</dt><dd>{finished}</dd>
<dt>Agent pods started</dt><dd>{attempts}</dd><dt>Agent pod</dt><dd>{pod}</dd>
<dt>Message</dt><dd>{message}</dd></dl></section>"#,
        nsq = url_component(&row.namespace),
        state = state_badge(row.state),
        progress = progress(row),
        group = escape(&row.storage_group),
        source = escape(&job.source_kind),
        tags = escape(&job.tags.join(", ")),
        snapshot = row
            .snapshot_id
            .as_deref()
            .map(|s| format!("<code>{}</code>", escape(s)))
            .unwrap_or_else(|| "none yet".into()),
        created = when(now, row.created),
        started = when(now, row.started),
        finished = when(now, row.finished),
        attempts = job.attempts,
        pod = job.agent_pod.as_deref().map(escape).unwrap_or_else(|| "—".into()),
        message = row.message.as_deref().map(escape).unwrap_or_else(|| "—".into()),
    );
    body.push_str(r#"<section aria-labelledby="stats"><h2 id="stats">Statistics</h2>"#);
    match &job.stats {
        Some(s) => {
            let _ = write!(
                body,
                r#"<table><caption>What the backup read and stored</caption><thead><tr><th scope="col">Read from the source</th><th scope="col">New to the repository</th><th scope="col">Stored</th><th scope="col">Files or dumps</th><th scope="col">Deduplication</th><th scope="col">Duration</th></tr></thead>
<tbody><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2} : 1</td><td>{:.1} s</td></tr></tbody></table>"#,
                Bytes(s.bytes_read),
                Bytes(s.bytes_new),
                Bytes(s.bytes_stored),
                s.files,
                s.dedup_ratio,
                s.duration_seconds
            );
        }
        None => body.push_str(r#"<p class="note">No statistics: the backup has not succeeded (yet).</p>"#),
    }
    body.push_str("</section>");

    let mut timeline: Vec<&TimelineEntry> = job.conditions.iter().collect();
    let hidden = match &job.events {
        EventsView::Shown(events) => {
            timeline.extend(events);
            None
        }
        EventsView::Hidden(why) => Some(why),
    };
    timeline.sort_by_key(|e| e.time);
    body.push_str(r#"<section aria-labelledby="timeline"><h2 id="timeline">Timeline of conditions and Events</h2>"#);
    if let Some(why) = hidden {
        let _ = write!(body, r#"<p class="note">Events not shown: {}</p>"#, escape(why));
    }
    if timeline.is_empty() {
        body.push_str(r#"<p class="note">Nothing recorded yet.</p>"#);
    } else {
        body.push_str(r#"<table><caption>Oldest first</caption><thead><tr><th scope="col">Time</th><th scope="col">From</th><th scope="col">What</th><th scope="col">Reason</th><th scope="col">Message</th></tr></thead><tbody>"#);
        for e in timeline {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                when(now, e.time),
                e.source,
                escape(&e.what),
                escape(&e.reason),
                escape(&e.message)
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");
    if let Some(log) = &job.log {
        log_section(&mut body, job.agent_pod.as_deref().unwrap_or_default(), log);
    }
    page(
        &format!("BackupJob {}/{}", row.namespace, row.name),
        Some(View::Jobs),
        Some(user),
        &body,
    )
}

/// The end of the agent pod's log, or why it is not shown.
fn log_section(body: &mut String, pod: &str, log: &LogView) {
    body.push_str(r#"<section aria-labelledby="log"><h2 id="log">Agent pod log</h2>"#);
    match log {
        LogView::Shown(text) if text.is_empty() => {
            let _ = write!(
                body,
                r#"<p class="note">Pod <code>{}</code> has logged nothing yet.</p>"#,
                escape(pod)
            );
        }
        LogView::Shown(text) => {
            let _ = write!(
                body,
                r#"<p class="note">The last {LOG_TAIL_LINES} lines of pod <code>{}</code> (container <code>agent</code>).</p><pre class="log">{}</pre>"#,
                escape(pod),
                escape(text)
            );
        }
        LogView::Hidden(why) => {
            let _ = write!(body, r#"<p class="note">Log not shown: {}</p>"#, escape(why));
        }
    }
    body.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overview::model::{JobRow, JobState, JobStats};

    fn detail(events: EventsView) -> JobDetail {
        JobDetail {
            row: JobRow {
                namespace: "shop".into(),
                name: "db-<1>".into(),
                schedule: None,
                state: JobState::Succeeded,
                created: Some("2026-11-30T09:00:00Z".parse().unwrap()),
                started: Some("2026-11-30T09:00:05Z".parse().unwrap()),
                finished: Some("2026-11-30T09:01:00Z".parse().unwrap()),
                progress: None,
                snapshot_id: Some("0123456789abcdef".into()),
                message: None,
                storage_group: "s3".into(),
            },
            source_kind: "postgres".into(),
            attempts: 1,
            agent_pod: Some("db-1-agent".into()),
            tags: vec!["manual".into()],
            conditions: vec![TimelineEntry {
                time: Some("2026-11-30T09:01:00Z".parse().unwrap()),
                source: "condition",
                what: "Complete=True".into(),
                reason: "Succeeded".into(),
                message: "snapshot 01234567 written".into(),
            }],
            events,
            log: None,
            stats: Some(JobStats {
                bytes_read: 2048,
                bytes_new: 1024,
                bytes_stored: 512,
                files: 2,
                dedup_ratio: 2.0,
                duration_seconds: 55.0,
            }),
        }
    }

    #[test]
    fn the_detail_shows_snapshot_stats_and_a_merged_timeline() {
        let now = "2026-11-30T10:00:00Z".parse().unwrap();
        let event = TimelineEntry {
            time: Some("2026-11-30T09:00:01Z".parse().unwrap()),
            source: "event",
            what: "Normal".into(),
            reason: "AgentPodCreated".into(),
            message: "<pod>".into(),
        };
        let html = job_detail(now, "u", &detail(EventsView::Shown(vec![event])));
        assert!(html.contains("<h1>BackupJob shop/db-&lt;1&gt;</h1>"));
        assert!(html.contains("<code>0123456789abcdef</code>"));
        assert!(
            html.contains("<td>2.0 KiB</td><td>1.0 KiB</td><td>512 B</td><td>2</td><td>2.00 : 1</td><td>55.0 s</td>")
        );
        let event_at = html.find("AgentPodCreated").unwrap();
        let condition_at = html.find("Complete=True").unwrap();
        assert!(event_at < condition_at, "oldest first");
        assert!(html.contains("&lt;pod&gt;"));
    }

    #[test]
    fn hidden_events_say_why() {
        let now = "2026-11-30T10:00:00Z".parse().unwrap();
        let html = job_detail(
            now,
            "u",
            &detail(EventsView::Hidden("you may not list events in shop".into())),
        );
        assert!(html.contains("Events not shown: you may not list events in shop"));
        assert!(html.contains("Complete=True"));
        assert!(!html.contains("Agent pod log"), "no log section without a log read");
    }

    #[test]
    fn the_agent_pods_log_tail_is_shown_escaped_or_why_not() {
        let now = "2026-11-30T10:00:00Z".parse().unwrap();
        let with_log = |log: LogView| JobDetail {
            log: Some(log),
            ..detail(EventsView::Shown(vec![]))
        };
        let shown = job_detail(now, "u", &with_log(LogView::Shown("packed 3 files\n<script>\n".into())));
        assert!(shown.contains(r#"<h2 id="log">Agent pod log</h2>"#));
        assert!(shown.contains(r#"lines of pod <code>db-1-agent</code>"#));
        assert!(
            shown.contains("<pre class=\"log\">packed 3 files\n&lt;script&gt;\n</pre>"),
            "{shown}"
        );
        let hidden = job_detail(now, "u", &with_log(LogView::Hidden("you may not read pod logs".into())));
        assert!(hidden.contains("Log not shown: you may not read pod logs"));
        let empty = job_detail(now, "u", &with_log(LogView::Shown(String::new())));
        assert!(empty.contains("has logged nothing yet"));
    }
}
