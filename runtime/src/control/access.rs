//! API tokens: the bearer credentials of the served control plane (HTTP API, MCP).
//!
//! A token reads `alk_<id>_<secret>`. The id (16 hex digits) is public: it names the token in
//! lists, audit records and revocations. The secret (32 random bytes, base64url) is shown once,
//! when the token is made, and kept only as its SHA-256: a stolen database yields no token, and
//! a token holds 256 bits, so a fast hash is enough (no password stretching needed). A token
//! stands for one user or agent of one tenant, with a role; every request it authenticates goes
//! through the same authorization as the CLI's.
//!
//! Authentication failures are audited (under the token's tenant when its id is known, else the
//! host's) and all answer alike: the caller learns nothing about which tokens exist.

use super::authz::{Action, Principal, PrincipalKind};
use super::state::{ApiTokenRecord, now_ms};
use super::{ControlError, ControlPlane, Result};
use crate::invocation::Role;
use base64::Engine as _;
use ring::rand::SecureRandom as _;
use sha2::Digest as _;
use std::time::Duration;
use zeroize::Zeroizing;

/// What every token starts with, so a leaked one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "alk_";

/// The audit tenant of failures that name no known token.
pub const HOST_TENANT: &str = "-";

/// How long a process trusts a token it looked up: a revocation made by another process (another
/// node) takes effect here within this. The revoking process drops it at once.
pub const TOKEN_TTL: Duration = Duration::from_secs(2);

/// Tokens a process keeps looked up at once.
const MAX_CACHED_TOKENS: usize = 10_000;

/// A token to make.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub kind: PrincipalKind,
    /// The user or agent it stands for.
    pub subject: String,
    pub role: Role,
    pub label: Option<String>,
    /// None: until revoked.
    pub expires_in: Option<Duration>,
}

/// A token just made: its record, and the token itself, shown this once.
pub struct IssuedToken {
    pub record: ApiTokenRecord,
    pub token: Zeroizing<String>,
}

/// Never the token: a debug print is how secrets reach logs.
impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("record", &self.record)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Why a bearer was not accepted: for the audit record. Front ends answer every one alike
/// (HTTP 401), so a caller cannot tell an unknown token from a revoked one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("not an Airlock API token (they start with `{TOKEN_PREFIX}`)")]
    Malformed,
    #[error("unknown token")]
    Unknown,
    #[error("token {0} was revoked")]
    Revoked(String),
    #[error("token {0} has expired")]
    Expired(String),
    /// Too many failures from this source lately; try again after the wait.
    #[error("too many failed authentications from this source; retry in {} s", .0.as_secs().max(1))]
    TooManyFailures(Duration),
}

impl AuthError {
    /// The rule recorded in the audit log.
    pub fn rule(&self) -> &'static str {
        match self {
            AuthError::Missing => "token-missing",
            AuthError::Malformed => "token-malformed",
            AuthError::Unknown => "token-unknown",
            AuthError::Revoked(_) => "token-revoked",
            AuthError::Expired(_) => "token-expired",
            AuthError::TooManyFailures(_) => "auth-failures-per-source",
        }
    }
}

fn secret_hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// Equal, in time that depends on the length only.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The id and secret of a presented token, if it has the token's shape.
fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_id = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = (40..=64).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (hex_id && secret_ok).then_some((id, secret))
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    bytes
}

