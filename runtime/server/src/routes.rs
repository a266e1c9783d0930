//! The endpoints. Each handler is the same three steps: the caller from its token, one
//! control-plane call with the caller's principal, the answer as JSON (or a problem document).

use crate::auth::Caller;
use crate::problem::Problem;
use crate::{App, MAX_BODY_BYTES};
use airlock::control::access::TokenSpec;
use airlock::control::approvals::ApprovalView;
use airlock::control::metrics::OperationStats;
use airlock::control::state::{
    ApiTokenRecord, BreakerRecord, Checkpoint, ConnectionRecord, CredentialRecord, HistoryEntry,
};
use airlock::control::{
    ConnectionSpec, ConnectionUpdate, ConnectionView, ConnectorView, Registered, TestReport,
};
use airlock::control::{ControlError, Principal, PrincipalKind};
use airlock::invocation::Role;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Answer = Result<Response, Problem>;

/// The API: every handler below is registered here with its OpenAPI description, so the
/// document at `/v1/openapi.json` lists exactly the routes served.
pub fn router(app: App) -> Router {
    let (router, api) = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(crate::metrics::metrics))
        .routes(routes!(connections_list, connection_create))
        .routes(routes!(connection_show, connection_update))
        .routes(routes!(connection_enable))
        .routes(routes!(connection_disable))
        .routes(routes!(connection_test))
        .routes(routes!(grant, revoke_grant))
        .routes(routes!(credentials_list))
        .routes(routes!(credential_set, credential_delete))
        .routes(routes!(credential_rotate))
        .routes(routes!(invoke))
        .routes(routes!(approvals_list))
        .routes(routes!(approval_show))
        .routes(routes!(approval_approve))
        .routes(routes!(approval_deny))
        .routes(routes!(approval_wait))
        .routes(routes!(approval_events))
        .routes(routes!(tokens_list, token_create))
        .routes(routes!(token_revoke))
        .routes({
            // Components are larger than any other body.
            let (schemas, paths, methods) = routes!(connectors_list, connector_register);
            (
                schemas,
                paths,
                methods.layer(DefaultBodyLimit::max(crate::MAX_COMPONENT_BYTES)),
            )
        })
        .routes(routes!(connector_show))
        .routes(routes!(connector_enable))
        .routes(routes!(connector_disable))
        .routes(routes!(connector_history))
        .routes(routes!(registry_history))
        .routes(routes!(audit_list))
        .routes(routes!(audit_export))
        .routes(routes!(audit_verify))
        .routes(routes!(audit_checkpoint))
        .routes(routes!(health))
        .routes(routes!(seeds_health))
        .split_for_parts();
    // Serialized once: the document is the same for every caller.
    let document = Bytes::from(
        serde_json::to_vec(&crate::openapi::complete(api)).expect("the document serializes"),
    );
    router
        .route(
            crate::openapi::PATH,
            get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document) }
            }),
        )
        .merge(crate::mcp::router(app.clone()))
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "no-such-endpoint",
                "no such endpoint; the API lives under /v1 (see /v1/openapi.json)",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// A path's parameters; a malformed one (not UTF-8 once decoded) is a 400 problem, not axum's
/// plain-text answer.
pub struct PathOf<T>(pub T);

impl<T> FromRequestParts<App> for PathOf<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Problem> {
        Path::<T>::from_request_parts(parts, app)
            .await
            .map(|Path(t)| PathOf(t))
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad-path", e.body_text()))
    }
}

/// A query string; one that does not fit (a number that is not one) is a 400 problem naming
/// the parameter.
pub struct QueryOf<T>(pub T);

impl<T> FromRequestParts<App> for QueryOf<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, app)
            .await
            .map(|Query(t)| QueryOf(t))
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad-query", e.body_text()))
    }
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
    /// The body's JSON text; an empty (or blank) body, or `null`, is `{}`.
    fn json(&self) -> &[u8] {
        if self.0.iter().all(u8::is_ascii_whitespace) || self.0.trim_ascii() == b"null" {
            b"{}"
        } else {
            &self.0
        }
    }
}

/// A connection, by name.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConnectionPath {
    /// The connection's name.
    name: String,
}

