//! The endpoints. Each handler is the same three steps: the caller from its token, one
//! control-plane call with the caller's principal, the answer as JSON (or a problem document).

use crate::auth::Caller;
use crate::problem::Problem;
use crate::{App, MAX_BODY_BYTES};
use airlock::control::access::TokenSpec;
use airlock::control::{ControlError, PrincipalKind};
use airlock::invocation::Role;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

type Answer = Result<Response, Problem>;

pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/connections", get(connections_list))
        .route("/v1/connections/{name}", get(connection_show))
        .route(
            "/v1/connections/{name}/operations/{operation}",
            post(invoke),
        )
        .route("/v1/approvals", get(approvals_list))
        .route("/v1/approvals/{id}", get(approval_show))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
        .route("/v1/tokens", get(tokens_list).post(token_create))
        .route("/v1/tokens/{id}", axum::routing::delete(token_revoke))
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "no-such-endpoint",
                "no such endpoint; the API lives under /v1",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// A request body, read within [`MAX_BODY_BYTES`]; a longer one is a 413 problem.
pub struct Body(pub Bytes);

impl FromRequest<App> for Body {
    type Rejection = Problem;

    async fn from_request(request: Request, app: &App) -> Result<Self, Problem> {
        Bytes::from_request(request, app)
            .await
            .map(Body)
            .map_err(|e| {
                let status = e.status();
                let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    format!("the request body is over the limit of {MAX_BODY_BYTES} bytes")
                } else {
                    e.body_text()
                };
                Problem::new(status, "bad-body", detail)
            })
    }
}

impl Body {
    /// The body as a JSON object (an empty body is `{}`), or a 422 problem naming what is wrong.
    fn object(&self) -> Result<serde_json::Map<String, Value>, Problem> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice::<Value>(&self.0) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(invalid("the body must be a JSON object")),
            Err(e) => Err(invalid(format!("the body is not valid JSON ({e})"))),
        }
    }
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input", detail)
}

fn ok(value: impl serde::Serialize) -> Answer {
    Ok(Json(value).into_response())
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready when the audit store takes writes: without it nothing may run (fail closed).
async fn readyz(State(app): State<App>) -> Response {
    if app.control.audit_available() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the audit store does not take writes, so nothing runs; see the server's log",
        )
        .into_response()
    }
}

async fn connections_list(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.connection_list(&who).await?)
}

async fn connection_show(
    State(app): State<App>,
    Caller(who): Caller,
    Path(name): Path<String>,
) -> Answer {
    ok(app.control.connection_show(&who, &name).await?)
}

#[derive(serde::Deserialize)]
struct InvokeQuery {
    /// Why, for the approver when the operation's risk needs one.
    rationale: Option<String>,
}

/// Runs an operation with the body as its params. A call that must wait for an approver is
/// answered 202 with the request to follow.
async fn invoke(
    State(app): State<App>,
    Caller(who): Caller,
    Path((name, operation)): Path<(String, String)>,
    Query(query): Query<InvokeQuery>,
    body: Body,
) -> Answer {
    let params = if body.0.iter().all(u8::is_ascii_whitespace) {
        "{}".to_owned()
    } else {
        String::from_utf8(body.0.to_vec()).map_err(|_| invalid("the body is not UTF-8"))?
    };
    match app
        .control
        .invoke_with(&who, &name, &operation, &params, query.rationale.as_deref())
        .await
    {
        Ok(outcome) => ok(json!({
            "result": serde_json::from_str::<Value>(&outcome.output).unwrap_or(Value::Null),
            "invocation_id": outcome.invocation_id,
            "duration_ms": outcome.duration.as_secs_f64() * 1000.0,
            "classification": outcome.classification,
            "masked": outcome.masked,
            "cached": outcome.cached,
            "warnings": outcome.denials,
        })),
        Err(ControlError::Pending(ticket)) => {
            let location = format!("/v1/approvals/{}", ticket.request_id);
            let mut response = (
                StatusCode::ACCEPTED,
                Json(json!({
                    "status": "pending-approval",
                    "detail": ticket.to_string(),
                    "request": ticket,
                    "follow": location,
                })),
            )
                .into_response();
            if let Ok(value) = location.parse() {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct ApprovalsQuery {
    /// Decided and finished requests too.
    #[serde(default)]
    all: bool,
}

async fn approvals_list(
    State(app): State<App>,
    Caller(who): Caller,
    Query(query): Query<ApprovalsQuery>,
) -> Answer {
    ok(app.control.approvals_list(&who, query.all).await?)
}

async fn approval_show(
    State(app): State<App>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Answer {
    ok(app.control.approval_show(&who, &id).await?)
}

fn reason_of(body: &Body) -> Result<Option<String>, Problem> {
    match body.object()?.remove("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(reason)) => Ok(Some(reason)),
        Some(_) => Err(invalid("reason: a string")),
    }
}

async fn approve(
    State(app): State<App>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let reason = reason_of(&body)?;
    ok(app
        .control
        .approval_decide(&who, &id, true, reason.as_deref())
        .await?)
}

async fn deny(
    State(app): State<App>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let reason = reason_of(&body)?;
    ok(app
        .control
        .approval_decide(&who, &id, false, reason.as_deref())
        .await?)
}

async fn tokens_list(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.token_list(&who).await?)
}

/// Makes a token: `{"for_user": "olivia"}` or `{"for_agent": "bot"}`, with `role`, `label` and
/// `expires_in` (`30d`). The token is in this answer only.
async fn token_create(State(app): State<App>, Caller(who): Caller, body: Body) -> Answer {
    let mut fields = body.object()?;
    let text = |fields: &mut serde_json::Map<String, Value>, name: &str| match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{name}: a string"))),
    };
    let (kind, subject) = match (
        text(&mut fields, "for_user")?,
        text(&mut fields, "for_agent")?,
    ) {
        (Some(user), None) => (PrincipalKind::User, user),
        (None, Some(agent)) => (PrincipalKind::Agent, agent),
        _ => return Err(invalid("give exactly one of for_user and for_agent")),
    };
    let role: Role = match text(&mut fields, "role")? {
        None => Role::Viewer,
        Some(r) => r
            .parse()
            .map_err(|e: String| invalid(format!("role: {e}")))?,
    };
    let label = text(&mut fields, "label")?;
    let expires_in = match text(&mut fields, "expires_in")? {
        None => None,
        Some(d) => Some(
            humantime::parse_duration(&d)
                .map_err(|e| invalid(format!("expires_in: {e} (such as `30d` or `12h`)")))?,
        ),
    };
    if let Some(unknown) = fields.keys().next() {
        return Err(invalid(format!(
            "unknown field `{unknown}`: expected for_user or for_agent, role, label, expires_in"
        )));
    }
    let issued = app
        .control
        .token_create(
            &who,
            TokenSpec {
                kind,
                subject,
                role,
                label,
                expires_in,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": &*issued.token, "record": issued.record})),
    )
        .into_response())
}

async fn token_revoke(
    State(app): State<App>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Answer {
    app.control.token_revoke(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
