//! Repository locations: one per target in [`crate::env::REPOSITORY`], and what users type
//! after `--repo`.
//!
//! - a directory: `/path` or `file:/path`;
//! - an S3 bucket: `s3://BUCKET/PREFIX?endpoint=URL&region=R&path-style=BOOL&storage-class=C&object-lock=MODE:DAYS&credentials=P`,
//!   every query setting optional. `credentials=P` takes the keys from `P_AWS_ACCESS_KEY_ID`
//!   and `P_AWS_SECRET_ACCESS_KEY` ([`crate::env::target_credentials`]). `object-lock` is
//!   an [`ObjectLock`], e.g. `governance:30`;
//! - a group served by `hort-store`: `hort+https://HOST:PORT/GROUP` ([`StoreLocation`]), or
//!   `hort+http://HOST:PORT/GROUP` for a loopback host.
//!
//! In the prefix and the settings, `%`, `&`, `=`, `?`, `#`, `,`, `+`, spaces and control
//! characters are written as `%XX` escapes, so that no value can add a setting (a region
//! `x&endpoint=…`) or a target (a `,`), and [`Location`]'s `Display` and `FromStr` round-trip.

use std::fmt;
use std::str::FromStr;

/// A location that cannot be parsed; the message names the location and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("repository location `{location}`: {problem}")]
pub struct LocationError {
    /// The location as given.
    pub location: String,
    /// What is wrong with it.
    pub problem: LocationProblem,
}

/// What is wrong with a location; each names the part and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationProblem {
    /// Neither a directory nor `s3://` nor `hort+https://` nor `hort+http://`.
    #[error("not a directory, s3://, hort+https:// or hort+http:// location")]
    NotALocation,
    /// A store location that is not `hort+http(s)://HOST:PORT/GROUP`.
    #[error(
        "not hort+https://HOST:PORT/GROUP or hort+http://HOST:PORT/GROUP (a host, a port and one group name of letters, digits, `-` and `.`)"
    )]
    BadStore,
    /// `s3://` without a bucket.
    #[error("no bucket")]
    NoBucket,
    /// A `%` without two hex digits after it (the value as given).
    #[error("`{0}` has a `%` that is not followed by two hex digits")]
    BadEscape(String),
    /// Escapes that decode to invalid UTF-8 (the value as given).
    #[error("`{0}` decodes to invalid UTF-8")]
    NotUtf8(String),
    /// A `path-style` that is not a boolean.
    #[error("path-style `{0}` is not true or false")]
    PathStyle(String),
    /// A wrong `object-lock`.
    #[error(transparent)]
    ObjectLock(#[from] ObjectLockError),
    /// A setting this agent does not know.
    #[error("unknown setting `{0}` (known: endpoint, region, path-style, storage-class, object-lock, credentials)")]
    UnknownSetting(String),
}

/// An `object-lock` setting that is not an [`ObjectLock`] (the text as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectLockError {
    /// Not `governance:DAYS` or `compliance:DAYS`.
    #[error("object-lock `{0}` is not MODE:DAYS (e.g. governance:30 or compliance:365)")]
    NotModeDays(String),
    /// Zero days.
    #[error("object-lock `{0}`: retention needs at least 1 day")]
    NoDays(String),
}

/// One repository target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory.
    Path(String),
    /// An S3 bucket and prefix.
    S3(S3Location),
    /// A storage group served by `hort-store`.
    Store(StoreLocation),
}

/// A storage group served by the repository proxy `hort-store`: the agent reaches its own
/// namespace's repository in group `group` at `host:port`, with its ServiceAccount token,
/// over HTTPS (`hort+https://`) or, to a loopback host only, plain HTTP (`hort+http://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLocation {
    /// Host name or IP address of the proxy.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The storage group's name.
    pub group: String,
    /// HTTPS (`hort+https://`), checked against the CA bundle of
    /// [`crate::env::STORE_CA_FILE`].
    pub tls: bool,
}

impl StoreLocation {
    /// The URL scheme of plain HTTP store locations.
    pub const SCHEME: &'static str = "hort+http://";
    /// The URL scheme of HTTPS store locations.
    pub const TLS_SCHEME: &'static str = "hort+https://";

    /// The scheme of this location.
    pub fn scheme(&self) -> &'static str {
        match self.tls {
            true => Self::TLS_SCHEME,
            false => Self::SCHEME,
        }
    }
}

