//! The HTTP backend: a storage group served by the repository proxy `hort-store`
//! (`hort+https://HOST:PORT/GROUP`, or `hort+http://` to a loopback host: [`tls`]), which resolves every file into the asking namespace's own
//! repository. The interface is [`wire`].
//!
//! The agent shows the proxy a bearer token read from the file named by
//! [`hort_protocol::env::STORE_TOKEN_FILE`] on every request (projected ServiceAccount tokens
//! are replaced before they expire). Requests have explicit timeouts; failures the proxy calls
//! retryable (its storage is down) and failed connections are tried again a few times, writes
//! included (files are named by their content, so writing one twice stores the same bytes).
//! A failed TLS handshake (a certificate the CA bundle did not sign, a wrong host name) is a
//! refusal, not tried again; no request, and so no token, is sent before it succeeds.
//!
//! S3 Object Lock and archive storage classes of the proxy's targets reach the engine as they
//! would directly: a file's retention, whether packs may be archived (asked once), and
//! restores from the archive, which the proxy waits for in bounded slices
//! ([`wire::MAX_READABLE_WAIT`]) that this client repeats until its own wait is spent.

pub mod tls;
pub mod wire;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hort_protocol::StoreLocation;
use tracing::debug;
use ureq::Agent;
use ureq::http::Response;

use self::tls::TransportError;
use self::wire::{
    GroupFacts, MAX_FILE_BYTES, MAX_READABLE_NAMES, MAX_READABLE_WAIT, PREFIX, ReadableAnswer, ReadableRequest,
    Retention, WireError,
};
use super::{Backend, BackendError, FileKind, LocalFile};

/// Attempts of one request whose failure is retryable.
const ATTEMPTS: u32 = 4;
/// Wait before the second attempt; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Time to connect to the proxy.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the proxy to answer once the request is sent (its storage may be slow).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// Time to send or receive one body (a pack of tens of MiB on a slow link).
const BODY_TIMEOUT: Duration = Duration::from_secs(600);

/// A repository reached through `hort-store`.
pub struct HttpBackend {
    location: StoreLocation,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    agent: Agent,
    /// What the group's targets do, once asked.
    facts: OnceLock<GroupFacts>,
}

/// What a request sends.
enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    File(LocalFile<'a>),
}

impl HttpBackend {
    /// A backend for `location`, showing the token in `token_file` (none: no token, which the
    /// proxy refuses unless it is run without authentication for tests), checking an HTTPS
    /// proxy's certificate against the CA bundle `ca_file`. Fails for plain HTTP to a host
    /// that is not loopback, and for HTTPS without a usable CA bundle.
    pub fn new(
        location: StoreLocation,
        token_file: Option<PathBuf>,
        ca_file: Option<&Path>,
    ) -> Result<Self, TransportError> {
        let tls = tls::tls_config(&location, ca_file)?;
        let builder = Agent::config_builder();
        let builder = match tls {
            Some(tls) => builder.tls_config(tls),
            None => builder,
        };
        let agent = builder
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .timeout_send_body(Some(BODY_TIMEOUT))
            .timeout_recv_body(Some(BODY_TIMEOUT))
            .build()
            .into();
        Ok(Self {
            location,
            token_file,
            ca_file: ca_file.map(Path::to_owned),
            agent,
            facts: OnceLock::new(),
        })
    }

    /// `http(s)://HOST:PORT/v1/GROUP`.
    fn group_url(&self) -> String {
        let StoreLocation { host, port, group, tls } = &self.location;
        let scheme = if *tls { "https" } else { "http" };
        format!("{scheme}://{host}:{port}{PREFIX}/{group}")
    }

    fn url(&self, kind: FileKind, name: Option<&str>) -> String {
        // The config's name is ignored (the engine may pass the hash of its bytes).
        let name = if kind == FileKind::Config {
            name.map(|_| "config")
        } else {
            name
        };
        let kind = wire::kind_segment(kind);
        match name {
            Some(name) => format!("{}/{kind}/{name}", self.group_url()),
            None => format!("{}/{kind}", self.group_url()),
        }
    }

