//! The connector registry: content-addressed components, versioned, with a history of changes.

use super::authz::{Action, Context};
use super::entry::AuditEntry;
use super::state::{ConnectorRecord, HistoryEntry, now_ms};
use super::{ControlError, ControlPlane, Principal, Result};
use crate::manifest::Manifest;
use sha2::{Digest, Sha256};

/// What `register` did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub connector: ConnectorView,
    /// False when the same bytes were already registered: nothing changed.
    pub created: bool,
}

/// A connector version as shown to users.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ConnectorView {
    pub id: String,
    pub version: String,
    pub digest: String,
    pub enabled: bool,
    pub registered_by: String,
    pub registered_at: i64,
    pub manifest: Manifest,
}

impl ConnectorView {
    pub(crate) fn from_record(r: &ConnectorRecord) -> Result<Self> {
        let manifest = serde_json::from_str(&r.manifest).map_err(|e| {
            ControlError::State(super::state::StateError::Corrupt(format!(
                "stored manifest: {e}"
            )))
        })?;
        Ok(ConnectorView {
            id: r.id.clone(),
            version: r.version.clone(),
            digest: r.digest.clone(),
            enabled: r.enabled,
            registered_by: r.registered_by.clone(),
            registered_at: r.registered_at,
            manifest,
        })
    }
}

/// Dot-separated parts, each compared as a number, then as text.
type Parts = Vec<(u64, String)>;
/// (core parts, is a release, pre-release parts).
pub(crate) type VersionKey = (Parts, bool, Parts);

/// Orders versions as semver does: numeric parts numerically (`1.10.0` after `1.9.0`), a
/// pre-release before its release (`1.0.0-rc1` before `1.0.0`), build metadata ignored.
pub(crate) fn version_key(version: &str) -> VersionKey {
    let version = version.split('+').next().unwrap_or(version);
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version, None),
    };
    let parts = |text: &str| {
        text.split('.')
            .map(|p| (p.parse::<u64>().unwrap_or(0), p.to_owned()))
            .collect::<Vec<_>>()
    };
    (
        parts(core),
        pre.is_none(),
        pre.map(parts).unwrap_or_default(),
    )
}

/// The newest version among `records`, enabled or not.
pub(crate) fn latest(records: &[ConnectorRecord]) -> Option<&ConnectorRecord> {
    records
        .iter()
        .max_by(|a, b| version_key(&a.version).cmp(&version_key(&b.version)))
}

