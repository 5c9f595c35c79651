//! Key files: the repository's random master key, wrapped by a key derived from a password
//! with Argon2id. Several key files may wrap the same master key (one per password), so a
//! password is changed by adding a key file and deleting the old one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::{self, CryptoError, MASTER_KEY_LEN};

/// Associated data of the wrapped master key.
const AAD: &[u8] = b"hort.v1.key";

/// Largest Argon2 memory cost a key file may ask for: 4 GiB.
pub const MAX_MEMORY_KIB: u32 = 4 << 20;
/// Largest Argon2 pass count a key file may ask for.
pub const MAX_ITERATIONS: u32 = 64;
/// Largest Argon2 lane count a key file may ask for.
pub const MAX_PARALLELISM: u32 = 64;

/// Argon2id cost parameters, stored in the key file so they can be raised later.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 32 MiB, 6 passes, 1 lane: the same work as RFC 9106's second recommendation (64 MiB,
    /// 3 passes; about 0.2 s on a current core) in half the memory, so opening a repository
    /// does not raise the agent's peak memory above what a backup needs. Above OWASP's
    /// minimum for Argon2id (19 MiB, 2 passes).
    fn default() -> Self {
        Self {
            memory_kib: 32 * 1024,
            iterations: 6,
            parallelism: 1,
        }
    }
}

/// The JSON document stored (unencrypted) under `keys/<id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Format version of the key file (1).
    pub version: u32,
    /// When the key file was written.
    pub created: DateTime<Utc>,
    /// Host that wrote it.
    pub hostname: String,
    /// Always `argon2id`.
    pub kdf: String,
    /// Argon2id costs.
    pub params: KdfParams,
    /// Salt, hex.
    pub salt: String,
    /// The master key sealed with the password-derived key (`crypto::seal`), hex.
    pub data: String,
}

/// Errors creating or unlocking a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The password does not unlock this key file.
    #[error("wrong password")]
    WrongPassword,
    /// The key file is not valid JSON of the expected shape.
    #[error("malformed key file: {0}")]
    Malformed(String),
    /// Argon2 rejected the parameters.
    #[error("argon2: {0}")]
    Kdf(String),
    /// Randomness or sealing failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

fn derive(password: &[u8], salt: &[u8], params: KdfParams) -> Result<[u8; 32], KeyFileError> {
    let argon_params = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
        .map_err(|e| KeyFileError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon_params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(password, salt, &mut out)
        .map_err(|e| KeyFileError::Kdf(e.to_string()))?;
    Ok(out)
}

impl KeyFile {
    /// Wraps `master` with `password`.
    pub fn create(
        master: &[u8; MASTER_KEY_LEN],
        password: &[u8],
        params: KdfParams,
        hostname: String,
    ) -> Result<Self, KeyFileError> {
        let mut salt = [0u8; 32];
        crypto::random_bytes(&mut salt)?;
        let wrapping = derive(password, &salt, params)?;
        let data = crypto::seal(&wrapping, AAD, master)?;
        Ok(Self {
            version: 1,
            created: Utc::now(),
            hostname,
            kdf: "argon2id".to_owned(),
            params,
            salt: hex::encode(salt),
            data: hex::encode(data),
        })
    }

    /// Parses a stored key file and checks its shape: version, KDF, cost parameters within
    /// [`MAX_MEMORY_KIB`] / [`MAX_ITERATIONS`] / [`MAX_PARALLELISM`] (key files are not
    /// authenticated, so a damaged one must not make `unlock` allocate without bound), salt
    /// and sealed key of the right lengths. Never panics, whatever the bytes; this is the
    /// entry point the fuzz target `keyfile` drives.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyFileError> {
        let file: Self = serde_json::from_slice(bytes).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        if file.version != 1 || file.kdf != "argon2id" {
            return Err(KeyFileError::Malformed(format!(
                "unsupported key file version {} / kdf {}",
                file.version, file.kdf
            )));
        }
        let p = file.params;
        if p.memory_kib > MAX_MEMORY_KIB || p.iterations > MAX_ITERATIONS || p.parallelism > MAX_PARALLELISM {
            return Err(KeyFileError::Malformed(format!(
                "argon2 costs {}/{}/{} exceed the limits {MAX_MEMORY_KIB} KiB/{MAX_ITERATIONS}/{MAX_PARALLELISM}",
                p.memory_kib, p.iterations, p.parallelism
            )));
        }
        if file.salt.len() != 64 || file.data.len() != 2 * (MASTER_KEY_LEN + crypto::SEAL_OVERHEAD) {
            return Err(KeyFileError::Malformed(
                "salt or sealed key has the wrong length".into(),
            ));
        }
        Ok(file)
    }

    /// Unwraps the master key with `password`.
    pub fn unlock(&self, password: &[u8]) -> Result<[u8; MASTER_KEY_LEN], KeyFileError> {
        let salt = hex::decode(&self.salt).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        let data = hex::decode(&self.data).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        let wrapping = derive(password, &salt, self.params)?;
        let master = crypto::open(&wrapping, AAD, &data).map_err(|_| KeyFileError::WrongPassword)?;
        master
            .try_into()
            .map_err(|_| KeyFileError::Malformed("master key has the wrong length".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlocks_with_the_right_password_only() {
        let params = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let master = [42u8; MASTER_KEY_LEN];
        let file = KeyFile::create(&master, b"secret", params, "h".into()).unwrap();
        let parsed = KeyFile::parse(&serde_json::to_vec(&file).unwrap()).unwrap();
        assert_eq!(parsed.unlock(b"secret").unwrap(), master);
        assert!(matches!(parsed.unlock(b"wrong"), Err(KeyFileError::WrongPassword)));
    }
}
