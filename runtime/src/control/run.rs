//! Running an allowed call: the operation-level decision every invocation passes (at once, or
//! again when an approved request runs), the durable intent record of a write, and the call
//! into the sandbox, for real or with its effects captured (a dry run).
//!
//! Below invocation and approvals, which both use it; it asks for no approval itself.

use super::authz::{Action, Context, Decision, PrincipalKind};
use super::entry::AuditEntry;
use super::resolve::Resolved;
use super::state::ConnectionStatus;
use super::{ControlError, ControlPlane, Principal, Result};
use crate::executor::{Call, Outcome};
use crate::invocation::{Access, Role};
use crate::params::Params;
use crate::remedy::Remedy;
use std::time::Instant;

/// An answer the host gives without running the guest (a cache hit, a dry run's report).
pub(super) fn host_outcome(output: String, started: Instant) -> Outcome {
    Outcome {
        output,
        denials: Vec::new(),
        invocation_id: uuid::Uuid::new_v4().simple().to_string(),
        duration: started.elapsed(),
        classification: None,
        masked: 0,
        cached: false,
    }
}

impl ControlPlane {
    /// Every operation-level check, in order; the first that fails decides.
    pub(super) fn decide(
        &self,
        who: &Principal,
        resolved: &Resolved,
        operation: &str,
        access: Access,
        params: Option<&Params>,
    ) -> Decision {
        let record = &resolved.record;
        let refuse = |rule: &'static str, reason: String, remedy: Option<Remedy>| Decision {
            allowed: false,
            rule,
            reason,
            remedy,
        };
        let deny = |rule: &'static str, reason: String| refuse(rule, reason, None);
        let connection = || record.name.clone();
        if record.status == ConnectionStatus::Disabled {
            return refuse(
                "connection-disabled",
                format!("connection `{}` is disabled", record.name),
                Some(Remedy::EnableConnection {
                    connection: connection(),
                }),
            );
        }
        if !resolved.connector_enabled {
            return deny(
                "connector-disabled",
                format!(
                    "connector `{}` version {} is disabled in the registry",
                    record.connector, resolved.manifest.version
                ),
            );
        }
        if let Some(allowed) = &record.allowed_operations
            && !allowed.iter().any(|op| op == operation)
            && resolved.manifest.operation(operation).is_some()
        {
            return refuse(
                "operation-not-allowed",
                format!(
                    "operation `{operation}` is not in connection `{}`'s allowed operations ({})",
                    record.name,
                    allowed.join(", "),
                ),
                Some(Remedy::AllowOperation {
                    connection: connection(),
                    operation: operation.to_owned(),
                }),
            );
        }
        if let (Some(allowed), Some(object)) =
            (&record.allowed_objects, params.and_then(Params::object))
            && !allowed.iter().any(|o| o == object)
        {
            return deny(
                "object-not-allowed",
                format!(
                    "object `{object}` is not in connection `{}`'s allowed objects ({})",
                    record.name,
                    allowed.join(", ")
                ),
            );
        }
        // A stored role that does not read fails closed: it would otherwise drop a requirement.
        let required_role: Option<Role> = match record.required_roles.get(operation) {
            None => None,
            Some(text) => match text.parse() {
                Ok(role) => Some(role),
                Err(_) => {
                    return deny(
                        "connection-required-role",
                        format!(
                            "connection `{}`'s stored required role for `{operation}` is `{}`, which is not a role; \
                             nothing runs until it is set again",
                            record.name,
                            crate::invocation::shown(text)
                        ),
                    );
                }
            },
        };
        let agent_granted = who.kind == PrincipalKind::Agent
            && resolved
                .grants
                .contains(&(who.id.clone(), operation.to_owned()));
        let decision = super::authz::authorize(
            who,
            Action::for_access(access),
            Context {
                required_role,
                agent_granted,
            },
        );
        if !decision.allowed {
            // The rules table knows the agent; here is where it needs the grant.
            let remedy = match decision.remedy {
                Some(Remedy::GrantAgent { agent, .. }) => Some(Remedy::GrantAgent {
                    agent,
                    connection: Some(connection()),
                    operation: Some(operation.to_owned()),
                }),
                other => other,
            };
            return Decision { remedy, ..decision };
        }
        match &self.settings.invoke_role {
            Err(reason) => return deny("host-required-role", reason.clone()),
            Ok(host_role) if who.role < *host_role => {
                return deny(
                    "host-required-role",
                    format!(
                        "invocations on this host need role {host_role:?} or higher (CONNECTOR_RBAC_ROLE); {} has {:?}",
                        who.id, who.role
                    ),
                );
            }
            Ok(_) => {}
        }
        if access == Access::Write && !record.writes_enabled {
            return refuse(
                "read-only-connection",
                format!(
                    "operation `{operation}` writes, and connection `{}` is read-only (writes_enabled = false)",
                    record.name
                ),
                Some(Remedy::EnableWrites {
                    connection: connection(),
                }),
            );
        }
        decision
    }

    /// Runs `operation` in the sandbox as `who` and shapes its result (classification, masking):
    /// the one place an allowed call reaches the guest, whether it runs at once or after approval.
    pub(super) async fn run(
        &self,
        who: &Principal,
        resolved: &Resolved,
        operation: &str,
        params: &Params,
        invocation_id: &str,
        allowed_by: &'static str,
    ) -> Result<Outcome> {
        if resolved.access(operation) == Access::Write {
            self.record_intent(who, resolved, operation, params, invocation_id, allowed_by)
                .await?;
        }
        let call = Call::Invoke {
            operation: operation.into(),
            params: params.clone(),
        };
        let connector = self.loaded(resolved).await?;
        let mut outcome = self
            .executor
            .call_with_id(
                connector,
                &resolved.caller(who),
                &resolved.env,
                call,
                Some(invocation_id.to_owned()),
            )
            .await
            .map_err(ControlError::Invoke)?;
        resolved.shape(operation, &mut outcome);
        Ok(outcome)
    }

    /// Fail closed for real: a write changes the outside world, so its record ("started") is
    /// stored, durably, before the guest runs; if the store will not take it, nothing runs.
    /// The outcome follows in a second record with the same invocation id.
    async fn record_intent(
        &self,
        who: &Principal,
        resolved: &Resolved,
        operation: &str,
        params: &Params,
        invocation_id: &str,
        allowed_by: &'static str,
    ) -> Result<()> {
        let entry = AuditEntry {
            params: Some(params.clone()),
            invocation_id: Some(invocation_id.to_owned()),
            ..AuditEntry::new(who, Action::InvokeWrite, &resolved.record.name).operation(operation)
        };
        let mut record = entry.record(&Decision::allowed_by(allowed_by), Ok(()));
        record.outcome = super::audit::OUTCOME_STARTED.into();
        self.audit
            .record_durable(record)
            .await
            .map_err(|e| {
                ControlError::denied(
                    super::RULE_AUDIT_UNAVAILABLE,
                    format!(
                        "{}; a write runs only once its audit record is stored, so nothing was sent. Fix the store (disk space, permissions, locks) and retry",
                        e.reason
                    ),
                )
            })
    }

    /// Runs `operation` with its write effects captured instead of applied (see
    /// `crate::capture`), as `who`: `{"dry_run": true, "effects": [...], "result": ...}`, or an
    /// `"error"` for a guest that failed.
    pub(crate) async fn dry_run(
        &self,
        who: &Principal,
        resolved: &Resolved,
        operation: &str,
        params: &Params,
    ) -> serde_json::Value {
        let capture = std::sync::Arc::new(crate::capture::Capture::default());
        let mut env = resolved.env.clone();
        env.keyvalue = std::sync::Arc::new(crate::capture::CapturingStore::new(
            env.keyvalue.clone(),
            capture.clone(),
        ));
        env.egress.capture = Some(capture.clone());
        let call = Call::Invoke {
            operation: operation.into(),
            params: params.clone(),
        };
        let result = match self.loaded(resolved).await {
            Ok(connector) => self
                .executor
                .call(connector, &resolved.caller(who), &env, call)
                .await
                .map_err(ControlError::Invoke),
            Err(e) => Err(e),
        };
        let mut answer = serde_json::json!({
            "dry_run": true,
            "effects": capture.effects(),
        });
        match result {
            Ok(mut outcome) => {
                resolved.shape(operation, &mut outcome);
                answer["result"] =
                    serde_json::from_str(&outcome.output).unwrap_or(serde_json::Value::Null);
            }
            Err(e) => answer["error"] = serde_json::Value::String(e.to_string()),
        }
        answer
    }
}
