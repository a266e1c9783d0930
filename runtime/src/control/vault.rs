//! Encryption at rest for connection config and credentials.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per seal (random nonces are safe at this size),
//! and the tenant and connection bound as associated data: a ciphertext copied onto another
//! tenant's or connection's row fails to open instead of decrypting there. The master key comes
//! from `AIRLOCK_MASTER_KEY` (base64 of 32 bytes) or the file named by `AIRLOCK_MASTER_KEY_FILE`;
//! without one the control plane refuses to start, except in the demo, which makes its own key
//! file in its data directory.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::Path;
use zeroize::Zeroizing;

pub const MASTER_KEY_ENV: &str = "AIRLOCK_MASTER_KEY";
pub const MASTER_KEY_FILE_ENV: &str = "AIRLOCK_MASTER_KEY_FILE";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
/// The first byte of every sealed value, so the format can change without guessing.
const FORMAT_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "no master key: set {MASTER_KEY_ENV} to a base64-encoded 32-byte key, or {MASTER_KEY_FILE_ENV} to a file \
         holding one (`airlock keygen` prints a new key)"
    )]
    NoKey,
    #[error("the master key in {source_name} is unusable: {reason}")]
    BadKey { source_name: String, reason: String },
    #[error(
        "stored secret for {what} cannot be opened: wrong master key, or the data was altered or moved"
    )]
    Open { what: String },
}

/// The master key. Its bytes are wiped from memory when dropped and never printed.
pub struct Vault {
    cipher: XChaCha20Poly1305,
    /// A key derived from the master key for signing audit checkpoints: one key, two uses
    /// kept apart by the derivation.
    checkpoint_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

fn aad(tenant: &str, connection: &str, purpose: &str) -> Vec<u8> {
    format!("airlock:{purpose}:v1\0{tenant}\0{connection}").into_bytes()
}

impl Vault {
    /// Builds a vault from base64 key text.
    pub fn from_base64(text: &str, source_name: &str) -> Result<Self, VaultError> {
        let bad = |reason: String| VaultError::BadKey {
            source_name: source_name.to_owned(),
            reason,
        };
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| bad(format!("not base64 ({e})")))?,
        );
        if bytes.len() != KEY_BYTES {
            return Err(bad(format!("{} bytes, expected {KEY_BYTES}", bytes.len())));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        Ok(Vault {
            cipher,
            checkpoint_key: Zeroizing::new(hmac_sha256(&bytes, b"airlock:audit-checkpoint:v1")),
        })
    }

    /// The key from the environment: `AIRLOCK_MASTER_KEY`, else `AIRLOCK_MASTER_KEY_FILE`.
    pub fn from_env() -> Result<Self, VaultError> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return Self::from_base64(&text, MASTER_KEY_ENV);
        }
        if let Some(path) = std::env::var_os(MASTER_KEY_FILE_ENV) {
            return Self::from_file(Path::new(&path));
        }
        Err(VaultError::NoKey)
    }

    pub fn from_file(path: &Path) -> Result<Self, VaultError> {
        let name = path.display().to_string();
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| VaultError::BadKey {
                    source_name: name.clone(),
                    reason: e.to_string(),
                })?,
            );
        Self::from_base64(&text, &name)
    }

    /// For the demo only: the key file in `dir`, created (readable by the owner only) if absent.
    pub fn demo_key(dir: &Path) -> Result<Self, VaultError> {
        let path = dir.join("demo-master.key");
        if !path.exists() {
            let text = generate_key();
            write_private(&path, text.as_bytes()).map_err(|e| VaultError::BadKey {
                source_name: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        Self::from_file(&path)
    }

    /// The hex HMAC-SHA256 of `message` under the audit checkpoint key.
    pub fn sign_checkpoint(&self, message: &[u8]) -> String {
        hex::encode(hmac_sha256(self.checkpoint_key.as_ref(), message))
    }

    /// Encrypts `plaintext` for one tenant's connection.
    pub fn seal(&self, tenant: &str, connection: &str, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XNonce::generate();
        let aad = aad(tenant, connection, purpose);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`Vault::seal`] produced for the same tenant, connection and purpose.
    pub fn open(
        &self,
        tenant: &str,
        connection: &str,
        purpose: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let what = || VaultError::Open {
            what: format!("{purpose} of connection `{connection}`"),
        };
        if sealed.len() < 1 + NONCE_BYTES || sealed[0] != FORMAT_V1 {
            return Err(what());
        }
        let nonce = XNonce::try_from(&sealed[1..1 + NONCE_BYTES]).map_err(|_| what())?;
        let aad = aad(tenant, connection, purpose);
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed[1 + NONCE_BYTES..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| what())
    }
}

/// A new random master key, base64.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

pub fn generate_key() -> String {
    let key = Zeroizing::new(<[u8; KEY_BYTES]>::generate());
    base64::engine::general_purpose::STANDARD.encode(*key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::from_base64(&generate_key(), "test").unwrap()
    }

    #[test]
    fn vault_round_trips_and_binds_tenant_and_connection() {
        let v = vault();
        let sealed = v.seal("acme", "crm", "config", b"{\"region\":\"eu\"}");
        assert!(
            !sealed.windows(6).any(|w| w == b"region"),
            "plaintext visible in the sealed bytes"
        );
        assert_eq!(
            &*v.open("acme", "crm", "config", &sealed).unwrap(),
            b"{\"region\":\"eu\"}"
        );
        for (t, c, p) in [
            ("globex", "crm", "config"),
            ("acme", "erp", "config"),
            ("acme", "crm", "credential"),
        ] {
            assert!(
                v.open(t, c, p, &sealed).is_err(),
                "opened under {t}/{c}/{p}"
            );
        }
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(v.open("acme", "crm", "config", &tampered).is_err());
        assert!(
            vault().open("acme", "crm", "config", &sealed).is_err(),
            "opened with another key"
        );
    }

    #[test]
    fn vault_rejects_bad_keys_with_the_reason() {
        let err = Vault::from_base64("not base64!", "AIRLOCK_MASTER_KEY")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AIRLOCK_MASTER_KEY") && err.contains("not base64"),
            "{err}"
        );
        let short = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        let err = Vault::from_base64(&short, "k").unwrap_err().to_string();
        assert!(err.contains("16 bytes, expected 32"), "{err}");
    }
}
