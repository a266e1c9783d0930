//! Who is invoking what: the context the host fixes before the guest runs.
//!
//! The guest cannot read or change it through any import; every capability consults it to decide
//! an effect. It is built by the caller (CLI, control plane) and moved into the invocation's own
//! Store, so two invocations never share one (unlike a swapped "active identity" slot).

use std::fmt;

/// Whether an operation reads or writes the system it talks to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

/// The role hierarchy from the seeds: each role includes the ones before it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub enum Role {
    Viewer,
    Author,
    Operator,
    Auditor,
    Compliance,
    Admin,
}

impl Role {
    /// The lowercase name, as stored and as the CLI takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Author => "author",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Compliance => "compliance",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "author" => Ok(Role::Author),
            "operator" => Ok(Role::Operator),
            "auditor" => Ok(Role::Auditor),
            "compliance" => Ok(Role::Compliance),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "unknown role `{s}`: expected one of viewer, author, operator, auditor, compliance, admin"
            )),
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

/// A tenant, connection or principal identifier: non-empty, at most 128 bytes, of
/// `[A-Za-z0-9._:@-]`. Identifiers become parts of storage keys, so anything that could act as a
/// separator or escape is refused at the edge.
pub fn validate_id(kind: &str, id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} `{}`: use 1-128 characters of letters, digits and . _ : @ -",
            shown(id)
        ))
    }
}

/// A name as it may appear in a message: escaped (no control characters or terminal sequences
/// reach a log line or a terminal) and cut to 64 characters, with its full length said.
pub fn shown(name: &str) -> String {
    const SHOWN_CHARS: usize = 64;
    let escaped: String = name
        .chars()
        .take(SHOWN_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if name.chars().count() > SHOWN_CHARS {
        format!("{escaped}... ({} bytes)", name.len())
    } else {
        escaped
    }
}

/// The fixed context of one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Unique per invocation; tags logs and audit records.
    pub id: String,
    pub tenant: String,
    pub principal: String,
    pub role: Role,
    pub connection: String,
    pub operation: String,
    /// The access the manifest declares for `operation`, which the host holds the guest to.
    pub access: Access,
}

impl Invocation {
    /// A context with a fresh id. Identifiers are validated so that they can be used as storage
    /// namespaces.
    pub fn new(
        tenant: &str,
        principal: &str,
        role: Role,
        connection: &str,
        operation: &str,
        access: Access,
    ) -> Result<Self, String> {
        Self::with_id(
            uuid::Uuid::new_v4().simple().to_string(),
            tenant,
            principal,
            role,
            connection,
            operation,
            access,
        )
    }

    /// A context under an id the caller chose (the control plane records it before the guest
    /// runs).
    pub fn with_id(
        id: String,
        tenant: &str,
        principal: &str,
        role: Role,
        connection: &str,
        operation: &str,
        access: Access,
    ) -> Result<Self, String> {
        validate_id("tenant", tenant)?;
        validate_id("principal", principal)?;
        validate_id("connection", connection)?;
        Ok(Invocation {
            id,
            tenant: tenant.to_owned(),
            principal: principal.to_owned(),
            role,
            connection: connection.to_owned(),
            operation: operation.to_owned(),
            access,
        })
    }
}
