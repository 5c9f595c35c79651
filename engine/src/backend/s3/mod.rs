//! The S3 backend on `aws-sdk-s3`: explicit static credentials (never the ambient credential
//! chain, which would query a cloud metadata address), a configurable endpoint and
//! path-style addressing for S3-compatible servers, multipart upload for large packs, and the
//! SDK's standard retry mode (exponential backoff with jitter) for transient failures.
//!
//! The engine is synchronous; this backend owns a small Tokio runtime and blocks on it.
//! Object Lock retention is in [`lock`], deletes in versioned buckets in [`versions`], archive
//! storage classes in [`archive`].

mod archive;
mod lock;
mod versions;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Object, StorageClass};
use hort_protocol::ObjectLock;
use tracing::{debug, warn};

use super::{Backend, BackendError, FileKind, LocalFile};

/// Files larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Attempts of a whole read or write (each made of SDK requests with their own retries).
const OUTER_ATTEMPTS: u32 = 3;
/// Size of each part of a multipart upload (the last one may be smaller).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Bytes read from a local file at a time while its upload streams.
const STREAM_BUFFER: usize = 256 * 1024;

/// Everything needed to reach a bucket. Its `Debug` output leaves out the secret key.
#[derive(Clone)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix of the repository inside the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// Endpoint URL for S3-compatible servers, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region (any value for most S3-compatible servers).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible servers.
    pub force_path_style: bool,
    /// Total attempts per request, including the first.
    pub max_attempts: u32,
    /// Storage class of new objects (e.g. `STANDARD_IA`); the bucket's default if `None`.
    pub storage_class: Option<String>,
    /// Object Lock retention put on the objects of [`FileKind::is_locked`] kinds.
    pub object_lock: Option<ObjectLock>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("force_path_style", &self.force_path_style)
            .field("max_attempts", &self.max_attempts)
            .field("storage_class", &self.storage_class)
            .field("object_lock", &self.object_lock)
            .finish()
    }
}

/// A repository under a prefix of an S3 bucket.
pub struct S3Backend {
    client: Client,
    runtime: tokio::runtime::Runtime,
    bucket: String,
    prefix: String,
    storage_class: Option<StorageClass>,
    object_lock: Option<ObjectLock>,
    /// The endpoint, when not the provider's default: it tells targets in one bucket and
    /// prefix on different servers apart in messages.
    endpoint: Option<String>,
}

/// A failed request as a short error: the service's status, code and message (not the SDK's
/// whole error chain), with a hint for the usual mistakes. Client errors other than timeouts
/// and throttling are [`BackendError::Refused`], which is not retried.
fn remote<E>(location: String, err: SdkError<E>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let SdkError::ServiceError(service) = &err else {
        return BackendError::Remote {
            location,
            message: DisplayErrorContext(&err).to_string(),
        };
    };
    let status = service.raw().status().as_u16();
    let code = service.err().code().unwrap_or("error");
    let detail = service.err().message().map(|m| format!(": {m}")).unwrap_or_default();
    let hint = match code {
        "SignatureDoesNotMatch" => " (is the secret access key right?)",
        "InvalidAccessKeyId" => " (the server does not know this access key id)",
        "AccessDenied" => " (the keys may not use this bucket or prefix)",
        "NoSuchBucket" => " (create the bucket first)",
        _ => "",
    };
    let message = format!("HTTP {status} {code}{detail}{hint}");
    if (400..500).contains(&status) && status != 408 && status != 429 {
        BackendError::Refused { location, message }
    } else {
        BackendError::Remote { location, message }
    }
}

fn status<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// What an upload reads: bytes in memory, or a local file of a given length on disk.
#[derive(Clone, Copy)]
enum Source<'a> {
    Memory(&'a [u8]),
    File(&'a Path, u64),
}

/// One request body of an upload, owned so it can move into a task.
enum Part {
    Memory(Vec<u8>),
    File { path: PathBuf, offset: u64, length: u64 },
}

impl Source<'_> {
    fn len(&self) -> u64 {
        match self {
            Source::Memory(data) => data.len() as u64,
            Source::File(_, len) => *len,
        }
    }

    /// The `length` bytes at `offset` (within [`Source::len`]).
    fn part(&self, offset: u64, length: u64) -> Part {
        match *self {
            Source::Memory(data) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
                let end = usize::try_from(offset + length).unwrap_or(usize::MAX).min(data.len());
                Part::Memory(data[start..end].to_vec())
            }
            Source::File(path, _) => Part::File {
                path: path.to_path_buf(),
                offset,
                length,
            },
        }
    }
}

impl Part {
    /// The request body: a file part is streamed from disk, never held in memory whole.
    async fn stream(self, location: &str) -> Result<ByteStream, BackendError> {
        match self {
            Part::Memory(data) => Ok(ByteStream::from(data)),
            Part::File { path, offset, length } => ByteStream::read_from()
                .path(&path)
                .offset(offset)
                .length(Length::Exact(length))
                .buffer_size(STREAM_BUFFER)
                .build()
                .await
                .map_err(|e| BackendError::Io {
                    location: format!("{location} (from local file {})", path.display()),
                    source: std::io::Error::other(e),
                }),
        }
    }
}

