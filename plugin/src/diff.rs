//! `diff GROUP FROM TO [PATH]`: what changed between two snapshots: files added, removed or
//! modified (content, size, mode, type), and tables whose row counts changed. Pure: it
//! compares two [`Listing`]s, which one agent pod reads (see [`crate::browse::diff`]).

use std::collections::BTreeMap;

use hort_protocol::{EntryKind, ListedEntry, Listing};
use serde::Serialize;

use crate::output::table;

/// How an entry or a table differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// In both, different.
    Modified,
}

impl Change {
    fn mark(self) -> &'static str {
        match self {
            Change::Added => "+",
            Change::Removed => "-",
            Change::Modified => "M",
        }
    }
}

/// A file, directory, link or stream that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryChange {
    /// Its path (or a stream's name).
    pub path: String,
    /// What it is (in the second snapshot, if it is there).
    pub kind: EntryKind,
    /// How it differs.
    pub change: Change,
    /// What differs of a modified entry, e.g. `content`, `size 5 → 7`, `mode 644 → 600`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub what: Vec<String>,
}

/// A table whose row count differs, or that only one snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableChange {
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// How it differs.
    pub change: Change,
    /// Rows in the first snapshot.
    pub rows_before: Option<u64>,
    /// Rows in the second snapshot.
    pub rows_after: Option<u64>,
}

/// The differences between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotDiff {
    /// The first snapshot (full id).
    pub from: String,
    /// The second snapshot (full id).
    pub to: String,
    /// Entries that differ, by path.
    pub entries: Vec<EntryChange>,
    /// Tables that differ, by database and table.
    pub tables: Vec<TableChange>,
}

/// What differs between two versions of one entry (empty: nothing). A directory's mtime
/// changes whenever a file in it does, so it is not reported; what changed inside is.
fn entry_differences(before: &ListedEntry, after: &ListedEntry) -> Vec<String> {
    let mut what = Vec::new();
    if before.kind != after.kind {
        what.push(format!("type {:?} → {:?}", before.kind, after.kind).to_lowercase());
        return what;
    }
    let content_differs = match (&before.content, &after.content) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    if content_differs || (before.size != after.size && before.kind != EntryKind::Dir) {
        what.push(match before.size == after.size {
            true => "content".to_owned(),
            false => format!("size {} → {}", before.size, after.size),
        });
    }
    if before.target != after.target {
        what.push(format!(
            "target {} → {}",
            before.target.as_deref().unwrap_or_default(),
            after.target.as_deref().unwrap_or_default()
        ));
    }
    if before.mode != after.mode {
        what.push(format!("mode {} → {}", before.mode, after.mode));
    }
    if before.mtime != after.mtime && before.kind != EntryKind::Dir && what.is_empty() {
        what.push("mtime".to_owned());
    }
    what
}

/// Compares listing `from` with listing `to`.
pub fn compare(from: &Listing, to: &Listing) -> SnapshotDiff {
    let before: BTreeMap<&str, &ListedEntry> = from.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let after: BTreeMap<&str, &ListedEntry> = to.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut entries = Vec::new();
    for (path, a) in &before {
        match after.get(path) {
            None => entries.push(EntryChange {
                path: path.to_string(),
                kind: a.kind,
                change: Change::Removed,
                what: vec![],
            }),
            Some(b) => {
                let what = entry_differences(a, b);
                if !what.is_empty() {
                    entries.push(EntryChange {
                        path: path.to_string(),
                        kind: b.kind,
                        change: Change::Modified,
                        what,
                    });
                }
            }
        }
    }
    for (path, b) in &after {
        if !before.contains_key(path) {
            entries.push(EntryChange {
                path: path.to_string(),
                kind: b.kind,
                change: Change::Added,
                what: vec![],
            });
        }
    }
    entries.sort_by(|x, y| x.path.cmp(&y.path));

    let rows = |l: &Listing| -> BTreeMap<(String, String), u64> {
        l.tables
            .iter()
            .map(|t| ((t.database.clone(), t.table.clone()), t.rows))
            .collect()
    };
    let (rows_before, rows_after) = (rows(from), rows(to));
    let mut keys: Vec<&(String, String)> = rows_before.keys().chain(rows_after.keys()).collect();
    keys.sort();
    keys.dedup();
    let tables = keys
        .into_iter()
        .filter_map(|key| {
            let (a, b) = (rows_before.get(key).copied(), rows_after.get(key).copied());
            let change = match (a, b) {
                (Some(x), Some(y)) if x == y => return None,
                (Some(_), Some(_)) => Change::Modified,
                (None, _) => Change::Added,
                (_, None) => Change::Removed,
            };
            Some(TableChange {
                database: key.0.clone(),
                table: key.1.clone(),
                change,
                rows_before: a,
                rows_after: b,
            })
        })
        .collect();
    SnapshotDiff {
        from: from.snapshot_id.clone(),
        to: to.snapshot_id.clone(),
        entries,
        tables,
    }
}

