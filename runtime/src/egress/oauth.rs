//! OAuth2 tokens (client-credentials, refresh-token and JWT bearer grants), obtained and refreshed by the
//! host. A refresh token the endpoint rotates is used from then on and stored again, sealed.
//!
//! The client secret never leaves the host except to the token endpoint, which must match one
//! of the credential's host grants. A token is refreshed ahead of its expiry by
//! `OAUTH_REFRESH_SAFETY_WINDOW_S` (300 s by default, at most half the token's lifetime), and
//! one refresh at a time per credential: concurrent invocations wait for it instead of each
//! asking for a token (`tests/egress.rs` runs 50 at once and expects one token request).

use super::client::EgressClient;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// The most bytes of a token response read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 << 10;
/// The time to get a token.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);

/// How long before its expiry a token is refreshed unless the host's settings say otherwise
/// (`OAUTH_REFRESH_SAFETY_WINDOW_S`).
pub const DEFAULT_REFRESH_WINDOW: Duration = Duration::from_secs(300);

struct Token {
    access: Zeroizing<String>,
    refresh_at: Instant,
}

/// Where a token is shared with other processes (the control plane's store, sealed), so that
/// N processes serving one connection ask the token endpoint once, not N times.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    /// The stored token and when to refresh it (Unix ms), if one is stored and readable.
    async fn load(&self) -> Result<Option<(Zeroizing<String>, i64)>, String>;
    /// The right to fetch a token until `until_ms`, for one caller at a time.
    async fn take_lease(&self, now_ms: i64, until_ms: i64) -> Result<bool, String>;
    /// Stores a fetched token (and frees the lease).
    async fn save(&self, token: &str, refresh_at_ms: i64) -> Result<(), String>;
    /// Frees the lease after a failed fetch.
    async fn release(&self) -> Result<(), String>;
}

/// How often a process waiting for another's token fetch looks again.
const SHARED_POLL: Duration = Duration::from_millis(50);

/// One credential's current token. Shared by the connection's invocations.
#[derive(Default)]
pub struct TokenCache {
    token: Mutex<Option<Token>>,
    /// The refresh token in use, once the endpoint has rotated the stored one.
    refresh: Mutex<Option<Zeroizing<String>>>,
    rotate: std::sync::OnceLock<RotateHook>,
    shared: std::sync::OnceLock<std::sync::Arc<dyn TokenStore>>,
    /// Refresh this long before expiry (at most half the lifetime); the default when unset.
    refresh_window: std::sync::OnceLock<Duration>,
    /// Tokens fetched so far (for tests and health).
    fetched: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache(..)")
    }
}

/// Stores a rotated refresh token.
pub type RotateHook = std::sync::Arc<
    dyn Fn(Zeroizing<String>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

enum Grant<'a> {
    ClientCredentials {
        client_id: &'a str,
        client_secret: &'a str,
        scope: Option<&'a str>,
    },
    RefreshToken {
        client_id: &'a str,
        stored: &'a str,
    },
    JwtBearer(&'a Assertion<'a>),
}

