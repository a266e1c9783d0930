//! Connections: a tenant's configured instance of a connector.

use super::authz::{Action, Context};
use super::entry::AuditEntry;
use super::lookup::CONFIG_PURPOSE;
use super::registry::ConnectorView;
use super::state::{ConnectionRecord, ConnectionStatus, Grant, now_ms};
use super::{ControlError, ControlPlane, Principal, Result, schema};
use crate::invocation::{Role, validate_id};
use crate::limits::Limits;
use crate::manifest::Manifest;
use std::collections::BTreeMap;

/// What `connection create` takes. As JSON (the HTTP API): every field but `name` and
/// `connector` optional, roles by name (`"admin"`), unknown fields refused.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSpec {
    pub name: String,
    pub connector: String,
    /// `None` follows the latest version.
    pub version: Option<String>,
    pub config: serde_json::Value,
    pub allowed_operations: Option<Vec<String>>,
    pub allowed_objects: Option<Vec<String>>,
    /// Operation -> the role it needs, where higher than Operator.
    #[serde(deserialize_with = "roles_by_name")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub required_roles: BTreeMap<String, Role>,
    pub writes_enabled: bool,
    pub limits: Option<Limits>,
    /// Egress grants (`scheme://host[:port][/path]`); none by default.
    pub egress: Vec<String>,
    /// Invocations per minute; none by default.
    pub queries_per_minute: Option<u32>,
    /// Honour the connector's declared read routes (off by default).
    pub accept_read_routes: bool,
    /// Per-operation risks and the approval threshold; defaults from the seeds.
    pub approval: super::policies::ApprovalPolicy,
    /// Classification raises, PII masking and the read cache.
    pub data: super::shaping::DataPolicy,
}

/// What `connection update` changes; `None` keeps the current value. As JSON (the HTTP API's
/// PATCH), an absent field keeps its value and `null` clears what can be cleared.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionUpdate {
    /// `Some(None)` switches to following the latest version.
    #[serde(deserialize_with = "present")]
    pub version: Option<Option<String>>,
    pub config: Option<serde_json::Value>,
    #[serde(deserialize_with = "present")]
    pub allowed_operations: Option<Option<Vec<String>>>,
    #[serde(deserialize_with = "present")]
    pub allowed_objects: Option<Option<Vec<String>>>,
    /// Replaces the required roles; `null` clears them.
    #[serde(deserialize_with = "some_roles_by_name")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub required_roles: Option<BTreeMap<String, Role>>,
    pub writes_enabled: Option<bool>,
    pub limits: Option<Limits>,
    /// Replaces the egress grants.
    pub egress: Option<Vec<String>>,
    /// `Some(None)` removes the limit.
    #[serde(deserialize_with = "present")]
    pub queries_per_minute: Option<Option<u32>>,
    pub accept_read_routes: Option<bool>,
    pub approval: Option<super::policies::ApprovalPolicy>,
    pub data: Option<super::shaping::DataPolicy>,
}

/// A field that is present, `null` included: `Some(None)` for null (clear it), absent stays
/// `None` through `#[serde(default)]` (keep it).
fn present<'de, T, D>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// Operation -> role, roles by name as the CLI takes them (`"admin"`).
fn roles_by_name<'de, D>(d: D) -> std::result::Result<BTreeMap<String, Role>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let names: BTreeMap<String, String> = serde::Deserialize::deserialize(d)?;
    names
        .into_iter()
        .map(|(op, role)| {
            role.parse()
                .map(|r| (op, r))
                .map_err(serde::de::Error::custom)
        })
        .collect()
}

/// For an update: present roles replace the current ones, and `null` clears them all.
fn some_roles_by_name<'de, D>(d: D) -> std::result::Result<Option<BTreeMap<String, Role>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let names: Option<BTreeMap<String, String>> = serde::Deserialize::deserialize(d)?;
    names
        .unwrap_or_default()
        .into_iter()
        .map(|(op, role)| {
            role.parse()
                .map(|r| (op, r))
                .map_err(serde::de::Error::custom)
        })
        .collect::<std::result::Result<_, _>>()
        .map(Some)
}

/// A connection as shown to users: the record with its config opened.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    #[serde(flatten)]
    pub record: ConnectionRecord,
    pub config: serde_json::Value,
    pub grants: Vec<Grant>,
}

