//! What would allow a refused action, or repair a failed one, as data.
//!
//! The host and the control plane say *what* would help (grant this destination, enable that
//! connection); each front end says *how*, in its own terms: the CLI as a command line
//! (`cli::remedy`), the HTTP API as JSON (this type serializes with an `action` tag), MCP as a
//! sentence an agent can relay. So no message in the core names a command or a flag, and a new
//! front end needs no new wording in the core.
//!
//! [`Remedy`]'s `Display` is the front-end-neutral sentence, for embedders and for records.

use std::fmt;

/// One action that would allow, or repair, what failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Remedy {
    /// Add `origin` (`scheme://host:port`) to the connection's egress grants.
    GrantEgress { connection: String, origin: String },
    /// The connection is disabled.
    EnableConnection { connection: String },
    /// Add the operation to the connection's allowed operations.
    AllowOperation {
        connection: String,
        operation: String,
    },
    /// The connection is read-only; a write needs writes enabled.
    EnableWrites { connection: String },
    /// An agent acts only through a grant per connection and operation, given by an admin.
    GrantAgent {
        agent: String,
        connection: Option<String>,
        operation: Option<String>,
    },
    /// Wait, or raise the connection's invocations per minute.
    RaiseRateLimit { connection: String },
    /// The connector is not in the registry.
    RegisterConnector { connector: String },
    /// The connection exists: change it rather than create it.
    UpdateConnection { connection: String },
    /// The name is wrong, or in another tenant: see this tenant's connections.
    ListConnections,
    /// The id is wrong, or in another tenant: see this tenant's approval requests.
    ListApprovals,
    /// The invocation waits for an approver; wait for the decision (and the result).
    WaitForApproval { request: String },
    /// No master key is set: make one.
    CreateMasterKey,
    /// Run the master-key rotation (again), holding the old key and the new one.
    RotateMasterKey,
    /// Compare key ids to find which key is which.
    IdentifyMasterKey,
    /// A sealed value is damaged: set the connection's credentials or config again.
    ResealValue,
}

impl fmt::Display for Remedy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remedy::GrantEgress { connection, origin } => {
                write!(f, "grant connection `{connection}` egress to {origin}")
            }
            Remedy::EnableConnection { connection } => {
                write!(f, "enable connection `{connection}`")
            }
            Remedy::AllowOperation {
                connection,
                operation,
            } => write!(
                f,
                "add `{operation}` to connection `{connection}`'s allowed operations"
            ),
            Remedy::EnableWrites { connection } => {
                write!(f, "enable writes on connection `{connection}`")
            }
            Remedy::GrantAgent {
                agent,
                connection,
                operation,
            } => {
                write!(f, "an admin grants agent `{agent}` ")?;
                match (connection, operation) {
                    (Some(c), Some(o)) => write!(f, "operation `{o}` on connection `{c}`"),
                    _ => write!(f, "the operation on the connection"),
                }
            }
            Remedy::RaiseRateLimit { connection } => write!(
                f,
                "retry later, or raise connection `{connection}`'s invocations per minute"
            ),
            Remedy::RegisterConnector { connector } => {
                write!(f, "register connector `{connector}`")
            }
            Remedy::UpdateConnection { connection } => {
                write!(f, "change connection `{connection}` instead of creating it")
            }
            Remedy::ListConnections => f.write_str("list this tenant's connections"),
            Remedy::ListApprovals => f.write_str("list this tenant's approval requests"),
            Remedy::WaitForApproval { request } => {
                write!(f, "wait for the decision on request `{request}`")
            }
            Remedy::CreateMasterKey => f.write_str("create a new master key"),
            Remedy::RotateMasterKey => {
                f.write_str("run the master-key rotation again, holding the old and the new key")
            }
            Remedy::IdentifyMasterKey => f.write_str("compare the keys' ids"),
            Remedy::ResealValue => f.write_str("set the connection's credentials or config again"),
        }
    }
}

/// A failure that knows what would repair it.
pub trait Remedied {
    fn remedy(&self) -> Option<Remedy>;
}
