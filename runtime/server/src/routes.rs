//! The endpoints. Each handler is the same three steps: the caller from its token, one
//! control-plane call with the caller's principal, the answer as JSON (or a problem document).

use crate::auth::Caller;
use crate::problem::Problem;
use crate::{App, MAX_BODY_BYTES};
use airlock::control::access::TokenSpec;
use airlock::control::{ControlError, Principal, PrincipalKind};
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
        .route("/metrics", get(crate::metrics::metrics))
        .route(
            "/v1/connections",
            get(connections_list).post(connection_create),
        )
        .route(
            "/v1/connections/{name}",
            get(connection_show).patch(connection_update),
        )
        .route(
            "/v1/connections/{name}/enable",
            post(|State(app), Caller(who), Path(name)| connection_set(app, who, name, true)),
        )
        .route(
            "/v1/connections/{name}/disable",
            post(|State(app), Caller(who), Path(name)| connection_set(app, who, name, false)),
        )
        .route("/v1/connections/{name}/test", post(connection_test))
        .route(
            "/v1/connections/{name}/grants/{agent}/{operation}",
            axum::routing::put(grant).delete(revoke_grant),
        )
        .route("/v1/connections/{name}/credentials", get(credentials_list))
        .route(
            "/v1/connections/{name}/credentials/{credential}",
            axum::routing::put(credential_set).delete(credential_delete),
        )
        .route(
            "/v1/connections/{name}/credentials/{credential}/rotate",
            post(credential_rotate),
        )
        .route(
            "/v1/connections/{name}/operations/{operation}",
            post(invoke),
        )
        .route("/v1/approvals", get(approvals_list))
        .route("/v1/approvals/{id}", get(approval_show))
        .route(
            "/v1/approvals/{id}/approve",
            post(|State(app), Caller(who), Path(id), body| decide(app, who, id, body, true)),
        )
        .route(
            "/v1/approvals/{id}/deny",
            post(|State(app), Caller(who), Path(id), body| decide(app, who, id, body, false)),
        )
        .route("/v1/approvals/{id}/wait", get(approval_wait))
        .route("/v1/tokens", get(tokens_list).post(token_create))
        .route("/v1/tokens/{id}", axum::routing::delete(token_revoke))
        .route(
            "/v1/connectors",
            get(connectors_list)
                .post(connector_register)
                .layer(DefaultBodyLimit::max(crate::MAX_COMPONENT_BYTES)),
        )
        .route("/v1/connectors/{id}", get(connector_show))
        .route(
            "/v1/connectors/{id}/enable",
            post(|State(app), Caller(who), Path(id), Query(q)| {
                connector_set(app, who, id, q, true)
            }),
        )
        .route(
            "/v1/connectors/{id}/disable",
            post(|State(app), Caller(who), Path(id), Query(q)| {
                connector_set(app, who, id, q, false)
            }),
        )
        .route("/v1/connectors/{id}/history", get(connector_history))
        .route("/v1/history", get(registry_history))
        .route("/v1/audit", get(audit_list))
        .route("/v1/audit/export", get(audit_export))
        .route("/v1/audit/verify", post(audit_verify))
        .route("/v1/audit/checkpoint", post(audit_checkpoint))
        .route("/v1/health", get(health))
        // The seeds' path for the same figures.
        .route("/api/connectors/health", get(health))
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
    /// The body's JSON text; an empty (or blank) body is `{}`.
    fn json(&self) -> &[u8] {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.0
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
    let params = std::str::from_utf8(body.json()).map_err(|_| invalid("the body is not UTF-8"))?;
    match app
        .control
        .invoke_with(&who, &name, &operation, params, query.rationale.as_deref())
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

/// `{"reason": "..."}`, optional for an approval, needed for a denial.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    reason: Option<String>,
}

/// Approves (`approve`) or denies a request; an approval runs it and answers with the outcome.
async fn decide(app: App, who: Principal, id: String, body: Body, approve: bool) -> Answer {
    let Decision { reason } = parse(&body)?;
    ok(app
        .control
        .approval_decide(&who, &id, approve, reason.as_deref())
        .await?)
}

#[derive(serde::Deserialize)]
struct WaitQuery {
    /// How long to wait for a decision (and the run after an approval), e.g. `30s`; at most
    /// [`MAX_WAIT`].
    timeout: Option<String>,
}

/// The longest a long poll holds a connection.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Long poll: answers once the request is decided and run (or denied, expired, failed), or
/// when the timeout passes, with the request as it then is.
async fn approval_wait(
    State(app): State<App>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Answer {
    let timeout = match query.timeout {
        None => std::time::Duration::from_secs(30),
        Some(t) => humantime::parse_duration(&t)
            .map_err(|e| invalid(format!("timeout: {e} (such as `30s`)")))?,
    }
    .min(MAX_WAIT);
    ok(app.control.approval_wait(&who, &id, timeout).await?)
}

async fn tokens_list(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.token_list(&who).await?)
}

