//! MCP for agents: each (connection, operation) pair a principal may call is a tool (see
//! `airlock::control::tools`), served with the official Rust SDK (rmcp) over streamable HTTP at
//! `/mcp` (same server, same bearer tokens) and over stdio (`airlock mcp`).
//!
//! A tool's input schema is the operation's `params-schema`, its description the manifest's, and
//! its annotations say read-only or destructive from the operation's access and risk. A call is
//! an ordinary invocation (`ControlPlane::invoke_with`): RBAC, grants, read-only, rate limits,
//! approvals, shaping and audit all apply, and a refusal is a tool error carrying the rule and
//! the remedy. A call that needs a person's approval waits for the decision (with progress
//! notifications, and up to [`CALL_WAITS_FOR_APPROVAL`]); if none comes in that time it answers
//! with the pending request, which the agent follows with the `airlock_await_approval` tool.

use crate::App;
use airlock::control::approvals::ApprovalView;
use airlock::control::state::ApprovalStatus;
use airlock::control::tools::ToolOffer;
use airlock::control::{ControlError, Principal};
use airlock::invocation::Access;
use airlock::manifest::Risk;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long a call that needs approval waits for the decision before it answers with the
/// pending request instead (MCP clients give up on a request after a minute or so).
pub const CALL_WAITS_FOR_APPROVAL: Duration = Duration::from_secs(50);

/// How long `airlock_await_approval` waits at most per call.
const AWAIT_AT_MOST: Duration = Duration::from_secs(50);

/// Progress is reported this often while a call waits.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The tool that follows a pending request.
pub const AWAIT_TOOL: &str = "airlock_await_approval";
/// The tool that describes a connection's objects and fields.
pub const DISCOVER_TOOL: &str = "airlock_discover";

/// The MCP server: one per HTTP request or stdio session, cheap to make.
#[derive(Clone)]
pub struct Gateway {
    app: App,
    /// stdio: the principal, fixed when the process started. Over HTTP each request's own,
    /// put there by the bearer check in front of `/mcp`.
    fixed: Option<Principal>,
}

impl Gateway {
    /// For HTTP: each request's principal comes from its bearer token.
    pub fn per_request(app: App) -> Self {
        Gateway { app, fixed: None }
    }

    /// For stdio: every request is `who`'s.
    pub fn for_principal(control: Arc<airlock::control::ControlPlane>, who: Principal) -> Self {
        Gateway {
            app: App { control },
            fixed: Some(who),
        }
    }

    fn principal(&self, ctx: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
        if let Some(who) = &self.fixed {
            return Ok(who.clone());
        }
        ctx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>())
            .cloned()
            .ok_or_else(|| ErrorData::invalid_request("no authenticated caller", None))
    }
}

/// A tool's name: `<connection>__<operation>` in the characters every MCP host accepts
/// (`[A-Za-z0-9_-]`, at most 64).
pub fn tool_name(connection: &str, operation: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut name = format!("{}__{}", clean(connection), clean(operation));
    name.truncate(64);
    name
}

/// Each offer with its tool name. Names that clean to the same text (`a.b` and `a_b`) get
/// `_2`, `_3`... in offer order, which is stable, so a name always means one operation.
pub fn named(offers: &[ToolOffer]) -> Vec<(String, &ToolOffer)> {
    let mut seen = std::collections::HashSet::new();
    offers
        .iter()
        .map(|offer| {
            let base = tool_name(&offer.connection, &offer.operation);
            let mut name = base.clone();
            let mut n = 1;
            while !seen.insert(name.clone()) {
                n += 1;
                let suffix = format!("_{n}");
                let mut stem = base.clone();
                stem.truncate(64 - suffix.len());
                name = stem + &suffix;
            }
            (name, offer)
        })
        .collect()
}

