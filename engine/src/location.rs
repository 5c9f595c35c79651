//! Opening repository locations (`hort_protocol::Location`: a path, `file:PATH`,
//! `s3://BUCKET/PREFIX?settings`, or `hort+https://HOST:PORT/GROUP`) as backends; several locations form a storage group. Each
//! target is wrapped by the process's [`Throttle`], so its bandwidth limits count the bytes
//! sent to and received from every target together.

use std::sync::Arc;

use hort_protocol::{Location, env};

use crate::backend::group::{Strategy, Target, TargetGroup};
use crate::backend::http::HttpBackend;
use crate::backend::local::LocalBackend;
use crate::backend::s3::{S3Backend, S3Config};
use crate::backend::throttle::Throttle;
use crate::backend::{Backend, BackendError};

/// S3 settings that apply to every `s3://` location unless it sets its own. Its `Debug`
/// output leaves out the secret key.
#[derive(Clone, Default)]
pub struct S3Defaults {
    /// Endpoint URL.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Path-style addressing.
    pub path_style: bool,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Defaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Defaults")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A directory target; when the agent runs as root and [`env::REPOSITORY_OWNER`] names an
/// owner, what it creates is handed to that owner.
fn local_backend(path: String) -> Result<LocalBackend, BackendError> {
    let backend = LocalBackend::new(path);
    let Ok(text) = std::env::var(env::REPOSITORY_OWNER) else {
        return Ok(backend);
    };
    let owner: hort_protocol::RepositoryOwner = text
        .parse()
        .map_err(|e| BackendError::Config(format!("{}: {e}", env::REPOSITORY_OWNER)))?;
    Ok(if crate::backend::local::process_is_root() {
        backend.with_owner(owner)
    } else {
        backend
    })
}

/// Opens one location.
pub fn open_location(spec: &str, s3: &S3Defaults) -> Result<Arc<dyn Backend>, BackendError> {
    let location: Location = spec
        .parse()
        .map_err(|e: hort_protocol::location::LocationError| BackendError::Config(e.to_string()))?;
    let target = match location {
        Location::Path(path) => return Ok(Arc::new(local_backend(path)?)),
        Location::Store(store) => {
            let token_file = std::env::var_os(env::STORE_TOKEN_FILE).map(std::path::PathBuf::from);
            let ca_file = std::env::var_os(env::STORE_CA_FILE).map(std::path::PathBuf::from);
            let backend = HttpBackend::new(store, token_file, ca_file.as_deref())
                .map_err(|e| BackendError::Config(e.to_string()))?;
            return Ok(Arc::new(backend));
        }
        Location::S3(target) => target,
    };
    let (key_id, secret) = match &target.credentials {
        Some(prefix) => {
            let var = |name: &str| std::env::var(env::credential_variable(prefix, name)).ok();
            let (key_id, secret) = (var(env::ACCESS_KEY_ID), var(env::SECRET_ACCESS_KEY));
            if key_id.is_none() || secret.is_none() {
                return Err(BackendError::Config(format!(
                    "{spec}: {} and {} must be set",
                    env::credential_variable(prefix, env::ACCESS_KEY_ID),
                    env::credential_variable(prefix, env::SECRET_ACCESS_KEY)
                )));
            }
            (key_id, secret)
        }
        None => (s3.access_key_id.clone(), s3.secret_access_key.clone()),
    };
    let (Some(access_key_id), Some(secret_access_key)) = (key_id, secret) else {
        return Err(BackendError::Config(format!(
            "{spec}: S3 needs explicit credentials ({} and {})",
            env::ACCESS_KEY_ID,
            env::SECRET_ACCESS_KEY
        )));
    };
    let config = S3Config {
        bucket: target.bucket,
        prefix: target.prefix,
        endpoint: target.endpoint.or_else(|| s3.endpoint.clone()),
        region: target.region.unwrap_or_else(|| s3.region.clone()),
        access_key_id,
        secret_access_key,
        force_path_style: target.path_style.unwrap_or(s3.path_style),
        max_attempts: 5,
        storage_class: target.storage_class,
        object_lock: target.object_lock,
    };
    Ok(Arc::new(S3Backend::new(config)?))
}

/// How a storage group's targets form one repository.
#[derive(Debug, Clone, Copy)]
pub struct GroupOptions<'a> {
    /// The strategy.
    pub strategy: Strategy,
    /// Per-target weights (`Spread`); empty: 1 each.
    pub weights: &'a [u32],
    /// `Mirror`: how many targets must take each write.
    pub min_healthy: usize,
}

