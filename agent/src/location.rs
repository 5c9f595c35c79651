//! Repository locations as users write them: a path, `file:PATH`, or
//! `s3://BUCKET/PREFIX` with optional query settings `endpoint=URL`, `region=R`,
//! `path-style=true|false`, `storage-class=CLASS` and `credentials=PREFIX` (take this
//! target's keys from `PREFIX_AWS_ACCESS_KEY_ID` and `PREFIX_AWS_SECRET_ACCESS_KEY` instead of
//! the global ones). Several locations form a storage group.

use std::sync::Arc;

use crate::backend::group::{StorageGroup, Strategy, Target};
use crate::backend::local::LocalBackend;
use crate::backend::s3::{S3Backend, S3Config};
use crate::backend::{Backend, BackendError};

/// S3 settings that apply to every `s3://` location unless its query overrides them.
#[derive(Debug, Clone, Default)]
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

fn parse_bool(value: &str) -> Result<bool, BackendError> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(BackendError::Config(format!("`{other}` is not a boolean"))),
    }
}

/// Opens one location.
pub fn open_location(spec: &str, s3: &S3Defaults) -> Result<Arc<dyn Backend>, BackendError> {
    if let Some(rest) = spec.strip_prefix("s3://") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(BackendError::Config(format!("{spec}: no bucket")));
        }
        let mut config = S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            force_path_style: s3.path_style,
            max_attempts: 5,
            storage_class: None,
        };
        let (mut key_id, mut secret) = (s3.access_key_id.clone(), s3.secret_access_key.clone());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "endpoint" => config.endpoint = Some(value.to_owned()),
                "region" => config.region = value.to_owned(),
                "path-style" => config.force_path_style = parse_bool(value)?,
                "storage-class" => config.storage_class = Some(value.to_owned()),
                "credentials" => {
                    let var = |name: &str| std::env::var(format!("{value}_{name}")).ok();
                    key_id = var("AWS_ACCESS_KEY_ID");
                    secret = var("AWS_SECRET_ACCESS_KEY");
                    if key_id.is_none() || secret.is_none() {
                        return Err(BackendError::Config(format!(
                            "{spec}: {value}_AWS_ACCESS_KEY_ID and {value}_AWS_SECRET_ACCESS_KEY must be set"
                        )));
                    }
                }
                other => return Err(BackendError::Config(format!("{spec}: unknown option `{other}`"))),
            }
        }
        match (&key_id, &secret) {
            (Some(id), Some(secret)) => {
                config.access_key_id = id.clone();
                config.secret_access_key = secret.clone();
            }
            _ => {
                return Err(BackendError::Config(format!(
                    "{spec}: S3 needs explicit credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                )));
            }
        }
        return Ok(Arc::new(S3Backend::new(config)?));
    }
    let path = spec.strip_prefix("file:").unwrap_or(spec);
    if path.is_empty() || spec.contains("://") {
        return Err(BackendError::Config(format!("`{spec}` is not a repository location")));
    }
    Ok(Arc::new(LocalBackend::new(path)))
}

/// Opens one location, or a storage group of several.
pub fn open(
    specs: &[String],
    strategy: Strategy,
    weights: &[u32],
    s3: &S3Defaults,
) -> Result<Arc<dyn Backend>, BackendError> {
    match specs {
        [] => Err(BackendError::Config(
            "no repository given (--repo or HORT_REPOSITORY)".into(),
        )),
        [single] => open_location(single, s3),
        many => {
            if !weights.is_empty() && weights.len() != many.len() {
                return Err(BackendError::Config(format!(
                    "{} weights for {} targets",
                    weights.len(),
                    many.len()
                )));
            }
            let targets = many
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    Ok(Target {
                        backend: open_location(spec, s3)?,
                        weight: weights.get(i).copied().unwrap_or(1),
                    })
                })
                .collect::<Result<Vec<_>, BackendError>>()?;
            Ok(Arc::new(StorageGroup::new(targets, strategy)?))
        }
    }
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
        assert!(open(&[], Strategy::Mirror, &[], &s3).is_err());
        assert!(open(&["/a".into(), "/b".into()], Strategy::Spread, &[1], &s3).is_err());
    }
}
