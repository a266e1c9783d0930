//! OAuth2 access tokens shared by every process serving a connection, kept in the state store
//! sealed by the vault (see `egress::oauth::TokenStore`). A token sealed under another master key
//! (after a rotation) does not open: it reads as absent, and a new one is fetched.

use super::state::{CoordinationStore, TokenKey};
use super::vault::Vault;
use crate::egress::oauth::TokenStore;
use std::sync::Arc;
use zeroize::Zeroizing;

pub struct StoreTokens {
    pub state: Arc<dyn CoordinationStore>,
    pub vault: Arc<Vault>,
    pub tenant: String,
    pub connection: String,
    pub credential: String,
    pub version: i64,
}

impl StoreTokens {
    fn key(&self) -> TokenKey<'_> {
        TokenKey {
            tenant: &self.tenant,
            connection: &self.connection,
            credential: &self.credential,
            version: self.version,
        }
    }

    fn purpose(&self) -> String {
        format!("oauth-token:{}:{}", self.credential, self.version)
    }
}

#[async_trait::async_trait]
impl TokenStore for StoreTokens {
    async fn load(&self) -> Result<Option<(Zeroizing<String>, i64)>, String> {
        let Some(record) = self
            .state
            .oauth_token(&self.key())
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let Some(sealed) = record.token_sealed else {
            return Ok(None);
        };
        let Ok(opened) = self
            .vault
            .open(&self.tenant, &self.connection, &self.purpose(), &sealed)
        else {
            return Ok(None);
        };
        let token = String::from_utf8(opened.to_vec()).map_err(|_| "stored token is not UTF-8")?;
        Ok(Some((Zeroizing::new(token), record.refresh_at_ms)))
    }

    async fn take_lease(&self, now_ms: i64, until_ms: i64) -> Result<bool, String> {
        self.state
            .take_oauth_lease(&self.key(), now_ms, until_ms)
            .await
            .map_err(|e| e.to_string())
    }

    async fn save(&self, token: &str, refresh_at_ms: i64) -> Result<(), String> {
        let sealed = self.vault.seal(
            &self.tenant,
            &self.connection,
            &self.purpose(),
            token.as_bytes(),
        );
        self.state
            .put_oauth_token(&self.key(), &sealed, refresh_at_ms)
            .await
            .map_err(|e| e.to_string())
    }

    async fn release(&self) -> Result<(), String> {
        self.state
            .release_oauth_lease(&self.key())
            .await
            .map_err(|e| e.to_string())
    }
}
