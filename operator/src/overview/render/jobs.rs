//! The jobs list: a filter form, then one table per namespace, newest first.

use hort_protocol::units::Bytes;
use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;

use super::{View, escape, page, state_badge, url_component, when};
use crate::overview::model::{JobFilter, JobRow, JobState};

/// The jobs page: `rows` (already filtered, newest first) grouped by namespace; `namespaces`
/// and `schedules` are the filter's choices.
pub fn jobs(
    now: Timestamp,
    user: &str,
    filter: &JobFilter,
    namespaces: &[String],
    schedules: &[String],
    rows: &[JobRow],
) -> String {
    let mut body = filter_form(filter, namespaces, schedules);
    if namespaces.is_empty() {
        body.push_str(
            r#"<p class="note">You may list BackupJobs in no namespace that has any. Ask for a RoleBinding to the ClusterRole <code>hort-view</code>.</p>"#,
        );
    } else if rows.is_empty() {
        body.push_str(r#"<p class="note">No job matches the filter.</p>"#);
    }
    let mut current: Option<&str> = None;
    for row in rows {
        if current != Some(row.namespace.as_str()) {
            if current.is_some() {
                body.push_str("</tbody></table></section>");
            }
            current = Some(&row.namespace);
            let ns = escape(&row.namespace);
            let count = rows.iter().filter(|r| r.namespace == row.namespace).count();
            let _ = write!(
                body,
                r#"<section aria-labelledby="ns-{ns}"><h2 id="ns-{ns}">Namespace {ns}</h2>
<table><caption>BackupJobs in {ns}, newest first ({count})</caption>
<thead><tr><th scope="col">Job</th><th scope="col">Schedule</th><th scope="col">State</th><th scope="col">Progress</th><th scope="col">Created</th><th scope="col">Finished</th><th scope="col">Snapshot</th><th scope="col">Message</th></tr></thead><tbody>"#
            );
        }
        body.push_str(&job_row(now, row));
    }
    if current.is_some() {
        body.push_str("</tbody></table></section>");
    }
    page("Jobs", Some(View::Jobs), Some(user), &body)
}

/// One row of a jobs table.
fn job_row(now: Timestamp, row: &JobRow) -> String {
    let href = format!("/jobs/{}/{}", url_component(&row.namespace), url_component(&row.name));
    let schedule = match &row.schedule {
        Some(s) => format!(
            r#"<a href="/?namespace={}&amp;schedule={}">{}</a>"#,
            url_component(&row.namespace),
            url_component(s),
            escape(s)
        ),
        None => "<span class=\"note\">manual</span>".into(),
    };
    format!(
        r#"<tr class="row-{key}"><td><a href="{href}">{name}</a></td><td>{schedule}</td><td>{state}</td><td>{progress}</td><td>{created}</td><td>{finished}</td><td>{snapshot}</td><td>{message}</td></tr>"#,
        key = row.state.key(),
        name = escape(&row.name),
        state = state_badge(row.state),
        progress = progress(row),
        created = when(now, row.created),
        finished = when(now, row.finished),
        snapshot = row
            .snapshot_id
            .as_deref()
            .map(|s| format!("<code>{}</code>", escape(short(s))))
            .unwrap_or_default(),
        message = row.message.as_deref().map(escape).unwrap_or_default(),
    )
}

/// A running job's progress bar with its text; nothing for other states.
pub(super) fn progress(row: &JobRow) -> String {
    let Some(p) = row.progress.as_ref().filter(|_| row.state == JobState::Running) else {
        return String::new();
    };
    match (p.percent, p.bytes_total) {
        (Some(percent), Some(total)) => format!(
            r#"<progress max="100" value="{percent}" aria-label="{percent} percent done"></progress> {percent} % ({} of {})"#,
            Bytes(p.bytes_done),
            Bytes(total)
        ),
        _ => format!("{} done", Bytes(p.bytes_done)),
    }
}

/// The first 12 characters of a snapshot id (as the plugin shows them).
pub(super) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The filter form (GET, so a filtered view is a link).
fn filter_form(filter: &JobFilter, namespaces: &[String], schedules: &[String]) -> String {
    let option = |value: &str, text: &str, selected: bool| {
        format!(
            r#"<option value="{}"{}>{}</option>"#,
            escape(value),
            if selected { " selected" } else { "" },
            escape(text)
        )
    };
    let mut ns_options = option("", "all", filter.namespace.is_none());
    for ns in namespaces {
        ns_options.push_str(&option(ns, ns, filter.namespace.as_ref() == Some(ns)));
    }
    let mut state_options = option("", "all", filter.state.is_none());
    for state in JobState::ALL {
        state_options.push_str(&option(state.key(), state.label(), filter.state == Some(state)));
    }
    let mut schedule_options = option("", "all", filter.schedule.is_none());
    for s in schedules {
        schedule_options.push_str(&option(s, s, filter.schedule.as_ref() == Some(s)));
    }
    format!(
        r#"<form class="filter" method="get" action="/" role="search" aria-label="Filter the jobs">
<label for="f-namespace">Namespace<select id="f-namespace" name="namespace">{ns_options}</select></label>
<label for="f-state">State<select id="f-state" name="state">{state_options}</select></label>
<label for="f-schedule">Schedule<select id="f-schedule" name="schedule">{schedule_options}</select></label>
<button type="submit">Filter</button> <a href="/">Clear</a></form>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hort_crds::common::Progress;

    fn row(ns: &str, name: &str, state: JobState) -> JobRow {
        JobRow {
            namespace: ns.into(),
            name: name.into(),
            schedule: Some("nightly".into()),
            state,
            created: Some("2026-11-30T09:00:00Z".parse().unwrap()),
            started: None,
            finished: None,
            progress: None,
            snapshot_id: None,
            message: None,
            storage_group: "s3".into(),
        }
    }

    #[test]
    fn each_state_has_its_colour_class_and_its_text() {
        let now = "2026-11-30T10:00:00Z".parse().unwrap();
        let mut running = row("a", "run", JobState::Running);
        running.progress = Some(Progress {
            bytes_done: 512 * 1024 * 1024,
            bytes_total: Some(1024 * 1024 * 1024),
            percent: Some(50),
        });
        let mut failed = row("a", "bad", JobState::Failed);
        failed.message = Some("agent exited with 3: <repository locked>".into());
        let html = jobs(
            now,
            "alice",
            &JobFilter::default(),
            &["a".into()],
            &[],
            &[running, failed],
        );
        assert!(html.contains(r#"<tr class="row-running">"#));
        assert!(html.contains(r#"<span class="state state-running">Running</span>"#));
        assert!(html.contains(r#"<progress max="100" value="50""#) && html.contains("50 % (512.0 MiB of 1.0 GiB)"));
        assert!(html.contains(r#"<span class="state state-failed">Failed</span>"#));
        assert!(html.contains("agent exited with 3: &lt;repository locked&gt;"));
        assert!(html.contains(r#"<th scope="col">State</th>"#));
        assert!(html.contains(r#"<a href="/jobs/a/run">run</a>"#));
    }

    #[test]
    fn user_controlled_names_are_escaped_in_text_and_links() {
        let now = "2026-11-30T10:00:00Z".parse().unwrap();
        let mut evil = row("ns", "x", JobState::Succeeded);
        evil.schedule = Some("\"><script>alert(1)</script>".into());
        evil.snapshot_id = Some("<img src=x onerror=alert(1)>".into());
        let html = jobs(
            now,
            "u",
            &JobFilter::default(),
            &["ns".into()],
            &["<s>".into()],
            &[evil],
        );
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("schedule=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E"));
        assert!(html.contains(r#"<option value="&lt;s&gt;">&lt;s&gt;</option>"#));
    }

    #[test]
    fn one_table_per_namespace_and_the_filter_keeps_its_choices() {
        let now = "2026-11-30T10:00:00Z".parse().unwrap();
        let filter = JobFilter {
            namespace: Some("b".into()),
            state: Some(JobState::Failed),
            schedule: None,
        };
        let rows = [row("a", "one", JobState::Failed), row("b", "two", JobState::Failed)];
        let html = jobs(now, "u", &filter, &["a".into(), "b".into()], &[], &rows);
        assert_eq!(html.matches("<table>").count(), 2);
        assert!(html.contains(r#"<h2 id="ns-a">Namespace a</h2>"#));
        assert!(html.contains(r#"<option value="b" selected>b</option>"#));
        assert!(html.contains(r#"<option value="failed" selected>Failed</option>"#));
        assert!(html.contains(r#"<label for="f-state">State"#));
    }

    #[test]
    fn no_namespace_tells_how_to_get_access() {
        let now = "2026-11-30T10:00:00Z".parse().unwrap();
        let html = jobs(now, "u", &JobFilter::default(), &[], &[], &[]);
        assert!(html.contains("ClusterRole <code>hort-view</code>"));
        assert!(!html.contains("<table>"));
    }
}
