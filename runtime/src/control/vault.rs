//! Encryption at rest for connection config, credentials and approvals, and the key that signs
//! audit checkpoints.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per seal (random nonces are safe at this size),
//! and the tenant and connection bound as associated data: a ciphertext copied onto another
//! tenant's or connection's row fails to open instead of decrypting there. The master key comes
//! from `AIRLOCK_MASTER_KEY` (base64 of 32 bytes) or the file named by `AIRLOCK_MASTER_KEY_FILE`;
//! without one the control plane refuses to start, except in the demo, which makes its own key
//! file in its data directory.
//!
//! # Key ids, and more than one key
//!
//! A value sealed now is [`FORMAT_V2`]: the format byte, the 8-byte [`KeyId`] of the key that
//! sealed it, the nonce and the ciphertext. The id is an HMAC of a fixed label under the key, so
//! it names a key without saying anything about it, and it is bound into the associated data with
//! the format byte. Values of [`FORMAT_V1`] (sealed before ids existed) still open.
//!
//! A vault holds one *current* key, the only one that seals and signs, and may hold *retired* keys
//! that only open and verify. That is what makes a rotation (`control::keys`) safe to interrupt:
//! every row is under the old key or the new one, never half of each, and a process holding both
//! (`AIRLOCK_PREVIOUS_MASTER_KEY` or `_FILE` for the old one) reads either. Because each value names
//! its key, a value that no held key opens says which key it needs and which this process has,
//! instead of a bare "cannot be opened". The id only picks the key and names it in errors: the
//! AEAD tag is still what authenticates, so a forged id only makes the open fail.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::Path;
use std::sync::{Arc, RwLock};
use zeroize::Zeroizing;

pub const MASTER_KEY_ENV: &str = "AIRLOCK_MASTER_KEY";
pub const MASTER_KEY_FILE_ENV: &str = "AIRLOCK_MASTER_KEY_FILE";
/// The key in use before a rotation, held for reading only while the rotation runs.
pub const PREVIOUS_KEY_ENV: &str = "AIRLOCK_PREVIOUS_MASTER_KEY";
pub const PREVIOUS_KEY_FILE_ENV: &str = "AIRLOCK_PREVIOUS_MASTER_KEY_FILE";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const KEY_ID_BYTES: usize = 8;
/// The first byte of every sealed value, so the format can change without guessing. Version 1:
/// format byte, nonce, ciphertext; no key id.
const FORMAT_V1: u8 = 1;
/// Version 2: format byte, [`KeyId`], nonce, ciphertext.
const FORMAT_V2: u8 = 2;
const V2_HEADER: usize = 1 + KEY_ID_BYTES;

/// Which key a master key is, without revealing it: the first 8 bytes of HMAC-SHA256 of a fixed
/// label under the key, shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_BYTES]);