impl ControlPlane {
    /// Makes a token for a user or agent of the caller's tenant (Admins). The token is in the
    /// answer only; the store keeps a hash of its secret.
    pub async fn token_create(&self, who: &Principal, spec: TokenSpec) -> Result<IssuedToken> {
        self.audited(
            who,
            Action::TokenManage,
            &spec.subject,
            Some("create"),
            async {
                crate::invocation::validate_id("token subject", &spec.subject)
                    .map_err(|e| ControlError::Invalid(vec![e]))?;
                if spec.role > who.role {
                    return Err(ControlError::denied(
                        "token-role-above-creator",
                        format!(
                            "a token may not have a higher role ({:?}) than its creator's ({:?})",
                            spec.role, who.role
                        ),
                    ));
                }
                if let Some(label) = &spec.label
                    && (label.len() > 200 || label.chars().any(char::is_control))
                {
                    return Err(ControlError::Invalid(vec![
                        "label: at most 200 characters, no control characters".into(),
                    ]));
                }
                let id = hex::encode(random::<8>());
                let secret = Zeroizing::new(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()),
                );
                let now = now_ms();
                let record = ApiTokenRecord {
                    id: id.clone(),
                    tenant: who.tenant.clone(),
                    kind: spec.kind,
                    subject: spec.subject.clone(),
                    role: spec.role,
                    secret_hash: secret_hash(&secret),
                    label: spec.label.clone(),
                    created_by: who.id.clone(),
                    created_at: now,
                    expires_at: spec.expires_in.map(|d| {
                        now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    }),
                    revoked_at: None,
                    revoked_by: None,
                };
                self.state.insert_api_token(&record).await?;
                Ok(IssuedToken {
                    token: Zeroizing::new(format!("{TOKEN_PREFIX}{id}_{}", &*secret)),
                    record,
                })
            },
        )
        .await
    }

    /// The tenant's tokens, newest first, revoked ones included (never their secrets).
    pub async fn token_list(&self, who: &Principal) -> Result<Vec<ApiTokenRecord>> {
        self.audited(who, Action::TokenManage, &who.tenant, Some("list"), async {
            Ok(self.state.list_api_tokens(&who.tenant).await?)
        })
        .await
    }

    /// Revokes one of the tenant's tokens for good.
    pub async fn token_revoke(&self, who: &Principal, id: &str) -> Result<()> {
        self.audited(who, Action::TokenManage, id, Some("revoke"), async {
            // Gone from this process's cache first: no request of this process is let in by a
            // revoked token.
            self.token_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
            if self
                .state
                .revoke_api_token(&who.tenant, id, &who.id, now_ms())
                .await?
            {
                Ok(())
            } else {
                Err(ControlError::not_found(format!(
                    "no live API token `{}` in this tenant",
                    crate::invocation::shown(id)
                )))
            }
        })
        .await
    }

    /// The principal a bearer token stands for. A refusal is audited with its reason and
    /// `source` (the peer's address, as the front end knows it).
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        source: &str,
    ) -> std::result::Result<Principal, AuthError> {
        // A source over its failures is refused before its token is even looked at.
        if let Some(wait) = self.auth_blocked(source) {
            return Err(AuthError::TooManyFailures(wait));
        }
        let mut result = self.check_token(bearer).await;
        if let Err((_, _, why)) = &mut result
            && let Some(wait) = self.count_auth_failure(source).await
        {
            // This failure tripped the limit: recorded (once), then the source is refused
            // quietly until the bucket refills.
            *why = AuthError::TooManyFailures(wait);
        }
        if let Err((tenant, token_id, why)) = &result {
            // Not an action anyone takes (there is no principal yet), so no rule of the table:
            // the record names the refusal's own rule.
            let record = super::audit::AuditRecord {
                at: now_ms(),
                tenant: tenant.clone(),
                principal: format!("anonymous@{}", crate::invocation::shown(source)),
                principal_kind: "anonymous".into(),
                role: "-".into(),
                action: "token.authenticate".into(),
                target: token_id.clone(),
                operation: None,
                decision: "denied".into(),
                rule: why.rule().into(),
                outcome: "denied".into(),
                message: Some(why.to_string()),
                error_kind: Some("unauthenticated".into()),
                duration_us: 0,
                params: None,
                invocation_id: None,
                remedy: None,
            };
            self.counters.count(&record);
            self.audit.record(record).await;
        }
        result.map_err(|(_, _, why)| why)
    }

    /// The token with this id: from this process's cache when looked up within
    /// [`TOKEN_TTL`], else from the store. Every request of a served API authenticates, and a
    /// store round trip per request cost more than the invocation itself. A revocation in this
    /// process drops the entry at once; one made elsewhere is seen here within the TTL.
    async fn api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>> {
        if let Some((at, record)) = self
            .token_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            && at.elapsed() < TOKEN_TTL
        {
            return Ok(Some(record.clone()));
        }
        let record = self.state.api_token(id).await?;
        if let Some(found) = &record {
            let mut cache = self.token_cache.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: past the bound, start afresh rather than grow.
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
            cache.insert(id.to_owned(), (std::time::Instant::now(), found.clone()));
        }
        Ok(record)
    }

    /// How long `source` is still refused, if it is.
    fn auth_blocked(&self, source: &str) -> Option<Duration> {
        // Every request passes here: one lookup, no sweep (expired entries are swept when a
        // new one is added, on the failure path).
        let mut blocked = self.auth_blocked.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        match blocked.get(source) {
            Some(until) if *until > now => Some(*until - now),
            Some(_) => {
                blocked.remove(source);
                None
            }
            None => None,
        }
    }

    /// Counts a failure from `source` in the shared bucket (`Settings::auth_failures_per_minute`,
    /// in the coordination store, so every node counts together): the wait when this one emptied
    /// it. Past it the source is refused at once, without its token being looked at or another
    /// record written, until the bucket refills: guessing a 256-bit secret is hopeless anyway;
    /// this keeps a flood from filling the audit log.
    async fn count_auth_failure(&self, source: &str) -> Option<Duration> {
        let key = format!("auth-failures:{}", crate::invocation::shown(source));
        let taken = self
            .coordination
            .take_rate_token(
                HOST_TENANT,
                &key,
                self.settings.auth_failures_per_minute,
                now_ms(),
            )
            .await;
        let wait = match taken {
            Ok(Ok(())) => return None,
            Ok(Err(wait_ms)) => Duration::from_millis(wait_ms.max(1) as u64),
            // Cannot count: fail closed for a moment rather than let a flood through.
            Err(_) => Duration::from_secs(1),
        };
        let mut blocked = self.auth_blocked.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        blocked.retain(|_, until| *until > now);
        // Bounded: a flood from many sources cannot grow this without end.
        if blocked.len() < 100_000 {
            blocked.insert(source.to_owned(), crate::time::from_now(wait));
        }
        Some(wait)
    }

    /// The principal, or (audit tenant, token id, why not).
    async fn check_token(
        &self,
        bearer: Option<&str>,
    ) -> std::result::Result<Principal, (String, String, AuthError)> {
        let host = |why| Err((HOST_TENANT.to_owned(), "-".to_owned(), why));
        let Some(bearer) = bearer.map(str::trim).filter(|b| !b.is_empty()) else {
            return host(AuthError::Missing);
        };
        let Some((id, secret)) = parse(bearer) else {
            return host(AuthError::Malformed);
        };
        let record = match self.api_token(id).await {
            Ok(Some(record)) => record,
            // A store that cannot answer accepts no one.
            Ok(None) | Err(_) => return host(AuthError::Unknown),
        };
        let refuse = |why| Err((record.tenant.clone(), record.id.clone(), why));
        if !same(&secret_hash(secret), &record.secret_hash) {
            return refuse(AuthError::Unknown);
        }
        if record.revoked_at.is_some() {
            return refuse(AuthError::Revoked(record.id.clone()));
        }
        if record.expires_at.is_some_and(|at| at <= now_ms()) {
            return refuse(AuthError::Expired(record.id.clone()));
        }
        Ok(Principal {
            tenant: record.tenant,
            id: record.subject,
            kind: record.kind,
            role: record.role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_parse_only_in_their_own_shape() {
        let secret = "A".repeat(43);
        let good = format!("alk_0123456789abcdef_{secret}");
        assert_eq!(parse(&good), Some(("0123456789abcdef", secret.as_str())));
        for bad in [
            "",
            "alk_",
            "Bearer alk_0123456789abcdef_x",
            &format!("alk_0123456789abcdeg_{secret}"),
            &format!("alk_0123456789abcdef0_{secret}"),
            "alk_0123456789abcdef_short",
            &format!("alk_0123456789abcdef_{secret}!"),
            &format!("xyz_0123456789abcdef_{secret}"),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
