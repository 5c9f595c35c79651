//! The real [`Authenticator`]: asks the API server who a token belongs to with a TokenReview
//! for the audience [`AUDIENCE`], and accepts only a namespace's agent ServiceAccount,
//! `system:serviceaccount:<namespace>:`[`AGENT_SERVICE_ACCOUNT`]. A positive answer is
//! remembered by the token's BLAKE3 hash for [`REMEMBER`], at most [`CAPACITY`] of them, so
//! a backup's thousands of requests cost the API server one review a minute; a deleted
//! ServiceAccount's token still works until its entry expires. Refusals are not remembered.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::auth::{AuthError, AuthErrorKind, Authenticator, Token};
use crate::check::Namespace;

/// The audience agent tokens are requested for; tokens for other audiences are refused.
pub const AUDIENCE: &str = hort_protocol::tenant::STORE_AUDIENCE;
/// The ServiceAccount agent pods run as, in each tenant namespace.
pub const AGENT_SERVICE_ACCOUNT: &str = "hort-agent";
/// How long an accepted token's namespace is remembered.
pub const REMEMBER: Duration = Duration::from_secs(60);
/// Tokens remembered at most; when full, expired entries go, and if none has expired, all go.
pub const CAPACITY: usize = 10_000;

/// The namespace of an agent ServiceAccount's user name, if it is one.
pub fn agent_namespace(username: &str) -> Option<Namespace> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, account) = rest.split_once(':')?;
    (account == AGENT_SERVICE_ACCOUNT).then(|| Namespace::parse(namespace))?
}

/// Namespaces of accepted tokens, by the tokens' hashes, each with when it was accepted.
struct Remembered {
    entries: HashMap<[u8; 32], (Instant, Namespace)>,
}

impl Remembered {
    fn get(&self, key: &[u8; 32], now: Instant) -> Option<Namespace> {
        let (at, namespace) = self.entries.get(key)?;
        (now.saturating_duration_since(*at) < REMEMBER).then(|| namespace.clone())
    }

    fn insert(&mut self, key: [u8; 32], namespace: Namespace, now: Instant) {
        if self.entries.len() >= CAPACITY && !self.entries.contains_key(&key) {
            self.entries
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < REMEMBER);
            if self.entries.len() >= CAPACITY {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (now, namespace));
    }
}

/// Checks tokens with the API server's TokenReview.
pub struct TokenReviews {
    client: Client,
    remembered: Mutex<Remembered>,
}

impl TokenReviews {
    /// Reviews through `client` (whose identity needs `create` on `tokenreviews`).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            remembered: Mutex::new(Remembered {
                entries: HashMap::new(),
            }),
        }
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn review(&self, token: &Token) -> Result<Namespace, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.expose().to_owned()),
                audiences: Some(vec![AUDIENCE.to_owned()]),
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError {
                kind: AuthErrorKind::Unavailable,
                message: format!("TokenReview failed: {e}"),
            })?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status.error.unwrap_or_else(|| "not authenticated".into());
            return Err(AuthError::refused(format!("the API server does not accept it: {why}")));
        }
        if !status.audiences.unwrap_or_default().iter().any(|a| a == AUDIENCE) {
            return Err(AuthError::refused(format!("it is not for the audience {AUDIENCE}")));
        }
        let user = status.user.and_then(|u| u.username).unwrap_or_default();
        agent_namespace(&user).ok_or_else(|| {
            AuthError::refused(format!(
                "it belongs to {user}, not to a namespace's ServiceAccount {AGENT_SERVICE_ACCOUNT}"
            ))
        })
    }
}

impl Authenticator for TokenReviews {
    async fn namespace(&self, token: &Token) -> Result<Namespace, AuthError> {
        let key = token.hash();
        if let Some(namespace) = self.remembered().get(&key, Instant::now()) {
            return Ok(namespace);
        }
        let namespace = self.review(token).await?;
        self.remembered().insert(key, namespace.clone(), Instant::now());
        Ok(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_namespaces_agent_service_account_is_accepted() {
        let ns = |n| Namespace::parse(n);
        assert_eq!(agent_namespace("system:serviceaccount:team-a:hort-agent"), ns("team-a"));
        for other in [
            "system:serviceaccount:team-a:default",
            "system:serviceaccount:team-a:hort-agent-2",
            "system:serviceaccount:team-a",
            "system:serviceaccount:Team:hort-agent",
            "system:serviceaccount:a/b:hort-agent",
            "hort-agent",
            "system:node:team-a:hort-agent",
        ] {
            assert_eq!(agent_namespace(other), None, "{other}");
        }
    }

    #[test]
    fn accepted_tokens_are_remembered_for_a_while_and_never_unbounded() {
        let start = Instant::now();
        let mut memory = Remembered {
            entries: HashMap::new(),
        };
        let team = Namespace::parse("team-a").unwrap();
        memory.insert([1; 32], team.clone(), start);
        assert_eq!(
            memory.get(&[1; 32], start + REMEMBER - Duration::from_secs(1)),
            Some(team.clone())
        );
        assert_eq!(memory.get(&[1; 32], start + REMEMBER), None);
        assert_eq!(memory.get(&[2; 32], start), None);
        for i in 0..CAPACITY + 10 {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            memory.insert(key, team.clone(), start);
        }
        assert!(memory.entries.len() <= CAPACITY, "{}", memory.entries.len());
    }
}
