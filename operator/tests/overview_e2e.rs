//! The overview page in a real browser against the e2e cluster: headless Chromium logs in with
//! a ServiceAccount's token through a port-forward to the operator's overview Service, sees a
//! succeeded, a running and a failed job of its namespace in their colours and texts and
//! nothing of another namespace, and opens a directory of a real backup in the snapshot browser
//! (an agent pod started with that token reads the repository).
//!
//! Built only with `--features e2e-browser`: `kind-tests/e2e.sh` (case `plugin`) runs it after
//! creating those jobs, and passes what to expect in `HORT_E2E_*` variables.

#[allow(dead_code, reason = "this test takes no screenshots")]
mod cdp;

use serde_json::{Value, json};

/// A variable `kind-tests/e2e.sh` sets.
fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: this test is run by kind-tests/e2e.sh"))
}

/// Each job row of the page: name, state text, badge background and text colour, row marker.
async fn job_rows(browser: &mut cdp::Browser) -> Value {
    browser
        .eval(
            "Array.from(document.querySelectorAll('tbody tr')).map(tr => { const s = tr.querySelector('.state'); \
             return [tr.querySelector('a').textContent, s.textContent, getComputedStyle(s).backgroundColor, \
                     getComputedStyle(s).color, getComputedStyle(tr.cells[0]).borderLeftColor]; })",
        )
        .await
}

#[tokio::test]
async fn the_page_shows_the_clusters_jobs_by_colour_and_browses_a_real_snapshot() {
    let base = var("HORT_E2E_OVERVIEW_URL");
    let namespace = var("HORT_E2E_NAMESPACE");
    let other = var("HORT_E2E_OTHER_NAMESPACE");
    let snapshot = var("HORT_E2E_SNAPSHOT");
    let mut browser = cdp::Browser::start().await;

    browser.goto(&base).await;
    assert_eq!(browser.eval("document.title").await, "Log in · Hort");
    let login = format!(
        "document.getElementById('token').value = {}; document.querySelector('form.login').submit()",
        serde_json::to_string(&var("HORT_E2E_TOKEN")).unwrap()
    );
    browser.eval_and_wait(&login).await;
    let text = browser.eval("document.body.innerText").await;
    assert_eq!(browser.eval("document.title").await, "Jobs · Hort", "{text}");

    let rows = job_rows(&mut browser).await;
    let row = |job: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == job)
            .unwrap_or_else(|| panic!("job {job} is listed: {rows}"))
            .clone()
    };
    let colours = [
        (
            "HORT_E2E_SUCCEEDED_JOB",
            "Succeeded",
            "rgb(226, 244, 229)",
            "rgb(26, 107, 45)",
        ),
        (
            "HORT_E2E_RUNNING_JOB",
            "Running",
            "rgb(225, 238, 252)",
            "rgb(11, 79, 148)",
        ),
        (
            "HORT_E2E_FAILED_JOB",
            "Failed",
            "rgb(253, 228, 226)",
            "rgb(163, 20, 15)",
        ),
    ];
    for (variable, state, background, colour) in colours {
        let job = var(variable);
        assert_eq!(row(&job), json!([job, state, background, colour, colour]), "{rows}");
    }
    let text = text.as_str().unwrap();
    assert!(text.contains(&namespace), "{text}");
    assert!(!text.contains(&other), "nothing of namespace {other}: {text}");

    // Another namespace's jobs asked for by URL: refused, naming the right.
    browser.goto(&format!("{base}/?namespace={other}")).await;
    let refused = browser.eval("document.body.innerText").await;
    assert!(
        refused
            .as_str()
            .unwrap()
            .contains(&format!("you may not list backupjobs.hort.dev in namespace {other}")),
        "{refused}"
    );

    // The snapshot browser, from the groups page's link down into the backup's directory.
    browser.goto(&format!("{base}/groups")).await;
    let link = format!("/groups/{namespace}/s3/snapshots");
    let href = browser
        .eval(&format!(
            "Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href')).find(h => h === {})",
            serde_json::to_string(&link).unwrap()
        ))
        .await;
    assert_eq!(href, json!(link), "the groups page links to the snapshot browser");
    browser.goto(&format!("{base}{link}/{snapshot}?path=media")).await;
    let listing = browser.eval("document.body.innerText").await;
    let listing = listing.as_str().unwrap();
    assert!(listing.contains("random.bin"), "{listing}");
    assert!(listing.contains(&snapshot[..12]), "the short id: {listing}");
}