impl KeyId {
    fn of(key: &[u8]) -> Self {
        let mac = hmac_sha256(key, b"airlock:key-id:v1");
        KeyId(mac[..KEY_ID_BYTES].try_into().expect("8 of 32 bytes"))
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for KeyId {
    type Err = String;

    /// Reads the 16 hex digits [`KeyId`]'s `Display` writes.
    fn from_str(text: &str) -> Result<Self, String> {
        let bytes = hex::decode(text.trim()).map_err(|e| format!("not a key id ({e})"))?;
        Ok(KeyId(bytes.try_into().map_err(|_| {
            format!("not a key id (expected {} hex digits)", KEY_ID_BYTES * 2)
        })?))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// What a sealed value's header says about the key that sealed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedWith {
    /// Sealed before key ids: any held key may be the one.
    Unnamed,
    Key(KeyId),
    /// Not a sealed value of a known format.
    Unknown,
}

impl SealedWith {
    /// Reads the header of a sealed value.
    pub fn of(sealed: &[u8]) -> Self {
        match sealed.first() {
            Some(&FORMAT_V2) if sealed.len() >= V2_HEADER + NONCE_BYTES => {
                SealedWith::Key(KeyId(sealed[1..V2_HEADER].try_into().expect("8 bytes")))
            }
            Some(&FORMAT_V1) if sealed.len() > NONCE_BYTES => SealedWith::Unnamed,
            _ => SealedWith::Unknown,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "no master key: set {MASTER_KEY_ENV} to a base64-encoded 32-byte key, or {MASTER_KEY_FILE_ENV} to a file \
         holding one"
    )]
    NoKey,
    #[error("the master key in {source_name} is unusable: {reason}")]
    BadKey { source_name: String, reason: String },
    /// Sealed with a key this process does not hold.
    #[error(
        "stored secret for {what} was sealed with master key {sealed_with}, and this process holds {held}: \
         if {sealed_with} is the key used before a rotation, set it as {PREVIOUS_KEY_ENV} (or \
         {PREVIOUS_KEY_FILE_ENV}) to read it, and finish the rotation"
    )]
    OtherKey {
        what: String,
        sealed_with: KeyId,
        held: String,
    },
    /// Sealed with a held key (or before key ids) and still does not open.
    #[error("stored secret for {what} cannot be opened with {held}: {why}")]
    Open {
        what: String,
        held: String,
        why: &'static str,
    },
}

impl crate::remedy::Remedied for VaultError {
    fn remedy(&self) -> Option<crate::remedy::Remedy> {
        use crate::remedy::Remedy;
        match self {
            VaultError::NoKey => Some(Remedy::CreateMasterKey),
            VaultError::OtherKey { .. } => Some(Remedy::RotateMasterKey),
            VaultError::Open { why, .. } if *why == UNNAMED => Some(Remedy::RotateMasterKey),
            VaultError::Open { .. } => Some(Remedy::ResealValue),
            VaultError::BadKey { .. } => None,
        }
    }
}

const ALTERED: &str = "it was altered, or moved from another row";
const UNNAMED: &str = "it was sealed before key ids, so either it was sealed with another master key \
     (set that one as AIRLOCK_PREVIOUS_MASTER_KEY and rotate to the current key) or it was altered or moved";

/// One master key: its cipher, and the key derived from it for signing audit checkpoints (one
/// key, two uses kept apart by the derivation). Wiped from memory when dropped.
struct Key {
    id: KeyId,
    /// Where it came from (a variable's name or a file's path), for telling keys apart.
    source: String,
    cipher: XChaCha20Poly1305,
    checkpoint_key: Zeroizing<[u8; 32]>,
}

/// The keys a vault holds: the current one first.
struct Ring {
    current: Arc<Key>,
    retired: Vec<Arc<Key>>,
}

impl Ring {
    fn all(&self) -> impl Iterator<Item = &Arc<Key>> {
        std::iter::once(&self.current).chain(&self.retired)
    }

    fn find(&self, id: KeyId) -> Option<&Arc<Key>> {
        self.all().find(|k| k.id == id)
    }

    fn held(&self) -> String {
        let mut text = format!("master key {}", self.current.id);
        for k in &self.retired {
            text.push_str(&format!(" and retired key {}", k.id));
        }
        text
    }
}

/// The master key, and retired keys during a rotation. Key bytes are wiped from memory when
/// dropped and never printed.
///
/// The keys sit behind a lock so that a rotation can move a running process to the new key in
/// one step ([`Vault::switch_to`]): sealing, opening and the audit writer's checkpoints all share
/// this vault, and none of them may keep signing with the old key once the rotation is done.
pub struct Vault {
    ring: RwLock<Arc<Ring>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault({})", self.ring().held())
    }
}

fn aad(tenant: &str, connection: &str, purpose: &str, header: &[u8]) -> Vec<u8> {
    let mut aad = format!("airlock:{purpose}:v1\0{tenant}\0{connection}").into_bytes();
    aad.extend_from_slice(header);
    aad
}

