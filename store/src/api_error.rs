//! How the proxy's failures are answered: a status and a [`WireError`] body, which the
//! engine's HTTP backend turns back into the error kind the engine knows (not found,
//! retained, refused, retryable). Every failure is logged here, with the namespace, kind and
//! name where there is one, and never a token.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hort_engine::backend::BackendError;
use hort_engine::backend::http::wire::{MAX_FILE_BYTES, WireError};
use tracing::{error, warn};

use crate::admission::AdmissionError;
use crate::auth::{AuthError, AuthErrorKind};
use crate::check::{Refusal, RefusalKind};
use crate::places::PlaceError;

/// A request the proxy did not serve.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The token was not accepted.
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
    /// The group is not served here.
    #[error("namespace {namespace}: no storage group `{group}` is served here")]
    NoGroup {
        /// The asking namespace.
        namespace: String,
        /// The group asked for.
        group: String,
    },
    /// The namespace may not use the group.
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// The request names no file the namespace may reach, or the bytes may not be stored.
    #[error(transparent)]
    Refusal(#[from] Refusal),
    /// A read query that is neither whole, range nor tail.
    #[error("a read takes no query, offset and length, or tail")]
    BadQuery,
    /// A request body that is not what the request takes.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than [`MAX_FILE_BYTES`].
    #[error("the body exceeds {MAX_FILE_BYTES} bytes")]
    TooLarge,
    /// The body could not be received or spooled.
    #[error("receiving the body: {0}")]
    Body(String),
    /// The namespace's place could not be opened.
    #[error(transparent)]
    Place(#[from] PlaceError),
    /// The storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl ApiError {
    /// The status and body a client gets.
    fn answer(&self) -> (u16, WireError) {
        let refused = |status, message: String| (status, WireError::Refused { message });
        let unavailable = |message: &str| {
            (
                503,
                WireError::Unavailable {
                    message: message.into(),
                },
            )
        };
        match self {
            ApiError::Auth(e) if e.kind == AuthErrorKind::Unavailable => {
                unavailable("hort-store cannot check tokens now")
            }
            ApiError::Auth(e) => refused(401, format!("hort-store does not accept the token: {e}")),
            ApiError::NoGroup { .. } => refused(404, self.to_string()),
            ApiError::Admission(AdmissionError::NotAllowed { .. }) => refused(403, self.to_string()),
            ApiError::Admission(AdmissionError::Unavailable { .. }) => {
                unavailable("hort-store cannot check which namespaces may use the group now")
            }
            ApiError::Refusal(r) => {
                let status = match r.kind() {
                    RefusalKind::UnknownKind | RefusalKind::BadName => 400,
                    RefusalKind::ContentMismatch => 422,
                    RefusalKind::ConfigWrite | RefusalKind::ConfigDelete => 409,
                };
                refused(status, r.to_string())
            }
            ApiError::BadQuery | ApiError::BadRequest(_) => refused(400, self.to_string()),
            ApiError::TooLarge => refused(413, self.to_string()),
            ApiError::Body(_) => unavailable("hort-store could not receive the body"),
            ApiError::Place(_) => unavailable("hort-store cannot open the storage (its log says why)"),
            ApiError::Backend(e) => {
                let wire = WireError::from_backend(e);
                (wire.status(), wire)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, wire) = self.answer();
        match &wire {
            WireError::NotFound | WireError::Truncated { .. } => {}
            WireError::Unavailable { .. } => error!(error = %self, "request failed"),
            _ => warn!(error = %self, "request refused"),
        }
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(wire)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_can_tell_refusals_from_failures_worth_retrying() {
        let auth = ApiError::Auth(AuthError::refused("no"));
        assert_eq!(auth.answer().0, 401);
        let down = ApiError::Auth(AuthError {
            kind: AuthErrorKind::Unavailable,
            message: "api server down".into(),
        });
        assert!(matches!(down.answer(), (503, WireError::Unavailable { .. })));
        let storage = ApiError::Backend(BackendError::Remote {
            location: "s3://private-bucket/tenants/a/x".into(),
            message: "SlowDown".into(),
        });
        let (status, wire) = storage.answer();
        assert_eq!(status, 503);
        assert!(!wire.to_string().contains("private-bucket"));
        let not_allowed = ApiError::Admission(AdmissionError::NotAllowed {
            group: "shared".into(),
            namespace: "team-b".into(),
        });
        let (status, wire) = not_allowed.answer();
        assert_eq!(status, 403);
        assert!(
            wire.to_string()
                .contains("namespace `team-b` is not allowed to use storage group `shared`"),
            "{wire}"
        );
        let api_down = ApiError::Admission(AdmissionError::Unavailable {
            group: "shared".into(),
            namespace: "team-b".into(),
            message: "connection refused".into(),
        });
        assert_eq!(api_down.answer().0, 503);
        let missing = ApiError::Backend(BackendError::NotFound { location: "x".into() });
        assert_eq!(missing.answer(), (404, WireError::NotFound));
    }
}
