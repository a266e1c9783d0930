//! Invocation through the control plane: resolve the connection, decide, run, audit.

use super::authz::{Action, Context, Decision, PrincipalKind};
use super::connections::STATUS_DISABLED;
use super::{ControlError, ControlPlane, Principal, RESOLVED_TTL, Result};
use crate::capability::config::ConfigCtx;
use crate::egress::Egress;
use crate::executor::{Call, Caller, Connector, Environment, Outcome};
use crate::invocation::{Access, Role};
use crate::limits::Limits;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// A connection with everything an invocation needs, built once and reused for
/// [`RESOLVED_TTL`]: the record, the loaded connector and the opened config.
pub(crate) struct Resolved {
    pub record: super::state::ConnectionRecord,
    pub connector: Connector,
    pub connector_enabled: bool,
    pub env: Environment,
    /// (agent, operation) pairs granted on this connection.
    pub grants: HashSet<(String, String)>,
}

impl Resolved {
    pub fn caller(&self, who: &Principal) -> Caller {
        Caller {
            tenant: who.tenant.clone(),
            principal: who.id.clone(),
            role: who.role,
            connection: self.record.name.clone(),
        }
    }
}

/// The field of the params that names the object an operation touches, by convention: the
/// sandbox's `type`, an `object` elsewhere. `allowed_objects` is checked against it.
fn object_of(params: &serde_json::Value) -> Option<&str> {
    params
        .get("object")
        .or_else(|| params.get("type"))
        .and_then(|v| v.as_str())
}

impl ControlPlane {
    /// The connection's egress: its grants, with its own pooled client, kept across
    /// re-resolutions so pooled connections survive; never shared with another connection.
    async fn egress_for(&self, tenant: &str, name: &str, grants: &[String]) -> Result<Egress> {
        let mut egress = Egress::from_grants(grants).map_err(ControlError::Invalid)?;
        egress.credentials = Arc::new(self.credentials_for(tenant, name).await?);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let (client, breakers) = clients
            .entry((tenant.to_owned(), name.to_owned()))
            .or_default()
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
        let connector = self.connector_for(&connector_record.digest).await?;
        let mut egress = self.egress_for(tenant, name, &record.egress).await?;
        if record.accept_read_routes {
            let mut routes = std::collections::HashMap::new();
            for op in &connector.manifest.operations {
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
        let resolved = Arc::new(Resolved {
            env: Environment {
                config: ConfigCtx::from_json(&config)
                    .map_err(|e| ControlError::Invalid(vec![e]))?,
                keyvalue: self.keyvalue.clone(),
                limits,
                egress,
            },
            connector,
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
        let started = Instant::now();
        let parsed: Option<serde_json::Value> = serde_json::from_str(params).ok();
        let resolved = match self.resolve(&who.tenant, name).await {
            Ok(r) => r,
            Err(e) => {
                let decision = Decision {
                    allowed: false,
                    rule: "connection-lookup",
                    reason: String::new(),
                };
                self.audit(
                    who,
                    Action::InvokeRead,
                    name,
                    Some(operation),
                    &decision,
                    Err(&e),
                    started,
                    parsed.as_ref(),
                    None,
                )
                .await;
                return Err(e);
            }
        };
        let access = resolved
            .connector
            .manifest
            .operation(operation)
            .map(|o| o.access)
            .unwrap_or(Access::Read);
        let action = Action::for_access(access);
        let decision = self.decide(who, &resolved, operation, access, parsed.as_ref());
        if !decision.allowed {
            let error = ControlError::Denied {
                rule: decision.rule.into(),
                reason: decision.reason.clone(),
            };
            self.audit(
                who,
                action,
                name,
                Some(operation),
                &decision,
                Err(&error),
                started,
                parsed.as_ref(),
                None,
            )
            .await;
            return Err(error);
        }
        if let Some(per_minute) = resolved.record.queries_per_minute {
            let per_minute = per_minute.clamp(1, u32::MAX.into()) as u32;
            if let Err(retry_after) = self.rate_limits.take(&who.tenant, name, per_minute) {
                let error = ControlError::RateLimited {
                    connection: name.into(),
                    per_minute,
                    retry_after,
                };
                let limited = Decision {
                    allowed: false,
                    rule: "rate-limit",
                    reason: error.to_string(),
                };
                self.audit(
                    who,
                    action,
                    name,
                    Some(operation),
                    &limited,
                    Err(&error),
                    started,
                    parsed.as_ref(),
                    None,
                )
                .await;
                return Err(error);
            }
        }
        let call = Call::Invoke {
            operation: operation.into(),
            params: params.into(),
        };
        let result = self
            .executor
            .call(
                &resolved.connector,
                &resolved.caller(who),
                &resolved.env,
                call,
            )
            .await
            .map_err(ControlError::Invoke);
        let invocation_id = result.as_ref().ok().map(|o| o.invocation_id.clone());
        self.audit(
            who,
            action,
            name,
            Some(operation),
            &decision,
            result.as_ref().map(|_| ()),
            started,
            parsed.as_ref(),
            invocation_id.as_deref(),
        )
        .await;
        result
    }

    /// Every operation-level check, in order; the first that fails decides.
    fn decide(
        &self,
        who: &Principal,
        resolved: &Resolved,
        operation: &str,
        access: Access,
        params: Option<&serde_json::Value>,
    ) -> Decision {
        let record = &resolved.record;
        let deny = |rule: &'static str, reason: String| Decision {
            allowed: false,
            rule,
            reason,
        };
        if record.status == STATUS_DISABLED {
            return deny(
                "connection-disabled",
                format!(
                    "connection `{}` is disabled; enable it with `airlock connection enable {}`",
                    record.name, record.name
                ),
            );
        }
        if !resolved.connector_enabled {
            return deny(
                "connector-disabled",
                format!(
                    "connector `{}` version {} is disabled in the registry",
                    record.connector, resolved.connector.manifest.version
                ),
            );
        }
        if let Some(allowed) = &record.allowed_operations
            && !allowed.iter().any(|op| op == operation)
            && resolved.connector.manifest.operation(operation).is_some()
        {
            return deny(
                "operation-not-allowed",
                format!(
                    "operation `{operation}` is not in connection `{}`'s allowed operations ({}); allow it with \
                     `airlock connection update {}`, passing --allow-operation for each operation to allow",
                    record.name,
                    allowed.join(", "),
                    record.name
                ),
            );
        }
        if let (Some(allowed), Some(object)) = (&record.allowed_objects, params.and_then(object_of))
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
            return decision;
        }
        if access == Access::Write && !record.writes_enabled {
            return deny(
                "read-only-connection",
                format!(
                    "operation `{operation}` writes, and connection `{}` is read-only (writes_enabled = false); \
                     enable writes with `airlock connection update {} --writes-enabled true`",
                    record.name, record.name
                ),
            );
        }
        decision
    }
}
