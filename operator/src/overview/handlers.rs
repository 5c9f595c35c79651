//! The routes of the overview page: each authenticates the request, reads what it shows and
//! renders it. Errors become pages that name the fix, with the matching status code.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::jiff::Timestamp;

use super::Overview;
use super::auth::{self, Token, User};
use super::error::Error;
use super::model::{JobFilter, JobState};
use super::render;

/// `GET /`: the jobs, filtered by the query parameters `namespace`, `state`, `schedule`.
pub async fn jobs(
    State(o): State<Overview>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    answer(&o, "jobs", async {
        let user = user(&o, &headers).await?;
        let filter = filter(&query)?;
        let page = o.source.jobs(&user, &filter).await?;
        Ok(render::jobs(
            Timestamp::now(),
            &user.name,
            &filter,
            &page.namespaces,
            &page.schedules,
            &page.rows,
        ))
    })
    .await
}

/// `GET /jobs/{namespace}/{name}`: one job in detail.
pub async fn job(
    State(o): State<Overview>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    answer(&o, "job", async {
        let user = user(&o, &headers).await?;
        let detail = o.source.job(&user, &namespace, &name).await?;
        Ok(render::job_detail(Timestamp::now(), &user.name, &detail))
    })
    .await
}

/// `GET /schedules`.
pub async fn schedules(State(o): State<Overview>, headers: HeaderMap) -> Response {
    answer(&o, "schedules", async {
        let user = user(&o, &headers).await?;
        let rows = o.source.schedules(&user).await?;
        Ok(render::schedules(Timestamp::now(), &user.name, &rows))
    })
    .await
}

/// `GET /groups`.
pub async fn groups(State(o): State<Overview>, headers: HeaderMap) -> Response {
    answer(&o, "groups", async {
        let user = user(&o, &headers).await?;
        let rows = o.source.groups(&user).await?;
        Ok(render::groups(Timestamp::now(), &user.name, &rows))
    })
    .await
}

/// `GET /groups/{namespace}/{group}/snapshots`: the group's snapshots, read by an agent pod
/// started with the user's token.
pub async fn snapshots(
    State(o): State<Overview>,
    headers: HeaderMap,
    Path((namespace, group)): Path<(String, String)>,
) -> Response {
    answer(&o, "snapshots", async {
        let user = user(&o, &headers).await?;
        let list = o.source.snapshots(&user, &namespace, &group).await?;
        Ok(render::snapshot_list(
            Timestamp::now(),
            &user.name,
            &namespace,
            &group,
            &list,
        ))
    })
    .await
}

/// `GET /groups/{namespace}/{group}/snapshots/{snapshot}?path=DIR`: what directory `DIR` of
/// the snapshot holds (the root without `path`), or a database backup's tables.
pub async fn snapshot(
    State(o): State<Overview>,
    headers: HeaderMap,
    Path((namespace, group, snapshot)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    answer(&o, "snapshot", async {
        let user = user(&o, &headers).await?;
        let path = query.get("path").map(|p| p.trim_matches('/')).filter(|p| !p.is_empty());
        let listing = o.source.listing(&user, &namespace, &group, &snapshot, path).await?;
        Ok(render::snapshot_listing(
            &user.name,
            &namespace,
            &group,
            path.unwrap_or_default(),
            &listing,
        ))
    })
    .await
}

/// `GET /login`: the form.
pub async fn login_form(State(o): State<Overview>) -> Response {
    o.count("login", 200);
    html(StatusCode::OK, render::login(None))
}

/// The login form's field (empty when missing: refused as no token, with the form again).
#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /login`: checks the token with a TokenReview, then keeps it in the cookie and goes
/// to the jobs. A form sent from another site is refused.
pub async fn login(State(o): State<Overview>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let checked = async {
        same_site(&headers)?;
        let token = Token::parse(&form.token).ok_or(Error::BadToken(" (it is not a token)".into()))?;
        o.source.reviews.authenticate(&o.source.client, token).await
    };
    match checked.await {
        Ok(user) => {
            tracing::info!(user = %user.name, "overview login");
            o.count("login", 303);
            let mut response = (StatusCode::SEE_OTHER, [(LOCATION, "/")]).into_response();
            if let Ok(cookie) = HeaderValue::from_str(&auth::login_cookie(&user.token)) {
                response.headers_mut().insert(SET_COOKIE, cookie);
            }
            response
        }
        Err(e) => failure(&o, "login", e),
    }
}

/// `POST /logout`: removes the cookie.
pub async fn logout(State(o): State<Overview>) -> Response {
    o.count("logout", 303);
    let mut response = (StatusCode::SEE_OTHER, [(LOCATION, "/login")]).into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&auth::logout_cookie()).expect("a valid header"),
    );
    response
}

