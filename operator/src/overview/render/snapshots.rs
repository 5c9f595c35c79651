//! The snapshot browser: a storage group's snapshots, and the entries of one snapshot's
//! directory (or its database tables with the rows each held when dumped).

use std::fmt::Write as _;

use hort_protocol::units::Bytes;
use hort_protocol::{EntryKind, ListedEntry, Listing, SnapshotList, catalog};
use k8s_openapi::jiff::Timestamp;

use super::jobs::short;
use super::{View, escape, page, url_component, when};

/// Where a group's snapshot list is.
pub fn snapshots_href(namespace: &str, group: &str) -> String {
    format!(
        "/groups/{}/{}/snapshots",
        url_component(namespace),
        url_component(group)
    )
}

/// Where directory `path` of a snapshot is (the root when empty).
fn listing_href(namespace: &str, group: &str, snapshot: &str, path: &str) -> String {
    let mut href = format!("{}/{}", snapshots_href(namespace, group), url_component(snapshot));
    if !path.is_empty() {
        let _ = write!(href, "?path={}", url_component(path));
    }
    href
}

/// The entries directly in directory `path` of `listing` (the root when empty); the listing
/// holds the whole subtree, depth first. A database backup's streams are no tree: they are
/// all in its root, by their full names.
pub fn children<'a>(listing: &'a Listing, path: &str) -> Vec<&'a ListedEntry> {
    let path = path.trim_matches('/');
    listing
        .entries
        .iter()
        .filter(|e| {
            if e.kind == EntryKind::Stream {
                return path.is_empty();
            }
            let rest = if path.is_empty() {
                Some(e.path.as_str())
            } else {
                e.path.strip_prefix(path).and_then(|r| r.strip_prefix('/'))
            };
            rest.is_some_and(|r| !r.is_empty() && !r.contains('/'))
        })
        .collect()
}