    fn file_location(&self, kind: FileKind, name: &str) -> String {
        format!("{} {}", self.describe(), kind.path(name))
    }

    fn token(&self, location: &str) -> Result<Option<String>, BackendError> {
        let Some(file) = &self.token_file else { return Ok(None) };
        let token = std::fs::read_to_string(file).map_err(|e| BackendError::Refused {
            location: location.to_owned(),
            message: format!("cannot read the token file {}: {e}", file.display()),
        })?;
        Ok(Some(token.trim().to_owned()))
    }

    /// Sends one request, trying again while the failure is retryable; returns the successful
    /// response, or the failure as the [`BackendError`] it stands for.
    fn call(
        &self,
        method: &str,
        url: &str,
        body: Body<'_>,
        location: &str,
    ) -> Result<Response<ureq::Body>, BackendError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let error = match self.call_once(method, url, &body, location)? {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => Self::wire_error(response, location),
                Err(e) if tls::is_handshake_failure(&e) => return Err(self.tls_refused(&e, location)),
                Err(e) => BackendError::Remote {
                    location: location.to_owned(),
                    message: format!("hort-store: {e}"),
                },
            };
            if !matches!(error, BackendError::Remote { .. }) || attempt >= ATTEMPTS {
                return Err(error);
            }
            debug!(%location, attempt, error = %error, "hort-store request failed; trying again");
            std::thread::sleep(backoff);
            backoff *= 2;
            attempt += 1;
        }
    }

    /// One attempt: `Err` if the request could not be made at all (no token), `Ok(Err)` if it
    /// failed on the way.
    fn call_once(
        &self,
        method: &str,
        url: &str,
        body: &Body<'_>,
        location: &str,
    ) -> Result<Result<Response<ureq::Body>, ureq::Error>, BackendError> {
        let bearer = self.token(location)?.map(|t| format!("Bearer {t}"));
        let bearer = bearer.as_deref();
        Ok(match (method, body) {
            ("GET", _) => authorized(self.agent.get(url), bearer).call(),
            ("DELETE", _) => authorized(self.agent.delete(url), bearer).call(),
            ("POST", Body::Bytes(data)) => authorized(self.agent.post(url), bearer).send(*data),
            (_, Body::Bytes(data)) => authorized(self.agent.put(url), bearer).send(*data),
            (_, Body::File(source)) => authorized(self.agent.put(url), bearer).send(source.open()?),
            (_, Body::None) => authorized(self.agent.put(url), bearer).send_empty(),
        })
    }

    /// A failed TLS handshake, naming the host and the CA bundle it was checked against.
    fn tls_refused(&self, error: &ureq::Error, location: &str) -> BackendError {
        let ca = self.ca_file.as_deref().map(Path::display);
        BackendError::Refused {
            location: location.to_owned(),
            message: format!(
                "TLS to hort-store at {}:{} failed, nothing was sent (its certificate is checked against {} {}): {error}",
                self.location.host,
                self.location.port,
                hort_protocol::env::STORE_CA_FILE,
                ca.map(|c| c.to_string()).unwrap_or_default()
            ),
        }
    }

    /// The failure a response that is not a success stands for.
    fn wire_error(mut response: Response<ureq::Body>, location: &str) -> BackendError {
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(64 * 1024).read_to_vec();
        match body.ok().and_then(|b| serde_json::from_slice::<WireError>(&b).ok()) {
            Some(wire) => wire.into_backend(location.to_owned()),
            None if status >= 500 => BackendError::Remote {
                location: location.to_owned(),
                message: format!("hort-store answered HTTP {status}"),
            },
            None => BackendError::Refused {
                location: location.to_owned(),
                message: format!("hort-store answered HTTP {status}"),
            },
        }
    }

    fn get(&self, kind: FileKind, name: &str, query: &str) -> Result<Vec<u8>, BackendError> {
        let location = self.file_location(kind, name);
        let url = format!("{}{query}", self.url(kind, Some(name)));
        let mut response = self.call("GET", &url, Body::None, &location)?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_FILE_BYTES)
            .read_to_vec()
            .map_err(|e| BackendError::Remote {
                location,
                message: format!("reading the answer of hort-store: {e}"),
            })
    }

    /// `GET url`, answered by JSON of type `T`.
    fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, location: String) -> Result<T, BackendError> {
        let response = self.call("GET", url, Body::None, &location)?;
        json_answer(response, location)
    }

    /// What the group's targets do, asked once.
    fn facts(&self) -> Result<GroupFacts, BackendError> {
        if let Some(facts) = self.facts.get() {
            return Ok(*facts);
        }
        let facts: GroupFacts = self.get_json(&self.group_url(), self.describe())?;
        Ok(*self.facts.get_or_init(|| facts))
    }

    /// One `readable` request: at most [`MAX_READABLE_NAMES`] packs, waiting at most
    /// [`MAX_READABLE_WAIT`].
    fn readable(&self, names: &[String], wait: Duration) -> Result<Vec<String>, BackendError> {
        let location = format!("{} {}", self.describe(), FileKind::Pack.dir());
        let url = format!("{}/readable", self.group_url());
        let request = ReadableRequest {
            names: names.to_vec(),
            wait_seconds: wait.min(MAX_READABLE_WAIT).as_secs(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| BackendError::Config(e.to_string()))?;
        let response = self.call("POST", &url, Body::Bytes(&body), &location)?;
        json_answer::<ReadableAnswer>(response, location).map(|a| a.archived)
    }

    fn list_with(&self, kind: FileKind, every: bool) -> Result<Vec<String>, BackendError> {
        let location = format!("{} {}", self.describe(), kind.dir());
        let url = format!("{}?every={every}", self.url(kind, None));
        let mut response = self.call("GET", &url, Body::None, &location)?;
        let body = response.body_mut().with_config().limit(MAX_FILE_BYTES).read_to_vec();
        body.ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| BackendError::Remote {
                location,
                message: "hort-store sent a listing that is not a JSON array of names".into(),
            })
    }

    fn put(&self, kind: FileKind, name: &str, body: Body<'_>) -> Result<(), BackendError> {
        let location = self.file_location(kind, name);
        self.call("PUT", &self.url(kind, Some(name)), body, &location).map(drop)
    }
}

