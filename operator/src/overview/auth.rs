//! Who is asking, through Kubernetes: the request's bearer token (an `Authorization` header,
//! or the cookie the login form sets) is checked with a TokenReview, and what the user may
//! read with SubjectAccessReviews (their answers remembered for a while by [`super::reviews`]).
//! Tokens are never logged, and never shown by `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use kube::{Client, Config};
use secrecy::SecretString;

use super::error::Error;
use super::reviews::Reviews;

/// Name of the cookie the login form sets.
pub const COOKIE_NAME: &str = "hort_token";

/// How many SubjectAccessReviews one request sends at the same time.
const CONCURRENT_REVIEWS: usize = 8;

/// A bearer token; its `Debug` shows no part of it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// A token from what a user typed or sent, if it looks like one (base64url, dots, no
    /// spaces, at most 16 KiB). Anything else is refused before it reaches the API server or a
    /// cookie header.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.~+/=".contains(c);
        (!text.is_empty() && text.len() <= 16 * 1024 && text.chars().all(allowed)).then(|| Token(text.into()))
    }

    /// The token's text, for the API request and the cookie only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// The request's token: the `Authorization: Bearer` header, else the login cookie.
pub fn token_of(headers: &HeaderMap) -> Option<Token> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return Token::parse(token);
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
        .and_then(Token::parse)
}

/// The `Set-Cookie` value that keeps `token` for the browser: HttpOnly (no script reads it),
/// SameSite=Strict (no other site sends it), for this site's paths, until the browser closes.
pub fn login_cookie(token: &Token) -> String {
    format!("{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/", token.expose())
}

/// The `Set-Cookie` value that removes the login cookie.
pub fn logout_cookie() -> String {
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// A user the API server authenticated.
#[derive(Clone, Debug)]
pub struct User {
    /// The user name, e.g. `system:serviceaccount:team-a:viewer`.
    pub name: String,
    /// The user's uid.
    pub uid: Option<String>,
    /// The user's groups.
    pub groups: Vec<String>,
    /// Extra attributes the authenticator added.
    pub extra: BTreeMap<String, Vec<String>>,
    /// The token, for requests made with the user's own rights (a job's Events).
    pub token: Token,
}

/// Asks the API server who `token` belongs to (a TokenReview).
pub async fn authenticate(client: &Client, token: Token) -> Result<User, Error> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.expose().to_string()),
            audiences: None,
        },
        ..Default::default()
    };
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    let status = reviewed.status.unwrap_or_default();
    match (status.authenticated, status.user) {
        (Some(true), Some(info)) => Ok(User {
            name: info.username.unwrap_or_default(),
            uid: info.uid,
            groups: info.groups.unwrap_or_default(),
            extra: info.extra.unwrap_or_default(),
            token,
        }),
        _ => Err(Error::BadToken(
            status.error.map(|e| format!(" ({e})")).unwrap_or_default(),
        )),
    }
}

/// One permission in one namespace: `verb` on `resource` of group `group`.
#[derive(Clone, Copy, Debug)]
pub struct Permission {
    /// E.g. `list`.
    pub verb: &'static str,
    /// API group, e.g. `hort.dev`.
    pub group: &'static str,
    /// Resource (plural), e.g. `backupjobs`.
    pub resource: &'static str,
}

/// Whether `user` has `permission` in `namespace` (a SubjectAccessReview).
pub async fn allowed(client: &Client, user: &User, permission: Permission, namespace: &str) -> Result<bool, Error> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: Some(user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.into()),
                verb: Some(permission.verb.into()),
                group: Some(permission.group.into()),
                resource: Some(permission.resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviewed = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(reviewed.status.is_some_and(|s| s.allowed))
}

/// The namespaces of `candidates` in which `user` has `permission`, in their order.
pub async fn allowed_namespaces(
    client: &Client,
    reviews: &Reviews,
    user: &User,
    permission: Permission,
    candidates: Vec<String>,
) -> Result<Vec<String>, Error> {
    let decisions: Vec<Result<(String, bool), Error>> = futures::stream::iter(candidates)
        .map(|ns| async move {
            let ok = reviews.allowed(client, user, permission, &ns).await?;
            Ok((ns, ok))
        })
        .buffered(CONCURRENT_REVIEWS)
        .collect()
        .await;
    let mut namespaces = Vec::new();
    for decision in decisions {
        let (ns, ok) = decision?;
        if ok {
            namespaces.push(ns);
        }
    }
    Ok(namespaces)
}

/// A client that acts with `user`'s own token against the API server of `base` (the
/// operator's own credentials removed).
pub fn user_client(base: &Config, user: &User) -> Result<Client, Error> {
    let mut config = base.clone();
    config.auth_info = kube::config::AuthInfo {
        token: Some(SecretString::from(user.token.expose().to_string())),
        ..Default::default()
    };
    Ok(Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_header_wins_over_the_cookie_and_debug_hides_the_token() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=b; hort_token=from-cookie"));
        assert_eq!(token_of(&headers).unwrap().expose(), "from-cookie");
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer from.header"));
        let token = token_of(&headers).unwrap();
        assert_eq!(token.expose(), "from.header");
        assert_eq!(format!("{token:?}"), "Token(redacted)");
    }

    #[test]
    fn text_that_is_no_token_is_refused() {
        assert!(Token::parse("").is_none());
        assert!(Token::parse("a b").is_none());
        assert!(Token::parse("x;Path=/").is_none());
        assert!(Token::parse("x\r\nSet-Cookie: y").is_none());
        assert!(Token::parse(" eyJhbGc.eyJzdWIi.c2ln ").is_some());
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let cookie = login_cookie(&Token::parse("abc").unwrap());
        assert_eq!(cookie, "hort_token=abc; HttpOnly; SameSite=Strict; Path=/");
        assert!(logout_cookie().contains("Max-Age=0"));
    }
}