/// The result of `connection test`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TestReport {
    pub ok: bool,
    pub health: Result_<String>,
    pub objects: Result_<serde_json::Value>,
}

/// A serializable result.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Result_<T> {
    Ok(T),
    Error(String),
}

fn role_names(roles: &BTreeMap<String, Role>) -> BTreeMap<String, String> {
    roles
        .iter()
        .map(|(op, role)| (op.clone(), format!("{role:?}")))
        .collect()
}

impl ControlPlane {
    /// Checks the parts of a connection that depend on the manifest, collecting every problem.
    fn check_against_manifest(
        manifest: &Manifest,
        config: &serde_json::Value,
        allowed_operations: &Option<Vec<String>>,
        required_roles: &BTreeMap<String, Role>,
        egress: &[String],
        approval: &super::policies::ApprovalPolicy,
        data: &super::shaping::DataPolicy,
    ) -> Result<()> {
        let mut problems = schema::validate(&manifest.config_schema, config, "config")
            .err()
            .unwrap_or_default();
        if let Err(bad) = crate::egress::Egress::from_grants(egress) {
            problems.extend(bad);
        }
        let known = |op: &str| manifest.operation(op).is_some();
        let names = || {
            manifest
                .operations
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for op in allowed_operations
            .iter()
            .flatten()
            .chain(required_roles.keys())
            .chain(approval.operation_risks.keys())
            .chain(data.classification.keys())
        {
            if !known(op) {
                problems.push(format!(
                    "operation `{op}` is not in {}'s manifest; it offers: {}",
                    manifest.id,
                    names()
                ));
            }
        }
        if let Err(bad) = data.mask.validate() {
            problems.extend(bad);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ControlError::Invalid(problems))
        }
    }

    pub async fn connection_create(
        &self,
        who: &Principal,
        mut spec: ConnectionSpec,
    ) -> Result<ConnectionView> {
        // No config is an empty config.
        if spec.config.is_null() {
            spec.config = serde_json::json!({});
        }
        let entry = AuditEntry::new(who, Action::ConnectionCreate, &spec.name);
        let decision = self.check(&entry, Context::default()).await?;
        let result = async {
            validate_id("connection name", &spec.name)
                .map_err(|e| ControlError::Invalid(vec![e]))?;
            let connector = self
                .connector_record(&who.tenant, &spec.connector, spec.version.as_deref())
                .await?;
            let view = ConnectorView::from_record(&connector)?;
            Self::check_against_manifest(
                &view.manifest,
                &spec.config,
                &spec.allowed_operations,
                &spec.required_roles,
                &spec.egress,
                &spec.approval,
                &spec.data,
            )?;
            if let Some(limits) = &spec.limits {
                limits
                    .check(self.executor.memory_ceiling())
                    .map_err(ControlError::Invalid)?;
            }
            let now = now_ms();
            let record = ConnectionRecord {
                tenant: who.tenant.clone(),
                name: spec.name.clone(),
                connector: spec.connector.clone(),
                connector_version: spec.version.clone(),
                config_sealed: self.seal_config(&who.tenant, &spec.name, &spec.config),
                status: ConnectionStatus::New,
                allowed_operations: spec.allowed_operations.clone(),
                allowed_objects: spec.allowed_objects.clone(),
                required_roles: role_names(&spec.required_roles),
                writes_enabled: spec.writes_enabled,
                limits: serde_json::to_value(spec.limits.clone().unwrap_or_default())
                    .expect("limits serialize"),
                last_test_at: None,
                last_test_ok: None,
                last_test_message: None,
                created_by: who.id.clone(),
                created_at: now,
                updated_at: now,
                revision: 1,
                egress: spec.egress.clone(),
                queries_per_minute: spec.queries_per_minute.map(i64::from),
                accept_read_routes: spec.accept_read_routes,
                approval_policy: spec.approval.to_value(),
                data_policy: spec.data.to_value(),
            };
            self.state.insert_connection(&record).await.map_err(|e| {
                match ControlError::from(e) {
                    exists @ ControlError::Conflict { .. } => {
                        exists.with_remedy(crate::remedy::Remedy::UpdateConnection {
                            connection: record.name.clone(),
                        })
                    }
                    other => other,
                }
            })?;
            Ok(ConnectionView {
                record,
                config: spec.config.clone(),
                grants: Vec::new(),
            })
        }
        .await;
        self.audit(&entry, &decision, result.as_ref().map(|_| ()))
            .await;
        result
    }