/// The JSON of type `T` that `response` carries.
fn json_answer<T: serde::de::DeserializeOwned>(
    mut response: Response<ureq::Body>,
    location: String,
) -> Result<T, BackendError> {
    let body = response.body_mut().with_config().limit(MAX_FILE_BYTES).read_to_vec();
    body.ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| BackendError::Remote {
            location,
            message: format!("hort-store sent an answer that is not a {}", std::any::type_name::<T>()),
        })
}

/// The failure of a restore from the archive that had not completed for some of `names`
/// after `wait`.
fn still_archived(location: &str, names: &[String], class: String, wait: Duration) -> BackendError {
    let shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    let more = names.len().saturating_sub(5);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    BackendError::Archived {
        location: format!(
            "{location}: some of the {} packs ({shown}{more}): their restore was requested (RestoreObject) \
             and had not completed after waiting {}s: run the restore again once it has (archive restores \
             take hours), or allow a longer wait",
            names.len(),
            wait.as_secs()
        ),
        class,
    }
}

/// `request` with the `Authorization` header `bearer`, if there is one.
fn authorized<B>(request: ureq::RequestBuilder<B>, bearer: Option<&str>) -> ureq::RequestBuilder<B> {
    match bearer {
        Some(value) => request.header("Authorization", value),
        None => request,
    }
}

impl Backend for HttpBackend {
    fn describe(&self) -> String {
        hort_protocol::Location::Store(self.location.clone()).to_string()
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        self.list_with(kind, false)
    }

