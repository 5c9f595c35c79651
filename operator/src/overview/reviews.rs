//! The page's memory of the API server's answers: who a token belongs to (a TokenReview) for
//! [`TOKEN_TTL`], and what a user may do in a namespace (a SubjectAccessReview) for
//! [`DECISION_TTL`]. Without it every page view sends one TokenReview and one
//! SubjectAccessReview per namespace; with it a user clicking through the page costs the API
//! server one round of reviews per half minute. The price is that a revoked token or a removed
//! RoleBinding still shows pages until its entry expires (at most a minute); everything the page
//! does with the user's own token (Events, logs, the snapshot browser's pod) is checked by the
//! API server itself each time.
//!
//! Tokens are kept only as their BLAKE3 hash. Failed reviews are not remembered.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use prometheus::{IntCounterVec, Opts};

use super::auth::{self, Permission, Token, User};
use super::error::Error;

/// How long an authenticated token's user is remembered.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// How long an access decision (allowed or denied) is remembered.
pub const DECISION_TTL: Duration = Duration::from_secs(30);
/// Entries each memory holds at most; when full, expired entries go, and if none has expired,
/// all go (a burst of distinct users costs reviews, never unbounded memory).
const CAPACITY: usize = 10_000;

/// Values that expire `ttl` after they were stored, at most [`CAPACITY`] of them.
#[derive(Debug)]
pub struct Expiring<K, V> {
    ttl: Duration,
    entries: HashMap<K, (Instant, V)>,
}

impl<K: Hash + Eq, V: Clone> Expiring<K, V> {
    /// An empty memory whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: HashMap::new(),
        }
    }

    /// The value stored for `key`, if it was stored less than the ttl before `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let (stored, value) = self.entries.get(key)?;
        (now.saturating_duration_since(*stored) < self.ttl).then(|| value.clone())
    }

    /// Stores `value` for `key` at `now`.
    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        if self.entries.len() >= CAPACITY && !self.entries.contains_key(&key) {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (stored, _)| now.saturating_duration_since(*stored) < ttl);
            if self.entries.len() >= CAPACITY {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (now, value));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Who a token belongs to, without the token.
#[derive(Clone, Debug)]
struct Identity {
    name: String,
    uid: Option<String>,
    groups: Vec<String>,
    extra: BTreeMap<String, Vec<String>>,
}

/// One question of a SubjectAccessReview: this user, this permission, this namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Question {
    user: String,
    uid: Option<String>,
    groups: Vec<String>,
    extra: BTreeMap<String, Vec<String>>,
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    namespace: String,
}

/// The page's remembered reviews, shared by all requests, and how often each was used.
#[derive(Debug)]
pub struct Reviews {
    tokens: Mutex<Expiring<[u8; 32], Identity>>,
    decisions: Mutex<Expiring<Question, bool>>,
    /// `hort_overview_reviews_total{review, answer}`.
    counter: IntCounterVec,
}

impl Default for Reviews {
    fn default() -> Self {
        Self {
            tokens: Mutex::new(Expiring::new(TOKEN_TTL)),
            decisions: Mutex::new(Expiring::new(DECISION_TTL)),
            counter: IntCounterVec::new(
                Opts::new(
                    "hort_overview_reviews_total",
                    "The overview page's TokenReviews and SubjectAccessReviews by whether the API server was asked or a remembered answer served.",
                ),
                &["review", "answer"],
            )
            .expect("a valid metric"),
        }
    }
}

impl Reviews {
    /// The counter, for registering it with the operator's metrics.
    pub fn counter(&self) -> IntCounterVec {
        self.counter.clone()
    }

    fn count(&self, review: &str, remembered: bool) {
        let answer = if remembered { "remembered" } else { "asked" };
        self.counter.with_label_values(&[review, answer]).inc();
    }

