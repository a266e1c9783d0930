//! Credentials per connection: sealed at rest, bound to hosts, injected by the egress choke
//! point, never shown. Setting, rotating and deleting are Admin's; listing shows metadata.

use super::authz::Action;
use super::state::{CredentialRecord, now_ms};
use super::{ControlError, ControlPlane, Principal, Result};
use crate::egress::Grant;
use crate::egress::credential::{Credential, Placement};
use crate::invocation::validate_id;
use zeroize::Zeroizing;

/// The purpose bound into a sealed credential: its name, so secrets cannot swap rows.
pub(super) fn purpose(name: &str) -> String {
    format!("credential:{name}")
}

/// A credential as shown: everything but the secret.
pub type CredentialView = CredentialRecord;

impl ControlPlane {
    /// Creates or replaces a credential of `connection`.
    pub async fn credential_set(
        &self,
        who: &Principal,
        connection: &str,
        name: &str,
        placement: Placement,
        hosts: Vec<String>,
        secret: Zeroizing<String>,
    ) -> Result<CredentialView> {
        let target = format!("{connection}/{name}");
        self.audited(who, Action::CredentialManage, &target, Some("set"), async {
            let mut problems = Vec::new();
            if let Err(e) = validate_id("credential name", name) {
                problems.push(e);
            }
            if let Err(e) = placement.validate() {
                problems.push(e);
            }
            if hosts.is_empty() {
                problems.push("a credential needs at least one host it may be sent to, such as https://api.example.com".into());
            }
            for host in &hosts {
                if let Err(e) = Grant::parse(host) {
                    problems.push(e);
                }
            }
            if let Some(token_url) = placement.token_url() {
                let uri: Option<http::Uri> = token_url.parse().ok();
                let covered = uri.as_ref().is_some_and(|u| {
                    let scheme = u.scheme_str().unwrap_or("").to_ascii_lowercase();
                    let port = u.port_u16().or_else(|| crate::egress::grant::default_port(&scheme)).unwrap_or(0);
                    let host = crate::egress::grant::normalize_host(u.host().unwrap_or(""));
                    hosts.iter().filter_map(|h| Grant::parse(h).ok()).any(|g| g.matches(&scheme, &host, port, u.path()))
                });
                if !covered {
                    problems.push(format!("the token URL `{token_url}` must be an http(s) URL under one of the credential's hosts"));
                }
            }
            if let Err(e) = placement.check_secret(&secret) {
                problems.push(e);
            }
            if !problems.is_empty() {
                return Err(ControlError::Invalid(problems));
            }
            self.connection_record(&who.tenant, connection).await?;
            let existing = self.state.list_credentials(&who.tenant, connection).await?.into_iter().find(|c| c.name == name);
            let now = now_ms();
            let record = CredentialRecord {
                connection: connection.into(),
                name: name.into(),
                kind: placement.kind().into(),
                placement: serde_json::to_value(&placement).expect("placements serialize"),
                hosts,
                secret_sealed: self.vault.seal(&who.tenant, connection, &purpose(name), secret.as_bytes()),
                created_by: existing.as_ref().map_or_else(|| who.id.clone(), |e| e.created_by.clone()),
                created_at: existing.as_ref().map_or(now, |e| e.created_at),
                rotated_at: existing.as_ref().map(|_| now),
                version: existing.as_ref().map_or(1, |e| e.version + 1),
            };
            self.state.put_credential(&who.tenant, &record).await?;
            self.forget_connection(&who.tenant, connection);
            Ok(record)
        })
        .await
    }

    /// Replaces a credential's secret, keeping its placement and hosts.
    pub async fn credential_rotate(
        &self,
        who: &Principal,
        connection: &str,
        name: &str,
        secret: Zeroizing<String>,
    ) -> Result<CredentialView> {
        let existing = self.credential_record(who, connection, name).await?;
        let placement: Placement = serde_json::from_value(existing.placement.clone())
            .map_err(|e| ControlError::State(super::state::StateError::Corrupt(e.to_string())))?;
        self.credential_set(who, connection, name, placement, existing.hosts, secret)
            .await
    }

