//! The operations a principal may call, described for a front end that offers them as tools (MCP
//! for agents): which connection, what the operation does, the params it takes, whether it
//! writes and how risky it is. Calling one goes through [`ControlPlane::invoke_with`] like any
//! invocation; this only says what to offer.

use super::authz::{Action, Context, authorize};
use super::{ControlPlane, Principal, PrincipalKind, Result};
use crate::invocation::{Access, Role};
use crate::manifest::{Classification, Risk};

/// One (connection, operation) pair a principal may call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ToolOffer {
    pub connection: String,
    pub connector: String,
    pub operation: String,
    /// The manifest's description of the operation.
    pub description: String,
    /// The operation's `params-schema` (a JSON Schema object).
    pub params_schema: serde_json::Value,
    pub access: Access,
    /// The effective risk: the manifest's claim, raised by the connection's policy.
    pub risk: Risk,
    pub classification: Classification,
    /// Whether a call waits for a person's approval before it runs.
    pub needs_approval: bool,
    /// Whether the connection lets writes through (a write on a read-only connection is
    /// refused when called).
    pub writes_enabled: bool,
}

impl ControlPlane {
    /// The operations `who` may call, in connection and operation order. An agent is offered
    /// exactly the pairs it is granted; a user, every allowed operation its role may invoke.
    /// Policy that depends on the call (a disabled connection, read-only, the params) is
    /// decided when it is called, with the rule named.
    pub async fn offered_tools(&self, who: &Principal) -> Result<Vec<ToolOffer>> {
        let mut offers = Vec::new();
        for record in self.state.list_connections(&who.tenant).await? {
            let resolved = match self.resolve(&who.tenant, &record.name).await {
                Ok(resolved) => resolved,
                Err(e) => {
                    // One damaged connection must not hide the others' tools.
                    tracing::warn!(connection = %record.name, error = %e, "connection not offered as tools");
                    continue;
                }
            };
            for op in &resolved.manifest.operations {
                let offered = match who.kind {
                    PrincipalKind::Agent => {
                        resolved.grants.contains(&(who.id.clone(), op.name.clone()))
                    }
                    PrincipalKind::User => {
                        let allowed = resolved
                            .record
                            .allowed_operations
                            .as_ref()
                            .is_none_or(|ops| ops.contains(&op.name));
                        let required_role = resolved
                            .record
                            .required_roles
                            .get(&op.name)
                            .and_then(|r| r.parse::<Role>().ok());
                        allowed
                            && authorize(
                                who,
                                Action::for_access(op.access),
                                Context {
                                    required_role,
                                    agent_granted: false,
                                },
                            )
                            .allowed
                    }
                };
                if !offered {
                    continue;
                }
                let risk = resolved.approval.risk(&op.name, op.risk);
                // As the call decides it: a dry run applies nothing, so it needs no approver.
                let needs_approval = !resolved.dry_run(&op.name, self.settings.dry_run)
                    && self.approval_needed(&resolved, &op.name).is_some();
                offers.push(ToolOffer {
                    connection: resolved.record.name.clone(),
                    connector: resolved.record.connector.clone(),
                    operation: op.name.clone(),
                    description: op.description.clone(),
                    params_schema: op.params_schema.clone(),
                    access: op.access,
                    risk,
                    classification: resolved
                        .data
                        .classification
                        .get(&op.name)
                        .map_or(op.classification, |&c| c.max(op.classification)),
                    needs_approval,
                    writes_enabled: resolved.record.writes_enabled,
                });
            }
        }
        Ok(offers)
    }
}