/// The differences as text: one line per entry (`+`, `-`, `M` and what changed), then the
/// tables with their row counts; a line that says so when nothing differs.
pub fn render(diff: &SnapshotDiff) -> String {
    let short = |id: &str| id.chars().take(8).collect::<String>();
    if diff.entries.is_empty() && diff.tables.is_empty() {
        return format!(
            "snapshots {} and {} hold the same\n",
            short(&diff.from),
            short(&diff.to)
        );
    }
    let mut out = String::new();
    if !diff.entries.is_empty() {
        let rows: Vec<Vec<String>> = diff
            .entries
            .iter()
            .map(|e| {
                let path = match e.kind {
                    EntryKind::Dir => format!("{}/", e.path),
                    _ => e.path.clone(),
                };
                vec![e.change.mark().to_owned(), path, e.what.join(", ")]
            })
            .collect();
        out.push_str(&table(&["", "PATH", "CHANGED"], &rows));
    }
    if !diff.tables.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        let count = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let rows: Vec<Vec<String>> = diff
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.change.mark().to_owned(),
                    t.database.clone(),
                    t.table.clone(),
                    count(t.rows_before),
                    count(t.rows_after),
                ]
            })
            .collect();
        out.push_str(&table(&["", "DATABASE", "TABLE", "ROWS BEFORE", "ROWS AFTER"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use hort_protocol::ListedTable;

    use super::*;

    fn file(path: &str, size: u64, content: &str, mode: &str, mtime: &str) -> ListedEntry {
        ListedEntry {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mode: mode.into(),
            mtime: Some(mtime.into()),
            target: None,
            content: Some(content.into()),
        }
    }

    fn dir(path: &str, mtime: &str) -> ListedEntry {
        ListedEntry {
            path: path.into(),
            kind: EntryKind::Dir,
            size: 0,
            mode: "755".into(),
            mtime: Some(mtime.into()),
            target: None,
            content: None,
        }
    }

    fn listing(id: &str, entries: Vec<ListedEntry>, tables: &[(&str, &str, u64)]) -> Listing {
        Listing {
            snapshot_id: id.into(),
            entries,
            tables: tables
                .iter()
                .map(|(d, t, rows)| ListedTable {
                    database: d.to_string(),
                    table: t.to_string(),
                    rows: *rows,
                })
                .collect(),
        }
    }

    #[test]
    fn files_added_removed_and_modified_are_found_and_nothing_else() {
        let t1 = "2026-11-30T01:00:00Z";
        let t2 = "2026-11-30T02:00:00Z";
        let from = listing(
            "aaaaaaaaaaaa",
            vec![
                dir("media", t1),
                file("media/same.bin", 10, "c1", "644", t1),
                file("media/edited.txt", 5, "c2", "644", t1),
                file("media/grown.txt", 5, "c3", "644", t1),
                file("media/chmod.sh", 5, "c4", "644", t1),
                file("media/touched", 5, "c5", "644", t1),
                file("media/gone.txt", 1, "c6", "644", t1),
            ],
            &[],
        );
        let to = listing(
            "bbbbbbbbbbbb",
            vec![
                dir("media", t2),
                file("media/same.bin", 10, "c1", "644", t1),
                file("media/edited.txt", 5, "c9", "644", t2),
                file("media/grown.txt", 7, "c8", "644", t2),
                file("media/chmod.sh", 5, "c4", "755", t1),
                file("media/touched", 5, "c5", "644", t2),
                file("media/new.txt", 3, "c7", "644", t2),
            ],
            &[],
        );
        let diff = compare(&from, &to);
        let lines: Vec<(Change, &str, String)> = diff
            .entries
            .iter()
            .map(|e| (e.change, e.path.as_str(), e.what.join(", ")))
            .collect();
        assert_eq!(
            lines,
            [
                (Change::Modified, "media/chmod.sh", "mode 644 → 755".to_owned()),
                (Change::Modified, "media/edited.txt", "content".to_owned()),
                (Change::Removed, "media/gone.txt", String::new()),
                (Change::Modified, "media/grown.txt", "size 5 → 7".to_owned()),
                (Change::Added, "media/new.txt", String::new()),
                (Change::Modified, "media/touched", "mtime".to_owned()),
            ]
        );
        assert!(diff.tables.is_empty());
        assert_eq!(
            render(&diff),
            "    PATH               CHANGED\n\
             M   media/chmod.sh     mode 644 → 755\n\
             M   media/edited.txt   content\n\
             -   media/gone.txt\n\
             M   media/grown.txt    size 5 → 7\n\
             +   media/new.txt\n\
             M   media/touched      mtime\n"
        );
    }

    #[test]
    fn tables_whose_rows_changed_are_listed_with_both_counts() {
        let streams = |size| {
            vec![ListedEntry {
                path: "postgres/db/shop.dump".into(),
                kind: EntryKind::Stream,
                size,
                mode: String::new(),
                mtime: None,
                target: None,
                content: None,
            }]
        };
        let from = listing(
            "aaaaaaaaaaaa",
            streams(100),
            &[
                ("shop", "public.orders", 1200),
                ("shop", "public.items", 5),
                ("shop", "public.old", 1),
            ],
        );
        let to = listing(
            "bbbbbbbbbbbb",
            streams(140),
            &[
                ("shop", "public.orders", 1250),
                ("shop", "public.items", 5),
                ("shop", "public.new", 0),
            ],
        );
        let diff = compare(&from, &to);
        assert_eq!(diff.entries.len(), 1);
        assert_eq!(diff.entries[0].what, ["size 100 → 140"]);
        assert_eq!(
            render(&diff)
                .split_once("\n\n")
                .map(|(_, t)| t.to_owned())
                .unwrap_or_default(),
            "    DATABASE   TABLE           ROWS BEFORE   ROWS AFTER\n\
             +   shop       public.new      -             0\n\
             -   shop       public.old      1             -\n\
             M   shop       public.orders   1200          1250\n"
        );
    }

    #[test]
    fn equal_snapshots_say_so() {
        let t1 = "2026-11-30T01:00:00Z";
        let one = listing("aaaaaaaaaaaa", vec![file("a", 1, "c", "644", t1)], &[("d", "t", 3)]);
        let two = Listing {
            snapshot_id: "bbbbbbbbbbbb".into(),
            ..one.clone()
        };
        let diff = compare(&one, &two);
        assert!(diff.entries.is_empty() && diff.tables.is_empty());
        assert_eq!(render(&diff), "snapshots aaaaaaaa and bbbbbbbb hold the same\n");
    }
}
