//! Approvals for risky operations: a request records the exact action, a second person decides,
//! and an approved action runs exactly once with exactly the approved params.
//!
//! The risk of an invocation is the higher of the connector's claim (its manifest) and the
//! connection's policy for the operation, so a guest can raise its risk and never lower it.
//! Policy per risk (seed 003): low runs (`APPROVAL_AUTO_APPROVE_LOW_RISK`, true), medium and
//! high wait for an approver (Operator or above), critical waits for an Admin; a connection can
//! move the threshold (`require_from`), never past critical. A request expires after
//! `APPROVAL_DEFAULT_TIMEOUT_SECONDS` (300).
//!
//! Every status change is one conditional `UPDATE` in the store (pending -> approved|denied
//! while unexpired; approved -> executing), so concurrent approvers, or processes resuming after
//! a crash, cannot both win. An approved request that has not started runs once after a
//! restart ([`ControlPlane::approvals_resume`]); one that was running when its process died is
//! never run again (its effect may have happened): it is marked failed, "interrupted".
//! The params are sealed with the master key, bound to the request, and hashed with the
//! connection, connector digest and operation; the execution checks the hash and the digest.

use super::audit::redact;
use super::authz::{Action, Context, Decision, Principal};
use super::entry::AuditEntry;
use super::policies::approver_role;
use super::resolve::Resolved;
use super::state::{ApprovalRecord, ApprovalStatus, now_ms};
use super::{ControlError, ControlPlane, Result};
use crate::invocation::Role;
use crate::manifest::Risk;
use crate::params::Params;
use serde::Serialize;
use sha2::Digest;
use std::time::{Duration, Instant};

/// How often a wait looks at the store for a decision made by another process (one made by this
/// process wakes it at once).
const OTHER_PROCESS_POLL: Duration = Duration::from_millis(250);

/// What was approved, as a hash: tenant, connection, connector digest, operation, params.
fn action_hash(
    tenant: &str,
    connection: &str,
    digest: &str,
    operation: &str,
    params: &str,
) -> String {
    let mut h = sha2::Sha256::new();
    for field in [tenant, connection, digest, operation, params] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The purpose bound into a request's sealed params: its id, so params cannot swap requests.
pub(super) fn purpose(id: &str) -> String {
    format!("approval:{id}")
}

/// The purpose bound into a request's sealed output, apart from its params'.
pub(super) fn output_purpose(id: &str) -> String {
    format!("{}:output", purpose(id))
}

/// The answer to an invocation that must wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Ticket {
    pub request_id: String,
    pub operation: String,
    pub risk: Risk,
    /// The lowest role that may approve.
    pub approver: Role,
    pub expires_at: i64,
}

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let minutes = ((self.expires_at - now_ms()).max(0) + 59_999) / 60_000;
        write!(
            f,
            "waiting for approval: `{}` is {} risk, so it runs once someone other than you with role {:?} or higher approves request {} (within {minutes} min)",
            self.operation, self.risk, self.approver, self.request_id
        )
    }
}

/// A request as shown: the record, the params with secret-looking values redacted, and the
/// outcome once it ran.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApprovalView {
    #[serde(flatten)]
    pub record: ApprovalRecord,
    pub approver: Role,
    pub params: serde_json::Value,
    /// The dry run made when it was requested: the effects it would have, and its answer.
    pub preview: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl ApprovalView {
    /// Whether nothing more will happen to it.
    pub fn is_final(&self) -> bool {
        self.record.status.is_final()
    }
}

impl ControlPlane {
    /// Whether `operation` on this connection waits for approval, and at what risk.
    pub(crate) fn approval_needed(&self, resolved: &Resolved, operation: &str) -> Option<Risk> {
        let claimed = resolved.manifest.operation(operation)?.risk;
        let risk = resolved.approval.risk(operation, claimed);
        resolved
            .approval
            .needs_approval(risk, self.settings.auto_approve_low_risk)
            .then_some(risk)
    }