/// Opens one location, or a storage group of several, with their transfers counted
/// against `throttle`.
pub fn open(
    specs: &[String],
    group: GroupOptions<'_>,
    s3: &S3Defaults,
    throttle: &Throttle,
) -> Result<Arc<dyn Backend>, BackendError> {
    match specs {
        [] => Err(BackendError::Config(
            "no repository given (--repo or HORT_REPOSITORY)".into(),
        )),
        [single] if group.min_healthy <= 1 => Ok(throttle.wrap(open_location(single, s3)?)),
        many => Ok(Arc::new(open_group(many, group, s3, throttle)?)),
    }
}

/// Opens the targets `specs` as one group (also a group of one), each target's transfers
/// counted against `throttle`.
pub fn open_group(
    specs: &[String],
    group: GroupOptions<'_>,
    s3: &S3Defaults,
    throttle: &Throttle,
) -> Result<TargetGroup, BackendError> {
    let weights = group.weights;
    if !weights.is_empty() && weights.len() != specs.len() {
        return Err(BackendError::Config(format!(
            "{} weights for {} targets",
            weights.len(),
            specs.len()
        )));
    }
    let targets = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            Ok(Target {
                backend: throttle.wrap(open_location(spec, s3)?),
                weight: weights.get(i).copied().unwrap_or(1),
            })
        })
        .collect::<Result<Vec<_>, BackendError>>()?;
    TargetGroup::new(targets, group.strategy)?.with_min_healthy(group.min_healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_locations_and_s3_without_credentials() {
        let s3 = S3Defaults {
            region: "us-east-1".into(),
            ..Default::default()
        };
        assert!(open_location("http://x", &s3).is_err());
        assert!(open_location("s3:///prefix", &s3).is_err());
        let err = open_location("s3://bucket/p", &s3).err().unwrap().to_string();
        assert!(err.contains("credentials"), "{err}");
        assert!(open_location("/tmp/somewhere", &s3).is_ok());
        let none = Throttle::default();
        let group = |strategy, weights, min_healthy| GroupOptions {
            strategy,
            weights,
            min_healthy,
        };
        assert!(open(&[], group(Strategy::Mirror, &[], 1), &s3, &none).is_err());
        let two = ["/a".to_owned(), "/b".to_owned()];
        assert!(open(&two, group(Strategy::Spread, &[1], 1), &s3, &none).is_err());
        assert!(open(&two, group(Strategy::Mirror, &[], 2), &s3, &none).is_ok());
        let three = open(&two, group(Strategy::Mirror, &[], 3), &s3, &none)
            .err()
            .unwrap()
            .to_string();
        assert!(three.contains("minimum healthy targets 3"), "{three}");
        assert!(open(&two[..1], group(Strategy::Mirror, &[], 2), &s3, &none).is_err());
        let with_secret = S3Defaults {
            secret_access_key: Some("hunter2".into()),
            ..s3
        };
        assert!(!format!("{with_secret:?}").contains("hunter2"));
    }

    #[test]
    fn every_target_opened_is_counted_against_the_throttle() {
        use crate::backend::FileKind;
        use crate::backend::throttle::Limits;
        let dir = tempfile::tempdir().unwrap();
        let spec = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let throttle = Throttle::new(Limits {
            upload: std::num::NonZeroU64::new(1 << 30),
            download: std::num::NonZeroU64::new(1 << 30),
        });
        let s3 = S3Defaults::default();
        let mirror = GroupOptions {
            strategy: Strategy::Mirror,
            weights: &[],
            min_healthy: 1,
        };
        let single = open(&[spec("a")], mirror, &s3, &throttle).unwrap();
        single.write(FileKind::Index, "i", &[0; 100]).unwrap();
        assert_eq!(single.read(FileKind::Index, "i").unwrap().len(), 100);
        assert_eq!((throttle.uploaded().bytes, throttle.downloaded().bytes), (100, 100));
        let group = open_group(&[spec("b"), spec("c")], mirror, &s3, &throttle).unwrap();
        group.write(FileKind::Pack, "p", &[0; 1000]).unwrap();
        assert_eq!(throttle.uploaded().bytes, 100 + 2 * 1000, "both copies of the mirror");
    }
}
