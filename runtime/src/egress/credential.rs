//! Credentials the guest never sees: held by the host, bound to the hosts they may be sent to,
//! and added to a request only after the policy has allowed it.
//!
//! A credential is injected only into a request whose destination matches one of its host
//! grants, so a redirect (which the guest must follow itself, with a new request) to another
//! origin carries no credential. The secret lives in host memory only, wiped when dropped; it
//! is never logged, never put into an error, a denial or an audit record.

use super::grant::Grant;
use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use zeroize::Zeroizing;

/// How a credential is presented to the upstream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Placement {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic base64(username:secret)`.
    Basic { username: String },
    /// `<header>: <secret>`.
    Header { header: String },
    /// `?<param>=<secret>` appended to the query.
    Query { param: String },
    /// OAuth2 client credentials: the secret is the client secret; the host gets tokens from
    /// `token_url` and sends `Authorization: Bearer <access token>`.
    #[serde(rename = "oauth2-client-credentials")]
    OAuth2ClientCredentials {
        token_url: String,
        client_id: String,
        scope: Option<String>,
    },
    /// OAuth2 refresh-token grant: the secret is the refresh token; the host exchanges it for
    /// access tokens and stores the new refresh token when the endpoint rotates it.
    #[serde(rename = "oauth2-refresh-token")]
    OAuth2RefreshToken {
        token_url: String,
        client_id: String,
    },
    /// OAuth2 JWT bearer grant (RFC 7523): the secret is a PEM private key; the host signs a
    /// short-lived assertion (`iss`, `sub`, `aud`, `scope`) and trades it at `token_url` for
    /// access tokens. `audience` defaults to the token URL, `subject` to the issuer.
    #[serde(rename = "oauth2-jwt-bearer")]
    OAuth2JwtBearer {
        token_url: String,
        issuer: String,
        subject: Option<String>,
        audience: Option<String>,
        scope: Option<String>,
        key_id: Option<String>,
        algorithm: super::jwt::Algorithm,
    },
    /// Signs the request body: `<header>: sha256=<hex HMAC-SHA256(secret, body)>`, as webhook
    /// receivers (GitHub, Stripe-style) verify it. The body is read whole to sign it.
    #[serde(rename = "hmac-sha256")]
    HmacSha256 { header: String },
}