    /// The user `token` belongs to: remembered, or asked of the API server by a TokenReview.
    pub async fn authenticate(&self, client: &Client, token: Token) -> Result<User, Error> {
        let key = *blake3::hash(token.expose().as_bytes()).as_bytes();
        let known = lock(&self.tokens).get(&key, Instant::now());
        if let Some(who) = known {
            self.count("token", true);
            return Ok(User {
                name: who.name,
                uid: who.uid,
                groups: who.groups,
                extra: who.extra,
                token,
            });
        }
        self.count("token", false);
        let user = auth::authenticate(client, token).await?;
        let who = Identity {
            name: user.name.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
        };
        lock(&self.tokens).insert(key, who, Instant::now());
        Ok(user)
    }

    /// Whether `user` has `permission` in `namespace`: remembered, or asked of the API server
    /// by a SubjectAccessReview.
    pub async fn allowed(
        &self,
        client: &Client,
        user: &User,
        permission: Permission,
        namespace: &str,
    ) -> Result<bool, Error> {
        let question = Question {
            user: user.name.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
            verb: permission.verb,
            group: permission.group,
            resource: permission.resource,
            namespace: namespace.into(),
        };
        let known = lock(&self.decisions).get(&question, Instant::now());
        if let Some(allowed) = known {
            self.count("access", true);
            return Ok(allowed);
        }
        self.count("access", false);
        let allowed = auth::allowed(client, user, permission, namespace).await?;
        lock(&self.decisions).insert(question, allowed, Instant::now());
        Ok(allowed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_served_until_its_ttl_has_passed() {
        let start = Instant::now();
        let mut memory = Expiring::new(Duration::from_secs(30));
        memory.insert("viewer/list/shop", true, start);
        assert_eq!(
            memory.get(&"viewer/list/shop", start + Duration::from_secs(29)),
            Some(true)
        );
        assert_eq!(memory.get(&"viewer/list/shop", start + Duration::from_secs(30)), None);
        assert_eq!(memory.get(&"viewer/list/other", start), None, "never asked");
        memory.insert("viewer/list/shop", false, start + Duration::from_secs(31));
        assert_eq!(
            memory.get(&"viewer/list/shop", start + Duration::from_secs(32)),
            Some(false),
            "a new answer replaces the old"
        );
    }

    #[test]
    fn a_full_memory_drops_expired_entries_first_and_everything_if_none_expired() {
        let start = Instant::now();
        let mut memory = Expiring::new(Duration::from_secs(30));
        for i in 0..CAPACITY - 1 {
            memory.insert(i, i, start);
        }
        memory.insert(CAPACITY - 1, 0, start + Duration::from_secs(20));
        assert_eq!(memory.len(), CAPACITY);
        // At 40 s all but the last are expired: they go, the last stays.
        memory.insert(CAPACITY, 1, start + Duration::from_secs(40));
        assert_eq!(memory.len(), 2);
        assert_eq!(memory.get(&(CAPACITY - 1), start + Duration::from_secs(40)), Some(0));
        for i in 0..CAPACITY {
            memory.insert(CAPACITY + 1 + i, i, start + Duration::from_secs(41));
        }
        assert!(memory.len() <= CAPACITY, "bounded: {}", memory.len());
        assert!(memory.len() > 0);
    }

    #[test]
    fn questions_differ_by_every_part() {
        let base = Question {
            user: "u".into(),
            uid: None,
            groups: vec!["g".into()],
            extra: BTreeMap::new(),
            verb: "list",
            group: "hort.dev",
            resource: "backupjobs",
            namespace: "shop".into(),
        };
        let mut memory = Expiring::new(DECISION_TTL);
        let now = Instant::now();
        memory.insert(base.clone(), true, now);
        let other_namespace = Question {
            namespace: "bank".into(),
            ..base.clone()
        };
        let other_groups = Question {
            groups: vec![],
            ..base.clone()
        };
        let other_verb = Question {
            verb: "get",
            ..base.clone()
        };
        assert_eq!(memory.get(&base, now), Some(true));
        for other in [other_namespace, other_groups, other_verb] {
            assert_eq!(memory.get(&other, now), None, "{other:?}");
        }
    }
}