/// The authenticated user of the request.
async fn user(o: &Overview, headers: &HeaderMap) -> Result<User, Error> {
    let token = auth::token_of(headers).ok_or(Error::NoToken)?;
    o.source.reviews.authenticate(&o.source.client, token).await
}

/// The filter of the query parameters; empty values mean "all".
fn filter(query: &HashMap<String, String>) -> Result<JobFilter, Error> {
    let value = |name: &str| query.get(name).filter(|v| !v.is_empty()).cloned();
    let state = match value("state") {
        None => None,
        Some(s) => Some(JobState::from_key(&s).ok_or_else(|| Error::BadParameter {
            name: "state",
            value: s,
            allowed: JobState::ALL.map(JobState::key).join(", "),
        })?),
    };
    Ok(JobFilter {
        namespace: value("namespace"),
        state,
        schedule: value("schedule"),
    })
}

/// Refuses a form whose `Origin` names another host than the request's `Host`.
fn same_site(headers: &HeaderMap) -> Result<(), Error> {
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if origin_host == host {
                Ok(())
            } else {
                Err(Error::CrossSite(origin.into()))
            }
        }
        _ => Ok(()),
    }
}

/// Answers a view: its HTML, or the page of its error.
async fn answer(o: &Overview, view: &'static str, body: impl Future<Output = Result<String, Error>>) -> Response {
    match body.await {
        Ok(page) => {
            o.count(view, 200);
            html(StatusCode::OK, page)
        }
        Err(e) => failure(o, view, e),
    }
}

/// The page of error `e`: the login form for a missing or refused token (and nothing else),
/// otherwise the error's sentence.
fn failure(o: &Overview, view: &'static str, e: Error) -> Response {
    let status = e.status();
    o.count(view, status.as_u16());
    match &e {
        Error::Kube(_) => tracing::warn!(view, kind = e.kind(), error = %e, "overview request failed"),
        _ => tracing::debug!(view, kind = e.kind(), "overview request refused"),
    }
    let body = match e {
        Error::NoToken => render::login(None),
        Error::BadToken(_) => render::login(Some(&e.to_string())),
        _ => render::problem("Cannot show this", None, &e.to_string()),
    };
    let mut response = html(status, body);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static(r#"Bearer realm="hort-overview""#),
        );
    }
    response
}

/// An HTML response that is never cached, loads nothing from elsewhere and runs no script.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            (
                CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // `same-origin`, not `no-referrer`: with the latter a browser sends `Origin: null` with
            // the login form, which [`same_site`] would refuse.
            (axum::http::header::REFERRER_POLICY, "same-origin"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_parameter_names_its_choices() {
        let query = HashMap::from([
            ("state".to_string(), "done".to_string()),
            ("namespace".into(), "".into()),
        ]);
        let e = filter(&query).unwrap_err();
        assert_eq!(
            e.to_string(),
            "query parameter state=done is not valid: use one of running, succeeded, failed, pending"
        );
        let query = HashMap::from([
            ("state".to_string(), "failed".to_string()),
            ("namespace".into(), "".into()),
        ]);
        let f = filter(&query).unwrap();
        assert_eq!(f.state, Some(JobState::Failed));
        assert_eq!(f.namespace, None);
    }

    #[test]
    fn a_form_from_another_site_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8090"));
        assert!(same_site(&headers).is_ok());
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8090"));
        assert!(same_site(&headers).is_ok());
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(matches!(same_site(&headers), Err(Error::CrossSite(_))));
    }
}