    async fn credential_record(
        &self,
        who: &Principal,
        connection: &str,
        name: &str,
    ) -> Result<CredentialRecord> {
        self.state
            .list_credentials(&who.tenant, connection)
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                ControlError::not_found(format!(
                    "connection `{connection}` has no credential `{name}`"
                ))
            })
    }

    pub async fn credential_list(
        &self,
        who: &Principal,
        connection: &str,
    ) -> Result<Vec<CredentialView>> {
        self.audited(who, Action::CredentialList, connection, None, async {
            self.connection_record(&who.tenant, connection).await?;
            Ok(self.state.list_credentials(&who.tenant, connection).await?)
        })
        .await
    }

    pub async fn credential_delete(
        &self,
        who: &Principal,
        connection: &str,
        name: &str,
    ) -> Result<()> {
        let target = format!("{connection}/{name}");
        self.audited(
            who,
            Action::CredentialManage,
            &target,
            Some("delete"),
            async {
                self.connection_record(&who.tenant, connection).await?;
                if !self
                    .state
                    .delete_credential(&who.tenant, connection, name)
                    .await?
                {
                    return Err(ControlError::not_found(format!(
                        "connection `{connection}` has no credential `{name}`"
                    )));
                }
                self.forget_connection(&who.tenant, connection);
                Ok(())
            },
        )
        .await
    }

    /// The connection's credentials, opened, for its egress.
    pub(crate) async fn credentials_for(
        &self,
        tenant: &str,
        connection: &str,
    ) -> Result<Vec<Credential>> {
        let mut out = Vec::new();
        for record in self.state.list_credentials(tenant, connection).await? {
            let opened = self.vault.open(
                tenant,
                connection,
                &purpose(&record.name),
                &record.secret_sealed,
            );
            // The host opening a secret is itself recorded: who (the host), which credential,
            // which version, whether it opened. Never the value.
            self.audit
                .record(super::audit::AuditRecord {
                    at: now_ms(),
                    tenant: tenant.into(),
                    principal: "airlock-host".into(),
                    principal_kind: "host".into(),
                    role: "-".into(),
                    action: "credential.access".into(),
                    target: format!("{connection}/{}", record.name),
                    operation: None,
                    decision: "allowed".into(),
                    rule: "host-injects-credentials".into(),
                    outcome: if opened.is_ok() { "ok" } else { "error" }.into(),
                    message: Some(format!(
                        "opened version {} for the connection's egress",
                        record.version
                    )),
                    error_kind: opened.as_ref().err().map(|_| "vault".to_owned()),
                    duration_us: 0,
                    params: None,
                    invocation_id: None,
                    remedy: None,
                })
                .await;
            let secret = opened?;
            let secret = Zeroizing::new(String::from_utf8(secret.to_vec()).map_err(|_| {
                ControlError::State(super::state::StateError::Corrupt(
                    "credential is not UTF-8".into(),
                ))
            })?);
            let placement: Placement =
                serde_json::from_value(record.placement.clone()).map_err(|e| {
                    ControlError::State(super::state::StateError::Corrupt(e.to_string()))
                })?;
            let hosts = record
                .hosts
                .iter()
                .map(|h| Grant::parse(h))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| ControlError::Invalid(vec![e]))?;
            let tokens = self
                .tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((
                    tenant.to_owned(),
                    connection.to_owned(),
                    record.name.clone(),
                    record.version,
                ))
                .or_default()
                .clone();
            tokens.refresh_ahead_by(self.settings.oauth_refresh_window);
            if placement.token_url().is_some() {
                // One token for every process serving the connection (see `control::tokens`).
                tokens.share_through(std::sync::Arc::new(super::tokens::StoreTokens {
                    state: self.coordination.clone(),
                    vault: self.vault.clone(),
                    tenant: tenant.to_owned(),
                    connection: connection.to_owned(),
                    credential: record.name.clone(),
                    version: record.version,
                }));
            }
            if matches!(placement, Placement::OAuth2RefreshToken { .. }) {
                // A rotated refresh token replaces the stored one (sealed), keeping the version so
                // the token cache carries on.
                let (state, vault) = (self.state.clone(), self.vault.clone());
                let (tenant_owned, connection_owned) = (tenant.to_owned(), connection.to_owned());
                let template = record.clone();
                tokens.on_rotate(std::sync::Arc::new(move |rotated: Zeroizing<String>| {
                    let (state, vault, tenant, connection, mut record) =
                        (state.clone(), vault.clone(), tenant_owned.clone(), connection_owned.clone(), template.clone());
                    Box::pin(async move {
                        record.secret_sealed = vault.seal(&tenant, &connection, &purpose(&record.name), rotated.as_bytes());
                        record.rotated_at = Some(now_ms());
                        if let Err(e) = state.put_credential(&tenant, &record).await {
                            tracing::error!(credential = %record.name, error = %e, "could not store a rotated refresh token");
                        }
                    })
                }));
            }
            out.push(Credential {
                tokens,
                name: record.name,
                placement,
                hosts,
                secret,
            });
        }
        Ok(out)
    }
}