fn parse_store(rest: &str, tls: bool) -> Result<StoreLocation, LocationProblem> {
    let (authority, group) = rest.split_once('/').ok_or(LocationProblem::BadStore)?;
    let (host, port) = authority.rsplit_once(':').ok_or(LocationProblem::BadStore)?;
    let port: u16 = port.parse().map_err(|_| LocationProblem::BadStore)?;
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    let host_char = |c: char| name_char(c) || matches!(c, '[' | ']' | ':');
    if host.is_empty() || !host.chars().all(host_char) || group.is_empty() || !group.chars().all(name_char) {
        return Err(LocationProblem::BadStore);
    }
    Ok(StoreLocation {
        host: host.to_owned(),
        port,
        group: group.to_owned(),
        tls,
    })
}

/// An S3 target; settings left `None` take the agent's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`.
    pub prefix: String,
    /// Endpoint URL of an S3-compatible server.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`).
    pub path_style: Option<bool>,
    /// Storage class of uploaded objects.
    pub storage_class: Option<String>,
    /// S3 Object Lock retention for the objects the agent writes.
    pub object_lock: Option<ObjectLock>,
    /// Prefix of the variables holding this target's keys.
    pub credentials: Option<String>,
}

/// The S3 Object Lock retention mode of [`ObjectLock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with the `s3:BypassGovernanceRetention` permission may still delete or shorten.
    Governance,
    /// Nobody, not even the account's root user, may delete before the date.
    Compliance,
}

/// S3 Object Lock retention put on the objects a target stores: each object may not be
/// deleted or overwritten for `days` days after it was written. Written `MODE:DAYS` in a
/// location, e.g. `governance:30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    /// Governance or compliance.
    pub mode: LockMode,
    /// Days each object is retained after it is written (at least 1).
    pub days: u32,
}

impl fmt::Display for ObjectLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        };
        write!(f, "{mode}:{}", self.days)
    }
}

impl FromStr for ObjectLock {
    type Err = ObjectLockError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wrong = || ObjectLockError::NotModeDays(text.to_owned());
        let (mode, days) = text.split_once(':').ok_or_else(wrong)?;
        let mode = match mode {
            "governance" => LockMode::Governance,
            "compliance" => LockMode::Compliance,
            _ => return Err(wrong()),
        };
        let days: u32 = days.parse().map_err(|_| wrong())?;
        if days == 0 {
            return Err(ObjectLockError::NoDays(text.to_owned()));
        }
        Ok(Self { mode, days })
    }
}

/// Characters escaped inside values: they separate settings, targets or the query.
fn must_escape(c: char, in_prefix: bool) -> bool {
    c.is_control() || c == ' ' || matches!(c, '%' | '?' | '#' | ',' | '+') || (!in_prefix && matches!(c, '&' | '='))
}

fn escape(value: &str, in_prefix: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if must_escape(c, in_prefix) {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(value: &str) -> Result<String, LocationProblem> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| LocationProblem::BadEscape(value.to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| LocationProblem::NotUtf8(value.to_owned()))
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Path(path) => f.write_str(path),
            Location::Store(store) => write!(f, "{}{}:{}/{}", store.scheme(), store.host, store.port, store.group),
            Location::S3(s3) => {
                write!(f, "s3://{}/{}", s3.bucket, escape(&s3.prefix, true))?;
                let path_style = s3.path_style.map(|b| b.to_string());
                let object_lock = s3.object_lock.map(|l| l.to_string());
                let settings = [
                    ("endpoint", s3.endpoint.as_deref()),
                    ("region", s3.region.as_deref()),
                    ("path-style", path_style.as_deref()),
                    ("storage-class", s3.storage_class.as_deref()),
                    ("object-lock", object_lock.as_deref()),
                    ("credentials", s3.credentials.as_deref()),
                ];
                let mut separator = '?';
                for (key, value) in settings {
                    if let Some(value) = value {
                        write!(f, "{separator}{key}={}", escape(value, false))?;
                        separator = '&';
                    }
                }
                Ok(())
            }
        }
    }
}

fn parse_bool(value: &str) -> Result<bool, LocationProblem> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(LocationProblem::PathStyle(other.to_owned())),
    }
}

fn parse_s3(rest: &str) -> Result<S3Location, LocationProblem> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(LocationProblem::NoBucket);
    }
    let mut s3 = S3Location {
        bucket: unescape(bucket)?,
        prefix: unescape(prefix)?.trim_matches('/').to_owned(),
        ..S3Location::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = unescape(value)?;
        match key {
            "endpoint" => s3.endpoint = Some(value),
            "region" => s3.region = Some(value),
            "path-style" => s3.path_style = Some(parse_bool(&value)?),
            "storage-class" => s3.storage_class = Some(value),
            "object-lock" => s3.object_lock = Some(value.parse()?),
            "credentials" => s3.credentials = Some(value),
            other => return Err(LocationProblem::UnknownSetting(other.to_owned())),
        }
    }
    Ok(s3)
}

