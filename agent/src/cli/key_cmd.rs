//! `key list|add|remove`: the repository's passwords (see [`hort_engine::keyring`]).

use std::path::PathBuf;

use clap::Subcommand;
use hort_engine::backend::FileKind;
use hort_protocol::{ExitCode, KeyRotationReport, env};
use serde_json::json;

use super::CliError;
use super::args::InitArgs;
use super::context::Context;
use hort_engine::keyfile::KdfParams;
use hort_engine::keyring::{self, RemoveError, RotateError, Rotation};

/// The variable `key add` reads the new password from.
const NEW_PASSWORD: &str = "HORT_NEW_PASSWORD";

/// `check --rotate-key`: makes the repository password the only one that opens the repository
/// ([`keyring::rotate`], with the previous password from [`env::PREVIOUS_PASSWORD`]); what it
/// did, or why not, for the check's report.
pub(super) fn rotate_for_check(ctx: &Context, kdf: &InitArgs) -> KeyRotationReport {
    let not_done = |error: String| KeyRotationReport {
        error: Some(error),
        ..KeyRotationReport::default()
    };
    let Some(previous) = std::env::var_os(env::PREVIOUS_PASSWORD).filter(|p| !p.is_empty()) else {
        return not_done(format!("no previous password: {} is not set", env::PREVIOUS_PASSWORD));
    };
    let opened = ctx.backend().and_then(|backend| Ok((ctx.password()?, backend)));
    let (password, backend) = match opened {
        Ok(ok) => ok,
        Err(e) => return not_done(e.to_string()),
    };
    match backend.list(FileKind::Config) {
        Ok(config) if config.is_empty() => {
            return not_done("there is no repository yet, so no key to rotate".into());
        }
        Ok(_) => {}
        Err(e) => return not_done(e.to_string()),
    }
    let params = KdfParams {
        memory_kib: kdf.kdf_memory_kib,
        iterations: kdf.kdf_iterations,
        parallelism: 1,
    };
    let done = |added: Option<String>, removed: Option<String>| KeyRotationReport {
        added,
        removed,
        done: true,
        error: None,
    };
    match keyring::rotate(backend.as_ref(), &previous.into_encoded_bytes(), &password, params) {
        Ok(Rotation::Rotated { added, removed }) => done(Some(added), Some(removed)),
        Ok(Rotation::Completed { removed }) => done(None, Some(removed)),
        Ok(Rotation::AlreadyRotated) => done(None, None),
        Ok(Rotation::SamePassword) => {
            not_done("the previous password and the repository password are the same: nothing to rotate".into())
        }
        Err(RotateError::Partial { added, source }) => KeyRotationReport {
            added: Some(added),
            error: Some(format!(
                "the previous password's key file could not be removed (both passwords open the repository until a later check removes it): {source}"
            )),
            ..KeyRotationReport::default()
        },
        Err(e) => not_done(e.to_string()),
    }
}

/// What `key` does.
#[derive(Debug, Subcommand)]
pub(super) enum KeyCommand {
    /// List the key files; the one your password opens is marked.
    List,
    /// Add a key file for a new password (from `HORT_NEW_PASSWORD` or `--new-password-file`).
    Add {
        /// File holding the new password (a trailing newline is ignored).
        #[arg(long)]
        new_password_file: Option<PathBuf>,
        /// Key derivation costs of the new key file.
        #[command(flatten)]
        kdf: InitArgs,
    },
    /// Remove a key file (by id or unique prefix); never the one your password opens.
    Remove {
        /// The key file's id or a unique prefix of it.
        id: String,
    },
}

fn new_password(file: Option<&PathBuf>) -> Result<Vec<u8>, CliError> {
    if let Some(file) = file {
        let mut bytes =
            std::fs::read(file).map_err(|e| CliError::Usage(format!("--new-password-file {}: {e}", file.display())))?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        return Ok(bytes);
    }
    std::env::var_os(NEW_PASSWORD)
        .map(|p| p.into_encoded_bytes())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| CliError::Usage(format!("no new password: set {NEW_PASSWORD} or --new-password-file")))
}

pub(super) fn run(ctx: &Context, command: &KeyCommand) -> Result<(), CliError> {
    let backend = ctx.backend()?;
    let password = ctx.password()?;
    match command {
        KeyCommand::List => {
            let keys = keyring::list(backend.as_ref(), &password)?;
            if ctx.json() {
                ctx.print_json(&keys);
            } else {
                for k in keys {
                    let mark = if k.current { "*" } else { " " };
                    println!(
                        "{mark} {} {} {}",
                        &k.id[..8],
                        k.created.format("%Y-%m-%d %H:%M:%S"),
                        k.hostname
                    );
                }
            }
        }
        KeyCommand::Add { new_password_file, kdf } => {
            let new = new_password(new_password_file.as_ref())?;
            let params = KdfParams {
                memory_kib: kdf.kdf_memory_kib,
                iterations: kdf.kdf_iterations,
                parallelism: 1,
            };
            let id = keyring::add(backend.as_ref(), &password, &new, params)?;
            ctx.print_json(&json!({"type": "key-added", "id": id}));
        }
        KeyCommand::Remove { id } => {
            let removed = keyring::remove(backend.as_ref(), &password, id).map_err(|e| match e {
                RemoveError::Repository(e) => CliError::Repository(e),
                other => CliError::Partial {
                    message: other.to_string(),
                    exit: ExitCode::Usage,
                },
            })?;
            ctx.print_json(&json!({"type": "key-removed", "id": removed}));
        }
    }
    Ok(())
}
