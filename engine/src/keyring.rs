//! The repository's key files (`keys/<id>`, FORMAT.md §4): each wraps the one master key with
//! one password. Passwords are rotated by adding a key file for the new password, then
//! removing the old one; the data is never re-encrypted.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{debug, info};

use crate::backend::{Backend, FileKind};
use crate::crypto::MASTER_KEY_LEN;
use crate::id::Id;
use crate::keyfile::{KdfParams, KeyFile, KeyFileError};
use crate::repository::{RepositoryError, hostname};

/// One key file, as `key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Its name (the hash of its bytes).
    pub id: String,
    /// When it was written.
    pub created: DateTime<Utc>,
    /// The host that wrote it.
    pub hostname: String,
    /// Whether the password given opens it.
    pub current: bool,
}

fn read(backend: &dyn Backend, name: &str) -> Result<KeyFile, RepositoryError> {
    let bytes = backend.read(FileKind::Key, name)?;
    KeyFile::parse(&bytes).map_err(|source| RepositoryError::KeyFile {
        name: name.to_owned(),
        source,
    })
}

/// The master key and the name of the key file `password` opens.
pub fn unlock(backend: &dyn Backend, password: &[u8]) -> Result<([u8; MASTER_KEY_LEN], String), RepositoryError> {
    let names = backend.list(FileKind::Key)?;
    if names.is_empty() {
        return Err(RepositoryError::NoKeys {
            location: backend.describe(),
        });
    }
    for name in names {
        match read(backend, &name)?.unlock(password) {
            Ok(master) => return Ok((master, name)),
            Err(KeyFileError::WrongPassword) => debug!(key = %name, "password does not open this key file"),
            Err(source) => return Err(RepositoryError::KeyFile { name, source }),
        }
    }
    Err(RepositoryError::WrongPassword)
}

/// Every key file; `password` must open one of them.
pub fn list(backend: &dyn Backend, password: &[u8]) -> Result<Vec<KeyInfo>, RepositoryError> {
    let (_, current) = unlock(backend, password)?;
    let mut keys = Vec::new();
    for name in backend.list(FileKind::Key)? {
        let file = read(backend, &name)?;
        keys.push(KeyInfo {
            current: name == current,
            id: name,
            created: file.created,
            hostname: file.hostname,
        });
    }
    keys.sort_by_key(|k| k.created);
    Ok(keys)
}

/// A new key file that opens `master` with `password`: its name (the hash of its bytes) and
/// its bytes.
pub(crate) fn new_key_file(
    master: &[u8; MASTER_KEY_LEN],
    password: &[u8],
    kdf: KdfParams,
) -> Result<(String, Vec<u8>), RepositoryError> {
    let file = KeyFile::create(master, password, kdf, hostname()).map_err(|source| RepositoryError::KeyFile {
        name: "new".into(),
        source,
    })?;
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| RepositoryError::Corrupt {
        what: "new key file".into(),
        reason: e.to_string(),
    })?;
    Ok((Id::of_file(&bytes).to_hex(), bytes))
}

/// Adds a key file for `new_password` (at least [`crate::repository::MIN_PASSWORD_CHARS`]
/// characters), unlocked with `password`; returns its name.
pub fn add(
    backend: &dyn Backend,
    password: &[u8],
    new_password: &[u8],
    kdf: KdfParams,
) -> Result<String, RepositoryError> {
    crate::repository::check_new_password(new_password)?;
    let (master, _) = unlock(backend, password)?;
    let (name, bytes) = new_key_file(&master, new_password, kdf)?;
    backend.write(FileKind::Key, &name, &bytes)?;
    info!(key = %name, "key file added");
    Ok(name)
}

/// Why a key file may not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// Reading the key files failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// No key file, or several, start with the name given.
    #[error("`{0}` names no key file, or several (see `key list`)")]
    NoSuchKey(String),
    /// The key file is the one the password given opens.
    #[error("key {0} is the one your password opens: add the new key first and remove this one with the new password")]
    Current(String),
}

/// Removes the key file whose name starts with `prefix`, unlocked with `password`; never the
/// one `password` opens (so the last key cannot go either).
pub fn remove(backend: &dyn Backend, password: &[u8], prefix: &str) -> Result<String, RemoveError> {
    let (_, current) = unlock(backend, password)?;
    let matching: Vec<String> = backend
        .list(FileKind::Key)
        .map_err(RepositoryError::from)?
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    let [name] = matching.as_slice() else {
        return Err(RemoveError::NoSuchKey(prefix.to_owned()));
    };
    if *name == current {
        return Err(RemoveError::Current(name.clone()));
    }
    backend.delete(FileKind::Key, name).map_err(RepositoryError::from)?;
    info!(key = %name, "key file removed");
    Ok(name.clone())
}
