//! The operations a principal may call, described for a front end that offers them as tools (MCP
//! for agents): which connection, what the operation does, the params it takes, whether it
//! writes and how risky it is. Calling one goes through [`ControlPlane::invoke_with`] like any
//! invocation; this only says what to offer.

use super::authz::{Action, Context, authorize};
use super::entry::AuditEntry;
use super::{ControlError, ControlPlane, Principal, PrincipalKind, Result};
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

    /// What the connection's system holds (its objects and their fields, as the connector's
    /// `discover` answers), so an agent can form its params. Open to whoever may read through
    /// the connection: an agent with a grant on it, a user who may invoke reads. Audited as a
    /// read named `discover`.
    pub async fn discover(&self, who: &Principal, name: &str) -> Result<serde_json::Value> {
        let entry = AuditEntry::new(who, Action::InvokeRead, name).operation("discover");
        let resolved = match self.resolve(&who.tenant, name).await {
            Ok(resolved) => resolved,
            Err(e) => {
                let refused = super::authz::Decision::refused("connection-lookup");
                self.audit(&entry, &refused, Err(&e)).await;
                return Err(e);
            }
        };
        let agent_granted = resolved.grants.iter().any(|(agent, _)| *agent == who.id);
        let decision = self
            .check(
                &entry,
                Context {
                    required_role: None,
                    agent_granted,
                },
            )
            .await?;
        let result = async {
            let connector = self.loaded(&resolved).await?;
            let caller = resolved.caller(who);
            let outcome = self
                .executor
                .call(connector, &caller, &resolved.env, crate::Call::Discover)
                .await
                .map_err(ControlError::Invoke)?;
            Ok(serde_json::from_str(&outcome.output).unwrap_or(serde_json::Value::Null))
        }
        .await;
        self.audit(&entry, &decision, result.as_ref().map(|_| ()))
            .await;
        result
    }
}
