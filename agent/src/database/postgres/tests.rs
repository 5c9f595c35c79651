use super::restore::*;
use super::toc::*;
use super::*;

#[test]
fn database_names_become_quoted_connection_strings() {
    assert_eq!(dbname_conninfo("app"), "dbname='app'");
    assert_eq!(
        dbname_conninfo(r"x' host=evil \"),
        r"dbname='x\' host=evil \\'",
        "quote and backslash escaped: the whole name stays the database name"
    );
}

fn table(name: &str, indexes: &[&str], sequences: &[&str]) -> PgTable {
    PgTable {
        schema: "public".into(),
        name: name.into(),
        rows: 0,
        indexes: indexes.iter().map(|s| s.to_string()).collect(),
        sequences: sequences.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn toc_selection_takes_the_table_and_its_subsidiaries_only() {
    let toc = "\
;
; Archive created at 2026-11-24 17:00:00 UTC
216; 1259 16390 TABLE public a postgres
217; 1259 16391 SEQUENCE public a_id_seq postgres
3340; 0 0 SEQUENCE OWNED BY public a_id_seq postgres
218; 1259 16392 TABLE public ab postgres
3190; 2604 16393 DEFAULT public a id postgres
3330; 0 16390 TABLE DATA public a postgres
3331; 0 16392 TABLE DATA public ab postgres
3341; 0 0 SEQUENCE SET public a_id_seq postgres
3192; 2606 16395 CONSTRAINT public a a_pkey postgres
3193; 2606 16397 CONSTRAINT public ab ab_pkey postgres
3194; 1259 16398 INDEX public a_v_idx postgres
3195; 2620 16399 TRIGGER public a trg postgres
3196; 2606 16400 FK CONSTRAINT public ab ab_a_fkey postgres
";
    let a = table("a", &["a_v_idx"], &["a_id_seq"]);
    let list = select_toc(toc, &[&a]);
    let ids: Vec<&str> = list.lines().map(|l| l.split(';').next().unwrap()).collect();
    assert_eq!(
        ids,
        ["216", "217", "3340", "3190", "3330", "3341", "3192", "3194", "3195"]
    );
}

#[test]
fn globals_become_rerunnable_and_spare_the_restoring_role() {
    let text = "CREATE ROLE app;\nALTER ROLE app WITH LOGIN PASSWORD 'x';\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER;\n";
    let out = adapt_globals(text, "postgres");
    assert!(out.contains("BEGIN CREATE ROLE app; EXCEPTION WHEN duplicate_object"));
    assert!(out.contains("ALTER ROLE app WITH LOGIN"));
    assert!(!out.contains("ALTER ROLE postgres"));
    let restricted = "\\restrict k3y\nCREATE ROLE app;\n\\unrestrict k3y\n";
    assert!(!adapt_globals(restricted, "postgres").contains("restrict"));
}