fn object(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// The operation's params schema as a tool's input schema: MCP wants an object schema.
fn input_schema(params_schema: &Value) -> Arc<JsonObject> {
    let mut schema = match params_schema {
        Value::Object(map) => map.clone(),
        _ => JsonObject::new(),
    };
    schema
        .entry("type")
        .or_insert_with(|| Value::String("object".into()));
    Arc::new(schema)
}

fn describe(offer: &ToolOffer) -> String {
    let access = match offer.access {
        Access::Read => "reads",
        Access::Write => "writes",
    };
    let mut text = format!(
        "{}\n\nConnection `{}` ({} connector), operation `{}`: {access}, {} risk, data classified {:?}.",
        offer.description.trim(),
        offer.connection,
        offer.connector,
        offer.operation,
        offer.risk,
        offer.classification,
    );
    if offer.access == Access::Write && !offer.writes_enabled {
        text.push_str(" The connection is read-only: a call is refused until writes are enabled.");
    }
    if offer.needs_approval {
        text.push_str(&format!(
            " A call waits for a person's approval before it runs; if none comes within {} s it answers with the pending request, to follow with `{AWAIT_TOOL}`.",
            CALL_WAITS_FOR_APPROVAL.as_secs()
        ));
    }
    text
}

fn tool(name: String, offer: &ToolOffer) -> Tool {
    let read = offer.access == Access::Read;
    let annotations = ToolAnnotations::new()
        .read_only(read)
        .destructive(!read && offer.risk >= Risk::High)
        .idempotent(read)
        .open_world(true);
    Tool::new(name, describe(offer), input_schema(&offer.params_schema))
        .with_title(format!("{}: {}", offer.connection, offer.operation))
        .with_annotations(annotations)
}

fn await_tool() -> Tool {
    Tool::new(
        AWAIT_TOOL,
        format!(
            "Waits for a person to decide an approval request this caller made (a tool call that answered `pending-approval`), up to `timeout_seconds` (at most {}), and answers with the result once it has run, or the request as it stands.",
            AWAIT_AT_MOST.as_secs()
        ),
        object(json!({
            "type": "object",
            "properties": {
                "request_id": {"type": "string", "description": "The request's id, `apr-...`"},
                "timeout_seconds": {"type": "integer", "minimum": 0, "maximum": AWAIT_AT_MOST.as_secs()}
            },
            "required": ["request_id"],
            "additionalProperties": false
        })),
    )
    .with_title("Await an approval")
    .with_annotations(
        ToolAnnotations::new()
            .read_only(true)
            .destructive(false)
            .idempotent(true)
            .open_world(false),
    )
}

fn discover_tool(connections: &[String]) -> Tool {
    Tool::new(
        DISCOVER_TOOL,
        "Describes what a connection's system holds: its objects and their fields, as the connector discovers them. Call it before forming params for a connection's tools.",
        object(json!({
            "type": "object",
            "properties": {
                "connection": {"type": "string", "enum": connections}
            },
            "required": ["connection"],
            "additionalProperties": false
        })),
    )
    .with_title("Discover a connection's objects")
    .with_annotations(
        ToolAnnotations::new()
            .read_only(true)
            .destructive(false)
            .idempotent(true)
            .open_world(true),
    )
}

/// A refusal or failure as a tool error: a sentence for the model, and the problem's members
/// (kind, rule, remedy) as structured content.
fn tool_error(e: &ControlError) -> CallToolResult {
    let problem = crate::problem::Problem::from(e);
    let mut sentence = problem.detail.clone();
    if let Some(rule) = &problem.rule {
        sentence.push_str(&format!(" (rule `{rule}`)"));
    }
    if let Some(remedy) = &problem.remedy {
        sentence.push_str(&format!(". What would allow it: {remedy}"));
    }
    let structured = serde_json::to_value(&problem).unwrap_or(Value::Null);
    let mut result = CallToolResult::structured_error(structured);
    result.content.insert(0, ContentBlock::text(sentence));
    result
}

/// A request that is final (or not yet) as a tool result.
fn approval_result(view: &ApprovalView) -> CallToolResult {
    let record = &view.record;
    match record.status {
        ApprovalStatus::Executed => {
            let result = view
                .output
                .as_deref()
                .map(|o| serde_json::from_str(o).unwrap_or(Value::String(o.to_owned())))
                .unwrap_or(Value::Null);
            CallToolResult::structured(json!({
                "status": "executed",
                "request_id": record.id,
                "approved_by": record.decided_by,
                "result": result,
            }))
        }
        ApprovalStatus::Denied | ApprovalStatus::Expired | ApprovalStatus::Failed => {
            let (rule, detail) = match record.status {
                ApprovalStatus::Denied => (
                    "approval-denied",
                    format!(
                        "{} denied request {}: {}",
                        record.decided_by.as_deref().unwrap_or("an approver"),
                        record.id,
                        record.reason.as_deref().unwrap_or("no reason given")
                    ),
                ),
                ApprovalStatus::Expired => (
                    "approval-expired",
                    format!(
                        "request {} expired without a decision; ask again if it is still needed",
                        record.id
                    ),
                ),
                _ => (
                    "approved-run-failed",
                    format!(
                        "request {} was approved but its run failed: {}",
                        record.id,
                        record.error.as_deref().unwrap_or("no detail")
                    ),
                ),
            };
            let mut result = CallToolResult::structured_error(json!({
                "status": record.status.as_str(),
                "request_id": record.id,
                "rule": rule,
                "detail": detail,
            }));
            result
                .content
                .insert(0, ContentBlock::text(format!("{detail} (rule `{rule}`)")));
            result
        }
        // Still waiting (or running): not a failure; the agent can follow it.
        _ => {
            let mut result = CallToolResult::structured(json!({
                "status": "pending-approval",
                "request_id": record.id,
                "state": record.status.as_str(),
                "operation": record.operation,
                "connection": record.connection,
                "expires_at": record.expires_at,
                "follow": format!("call {AWAIT_TOOL} with request_id {}", record.id),
            }));
            result.content.insert(
                0,
                ContentBlock::text(format!(
                    "Request {} is {} and waits for a person's decision; call `{AWAIT_TOOL}` with request_id `{}` to follow it.",
                    record.id,
                    record.status.as_str(),
                    record.id
                )),
            );
            result
        }
    }
}

impl Gateway {
    /// Waits for the request's decision (and run) up to `limit`, telling the client how long it
    /// has waited when it asked for progress; a cancelled call stops waiting (the request stays).
    async fn follow(
        &self,
        who: &Principal,
        id: &str,
        limit: Duration,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ApprovalView, ControlError> {
        let started = std::time::Instant::now();
        let progress = ctx.meta.get_progress_token();
        loop {
            let left = limit.saturating_sub(started.elapsed());
            let step = left.min(PROGRESS_EVERY);
            let view = tokio::select! {
                view = self.app.control.approval_wait(who, id, step) => view?,
                () = ctx.ct.cancelled() => return self.app.control.approval_show(who, id).await,
            };
            if view.is_final() || started.elapsed() >= limit {
                return Ok(view);
            }
            if let Some(token) = &progress {
                let waited = started.elapsed().as_secs_f64();
                let _ = ctx
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), waited)
                            .with_total(limit.as_secs_f64())
                            .with_message(format!(
                                "waiting for a person to approve request {id} ({waited:.0} s)"
                            )),
                    )
                    .await;
            }
        }
    }

    /// What `who` may call; a store that cannot say is the protocol's internal error.
    async fn offers(&self, who: &Principal) -> Result<Vec<ToolOffer>, ErrorData> {
        self.app
            .control
            .offered_tools(who)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    async fn call_offer(
        &self,
        who: &Principal,
        offer: &ToolOffer,
        arguments: JsonObject,
        rationale: Option<String>,
        ctx: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let params = Value::Object(arguments).to_string();
        match self
            .app
            .control
            .invoke_with(
                who,
                &offer.connection,
                &offer.operation,
                &params,
                rationale.as_deref(),
            )
            .await
        {
            // The HTTP API's answer, so both front ends describe an invocation alike.
            Ok(outcome) => CallToolResult::structured(
                serde_json::to_value(crate::routes::InvokeAnswer::from(outcome))
                    .unwrap_or(Value::Null),
            ),
            Err(ControlError::Pending(ticket)) => {
                match self
                    .follow(who, &ticket.request_id, CALL_WAITS_FOR_APPROVAL, ctx)
                    .await
                {
                    Ok(view) => approval_result(&view),
                    Err(e) => tool_error(&e),
                }
            }
            Err(e) => tool_error(&e),
        }
    }
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("airlock", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Each tool is one operation on one of this tenant's connections that your token may \
                 call, named <connection>__<operation>. Call airlock_discover for a connection's \
                 objects and fields first. Writes may wait for a person's approval; a refused call \
                 names the rule that refused it and what would allow it.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let who = self.principal(&ctx)?;
        let offers = self.offers(&who).await?;
        let mut tools: Vec<Tool> = named(&offers)
            .into_iter()
            .map(|(name, offer)| tool(name, offer))
            .collect();
        let mut connections: Vec<String> = offers.iter().map(|o| o.connection.clone()).collect();
        connections.dedup();
        if !connections.is_empty() {
            tools.push(discover_tool(&connections));
        }
        tools.push(await_tool());
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let who = self.principal(&ctx)?;
        let arguments = request.arguments.unwrap_or_default();
        let text = |name: &str| {
            arguments
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if request.name == AWAIT_TOOL {
            let id = text("request_id")
                .ok_or_else(|| ErrorData::invalid_params("request_id is needed", None))?;
            let limit = arguments
                .get("timeout_seconds")
                .and_then(Value::as_u64)
                .map_or(AWAIT_AT_MOST, Duration::from_secs)
                .min(AWAIT_AT_MOST);
            let result = match self.follow(&who, &id, limit, &ctx).await {
                Ok(view) => approval_result(&view),
                Err(e) => tool_error(&e),
            };
            return Ok(result.into());
        }
        if request.name == DISCOVER_TOOL {
            let connection = text("connection")
                .ok_or_else(|| ErrorData::invalid_params("connection is needed", None))?;
            let result = match self.app.control.discover(&who, &connection).await {
                Ok(objects) => CallToolResult::structured(json!({
                    "connection": connection,
                    "objects": objects,
                })),
                Err(e) => tool_error(&e),
            };
            return Ok(result.into());
        }
        let offers = self.offers(&who).await?;
        let Some((_, offer)) = named(&offers)
            .into_iter()
            .find(|(name, _)| *name == request.name)
        else {
            // Not offered to this caller (or no such tool): the protocol's unknown-tool error,
            // the same whether it exists for someone else or not at all.
            return Err(ErrorData::invalid_params(
                format!(
                    "no tool `{}` for this caller; tools/list has the ones it may call",
                    request.name
                ),
                None,
            ));
        };
        let rationale = request
            .meta
            .as_ref()
            .and_then(|m| m.get("rationale"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(self
            .call_offer(&who, offer, arguments, rationale, &ctx)
            .await
            .into())
    }
}

/// Serves `who` over stdin and stdout until the client closes them (`airlock mcp`). Nothing else
/// may write to stdout meanwhile: it is the transport.
pub async fn serve_stdio(
    control: Arc<airlock::control::ControlPlane>,
    who: Principal,
) -> Result<(), String> {
    use rmcp::ServiceExt as _;
    let running = Gateway::for_principal(control, who)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP over stdio could not start: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("MCP over stdio failed: {e}"))?;
    Ok(())
}

/// `/mcp`: the streamable HTTP transport, behind the same bearer check as `/v1` (a refused
/// token is the same 401 problem document, so a client knows to ask for a token).
pub fn router(app: App) -> axum::Router<App> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let config = StreamableHttpServerConfig::default()
        // Every request stands alone (its token decides what it sees): no sessions to keep,
        // and any node can answer any request.
        .with_legacy_session_mode(false)
        // Answers stream as server-sent events, so a call that waits for an approver can
        // report progress.
        .with_json_response(false)
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        .with_max_request_body_bytes(crate::MAX_BODY_BYTES)
        // The Host check guards servers that trust whoever reaches them (DNS rebinding from a
        // browser); every request here needs a bearer token, which a rebound page does not
        // have, and the server is reached by whatever name its operators give it.
        .disable_allowed_hosts();
    let gateway_app = app.clone();
    let service = StreamableHttpService::new(
        move || Ok(Gateway::per_request(gateway_app.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(app, authenticate))
}

/// The bearer token to the principal, which the handler finds in the request's extensions.
async fn authenticate(
    axum::extract::State(app): axum::extract::State<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let (mut parts, body) = request.into_parts();
    match crate::auth::Caller::from_request_parts(&mut parts, &app).await {
        Ok(crate::auth::Caller(who)) => {
            parts.extensions.insert(who);
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
        Err(problem) => problem.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock::manifest::Classification;

    fn offer(connection: &str, operation: &str) -> ToolOffer {
        ToolOffer {
            connection: connection.into(),
            connector: "sandbox".into(),
            operation: operation.into(),
            description: String::new(),
            params_schema: json!({"properties": {"id": {"type": "string"}}}),
            access: Access::Read,
            risk: Risk::Low,
            classification: Classification::Internal,
            needs_approval: false,
            writes_enabled: false,
        }
    }

    #[test]
    fn tool_names_stay_in_what_every_host_accepts_and_never_collide() {
        let long = "x".repeat(100);
        let offers = [
            offer("a.b", "get"),
            offer("a_b", "get"),
            offer("a:b", "get"),
            offer("crm", "list"),
            offer(&long, "get"),
            offer(&long, "get-2"),
        ];
        let names: Vec<String> = named(&offers).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names[..4],
            ["a_b__get", "a_b__get_2", "a_b__get_3", "crm__list"]
        );
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for name in &names {
            assert!(
                !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{name}"
            );
        }
    }

    #[test]
    fn input_schemas_are_object_schemas() {
        assert_eq!(
            Value::Object((*input_schema(&json!({"properties": {}}))).clone()),
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(
            Value::Object((*input_schema(&json!(true))).clone()),
            json!({"type": "object"})
        );
        assert_eq!(
            input_schema(&json!({"type": "object", "required": ["id"]}))["required"],
            json!(["id"])
        );
    }
}
