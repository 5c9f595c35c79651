//! Every spec field of the generated CRDs has a line in `crds/tests/field-tests.txt` naming the
//! tests that exercise its effect (or saying `UNTESTED: why`), and every line names a field
//! that exists and tests that exist: a new field cannot arrive without someone saying how it
//! is proven, and the map cannot rot when fields or tests are renamed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The map file, relative to this crate.
const MAP: &str = "tests/field-tests.txt";
/// Prefix of an entry that admits no test covers the field's effect.
const UNTESTED: &str = "UNTESTED:";
/// Prefix of an entry that reuses another field's entry.
const SAME_AS: &str = "= ";
/// The kinds whose spec fields are mapped, with their generated CRD files.
const KINDS: [(&str, &str); 7] = [
    ("StorageGroup", "storagegroups.hort.dev.yaml"),
    ("ClusterStorageGroup", "clusterstoragegroups.hort.dev.yaml"),
    ("BackupJob", "backupjobs.hort.dev.yaml"),
    ("Schedule", "schedules.hort.dev.yaml"),
    ("RestoreRequest", "restorerequests.hort.dev.yaml"),
    ("Verification", "verifications.hort.dev.yaml"),
    ("VolumeRestoreSource", "volumerestoresources.hort.dev.yaml"),
];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn workspace_dir() -> PathBuf {
    crate_dir().join("..")
}

/// Records in `out` the dotted path of every leaf field below `schema` (at `path`): object
/// properties are descended into, `[]` marks the items of an array of objects; a field without
/// properties of its own (a scalar, a list of scalars, a map) is a leaf.
fn leaf_fields(schema: &Value, path: &str, out: &mut BTreeSet<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            leaf_fields(child, &format!("{path}.{name}"), out);
        }
    } else if schema.get("type").and_then(Value::as_str) == Some("array")
        && schema
            .get("items")
            .is_some_and(|items| items.get("properties").is_some())
    {
        leaf_fields(&schema["items"], &format!("{path}[]"), out);
    } else {
        out.insert(path.to_owned());
    }
}

/// `(kind, field path)` of every leaf spec field in the generated CRDs, over all versions.
fn schema_fields() -> BTreeSet<(String, String)> {
    let mut fields = BTreeSet::new();
    for (kind, file) in KINDS {
        let path = crate_dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let crd: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(crd["spec"]["names"]["kind"], kind, "{}", path.display());
        let versions = crd["spec"]["versions"].as_array().expect("spec.versions");
        assert!(!versions.is_empty(), "{}: no versions", path.display());
        for version in versions {
            let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
            assert!(spec.is_object(), "{}: no spec schema", path.display());
            let mut leaves = BTreeSet::new();
            leaf_fields(spec, "spec", &mut leaves);
            fields.extend(leaves.into_iter().map(|field| (kind.to_owned(), field)));
        }
    }
    fields
}

/// One line of the map.
#[derive(Debug)]
struct Entry {
    line: usize,
    /// What follows the field path, without a trailing `# note`.
    value: String,
}

/// The map: `(kind, field path)` → entry. Duplicate and malformed lines are errors.
fn read_map(errors: &mut Vec<String>) -> BTreeMap<(String, String), Entry> {
    let text = std::fs::read_to_string(crate_dir().join(MAP)).unwrap_or_else(|e| panic!("crds/{MAP}: {e}"));
    let mut map = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split_once(" # ").map_or(raw, |(before, _)| before).trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let mut parts = content.splitn(3, char::is_whitespace);
        let (Some(kind), Some(field), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            errors.push(format!(
                "crds/{MAP}:{line}: expected `<Kind> <field path> <tests>`: {raw}"
            ));
            continue;
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            errors.push(format!("crds/{MAP}:{line}: {kind} {field} names no test"));
            continue;
        }
        if let Some(earlier) = map.insert((kind.to_owned(), field.to_owned()), Entry { line, value }) {
            errors.push(format!(
                "crds/{MAP}:{line}: {kind} {field} is listed again (first at line {})",
                earlier.line
            ));
        }
    }
    map
}