/// One operation of a connection.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OperationPath {
    /// The connection's name.
    name: String,
    /// The operation, as the connector's manifest names it.
    operation: String,
}

/// An agent's grant of one operation on a connection.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GrantPath {
    /// The connection's name.
    name: String,
    /// The agent.
    agent: String,
    /// The operation.
    operation: String,
}

/// One credential of a connection.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CredentialPath {
    /// The connection's name.
    name: String,
    /// The credential's name.
    credential: String,
}

/// An approval request.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ApprovalPath {
    /// The request, `apr-...`.
    id: String,
}

/// A registered connector.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConnectorPath {
    /// The connector's id, from its manifest.
    id: String,
}

/// An API token.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    /// The token's public id (`alk_<id>_...`).
    id: String,
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input", detail)
}

fn ok(value: impl serde::Serialize) -> Answer {
    Ok(Json(value).into_response())
}

/// `{"status": "..."}`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    pub status: String,
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "server", security(()),
    responses((status = 200, body = Status)))]
async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready when the audit store takes writes: without it nothing may run (fail closed).
#[utoipa::path(get, path = "/readyz", tag = "server", security(()),
    responses((status = 200, body = Status), (status = 503, body = Problem, content_type = "application/problem+json")))]
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

/// The tenant's connections.
#[utoipa::path(get, path = "/v1/connections", tag = "connections",
    responses((status = 200, body = Vec<ConnectionRecord>)))]
async fn connections_list(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.connection_list(&who).await?)
}

/// A connection with its config (secret-looking values redacted) and its agents' grants.
#[utoipa::path(get, path = "/v1/connections/{name}", tag = "connections",
    params(ConnectionPath),
    responses((status = 200, body = ConnectionView)))]
async fn connection_show(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ConnectionPath { name }): PathOf<ConnectionPath>,
) -> Answer {
    ok(app.control.connection_show(&who, &name).await?)
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct InvokeQuery {
    /// Why, for the approver when the operation's risk needs one.
    rationale: Option<String>,
}

/// An invocation's answer.
#[derive(Serialize, ToSchema)]
pub struct InvokeAnswer {
    /// The operation's result as it returned it (masked where the connection's policy says).
    pub result: Value,
    pub invocation_id: String,
    pub duration_ms: f64,
    pub classification: Option<airlock::manifest::Classification>,
    /// How many values masking changed.
    pub masked: usize,
    /// Served from the connection's read cache.
    pub cached: bool,
    /// Effects the host refused while the operation went on to succeed.
    pub warnings: Vec<airlock::policy::Denial>,
}

impl From<airlock::executor::Outcome> for InvokeAnswer {
    fn from(outcome: airlock::executor::Outcome) -> Self {
        InvokeAnswer {
            result: serde_json::from_str::<Value>(&outcome.output).unwrap_or(Value::Null),
            invocation_id: outcome.invocation_id,
            duration_ms: outcome.duration.as_secs_f64() * 1000.0,
            classification: outcome.classification,
            masked: outcome.masked,
            cached: outcome.cached,
            warnings: outcome.denials,
        }
    }
}

/// The answer to an invocation that waits for an approver.
#[derive(Serialize, ToSchema)]
pub struct PendingAnswer {
    /// `pending-approval`.
    pub status: String,
    pub detail: String,
    pub request: airlock::control::approvals::Ticket,
    /// Where to follow the request (`GET`, or `GET .../wait` to wait for it).
    pub follow: String,
}

/// Runs an operation with the body as its params. A call that must wait for an approver is
/// answered 202 with the request to follow.
#[utoipa::path(post, path = "/v1/connections/{name}/operations/{operation}", tag = "invocations",
    params(OperationPath, InvokeQuery),
    request_body(content = Object, description = "The operation's params (its `params-schema`); empty is `{}`"),
    responses(
        (status = 200, body = InvokeAnswer),
        (status = 202, body = PendingAnswer, headers(("Location" = String, description = "The approval request"))),
    ))]
