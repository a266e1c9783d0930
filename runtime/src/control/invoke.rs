//! Invocation through the control plane: resolve the connection, decide, run, audit.

use super::authz::{Action, Decision};
use super::entry::AuditEntry;
use super::resolve::Resolved;
use super::run::host_outcome;
use super::{ControlError, ControlPlane, Principal, Result};
use crate::executor::Outcome;
use crate::invocation::Access;
use crate::params::Params;

/// Rule: an invocation's params must match the operation's `params-schema`.
pub(crate) const RULE_PARAMS_SCHEMA: &str = "params-schema";

impl ControlPlane {
    /// Invokes `operation` on the tenant's connection `name`.
    pub async fn invoke(
        &self,
        who: &Principal,
        name: &str,
        operation: &str,
        params: &str,
    ) -> Result<Outcome> {
        self.invoke_with(who, name, operation, params, None).await
    }

    /// Invokes `operation`; when its risk needs approval, records a request (with the
    /// rationale) and answers [`ControlError::Pending`] with the ticket instead of running it.
    pub async fn invoke_with(
        &self,
        who: &Principal,
        name: &str,
        operation: &str,
        params: &str,
        rationale: Option<&str>,
    ) -> Result<Outcome> {
        use futures_util::FutureExt as _;
        // A panic in the control plane's own steps (shaping, caching, auditing) fails this call
        // the way one inside the sandbox does, and leaves the process serving others.
        std::panic::AssertUnwindSafe(self.invoke_unguarded(who, name, operation, params, rationale))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let message = crate::executor::panic_payload(panic.as_ref());
                tracing::error!(
                    connection = name,
                    operation,
                    "control plane panicked during an invocation: {message}"
                );
                Err(ControlError::Invoke(crate::InvokeError::HostPanic {
                    message,
                }))
            })
    }

    /// One invocation, audited once: the steps answer with the decision to record and the
    /// result, and this is the one place that records them.
    async fn invoke_unguarded(
        &self,
        who: &Principal,
        name: &str,
        operation: &str,
        params: &str,
        rationale: Option<&str>,
    ) -> Result<Outcome> {
        let mut entry = AuditEntry::new(who, Action::InvokeRead, name).operation(operation);
        let (decision, result) = self
            .invoke_steps(&mut entry, name, operation, params, rationale)
            .await;
        self.audit(&entry, &decision, result.as_ref().map(|_| ()))
            .await;
        result
    }

    /// Resolve, decide, admit, then answer from a dry run, the cache or the guest. Fills in
    /// the entry (the action, the params, the invocation id) as it learns them.
    async fn invoke_steps(
        &self,
        entry: &mut AuditEntry<'_>,
        name: &str,
        operation: &str,
        params: &str,
        rationale: Option<&str>,
    ) -> (Decision, Result<Outcome>) {
        let who = entry.who;
        let started = entry.started;
        let parsed = crate::params::Params::parse(params);
        entry.params = parsed.as_ref().ok().cloned();
        let resolved = match self.resolve(&who.tenant, name).await {
            Ok(r) => r,
            Err(e) => return (Decision::refused("connection-lookup"), Err(e)),
        };
        let access = resolved.access(operation);
        entry.action = Action::for_access(access);
        let decision = self.decide(who, &resolved, operation, access, parsed.as_ref().ok());
        let params = match self
            .admit(who, &resolved, operation, parsed, rationale, &decision)
            .await
        {
            Ok(params) => params,
            Err((refused, error)) => return (refused, Err(error)),
        };
        if resolved.dry_run(operation, self.settings.dry_run) {
            let answer = self.dry_run(who, &resolved, operation, &params).await;
            let outcome = host_outcome(answer.to_string(), started);
            entry.invocation_id = Some(outcome.invocation_id.clone());
            return (Decision::allowed_by("dry-run"), Ok(outcome));
        }
        // Read results may come from the cache: only now, after every check allowed the call.
        let cache_ttl = match access {
            Access::Read => resolved.data.cache_ttl_s.filter(|s| *s > 0),
            Access::Write => None,
        }
        .map(|s| std::time::Duration::from_secs(s.into()));
        let cache_key = cache_ttl.map(|_| {
            super::cache::key(
                who,
                name,
                resolved.record.revision,
                &resolved.digest,
                operation,
                &params,
            )
        });
        if let Some(key) = &cache_key
            && let Some(hit) = self.cache.get(&who.tenant, name, key)
        {
            let outcome = Outcome {
                classification: hit.classification,
                masked: hit.masked,
                cached: true,
                ..host_outcome(hit.output, started)
            };
            entry.invocation_id = Some(outcome.invocation_id.clone());
            return (decision, Ok(outcome));
        }
        let invocation_id = uuid::Uuid::new_v4().simple().to_string();
        entry.invocation_id = Some(invocation_id.clone());
        let result = self
            .run(
                who,
                &resolved,
                operation,
                &params,
                &invocation_id,
                decision.rule,
            )
            .await;
        if let Ok(outcome) = &result {
            match (cache_key, cache_ttl) {
                (Some(key), Some(ttl)) => self.cache.put(
                    &who.tenant,
                    name,
                    key,
                    super::cache::Entry::new(
                        outcome.output.clone(),
                        outcome.classification,
                        outcome.masked,
                        ttl,
                    ),
                ),
                // A write that went through makes this connection's cached reads stale.
                _ if access == Access::Write => self.cache.invalidate(&who.tenant, name),
                _ => {}
            }
        }
        (decision, result)
    }

    /// After the operation-level decision, in order: the decision itself, the params (parsed,
    /// then checked against the operation's schema), the audit store (fail closed), the rate
    /// limit, and approval. The first that refuses answers with the decision to record and the
    /// error for the caller; else the call may go on, with these params.
    async fn admit(
        &self,
        who: &Principal,
        resolved: &Resolved,
        operation: &str,
        params: std::result::Result<Params, crate::InvokeError>,
        rationale: Option<&str>,
        decision: &Decision,
    ) -> std::result::Result<Params, (Decision, ControlError)> {
        #[allow(clippy::result_large_err, reason = "as above")]
        let refuse = |rule: &'static str, allowed: bool, error: ControlError| {
            let decision = Decision {
                allowed,
                rule,
                reason: error.to_string(),
                remedy: error.remedy(),
            };
            Err((decision, error))
        };
        if !decision.allowed {
            return Err((decision.clone(), decision.to_error()));
        }
        // The params, against the operation's schema, before anything is spent on the call (a
        // rate-limit token, an approval request, the guest).
        let params = match params {
            Ok(params) => params,
            Err(e) => return refuse(RULE_PARAMS_SCHEMA, true, ControlError::Invoke(e)),
        };
        if let Err(problems) = resolved.params.check(operation, params.value()) {
            return refuse(RULE_PARAMS_SCHEMA, true, ControlError::Invalid(problems));
        }
        if !self.audit_available() {
            // Fail closed: nothing runs unrecorded. This record is held and written once the
            // store takes writes again.
            return refuse(
                super::RULE_AUDIT_UNAVAILABLE,
                false,
                ControlError::denied(
                    super::RULE_AUDIT_UNAVAILABLE,
                    "the audit store cannot be written, so nothing runs unrecorded; fix the store (disk space, permissions, locks) and retry",
                ),
            );
        }
        let name = &resolved.record.name;
        if let Some(per_minute) = resolved.record.queries_per_minute {
            let per_minute = per_minute.clamp(1, u32::MAX.into()) as u32;
            match super::ratelimit::take(&*self.coordination, &who.tenant, name, per_minute).await {
                Ok(Ok(())) => {}
                Ok(Err(retry_after)) => {
                    let error = ControlError::RateLimited {
                        connection: name.clone(),
                        per_minute,
                        retry_after,
                    };
                    return refuse(super::RULE_RATE_LIMIT, false, error);
                }
                // Fail closed: a limit that cannot be checked is not waived.
                Err(e) => return refuse(super::RULE_RATE_LIMIT, false, ControlError::State(e)),
            }
        }
        // A dry run applies nothing, so it needs no approver.
        if resolved.dry_run(operation, self.settings.dry_run) {
            return Ok(params);
        }
        if let Some(risk) = self.approval_needed(resolved, operation) {
            let error = match self
                .request_approval(who, resolved, operation, &params, risk, rationale)
                .await
            {
                Ok(ticket) => ControlError::Pending(ticket),
                Err(e) => e,
            };
            let allowed = matches!(error, ControlError::Pending(_));
            return refuse("approval-required", allowed, error);
        }
        Ok(params)
    }
}