impl S3Backend {
    /// Connects (lazily: no request is made until the first call).
    pub fn new(config: S3Config) -> Result<Self, BackendError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hort-s3")
            .enable_all()
            .build()
            .map_err(|e| BackendError::Config(format!("cannot start the S3 runtime: {e}")))?;
        let credentials = Credentials::new(
            config.access_key_id,
            config.secret_access_key,
            None,
            None,
            "hort-static",
        );
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region))
            .credentials_provider(credentials)
            .force_path_style(config.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(Duration::from_secs(60))
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(config.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let client = Client::from_conf(builder.build());
        Ok(Self {
            client,
            runtime,
            bucket: config.bucket,
            prefix: config.prefix.trim_matches('/').to_owned(),
            storage_class: config.storage_class.as_deref().map(StorageClass::from),
            object_lock: config.object_lock,
            endpoint: config.endpoint,
        })
    }

    fn key(&self, kind: FileKind, name: &str) -> String {
        let path = kind.path(name);
        if self.prefix.is_empty() {
            path
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    fn location(&self, kind: FileKind, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(kind, name))
    }

    /// Hands every object whose key starts with `prefix` to `each`, a listing page at a time.
    fn each_object(&self, prefix: &str, mut each: impl FnMut(&Object)) -> Result<(), BackendError> {
        let location = format!("s3://{}/{prefix}", self.bucket);
        self.runtime.block_on(async {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                page.map_err(|e| remote(location.clone(), e))?
                    .contents()
                    .iter()
                    .for_each(&mut each);
            }
            Ok(())
        })
    }

    /// Runs `op` again after a pause when it fails with a remote error: the SDK retries
    /// requests, but not failures while a response body streams in.
    fn retrying<T>(&self, op: impl Fn() -> Result<T, BackendError>) -> Result<T, BackendError> {
        let mut pause = Duration::from_millis(500);
        for _ in 1..OUTER_ATTEMPTS {
            match op() {
                Err(BackendError::Remote { location, message }) => {
                    warn!(%location, %message, "S3 request failed; retrying in {pause:?}");
                    std::thread::sleep(pause);
                    pause *= 4;
                }
                other => return other,
            }
        }
        op()
    }

    fn get(&self, kind: FileKind, name: &str, range: Option<String>) -> Result<Vec<u8>, BackendError> {
        self.retrying(|| self.get_once(kind, name, range.clone()))
    }

    fn get_once(&self, kind: FileKind, name: &str, range: Option<String>) -> Result<Vec<u8>, BackendError> {
        let location = self.location(kind, name);
        self.runtime.block_on(async {
            let response = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(self.key(kind, name))
                .set_range(range)
                .send()
                .await
                .map_err(|e| match status(&e) {
                    Some(404) => BackendError::NotFound {
                        location: location.clone(),
                    },
                    Some(403)
                        if e.as_service_error()
                            .is_some_and(GetObjectError::is_invalid_object_state) =>
                    {
                        let class = match e.as_service_error() {
                            Some(GetObjectError::InvalidObjectState(state)) => {
                                state.storage_class().map(|c| c.to_string())
                            }
                            _ => None,
                        };
                        BackendError::Archived {
                            location: location.clone(),
                            class: class
                                .or_else(|| self.storage_class.as_ref().map(|c| c.to_string()))
                                .unwrap_or_else(|| "unknown".into()),
                        }
                    }
                    Some(416) => BackendError::Truncated {
                        location: location.clone(),
                        offset: 0,
                        wanted: 0,
                        size: 0,
                    },
                    _ => remote(location.clone(), e),
                })?;
            let body = response.body.collect().await.map_err(|e| BackendError::Remote {
                location: location.clone(),
                message: e.to_string(),
            })?;
            Ok(body.into_bytes().to_vec())
        })
    }

    /// Stores `source` under `name`: one PUT, or a multipart upload above
    /// [`MULTIPART_THRESHOLD`].
    fn put(&self, kind: FileKind, name: &str, source: Source<'_>) -> Result<(), BackendError> {
        let location = self.location(kind, name);
        self.retrying(|| {
            self.runtime.block_on(async {
                let key = self.key(kind, name);
                // Only packs may go to a cold class: everything else is read by every command.
                let class = if kind == FileKind::Pack {
                    self.storage_class.clone()
                } else {
                    None
                };
                let (mode, until) = self.lock_for(kind);
                if source.len() > MULTIPART_THRESHOLD as u64 {
                    return self.put_multipart(key, kind, class, source, &location).await;
                }
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .set_storage_class(class)
                    .set_object_lock_mode(mode)
                    .set_object_lock_retain_until_date(until)
                    .set_checksum_algorithm(self.checksum(kind))
                    .body(source.part(0, source.len()).stream(&location).await?)
                    .customize()
                    .config_override(self.checksum_config(kind))
                    .send()
                    .await
                    .map_err(|e| remote(location.clone(), e))?;
                Ok(())
            })
        })
    }

    async fn put_multipart(
        &self,
        key: String,
        kind: FileKind,
        class: Option<StorageClass>,
        source: Source<'_>,
        location: &str,
    ) -> Result<(), BackendError> {
        let (mode, until) = self.lock_for(kind);
        let checksum = self.checksum(kind);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .set_storage_class(class)
            .set_object_lock_mode(mode)
            .set_object_lock_retain_until_date(until)
            .set_checksum_algorithm(checksum.clone())
            .send()
            .await
            .map_err(|e| remote(location.to_owned(), e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| BackendError::Remote {
                location: location.to_owned(),
                message: "no upload id".into(),
            })?
            .to_owned();
        let result = async {
            let len = source.len();
            let uploads = (0..len.div_ceil(PART_SIZE as u64)).map(|i| {
                let offset = i * PART_SIZE as u64;
                let body = source.part(offset, (len - offset).min(PART_SIZE as u64));
                let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
                let request = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .set_checksum_algorithm(checksum.clone());
                let config = self.checksum_config(kind);
                let location = location.to_owned();
                async move {
                    let out = request
                        .body(body.stream(&location).await?)
                        .customize()
                        .config_override(config)
                        .send()
                        .await
                        .map_err(|e| remote(location, e))?;
                    let crc = out.checksum_crc32().map(str::to_owned);
                    Ok::<_, BackendError>((number, out.e_tag().map(str::to_owned), crc))
                }
            });
            let mut parts = Vec::new();
            for upload in uploads.map(tokio::spawn).collect::<Vec<_>>() {
                let (number, etag, crc) = upload.await.map_err(|e| BackendError::Remote {
                    location: location.to_owned(),
                    message: e.to_string(),
                })??;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(etag)
                        .set_checksum_crc32(crc)
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| remote(location.to_owned(), e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

impl Backend for S3Backend {
    fn describe(&self) -> String {
        let at = self.endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default();
        format!("s3://{}/{}{at}", self.bucket, self.prefix)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        if kind == FileKind::Config {
            return match self.read_tail(kind, "config", 1) {
                Ok(_) => Ok(vec!["config".to_owned()]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let prefix = if self.prefix.is_empty() {
            format!("{}/", kind.dir())
        } else {
            format!("{}/{}/", self.prefix, kind.dir())
        };
        let mut names = Vec::new();
        self.each_object(&prefix, |object| {
            if let Some(name) = object.key().and_then(|k| k.rsplit('/').next()) {
                names.push(name.to_owned());
            }
        })?;
        debug!(location = %format!("s3://{}/{prefix}", self.bucket), count = names.len(), "listed");
        Ok(names)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.get(kind, name, None)
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
        if length == 0 {
            return Ok(Vec::new());
        }
        let truncated = |size| BackendError::Truncated {
            location: self.location(kind, name),
            offset,
            wanted: length,
            size,
        };
        let data = match self.get(kind, name, Some(format!("bytes={offset}-{}", offset + length - 1))) {
            Err(BackendError::Truncated { .. }) => return Err(truncated(0)),
            other => other?,
        };
        if (data.len() as u64) < length {
            return Err(truncated(offset + data.len() as u64));
        }
        Ok(data)
    }

    fn read_tail(&self, kind: FileKind, name: &str, length: u64) -> Result<Vec<u8>, BackendError> {
        match self.get(kind, name, Some(format!("bytes=-{length}"))) {
            Err(BackendError::Truncated { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.put(kind, name, Source::Memory(data))
    }

    fn write_file(&self, kind: FileKind, name: &str, source: LocalFile<'_>) -> Result<(), BackendError> {
        self.put(kind, name, Source::File(source.path, source.size))
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        self.delete_unless_retained(kind, name)
    }

    fn retained_until(
        &self,
        kind: FileKind,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, BackendError> {
        if self.object_lock.is_none() || !kind.is_locked() {
            return Ok(None);
        }
        Ok(self.retention(kind, name, None)?.until)
    }

    fn object_lock_enabled(&self) -> Result<Option<bool>, BackendError> {
        self.lock_configuration()
    }

    fn bytes_used(&self) -> Result<Option<u64>, BackendError> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut bytes = 0u64;
        self.each_object(&prefix, |object| {
            bytes = bytes.saturating_add(object.size().unwrap_or(0).max(0) as u64);
        })?;
        Ok(Some(bytes))
    }

    fn archives(&self) -> Result<bool, BackendError> {
        Ok(self.storage_class.as_ref().is_some_and(archive::is_archive_class))
    }

    fn make_readable(&self, names: &[String], wait: Duration) -> Result<Vec<String>, BackendError> {
        if !self.archives()? {
            return Ok(Vec::new());
        }
        self.restore_archived(names, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_secret_key() {
        let config = S3Config {
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "hunter2".into(),
            force_path_style: true,
            max_attempts: 1,
            storage_class: None,
            object_lock: None,
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2") && debug.contains("AKIDEXAMPLE"), "{debug}");
    }
}