    fn seal_config(&self, tenant: &str, name: &str, config: &serde_json::Value) -> Vec<u8> {
        self.vault
            .seal(tenant, name, CONFIG_PURPOSE, config.to_string().as_bytes())
    }

    pub async fn connection_update(
        &self,
        who: &Principal,
        name: &str,
        update: ConnectionUpdate,
    ) -> Result<ConnectionView> {
        self.audited(who, Action::ConnectionUpdate, name, None, async {
            let mut record = self.connection_record(&who.tenant, name).await?;
            // A new config replaces the stored one without opening it: one that no longer opens
            // (sealed with a key since lost) can still be replaced.
            let config = match update.config {
                Some(new) => new,
                None => self.open_config(&record)?,
            };
            if let Some(version) = update.version {
                record.connector_version = version;
            }
            if let Some(ops) = update.allowed_operations {
                record.allowed_operations = ops;
            }
            if let Some(objects) = update.allowed_objects {
                record.allowed_objects = objects;
            }
            let roles: BTreeMap<String, Role> = match update.required_roles {
                Some(roles) => roles,
                None => record
                    .required_roles
                    .iter()
                    .filter_map(|(op, r)| Some((op.clone(), r.parse().ok()?)))
                    .collect(),
            };
            record.required_roles = role_names(&roles);
            if let Some(writes) = update.writes_enabled {
                record.writes_enabled = writes;
            }
            if let Some(limits) = update.limits {
                limits
                    .check(self.executor.memory_ceiling())
                    .map_err(ControlError::Invalid)?;
                record.limits = serde_json::to_value(limits).expect("limits serialize");
            }
            if let Some(egress) = update.egress {
                record.egress = egress;
            }
            if let Some(qpm) = update.queries_per_minute {
                record.queries_per_minute = qpm.map(i64::from);
            }
            if let Some(accept) = update.accept_read_routes {
                record.accept_read_routes = accept;
            }
            if let Some(approval) = &update.approval {
                record.approval_policy = approval.to_value();
            }
            if let Some(data) = &update.data {
                record.data_policy = data.to_value();
            }
            let (approval, data) = super::lookup::stored_policies(&record)?;
            let connector = self
                .connector_record(
                    &who.tenant,
                    &record.connector,
                    record.connector_version.as_deref(),
                )
                .await?;
            let view = ConnectorView::from_record(&connector)?;
            Self::check_against_manifest(
                &view.manifest,
                &config,
                &record.allowed_operations,
                &roles,
                &record.egress,
                &approval,
                &data,
            )?;
            record.config_sealed = self.seal_config(&who.tenant, name, &config);
            self.save(&mut record).await?;
            let grants = self.state.list_grants(&who.tenant, name).await?;
            Ok(ConnectionView {
                record,
                config,
                grants,
            })
        })
        .await
    }

    async fn save(&self, record: &mut ConnectionRecord) -> Result<()> {
        record.revision += 1;
        record.updated_at = now_ms();
        self.state.update_connection(record).await?;
        self.forget_connection(&record.tenant, &record.name);
        Ok(())
    }

    pub async fn connection_set_enabled(
        &self,
        who: &Principal,
        name: &str,
        enabled: bool,
    ) -> Result<ConnectionRecord> {
        self.audited(who, Action::ConnectionEnable, name, None, async {
            let mut record = self.connection_record(&who.tenant, name).await?;
            record.status = match (enabled, record.last_test_ok) {
                (false, _) => ConnectionStatus::Disabled,
                (true, Some(true)) => ConnectionStatus::Connected,
                (true, Some(false)) => ConnectionStatus::Error,
                (true, None) => ConnectionStatus::New,
            };
            self.save(&mut record).await?;
            Ok(record)
        })
        .await
    }

    pub async fn connection_list(&self, who: &Principal) -> Result<Vec<ConnectionRecord>> {
        let entry = AuditEntry::new(who, Action::ConnectionList, "connections");
        let decision = self.check(&entry, Context::default()).await?;
        let result = self
            .state
            .list_connections(&who.tenant)
            .await
            .map_err(ControlError::from);
        self.audit(&entry, &decision, result.as_ref().map(|_| ()))
            .await;
        result
    }