impl FromStr for Location {
    type Err = LocationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |problem| LocationError {
            location: text.to_owned(),
            problem,
        };
        if let Some(rest) = text.strip_prefix("s3://") {
            return parse_s3(rest).map(Location::S3).map_err(error);
        }
        for (scheme, tls) in [(StoreLocation::SCHEME, false), (StoreLocation::TLS_SCHEME, true)] {
            if let Some(rest) = text.strip_prefix(scheme) {
                return parse_store(rest, tls).map(Location::Store).map_err(error);
            }
        }
        let path = text.strip_prefix("file:").unwrap_or(text);
        if path.is_empty() || text.contains("://") {
            return Err(error(LocationProblem::NotALocation));
        }
        Ok(Location::Path(path.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_round_trip_with_every_setting() {
        let location = Location::S3(S3Location {
            bucket: "backups".into(),
            prefix: "k8s/prod".into(),
            endpoint: Some("https://s3.example.com:9000".into()),
            region: Some("eu-west-1".into()),
            path_style: Some(true),
            storage_class: Some("GLACIER_IR".into()),
            object_lock: Some(ObjectLock {
                mode: LockMode::Compliance,
                days: 365,
            }),
            credentials: Some("HORT_TARGET_1".into()),
        });
        let text = location.to_string();
        assert_eq!(
            text,
            "s3://backups/k8s/prod?endpoint=https://s3.example.com:9000&region=eu-west-1\
             &path-style=true&storage-class=GLACIER_IR&object-lock=compliance:365&credentials=HORT_TARGET_1"
        );
        assert_eq!(text.parse::<Location>().unwrap(), location);
    }

    #[test]
    fn hostile_values_cannot_add_settings_or_targets() {
        let location = Location::S3(S3Location {
            bucket: "b".into(),
            prefix: "a,b?c%".into(),
            region: Some("x&endpoint=http://evil".into()),
            storage_class: Some("STANDARD,/tmp/other".into()),
            ..S3Location::default()
        });
        let text = location.to_string();
        assert!(!text.contains(','), "{text}");
        assert_eq!(text.matches('&').count(), 1, "{text}");
        let back: Location = text.parse().unwrap();
        assert_eq!(back, location);
        let Location::S3(s3) = back else { unreachable!() };
        assert_eq!(s3.endpoint, None);
    }

    #[test]
    fn store_locations_round_trip_and_refuse_anything_but_host_port_group() {
        let text = "hort+http://hort-store.hort-system.svc:8443/shared";
        let location: Location = text.parse().unwrap();
        assert_eq!(
            location,
            Location::Store(StoreLocation {
                host: "hort-store.hort-system.svc".into(),
                port: 8443,
                group: "shared".into(),
                tls: false,
            })
        );
        assert_eq!(location.to_string(), text);
        let https = "hort+https://hort-store.hort-system.svc:8443/shared";
        let Ok(Location::Store(store)) = https.parse() else {
            panic!("{https}")
        };
        assert!(store.tls);
        assert_eq!(Location::Store(store).to_string(), https);
        for bad in [
            "hort+http://host/shared",
            "hort+http://host:99999/shared",
            "hort+http://host:80",
            "hort+http://host:80/",
            "hort+http://host:80/a/b",
            "hort+http://:80/g",
            "hort+http://host:80/g?x=1",
            "hort+https://host/g",
            "hort+ftp://host:80/g",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_and_errors() {
        assert_eq!("/data/repo".parse(), Ok(Location::Path("/data/repo".into())));
        assert_eq!("file:/data/repo".parse(), Ok(Location::Path("/data/repo".into())));
        for (bad, problem) in [
            ("http://x", "not a directory"),
            ("s3:///prefix", "no bucket"),
            ("s3://b?colour=red", "unknown setting `colour`"),
            ("s3://b?path-style=maybe", "path-style `maybe`"),
            ("s3://b?region=%zz", "two hex digits"),
            ("s3://b?object-lock=forever:30", "not MODE:DAYS"),
            ("s3://b?object-lock=governance:0", "at least 1 day"),
            ("s3://b?object-lock=governance", "not MODE:DAYS"),
        ] {
            let err = bad.parse::<Location>().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(problem), "{bad}: {err}");
        }
        let err = "s3://b?object-lock=governance:0".parse::<Location>().unwrap_err();
        assert_eq!(
            err.problem,
            LocationProblem::ObjectLock(ObjectLockError::NoDays("governance:0".into()))
        );
        assert_eq!(
            "s3://b/%C3%28".parse::<Location>().unwrap_err().problem,
            LocationProblem::NotUtf8("%C3%28".into())
        );
    }
}