/// Makes a token: `{"for_user": "olivia"}` or `{"for_agent": "bot"}`, with `role`, `label` and
/// `expires_in` (`30d`). The token is in this answer only.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    for_user: Option<String>,
    for_agent: Option<String>,
    role: Option<String>,
    label: Option<String>,
    expires_in: Option<String>,
}

async fn token_create(State(app): State<App>, Caller(who): Caller, body: Body) -> Answer {
    let new: NewToken = parse(&body)?;
    let (kind, subject) = match (new.for_user, new.for_agent) {
        (Some(user), None) => (PrincipalKind::User, user),
        (None, Some(agent)) => (PrincipalKind::Agent, agent),
        _ => return Err(invalid("give exactly one of for_user and for_agent")),
    };
    let role: Role = match new.role {
        None => Role::Viewer,
        Some(r) => r
            .parse()
            .map_err(|e: String| invalid(format!("role: {e}")))?,
    };
    let label = new.label;
    let expires_in = match new.expires_in {
        None => None,
        Some(d) => Some(
            humantime::parse_duration(&d)
                .map_err(|e| invalid(format!("expires_in: {e} (such as `30d` or `12h`)")))?,
        ),
    };
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

async fn connectors_list(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.connector_list(&who).await?)
}

async fn connector_show(
    State(app): State<App>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Answer {
    ok(app.control.connector_show(&who, &id).await?)
}

/// Registers the component in the body (`application/wasm`, up to
/// [`crate::MAX_COMPONENT_BYTES`]): validated, compiled and stored, or refused naming why.
async fn connector_register(State(app): State<App>, Caller(who): Caller, body: Body) -> Answer {
    let registered = app.control.register(&who, &body.0, &|_| {}).await?;
    Ok((StatusCode::CREATED, Json(registered)).into_response())
}

#[derive(serde::Deserialize)]
struct VersionQuery {
    /// One version; without it, every version.
    version: Option<String>,
}

/// Enables or disables a connector version (or all), answering the versions changed.
async fn connector_set(
    app: App,
    who: Principal,
    id: String,
    query: VersionQuery,
    enabled: bool,
) -> Answer {
    let changed = app
        .control
        .connector_set_enabled(&who, &id, query.version.as_deref(), enabled)
        .await?;
    let key = if enabled { "enabled" } else { "disabled" };
    ok(json!({ key: changed }))
}

async fn connector_history(
    State(app): State<App>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Answer {
    ok(app.control.connector_history(&who, Some(&id)).await?)
}

async fn registry_history(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.connector_history(&who, None).await?)
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    /// The newest this many records (default 100, at most 10,000).
    limit: Option<i64>,
}

async fn audit_list(
    State(app): State<App>,
    Caller(who): Caller,
    Query(query): Query<AuditQuery>,
) -> Answer {
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    ok(app.control.audit_list(&who, limit).await?)
}

#[derive(serde::Deserialize)]
struct ExportQuery {
    /// From (RFC 3339, or an age such as `1h`); default: the beginning.
    since: Option<String>,
    /// Until (RFC 3339, or an age); default: now.
    until: Option<String>,
}

/// A time given as RFC 3339 or as an age before now (`1h`), in Unix milliseconds.
fn instant(name: &str, text: &str) -> Result<i64, Problem> {
    let now = airlock::time::now_unix_ms();
    if let Ok(at) = humantime::parse_rfc3339_weak(text.trim()) {
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        return Ok(i64::try_from(ms).unwrap_or(i64::MAX));
    }
    if let Ok(age) = humantime::parse_duration(text.trim()) {
        return Ok(now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
    }
    Err(invalid(format!(
        "{name}: `{text}` is neither an RFC 3339 time nor an age such as `1h`"
    )))
}

/// The tenant's stored records in a time range as JSON lines (`application/x-ndjson`), each
/// with its sequence number and hashes, for keeping elsewhere.
async fn audit_export(
    State(app): State<App>,
    Caller(who): Caller,
    Query(query): Query<ExportQuery>,
) -> Answer {
    let since = query
        .since
        .as_deref()
        .map(|t| instant("since", t))
        .transpose()?
        .unwrap_or(0);
    let until = query
        .until
        .as_deref()
        .map(|t| instant("until", t))
        .transpose()?
        .unwrap_or(i64::MAX);
    let rows = app.control.audit_export(&who, since, until).await?;
    let mut lines = String::new();
    for row in rows {
        lines.push_str(
            &json!({
                "seq": row.seq,
                "at": row.at,
                "record": serde_json::from_str::<Value>(&row.record).unwrap_or(Value::Null),
                "prev_hash": row.prev_hash,
                "hash": row.hash,
            })
            .to_string(),
        );
        lines.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response())
}

/// Checks the whole chain and every checkpoint, with checkpoints kept elsewhere in the body
/// (`{"checkpoints": [...]}`, optional). `intact: false` names the first bad record.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Verify {
    /// Checkpoints as `POST /v1/audit/checkpoint` answers them.
    #[serde(default)]
    checkpoints: Vec<airlock::control::state::Checkpoint>,
}

async fn audit_verify(State(app): State<App>, Caller(who): Caller, body: Body) -> Answer {
    let Verify { checkpoints } = parse(&body)?;
    let report = app.control.audit_verify(&who, &checkpoints).await?;
    let intact = report.problem.is_none();
    ok(json!({"intact": intact, "report": report}))
}

/// Flushes the audit log and answers the newest signed checkpoint, to keep elsewhere.
async fn audit_checkpoint(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.audit_checkpoint(&who).await?)
}

