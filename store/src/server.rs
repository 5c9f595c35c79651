//! The HTTP server: the engine's [`Backend`] calls (see [`hort_engine::backend::http::wire`])
//! for the asking namespace, on that namespace's place in the group. The engine's backends
//! block, so each call runs on a blocking thread. Written bodies are spooled to a temporary
//! file as they arrive (at most [`MAX_FILE_BYTES`]), hashed, checked against their name, and
//! stored from that file; `config` is never written (the operator creates each namespace's
//! repository), so several proxies can serve one group without coordinating. Each namespace
//! has at most [`REQUESTS_PER_NAMESPACE`] requests at work at a time; more wait, so one
//! tenant's burst cannot take every blocking thread from the others.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::routing::{get, post};
use axum::{Json, body::Bytes};
use futures::StreamExt;
use hort_engine::backend::LocalFile;
use hort_engine::backend::http::wire::{
    GroupFacts, ListQuery, MAX_FILE_BYTES, MAX_READABLE_NAMES, MAX_READABLE_WAIT, PREFIX, ReadQuery, ReadableAnswer,
    ReadableRequest, Retention,
};
use hort_engine::id::Id;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use crate::admission::{Admission, AllNamespaces};
use crate::api_error::ApiError;
use crate::auth::{AuthError, Authenticator, Token};
use crate::check::{self, Namespace};
use crate::places::Places;

/// Requests of one namespace at work at a time (tokio's blocking threads are 512).
pub const REQUESTS_PER_NAMESPACE: usize = 16;

/// The proxy: who may ask, which namespaces may use which group, the groups it serves by
/// name, where bodies are spooled, and each namespace's share of the work.
pub struct Store<A, N = AllNamespaces> {
    auth: A,
    admission: N,
    groups: HashMap<String, Arc<Places>>,
    spool: PathBuf,
    shares: Mutex<HashMap<Namespace, Arc<Semaphore>>>,
}

/// An admitted request: its namespace, the group it asks for, and its share of the work
/// (held until it is answered).
struct Admitted {
    namespace: Namespace,
    places: Arc<Places>,
    _share: OwnedSemaphorePermit,
}

impl<A: Authenticator> Store<A> {
    /// A proxy accepting tokens through `auth`, serving `groups` to every namespace, spooling
    /// bodies in `spool`.
    pub fn new(auth: A, groups: HashMap<String, Places>, spool: PathBuf) -> Self {
        let groups = groups.into_iter().map(|(name, p)| (name, Arc::new(p))).collect();
        Self {
            auth,
            admission: AllNamespaces,
            groups,
            spool,
            shares: Mutex::default(),
        }
    }
}

impl<A: Authenticator, N: Admission> Store<A, N> {
    /// This proxy, serving a group only to the namespaces `admission` admits to it.
    pub fn with_admission<M: Admission>(self, admission: M) -> Store<A, M> {
        Store {
            auth: self.auth,
            admission,
            groups: self.groups,
            spool: self.spool,
            shares: self.shares,
        }
    }

    /// One of `namespace`'s [`REQUESTS_PER_NAMESPACE`] places at work, once one is free.
    async fn share(&self, namespace: &Namespace) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
            let share = shares.entry(namespace.clone());
            share
                .or_insert_with(|| Arc::new(Semaphore::new(REQUESTS_PER_NAMESPACE)))
                .clone()
        };
        semaphore.acquire_owned().await.expect("the semaphore is never closed")
    }

    /// The asking namespace and the group it asks for, if the namespace may use the group,
    /// once the namespace has a share free.
    async fn admit(&self, headers: &HeaderMap, group: &str) -> Result<Admitted, ApiError> {
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(Token::from_header)
            .ok_or_else(|| AuthError::refused("no bearer token"))?;
        let namespace = self.auth.namespace(&token).await?;
        let places = self.groups.get(group).cloned().ok_or_else(|| ApiError::NoGroup {
            namespace: namespace.to_string(),
            group: group.to_owned(),
        })?;
        self.admission.admit(group, &namespace).await?;
        let share = self.share(&namespace).await;
        Ok(Admitted {
            namespace,
            places,
            _share: share,
        })
    }
}