/// What a JWT bearer assertion is made of (see `egress::jwt`).
pub struct Assertion<'a> {
    pub private_key: &'a str,
    pub algorithm: super::jwt::Algorithm,
    pub key_id: Option<&'a str>,
    pub issuer: &'a str,
    pub subject: Option<&'a str>,
    pub audience: &'a str,
    pub scope: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    refresh_token: Option<String>,
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl TokenCache {
    pub fn fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid access token: the cached one, or a new one from `token_url`. Errors never contain
    /// the client secret.
    pub async fn access_token(
        &self,
        client: &EgressClient,
        token_url: &str,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
    ) -> Result<Zeroizing<String>, String> {
        self.token_for(
            client,
            token_url,
            Grant::ClientCredentials {
                client_id,
                client_secret,
                scope,
            },
        )
        .await
    }

    /// A valid access token from the refresh-token grant. `stored` is the refresh token as
    /// stored; when the endpoint rotates it, the new one is used from then on and handed to the
    /// rotation hook to be stored.
    pub async fn access_token_by_refresh(
        &self,
        client: &EgressClient,
        token_url: &str,
        client_id: &str,
        stored: &str,
    ) -> Result<Zeroizing<String>, String> {
        self.token_for(client, token_url, Grant::RefreshToken { client_id, stored })
            .await
    }

    /// A valid access token from the JWT bearer grant (RFC 7523): a fresh assertion, signed
    /// here, for every token request.
    pub async fn access_token_by_assertion(
        &self,
        client: &EgressClient,
        token_url: &str,
        assertion: &Assertion<'_>,
    ) -> Result<Zeroizing<String>, String> {
        self.token_for(client, token_url, Grant::JwtBearer(assertion))
            .await
    }

    /// Sets what to do with a rotated refresh token (the control plane stores it, sealed).
    pub fn on_rotate(&self, hook: RotateHook) {
        let _ = self.rotate.set(hook);
    }

    /// Refreshes tokens `window` before they expire (at most half their lifetime).
    pub fn refresh_ahead_by(&self, window: Duration) {
        let _ = self.refresh_window.set(window);
    }

    /// Shares tokens with other processes through `store`.
    pub fn share_through(&self, store: std::sync::Arc<dyn TokenStore>) {
        let _ = self.shared.set(store);
    }

    /// A token another process fetched, or the right to fetch one: waits while another
    /// process holds the lease, up to the fetch timeout. A store that fails is reported and
    /// passed over (a token is fetched here): the shared token saves requests, it is not an
    /// access rule.
    async fn shared_token(&self, store: &dyn TokenStore) -> Option<Token> {
        let fresh = |stored: Option<(Zeroizing<String>, i64)>| {
            let now = crate::time::now_unix_ms();
            stored
                .filter(|(_, refresh_at_ms)| now < *refresh_at_ms)
                .map(|(access, refresh_at_ms)| Token {
                    access,
                    refresh_at: crate::time::from_now(Duration::from_millis(
                        refresh_at_ms.saturating_sub(now) as u64,
                    )),
                })
        };
        let waited = std::time::Instant::now();
        loop {
            match store.load().await {
                Ok(stored) => {
                    if let Some(token) = fresh(stored) {
                        return Some(token);
                    }
                }
                Err(e) => {
                    tracing::warn!("shared token store: {e}");
                    return None;
                }
            }
            let now = crate::time::now_unix_ms();
            let lease = (TOKEN_TIMEOUT + Duration::from_secs(1)).as_millis() as i64;
            match store.take_lease(now, now.saturating_add(lease)).await {
                Ok(true) => {
                    // Another process may have stored its token between the look and the lease.
                    if let Ok(Some(token)) = store.load().await.map(fresh) {
                        if let Err(e) = store.release().await {
                            tracing::warn!("shared token store: {e}");
                        }
                        return Some(token);
                    }
                    return None;
                }
                Ok(false) if waited.elapsed() < TOKEN_TIMEOUT => {
                    tokio::time::sleep(SHARED_POLL).await
                }
                Ok(false) => return None,
                Err(e) => {
                    tracing::warn!("shared token store: {e}");
                    return None;
                }
            }
        }
    }

    async fn token_for(
        &self,
        client: &EgressClient,
        token_url: &str,
        grant: Grant<'_>,
    ) -> Result<Zeroizing<String>, String> {
        // Held across the fetch: this is the one-refresh-at-a-time guarantee.
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.access.clone());
        }
        let shared = self.shared.get().cloned();
        if let Some(store) = &shared
            && let Some(token) = self.shared_token(store.as_ref()).await
        {
            let access = token.access.clone();
            *slot = Some(token);
            return Ok(access);
        }
        let mut current_refresh = self.refresh.lock().await;
        let fetched = self
            .fetch(client, token_url, grant, &mut current_refresh)
            .await;
        let (access, fresh_for) = match fetched {
            Ok(fetched) => fetched,
            Err(e) => {
                // Let the next process try at once instead of waiting out the lease.
                if let Some(store) = &shared
                    && let Err(e) = store.release().await
                {
                    tracing::warn!("shared token store: {e}");
                }
                return Err(e);
            }
        };
        self.fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(store) = &shared {
            let refresh_at_ms = crate::time::now_unix_ms()
                .saturating_add(i64::try_from(fresh_for.as_millis()).unwrap_or(i64::MAX));
            if let Err(e) = store.save(&access, refresh_at_ms).await {
                tracing::warn!("shared token store: {e}");
            }
        }
        *slot = Some(Token {
            access: access.clone(),
            refresh_at: crate::time::from_now(fresh_for),
        });
        Ok(access)
    }

    /// Asks the token endpoint: the access token and how long to use it before refreshing.
    async fn fetch(
        &self,
        client: &EgressClient,
        token_url: &str,
        grant: Grant<'_>,
        current_refresh: &mut Option<Zeroizing<String>>,
    ) -> Result<(Zeroizing<String>, Duration), String> {
        let form = Zeroizing::new(match grant {
            Grant::ClientCredentials {
                client_id,
                client_secret,
                scope,
            } => {
                let mut form = format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}",
                    percent(client_id),
                    percent(client_secret)
                );
                if let Some(scope) = scope {
                    form.push_str(&format!("&scope={}", percent(scope)));
                }
                form
            }
            Grant::RefreshToken { client_id, stored } => {
                let refresh = current_refresh
                    .as_deref()
                    .map(String::as_str)
                    .unwrap_or(stored);
                format!(
                    "grant_type=refresh_token&refresh_token={}&client_id={}",
                    percent(refresh),
                    percent(client_id)
                )
            }
            Grant::JwtBearer(a) => {
                let key = super::jwt::SigningKey::from_pem(a.private_key, a.algorithm)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let claims = super::jwt::claims(a.issuer, a.subject, a.audience, a.scope, now);
                let jwt = key.sign(&claims, a.key_id)?;
                let mut form = format!(
                    "grant_type={}&assertion={jwt}",
                    percent("urn:ietf:params:oauth:grant-type:jwt-bearer")
                );
                if let Some(scope) = a.scope {
                    form.push_str(&format!("&scope={}", percent(scope)));
                }
                form
            }
        });
        let request = http::Request::post(token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(
                http_body_util::Full::new(Bytes::from(form.as_bytes().to_vec()))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .map_err(|e| format!("token request to {token_url}: {e}"))?;
        let response = tokio::time::timeout(TOKEN_TIMEOUT, client.get().request(request))
            .await
            .map_err(|_| {
                format!(
                    "token endpoint {token_url} did not answer within {} s",
                    TOKEN_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| format!("token endpoint {token_url} unreachable: {e}"))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_TOKEN_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| format!("token endpoint {token_url}: unreadable response"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "token endpoint {token_url} refused the grant (status {status})"
            ));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| format!("token endpoint {token_url} answered without an access_token"))?;
        if let Some(rotated) = parsed.refresh_token {
            let rotated = Zeroizing::new(rotated);
            if let Some(hook) = self.rotate.get() {
                hook(rotated.clone()).await;
            }
            *current_refresh = Some(rotated);
        }
        // `expires_in` is the endpoint's number: saturating arithmetic only.
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        let window = self
            .refresh_window
            .get()
            .copied()
            .unwrap_or(DEFAULT_REFRESH_WINDOW);
        let ahead = window.min(lifetime / 2);
        Ok((
            Zeroizing::new(parsed.access_token),
            lifetime.saturating_sub(ahead),
        ))
    }
}