#[derive(serde::Deserialize)]
struct HealthQuery {
    /// How many of the tenant's newest audit records to summarize (default 10,000).
    window: Option<i64>,
}

/// Calls, errors, p50/p95/p99 and health per connection and operation, and the circuit
/// breakers that are open or probing.
async fn health(
    State(app): State<App>,
    Caller(who): Caller,
    Query(query): Query<HealthQuery>,
) -> Answer {
    let window = query.window.unwrap_or(10_000).clamp(1, 1_000_000);
    let operations = app.control.health(&who, window).await?;
    let circuits = app.control.circuits(&who).await?;
    ok(json!({"operations": operations, "circuits": circuits}))
}

/// A JSON body as `T`, or a 422 problem naming what does not fit (an unknown field, a wrong
/// type).
fn parse<T: serde::de::DeserializeOwned>(body: &Body) -> Result<T, Problem> {
    serde_json::from_slice(body.json()).map_err(|e| invalid(format!("the body does not fit: {e}")))
}

async fn connection_create(State(app): State<App>, Caller(who): Caller, body: Body) -> Answer {
    let spec: airlock::control::ConnectionSpec = parse(&body)?;
    let view = app.control.connection_create(&who, spec).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Changes what the body names; an absent field keeps its value, `null` clears it.
async fn connection_update(
    State(app): State<App>,
    Caller(who): Caller,
    Path(name): Path<String>,
    body: Body,
) -> Answer {
    let update: airlock::control::ConnectionUpdate = parse(&body)?;
    ok(app.control.connection_update(&who, &name, update).await?)
}

async fn connection_set(app: App, who: Principal, name: String, enabled: bool) -> Answer {
    ok(app
        .control
        .connection_set_enabled(&who, &name, enabled)
        .await?)
}

/// Runs the connector's health check and discovery and records the result.
async fn connection_test(
    State(app): State<App>,
    Caller(who): Caller,
    Path(name): Path<String>,
) -> Answer {
    ok(app.control.connection_test(&who, &name).await?)
}

async fn grant(
    State(app): State<App>,
    Caller(who): Caller,
    Path((name, agent, operation)): Path<(String, String, String)>,
) -> Answer {
    app.control
        .connection_grant(&who, &name, &agent, &operation, false)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn revoke_grant(
    State(app): State<App>,
    Caller(who): Caller,
    Path((name, agent, operation)): Path<(String, String, String)>,
) -> Answer {
    app.control
        .connection_grant(&who, &name, &agent, &operation, true)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn credentials_list(
    State(app): State<App>,
    Caller(who): Caller,
    Path(name): Path<String>,
) -> Answer {
    ok(app.control.credential_list(&who, &name).await?)
}

/// A credential to set: how it is presented, where it may go, and the secret, which is
/// write-only (no answer contains it).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialBody {
    placement: airlock::egress::credential::Placement,
    hosts: Vec<String>,
    secret: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    secret: String,
}

async fn credential_set(
    State(app): State<App>,
    Caller(who): Caller,
    Path((name, credential)): Path<(String, String)>,
    body: Body,
) -> Answer {
    let CredentialBody {
        placement,
        hosts,
        secret,
    } = parse(&body)?;
    ok(app
        .control
        .credential_set(
            &who,
            &name,
            &credential,
            placement,
            hosts,
            zeroize::Zeroizing::new(secret),
        )
        .await?)
}

async fn credential_rotate(
    State(app): State<App>,
    Caller(who): Caller,
    Path((name, credential)): Path<(String, String)>,
    body: Body,
) -> Answer {
    let SecretBody { secret } = parse(&body)?;
    ok(app
        .control
        .credential_rotate(&who, &name, &credential, zeroize::Zeroizing::new(secret))
        .await?)
}

async fn credential_delete(
    State(app): State<App>,
    Caller(who): Caller,
    Path((name, credential)): Path<(String, String)>,
) -> Answer {
    app.control
        .credential_delete(&who, &name, &credential)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
