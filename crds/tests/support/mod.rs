//! Helpers shared by the crds integration tests.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};

/// One YAML file and its documents, as JSON values.
pub struct Example {
    pub path: PathBuf,
    pub documents: Vec<serde_json::Value>,
}

/// Reads every multi-document YAML file directly in `dir`, sorted by name.
pub fn yaml_files(dir: &Path) -> Vec<Example> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let documents = serde_yaml::Deserializer::from_str(&text)
                .map(|d| {
                    let v: serde_yaml::Value = serde::Deserialize::deserialize(d)
                        .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()));
                    serde_json::to_value(v).unwrap()
                })
                .filter(|v| !v.is_null())
                .collect();
            Example { path, documents }
        })
        .collect()
}

/// The files of `examples/` at the workspace root.
pub fn examples() -> Vec<Example> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let found = yaml_files(&dir);
    assert!(!found.is_empty(), "no examples found in {}", dir.display());
    found
}

/// The invalid specs of `crds/tests/invalid/`.
pub fn invalid_specs() -> Vec<Example> {
    yaml_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid"))
}