impl Placement {
    pub fn kind(&self) -> &'static str {
        match self {
            Placement::Bearer => "bearer",
            Placement::Basic { .. } => "basic",
            Placement::Header { .. } => "api-key-header",
            Placement::Query { .. } => "api-key-query",
            Placement::OAuth2ClientCredentials { .. } => "oauth2-client-credentials",
            Placement::OAuth2RefreshToken { .. } => "oauth2-refresh-token",
            Placement::OAuth2JwtBearer { .. } => "oauth2-jwt-bearer",
            Placement::HmacSha256 { .. } => "hmac-sha256",
        }
    }

    /// The token endpoint, for the OAuth2 placements.
    pub fn token_url(&self) -> Option<&str> {
        match self {
            Placement::OAuth2ClientCredentials { token_url, .. }
            | Placement::OAuth2RefreshToken { token_url, .. }
            | Placement::OAuth2JwtBearer { token_url, .. } => Some(token_url),
            _ => None,
        }
    }

    /// Checks `secret` fits this placement. The error never contains the secret.
    pub fn check_secret(&self, secret: &str) -> Result<(), String> {
        match self {
            Placement::OAuth2JwtBearer { algorithm, .. } => {
                super::jwt::SigningKey::from_pem(secret, *algorithm).map(|_| ())
            }
            _ if header_safe(secret) => Ok(()),
            _ => Err("the secret is empty or has characters that cannot travel in HTTP (line breaks, non-ASCII)".into()),
        }
    }

    /// Checks names given by the operator.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Placement::Header { header } | Placement::HmacSha256 { header } => {
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("`{header}` is not a valid header name"))?;
                if wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(&name) {
                    return Err(format!("`{header}` cannot carry a credential"));
                }
                Ok(())
            }
            Placement::Query { param }
                if param.is_empty()
                    || !param
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                Err(format!("`{param}` is not a valid query parameter name"))
            }
            Placement::Basic { username } if username.contains(':') => {
                Err("a Basic username may not contain `:`".into())
            }
            Placement::OAuth2JwtBearer { issuer, .. } if issuer.trim().is_empty() => Err(
                "a JWT bearer credential needs an issuer (often the client id or service account)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

/// A credential ready for injection.
pub struct Credential {
    pub name: String,
    pub placement: Placement,
    pub hosts: Vec<Grant>,
    /// Tokens for OAuth2 placements, kept across invocations.
    pub tokens: std::sync::Arc<super::oauth::TokenCache>,
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Whether this credential may be sent to `scheme://host:port/path`.
    pub fn applies_to(&self, scheme: &str, host: &str, port: u16, path: &str) -> bool {
        self.hosts
            .iter()
            .any(|g| g.matches(scheme, host, port, path))
    }

    /// Adds the credential to the request, getting an OAuth2 token first where needed, and
    /// tells `secrets` what went on the wire so that an echo of it is masked.
    pub async fn apply<B>(
        &self,
        client: &super::EgressClient,
        request: &mut http::Request<B>,
        secrets: &crate::secrets::Secrets,
    ) -> Result<(), String> {
        match &self.placement {
            Placement::Basic { username } => secrets.add_basic(username, &self.secret),
            _ => secrets.add(&self.secret),
        }
        let token = match &self.placement {
            Placement::OAuth2ClientCredentials {
                token_url,
                client_id,
                scope,
            } => Some((
                token_url,
                self.tokens
                    .access_token(client, token_url, client_id, &self.secret, scope.as_deref())
                    .await?,
            )),
            Placement::OAuth2RefreshToken {
                token_url,
                client_id,
            } => Some((
                token_url,
                self.tokens
                    .access_token_by_refresh(client, token_url, client_id, &self.secret)
                    .await?,
            )),
            Placement::OAuth2JwtBearer {
                token_url,
                issuer,
                subject,
                audience,
                scope,
                key_id,
                algorithm,
            } => Some((
                token_url,
                self.tokens
                    .access_token_by_assertion(
                        client,
                        token_url,
                        &super::oauth::Assertion {
                            private_key: &self.secret,
                            algorithm: *algorithm,
                            key_id: key_id.as_deref(),
                            issuer,
                            subject: subject.as_deref(),
                            audience: audience.as_deref().unwrap_or(token_url),
                            scope: scope.as_deref(),
                        },
                    )
                    .await?,
            )),
            _ => None,
        };
        if let Some((token_url, token)) = token {
            secrets.add(&token);
            if !header_safe(&token) {
                return Err(format!(
                    "token endpoint {token_url} returned an access token that cannot travel in a header"
                ));
            }
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
                .expect("checked header-safe");
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
            return Ok(());
        }
        if !self.signs_body() {
            self.inject(request);
        }
        Ok(())
    }

    /// For signing placements: the header to set for `body`.
    pub fn signature(&self, body: &[u8]) -> Option<(HeaderName, HeaderValue)> {
        use hmac::Mac;
        let Placement::HmacSha256 { header } = &self.placement else {
            return None;
        };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        let value = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut value = HeaderValue::from_str(&value).expect("hex is header-safe");
        value.set_sensitive(true);
        Some((
            HeaderName::from_bytes(header.as_bytes()).expect("validated when set"),
            value,
        ))
    }

    pub fn signs_body(&self) -> bool {
        matches!(self.placement, Placement::HmacSha256 { .. })
    }

    /// Adds a static credential to the request's headers or query.
    fn inject<B>(&self, request: &mut http::Request<B>) {
        let header = |value: String| {
            let mut value = HeaderValue::from_str(&value)
                .expect("credential values are checked to be header-safe when set");
            value.set_sensitive(true);
            value
        };
        match &self.placement {
            Placement::Bearer => {
                request.headers_mut().insert(
                    AUTHORIZATION,
                    header(format!("Bearer {}", self.secret.as_str())),
                );
            }
            Placement::Basic { username } => {
                let pair = Zeroizing::new(format!("{username}:{}", self.secret.as_str()));
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, header(format!("Basic {encoded}")));
            }
            Placement::Header { header: name } => {
                let name = HeaderName::from_bytes(name.as_bytes()).expect("validated when set");
                request
                    .headers_mut()
                    .insert(name, header(self.secret.to_string()));
            }
            Placement::Query { param } => {
                let uri = request.uri().clone();
                let mut parts = uri.into_parts();
                let path = parts
                    .path_and_query
                    .as_ref()
                    .map_or("/", |p| p.path())
                    .to_owned();
                let query = parts
                    .path_and_query
                    .as_ref()
                    .and_then(|p| p.query())
                    .map(str::to_owned);
                let encoded: String = self
                    .secret
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                let pq = match query {
                    Some(q) if !q.is_empty() => format!("{path}?{q}&{param}={encoded}"),
                    _ => format!("{path}?{param}={encoded}"),
                };
                parts.path_and_query = Some(pq.parse().expect("percent-encoded query"));
                *request.uri_mut() = http::Uri::from_parts(parts).expect("same URI with a query");
            }
            Placement::OAuth2ClientCredentials { .. }
            | Placement::OAuth2RefreshToken { .. }
            | Placement::OAuth2JwtBearer { .. }
            | Placement::HmacSha256 { .. } => {
                unreachable!("handled in apply and sign")
            }
        }
    }
}

/// Whether a secret can travel in a header: visible ASCII, no line breaks.
pub fn header_safe(secret: &str) -> bool {
    !secret.is_empty() && secret.bytes().all(|b| (0x20..0x7f).contains(&b))
}
