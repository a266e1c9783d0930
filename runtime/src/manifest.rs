//! The host's own view of a connector's manifest and errors: plain Rust types with serde, so the
//! CLI and (later) the control plane can print and store them. Converted once from the generated
//! WIT types at load.

use crate::bindings::types as wit;
use crate::invocation::Access;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Risk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Risk {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "low" => Ok(Risk::Low),
            "medium" => Ok(Risk::Medium),
            "high" => Ok(Risk::High),
            "critical" => Ok(Risk::Critical),
            other => Err(format!(
                "unknown risk `{}`: expected low, medium, high or critical",
                other.escape_debug()
            )),
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Public,
    Internal,
    Confidential,
    Restricted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Operation {
    pub name: String,
    pub description: String,
    pub access: Access,
    pub risk: Risk,
    pub classification: Classification,
    pub params_schema: serde_json::Value,
    /// Non-GET requests this `read` operation declares as reads (see the WIT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_routes: Vec<String>,
}

/// Parses a read route, `METHOD scheme://host[:port][/path-prefix]`.
pub fn parse_read_route(route: &str) -> Result<(String, crate::egress::Grant), String> {
    let (method, target) = route
        .trim()
        .split_once(' ')
        .ok_or_else(|| format!("read route `{route}`: expected `METHOD scheme://host[/path]`, e.g. `POST https://api.example.com/graphql`"))?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "read route `{route}`: the method must be uppercase letters, e.g. POST"
        ));
    }
    let grant = crate::egress::Grant::parse(target.trim())?;
    Ok((method.to_owned(), grant))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub operations: Vec<Operation>,
    pub config_schema: serde_json::Value,
    pub hosts: Vec<String>,
    /// A prototype's writes are dry runs by default (see the control plane's `Resolved::dry_run`).
    pub prototype: bool,
}

impl Manifest {
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|op| op.name == name)
    }

    /// Checks what the host relies on: a usable id, unique operation names, and schemas that
    /// are JSON. Each problem is named.
    pub(crate) fn from_wit(m: wit::ConnectorManifest) -> Result<Self, String> {
        crate::invocation::validate_id("connector id", &m.id)?;
        let parse = |what: &str, text: &str| -> Result<serde_json::Value, String> {
            serde_json::from_str(text).map_err(|e| format!("{what} is not valid JSON: {e}"))
        };
        let mut operations = Vec::with_capacity(m.operations.len());
        for op in m.operations {
            if op.name.is_empty() {
                return Err("an operation has an empty name".into());
            }
            if operations.iter().any(|o: &Operation| o.name == op.name) {
                return Err(format!("operation `{}` is declared twice", op.name));
            }
            for route in &op.read_routes {
                if op.access == wit::Access::Write {
                    return Err(format!(
                        "operation `{}` is `write`; read routes belong to `read` operations",
                        op.name
                    ));
                }
                parse_read_route(route)?;
            }
            operations.push(Operation {
                read_routes: op.read_routes,
                params_schema: parse(
                    &format!("params schema of `{}`", op.name),
                    &op.params_schema,
                )?,
                name: op.name,
                description: op.description,
                access: match op.access {
                    wit::Access::Read => Access::Read,
                    wit::Access::Write => Access::Write,
                },
                risk: match op.risk {
                    wit::Risk::Low => Risk::Low,
                    wit::Risk::Medium => Risk::Medium,
                    wit::Risk::High => Risk::High,
                    wit::Risk::Critical => Risk::Critical,
                },
                classification: match op.classification {
                    wit::Classification::Public => Classification::Public,
                    wit::Classification::Internal => Classification::Internal,
                    wit::Classification::Confidential => Classification::Confidential,
                    wit::Classification::Restricted => Classification::Restricted,
                },
            });
        }
        Ok(Manifest {
            config_schema: parse("config schema", &m.config_schema)?,
            id: m.id,
            name: m.name,
            version: m.version,
            description: m.description,
            operations,
            hosts: m.hosts,
            prototype: m.prototype,
        })
    }
}

/// An object (table, resource type) a connector exposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectInfo {
    pub name: String,
    pub description: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub required: bool,
    pub description: String,
}

impl From<wit::ObjectInfo> for ObjectInfo {
    fn from(o: wit::ObjectInfo) -> Self {
        ObjectInfo {
            name: o.name,
            description: o.description,
            fields: o
                .fields
                .into_iter()
                .map(|f| Field {
                    name: f.name,
                    ty: f.type_,
                    required: f.required,
                    description: f.description,
                })
                .collect(),
        }
    }
}

/// The error variants a connector can return, as the caller sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConnectorError {
    #[error("invalid params: {message}")]
    InvalidParams { message: String },
    #[error("not found: {message}")]
    NotFound { message: String },
    #[error("upstream refused the credentials: {message}")]
    Unauthorized { message: String },
    #[error("upstream error {status}: {message}")]
    Upstream { status: u16, message: String },
    #[error("rate limited{}: {message}", .retry_after_ms.map(|ms| format!(" (retry after {ms} ms)")).unwrap_or_default())]
    RateLimited {
        retry_after_ms: Option<u64>,
        message: String,
    },
    #[error("connector internal error: {message}")]
    Internal { message: String },
}

/// Bytes of a connector's error message kept: the guest chooses the text, and it travels into
/// errors, logs and the audit record.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 8 << 10;

impl From<wit::ConnectorError> for ConnectorError {
    fn from(e: wit::ConnectorError) -> Self {
        let mut error = Self::from_unbounded(e);
        let (ConnectorError::InvalidParams { message }
        | ConnectorError::NotFound { message }
        | ConnectorError::Unauthorized { message }
        | ConnectorError::Upstream { message, .. }
        | ConnectorError::RateLimited { message, .. }
        | ConnectorError::Internal { message }) = &mut error;
        if message.len() > MAX_ERROR_MESSAGE_BYTES {
            *message =
                crate::capability::logging::truncate(message, MAX_ERROR_MESSAGE_BYTES).into_owned();
        }
        error
    }
}

impl ConnectorError {
    fn from_unbounded(e: wit::ConnectorError) -> Self {
        match e {
            wit::ConnectorError::InvalidParams(message) => {
                ConnectorError::InvalidParams { message }
            }
            wit::ConnectorError::NotFound(message) => ConnectorError::NotFound { message },
            wit::ConnectorError::Unauthorized(message) => ConnectorError::Unauthorized { message },
            wit::ConnectorError::Upstream(u) => ConnectorError::Upstream {
                status: u.status,
                message: u.message,
            },
            wit::ConnectorError::RateLimited(r) => ConnectorError::RateLimited {
                retry_after_ms: r.retry_after_ms,
                message: r.message,
            },
            wit::ConnectorError::Internal(message) => ConnectorError::Internal { message },
        }
    }
}