/// Checks one test reference; `None` when it names something that exists.
fn check_test(reference: &str, e2e_cases: &str) -> Option<String> {
    if let Some(case) = reference.strip_prefix("kind-tests/e2e.sh:") {
        let wanted = format!("run_case {case} ");
        return (!e2e_cases.contains(&wanted)).then(|| format!("kind-tests/e2e.sh has no `{wanted}...`"));
    }
    if let Some((file, function)) = reference.split_once("::") {
        let path = workspace_dir().join(file);
        let Ok(source) = std::fs::read_to_string(&path) else {
            return Some(format!("{file} does not exist"));
        };
        let defined = format!("fn {function}(");
        return (!source.contains(&defined)).then(|| format!("{file} defines no `fn {function}`"));
    }
    if reference.starts_with("crds/tests/invalid/") && reference.ends_with(".yaml") {
        return (!workspace_dir().join(reference).is_file()).then(|| format!("{reference} does not exist"));
    }
    Some(format!(
        "`{reference}` is not `<file.rs>::<fn>`, `kind-tests/e2e.sh:<case>` or `crds/tests/invalid/<file>.yaml`"
    ))
}

#[test]
fn every_spec_field_is_mapped_to_the_tests_of_its_effect() {
    let fields = schema_fields();
    let mut errors = Vec::new();
    let map = read_map(&mut errors);
    let e2e = std::fs::read_to_string(workspace_dir().join("kind-tests/e2e.sh")).expect("kind-tests/e2e.sh");

    let missing: Vec<String> = fields
        .iter()
        .filter(|key| !map.contains_key(*key))
        .map(|(kind, field)| format!("{kind} {field}"))
        .collect();
    if !missing.is_empty() {
        errors.push(format!(
            "spec fields without a line in crds/{MAP} (name the tests that prove their effect, or `{UNTESTED} why`):\n  {}",
            missing.join("\n  ")
        ));
    }
    for ((kind, field), entry) in &map {
        if !fields.contains(&(kind.clone(), field.clone())) {
            errors.push(format!(
                "crds/{MAP}:{}: {kind} {field} is not a spec field of the generated CRDs (renamed or removed?)",
                entry.line
            ));
        }
    }

    let mut untested = Vec::new();
    let mut tested = 0;
    for ((kind, field), entry) in &map {
        let at = format!("crds/{MAP}:{}: {kind} {field}", entry.line);
        // Follow `= Kind path` to the entry that says how the field is tested.
        let mut value = &entry.value;
        let mut seen = BTreeSet::new();
        while let Some(target) = value.strip_prefix(SAME_AS) {
            let Some((target_kind, target_field)) = target.trim().split_once(char::is_whitespace) else {
                errors.push(format!("{at}: `{value}` is not `= <Kind> <field path>`"));
                break;
            };
            let key = (target_kind.to_owned(), target_field.trim().to_owned());
            if !seen.insert(key.clone()) {
                errors.push(format!("{at}: `=` references form a cycle"));
                break;
            }
            match map.get(&key) {
                Some(target) => value = &target.value,
                None => {
                    errors.push(format!("{at}: `{value}` names no line of the map"));
                    break;
                }
            }
        }
        if value.starts_with(SAME_AS) {
            continue;
        }
        if let Some(why) = value.strip_prefix(UNTESTED) {
            if why.trim().is_empty() {
                errors.push(format!("{at}: {UNTESTED} needs a reason"));
            }
            untested.push(format!("{kind} {field}"));
            continue;
        }
        tested += 1;
        for reference in value.split(", ") {
            if let Some(problem) = check_test(reference.trim(), &e2e) {
                errors.push(format!("{at}: {problem}"));
            }
        }
    }

    println!(
        "{} spec fields mapped: {tested} with tests of their effect, {} UNTESTED",
        map.len(),
        untested.len()
    );
    for field in &untested {
        println!("  UNTESTED {field}");
    }
    assert!(errors.is_empty(), "crds/{MAP} is out of date:\n{}", errors.join("\n"));
}

#[test]
fn the_walk_finds_nested_and_array_fields() {
    let fields = schema_fields();
    for (kind, field) in [
        ("StorageGroup", "spec.targets[].s3.bucket"),
        ("BackupJob", "spec.source.volume.exclude"),
        ("BackupJob", "spec.hooks.pre[].selector"),
        ("Schedule", "spec.jobTemplate.spec.agent.tolerations[].key"),
        ("RestoreRequest", "spec.target.postgres.databases[].to"),
    ] {
        assert!(
            fields.contains(&(kind.to_owned(), field.to_owned())),
            "{kind} {field} not found by the schema walk"
        );
    }
    assert!(
        !fields.contains(&("BackupJob".to_owned(), "spec.source".to_owned())),
        "objects with fields are covered by their fields, not listed themselves"
    );
}