/// A group's snapshots, newest first, without Hort's own catalog snapshots.
pub fn snapshot_list(now: Timestamp, user: &str, namespace: &str, group: &str, list: &SnapshotList) -> String {
    let mut shown: Vec<_> = list
        .snapshots
        .iter()
        .filter(|s| !s.tags.iter().any(|t| t == catalog::TAG))
        .collect();
    shown.sort_by(|a, b| b.time.cmp(&a.time));
    let mut body = String::new();
    if shown.is_empty() {
        body.push_str(r#"<p class="note">No backup in this group's repository yet.</p>"#);
    } else {
        let _ = write!(
            body,
            r#"<table><caption>Snapshots of {ns}/{group}, newest first</caption><thead><tr><th scope="col">Snapshot</th><th scope="col">Taken</th><th scope="col">Host</th><th scope="col">Source</th><th scope="col">Size</th><th scope="col">Files</th><th scope="col">Tags</th></tr></thead><tbody>"#,
            ns = escape(namespace),
            group = escape(group),
        );
    }
    for s in &shown {
        let source = s.path.clone().unwrap_or_else(|| {
            let names: Vec<&str> = s.streams.iter().map(|st| st.name.as_str()).collect();
            names.join(", ")
        });
        let time = s.time.parse::<Timestamp>().ok();
        let _ = write!(
            body,
            r#"<tr><td><a href="{href}"><code>{id}</code></a></td><td>{time}</td><td>{host}</td><td>{source}</td><td>{size}</td><td>{files}</td><td>{tags}</td></tr>"#,
            href = escape(&listing_href(namespace, group, &s.id, "")),
            id = escape(short(&s.id)),
            time = when(now, time),
            host = escape(&s.hostname),
            source = escape(&source),
            size = Bytes(s.bytes),
            files = s.files,
            tags = escape(&s.tags.join(", ")),
        );
    }
    if !shown.is_empty() {
        body.push_str("</tbody></table>");
    }
    page(
        &format!("Snapshots of {namespace}/{group}"),
        Some(View::Groups),
        Some(user),
        &body,
    )
}

/// Directory `path` of a snapshot: a path of links up to the root, then its entries (sub
/// directories link deeper), and a database backup's tables with their rows.
pub fn snapshot_listing(user: &str, namespace: &str, group: &str, path: &str, listing: &Listing) -> String {
    let id = &listing.snapshot_id;
    let path = path.trim_matches('/');
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<nav aria-label="Path"><p><a href="{list}">{group}</a> / <a href="{root}"><code>{short}</code></a>"#,
        list = escape(&snapshots_href(namespace, group)),
        group = escape(group),
        root = escape(&listing_href(namespace, group, id, "")),
        short = escape(short(id)),
    );
    let mut walked = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !walked.is_empty() {
            walked.push('/');
        }
        walked.push_str(part);
        let _ = write!(
            body,
            r#" / <a href="{}">{}</a>"#,
            escape(&listing_href(namespace, group, id, &walked)),
            escape(part)
        );
    }
    body.push_str("</p></nav>");
    let entries = children(listing, path);
    if entries.is_empty() && listing.tables.is_empty() {
        body.push_str(r#"<p class="note">Nothing here.</p>"#);
    }
    if !entries.is_empty() {
        body.push_str(r#"<table><caption>Entries</caption><thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Mode</th><th scope="col">Size</th><th scope="col">Modified</th></tr></thead><tbody>"#);
    }
    for e in &entries {
        let name = match e.kind {
            EntryKind::Stream => &e.path,
            _ => e.path.rsplit('/').next().unwrap_or(&e.path),
        };
        let shown = match (e.kind, &e.target) {
            (EntryKind::Dir, _) => format!(
                r#"<a href="{}">{}/</a>"#,
                escape(&listing_href(namespace, group, id, &e.path)),
                escape(name)
            ),
            (EntryKind::Symlink, Some(t)) => format!("{} → {}", escape(name), escape(t)),
            _ => escape(name),
        };
        let modified = e.mtime.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
        let _ = write!(
            body,
            "<tr><td>{shown}</td><td>{kind}</td><td><code>{mode}</code></td><td>{size}</td><td>{modified}</td></tr>",
            kind = format!("{:?}", e.kind).to_lowercase(),
            mode = escape(&e.mode),
            size = if e.kind == EntryKind::Dir {
                "—".into()
            } else {
                Bytes(e.size).to_string()
            },
            modified = modified.map_or_else(|| "—".into(), |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()),
        );
    }
    if !entries.is_empty() {
        body.push_str("</tbody></table>");
    }
    if !listing.tables.is_empty() {
        body.push_str(r#"<table><caption>Tables, with the rows each held when it was dumped</caption><thead><tr><th scope="col">Database</th><th scope="col">Table</th><th scope="col">Rows</th></tr></thead><tbody>"#);
        for t in &listing.tables {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.database),
                escape(&t.table),
                t.rows
            );
        }
        body.push_str("</tbody></table>");
    }
    let title = if path.is_empty() {
        format!("Snapshot {}", short(id))
    } else {
        format!("Snapshot {}: {path}", short(id))
    };
    page(&title, Some(View::Groups), Some(user), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hort_protocol::{ListedStream, ListedTable, SnapshotSummary};

    fn entry(path: &str, kind: EntryKind, size: u64) -> ListedEntry {
        ListedEntry {
            path: path.into(),
            kind,
            size,
            mode: "644".into(),
            mtime: Some("2026-11-30T10:00:00Z".into()),
            target: None,
            content: None,
        }
    }

    fn listing() -> Listing {
        Listing {
            snapshot_id: "ab".repeat(32),
            entries: vec![
                entry("media", EntryKind::Dir, 0),
                entry("media/random.bin", EntryKind::File, 5_000_000),
                entry("media/deep", EntryKind::Dir, 0),
                entry("media/deep/x.txt", EntryKind::File, 3),
                entry("media2", EntryKind::Dir, 0),
                entry("<b>.txt", EntryKind::File, 1),
            ],
            tables: vec![],
        }
    }

    #[test]
    fn a_directory_shows_only_what_it_holds_directly() {
        let l = listing();
        let names = |path: &str| -> Vec<String> { children(&l, path).iter().map(|e| e.path.clone()).collect() };
        assert_eq!(names(""), ["media", "media2", "<b>.txt"]);
        assert_eq!(names("media"), ["media/random.bin", "media/deep"]);
        assert_eq!(
            names("/media/"),
            ["media/random.bin", "media/deep"],
            "slashes around the path"
        );
        assert_eq!(names("media/deep"), ["media/deep/x.txt"]);
        assert!(names("med").is_empty(), "a prefix of a name is no directory");
    }

    #[test]
    fn the_listing_links_directories_and_the_path_and_escapes_names() {
        let html = snapshot_listing("u", "shop", "s3 g", "media", &listing());
        let root = format!("/groups/shop/s3%20g/snapshots/{}", "ab".repeat(32));
        assert!(
            html.contains(&format!(r#"<a href="{root}?path=media%2Fdeep">deep/</a>"#)),
            "{html}"
        );
        assert!(html.contains(&format!(r#" / <a href="{root}?path=media">media</a>"#)));
        assert!(html.contains("<tr><td>random.bin</td><td>file</td><td><code>644</code></td><td>4.8 MiB</td>"));
        assert!(!html.contains("x.txt"), "deeper entries are not listed");
        let root_html = snapshot_listing("u", "shop", "s3 g", "", &listing());
        assert!(root_html.contains("<td>&lt;b&gt;.txt</td>"));
        assert!(!root_html.contains("<b>.txt"));
    }

    #[test]
    fn a_database_snapshot_lists_its_tables_with_rows() {
        let listing = Listing {
            snapshot_id: "cd".repeat(32),
            entries: vec![entry("mariadb/e2e_shop.sql", EntryKind::Stream, 1234)],
            tables: vec![ListedTable {
                database: "e2e_shop".into(),
                table: "orders".into(),
                rows: 3000,
            }],
        };
        let html = snapshot_listing("u", "shop", "disk", "", &listing);
        assert!(html.contains("<tr><td>e2e_shop</td><td>orders</td><td>3000</td></tr>"));
        assert!(
            html.contains("<tr><td>mariadb/e2e_shop.sql</td><td>stream</td>"),
            "{html}"
        );
    }

    #[test]
    fn the_list_is_newest_first_without_catalogs() {
        let snapshot = |id: &str, time: &str, tags: &[&str]| SnapshotSummary {
            id: id.repeat(32),
            time: time.into(),
            hostname: "shop/data".into(),
            path: None,
            streams: vec![ListedStream {
                name: "postgres/db/shop.dump".into(),
                size: 10,
            }],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            bytes: 2048,
            files: 0,
        };
        let list = SnapshotList {
            snapshots: vec![
                snapshot("aa", "2026-11-29T10:00:00Z", &["nightly"]),
                snapshot("bb", "2026-11-30T10:00:00Z", &["nightly"]),
                snapshot("cc", "2026-11-30T11:00:00Z", &[catalog::TAG]),
            ],
        };
        let now = "2026-11-30T12:00:00Z".parse().unwrap();
        let html = snapshot_list(now, "u", "shop", "s3", &list);
        let (a, b) = (html.find("aaaaaaaaaaaa").unwrap(), html.find("bbbbbbbbbbbb").unwrap());
        assert!(b < a, "newest first");
        assert!(!html.contains("cccccccccccc"), "no catalog snapshot");
        assert!(html.contains("<td>postgres/db/shop.dump</td><td>2.0 KiB</td>"));
        let empty = snapshot_list(now, "u", "shop", "s3", &SnapshotList { snapshots: vec![] });
        assert!(empty.contains("No backup in this group's repository yet."));
    }
}