    /// Records a request for the exact action and answers with its ticket.
    pub(crate) async fn request_approval(
        &self,
        who: &Principal,
        resolved: &Resolved,
        operation: &str,
        params: &Params,
        risk: Risk,
        rationale: Option<&str>,
    ) -> Result<Ticket> {
        let id = format!("apr-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let connection = &resolved.record.name;
        let digest = &resolved.digest;
        let now = now_ms();
        let expires_at = now.saturating_add(
            i64::try_from(self.settings.approval_timeout.as_millis()).unwrap_or(i64::MAX),
        );
        let record = ApprovalRecord {
            tenant: who.tenant.clone(),
            id: id.clone(),
            connection: connection.clone(),
            connector_digest: digest.clone(),
            operation: operation.into(),
            params_sealed: self.vault.seal(
                &who.tenant,
                connection,
                &purpose(&id),
                params.text().as_bytes(),
            ),
            action_hash: action_hash(&who.tenant, connection, digest, operation, params.text()),
            risk,
            rationale: rationale.map(Into::into),
            requested_by: who.id.clone(),
            requester_kind: who.kind,
            requester_role: who.role,
            requested_at: now,
            expires_at,
            status: ApprovalStatus::Pending,
            decided_by: None,
            decided_at: None,
            reason: None,
            lease_until: None,
            finished_at: None,
            output_sealed: None,
            error: None,
            // What it would do, for the approver: the same call with its effects captured.
            // Stored unsealed for listing, so the guest's answer is redacted like the effects.
            preview: Some({
                let mut preview = self.dry_run(who, resolved, operation, params).await;
                if let Some(result) = preview.get("result") {
                    preview["result"] = redact(result);
                }
                preview.to_string()
            }),
        };
        self.state.insert_approval(&record).await?;
        Ok(Ticket {
            request_id: id,
            operation: operation.into(),
            risk,
            approver: approver_role(risk),
            expires_at,
        })
    }

    async fn approval_record(&self, who: &Principal, id: &str) -> Result<ApprovalRecord> {
        self.state.expire_approvals(&who.tenant, now_ms()).await?;
        self.state.approval(&who.tenant, id).await?.ok_or_else(|| {
            ControlError::not_found(format!("no approval request `{id}`"))
                .with_remedy(crate::remedy::Remedy::ListApprovals)
        })
    }

    /// The params a request was made with: the one place they are unsealed. Bound to the
    /// request (its id is the seal's purpose), so a row's params cannot be moved to another.
    fn requested_params(&self, record: &ApprovalRecord) -> Result<Params> {
        let bytes = self
            .vault
            .open(
                &record.tenant,
                &record.connection,
                &purpose(&record.id),
                &record.params_sealed,
            )
            .map_err(|_| {
                ControlError::conflict(format!(
                    "the params of {} cannot be opened (altered in the store); nothing was run",
                    record.id
                ))
            })?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
            ControlError::conflict(format!(
                "the params of {} are not UTF-8; nothing was run",
                record.id
            ))
        })?;
        Params::parse(text).map_err(ControlError::Invoke)
    }

    fn view(&self, record: ApprovalRecord, with_output: bool) -> ApprovalView {
        let params = self
            .requested_params(&record)
            .map_or(serde_json::Value::Null, |p| redact(p.value()));
        let output = with_output
            .then_some(record.output_sealed.as_ref())
            .flatten()
            .and_then(|sealed| {
                self.vault
                    .open(
                        &record.tenant,
                        &record.connection,
                        &output_purpose(&record.id),
                        sealed,
                    )
                    .ok()
            })
            .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok());
        ApprovalView {
            preview: record
                .preview
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or(serde_json::Value::Null),
            approver: approver_role(record.risk),
            record,
            params,
            output,
        }
    }

    /// The tenant's requests: open ones, or all. Operators and above (approvers and auditors).
    pub async fn approvals_list(&self, who: &Principal, all: bool) -> Result<Vec<ApprovalView>> {
        self.audited(who, Action::ApprovalList, &who.tenant, None, async {
            self.state.expire_approvals(&who.tenant, now_ms()).await?;
            let records = self.state.list_approvals(&who.tenant, !all).await?;
            Ok(records.into_iter().map(|r| self.view(r, false)).collect())
        })
        .await
    }

    /// One request, with its params (secret-looking values redacted) and, once run, its output.
    /// Its requester may follow it too.
    pub async fn approval_show(&self, who: &Principal, id: &str) -> Result<ApprovalView> {
        let record = self.approval_record(who, id).await?;
        if !self.is_requester(who, &record) {
            self.check(
                &AuditEntry::new(who, Action::ApprovalList, id),
                Context::default(),
            )
            .await?;
        }
        Ok(self.view(record, true))
    }

    fn is_requester(&self, who: &Principal, record: &ApprovalRecord) -> bool {
        who.id == record.requested_by && who.kind == record.requester_kind
    }

    /// Approves or denies a pending request. Refused to the requester (separation of duties),
    /// to roles below the request's approver role, and after expiry. An approval runs the
    /// action at once, here, and answers with its outcome.
    pub async fn approval_decide(
        &self,
        who: &Principal,
        id: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<ApprovalView> {
        let verb = if approve { "approve" } else { "deny" };
        let entry = AuditEntry::new(who, Action::ApprovalDecide, id);
        self.check(&entry, Context::default()).await?;
        let refuse = |rule: &str, reason: String| ControlError::denied(rule, reason);
        let record = self.approval_record(who, id).await?;
        let risk = record.risk;
        let outcome: Result<()> = async {
            if self.is_requester(who, &record) {
                return Err(refuse(
                    "separation-of-duties",
                    format!("{} requested {id} and cannot {verb} it; another person must", who.id),
                ));
            }
            if who.role < approver_role(risk) {
                return Err(refuse(
                    "critical-needs-admin",
                    format!(
                        "{id} is {} risk and needs an {:?} to {verb} it; {} has {:?}",
                        record.risk,
                        approver_role(risk),
                        who.id,
                        who.role
                    ),
                ));
            }
            if !approve && reason.is_none_or(|r| r.trim().is_empty()) {
                return Err(ControlError::Invalid(vec![
                    "a denial needs a reason, so the requester learns why".into(),
                ]));
            }
            if self
                .state
                .decide_approval(&who.tenant, id, approve, &who.id, reason, now_ms())
                .await?
            {
                return Ok(());
            }
            let now = self.approval_record(who, id).await?;
            Err(match now.status {
                ApprovalStatus::Expired => ControlError::conflict(format!(
                    "{id} expired at {} without a decision and cannot be revived; the requester can ask again",
                    crate::time::format_unix_ms(now.expires_at)
                )),
                status => ControlError::conflict(format!(
                    "{id} is already {status}{}; nothing to {verb}",
                    now.decided_by
                        .as_deref()
                        .map(|by| format!(" by {by}"))
                        .unwrap_or_default()
                )),
            })
        }
        .await;
        let decision = Decision {
            allowed: outcome.is_ok(),
            rule: if approve {
                "approval-granted"
            } else {
                "approval-denied"
            },
            reason: String::new(),
            remedy: None,
        };
        let target = format!("{}/{id}", record.connection);
        let entry = AuditEntry {
            target: &target,
            operation: Some(verb),
            ..entry
        };
        self.audit(&entry, &decision, outcome.as_ref().map(|_| ()))
            .await;
        outcome?;
        self.decisions.changed(id);
        self.stop_here_for_tests("approval-committed").await;
        if approve {
            let approved = self.approval_record(who, id).await?;
            self.execute_approved(&approved).await;
        }
        Ok(self.view(self.approval_record(who, id).await?, true))
    }

    /// Waits until the request is final (or `timeout` passes) and shows it. Its requester, or
    /// anyone who may list requests, may wait. An approved request left unstarted by a process
    /// that died is run here.
    pub async fn approval_wait(
        &self,
        who: &Principal,
        id: &str,
        timeout: Duration,
    ) -> Result<ApprovalView> {
        let deadline = crate::time::from_now(timeout);
        let signal = self.decisions.watch(id);
        let result = loop {
            // Listening before looking: a change made between the look and the wait still wakes.
            let changed = signal.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let view = match self.approval_show(who, id).await {
                Ok(view) => view,
                Err(e) => break Err(e),
            };
            if view.is_final() || Instant::now() >= deadline {
                break Ok(view);
            }
            if view.record.status == ApprovalStatus::Approved
                && view
                    .record
                    .decided_at
                    .is_some_and(|at| now_ms() - at > 2_000)
            {
                self.execute_approved(&view.record).await;
                continue;
            }
            // A change made by this process wakes the wait at once; one made by another process
            // is seen at the next look at the store.
            let look_again = OTHER_PROCESS_POLL.min(crate::time::remaining(deadline));
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep(look_again) => {}
            }
        };
        drop(signal);
        self.decisions.release(id);
        result
    }

    /// Runs every approved request that has not started (after a crash or restart), and marks
    /// executions whose process died as failed. Returns how many it ran.
    pub async fn approvals_resume(&self) -> Result<usize> {
        let mut ran = 0;
        for record in self.state.approvals_to_resume(now_ms()).await? {
            if record.status == ApprovalStatus::Executing {
                self.state
                    .finish_approval(
                        &record.tenant,
                        &record.id,
                        ApprovalStatus::Failed,
                        None,
                        Some("interrupted: the process running it stopped; the effect may or may not have happened, so it is not run again; check the upstream and request again if needed"),
                        now_ms(),
                    )
                    .await?;
            } else if self.execute_approved(&record).await {
                ran += 1;
            }
        }
        Ok(ran)
    }

    /// Claims and runs an approved request; false when another caller had claimed it.
    async fn execute_approved(&self, record: &ApprovalRecord) -> bool {
        let started = Instant::now();
        let (tenant, id) = (&record.tenant, &record.id);
        let lease = now_ms() + 10 * 60_000;
        match self.state.claim_approval(tenant, id, lease).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::error!(approval = %id, error = %e, "cannot claim an approved request");
                return false;
            }
        }
        let who = Principal {
            tenant: tenant.clone(),
            id: record.requested_by.clone(),
            kind: record.requester_kind,
            role: record.requester_role,
        };
        let params = self.requested_params(record);
        let result = match &params {
            Ok(params) => self.run_approved(&who, record, params).await,
            Err(e) => Err(ControlError::conflict(e.to_string())),
        };
        if let Err(e) = &result
            && e.rule() == super::RULE_AUDIT_UNAVAILABLE
        {
            // Nothing ran: its record could not be stored. The request stays approved and runs
            // once the store takes writes again (the next resume, or the background work).
            if let Err(e) = self.state.unclaim_approval(tenant, id).await {
                tracing::error!(approval = %id, error = %e, "cannot give back an approved request");
            }
            return false;
        }
        if result.is_ok() {
            self.cache.invalidate(tenant, &record.connection);
        }
        let (status, output, error) = match &result {
            Ok(output) => (ApprovalStatus::Executed, Some(output.clone()), None),
            // What would repair it goes with the error: the requester reads it later, maybe
            // through another front end than the one that approved.
            Err(e) => (
                ApprovalStatus::Failed,
                None,
                Some(match e.remedy() {
                    Some(remedy) => format!("{e}; to fix: {remedy}"),
                    None => e.to_string(),
                }),
            ),
        };
        let sealed = output.as_ref().map(|o| {
            self.vault.seal(
                tenant,
                &record.connection,
                &output_purpose(id),
                o.as_bytes(),
            )
        });
        let finished = self
            .state
            .finish_approval(
                tenant,
                id,
                status,
                sealed.as_deref(),
                error.as_deref(),
                now_ms(),
            )
            .await;
        self.decisions.changed(id);
        if let Err(e) = finished {
            tracing::error!(approval = %id, error = %e, "cannot record how an approved request ended");
        }
        let entry = AuditEntry {
            params: params.ok(),
            invocation_id: Some(id.clone()),
            started,
            ..AuditEntry::new(&who, Action::InvokeWrite, &record.connection)
                .operation(&record.operation)
        };
        self.audit(
            &entry,
            &Decision::allowed_by("approval-granted"),
            result.as_ref().map(|_| ()),
        )
        .await;
        true
    }

    /// Runs exactly the approved action: the sealed params, checked against the hash, on the
    /// approved connector, with the requester's identity and every connection check again.
    async fn run_approved(
        &self,
        who: &Principal,
        record: &ApprovalRecord,
        params: &Params,
    ) -> Result<String> {
        let hash = action_hash(
            &who.tenant,
            &record.connection,
            &record.connector_digest,
            &record.operation,
            params.text(),
        );
        if hash != record.action_hash {
            return Err(ControlError::conflict(format!(
                "the action of {} no longer matches what was approved; nothing was run",
                record.id
            )));
        }
        self.forget_connection(&who.tenant, &record.connection);
        let resolved = self.resolve(&who.tenant, &record.connection).await?;
        if resolved.digest != record.connector_digest {
            return Err(ControlError::conflict(format!(
                "connection `{}` runs another connector version than the one approved; nothing was run; request again",
                record.connection
            )));
        }
        let access = resolved.access(&record.operation);
        let decision = self.decide(who, &resolved, &record.operation, access, Some(params));
        if !decision.allowed {
            return Err(decision.to_error());
        }
        let outcome = self
            .run(
                who,
                &resolved,
                &record.operation,
                params,
                &record.id,
                "approval-granted",
            )
            .await?;
        Ok(outcome.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::policies::ApprovalPolicy;

    #[test]
    fn approvals_risk_is_the_higher_of_claim_and_policy() {
        let mut policy = ApprovalPolicy::default();
        policy
            .operation_risks
            .insert("purge".into(), Risk::Critical);
        policy.operation_risks.insert("note".into(), Risk::Low);
        // A guest that calls its purge low is still critical.
        assert_eq!(policy.risk("purge", Risk::Low), Risk::Critical);
        // The policy cannot lower what the guest claims.
        assert_eq!(policy.risk("note", Risk::High), Risk::High);
        assert_eq!(policy.risk("other", Risk::Medium), Risk::Medium);
        assert!(!policy.needs_approval(Risk::Low, true));
        assert!(
            policy.needs_approval(Risk::Low, false),
            "low waits when not auto-approved"
        );
        assert!(policy.needs_approval(Risk::Medium, true));
        policy.require_from = Some(Risk::Critical);
        assert!(!policy.needs_approval(Risk::High, true));
        assert!(
            !policy.needs_approval(Risk::Low, false),
            "the connection's threshold wins"
        );
        assert!(
            policy.needs_approval(Risk::Critical, true),
            "critical always waits"
        );
        assert_eq!(approver_role(Risk::Critical), Role::Admin);
        assert_eq!(approver_role(Risk::High), Role::Operator);
        let round = ApprovalPolicy::from_value(&policy.to_value()).unwrap();
        assert_eq!(round, policy);
        assert_eq!(
            ApprovalPolicy::default().to_value(),
            serde_json::Value::Null
        );
    }
}
