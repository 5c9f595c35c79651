//! Who is asking: an [`Authenticator`] turns a request's bearer token into the namespace
//! whose repository it may reach. Tokens never appear in logs or `Debug` output; where one is
//! remembered, only its BLAKE3 hash is.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use crate::check::Namespace;

/// A bearer token; its `Debug` shows no part of it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// The token of an `Authorization: Bearer …` header value, if it is one.
    pub fn from_header(value: &str) -> Option<Self> {
        let token = value.strip_prefix("Bearer ")?.trim();
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.~+/=".contains(c);
        (!token.is_empty() && token.len() <= 16 * 1024 && token.chars().all(allowed)).then(|| Self(token.to_owned()))
    }

    /// The token's text, for the API server's review only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The BLAKE3 hash of the token: how it is remembered.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(self.0.as_bytes()).as_bytes()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorKind {
    /// No token, a token the API server does not accept, or one of another identity than a
    /// namespace's agent: trying again cannot help.
    Refused,
    /// The API server could not be asked: the request may be tried again.
    Unavailable,
}

/// A token that was not accepted, and why (never the token itself).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    /// Refused or unavailable.
    pub kind: AuthErrorKind,
    /// Why, for the client and the log.
    pub message: String,
}

impl AuthError {
    /// A refusal saying why.
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            kind: AuthErrorKind::Refused,
            message: message.into(),
        }
    }
}

/// Turns a bearer token into the namespace whose repository it may reach.
pub trait Authenticator: Send + Sync + 'static {
    /// The namespace `token` belongs to.
    fn namespace(&self, token: &Token) -> impl Future<Output = Result<Namespace, AuthError>> + Send;
}

/// A fixed set of tokens, each for one namespace (kept as hashes): for tests and for a proxy
/// run outside Kubernetes.
#[derive(Default)]
pub struct FixedTokens(HashMap<[u8; 32], Namespace>);

impl FixedTokens {
    /// Accepts `token` for `namespace` (besides the tokens accepted already).
    pub fn with(mut self, token: &str, namespace: Namespace) -> Self {
        self.0.insert(Token(token.to_owned()).hash(), namespace);
        self
    }
}

impl fmt::Debug for FixedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.values()).finish()
    }
}

impl Authenticator for FixedTokens {
    async fn namespace(&self, token: &Token) -> Result<Namespace, AuthError> {
        self.0
            .get(&token.hash())
            .cloned()
            .ok_or_else(|| AuthError::refused("the token is not accepted"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_bearer_headers_and_never_show() {
        let token = Token::from_header("Bearer eyJhbGci.secret-part").unwrap();
        assert_eq!(token.expose(), "eyJhbGci.secret-part");
        assert!(!format!("{token:?}").contains("secret"));
        for bad in ["eyJ", "Basic eyJ", "Bearer ", "Bearer a b", "Bearer a\nb"] {
            assert!(Token::from_header(bad).is_none(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn fixed_tokens_map_each_token_to_its_namespace_only() {
        let ns = |n| Namespace::parse(n).unwrap();
        let tokens = FixedTokens::default()
            .with("token-a", ns("team-a"))
            .with("token-b", ns("team-b"));
        let token = |t: &str| Token::from_header(&format!("Bearer {t}")).unwrap();
        assert_eq!(tokens.namespace(&token("token-a")).await.unwrap(), ns("team-a"));
        assert_eq!(tokens.namespace(&token("token-b")).await.unwrap(), ns("team-b"));
        let refused = tokens.namespace(&token("token-c")).await.unwrap_err();
        assert_eq!(refused.kind, AuthErrorKind::Refused);
        assert!(!format!("{tokens:?}").contains("token-a"));
    }
}