async fn invoke(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(OperationPath { name, operation }): PathOf<OperationPath>,
    QueryOf(query): QueryOf<InvokeQuery>,
    body: Body,
) -> Answer {
    let params = std::str::from_utf8(body.json()).map_err(|_| invalid("the body is not UTF-8"))?;
    match app
        .control
        .invoke_with(&who, &name, &operation, params, query.rationale.as_deref())
        .await
    {
        Ok(outcome) => ok(InvokeAnswer::from(outcome)),
        Err(ControlError::Pending(ticket)) => {
            let location = format!("/v1/approvals/{}", ticket.request_id);
            let mut response = (
                StatusCode::ACCEPTED,
                Json(PendingAnswer {
                    status: "pending-approval".to_owned(),
                    detail: ticket.to_string(),
                    request: ticket,
                    follow: location.clone(),
                }),
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

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ApprovalsQuery {
    /// Decided and finished requests too.
    #[serde(default)]
    all: bool,
}

/// The tenant's pending approval requests (with `all`, every one).
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ApprovalsQuery),
    responses((status = 200, body = Vec<ApprovalView>)))]
async fn approvals_list(
    State(app): State<App>,
    Caller(who): Caller,
    QueryOf(query): QueryOf<ApprovalsQuery>,
) -> Answer {
    ok(app.control.approvals_list(&who, query.all).await?)
}

/// A request with its params (secret-looking values redacted) and the dry run's preview.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals",
    params(ApprovalPath),
    responses((status = 200, body = ApprovalView)))]
async fn approval_show(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ApprovalPath { id }): PathOf<ApprovalPath>,
) -> Answer {
    ok(app.control.approval_show(&who, &id).await?)
}

/// `{"reason": "..."}`, optional for an approval, needed for a denial.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    reason: Option<String>,
}

/// Approves a request (someone other than its requester, with the role it names); the request
/// runs, and the answer carries its outcome.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals",
    params(ApprovalPath),
    request_body(content = Option<Decision>),
    responses((status = 200, body = ApprovalView)))]
async fn approval_approve(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ApprovalPath { id }): PathOf<ApprovalPath>,
    body: Body,
) -> Answer {
    decide(app, who, id, body, true).await
}

/// Denies a request; a reason is needed.
#[utoipa::path(post, path = "/v1/approvals/{id}/deny", tag = "approvals",
    params(ApprovalPath),
    request_body(content = Decision),
    responses((status = 200, body = ApprovalView)))]
async fn approval_deny(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ApprovalPath { id }): PathOf<ApprovalPath>,
    body: Body,
) -> Answer {
    decide(app, who, id, body, false).await
}

async fn decide(app: App, who: Principal, id: String, body: Body, approve: bool) -> Answer {
    let Decision { reason } = parse(&body)?;
    ok(app
        .control
        .approval_decide(&who, &id, approve, reason.as_deref())
        .await?)
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    /// How long to wait for a decision (and the run after an approval), e.g. `30s`; at most
    /// a minute.
    timeout: Option<String>,
}

impl WaitQuery {
    /// The wait asked for (30 s when not given), at most [`MAX_WAIT`].
    fn timeout(self) -> Result<std::time::Duration, Problem> {
        let asked = match self.timeout.filter(|t| !t.trim().is_empty()) {
            None => std::time::Duration::from_secs(30),
            Some(t) => humantime::parse_duration(&t)
                .map_err(|e| invalid(format!("timeout: {e} (such as `30s`)")))?,
        };
        Ok(asked.min(MAX_WAIT))
    }
}

/// The longest a long poll holds a connection.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Long poll: answers once the request is decided and run (or denied, expired, failed), or
/// when the timeout passes, with the request as it then is.
#[utoipa::path(get, path = "/v1/approvals/{id}/wait", tag = "approvals",
    params(ApprovalPath, WaitQuery),
    responses((status = 200, body = ApprovalView)))]
async fn approval_wait(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ApprovalPath { id }): PathOf<ApprovalPath>,
    QueryOf(query): QueryOf<WaitQuery>,
) -> Answer {
    let timeout = query.timeout()?;
    ok(app.control.approval_wait(&who, &id, timeout).await?)
}

