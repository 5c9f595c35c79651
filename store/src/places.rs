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

use crate::check::Namespace;

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
        for target in &targets {
            within(target, "tenants/check")?;
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
        let prefix = namespace.prefix();
        let specs = self
            .targets
            .iter()
            .map(|t| within(t, &prefix))
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

/// `target` with `prefix` appended to its directory or S3 prefix.
fn within(target: &str, prefix: &str) -> Result<String, PlaceError> {
    let error = |problem: String| PlaceError::Location {
        location: target.to_owned(),
        problem,
    };
    let location = match target.parse::<Location>().map_err(|e| error(e.to_string()))? {
        Location::Path(path) => Location::Path(format!("{}/{prefix}", path.trim_end_matches('/'))),
        Location::S3(mut s3) => {
            s3.prefix = match s3.prefix.as_str() {
                "" => prefix.to_owned(),
                outer => format!("{outer}/{prefix}"),
            };
            Location::S3(s3)
        }
        Location::Store(_) => return Err(error("a proxy cannot serve another proxy's group".into())),
    };
    Ok(location.to_string())
}

#[cfg(test)]
mod tests {
    use hort_engine::backend::FileKind;

    use super::*;

    #[test]
    fn each_namespace_gets_the_prefix_of_its_own_on_every_target() {
        assert_eq!(within("/srv/hort/", "tenants/a").unwrap(), "/srv/hort/tenants/a");
        assert_eq!(
            within("s3://bucket/k8s?region=eu-west-1", "tenants/a").unwrap(),
            "s3://bucket/k8s/tenants/a?region=eu-west-1"
        );
        assert_eq!(within("s3://bucket", "tenants/a").unwrap(), "s3://bucket/tenants/a");
        assert!(within("hort+http://h:1/g", "tenants/a").is_err());
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