impl ControlPlane {
    /// Registers a component: validates it, compiles it into the cache, stores its bytes by
    /// digest and records who registered which version. The same bytes again change nothing.
    /// `progress` hears what is happening (for a spinner).
    pub async fn register(
        &self,
        who: &Principal,
        bytes: &[u8],
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Registered> {
        let entry = AuditEntry::new(who, Action::ConnectorRegister, "registry");
        let decision = self.check(&entry, Context::default()).await?;
        let result = self.register_allowed(who, bytes, progress).await;
        let target = match &result {
            Ok(r) => format!("{}@{}", r.connector.id, r.connector.version),
            Err(_) => "registry".to_owned(),
        };
        let entry = AuditEntry {
            target: &target,
            ..entry
        };
        self.audit(&entry, &decision, result.as_ref().map(|_| ()))
            .await;
        result
    }

    async fn register_allowed(
        &self,
        who: &Principal,
        bytes: &[u8],
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Registered> {
        let digest = hex::encode(Sha256::digest(bytes));
        progress(&format!(
            "validating and compiling sha256:{}",
            &digest[..12]
        ));
        let connector = self.executor.load(bytes).await?;
        let manifest = connector.manifest.clone();
        let versions = self
            .state
            .connector_versions(&who.tenant, &manifest.id)
            .await?;
        if let Some(existing) = versions.iter().find(|r| r.version == manifest.version) {
            if existing.digest == digest {
                return Ok(Registered {
                    connector: ConnectorView::from_record(existing)?,
                    created: false,
                });
            }
            return Err(ControlError::conflict(format!(
                "{} version {} is already registered with different content (sha256:{}); give the new build a new version",
                manifest.id, manifest.version, existing.digest
            )));
        }
        progress("storing");
        self.state.put_component(&digest, bytes).await?;
        let record = ConnectorRecord {
            tenant: who.tenant.clone(),
            id: manifest.id.clone(),
            version: manifest.version.clone(),
            digest: digest.clone(),
            manifest: serde_json::to_string(manifest.as_ref()).expect("manifests serialize"),
            enabled: true,
            registered_by: who.id.clone(),
            registered_at: now_ms(),
        };
        self.state.insert_connector(&record).await?;
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.clone(), connector);
        self.history(
            who,
            &record.id,
            &record.version,
            "register",
            serde_json::json!({"digest": digest, "size": bytes.len()}),
        )
        .await?;
        self.forget_all_connections();
        Ok(Registered {
            connector: ConnectorView::from_record(&record)?,
            created: true,
        })
    }

    async fn history(
        &self,
        who: &Principal,
        id: &str,
        version: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let entry = HistoryEntry {
            seq: 0,
            connector: id.into(),
            version: version.into(),
            action: action.into(),
            actor: who.id.clone(),
            at: now_ms(),
            detail,
        };
        self.state.append_history(&who.tenant, &entry).await?;
        Ok(())
    }

    pub async fn connector_list(&self, who: &Principal) -> Result<Vec<ConnectorView>> {
        self.audited(who, Action::ConnectorList, "registry", None, async {
            self.state
                .list_connectors(&who.tenant)
                .await?
                .iter()
                .map(ConnectorView::from_record)
                .collect()
        })
        .await
    }

    /// Every version of one connector.
    pub async fn connector_show(&self, who: &Principal, id: &str) -> Result<Vec<ConnectorView>> {
        self.audited(who, Action::ConnectorShow, id, None, async {
            let versions = self.state.connector_versions(&who.tenant, id).await?;
            if versions.is_empty() {
                return Err(not_registered(id));
            }
            versions.iter().map(ConnectorView::from_record).collect()
        })
        .await
    }

    /// Enables or disables one version, or every version when `version` is `None`.
    pub async fn connector_set_enabled(
        &self,
        who: &Principal,
        id: &str,
        version: Option<&str>,
        enabled: bool,
    ) -> Result<Vec<String>> {
        let target = format!("{id}@{}", version.unwrap_or("*"));
        self.audited(who, Action::ConnectorEnable, &target, None, async {
            let versions = self.state.connector_versions(&who.tenant, id).await?;
            let chosen: Vec<&ConnectorRecord> = versions
                .iter()
                .filter(|r| version.is_none_or(|v| v == r.version))
                .collect();
            if chosen.is_empty() {
                return Err(match version {
                    Some(v) if !versions.is_empty() => ControlError::not_found(format!(
                        "connector `{id}` has no version {v}; it has {}",
                        versions
                            .iter()
                            .map(|r| r.version.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    _ => not_registered(id),
                });
            }
            let mut changed = Vec::new();
            for record in chosen {
                if record.enabled != enabled {
                    self.state
                        .set_connector_enabled(&who.tenant, id, &record.version, enabled)
                        .await?;
                    let action = if enabled { "enable" } else { "disable" };
                    self.history(who, id, &record.version, action, serde_json::json!({}))
                        .await?;
                    changed.push(record.version.clone());
                }
            }
            self.forget_all_connections();
            Ok(changed)
        })
        .await
    }

    /// The registry's history: every change, oldest first; one connector's when `id` is given.
    pub async fn connector_history(
        &self,
        who: &Principal,
        id: Option<&str>,
    ) -> Result<Vec<HistoryEntry>> {
        let target = id.unwrap_or("registry");
        let entry = AuditEntry::new(who, Action::ConnectorHistory, target);
        let decision = self.check(&entry, Context::default()).await?;
        let result = self
            .state
            .history(&who.tenant, id)
            .await
            .map_err(ControlError::from);
        self.audit(&entry, &decision, result.as_ref().map(|_| ()))
            .await;
        result
    }
}

pub(crate) fn not_registered(id: &str) -> ControlError {
    ControlError::not_found(format!("connector `{id}` is not registered")).with_remedy(
        crate::remedy::Remedy::RegisterConnector {
            connector: id.to_owned(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_orders_versions_numerically() {
        let mut v = vec![
            "1.9.0",
            "1.10.0",
            "0.2.0",
            "1.10.0-rc1",
            "1.10.0-rc2",
            "1.10.0+build.7",
        ];
        v.sort_by_key(|s| version_key(s));
        assert_eq!(
            v,
            [
                "0.2.0",
                "1.9.0",
                "1.10.0-rc1",
                "1.10.0-rc2",
                "1.10.0",
                "1.10.0+build.7"
            ]
        );
        assert!(version_key("1.10.0") > version_key("1.9.0"));
        assert!(
            version_key("1.0.0-rc1") < version_key("1.0.0"),
            "a pre-release comes before its release"
        );
    }
}
