//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` descriptions and the
//! types they answer with, and completed here with what every authenticated endpoint shares: the
//! bearer scheme and the problem documents its failures answer with. Served at [`PATH`].

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};

/// Where the document is served.
pub const PATH: &str = "/v1/openapi.json";

/// The security scheme's name in the document.
const BEARER: &str = "bearer";

/// `api` with the server's description, the bearer scheme, and on every operation that takes a
/// token the failures any such operation can answer with, each a problem document.
pub fn complete(mut api: OpenApi) -> OpenApi {
    api.info.title = "Airlock".to_owned();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api.info.description = Some(
        "Airlock's control plane over HTTP: connectors, connections, credentials, invocations, \
         approvals, API tokens, audit and health. Every `/v1` request carries an API token as \
         `Authorization: Bearer alk_...`; failures are RFC 9457 problem documents carrying the \
         control plane's kind, the rule that refused and the remedy."
            .to_owned(),
    );
    api.info.license = None;
    let components = api.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        BEARER.to_owned(),
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("alk_<id>_<secret>")
                .description(Some(
                    "An API token (`airlock token create`, or POST /v1/tokens)",
                ))
                .build(),
        )
        .into(),
    );
    for (path, item) in api.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            // OpenAPI wants a description on every response; the status's reason serves.
            for (status, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Answer")
                        .to_owned();
                }
            }
            if operation.security.is_none() {
                operation.security =
                    Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                add_problems(path, method, operation);
            }
        }
    }
    api
}

/// The operations of a path item, with their methods.
fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
    .collect()
}

/// The failures an authenticated operation can answer with, by what it takes.
fn add_problems(path: &str, method: &str, operation: &mut Operation) {
    let has_body = operation.request_body.is_some();
    let has_params = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let runs_connector = path.contains("/operations/")
        || path.ends_with("/test")
        || path.ends_with("/approve")
        || path.ends_with("/wait");
    let mut add = |status: &str, why: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| problem(why).into());
    };
    add(
        "401",
        "No token, or one that is unknown, revoked or expired",
    );
    add(
        "403",
        "Denied: the problem names the rule and what would allow it",
    );
    add(
        "429",
        "Rate limited (the connection's, or failed authentications from this source); see `Retry-After`",
    );
    add(
        "500",
        "The server failed (its store or its keys); the log has the cause",
    );
    if has_params {
        add("400", "A path or query parameter that does not fit");
    }
    if path.contains('{') || has_body {
        // What the path or the body names (a connection, a connector).
        add("404", "Not found, or in another tenant");
    }
    if has_body || method != "get" || has_params {
        add(
            "422",
            "Invalid input: the problem's `errors` name each field",
        );
    }
    if has_body {
        add("413", "The body is over the size limit");
    }
    if method != "get" {
        add(
            "409",
            "Conflicts with the current state (it exists, or was decided)",
        );
    }
    if runs_connector {
        add(
            "502",
            "The connector or its upstream failed (trap, limits, upstream error)",
        );
        add("503", "Every instance slot is busy; retry");
        add("504", "The invocation passed its deadline");
    }
}

fn problem(description: &str) -> Response {
    let mut response = Response::new(description);
    response.content.insert(
        "application/problem+json".to_owned(),
        Content::new(Some(Ref::from_schema_name("Problem"))).into(),
    );
    response
}
