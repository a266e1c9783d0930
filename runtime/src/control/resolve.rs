//! A connection resolved for invocation: its record, the connector's manifest as registered,
//! the opened config, credentials and egress, compiled policies, built once and reused for
//! [`RESOLVED_TTL`].
//!
//! Below invocation and approvals: it decides nothing and runs nothing.

use super::Principal;
use super::{ControlError, ControlPlane, RESOLVED_TTL, Result};
use crate::capability::config::ConfigCtx;
use crate::egress::Egress;
use crate::executor::{Caller, Connector, Environment, Outcome};
use crate::invocation::Access;
use crate::limits::Limits;
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
    pub approval: super::policies::ApprovalPolicy,
    /// The operations' params schemas, compiled once per resolution.
    pub params: super::schema::ParamsSchemas,
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
                    state: self.coordination.clone(),
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
                "connection `{name}`'s stored limits do not read ({e})"
            )))
        })?;
        let grants = self
            .state
            .list_grants(tenant, name)
            .await?
            .into_iter()
            .map(|g| (g.agent, g.operation))
            .collect();
        let (approval, data) = super::lookup::stored_policies(&record)?;
        let masker =
            (!data.mask.is_off()).then(|| Arc::new(super::shaping::Masker::new(&data.mask)));
        let resolved = Arc::new(Resolved {
            params: super::schema::ParamsSchemas::compile(&manifest),
            approval,
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

    /// The connection's component, loaded (or compiled) on first use.
    pub(super) async fn loaded<'r>(&self, resolved: &'r Resolved) -> Result<&'r Connector> {
        resolved
            .connector
            .get_or_try_init(|| self.connector_for(&resolved.digest))
            .await
    }
}