    pub async fn connection_show(&self, who: &Principal, name: &str) -> Result<ConnectionView> {
        self.audited(who, Action::ConnectionShow, name, None, async {
            let record = self.connection_record(&who.tenant, name).await?;
            let config = self.open_config(&record)?;
            let grants = self.state.list_grants(&who.tenant, name).await?;
            Ok(ConnectionView {
                record,
                config,
                grants,
            })
        })
        .await
    }

    /// Runs `health` and `discover` on the connection and records the result and status.
    pub async fn connection_test(&self, who: &Principal, name: &str) -> Result<TestReport> {
        self.audited(who, Action::ConnectionTest, name, None, async {
            let resolved = self.resolve(&who.tenant, name).await?;
            let connector = self.loaded(&resolved).await?;
            let caller = resolved.caller(who);
            let health = self
                .executor
                .call(connector, &caller, &resolved.env, crate::Call::Health)
                .await;
            let objects = self
                .executor
                .call(connector, &caller, &resolved.env, crate::Call::Discover)
                .await;
            let ok = health.is_ok() && objects.is_ok();
            let report = TestReport {
                ok,
                health: match health {
                    Ok(o) => Result_::Ok(serde_json::from_str(&o.output).unwrap_or(o.output)),
                    Err(e) => Result_::Error(e.to_string()),
                },
                objects: match objects {
                    Ok(o) => Result_::Ok(serde_json::from_str(&o.output).unwrap_or_default()),
                    Err(e) => Result_::Error(e.to_string()),
                },
            };
            let mut record = self.connection_record(&who.tenant, name).await?;
            record.last_test_at = Some(now_ms());
            record.last_test_ok = Some(ok);
            record.last_test_message = Some(match &report.health {
                Result_::Ok(m) => m.clone(),
                Result_::Error(e) => e.clone(),
            });
            if record.status != ConnectionStatus::Disabled {
                record.status = if ok {
                    ConnectionStatus::Connected
                } else {
                    ConnectionStatus::Error
                };
            }
            self.save(&mut record).await?;
            Ok(report)
        })
        .await
    }

    /// Grants (or with `revoke`, removes) an agent the right to invoke one operation.
    pub async fn connection_grant(
        &self,
        who: &Principal,
        name: &str,
        agent: &str,
        operation: &str,
        revoke: bool,
    ) -> Result<()> {
        let entry = AuditEntry::new(who, Action::ConnectionGrant, name);
        let decision = self.check(&entry, Context::default()).await?;
        let result = async {
            validate_id("agent", agent).map_err(|e| ControlError::Invalid(vec![e]))?;
            let record = self.connection_record(&who.tenant, name).await?;
            if revoke {
                if !self
                    .state
                    .delete_grant(&who.tenant, name, agent, operation)
                    .await?
                {
                    return Err(ControlError::not_found(format!(
                        "agent `{agent}` has no grant for `{operation}` on `{name}`"
                    )));
                }
            } else {
                let connector = self
                    .connector_record(
                        &who.tenant,
                        &record.connector,
                        record.connector_version.as_deref(),
                    )
                    .await?;
                let view = ConnectorView::from_record(&connector)?;
                Self::check_against_manifest(
                    &view.manifest,
                    &serde_json::json!({}),
                    &Some(vec![operation.to_owned()]),
                    &BTreeMap::new(),
                    &[],
                    &Default::default(),
                    &Default::default(),
                )
                .or_else(|e| match e {
                    // Only the operation matters here; the empty config is not being set.
                    ControlError::Invalid(p) if p.iter().all(|m| m.starts_with("config")) => Ok(()),
                    other => Err(other),
                })?;
                let grant = Grant {
                    connection: name.into(),
                    agent: agent.into(),
                    operation: operation.into(),
                    granted_by: who.id.clone(),
                    granted_at: now_ms(),
                };
                self.state.put_grant(&who.tenant, &grant).await?;
            }
            self.forget_connection(&who.tenant, name);
            Ok(())
        }
        .await;
        let operation_label = format!("{}{operation}", if revoke { "revoke:" } else { "grant:" });
        let target = format!("{name}/{agent}");
        let entry = AuditEntry {
            target: &target,
            operation: Some(&operation_label),
            ..entry
        };
        self.audit(&entry, &decision, result.as_ref().map(|_| ()))
            .await;
        result
    }
}
