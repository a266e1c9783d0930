//! Errors as RFC 9457 problem documents (`application/problem+json`): the HTTP status from the
//! kind of failure, and the core's own data (kind, rule, remedy) as members, so a client can act
//! on a denial without parsing its text.

use airlock::InvokeError;
use airlock::control::ControlError;
use airlock::manifest::ConnectorError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A problem document, ready to answer with.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(skip)]
    #[schema(ignore)]
    pub status: StatusCode,
    /// A URI naming the kind: `urn:airlock:problem:<kind>`.
    #[serde(rename = "type")]
    pub kind_uri: String,
    pub title: String,
    #[serde(rename = "status")]
    pub status_code: u16,
    pub detail: String,
    /// The control plane's stable name for the kind of failure (`not-found`, `denied`...).
    pub kind: String,
    /// The policy rule that refused, for denials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What would allow or repair it (see `airlock::remedy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<airlock::remedy::Remedy>,
    /// Seconds to wait before retrying (rate limits); also sent as `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Field-level problems of invalid input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            kind_uri: format!("urn:airlock:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status_code: status.as_u16(),
            detail: detail.into(),
            kind: kind.to_owned(),
            rule: None,
            remedy: None,
            retry_after: None,
            errors: Vec::new(),
        }
    }

    /// Every refused bearer gets the same answer, whatever the reason (the audit log has it).
    pub fn unauthenticated() -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid API token is needed: send `Authorization: Bearer alk_...` (an admin makes one: `airlock token create`, or POST /v1/tokens)",
        )
    }
}

/// The HTTP status for a control-plane error.
fn status_of(e: &ControlError) -> StatusCode {
    use ConnectorError as C;
    match e {
        ControlError::NotFound { .. } => StatusCode::NOT_FOUND,
        ControlError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ControlError::Denied { .. } => StatusCode::FORBIDDEN,
        ControlError::Pending(_) => StatusCode::ACCEPTED,
        ControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Conflict { .. } => StatusCode::CONFLICT,
        ControlError::Load(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Vault(_) | ControlError::Keys(_) | ControlError::State(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        ControlError::Invoke(i) => match i {
            InvokeError::Denied { .. } => StatusCode::FORBIDDEN,
            InvokeError::BadParams(_) | InvokeError::Connector(C::InvalidParams { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            InvokeError::UnknownOperation { .. } | InvokeError::Connector(C::NotFound { .. }) => {
                StatusCode::NOT_FOUND
            }
            // The connector's upstream failed or refused it: a gateway's failure, not ours.
            InvokeError::Connector(
                C::Upstream { .. } | C::Unauthorized { .. } | C::RateLimited { .. },
            ) => StatusCode::BAD_GATEWAY,
            InvokeError::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
            InvokeError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // The guest failed (trap, panic, limits, bad output): the call failed, the host is
            // fine; 502 says the fault is behind us.
            InvokeError::Connector(C::Internal { .. })
            | InvokeError::MemoryLimit { .. }
            | InvokeError::StackOverflow { .. }
            | InvokeError::Panic { .. }
            | InvokeError::Trap { .. }
            | InvokeError::OutputTooLarge { .. }
            | InvokeError::InvalidOutput(_) => StatusCode::BAD_GATEWAY,
            InvokeError::Invalid(_) | InvokeError::Host(_) | InvokeError::HostPanic { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        },
    }
}

impl From<&ControlError> for Problem {
    fn from(e: &ControlError) -> Self {
        let status = status_of(e);
        // A denial's text without its "(rule `...`)": the rule is a member of its own here.
        let detail = match e {
            ControlError::Denied { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        let mut p = Problem::new(status, e.kind(), detail);
        let rule = e.rule();
        p.rule = (!rule.is_empty()).then_some(rule);
        p.remedy = e.remedy();
        if let ControlError::Invalid(problems) = e {
            p.errors = problems.clone();
        }
        if let ControlError::RateLimited { retry_after, .. } = e {
            p.retry_after = Some(retry_after.as_secs_f64().ceil() as u64);
        }
        p
    }
}

impl From<ControlError> for Problem {
    fn from(e: ControlError) -> Self {
        Problem::from(&e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry = self.retry_after;
        let unauthenticated = status == StatusCode::UNAUTHORIZED;
        let mut response = (status, axum::Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = retry {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if unauthenticated {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"airlock\""),
            );
        }
        response
    }
}