/// The proxy's routes.
pub fn router<A: Authenticator, N: Admission>(store: Arc<Store<A, N>>) -> Router {
    Router::new()
        .route(&format!("{PREFIX}/{{group}}"), get(facts::<A, N>))
        .route(&format!("{PREFIX}/{{group}}/readable"), post(readable::<A, N>))
        .route(&format!("{PREFIX}/{{group}}/{{kind}}"), get(list::<A, N>))
        .route(
            &format!("{PREFIX}/{{group}}/{{kind}}/{{name}}"),
            get(read::<A, N>).put(write::<A, N>).delete(delete::<A, N>),
        )
        .route(
            &format!("{PREFIX}/{{group}}/{{kind}}/{{name}}/retention"),
            get(retention::<A, N>),
        )
        .with_state(store)
}

/// Serves the proxy on `listener` (a [`tokio::net::TcpListener`] for plain HTTP, a
/// [`crate::tls::TlsListener`] for HTTPS) until the process ends.
pub async fn serve<L, A: Authenticator, N: Admission>(listener: L, store: Arc<Store<A, N>>) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router(store)).await
}

/// Runs `f` (which calls the engine's blocking backends) on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Body(format!("the request's task failed: {e}")))?
}

type Shared<A, N> = State<Arc<Store<A, N>>>;

async fn facts<A: Authenticator, N: Admission>(
    State(store): Shared<A, N>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> Result<Json<GroupFacts>, ApiError> {
    let admitted = store.admit(&headers, &group).await?;
    let (namespace, places) = (admitted.namespace.clone(), admitted.places.clone());
    let archives = blocking(move || Ok(places.open(&namespace)?.archives()?)).await?;
    Ok(Json(GroupFacts { archives }))
}

async fn retention<A: Authenticator, N: Admission>(
    State(store): Shared<A, N>,
    headers: HeaderMap,
    Path((group, kind, name)): Path<(String, String, String)>,
) -> Result<Json<Retention>, ApiError> {
    let admitted = store.admit(&headers, &group).await?;
    let (namespace, places) = (admitted.namespace.clone(), admitted.places.clone());
    let file = check::resolve(&namespace, &kind, &name)?;
    let until = blocking(move || Ok(places.open(&namespace)?.retained_until(file.kind, &file.name)?)).await?;
    Ok(Json(Retention { until }))
}

/// Makes archived packs of the namespace readable, waiting at most [`MAX_READABLE_WAIT`].
async fn readable<A: Authenticator, N: Admission>(
    State(store): Shared<A, N>,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: Bytes,
) -> Result<Json<ReadableAnswer>, ApiError> {
    let admitted = store.admit(&headers, &group).await?;
    let (namespace, places) = (admitted.namespace.clone(), admitted.places.clone());
    let request: ReadableRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("a readable request: {e}")))?;
    if request.names.len() > MAX_READABLE_NAMES {
        return Err(ApiError::BadRequest(format!(
            "a readable request names {} packs, at most {MAX_READABLE_NAMES}",
            request.names.len()
        )));
    }
    for name in &request.names {
        check::resolve(&namespace, "pack", name)?;
    }
    let wait = Duration::from_secs(request.wait_seconds).min(MAX_READABLE_WAIT);
    let archived = blocking(move || Ok(places.open(&namespace)?.make_readable(&request.names, wait)?)).await?;
    Ok(Json(ReadableAnswer { archived }))
}

