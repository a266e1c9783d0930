//! The caller of a request: the principal its bearer token stands for (see
//! `airlock::control::access`). A refused token is audited by the control plane and answered 401,
//! whatever the reason.

use crate::App;
use crate::problem::Problem;
use airlock::control::Principal;
use airlock::control::access::AuthError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::net::SocketAddr;

/// An authenticated caller.
pub struct Caller(pub Principal);

impl FromRequestParts<App> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Problem> {
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token,
                // Not a bearer: checked (and refused) as the token it is not.
                _ => v,
            });
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        app.control
            .authenticate(bearer, &source)
            .await
            .map(Caller)
            .map_err(|e| match e {
                AuthError::TooManyFailures(wait) => {
                    let mut p = Problem::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too-many-failed-authentications",
                        e.to_string(),
                    );
                    p.rule = Some(e.rule().to_owned());
                    p.retry_after = Some(wait.as_secs_f64().ceil() as u64);
                    p
                }
                _ => Problem::unauthenticated(),
            })
    }
}
