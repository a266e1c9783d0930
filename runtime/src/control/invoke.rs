//! Invocation through the control plane: resolve the connection, decide, run, audit.

use super::authz::{Action, Context, Decision, PrincipalKind};
use super::entry::AuditEntry;
use super::state::ConnectionStatus;
use super::{ControlError, ControlPlane, Principal, RESOLVED_TTL, Result};
use crate::capability::config::ConfigCtx;
use crate::egress::Egress;
use crate::executor::{Call, Caller, Connector, Environment, Outcome};
use crate::invocation::{Access, Role};
use crate::limits::Limits;
use crate::params::Params;
use crate::remedy::Remedy;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// A connection with everything an invocation needs, built once and reused for
/// [`RESOLVED_TTL`]: the record, the connector's manifest (as registered) and the opened config.
/// The component itself is loaded only when a call is allowed to run ([`ControlPlane::loaded`]):
/// a refusal never pays for compiling or loading it.
pub(crate) struct Resolved {
    pub record: super::state::ConnectionRecord,
    pub manifest: Arc<crate::manifest::Manifest>,
    /// The registered component's sha256.
    pub digest: String,
    connector: tokio::sync::OnceCell<Connector>,
    pub connector_enabled: bool,
    pub env: Environment,
    /// (agent, operation) pairs granted on this connection.
    pub grants: HashSet<(String, String)>,
    /// Classification, masking and caching.
    pub data: super::shaping::DataPolicy,
    /// The masking patterns, compiled once per resolution; none when masking is off.
    pub masker: Option<Arc<super::shaping::Masker>>,
    /// Risks, the approval threshold and dry-run mode, parsed once per resolution.
    pub approval: super::approvals::ApprovalPolicy,
    /// The operations' params schemas, compiled once per resolution.
    pub params: super::schema::ParamsSchemas,
}

/// Rule: an invocation's params must match the operation's `params-schema`.
pub(crate) const RULE_PARAMS_SCHEMA: &str = "params-schema";

/// An answer the host gives without running the guest (a cache hit, a dry run's report).
fn host_outcome(output: String, started: Instant) -> Outcome {
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

impl Resolved {
    /// How `operation` is declared; an unknown one counts as a read (the guest refuses it).
    pub fn access(&self, operation: &str) -> Access {
        self.manifest
            .operation(operation)
            .map_or(Access::Read, |o| o.access)
    }

    /// Whether this call is a write on a connection in dry-run mode: the connection's setting,
    /// or by default, for a prototype connector, the host's (`Settings::dry_run`, the seeds'
    /// `DRY_RUN`, true unless set false).
    pub fn dry_run(&self, operation: &str, host_dry_run: bool) -> bool {
        let on = self
            .approval
            .dry_run
            .unwrap_or(self.manifest.prototype && host_dry_run);
        on && self.access(operation) == Access::Write
    }

    /// Tags the result with its classification and masks it per the connection's policy.
    pub fn shape(&self, operation: &str, outcome: &mut Outcome) {
        if let Some(op) = self.manifest.operation(operation) {
            outcome.classification = Some(self.data.classification(operation, op.classification));
        }
        if let Some(masker) = &self.masker
            && let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&outcome.output)
        {
            outcome.masked = masker.apply(&mut value);
            if outcome.masked > 0 {
                outcome.output = value.to_string();
            }
        }
    }

    pub fn caller(&self, who: &Principal) -> Caller {
        Caller {
            tenant: who.tenant.clone(),
            principal: who.id.clone(),
            role: who.role,
            connection: self.record.name.clone(),
        }
    }
}