/// One server-sent event of `/v1/approvals/{id}/events`, for the document only: axum's `Event`
/// writes the wire form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ApprovalEvent {
    /// `status`, `final` or `error`.
    event: String,
    /// JSON: the request (an `ApprovalView`), or for `error` a problem document.
    data: String,
}

/// Server-sent events for one request: `status` with the request as it is now, then, when it is
/// decided and run (or denied, expired, failed), `final` with it, or `status` again when the
/// timeout passes first; the stream then ends (an `EventSource` reconnects to go on waiting).
/// A failure after the stream began is an `error` event with the problem document.
#[utoipa::path(get, path = "/v1/approvals/{id}/events", tag = "approvals",
    params(ApprovalPath, WaitQuery),
    responses((status = 200, content_type = "text/event-stream", body = ApprovalEvent,
        description = "Events `status`, `final` or `error`")))]
async fn approval_events(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ApprovalPath { id }): PathOf<ApprovalPath>,
    QueryOf(query): QueryOf<WaitQuery>,
) -> Answer {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let timeout = query.timeout()?;
    // Not found and not allowed are answered as problems, before any event.
    let now = app.control.approval_show(&who, &id).await?;
    let event = |name: &str, view: &ApprovalView| {
        Event::default()
            .event(name)
            .json_data(view)
            .unwrap_or_else(|_| Event::default().event("error"))
    };
    let first = event(if now.is_final() { "final" } else { "status" }, &now);
    let rest = (!now.is_final()).then_some(async move {
        match app.control.approval_wait(&who, &id, timeout).await {
            Ok(view) => event(if view.is_final() { "final" } else { "status" }, &view),
            Err(e) => Event::default()
                .event("error")
                .json_data(Problem::from(e))
                .unwrap_or_else(|_| Event::default().event("error")),
        }
    });
    let stream = futures_util::stream::iter([first])
        .chain(futures_util::stream::iter(rest).then(|wait| wait))
        .map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The tenant's API tokens (never their secrets).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<ApiTokenRecord>)))]
async fn tokens_list(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.token_list(&who).await?)
}

/// A token to make: exactly one of `for_user` and `for_agent`, with `role` (default viewer),
/// `label` and `expires_in` (`30d`).
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    for_user: Option<String>,
    for_agent: Option<String>,
    /// `viewer`, `author`, `operator`, `auditor`, `compliance` or `admin`.
    role: Option<String>,
    label: Option<String>,
    /// Such as `30d` or `12h`; none: until revoked.
    expires_in: Option<String>,
}

/// A new token: the secret is in this answer only.
#[derive(Serialize, ToSchema)]
pub struct IssuedAnswer {
    /// `alk_<id>_<secret>`: send as `Authorization: Bearer ...`. Shown once, stored only as a
    /// hash.
    pub token: String,
    pub record: ApiTokenRecord,
}

/// Makes a token for a user or an agent of the caller's tenant.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = IssuedAnswer)))]
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

/// Revokes a token: it stops working at once on this server, within seconds on others.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    params(TokenPath),
    responses((status = 204)))]
async fn token_revoke(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(TokenPath { id }): PathOf<TokenPath>,
) -> Answer {
    app.control.token_revoke(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Every registered connector version.
#[utoipa::path(get, path = "/v1/connectors", tag = "connectors",
    responses((status = 200, body = Vec<ConnectorView>)))]
async fn connectors_list(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.connector_list(&who).await?)
}

/// A connector's versions, newest first.
#[utoipa::path(get, path = "/v1/connectors/{id}", tag = "connectors",
    params(ConnectorPath),
    responses((status = 200, body = Vec<ConnectorView>)))]
async fn connector_show(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ConnectorPath { id }): PathOf<ConnectorPath>,
) -> Answer {
    ok(app.control.connector_show(&who, &id).await?)
}

/// Registers the component in the body (`application/wasm`, up to 64 MiB): validated,
/// compiled and stored, or refused naming why. The same bytes again change nothing.
#[utoipa::path(post, path = "/v1/connectors", tag = "connectors",
    request_body(description = "A WebAssembly component built against Airlock's WIT package",
        content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    responses((status = 201, body = Registered)))]
