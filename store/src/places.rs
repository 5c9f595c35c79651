//! Each namespace's place in a storage group: the group's targets, each with the namespace's
//! prefix (`tenants/<namespace>/`) added to its directory or S3 prefix, opened as one engine
//! backend with the group's strategy, exactly as an agent opens the targets it is given
//! ([`location::open`]), and kept for later requests.
//!
//! Bandwidth limits are per namespace: each namespace's transfers are held to the group's
//! limits on their own, as an agent of that namespace reaching the targets directly would be,
//! so one tenant's transfers never use up another's. A total limit, when set, holds the
//! transfers of all namespaces together on top of that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hort_engine::backend::Backend;
use hort_engine::backend::group::Strategy;
use hort_engine::backend::throttle::{Limits, Throttle};
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

/// How a group's targets form each namespace's repository: what an agent pod of the group
/// is given in its environment besides the locations.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// The strategy.
    pub strategy: Strategy,
    /// Per-target weights (`Spread`); empty: 1 each.
    pub weights: Vec<u32>,
    /// `Mirror`: how many targets must take each write.
    pub min_healthy: usize,
    /// Each namespace's bandwidth limits.
    pub limits: Limits,
    /// The bandwidth limits of all namespaces' transfers together.
    pub total: Limits,
    /// S3 settings of targets that do not set their own.
    pub s3: S3Defaults,
}

impl Default for GroupSettings {
    /// One or more targets as a mirror, no limits.
    fn default() -> Self {
        Self {
            strategy: Strategy::Mirror,
            weights: Vec::new(),
            min_healthy: 1,
            limits: Limits::default(),
            total: Limits::default(),
            s3: S3Defaults::default(),
        }
    }
}

/// A storage group's targets and the places of the namespaces served so far.
pub struct Places {
    targets: Vec<String>,
    settings: GroupSettings,
    /// Drawn from by every namespace's transfers ([`GroupSettings::total`]).
    total: Throttle,
    opened: Mutex<HashMap<Namespace, Arc<dyn Backend>>>,
}

impl Places {
    /// A group of `targets` (locations as the agent takes them) formed as `settings` say.
    /// Fails if a target cannot be parsed or is itself a proxy, or the weights do not match.
    pub fn new(targets: Vec<String>, settings: GroupSettings) -> Result<Self, PlaceError> {
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
        if !settings.weights.is_empty() && settings.weights.len() != targets.len() {
            return Err(PlaceError::Location {
                location: targets.join(","),
                problem: format!("{} weights for {} targets", settings.weights.len(), targets.len()),
            });
        }
        Ok(Self {
            targets,
            total: Throttle::new(settings.total),
            settings,
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
        let settings = &self.settings;
        let options = GroupOptions {
            strategy: settings.strategy,
            weights: &settings.weights,
            min_healthy: settings.min_healthy,
        };
        let throttle = Throttle::new(settings.limits);
        let backend = self
            .total
            .wrap(location::open(&specs, options, &settings.s3, &throttle)?);
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
        let proxy = Places::new(vec!["hort+http://h:1/g".into()], GroupSettings::default());
        assert!(proxy.err().unwrap().to_string().contains("hort+http://h:1/g"));
        assert!(Places::new(vec!["http://x".into()], GroupSettings::default()).is_err());
        assert!(Places::new(vec![], GroupSettings::default()).is_err());
        let weights = GroupSettings {
            weights: vec![1, 2, 3],
            ..GroupSettings::default()
        };
        let refused = Places::new(vec!["/a".into(), "/b".into()], weights).err().unwrap();
        assert!(refused.to_string().contains("3 weights for 2 targets"), "{refused}");
    }

    #[test]
    fn a_namespace_writes_below_its_prefix_on_each_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = |n: &str| dir.path().join(n).display().to_string();
        let places = Places::new(vec![target("one"), target("two")], GroupSettings::default()).unwrap();
        let team = Namespace::parse("team-a").unwrap();
        places.open(&team).unwrap().write(FileKind::Index, "i", b"x").unwrap();
        for t in ["one", "two"] {
            assert!(dir.path().join(t).join("tenants/team-a/index/i").is_file(), "{t}");
        }
        let other = places.open(&Namespace::parse("team-b").unwrap()).unwrap();
        assert!(other.read(FileKind::Index, "i").unwrap_err().is_not_found());
    }

    #[test]
    fn the_total_limit_holds_every_namespace_together() {
        let dir = tempfile::tempdir().unwrap();
        let rate = |bytes: u64| std::num::NonZeroU64::new(bytes);
        let settings = GroupSettings {
            limits: Limits {
                upload: rate(16 << 20),
                download: None,
            },
            total: Limits {
                upload: rate(1 << 20),
                download: rate(1 << 20),
            },
            ..GroupSettings::default()
        };
        let places = Places::new(vec![dir.path().display().to_string()], settings).unwrap();
        // Runs `work` on each namespace's backend at once; how long that took.
        let at_once = |work: &(dyn Fn(&dyn Backend) + Sync)| {
            let started = std::time::Instant::now();
            std::thread::scope(|s| {
                for team in ["team-a", "team-b"] {
                    let places = &places;
                    s.spawn(move || work(&*places.open(&Namespace::parse(team).unwrap()).unwrap()));
                }
            });
            started.elapsed()
        };
        let elapsed = at_once(&|backend| {
            for i in 0..4 {
                backend.write(FileKind::Index, &i.to_string(), &[7; 128 << 10]).unwrap();
            }
        });
        // 1 MiB in all, from buckets that start empty: at the total's 1 MiB/s at least a
        // second, where each namespace's own 16 MiB/s alone would allow it in 1/32 s.
        assert!(elapsed >= std::time::Duration::from_millis(950), "{elapsed:?}");
        assert_eq!(places.total.uploaded().bytes, 1 << 20);
        for team in ["team-a", "team-b"] {
            let written = std::fs::read_dir(dir.path().join("tenants").join(team).join("index"));
            assert_eq!(written.unwrap().count(), 4, "{team}");
        }
        // Reading it all twice: the download bucket was idle a second, so it holds one second's
        // worth (1 MiB) at most; a read pays after it arrived, so each thread's last read
        // (128 KiB) waits for nothing, and the other 0.75 MiB beyond the bucket take 0.75 s.
        let elapsed = at_once(&|backend| {
            for i in [0, 1, 2, 3, 0, 1, 2, 3] {
                assert_eq!(backend.read(FileKind::Index, &i.to_string()).unwrap().len(), 128 << 10);
            }
        });
        assert!(elapsed >= std::time::Duration::from_millis(700), "{elapsed:?}");
        assert_eq!(places.total.downloaded().bytes, 2 << 20);
    }
}
