use super::dump::*;
use super::restore::*;
use super::split::*;
use super::*;
use crate::database::StreamSink;
use std::collections::BTreeMap;
use std::io::{self, Read};

#[test]
fn string_literals_hold_no_quote_or_backslash_of_the_input() {
    assert_eq!(quote_literal("app"), "CONVERT(X'617070' USING utf8mb4)");
    let hostile = quote_literal(r"a\' OR 1=1 -- ");
    assert!(
        !hostile.contains('\\') && hostile.matches('\'').count() == 2,
        "{hostile}"
    );
}

#[derive(Default)]
struct MemSink(BTreeMap<String, Vec<u8>>);

impl StreamSink for MemSink {
    fn put(&mut self, name: &str, data: &mut dyn Read) -> io::Result<u64> {
        let mut buf = Vec::new();
        data.read_to_end(&mut buf)?;
        let n = buf.len() as u64;
        assert!(self.0.insert(name.to_string(), buf).is_none(), "duplicate {name}");
        Ok(n)
    }
}

const DUMP: &str = include_str!("../testdata/mariadb-dump.sql");

#[test]
fn rows_are_counted_through_quotes_and_parentheses() {
    let mut c = RowCounter::default();
    c.feed(b"INSERT INTO `a``b` VALUES\n");
    c.feed(b"(1,'x\\'y\\n(z)',NULL),\n");
    c.feed(b"(2,'q),(',0x62);\n");
    c.feed(b"UNLOCK TABLES;\n");
    assert_eq!(c.rows, 2);
    c.feed(b"INSERT INTO `t` VALUES (3,'a''b'),(4,')');\n");
    assert_eq!(c.rows, 4);
}

#[test]
fn a_dump_splits_into_parts_that_concatenate_to_it() {
    let mut sink = MemSink::default();
    let (dbs, parts) = split_dump(&mut DUMP.as_bytes(), &mut sink).unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p.stream.as_str()).collect();
    assert_eq!(
        names,
        [
            "mariadb/db/s1/table/a.sql",
            "mariadb/db/s1/table/b.sql",
            "mariadb/db/s1/view-stub/va.sql",
            "mariadb/db/s1/events.sql",
            "mariadb/db/s1/routines.sql",
            "mariadb/db/s2/table/c.sql",
            "mariadb/db/s2/events.sql",
            "mariadb/db/s2/routines.sql",
            "mariadb/db/s1/view/va.sql",
        ]
    );
    assert_eq!(dbs.len(), 2);
    assert_eq!(
        dbs[0].tables,
        [
            MariaDbTable {
                name: "a".into(),
                rows: 2
            },
            MariaDbTable {
                name: "b".into(),
                rows: 2
            }
        ]
    );
    assert_eq!(dbs[1].tables[0].rows, 0);
    assert!(
        dbs[0]
            .create
            .starts_with("CREATE DATABASE /*!32312 IF NOT EXISTS*/ `s1`")
    );
    let b = String::from_utf8(sink.0["mariadb/db/s1/table/b.sql"].clone()).unwrap();
    assert!(
        b.contains("TRIGGER tr BEFORE INSERT ON b"),
        "triggers stay with their table"
    );
    let footer = String::from_utf8(sink.0[FOOTER_STREAM].clone()).unwrap();
    assert!(footer.contains("-- Dump completed"));
    // Nothing is lost except the CREATE DATABASE / USE lines the restore writes itself.
    let total: usize = sink.0.values().map(Vec::len).sum();
    let dropped: usize = DUMP
        .lines()
        .filter(|l| l.starts_with("CREATE DATABASE") || l.starts_with("USE ") || l.starts_with("-- Current Database"))
        .map(|l| l.len() + 1)
        .sum();
    assert!(DUMP.len() - total >= dropped && DUMP.len() - total < dropped + 200);
}

#[test]
fn a_truncated_dump_is_an_error() {
    let cut = &DUMP[..DUMP.find("-- Dumping routines").unwrap()];
    let mut sink = MemSink::default();
    let err = split_dump(&mut cut.as_bytes(), &mut sink).unwrap_err();
    assert!(err.to_string().contains("Dump completed"), "{err}");
}

#[test]
fn versions_are_compared_for_mariadb_servers_only() {
    let client = "mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)";
    assert!(check_versions(client, "10.11.19-MariaDB-0+deb12u1").is_ok());
    assert!(check_versions(client, "10.6.2-MariaDB").is_ok());
    let err = check_versions(client, "11.4.2-MariaDB").unwrap_err();
    assert!(
        err.to_string()
            .contains("10.11.19-MariaDB is older than the server (11.4.2-MariaDB)"),
        "{err}"
    );
    assert!(check_versions(client, "8.0.36").is_ok());
}

#[test]
fn users_restore_spares_system_accounts_and_the_restoring_user() {
    let text = "CREATE USER IF NOT EXISTS `root`@`localhost` IDENTIFIED VIA unix_socket;
CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*AB';
CREATE USER IF NOT EXISTS `hort`@`127.0.0.1` IDENTIFIED BY PASSWORD '*CD';
GRANT PROXY ON ``@`%` TO `root`@`localhost` WITH GRANT OPTION;
GRANT SELECT ON `shop`.* TO `app`@`%`;
GRANT ALL PRIVILEGES ON *.* TO `hort`@`127.0.0.1`;
/*M!100005 SET DEFAULT ROLE NONE FOR 'mariadb.sys'@'localhost' */;
";
    let out = adapt_users(text, "hort");
    assert_eq!(
        out,
        "CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*AB';\nGRANT SELECT ON `shop`.* TO `app`@`%`;\n"
    );
}

#[test]
fn client_errors_are_classified() {
    let conn = Connection {
        host: "127.0.0.1".into(),
        port: 1,
        user: "u".into(),
        password: None,
        bin_dir: None,
        tls: Default::default(),
    };
    let auth = classify(&conn, "ERROR 1045 (28000): Access denied".into(), None);
    assert!(matches!(auth, DatabaseError::Authentication { .. }));
    let down = classify(&conn, "mariadb-dump: Got error: 2002: \"Can't connect\"".into(), None);
    assert!(matches!(down, DatabaseError::Unreachable { .. }));
}