async fn connector_register(State(app): State<App>, Caller(who): Caller, body: Body) -> Answer {
    let registered = app.control.register(&who, &body.0, &|_| {}).await?;
    Ok((StatusCode::CREATED, Json(registered)).into_response())
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct VersionQuery {
    /// One version; without it, every version.
    version: Option<String>,
}

/// The versions an enable or a disable changed.
#[derive(Serialize, ToSchema)]
pub struct Changed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Vec<String>>,
}

/// Enables a connector version (or every version).
#[utoipa::path(post, path = "/v1/connectors/{id}/enable", tag = "connectors",
    params(ConnectorPath, VersionQuery),
    responses((status = 200, body = Changed)))]
async fn connector_enable(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ConnectorPath { id }): PathOf<ConnectorPath>,
    QueryOf(query): QueryOf<VersionQuery>,
) -> Answer {
    connector_set(app, who, id, query, true).await
}

/// Disables a connector version (or every version): its connections stop running.
#[utoipa::path(post, path = "/v1/connectors/{id}/disable", tag = "connectors",
    params(ConnectorPath, VersionQuery),
    responses((status = 200, body = Changed)))]
async fn connector_disable(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ConnectorPath { id }): PathOf<ConnectorPath>,
    QueryOf(query): QueryOf<VersionQuery>,
) -> Answer {
    connector_set(app, who, id, query, false).await
}

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
    ok(if enabled {
        Changed {
            enabled: Some(changed),
            disabled: None,
        }
    } else {
        Changed {
            enabled: None,
            disabled: Some(changed),
        }
    })
}

/// A connector's registry history.
#[utoipa::path(get, path = "/v1/connectors/{id}/history", tag = "connectors",
    params(ConnectorPath),
    responses((status = 200, body = Vec<HistoryEntry>)))]
async fn connector_history(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ConnectorPath { id }): PathOf<ConnectorPath>,
) -> Answer {
    ok(app.control.connector_history(&who, Some(&id)).await?)
}

/// The registry's history: every registration, enable and disable.
#[utoipa::path(get, path = "/v1/history", tag = "connectors",
    responses((status = 200, body = Vec<HistoryEntry>)))]
async fn registry_history(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.connector_history(&who, None).await?)
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// The newest this many records (default 100, at most 10,000).
    limit: Option<i64>,
}

/// The tenant's newest audit records.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<airlock::control::audit::AuditRecord>)))]
async fn audit_list(
    State(app): State<App>,
    Caller(who): Caller,
    QueryOf(query): QueryOf<AuditQuery>,
) -> Answer {
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    ok(app.control.audit_list(&who, limit).await?)
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// From (RFC 3339, or an age such as `1h`); default: the beginning.
    since: Option<String>,
    /// Until (RFC 3339, or an age); default: now.
    until: Option<String>,
}

/// One exported audit record: a line of the export.
#[derive(Serialize, ToSchema)]
pub struct ExportLine {
    pub seq: i64,
    pub at: i64,
    pub record: Value,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
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
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(ExportQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = String,
        description = "One `ExportLine` per line")))]
async fn audit_export(
    State(app): State<App>,
    Caller(who): Caller,
    QueryOf(query): QueryOf<ExportQuery>,
) -> Answer {
    let since = query
        .since
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|t| instant("since", t))
        .transpose()?
        .unwrap_or(0);
    let until = query
        .until
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|t| instant("until", t))
        .transpose()?
        .unwrap_or(i64::MAX);
    let rows = app.control.audit_export(&who, since, until).await?;
    let mut lines = String::new();
    for row in rows {
        let line = ExportLine {
            seq: row.seq,
            at: row.at,
            record: serde_json::from_str::<Value>(&row.record).unwrap_or(Value::Null),
            prev_hash: row.prev_hash,
            hash: row.hash,
        };
        lines.push_str(&serde_json::to_string(&line).unwrap_or_default());
        lines.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response())
}

/// Checkpoints kept elsewhere, to check besides the stored ones.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// Checkpoints as `POST /v1/audit/checkpoint` answers them.
    #[serde(default)]
    checkpoints: Vec<Checkpoint>,
}