impl Vault {
    fn ring(&self) -> Arc<Ring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn from_ring(ring: Ring) -> Self {
        Vault {
            ring: RwLock::new(Arc::new(ring)),
        }
    }

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
        Ok(Self::from_ring(Ring {
            current: Arc::new(Key {
                id: KeyId::of(&bytes),
                source: source_name.to_owned(),
                cipher,
                checkpoint_key: Zeroizing::new(hmac_sha256(&bytes, b"airlock:audit-checkpoint:v1")),
            }),
            retired: Vec::new(),
        }))
    }

    /// The key named by the settings (`lookup` is a variable's name to its text; the binaries
    /// pass the environment, see `settings::vault_from_env`): `AIRLOCK_MASTER_KEY`, else
    /// `AIRLOCK_MASTER_KEY_FILE`; and, for reading only, `AIRLOCK_PREVIOUS_MASTER_KEY`, else
    /// `AIRLOCK_PREVIOUS_MASTER_KEY_FILE`.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, VaultError> {
        let current = Self::from_pair(lookup, MASTER_KEY_ENV, MASTER_KEY_FILE_ENV)?
            .ok_or(VaultError::NoKey)?;
        Ok(
            match Self::from_pair(lookup, PREVIOUS_KEY_ENV, PREVIOUS_KEY_FILE_ENV)? {
                Some(previous) => current.with_retired(&previous),
                None => current,
            },
        )
    }

    fn from_pair(
        lookup: &dyn Fn(&str) -> Option<String>,
        text_var: &str,
        file_var: &str,
    ) -> Result<Option<Self>, VaultError> {
        if let Some(text) = lookup(text_var) {
            return Self::from_base64(&text, text_var).map(Some);
        }
        if let Some(path) = lookup(file_var) {
            return Self::from_file(Path::new(&path)).map(Some);
        }
        Ok(None)
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

    /// This vault, also holding every key of `other` as retired (for reading only).
    pub fn with_retired(self, other: &Vault) -> Self {
        let ring = self.ring();
        let mut retired = ring.retired.clone();
        for key in other.ring().all() {
            if key.id != ring.current.id && !retired.iter().any(|k| k.id == key.id) {
                retired.push(key.clone());
            }
        }
        Self::from_ring(Ring {
            current: ring.current.clone(),
            retired,
        })
    }

    /// The vault a rotation to `new` works with: `new`'s current key seals and signs, and every
    /// key held here (and by `new`) is retired, so values under either still open.
    pub fn rotating_to(&self, new: &Vault) -> Vault {
        let mine = Self::from_ring(Ring {
            current: new.ring().current.clone(),
            retired: Vec::new(),
        });
        mine.with_retired(new).with_retired(self)
    }

    /// From now on, this vault holds exactly the keys `other` holds: the end of a rotation moves
    /// everything sharing this vault (sealing, the audit writer) to the new key at once.
    pub fn switch_to(&self, other: &Vault) {
        let ring = other.ring();
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = ring;
    }

    /// The current key's id: the key that seals and signs.
    pub fn key_id(&self) -> KeyId {
        self.ring().current.id
    }

    /// The retired keys' ids, in the order they were added.
    pub fn retired_key_ids(&self) -> Vec<KeyId> {
        self.ring().retired.iter().map(|k| k.id).collect()
    }

    /// Every held key: its id and where it came from, the current key first.
    pub fn key_sources(&self) -> Vec<(KeyId, String)> {
        self.ring()
            .all()
            .map(|k| (k.id, k.source.clone()))
            .collect()
    }

    /// Whether the key `id` is held, current or retired.
    pub fn holds(&self, id: KeyId) -> bool {
        self.ring().find(id).is_some()
    }

    /// The hex HMAC-SHA256 of `message` under the current key's checkpoint key.
    pub fn sign_checkpoint(&self, message: &[u8]) -> String {
        self.sign_checkpoint_naming_key(message).1
    }

    /// The same, with the id of the key that signed: read together, so a switch to another
    /// key in between cannot pair one key's id with the other's signature.
    pub fn sign_checkpoint_naming_key(&self, message: &[u8]) -> (KeyId, String) {
        let ring = self.ring();
        let key = &ring.current;
        (
            key.id,
            hex::encode(hmac_sha256(key.checkpoint_key.as_ref(), message)),
        )
    }

    /// The same, under the held key `id`, current or retired; `None` when it is not held.
    pub fn sign_checkpoint_with(&self, id: KeyId, message: &[u8]) -> Option<String> {
        let ring = self.ring();
        let key = ring.find(id)?;
        Some(hex::encode(hmac_sha256(
            key.checkpoint_key.as_ref(),
            message,
        )))
    }

    /// Which held key signed `message` with `signature`, compared in constant time; `None`: no
    /// held key did (forged, or signed by a key this process does not hold).
    pub fn checkpoint_signer(&self, message: &[u8], signature: &str) -> Option<KeyId> {
        use hmac::Mac;
        let tag = hex::decode(signature).ok()?;
        self.ring().all().find_map(|key| {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.checkpoint_key.as_ref())
                .expect("HMAC takes keys of any length");
            mac.update(message);
            mac.verify_slice(&tag).is_ok().then_some(key.id)
        })
    }

    /// Encrypts `plaintext` for one tenant's connection, with the current key.
    pub fn seal(&self, tenant: &str, connection: &str, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        let ring = self.ring();
        let key = &ring.current;
        let nonce = XNonce::generate();
        let mut out = Vec::with_capacity(V2_HEADER + NONCE_BYTES + plaintext.len() + 16);
        out.push(FORMAT_V2);
        out.extend_from_slice(&key.id.0);
        let aad = aad(tenant, connection, purpose, &out);
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`Vault::seal`] produced for the same tenant, connection and purpose, with
    /// the key it names (or, for a value sealed before key ids, whichever held key opens it).
    pub fn open(
        &self,
        tenant: &str,
        connection: &str,
        purpose: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let ring = self.ring();
        let what = || format!("{purpose} of connection `{connection}`");
        let failed = |why| VaultError::Open {
            what: what(),
            held: ring.held(),
            why,
        };
        let decrypt = |key: &Key, header: &[u8], rest: &[u8]| {
            let nonce = XNonce::try_from(&rest[..NONCE_BYTES]).ok()?;
            key.cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: &rest[NONCE_BYTES..],
                        aad: &aad(tenant, connection, purpose, header),
                    },
                )
                .ok()
                .map(Zeroizing::new)
        };
        match SealedWith::of(sealed) {
            SealedWith::Key(id) => {
                let key = ring.find(id).ok_or_else(|| VaultError::OtherKey {
                    what: what(),
                    sealed_with: id,
                    held: ring.held(),
                })?;
                let (header, rest) = sealed.split_at(V2_HEADER);
                decrypt(key, header, rest).ok_or_else(|| failed(ALTERED))
            }
            SealedWith::Unnamed => ring
                .all()
                .find_map(|key| decrypt(key, &[], &sealed[1..]))
                .ok_or_else(|| failed(UNNAMED)),
            SealedWith::Unknown => Err(failed("it is not a sealed value (damaged)")),
        }
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// A new random master key, base64.
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

    /// A value as sealed before key ids (format 1), for the tests of what still opens.
    fn seal_v1(v: &Vault, tenant: &str, connection: &str, purpose: &str, plain: &[u8]) -> Vec<u8> {
        let ring = v.ring();
        let nonce = XNonce::generate();
        let aad = aad(tenant, connection, purpose, &[]);
        let sealed = ring
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .unwrap();
        [&[FORMAT_V1][..], nonce.as_slice(), &sealed].concat()
    }

    #[test]
    fn vault_names_the_key_a_value_was_sealed_with() {
        let (old, new) = (vault(), vault());
        assert_ne!(old.key_id(), new.key_id());
        let sealed = old.seal("acme", "crm", "config", b"{}");
        assert_eq!(SealedWith::of(&sealed), SealedWith::Key(old.key_id()));
        // A process holding only the new key says which key the value needs and what to do.
        let error = new.open("acme", "crm", "config", &sealed).unwrap_err();
        let err = error.to_string();
        assert!(
            err.contains(&format!("sealed with master key {}", old.key_id()))
                && err.contains(&format!("this process holds master key {}", new.key_id()))
                && err.contains("AIRLOCK_PREVIOUS_MASTER_KEY"),
            "{err}"
        );
        use crate::remedy::{Remedied, Remedy};
        assert_eq!(error.remedy(), Some(Remedy::RotateMasterKey));
        // Holding the old key as retired, it opens; sealing still uses the current key only.
        let both = Vault::from_base64(&generate_key(), "n").unwrap();
        let both_id = both.key_id();
        let both = both.with_retired(&old);
        assert_eq!(
            &*both.open("acme", "crm", "config", &sealed).unwrap(),
            b"{}"
        );
        let resealed = both.seal("acme", "crm", "config", b"{}");
        assert_eq!(SealedWith::of(&resealed), SealedWith::Key(both_id));
        assert_eq!(both.retired_key_ids(), vec![old.key_id()]);
        // The header is bound to the ciphertext: naming another held key, or dropping the id to
        // pass as format 1, does not open.
        let mut renamed = resealed.clone();
        renamed[1..V2_HEADER].copy_from_slice(&old.key_id().0);
        let err = both
            .open("acme", "crm", "config", &renamed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("altered"), "{err}");
        let downgraded = [&[FORMAT_V1][..], &resealed[V2_HEADER..]].concat();
        assert!(both.open("acme", "crm", "config", &downgraded).is_err());
        // Debug output names keys by id only.
        let text = generate_key();
        let shown = format!("{:?}", Vault::from_base64(&text, "k").unwrap());
        assert!(
            shown.starts_with("Vault(master key ") && !shown.contains(&text[..12]),
            "{shown}"
        );
    }

    #[test]
    fn vault_opens_values_sealed_before_key_ids_with_any_held_key() {
        let (old, new) = (vault(), vault());
        let v1 = seal_v1(&old, "acme", "crm", "config", b"{\"a\":1}");
        assert_eq!(SealedWith::of(&v1), SealedWith::Unnamed);
        assert_eq!(
            &*old.open("acme", "crm", "config", &v1).unwrap(),
            b"{\"a\":1}"
        );
        let err = new
            .open("acme", "crm", "config", &v1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sealed before key ids"), "{err}");
        let rotating = old.rotating_to(&new);
        assert_eq!(rotating.key_id(), new.key_id());
        assert_eq!(
            &*rotating.open("acme", "crm", "config", &v1).unwrap(),
            b"{\"a\":1}"
        );
        assert!(rotating.open("globex", "crm", "config", &v1).is_err());
    }

    #[test]
    fn vault_switch_moves_sealing_and_signing_to_the_new_key() {
        let (old, new) = (vault(), vault());
        let shared = Arc::new(
            Vault::from_base64(&generate_key(), "x")
                .unwrap()
                .with_retired(&old),
        );
        let before = shared.sign_checkpoint(b"m");
        shared.switch_to(&old.rotating_to(&new));
        assert_eq!(shared.key_id(), new.key_id());
        assert_eq!(shared.sign_checkpoint(b"m"), new.sign_checkpoint(b"m"));
        assert_ne!(shared.sign_checkpoint(b"m"), before);
        // Signatures name their signer among the held keys; an unknown signer is none of them.
        assert_eq!(
            shared.checkpoint_signer(b"m", &old.sign_checkpoint(b"m")),
            Some(old.key_id())
        );
        assert_eq!(
            shared.checkpoint_signer(b"m", &new.sign_checkpoint(b"m")),
            Some(new.key_id())
        );
        assert_eq!(shared.checkpoint_signer(b"m", &before), None);
        assert_eq!(shared.checkpoint_signer(b"m", "not hex"), None);
        assert_eq!(
            shared.sign_checkpoint_with(old.key_id(), b"m"),
            Some(old.sign_checkpoint(b"m"))
        );
        assert_eq!(shared.sign_checkpoint_with(vault().key_id(), b"m"), None);
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
