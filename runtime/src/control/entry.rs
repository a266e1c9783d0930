//! The audit record of one request, built in one place.
//!
//! An [`AuditEntry`] is fixed where a request starts (who, which action, on what, when) and
//! filled in as the request learns more (the action a connection's operation turns out to be,
//! the parsed params, the invocation id); [`AuditEntry::record`] completes it with the decision
//! and the result. Every exit of a request records through it, so no exit can forget a field.

use super::authz::{Action, Decision};
use super::{ControlError, Principal, audit, state};
use crate::params::Params;
use std::time::Instant;

pub(crate) struct AuditEntry<'a> {
    pub who: &'a Principal,
    pub action: Action,
    pub target: &'a str,
    pub operation: Option<&'a str>,
    pub params: Option<Params>,
    pub invocation_id: Option<String>,
    pub started: Instant,
}

impl<'a> AuditEntry<'a> {
    pub fn new(who: &'a Principal, action: Action, target: &'a str) -> Self {
        AuditEntry {
            who,
            action,
            target,
            operation: None,
            params: None,
            invocation_id: None,
            started: Instant::now(),
        }
    }

    pub fn operation(mut self, operation: &'a str) -> Self {
        self.operation = Some(operation);
        self
    }

    /// The record: its outcome from `result`, its rule from the denial when policy refused,
    /// else from `decision`. Params are redacted and bounded; so is the message.
    pub fn record(
        &self,
        decision: &Decision,
        result: std::result::Result<(), &ControlError>,
    ) -> audit::AuditRecord {
        let (outcome, rule, message) = match result {
            Ok(()) => ("ok", decision.rule.to_owned(), None),
            Err(e) => {
                let denied = e.is_denial();
                let rule = if denied {
                    e.rule()
                } else {
                    decision.rule.to_owned()
                };
                let outcome = match e {
                    ControlError::Pending(_) => "pending",
                    _ if denied => "denied",
                    _ => "error",
                };
                (outcome, rule, Some(audit::bounded_message(e.to_string())))
            }
        };
        let who = self.who;
        audit::AuditRecord {
            at: state::now_ms(),
            tenant: who.tenant.clone(),
            principal: who.id.clone(),
            principal_kind: who.kind.as_str().into(),
            role: format!("{:?}", who.role),
            action: self.action.name().into(),
            target: self.target.into(),
            operation: self.operation.map(Into::into),
            decision: if decision.allowed && outcome != "denied" {
                "allowed".into()
            } else {
                "denied".into()
            },
            rule,
            outcome: outcome.into(),
            error_kind: result.err().map(|e| e.kind().to_owned()),
            message,
            duration_us: self.started.elapsed().as_micros() as u64,
            params: self
                .params
                .as_ref()
                .map(|p| audit::bounded_params(audit::redact(p.value()))),
            invocation_id: self.invocation_id.clone(),
            remedy: result.err().and_then(ControlError::remedy),
        }
    }
}
