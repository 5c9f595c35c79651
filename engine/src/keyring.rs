//! The repository's key files (`keys/<id>`, FORMAT.md §4): each wraps the one master key with
//! one password. Passwords are rotated by adding a key file for the new password, then
//! removing the old one; the data is never re-encrypted.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{debug, info};

use crate::backend::{Backend, FileKind};
use crate::crypto::MASTER_KEY_LEN;
use crate::error_kind::ErrorKind;
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

/// What [`rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The current password did not open the repository: a key file for it was added,
    /// unlocked with the previous password (its name), and the previous one's (its name)
    /// removed.
    Rotated {
        /// The key file added for the current password.
        added: String,
        /// The key file of the previous password, removed.
        removed: String,
    },
    /// The current password opened the repository already (a rotation broken off after the
    /// add): the previous password's key file (its name) was removed.
    Completed {
        /// The key file of the previous password, removed.
        removed: String,
    },
    /// The previous password opens no key file any more: nothing to do.
    AlreadyRotated,
    /// Both passwords open the same key file: they are one password, nothing can be rotated.
    SamePassword,
}

/// Why a rotation could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// Neither password opens a key file.
    #[error("neither the current password nor the previous one opens a key file of the repository")]
    NeitherOpens,
    /// The key file for the current password was added (its name), but the previous one's
    /// could not be removed: both passwords open the repository until a retry removes it.
    #[error(
        "the key file {added} for the current password was added, but the previous password's could not be removed (both open the repository until a retry removes it): {source}"
    )]
    Partial {
        /// The key file that was added.
        added: String,
        /// Why the removal failed.
        source: RepositoryError,
    },
    /// Reading or writing the key files failed before anything changed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl RotateError {
    /// What kind of failure this is: neither password opening is [`ErrorKind::WrongPassword`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            RotateError::NeitherOpens => ErrorKind::WrongPassword,
            RotateError::Partial { source, .. } | RotateError::Repository(source) => source.kind(),
        }
    }
}

/// The name of the key file `password` opens, if any.
fn opened_by(backend: &dyn Backend, password: &[u8]) -> Result<Option<String>, RepositoryError> {
    match unlock(backend, password) {
        Ok((_, name)) => Ok(Some(name)),
        Err(RepositoryError::WrongPassword) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes `current` the only one of the two passwords that opens the repository: adds a key
/// file for `current` (unlocked with `previous`) unless it opens one already, then removes the
/// key file `previous` opens. Safe to repeat after any failure: each step looks at what the
/// key files are, never at what an earlier run did, and the key file `current` opens is never
/// removed.
pub fn rotate(backend: &dyn Backend, previous: &[u8], current: &[u8], kdf: KdfParams) -> Result<Rotation, RotateError> {
    let old = opened_by(backend, previous)?;
    let new = opened_by(backend, current)?;
    match (old, new) {
        (None, None) => Err(RotateError::NeitherOpens),
        (None, Some(_)) => Ok(Rotation::AlreadyRotated),
        (Some(old), Some(new)) if old == new => Ok(Rotation::SamePassword),
        (Some(old), Some(_)) => {
            backend.delete(FileKind::Key, &old).map_err(RepositoryError::from)?;
            info!(key = %old, "key file of the previous password removed");
            Ok(Rotation::Completed { removed: old })
        }
        (Some(old), None) => {
            let added = add(backend, previous, current, kdf)?;
            match backend.delete(FileKind::Key, &old) {
                Ok(()) => {
                    info!(key = %old, "key file of the previous password removed");
                    Ok(Rotation::Rotated { added, removed: old })
                }
                Err(e) => Err(RotateError::Partial {
                    added,
                    source: e.into(),
                }),
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;
    use crate::backend::memory::MemoryBackend;

    const OLD: &[u8] = b"unit-test password";
    const NEW: &[u8] = b"the new password of the group";
    const KDF: KdfParams = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    /// Passes everything to a memory backend, except that deleting fails (a target that went
    /// down between the add and the removal).
    struct NoDelete(std::sync::Arc<MemoryBackend>);

    impl Backend for NoDelete {
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn list(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
            self.0.list(kind)
        }
        fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
            self.0.read(kind, name)
        }
        fn read_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
            self.0.read_range(kind, name, offset, length)
        }
        fn read_tail(&self, kind: FileKind, name: &str, length: u64) -> Result<Vec<u8>, BackendError> {
            self.0.read_tail(kind, name, length)
        }
        fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
            self.0.write(kind, name, data)
        }
        fn delete(&self, _: FileKind, name: &str) -> Result<(), BackendError> {
            Err(BackendError::Io {
                location: name.into(),
                source: std::io::Error::other("target down"),
            })
        }
    }

    #[test]
    fn a_rotation_leaves_only_the_new_password_and_repeating_it_changes_nothing() {
        let (_, backend) = crate::repository::in_memory();
        let rotation = rotate(backend.as_ref(), OLD, NEW, KDF).unwrap();
        let Rotation::Rotated { added, removed } = &rotation else {
            panic!("{rotation:?}");
        };
        assert_ne!(added, removed);
        assert_eq!(backend.list(FileKind::Key).unwrap(), std::slice::from_ref(added));
        assert!(matches!(
            unlock(backend.as_ref(), OLD),
            Err(RepositoryError::WrongPassword)
        ));
        assert_eq!(unlock(backend.as_ref(), NEW).unwrap().1, *added);
        assert_eq!(
            rotate(backend.as_ref(), OLD, NEW, KDF).unwrap(),
            Rotation::AlreadyRotated
        );
        assert_eq!(backend.list(FileKind::Key).unwrap(), std::slice::from_ref(added));
    }

    #[test]
    fn a_rotation_broken_off_after_the_add_is_finished_by_the_next_and_never_loses_the_new_key() {
        let (_, backend) = crate::repository::in_memory();
        let down = NoDelete(backend.clone());
        let Err(RotateError::Partial { added, .. }) = rotate(&down, OLD, NEW, KDF) else {
            panic!("the removal cannot succeed");
        };
        // Both open the repository meanwhile: nothing a running backup needs is gone.
        assert!(unlock(backend.as_ref(), OLD).is_ok());
        assert_eq!(unlock(backend.as_ref(), NEW).unwrap().1, added);
        let Rotation::Completed { removed } = rotate(backend.as_ref(), OLD, NEW, KDF).unwrap() else {
            panic!("the second run removes the old key only");
        };
        assert_ne!(removed, added);
        assert_eq!(backend.list(FileKind::Key).unwrap(), [added]);
    }

    #[test]
    fn one_password_twice_or_two_strangers_rotate_nothing() {
        let (_, backend) = crate::repository::in_memory();
        assert_eq!(rotate(backend.as_ref(), OLD, OLD, KDF).unwrap(), Rotation::SamePassword);
        let stranger = b"no key file opens with this";
        assert!(matches!(
            rotate(backend.as_ref(), stranger, NEW, KDF),
            Err(RotateError::NeitherOpens)
        ));
        assert_eq!(backend.list(FileKind::Key).unwrap().len(), 1);
        assert!(unlock(backend.as_ref(), OLD).is_ok());
    }

    #[test]
    fn a_short_new_password_is_refused_before_anything_is_written() {
        let (_, backend) = crate::repository::in_memory();
        let refused = rotate(backend.as_ref(), OLD, b"short", KDF).unwrap_err();
        assert!(
            matches!(refused, RotateError::Repository(RepositoryError::WeakPassword { .. })),
            "{refused:?}"
        );
        assert_eq!(backend.list(FileKind::Key).unwrap().len(), 1);
    }
}
