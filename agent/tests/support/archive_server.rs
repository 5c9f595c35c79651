//! An in-process S3 server that models archive storage classes: s3s-fs underneath, and in
//! front of it objects uploaded as `GLACIER` or `DEEP_ARCHIVE` answer GET with
//! `InvalidObjectState` (HTTP 403) until RestoreObject was called for them. The first HEAD
//! after the request reports the restore as ongoing, later ones as done: a restore takes a
//! while, as on AWS (where it takes hours).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CompleteMultipartUploadInput, CompleteMultipartUploadOutput,
    CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteObjectInput, DeleteObjectOutput, GetObjectInput,
    GetObjectOutput, HeadObjectInput, HeadObjectOutput, ListObjectsV2Input, ListObjectsV2Output, PutObjectInput,
    PutObjectOutput, RestoreObjectInput, RestoreObjectOutput, StorageClass, UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use super::{ACCESS_KEY, Repo, SECRET_KEY};

/// An archived object: its class, and how far its restore has got.
struct Archived {
    class: String,
    requested: bool,
    heads_since_request: u32,
}

/// What the server saw; shared with the test.
#[derive(Default)]
pub struct Seen {
    archived: Mutex<HashMap<String, Archived>>,
    /// RestoreObject requests.
    pub restore_requests: AtomicUsize,
}

impl Seen {
    /// Keys uploaded in an archive class.
    pub fn archived_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Archived>> {
        self.archived.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the class of a new object; returns the class to pass on to s3s-fs (which
    /// knows only readable ones).
    fn upload(&self, key: &str, class: Option<StorageClass>) -> Option<StorageClass> {
        match class {
            Some(c) if ["GLACIER", "DEEP_ARCHIVE"].contains(&c.as_str()) => {
                self.lock().insert(
                    key.to_owned(),
                    Archived {
                        class: c.as_str().to_owned(),
                        requested: false,
                        heads_since_request: 0,
                    },
                );
                None
            }
            other => {
                self.lock().remove(key);
                other
            }
        }
    }
}

struct ArchiveS3 {
    fs: s3s_fs::FileSystem,
    seen: Arc<Seen>,
}

#[async_trait::async_trait]
impl S3 for ArchiveS3 {
    async fn put_object(&self, mut req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        req.input.storage_class = self.seen.upload(&req.input.key, req.input.storage_class.take());
        self.fs.put_object(req).await
    }

    async fn create_multipart_upload(
        &self,
        mut req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        req.input.storage_class = self.seen.upload(&req.input.key, req.input.storage_class.take());
        self.fs.create_multipart_upload(req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        self.fs.upload_part(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.fs.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.fs.abort_multipart_upload(req).await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        if let Some(a) = self.seen.lock().get(&req.input.key)
            && a.heads_since_request < 2
        {
            return Err(s3_error!(
                InvalidObjectState,
                "The operation is not valid for the object's storage class"
            ));
        }
        self.fs.get_object(req).await
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let key = req.input.key.clone();
        let mut out = self.fs.head_object(req).await?;
        if let Some(a) = self.seen.lock().get_mut(&key) {
            out.output.storage_class = Some(StorageClass::from(a.class.clone()));
            if a.requested {
                a.heads_since_request += 1;
                out.output.restore = Some(if a.heads_since_request < 2 {
                    "ongoing-request=\"true\"".into()
                } else {
                    "ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2096 00:00:00 GMT\"".into()
                });
            }
        }
        Ok(out)
    }

    async fn restore_object(&self, req: S3Request<RestoreObjectInput>) -> S3Result<S3Response<RestoreObjectOutput>> {
        match self.seen.lock().get_mut(&req.input.key) {
            Some(a) if a.requested => Err(s3_error!(RestoreAlreadyInProgress)),
            Some(a) => {
                a.requested = true;
                self.seen.restore_requests.fetch_add(1, Ordering::SeqCst);
                Ok(S3Response::new(RestoreObjectOutput::default()))
            }
            None => Err(s3_error!(InvalidObjectState, "the object is not archived")),
        }
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.seen.lock().remove(&req.input.key);
        self.fs.delete_object(req).await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }
}

/// Starts the server with a bucket `hort` on a free loopback port, on a thread of its own
/// that lives as long as the test process; returns its endpoint and what it sees.
pub fn start() -> (String, Arc<Seen>, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("hort")).unwrap();
    let seen = Arc::new(Seen::default());
    let s3 = ArchiveS3 {
        fs: s3s_fs::FileSystem::new(root.path()).unwrap(),
        seen: seen.clone(),
    };
    let mut builder = s3s::service::S3ServiceBuilder::new(s3);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let http = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
    });
    (endpoint, seen, root)
}

/// Restores `repo`'s latest snapshot into `target` without a wait, then with one, and returns
/// the first's stderr. The first requests the restore of each of the `archived` packs once,
/// fails naming the class and the request, and writes nothing; the second waits for them,
/// requesting none again, and restores.
pub fn restore_without_then_with_wait(repo: &Repo, seen: &Seen, target: &Path, archived: usize) -> String {
    let target_arg = target.to_str().unwrap();
    let out = repo.run(&["restore", "latest", "--target", target_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        stderr.contains("DEEP_ARCHIVE") && stderr.contains("RestoreObject"),
        "{stderr}"
    );
    assert_eq!(seen.restore_requests.load(Ordering::SeqCst), archived);
    let written = std::fs::read_dir(target).map_or(0, |d| d.count());
    assert_eq!(written, 0, "nothing is written before the packs are readable");

    repo.ok(&["restore", "latest", "--target", target_arg, "--archive-wait", "1m"]);
    assert_eq!(seen.restore_requests.load(Ordering::SeqCst), archived);
    stderr
}