    fn list_every_target(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        self.list_with(kind, true)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.get(kind, name, "")
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>, BackendError> {
        let data = self.get(kind, name, &format!("?offset={offset}&length={length}"))?;
        if data.len() as u64 != length {
            return Err(BackendError::Remote {
                location: self.file_location(kind, name),
                message: format!("hort-store sent {} bytes for a range of {length}", data.len()),
            });
        }
        Ok(data)
    }

    fn read_tail(&self, kind: FileKind, name: &str, length: u64) -> Result<Vec<u8>, BackendError> {
        self.get(kind, name, &format!("?tail={length}"))
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.put(kind, name, Body::Bytes(data))
    }

    fn write_file(&self, kind: FileKind, name: &str, source: LocalFile<'_>) -> Result<(), BackendError> {
        self.put(kind, name, Body::File(source))
    }

    fn retained_until(
        &self,
        kind: FileKind,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, BackendError> {
        if !kind.is_locked() {
            return Ok(None);
        }
        let url = format!("{}/retention", self.url(kind, Some(name)));
        let retention: Retention = self.get_json(&url, self.file_location(kind, name))?;
        Ok(retention.until)
    }

    fn archives(&self) -> Result<bool, BackendError> {
        Ok(self.facts()?.archives)
    }

    /// Asks for every pack's restore first (requests that do not wait), then spends `wait`
    /// on the packs whose restores had not completed, in requests of at most
    /// [`MAX_READABLE_WAIT`]. Returns the packs the proxy found archived in the request that
    /// succeeded for them.
    fn make_readable(&self, names: &[String], wait: Duration) -> Result<Vec<String>, BackendError> {
        if names.is_empty() || !self.archives()? {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        let mut archived = Vec::new();
        let mut pending = Vec::new();
        for batch in names.chunks(MAX_READABLE_NAMES) {
            match self.readable(batch, Duration::ZERO) {
                Ok(held) => archived.extend(held),
                Err(BackendError::Archived { class, .. }) => pending.push((batch, class)),
                Err(e) => return Err(e),
            }
        }
        for (batch, mut class) in pending {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(still_archived(&self.describe(), batch, class, wait));
                }
                match self.readable(batch, left) {
                    Ok(held) => {
                        archived.extend(held);
                        break;
                    }
                    Err(BackendError::Archived { class: now, .. }) => class = now,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(archived)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        let location = self.file_location(kind, name);
        self.call("DELETE", &self.url(kind, Some(name)), Body::None, &location)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    /// A loopback server answering each connection with the next of `answers` (status,
    /// body); sends each request's head (request line and headers) to the receiver.
    fn canned(answers: Vec<(u16, &'static str)>) -> (u16, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (heads, received) = mpsc::channel();
        std::thread::spawn(move || {
            for (status, body) in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                heads.send(head).unwrap();
                let mut stream = reader.into_inner();
                let length = body.len();
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}"
                )
                .unwrap();
            }
        });
        (port, received)
    }

    fn backend(port: u16, token_file: Option<PathBuf>) -> HttpBackend {
        let location = StoreLocation {
            host: "127.0.0.1".into(),
            port,
            group: "shared".into(),
            tls: false,
        };
        HttpBackend::new(location, token_file, None).unwrap()
    }

    #[test]
    fn retryable_failures_are_tried_again_and_refusals_and_absence_are_not() {
        let (port, heads) = canned(vec![
            (503, r#"{"error":"unavailable","message":"the storage failed"}"#),
            (200, r#"["a"]"#),
            (404, r#"{"error":"not-found"}"#),
            (
                403,
                r#"{"error":"refused","message":"namespace team-a: index: refused"}"#,
            ),
        ]);
        let client = backend(port, None);
        assert_eq!(client.list(FileKind::Index).unwrap(), ["a"]);
        assert_eq!(heads.try_iter().count(), 2, "the 503 was tried again");
        let name = "ab".repeat(32);
        assert!(client.read(FileKind::Index, &name).unwrap_err().is_not_found());
        match client.delete(FileKind::Index, &name) {
            Err(BackendError::Refused { message, location }) => {
                assert!(message.contains("team-a"), "{message}");
                assert!(
                    location.contains("hort+http://127.0.0.1") && location.contains(&name),
                    "{location}"
                );
            }
            other => panic!("not refused: {other:?}"),
        }
        assert_eq!(
            heads.try_iter().count(),
            2,
            "neither not-found nor a refusal was tried again"
        );
    }

    #[test]
    fn retention_and_archives_are_asked_of_the_proxy_and_a_wait_is_spent_in_slices() {
        let (port, heads) = canned(vec![
            (200, r#"{"until":"2033-05-18T03:33:20Z"}"#),
            (200, r#"{"archives":true}"#),
            (409, r#"{"error":"archived","class":"GLACIER"}"#),
            (409, r#"{"error":"archived","class":"GLACIER"}"#),
            (200, r#"{"archived":["p1"]}"#),
            (409, r#"{"error":"archived","class":"GLACIER"}"#),
        ]);
        let client = backend(port, None);
        let name = "ab".repeat(32);
        assert_eq!(client.retained_until(FileKind::Index, &name).unwrap(), None);
        let until = client.retained_until(FileKind::Snapshot, &name).unwrap().unwrap();
        assert_eq!(until.timestamp(), 2_000_000_000);
        let names = vec!["p1".to_owned(), "p2".to_owned()];
        // The first request asks for the restores without waiting; the next ones wait.
        assert_eq!(client.make_readable(&names, Duration::from_secs(90)).unwrap(), ["p1"]);
        match client.make_readable(&names, Duration::ZERO) {
            Err(BackendError::Archived { location, class }) => {
                assert_eq!(class, "GLACIER");
                assert!(
                    location.contains("p1, p2") && location.contains("RestoreObject"),
                    "{location}"
                );
            }
            other => panic!("not archived: {other:?}"),
        }
        let heads: Vec<String> = heads.try_iter().collect();
        let lines: Vec<&str> = heads.iter().map(|h| h.lines().next().unwrap()).collect();
        assert_eq!(
            lines,
            [
                format!("GET /v1/shared/snapshot/{name}/retention HTTP/1.1").as_str(),
                "GET /v1/shared HTTP/1.1",
                "POST /v1/shared/readable HTTP/1.1",
                "POST /v1/shared/readable HTTP/1.1",
                "POST /v1/shared/readable HTTP/1.1",
                "POST /v1/shared/readable HTTP/1.1",
            ],
            "the index's retention is not asked, the group's facts once; the wait is asked for again \
             until the packs are readable, and without a wait there is one request"
        );
    }

    #[test]
    fn the_token_file_is_read_for_every_request_and_the_config_is_named_config() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "first-token\n").unwrap();
        let (port, heads) = canned(vec![(200, "[]"), (200, "[]"), (200, "cfg")]);
        let client = backend(port, Some(token_file.clone()));
        client.list(FileKind::Snapshot).unwrap();
        std::fs::write(&token_file, "second-token\n").unwrap();
        client.list(FileKind::Snapshot).unwrap();
        assert_eq!(client.read(FileKind::Config, &"cd".repeat(32)).unwrap(), b"cfg");
        let heads: Vec<String> = heads.try_iter().map(|h| h.to_lowercase()).collect();
        assert!(
            heads[0].contains("authorization: bearer first-token\r\n"),
            "{}",
            heads[0]
        );
        assert!(
            heads[1].contains("authorization: bearer second-token\r\n"),
            "{}",
            heads[1]
        );
        assert!(
            heads[0].starts_with("get /v1/shared/snapshot?every=false "),
            "{}",
            heads[0]
        );
        assert!(heads[2].starts_with("get /v1/shared/config/config "), "{}", heads[2]);
    }
}
