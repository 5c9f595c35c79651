//! `snapshots`, `ls` and `cat`: the typed listings `kubectl hort` reads, and the exact bytes
//! of one file or stream.

mod support;

use std::fs;
use std::io::Write;
use std::process::Stdio;

use hort_protocol::report::decode;
use hort_protocol::{EntryKind, Listing, SnapshotList};
use support::{Kind, Repo, noise};

#[test]
fn listings_are_typed_and_cat_writes_the_exact_bytes() {
    let repo = Repo::new(Kind::Fs);
    repo.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("media/2026")).unwrap();
    // Bytes that no text transport carries unchanged: NUL, CR, invalid UTF-8, no final newline.
    let mut binary = noise(7, 3 * 1024 * 1024 + 17);
    binary.extend_from_slice(b"\r\n\0\xff\xfe");
    fs::write(src.join("media/2026/photo.bin"), &binary).unwrap();
    fs::write(src.join("readme"), b"hello\n").unwrap();
    repo.backup(&src, &["--tag", "files"]);
    let mut child = repo
        .cmd(&[
            "backup",
            "--stdin",
            "--stream-name",
            "postgres/shop.dump",
            "--tag",
            "db",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"-- dump\n\0COPY").unwrap();
    assert!(child.wait().unwrap().success());

    let all: SnapshotList = decode(&repo.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(all.snapshots.len(), 2);
    let db: SnapshotList = decode(&repo.ok(&["snapshots", "--json", "--tag", "db"])).unwrap();
    assert_eq!(db.snapshots.len(), 1, "--tag keeps only snapshots carrying it");
    assert_eq!(db.snapshots[0].streams[0].name, "postgres/shop.dump");
    assert_eq!(db.snapshots[0].path, None);
    let files = &decode::<SnapshotList>(&repo.ok(&["snapshots", "--tag", "files"]))
        .unwrap()
        .snapshots[0];
    assert_eq!(files.path.as_deref(), Some(src.to_str().unwrap()));

    let listing: Listing = decode(&repo.ok(&["ls", "--json", &files.id[..8]])).unwrap();
    let paths: Vec<(&str, EntryKind)> = listing.entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        paths,
        [
            ("media", EntryKind::Dir),
            ("media/2026", EntryKind::Dir),
            ("media/2026/photo.bin", EntryKind::File),
            ("readme", EntryKind::File)
        ]
    );
    let below: Listing = decode(&repo.ok(&["ls", &files.id, "media/2026"])).unwrap();
    assert_eq!(below.entries.len(), 2, "{below:?}");
    assert_eq!(below.entries[1].size, binary.len() as u64);
    let streams: Listing = decode(&repo.ok(&["ls", &db.snapshots[0].id])).unwrap();
    assert_eq!(streams.entries[0].kind, EntryKind::Stream);
    assert!(
        streams.tables.is_empty(),
        "a stream without a database manifest has no tables"
    );

    // Content digests (what `kubectl hort diff` compares): equal for unchanged files, other
    // for a changed one, none for directories.
    fs::write(src.join("readme"), b"hello again\n").unwrap();
    repo.backup(&src, &["--tag", "files"]);
    let digests = |id: &str| -> Vec<(String, Option<String>)> {
        let listing: Listing = decode(&repo.ok(&["ls", "--json", id])).unwrap();
        listing.entries.into_iter().map(|e| (e.path, e.content)).collect()
    };
    let (before, after) = (digests(&files.id), digests("latest"));
    assert_eq!(before[0], ("media".into(), None));
    assert_eq!(before[2].0, "media/2026/photo.bin");
    assert_eq!(before[2], after[2], "the unchanged file has the same digest");
    assert!(
        before[3].1.is_some() && before[3].1 != after[3].1,
        "{before:?} {after:?}"
    );

    let out = repo.run(&["cat", &files.id, "media/2026/photo.bin"]);
    assert!(out.status.success());
    assert!(out.stdout == binary, "cat changed the bytes");
    let out = repo.run(&["cat", &db.snapshots[0].id, "postgres/shop.dump"]);
    assert_eq!(out.stdout, b"-- dump\n\0COPY");

    let missing = repo.run(&["cat", &files.id, "media/nope"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("no entry \"media/nope\"") && stderr.contains("ls "),
        "{stderr}"
    );
    let dir = repo.run(&["cat", &files.id, "media"]);
    assert!(String::from_utf8_lossy(&dir.stderr).contains("is not a file"));
    let escape = repo.run(&["cat", &files.id, "../etc/passwd"]);
    assert!(String::from_utf8_lossy(&escape.stderr).contains("without `..`"));
}