impl ControlPlane {
    /// The connection's egress: its grants, with its own pooled client, kept across
    /// re-resolutions so pooled connections survive; never shared with another connection.
    async fn egress_for(&self, tenant: &str, name: &str, grants: &[String]) -> Result<Egress> {
        let mut egress = Egress::from_grants(grants).map_err(ControlError::Invalid)?;
        egress.resilience = Arc::new(self.settings.resilience.clone());
        egress.credentials = Arc::new(self.credentials_for(tenant, name).await?);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let (client, breakers) = clients
            .entry((tenant.to_owned(), name.to_owned()))
            .or_insert_with(|| {
                let ledger = super::breakers::StoreLedger {
                    state: self.state.clone(),
                    tenant: tenant.to_owned(),
                    connection: name.to_owned(),
                };
                (
                    crate::egress::EgressClient::default(),
                    Arc::new(crate::egress::resilience::Breakers::shared(Arc::new(
                        ledger,
                    ))),
                )
            })
            .clone();
        egress.client = client;
        egress.breakers = breakers;
        Ok(egress)
    }

    pub(crate) async fn resolve(&self, tenant: &str, name: &str) -> Result<Arc<Resolved>> {
        let key = (tenant.to_owned(), name.to_owned());
        if let Some((at, resolved)) = self
            .resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < RESOLVED_TTL
        {
            return Ok(resolved.clone());
        }
        let record = self.connection_record(tenant, name).await?;
        let connector_record = self
            .connector_record(
                tenant,
                &record.connector,
                record.connector_version.as_deref(),
            )
            .await?;
        let manifest: Arc<crate::manifest::Manifest> = Arc::new(
            serde_json::from_str(&connector_record.manifest).map_err(|e| {
                ControlError::State(super::state::StateError::Corrupt(format!(
                    "stored manifest of connector `{}`: {e}",
                    connector_record.id
                )))
            })?,
        );
        let mut egress = self.egress_for(tenant, name, &record.egress).await?;
        if record.accept_read_routes {
            let mut routes = std::collections::HashMap::new();
            for op in &manifest.operations {
                let parsed: Vec<_> = op
                    .read_routes
                    .iter()
                    .map(|r| crate::manifest::parse_read_route(r))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| ControlError::Invalid(vec![e]))?;
                routes.insert(op.name.clone(), parsed);
            }
            egress.read_routes = Arc::new(routes);
        }
        let config = self.open_config(&record)?;
        let limits: Limits = serde_json::from_value(record.limits.clone()).map_err(|e| {
            ControlError::State(super::state::StateError::Corrupt(format!(
                "stored limits: {e}"
            )))
        })?;
        let grants = self
            .state
            .list_grants(tenant, name)
            .await?
            .into_iter()
            .map(|g| (g.agent, g.operation))
            .collect();
        let data = super::shaping::DataPolicy::from_value(&record.data_policy);
        let masker =
            (!data.mask.is_off()).then(|| Arc::new(super::shaping::Masker::new(&data.mask)));
        let resolved = Arc::new(Resolved {
            params: super::schema::ParamsSchemas::compile(&manifest),
            approval: super::approvals::ApprovalPolicy::from_value(&record.approval_policy),
            data,
            masker,
            env: Environment {
                config: ConfigCtx::from_json(&config)
                    .map_err(|e| ControlError::Invalid(vec![e]))?,
                keyvalue: self.keyvalue.clone(),
                limits,
                egress,
            },
            manifest,
            digest: connector_record.digest,
            connector: tokio::sync::OnceCell::new(),
            connector_enabled: connector_record.enabled,
            record,
            grants,
        });
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Instant::now(), resolved.clone()));
        Ok(resolved)
    }

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

    /// The connection's component, loaded (or compiled) on first use.
    pub(super) async fn loaded<'r>(&self, resolved: &'r Resolved) -> Result<&'r Connector> {
        resolved
            .connector
            .get_or_try_init(|| self.connector_for(&resolved.digest))
            .await
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
            match super::ratelimit::take(&*self.state, &who.tenant, name, per_minute).await {
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
        let required_role: Option<Role> = record
            .required_roles
            .get(operation)
            .and_then(|r| r.parse().ok());
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
}
