//! JWT bearer assertions (RFC 7523) for the OAuth2 JWT-bearer grant: the host signs a short-lived
//! assertion with the credential's private key and trades it at the token endpoint for an
//! access token. Google service accounts and Salesforce's JWT bearer flow work this way.
//!
//! The private key (PEM, PKCS#8; RSA keys may also be PKCS#1) is the credential's secret: sealed
//! at rest, parsed only in host memory, never logged. RS256 and ES256 are supported, signed
//! with `ring`, the crypto provider rustls already uses.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// How long an assertion is valid: RFC 7523 wants a short expiry; Google accepts at most an hour.
pub const ASSERTION_LIFETIME_S: u64 = 300;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub enum Algorithm {
    RS256,
    ES256,
}

impl Algorithm {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_uppercase().as_str() {
            "RS256" => Ok(Algorithm::RS256),
            "ES256" => Ok(Algorithm::ES256),
            _ => Err(format!(
                "unsupported JWT algorithm `{text}`; use RS256 (RSA key) or ES256 (P-256 key)"
            )),
        }
    }
}

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private key ready to sign assertions.
pub struct SigningKey {
    algorithm: Algorithm,
    key: Key,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.algorithm)
    }
}

impl SigningKey {
    /// Parses a PEM private key for `algorithm`. Errors describe the problem, never the key.
    pub fn from_pem(pem: &str, algorithm: Algorithm) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            "the secret is not a PEM private key (expected -----BEGIN PRIVATE KEY-----)".to_owned()
        })?;
        let key = match (algorithm, &der) {
            (Algorithm::RS256, PrivateKeyDer::Pkcs8(k)) => {
                RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).map(Key::Rsa)
            }
            (Algorithm::RS256, PrivateKeyDer::Pkcs1(k)) => {
                RsaKeyPair::from_der(k.secret_pkcs1_der()).map(Key::Rsa)
            }
            (Algorithm::ES256, PrivateKeyDer::Pkcs8(k)) => EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_pkcs8_der(),
                &SystemRandom::new(),
            )
            .map(Key::Ec),
            (Algorithm::ES256, PrivateKeyDer::Sec1(_)) => {
                return Err("ES256 needs the key in PKCS#8 form (BEGIN PRIVATE KEY); convert it with `openssl pkcs8 -topk8 -nocrypt`".into());
            }
            (_, _) => {
                return Err(format!(
                    "the private key's type does not fit {algorithm:?}: RS256 takes an RSA key, ES256 a P-256 key"
                ));
            }
        }
        .map_err(|rejected| {
            format!("the private key does not fit {algorithm:?}: {rejected}")
        })?;
        Ok(SigningKey { algorithm, key })
    }

    /// A signed `header.claims.signature` compact JWT.
    pub fn sign(&self, claims: &serde_json::Value, key_id: Option<&str>) -> Result<String, String> {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut header = serde_json::json!({"alg": self.algorithm, "typ": "JWT"});
        if let Some(kid) = key_id {
            header["kid"] = kid.into();
        }
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let signature = match &self.key {
            Key::Rsa(key) => {
                let mut out = vec![0; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut out,
                )
                .map_err(|_| "RSA signing failed".to_owned())?;
                out
            }
            Key::Ec(key) => key
                .sign(&rng, input.as_bytes())
                .map_err(|_| "ECDSA signing failed".to_owned())?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", b64(&signature)))
    }
}

/// The claims of an assertion: issued now, expiring after [`ASSERTION_LIFETIME_S`], with a
/// unique `jti` so an endpoint can refuse a replay.
pub fn claims(
    issuer: &str,
    subject: Option<&str>,
    audience: &str,
    scope: Option<&str>,
    now_s: u64,
) -> serde_json::Value {
    let mut claims = serde_json::json!({
        "iss": issuer,
        "sub": subject.unwrap_or(issuer),
        "aud": audience,
        "iat": now_s,
        "exp": now_s + ASSERTION_LIFETIME_S,
        "jti": uuid::Uuid::new_v4().simple().to_string(),
    });
    if let Some(scope) = scope {
        claims["scope"] = scope.into();
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(part: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap()
    }

    fn pem(der: &[u8]) -> String {
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }

    /// Verifies `jwt` with `public` and returns its header and claims.
    fn verify(
        jwt: &str,
        algorithm: &'static dyn signature::VerificationAlgorithm,
        public: &[u8],
    ) -> (serde_json::Value, serde_json::Value) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        signature::UnparsedPublicKey::new(algorithm, public)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &decode(parts[2]),
            )
            .expect("the signature verifies");
        (
            serde_json::from_slice(&decode(parts[0])).unwrap(),
            serde_json::from_slice(&decode(parts[1])).unwrap(),
        )
    }

    #[test]
    fn egress_jwt_es256_assertions_verify_with_the_public_key() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let key = SigningKey::from_pem(&pem(pkcs8.as_ref()), Algorithm::ES256).unwrap();
        let jwt = key
            .sign(
                &claims(
                    "svc@example",
                    None,
                    "https://auth/token",
                    Some("read"),
                    1000,
                ),
                Some("k1"),
            )
            .unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let (header, body) = verify(
            &jwt,
            &signature::ECDSA_P256_SHA256_FIXED,
            signature::KeyPair::public_key(&pair).as_ref(),
        );
        assert_eq!(
            header,
            serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "k1"})
        );
        assert_eq!(
            body["sub"], "svc@example",
            "the subject defaults to the issuer"
        );
        assert_eq!(
            (body["iat"].as_u64(), body["exp"].as_u64()),
            (Some(1000), Some(1300))
        );
        assert_eq!(body["scope"], "read");
        // The wrong algorithm for the key, and not a key at all, are named problems.
        let wrong = SigningKey::from_pem(&pem(pkcs8.as_ref()), Algorithm::RS256).unwrap_err();
        assert!(wrong.contains("RS256"), "{wrong}");
        let junk = SigningKey::from_pem("hunter2", Algorithm::RS256).unwrap_err();
        assert!(junk.contains("not a PEM private key") && !junk.contains("hunter2"));
    }

    #[test]
    fn egress_jwt_rs256_assertions_verify_with_the_public_key() {
        // A key made for this test only (`openssl genpkey -algorithm RSA`); it protects nothing.
        let text = include_str!("jwt-test-rsa-key.pem");
        let key = SigningKey::from_pem(text, Algorithm::RS256).unwrap();
        let jwt = key
            .sign(
                &claims(
                    "client-id",
                    Some("user@example"),
                    "https://login.example",
                    None,
                    5,
                ),
                None,
            )
            .unwrap();
        let der = PrivateKeyDer::from_pem_slice(text.as_bytes()).unwrap();
        let pair = RsaKeyPair::from_pkcs8(der.secret_der()).unwrap();
        let (header, body) = verify(
            &jwt,
            &signature::RSA_PKCS1_2048_8192_SHA256,
            signature::KeyPair::public_key(&pair).as_ref(),
        );
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        assert_eq!(body["sub"], "user@example");
        assert!(body.get("scope").is_none());
        assert_eq!(body["jti"].as_str().map(str::len), Some(32));
        let two = claims("a", None, "b", None, 5);
        assert_ne!(
            two["jti"],
            claims("a", None, "b", None, 5)["jti"],
            "jti is unique"
        );
    }
}