/// What a verification found.
#[derive(Serialize, ToSchema)]
pub struct VerifyAnswer {
    /// False names the first bad record in `report.problem`.
    pub intact: bool,
    pub report: airlock::control::audit::VerifyReport,
}

/// Checks the whole chain and every checkpoint, stored and given.
#[utoipa::path(post, path = "/v1/audit/verify", tag = "audit", request_body(content = Option<Verify>),
    responses((status = 200, body = VerifyAnswer)))]
async fn audit_verify(State(app): State<App>, Caller(who): Caller, body: Body) -> Answer {
    let Verify { checkpoints } = parse(&body)?;
    let report = app.control.audit_verify(&who, &checkpoints).await?;
    let intact = report.problem.is_none();
    ok(VerifyAnswer { intact, report })
}

/// Flushes the audit log and answers the newest signed checkpoint, to keep elsewhere (`null`
/// while the log is empty).
#[utoipa::path(post, path = "/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, body = Option<Checkpoint>)))]
async fn audit_checkpoint(State(app): State<App>, Caller(who): Caller) -> Answer {
    ok(app.control.audit_checkpoint(&who).await?)
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HealthQuery {
    /// How many of the tenant's newest audit records to summarize (default 10,000).
    window: Option<i64>,
}

/// Per connection and operation: calls, errors, latency percentiles and health; and the
/// circuit breakers that are open or probing.
#[derive(Serialize, ToSchema)]
pub struct HealthAnswer {
    pub operations: Vec<OperationStats>,
    pub circuits: Vec<BreakerRecord>,
}

/// Calls, errors, p50/p95/p99 and health per connection and operation, and the circuit
/// breakers that are open or probing.
#[utoipa::path(get, path = "/v1/health", tag = "health", params(HealthQuery),
    responses((status = 200, body = HealthAnswer)))]
async fn health(
    State(app): State<App>,
    Caller(who): Caller,
    QueryOf(query): QueryOf<HealthQuery>,
) -> Answer {
    let window = query.window.unwrap_or(10_000).clamp(1, 1_000_000);
    let operations = app.control.health(&who, window).await?;
    let circuits = app.control.circuits(&who).await?;
    ok(HealthAnswer {
        operations,
        circuits,
    })
}

/// `/v1/health` at the seeds' path.
#[utoipa::path(get, path = "/api/connectors/health", tag = "health", params(HealthQuery),
    responses((status = 200, body = HealthAnswer)))]
async fn seeds_health(state: State<App>, caller: Caller, query: QueryOf<HealthQuery>) -> Answer {
    health(state, caller, query).await
}

/// A JSON body as `T`, or a 422 problem naming what does not fit (an unknown field, a wrong
/// type).
fn parse<T: serde::de::DeserializeOwned>(body: &Body) -> Result<T, Problem> {
    serde_json::from_slice(body.json()).map_err(|e| invalid(format!("the body does not fit: {e}")))
}

/// Creates a connection of a registered connector: disabled writes, no egress and no agents
/// until given.
#[utoipa::path(post, path = "/v1/connections", tag = "connections", request_body = ConnectionSpec,
    responses((status = 201, body = ConnectionView)))]
async fn connection_create(State(app): State<App>, Caller(who): Caller, body: Body) -> Answer {
    let spec: ConnectionSpec = parse(&body)?;
    let view = app.control.connection_create(&who, spec).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Changes what the body names; an absent field keeps its value, `null` clears it.
#[utoipa::path(patch, path = "/v1/connections/{name}", tag = "connections",
    params(ConnectionPath),
    request_body = ConnectionUpdate,
    responses((status = 200, body = ConnectionView)))]
async fn connection_update(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ConnectionPath { name }): PathOf<ConnectionPath>,
    body: Body,
) -> Answer {
    let update: ConnectionUpdate = parse(&body)?;
    ok(app.control.connection_update(&who, &name, update).await?)
}

/// Enables a connection.
#[utoipa::path(post, path = "/v1/connections/{name}/enable", tag = "connections",
    params(ConnectionPath),
    responses((status = 200, body = ConnectionRecord)))]