async fn list<A: Authenticator, N: Admission>(
    State(store): Shared<A, N>,
    headers: HeaderMap,
    Path((group, kind)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<String>>, ApiError> {
    let admitted = store.admit(&headers, &group).await?;
    let (namespace, places) = (admitted.namespace.clone(), admitted.places.clone());
    let kind = check::resolve_kind(&namespace, &kind)?;
    let names = blocking(move || {
        let backend = places.open(&namespace)?;
        Ok(match query.every {
            true => backend.list_every_target(kind)?,
            false => backend.list(kind)?,
        })
    })
    .await?;
    Ok(Json(names))
}

async fn read<A: Authenticator, N: Admission>(
    State(store): Shared<A, N>,
    headers: HeaderMap,
    Path((group, kind, name)): Path<(String, String, String)>,
    Query(query): Query<ReadQuery>,
) -> Result<Bytes, ApiError> {
    let admitted = store.admit(&headers, &group).await?;
    let (namespace, places) = (admitted.namespace.clone(), admitted.places.clone());
    let file = check::resolve(&namespace, &kind, &name)?;
    debug!(file = %file.path(), "read");
    let data = blocking(move || {
        let backend = places.open(&namespace)?;
        let (kind, name) = (file.kind, file.name.as_str());
        Ok(match (query.offset, query.length, query.tail) {
            (None, None, None) => backend.read(kind, name)?,
            (Some(offset), Some(length), None) => backend.read_range(kind, name, offset, length)?,
            (None, None, Some(length)) => backend.read_tail(kind, name, length)?,
            _ => return Err(ApiError::BadQuery),
        })
    })
    .await?;
    Ok(Bytes::from(data))
}

async fn write<A: Authenticator, N: Admission>(
    State(store): Shared<A, N>,
    headers: HeaderMap,
    Path((group, kind, name)): Path<(String, String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let admitted = store.admit(&headers, &group).await?;
    let (namespace, places) = (admitted.namespace.clone(), admitted.places.clone());
    let file = check::resolve(&namespace, &kind, &name)?;
    file.check_write()?;
    let (spooled, size) = spool(&store.spool, body).await?;
    blocking(move || {
        let path = spooled.path();
        let id = std::fs::File::open(path)
            .and_then(Id::of_reader)
            .map_err(|e| ApiError::Body(format!("hashing the spooled body: {e}")))?;
        file.check_content(id)?;
        let backend = places.open(&file.namespace)?;
        backend.write_file(file.kind, &file.name, LocalFile { path, size })?;
        debug!(file = %file.path(), size, "written");
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Receives `body` into a temporary file in `dir`, refusing more than [`MAX_FILE_BYTES`].
async fn spool(dir: &std::path::Path, body: Body) -> Result<(tempfile::NamedTempFile, u64), ApiError> {
    let io = |e: std::io::Error| ApiError::Body(format!("spooling to {}: {e}", dir.display()));
    let spooled = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let mut out = tokio::fs::File::from_std(spooled.reopen().map_err(io)?);
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::Body(e.to_string()))?;
        size += chunk.len() as u64;
        if size > MAX_FILE_BYTES {
            return Err(ApiError::TooLarge);
        }
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    Ok((spooled, size))
}

async fn delete<A: Authenticator, N: Admission>(
    State(store): Shared<A, N>,
    headers: HeaderMap,
    Path((group, kind, name)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let admitted = store.admit(&headers, &group).await?;
    let (namespace, places) = (admitted.namespace.clone(), admitted.places.clone());
    let file = check::resolve(&namespace, &kind, &name)?;
    file.check_delete()?;
    blocking(move || {
        places.open(&namespace)?.delete(file.kind, &file.name)?;
        debug!(file = %file.path(), "deleted");
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::FixedTokens;

    #[tokio::test]
    async fn a_namespace_at_its_limit_waits_and_the_others_do_not() {
        let store = Store::new(FixedTokens::default(), HashMap::new(), std::env::temp_dir());
        let (a, b) = (Namespace::parse("team-a").unwrap(), Namespace::parse("team-b").unwrap());
        let mut held = Vec::new();
        for _ in 0..REQUESTS_PER_NAMESPACE {
            held.push(store.share(&a).await);
        }
        let wait = Duration::from_millis(100);
        assert!(
            tokio::time::timeout(wait, store.share(&a)).await.is_err(),
            "team-a waits"
        );
        assert!(
            tokio::time::timeout(wait, store.share(&b)).await.is_ok(),
            "team-b does not"
        );
        held.pop();
        assert!(
            tokio::time::timeout(wait, store.share(&a)).await.is_ok(),
            "a share came free"
        );
    }
}
