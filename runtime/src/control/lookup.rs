//! The lookups every operation starts from, within the caller's tenant: a connection (or "not
//! found", also for another tenant's), the connector version it uses, its sealed config opened.

use super::registry::{latest, not_registered, version_key};
use super::state::ConnectionRecord;
use super::{ControlError, ControlPlane, Result};

/// A connection's stored approval and data policies, read; one that does not read is a damaged
/// store, named, never the default (a damaged threshold must not quietly lower approval).
pub(crate) fn stored_policies(
    record: &ConnectionRecord,
) -> Result<(super::policies::ApprovalPolicy, super::shaping::DataPolicy)> {
    let corrupt = |what: &str, why: String| {
        ControlError::State(super::state::StateError::Corrupt(format!(
            "connection `{}`'s stored {what} policy does not read ({why})",
            record.name
        )))
    };
    let approval = super::policies::ApprovalPolicy::from_value(&record.approval_policy)
        .map_err(|why| corrupt("approval", why))?;
    let data = super::shaping::DataPolicy::from_value(&record.data_policy)
        .map_err(|why| corrupt("data", why))?;
    Ok((approval, data))
}

/// The purpose bound into the sealed config (see [`super::vault`]).
pub(crate) const CONFIG_PURPOSE: &str = "connection-config";

impl ControlPlane {
    /// The connection, or "not found" (also for another tenant's).
    pub(crate) async fn connection_record(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<ConnectionRecord> {
        self.state
            .get_connection(tenant, name)
            .await?
            .ok_or_else(|| {
                ControlError::not_found(format!("connection `{name}` not found"))
                    .with_remedy(crate::remedy::Remedy::ListConnections)
            })
    }

    /// The connector version a connection uses, checked to exist.
    pub(crate) async fn connector_record(
        &self,
        tenant: &str,
        id: &str,
        version: Option<&str>,
    ) -> Result<super::state::ConnectorRecord> {
        let versions = self.state.connector_versions(tenant, id).await?;
        let found = match version {
            Some(v) => versions.iter().find(|r| r.version == v),
            // Following the latest means the latest enabled version: disabling a bad release
            // moves its connections back to the one before. With none enabled, the latest
            // (which invocations then refuse as disabled).
            None => versions
                .iter()
                .filter(|r| r.enabled)
                .max_by(|a, b| version_key(&a.version).cmp(&version_key(&b.version)))
                .or_else(|| latest(&versions)),
        };
        match found {
            Some(r) => Ok(r.clone()),
            None if versions.is_empty() => Err(not_registered(id)),
            None => Err(ControlError::not_found(format!(
                "connector `{id}` has no version {}; registered: {}",
                version.unwrap_or("?"),
                versions
                    .iter()
                    .map(|r| r.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub(crate) fn open_config(&self, record: &ConnectionRecord) -> Result<serde_json::Value> {
        let plain = self.vault.open(
            &record.tenant,
            &record.name,
            CONFIG_PURPOSE,
            &record.config_sealed,
        )?;
        serde_json::from_slice(&plain)
            .map_err(|e| ControlError::State(super::state::StateError::Corrupt(e.to_string())))
    }
}
