//! The schedules and the storage groups.

use hort_protocol::units::Bytes;
use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;

use super::jobs::short;
use super::snapshots::snapshots_href;
use super::{View, escape, page, state_badge, url_component, when};
use crate::overview::model::{GroupRow, ScheduleRow};

/// The schedules page.
pub fn schedules(now: Timestamp, user: &str, rows: &[ScheduleRow]) -> String {
    let mut body = String::new();
    if rows.is_empty() {
        body.push_str(r#"<p class="note">No Schedule in the namespaces you may list Schedules in.</p>"#);
    } else {
        body.push_str(r#"<table><caption>Schedules by namespace and name</caption><thead><tr><th scope="col">Namespace</th><th scope="col">Schedule</th><th scope="col">When</th><th scope="col">Next run</th><th scope="col">Last run</th><th scope="col">Last success</th><th scope="col">Retention</th><th scope="col">Last verification</th></tr></thead><tbody>"#);
    }
    for row in rows {
        let verification = match &row.last_verification {
            Some(v) => format!(
                "{} {} {}{}",
                state_badge(v.state),
                escape(&v.name),
                when(now, v.time),
                v.snapshot_id
                    .as_deref()
                    .map(|s| format!(" of <code>{}</code>", escape(short(s))))
                    .unwrap_or_default()
            ),
            None => "<span class=\"note\">none</span>".into(),
        };
        let next = if row.suspended {
            "<strong>suspended</strong>".into()
        } else {
            when(now, row.next_run)
        };
        let _ = write!(
            body,
            r#"<tr><td>{ns}</td><td><a href="/?namespace={nsq}&amp;schedule={nameq}">{name}</a></td><td><code>{cron}</code> ({tz})</td><td>{next}</td><td>{last}</td><td>{success}</td><td>{retention}</td><td>{verification}</td></tr>"#,
            ns = escape(&row.namespace),
            nsq = url_component(&row.namespace),
            nameq = url_component(&row.name),
            name = escape(&row.name),
            cron = escape(&row.cron),
            tz = escape(&row.time_zone),
            last = when(now, row.last_run),
            success = when(now, row.last_success),
            retention = escape(&row.retention),
        );
    }
    if !rows.is_empty() {
        body.push_str("</tbody></table>");
    }
    page("Schedules", Some(View::Schedules), Some(user), &body)
}

/// The storage groups page: one table of targets per group.
pub fn groups(now: Timestamp, user: &str, rows: &[GroupRow]) -> String {
    let mut body = String::new();
    if rows.is_empty() {
        body.push_str(r#"<p class="note">No StorageGroup in the namespaces you may list StorageGroups in.</p>"#);
    }
    for g in rows {
        let id = format!("g-{}-{}", escape(&g.namespace), escape(&g.name));
        let ready = match &g.ready {
            Some((true, _, _)) => r#"<span class="state state-succeeded">Ready</span>"#.to_string(),
            Some((false, reason, message)) => format!(
                r#"<span class="state state-failed">Not ready</span> {}: {}"#,
                escape(reason),
                escape(message)
            ),
            None => r#"<span class="state state-pending">Not checked yet</span>"#.into(),
        };
        let _ = write!(
            body,
            r#"<section aria-labelledby="{id}"><h2 id="{id}">{ns}/{name}</h2>
<p>{ready} · strategy {strategy} · repository size {size} · <a href="{browse}">Browse snapshots</a></p>
<table><caption>Targets of {name}</caption><thead><tr><th scope="col">Target</th><th scope="col">Where</th><th scope="col">Health</th><th scope="col">Used</th><th scope="col">Free</th><th scope="col">Behind</th><th scope="col">Last check</th><th scope="col">Message</th></tr></thead><tbody>"#,
            ns = escape(&g.namespace),
            name = escape(&g.name),
            strategy = escape(&g.strategy),
            size = g.used_size.as_deref().map(escape).unwrap_or_else(|| "unknown".into()),
            browse = escape(&snapshots_href(&g.namespace, &g.name)),
        );
        for t in &g.targets {
            let health = match (t.reachable, t.writable) {
                (Some(true), Some(true)) => r#"<span class="state state-succeeded">Healthy</span>"#,
                (Some(true), _) => r#"<span class="state state-failed">Not writable</span>"#,
                (Some(false), _) => r#"<span class="state state-failed">Unreachable</span>"#,
                (None, _) => r#"<span class="state state-pending">Not checked yet</span>"#,
            };
            let bytes = |b: Option<u64>| b.map(|b| Bytes(b).to_string()).unwrap_or_else(|| "—".into());
            let behind = match t.missing_files {
                Some(0) => r#"<span class="state state-succeeded">In step</span>"#.to_string(),
                Some(n) => format!(r#"<span class="state state-running">{n} files</span>"#),
                None => "—".into(),
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{health}</td><td>{}</td><td>{}</td><td>{behind}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.name),
                escape(&t.location),
                bytes(t.bytes_used),
                bytes(t.bytes_free),
                when(now, t.last_check),
                t.message.as_deref().map(escape).unwrap_or_default(),
            );
        }
        body.push_str("</tbody></table></section>");
    }
    page("Storage groups", Some(View::Groups), Some(user), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overview::model::{JobState, TargetRow, VerificationSummary};

    #[test]
    fn a_schedule_shows_next_run_retention_and_last_verification() {
        let now = "2026-11-30T10:00:00Z".parse().unwrap();
        let row = ScheduleRow {
            namespace: "shop".into(),
            name: "nightly".into(),
            cron: "30 2 * * *".into(),
            time_zone: "Europe/Berlin".into(),
            suspended: false,
            next_run: Some("2026-12-01T01:30:00Z".parse().unwrap()),
            last_run: None,
            last_success: None,
            retention: "7 daily, 4 weekly".into(),
            last_verification: Some(VerificationSummary {
                name: "nightly-verify-1".into(),
                time: Some("2026-11-30T03:00:00Z".parse().unwrap()),
                state: JobState::Succeeded,
                snapshot_id: Some("abcdef0123456789".into()),
            }),
        };
        let html = schedules(now, "u", &[row]);
        assert!(html.contains("<code>30 2 * * *</code> (Europe/Berlin)"));
        assert!(html.contains("(in 15 h)"));
        assert!(html.contains("<td>7 daily, 4 weekly</td>"));
        assert!(html.contains(r#"<span class="state state-succeeded">Succeeded</span> nightly-verify-1"#));
        assert!(html.contains("of <code>abcdef012345</code>"));
    }

    #[test]
    fn targets_show_health_as_colour_and_text_with_usage() {
        let now = "2026-11-30T10:00:00Z".parse().unwrap();
        let target = |name: &str, reachable, message: Option<&str>| TargetRow {
            name: name.into(),
            location: "S3 bucket b at http://s3".into(),
            reachable,
            writable: reachable,
            bytes_used: Some(3 * 1024 * 1024),
            bytes_free: None,
            missing_files: if name == "a" { Some(0) } else { Some(42) },
            last_check: None,
            message: message.map(Into::into),
        };
        let group = GroupRow {
            namespace: "shop".into(),
            name: "<g>".into(),
            strategy: "Mirror".into(),
            ready: Some((false, "TargetUnreachable".into(), "target b: connection refused".into())),
            used_size: Some("3.0 MiB".into()),
            targets: vec![
                target("a", Some(true), None),
                target("b", Some(false), Some("connection refused")),
            ],
        };
        let html = groups(now, "u", &[group]);
        assert!(html.contains(r#"<h2 id="g-shop-&lt;g&gt;">shop/&lt;g&gt;</h2>"#));
        assert!(html.contains(r#"<a href="/groups/shop/%3Cg%3E/snapshots">Browse snapshots</a>"#));
        assert!(html.contains(r#"<span class="state state-failed">Not ready</span> TargetUnreachable"#));
        assert!(html.contains(r#"<td>a</td><td>S3 bucket b at http://s3</td><td><span class="state state-succeeded">Healthy</span></td><td>3.0 MiB</td>"#));
        assert!(html.contains(r#"<span class="state state-failed">Unreachable</span>"#));
        assert!(html.contains(r#"<td><span class="state state-succeeded">In step</span></td>"#));
        assert!(
            html.contains(r#"<td><span class="state state-running">42 files</span></td>"#),
            "a target behind says by how much"
        );
    }
}
