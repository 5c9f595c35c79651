//! Writes the CRD manifests of every Hort kind into a directory (default: `crds/` of the
//! workspace), one file per kind.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for (name, yaml) in hort_crds::crd_manifests() {
        let path = dir.join(&name);
        if let Err(err) = std::fs::write(&path, yaml) {
            eprintln!("crdgen: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