async fn connection_enable(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ConnectionPath { name }): PathOf<ConnectionPath>,
) -> Answer {
    ok(app
        .control
        .connection_set_enabled(&who, &name, true)
        .await?)
}

/// Disables a connection: nothing runs on it until it is enabled.
#[utoipa::path(post, path = "/v1/connections/{name}/disable", tag = "connections",
    params(ConnectionPath),
    responses((status = 200, body = ConnectionRecord)))]
async fn connection_disable(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ConnectionPath { name }): PathOf<ConnectionPath>,
) -> Answer {
    ok(app
        .control
        .connection_set_enabled(&who, &name, false)
        .await?)
}

/// Runs the connector's health check and discovery and records the result.
#[utoipa::path(post, path = "/v1/connections/{name}/test", tag = "connections",
    params(ConnectionPath),
    responses((status = 200, body = TestReport)))]
async fn connection_test(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ConnectionPath { name }): PathOf<ConnectionPath>,
) -> Answer {
    ok(app.control.connection_test(&who, &name).await?)
}

/// Lets an agent run one operation on the connection.
#[utoipa::path(put, path = "/v1/connections/{name}/grants/{agent}/{operation}", tag = "connections",
    params(GrantPath),
    responses((status = 204)))]
async fn grant(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(GrantPath {
        name,
        agent,
        operation,
    }): PathOf<GrantPath>,
) -> Answer {
    app.control
        .connection_grant(&who, &name, &agent, &operation, false)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Takes an agent's grant away.
#[utoipa::path(delete, path = "/v1/connections/{name}/grants/{agent}/{operation}", tag = "connections",
    params(GrantPath),
    responses((status = 204)))]
async fn revoke_grant(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(GrantPath {
        name,
        agent,
        operation,
    }): PathOf<GrantPath>,
) -> Answer {
    app.control
        .connection_grant(&who, &name, &agent, &operation, true)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The connection's credentials: how each is presented and where it may go, never the secret.
#[utoipa::path(get, path = "/v1/connections/{name}/credentials", tag = "credentials",
    params(ConnectionPath),
    responses((status = 200, body = Vec<CredentialRecord>)))]
async fn credentials_list(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(ConnectionPath { name }): PathOf<ConnectionPath>,
) -> Answer {
    ok(app.control.credential_list(&who, &name).await?)
}

/// A credential to set: how it is presented, where it may go, and the secret, which is
/// write-only (no answer contains it).
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    placement: airlock::egress::credential::Placement,
    /// The hosts it may be sent to.
    hosts: Vec<String>,
    #[schema(format = Password, write_only)]
    secret: String,
}

/// A new secret for a credential.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    #[schema(format = Password, write_only)]
    secret: String,
}

/// Sets a credential: sealed with the master key, presented by the host, never seen by the
/// guest.
#[utoipa::path(put, path = "/v1/connections/{name}/credentials/{credential}", tag = "credentials",
    params(CredentialPath),
    request_body = CredentialBody,
    responses((status = 200, body = CredentialRecord)))]
async fn credential_set(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(CredentialPath { name, credential }): PathOf<CredentialPath>,
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

/// Replaces a credential's secret, keeping how it is presented and where it may go.
#[utoipa::path(post, path = "/v1/connections/{name}/credentials/{credential}/rotate", tag = "credentials",
    params(CredentialPath),
    request_body = SecretBody,
    responses((status = 200, body = CredentialRecord)))]
async fn credential_rotate(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(CredentialPath { name, credential }): PathOf<CredentialPath>,
    body: Body,
) -> Answer {
    let SecretBody { secret } = parse(&body)?;
    ok(app
        .control
        .credential_rotate(&who, &name, &credential, zeroize::Zeroizing::new(secret))
        .await?)
}

/// Deletes a credential.
#[utoipa::path(delete, path = "/v1/connections/{name}/credentials/{credential}", tag = "credentials",
    params(CredentialPath),
    responses((status = 204)))]
async fn credential_delete(
    State(app): State<App>,
    Caller(who): Caller,
    PathOf(CredentialPath { name, credential }): PathOf<CredentialPath>,
) -> Answer {
    app.control
        .credential_delete(&who, &name, &credential)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
