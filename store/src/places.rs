//! Each namespace's place in a storage group: the group's targets, each with the namespace's
//! prefix (`tenants/<namespace>/`) added to its directory or S3 prefix, opened as one engine
//! backend and kept for later requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hort_engine::backend::Backend;
use hort_engine::backend::group::Strategy;
use hort_engine::backend::throttle::Throttle;
use hort_engine::location::{self, GroupOptions, S3Defaults};
use hort_protocol::Location;
use hort_protocol::tenant::{self, Namespace};

/// Why a group's place for a namespace could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// A target's location cannot be parsed, or cannot be served (a `hort+http://` target).
    #[error("group target `{location}`: {problem}")]
    Location {
        /// The location.
        location: String,
        /// What is wrong.
        problem: String,
    },
    /// The engine could not open the targets.
    #[error(transparent)]
    Open(#[from] hort_engine::backend::BackendError),
}

/// A storage group's targets and the places of the namespaces served so far.
pub struct Places {
    targets: Vec<String>,
    s3: S3Defaults,
    throttle: Throttle,
    opened: Mutex<HashMap<Namespace, Arc<dyn Backend>>>,
}

impl Places {
    /// A group of `targets` (locations as the agent takes them; several form a mirror), with
    /// S3 settings `s3`. Fails if a target cannot be parsed or is itself a proxy.
    pub fn new(targets: Vec<String>, s3: S3Defaults) -> Result<Self, PlaceError> {
        if targets.is_empty() {
            return Err(PlaceError::Location {
                location: String::new(),
                problem: "a group needs at least one target".into(),
            });
        }
        let probe = Namespace::parse("check").expect("a namespace name");
        for target in &targets {
            within(target, &probe)?;
        }
        Ok(Self {
            targets,
            s3,
            throttle: Throttle::default(),
            opened: Mutex::default(),
        })
    }

    /// The backend holding `namespace`'s repository (opened on first use; S3 clients are
    /// built then, so call it where blocking is allowed).
    pub fn open(&self, namespace: &Namespace) -> Result<Arc<dyn Backend>, PlaceError> {
        if let Some(backend) = self.lock().get(namespace) {
            return Ok(backend.clone());
        }
        let specs = self
            .targets
            .iter()
            .map(|t| within(t, namespace))
            .collect::<Result<Vec<_>, _>>()?;
        let options = GroupOptions {
            strategy: Strategy::Mirror,
            weights: &[],
            min_healthy: 1,
        };
        let backend = location::open(&specs, options, &self.s3, &self.throttle)?;
        self.lock().insert(namespace.clone(), backend.clone());
        Ok(backend)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Namespace, Arc<dyn Backend>>> {
        self.opened.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `target`'s location for `namespace` ([`tenant::location`], the same as an agent's with
/// `HORT_TENANT`).
fn within(target: &str, namespace: &Namespace) -> Result<String, PlaceError> {
    let error = |problem: String| PlaceError::Location {
        location: target.to_owned(),
        problem,
    };
    let location = target.parse::<Location>().map_err(|e| error(e.to_string()))?;
    let inner = tenant::location(&location, namespace).map_err(|e| error(e.to_string()))?;
    Ok(inner.to_string())
}

#[cfg(test)]
mod tests {
    use hort_engine::backend::FileKind;

    use super::*;

    #[test]
    fn a_group_of_proxies_or_of_nothing_is_refused() {
        let proxy = Places::new(vec!["hort+http://h:1/g".into()], S3Defaults::default());
        assert!(proxy.err().unwrap().to_string().contains("hort+http://h:1/g"));
        assert!(Places::new(vec!["http://x".into()], S3Defaults::default()).is_err());
        assert!(Places::new(vec![], S3Defaults::default()).is_err());
    }

    #[test]
    fn a_namespace_writes_below_its_prefix_on_each_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = |n: &str| dir.path().join(n).display().to_string();
        let places = Places::new(vec![target("one"), target("two")], S3Defaults::default()).unwrap();
        let team = Namespace::parse("team-a").unwrap();
        places.open(&team).unwrap().write(FileKind::Index, "i", b"x").unwrap();
        for t in ["one", "two"] {
            assert!(dir.path().join(t).join("tenants/team-a/index/i").is_file(), "{t}");
        }
        let other = places.open(&Namespace::parse("team-b").unwrap()).unwrap();
        assert!(other.read(FileKind::Index, "i").unwrap_err().is_not_found());
    }
}
