//! Pure rendering of the overview page: typed data in, HTML out. Every text that comes from
//! the cluster goes through [`escape`]; the page has an inline stylesheet and no script.

mod detail;
mod jobs;
mod resources;
mod snapshots;

pub use detail::job_detail;
pub use jobs::jobs;
pub use resources::{groups, schedules};
pub use snapshots::{snapshot_list, snapshot_listing};

use std::fmt::Write as _;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::model::JobState;

/// The views in the navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The jobs list and a job's detail.
    Jobs,
    /// The schedules.
    Schedules,
    /// The storage groups.
    Groups,
}

/// Escapes `text` for HTML text and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes `text` for a path segment or query value (all but unreserved characters).
pub fn url_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time as `2026-11-30 10:41 UTC (5 min ago)` in a `<time>` element, or `—`.
pub fn when(now: Timestamp, time: Option<Timestamp>) -> String {
    let Some(time) = time else {
        return "—".into();
    };
    let text = time.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    let delta = now.duration_since(time);
    format!(
        r#"<time datetime="{}">{text}</time> <span class="rel">({})</span>"#,
        time,
        relative(delta)
    )
}

/// `5 min ago` for a positive `delta`, `in 5 min` for a negative one.
fn relative(delta: SignedDuration) -> String {
    let secs = delta.as_secs().unsigned_abs();
    let amount = match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    };
    if delta.is_negative() {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A state marked by colour and by its text: `<span class="state state-failed">Failed</span>`.
pub fn state_badge(state: JobState) -> String {
    format!(r#"<span class="state state-{}">{}</span>"#, state.key(), state.label())
}

/// A page: the landmarks, the navigation with `view` marked current, who is logged in, and
/// `body` (already HTML) in the main landmark under the heading `title`.
pub fn page(title: &str, view: Option<View>, user: Option<&str>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(user) = user {
        nav.push_str(r#"<nav aria-label="Views"><ul>"#);
        for (v, href, text) in [
            (View::Jobs, "/", "Jobs"),
            (View::Schedules, "/schedules", "Schedules"),
            (View::Groups, "/groups", "Storage groups"),
        ] {
            let current = if Some(v) == view { r#" aria-current="page""# } else { "" };
            let _ = write!(nav, r#"<li><a href="{href}"{current}>{text}</a></li>"#);
        }
        let _ = write!(
            nav,
            r#"</ul></nav><form class="who" method="post" action="/logout"><span>Signed in as <strong>{}</strong></span> <button type="submit">Log out</button></form>"#,
            escape(user)
        );
    }
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Hort</title><style>{STYLE}</style></head>
<body><a class="skip" href="#main">Skip to the content</a>
<header><p class="brand">Hort <span>backup overview (read-only)</span></p>{nav}</header>
<main id="main"><h1>{title}</h1>
{body}</main>
<footer><p>Served by the Hort operator. Read-only: change objects with kubectl or the kubectl-hort plugin.</p></footer>
</body></html>
"##,
        title = escape(title),
    )
}

/// The login form, with `problem` (already a sentence) above it when a login failed.
pub fn login(problem: Option<&str>) -> String {
    let problem = problem
        .map(|p| format!(r#"<p class="problem" role="alert">{}</p>"#, escape(p)))
        .unwrap_or_default();
    let body = format!(
        r#"{problem}<p>This page shows Hort's jobs, schedules and storage groups in the namespaces your Kubernetes
account may read. Log in with a token of that account, e.g. <code>kubectl create token SERVICEACCOUNT -n NAMESPACE</code>.
The token is kept in a cookie of this site that scripts cannot read, and is sent to nobody else.</p>
<form method="post" action="/login" class="login">
<label for="token">Kubernetes token</label>
<input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Log in</button>
</form>"#
    );
    page("Log in", None, None, &body)
}

/// A page that tells what went wrong (already a sentence naming the fix).
pub fn problem(title: &str, user: Option<&str>, message: &str) -> String {
    let body = format!(
        r#"<p class="problem" role="alert">{}</p><p><a href="/">Back to the jobs</a></p>"#,
        escape(message)
    );
    page(title, None, user, &body)
}

/// The inline stylesheet. Colours pass WCAG AA contrast; every state also carries its text.
const STYLE: &str = "
:root{font-family:system-ui,sans-serif;color:#1b1b1b;background:#fafafa}
body{margin:0}header{display:flex;flex-wrap:wrap;align-items:center;gap:1.5rem;background:#17324d;color:#fff;padding:.5rem 1.5rem}
header a{color:#fff}.brand{font-weight:700;font-size:1.2rem;margin:0}.brand span{font-weight:400;font-size:.9rem;opacity:.85}
nav ul{list-style:none;display:flex;gap:1rem;margin:0;padding:0}nav a[aria-current=page]{font-weight:700;text-decoration-thickness:3px}
.who{margin-left:auto}.who button{margin-left:.5rem}
main{padding:1rem 1.5rem}h1{font-size:1.5rem;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:1rem}caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border:1px solid #d0d0d0;padding:.35rem .5rem;text-align:left;vertical-align:top}th{background:#eef1f4}
.state{display:inline-block;padding:.1rem .5rem;border-radius:.8rem;font-weight:600;border:1px solid}
.state-running{color:#0b4f94;background:#e1eefc;border-color:#0b4f94}
.state-succeeded{color:#1a6b2d;background:#e2f4e5;border-color:#1a6b2d}
.state-failed{color:#a3140f;background:#fde4e2;border-color:#a3140f}
.state-pending{color:#4d4d4d;background:#eee;border-color:#4d4d4d}
tr.row-failed td:first-child{border-left:4px solid #a3140f}tr.row-running td:first-child{border-left:4px solid #0b4f94}
tr.row-succeeded td:first-child{border-left:4px solid #1a6b2d}
pre.log{background:#fff;border:1px solid #d0d0d0;padding:.5rem;overflow-x:auto;white-space:pre-wrap;font-size:.85em}
.rel,.note{color:#555;font-size:.9em}.problem{background:#fde4e2;border:1px solid #a3140f;padding:.5rem;color:#7a0e0a}
form.filter{display:flex;flex-wrap:wrap;gap:1rem;align-items:end;margin-bottom:1rem}form.filter label{display:flex;flex-direction:column;font-size:.9rem}
form.login{display:flex;flex-direction:column;gap:.5rem;max-width:30rem}input,select,button{font:inherit;padding:.3rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dl.facts dt{font-weight:600}dl.facts dd{margin:0}
code{font-family:ui-monospace,monospace;font-size:.9em}progress{width:8rem;vertical-align:middle}
.skip{position:absolute;left:-10000px}.skip:focus{left:1rem;top:1rem;background:#fff;color:#000;padding:.5rem}
footer{padding:1rem 1.5rem;color:#555;font-size:.85rem}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(url_component("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
    }

    #[test]
    fn times_are_absolute_and_relative() {
        let now: Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
        let earlier: Timestamp = "2026-11-30T09:55:00Z".parse().unwrap();
        let later: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        assert!(when(now, Some(earlier)).contains("2026-11-30 09:55:00 UTC</time> <span class=\"rel\">(5 min ago)"));
        assert!(when(now, Some(later)).contains("(in 2 h)"));
        assert_eq!(when(now, None), "—");
    }

    #[test]
    fn a_page_has_landmarks_and_no_script() {
        let html = page("Jobs <x>", Some(View::Jobs), Some("alice<b>"), "<p>body</p>");
        assert!(html.contains("<main id=\"main\"><h1>Jobs &lt;x&gt;</h1>"));
        assert!(html.contains(r#"<nav aria-label="Views">"#));
        assert!(html.contains(r#"<a href="/" aria-current="page">Jobs</a>"#));
        assert!(html.contains("Signed in as <strong>alice&lt;b&gt;</strong>"));
        assert!(!html.contains("<script"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external resources"
        );
    }

    #[test]
    fn the_login_form_has_a_labelled_password_field_and_escapes_the_problem() {
        let html = login(Some("bad <token>"));
        assert!(html.contains(r#"<label for="token">Kubernetes token</label>"#));
        assert!(html.contains(r#"<input id="token" name="token" type="password""#));
        assert!(html.contains(r#"method="post" action="/login""#));
        assert!(html.contains("bad &lt;token&gt;"));
        assert!(!html.contains("<nav"), "no navigation before logging in");
    }
}
