//! Rotating the master key: every sealed value re-sealed under a new key
//! and the audit trail's signatures moved to it, with no moment where data is unreadable to a
//! process holding both keys, and no step that cannot be interrupted and run again.
//!
//! The steps of [`ControlPlane::keys_rotate`]:
//!
//! 1. **Check before touching.** Verify the audit chain and every checkpoint with the old key,
//!    and open every sealed value with the keys given. If either fails, refuse and change
//!    nothing: a wrong old key fails both, and re-signing a tampered trail would launder it.
//! 2. **Re-seal in batches.** Each batch is one transaction that replaces a value only where the
//!    row still holds the bytes that were read (compare-and-set), so a `kill -9` leaves every row
//!    wholly under the old key or wholly under the new one, and a value another process wrote
//!    meanwhile is kept, not overwritten with a stale one. Progress *is* each value's key id (see
//!    [`super::vault`]): a rerun re-seals exactly the values still under another key. Passes
//!    repeat until one finds nothing to do, which also catches values sealed meanwhile by a
//!    process still running with the old key.
//! 3. **Move to the new key.** This process's vault switches to the new key (its audit writer
//!    signs with it from now on), then the stored checkpoints, and the checkpoints of earlier
//!    rotations, are re-signed with it: after the rotation the old key can be destroyed, and
//!    checkpoints only it could check would be worthless. They were verified in step 1 first.
//! 4. **Hand over.** The rotation checkpoint records the chain position verified in step 1,
//!    signed with the new key, and carries a link: the old key's signature over the new key's
//!    id and that position. Whoever keeps the old key (offline) can check the chain of custody
//!    with `AIRLOCK_PREVIOUS_MASTER_KEY`; everyone else verifies with the new key alone.
//!
//! The `key_rotations` row (migration 0013) says which rotation is under way, so a rerun must
//! name the same new key and one started with another key is refused; it also counts the
//! values re-sealed. Running the command again after it finished re-checks: anything still
//! under the old key is re-sealed and nothing else changes.
//!
//! What it cannot do: stop another process that still holds only the old key from sealing with
//! it. Restart those with the new key as `AIRLOCK_MASTER_KEY` and the old one as
//! `AIRLOCK_PREVIOUS_MASTER_KEY` first (they then read both); the passes of step 2 give up
//! with that advice when values keep reappearing under the old key.

use super::audit::{checkpoint_message, link_message, rotation_message};
use super::authz::Action;
use super::state::{KeyRotation, RotationCheckpoint, SealedKind, SealedValue, now_ms};
use super::vault::{KeyId, SealedWith, Vault, VaultError};
use super::{ControlPlane, Principal, Result};
use std::collections::BTreeMap;

/// Values re-sealed per transaction by default: small enough that the write lock is held
/// briefly, large enough that a big store takes few round trips.
pub const DEFAULT_BATCH: usize = 100;
/// Full passes over the sealed values before giving up on values that keep reappearing under
/// another key.
const MAX_PASSES: usize = 10;
/// Unreadable values named in an error, at most.
const MAX_LISTED: usize = 10;

#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// Values re-sealed per transaction.
    pub batch: usize,
    /// Leave damaged values (their key is held, yet they do not open) as they are instead of
    /// refusing. Values sealed with a key this process does not hold are never skipped.
    pub skip_unreadable: bool,
}

impl Default for RotateOptions {
    fn default() -> Self {
        RotateOptions {
            batch: DEFAULT_BATCH,
            skip_unreadable: false,
        }
    }
}

/// What a rotation run did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    pub from_key: String,
    pub to_key: String,
    /// `started`, `resumed` (a rotation under way was finished) or `rechecked` (it was done
    /// already; anything found under another key since was re-sealed).
    pub run: &'static str,
    /// The audit chain was verified through this record before anything changed.
    pub verified_through: i64,
    /// Values re-sealed by this run, per kind.
    pub resealed: BTreeMap<SealedKind, u64>,
    /// Values re-sealed over every run of this rotation.
    pub resealed_total: i64,
    /// Damaged values left as they were (`skip_unreadable`).
    pub skipped: Vec<String>,
    /// Stored and rotation checkpoints re-signed with the new key by this run.
    pub checkpoints_resigned: u64,
    /// Where the rotation checkpoint vouches for the chain.
    pub rotation_seq: i64,
}

/// Why a rotation was refused. Each names what to do.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "the new key is the key already in use ({0}): keep the current key in AIRLOCK_MASTER_KEY and give \
         a new one as the new key"
    )]
    SameKey(KeyId),
    #[error(
        "a rotation from master key {from} to {to} is under way (started by {by}); finish it first: rotate \
         again with key {from} as AIRLOCK_MASTER_KEY and key {to} as the new key"
    )]
    OtherUnderWay {
        from: String,
        to: String,
        by: String,
    },
    #[error(
        "this rotation needs the old key {0} (to read what is still sealed with it and to sign the \
         hand-over), and this process does not hold it: set it as AIRLOCK_MASTER_KEY, or as \
         AIRLOCK_PREVIOUS_MASTER_KEY, and run again"
    )]
    OldKeyMissing(String),
    #[error(
        "the audit trail does not verify with the old key {old}, so nothing was changed: at record \
         {seq}: {what}. If the old key is wrong, set AIRLOCK_MASTER_KEY to the key in use (compare the keys' \
         ids); if the trail was tampered with, investigate first: a rotation re-signs it"
    )]
    AuditNotIntact { old: String, seq: i64, what: String },
    #[error(
        "{count} sealed value(s) cannot be opened with the keys given, so nothing was changed:\n{listed}\n\
         A value sealed with a key this process does not hold opens once that key is set as \
         AIRLOCK_PREVIOUS_MASTER_KEY. A damaged one (altered, or moved from another row) can be set \
         again (its credential, or its connection's config), or left as it is, still unreadable, by a \
         rotation told to skip unreadable values."
    )]
    Unreadable { count: usize, listed: String },
    #[error(
        "values keep appearing under another key than {to} after {MAX_PASSES} passes: a process still \
         runs with the old key. Restart it with the new key as AIRLOCK_MASTER_KEY and the old one as \
         AIRLOCK_PREVIOUS_MASTER_KEY, then rotate again"
    )]
    KeepsChanging { to: KeyId },
    #[error("the audit store cannot be written ({0}); nothing was changed")]
    AuditUnavailable(String),
}

impl crate::remedy::Remedied for RotationError {
    fn remedy(&self) -> Option<crate::remedy::Remedy> {
        use crate::remedy::Remedy;
        match self {
            RotationError::SameKey(_) => Some(Remedy::CreateMasterKey),
            RotationError::OtherUnderWay { .. }
            | RotationError::OldKeyMissing(_)
            | RotationError::KeepsChanging { .. } => Some(Remedy::RotateMasterKey),
            RotationError::AuditNotIntact { .. } => Some(Remedy::IdentifyMasterKey),
            RotationError::Unreadable { .. } => Some(Remedy::ResealValue),
            RotationError::AuditUnavailable(_) => None,
        }
    }
}

/// A sealed value's row, without its bytes.
type Row = (SealedKind, String, String, String);

fn row(v: &SealedValue) -> Row {
    (
        v.kind,
        v.tenant.clone(),
        v.connection.clone(),
        v.name.clone(),
    )
}

/// How a value is named in messages: kind, tenant and row, never content.
fn describe(v: &SealedValue) -> String {
    match v.kind {
        SealedKind::ConnectionConfig => format!("{} {}/{}", v.kind.name(), v.tenant, v.name),
        _ => format!("{} {}/{}/{}", v.kind.name(), v.tenant, v.connection, v.name),
    }
}

/// The purpose each kind binds into its associated data, from the module that seals it.
fn purpose(v: &SealedValue) -> String {
    match v.kind {
        SealedKind::ConnectionConfig => super::lookup::CONFIG_PURPOSE.to_owned(),
        SealedKind::Credential => super::credentials::purpose(&v.name),
        SealedKind::ApprovalParams => super::approvals::purpose(&v.name),
        SealedKind::ApprovalOutput => super::approvals::output_purpose(&v.name),
    }
}

/// A checkpoint written since step 1 that no held key signed.
fn unvouched(vault: &Vault, seq: i64) -> super::ControlError {
    RotationError::AuditNotIntact {
        old: vault
            .retired_key_ids()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        seq,
        what: "a checkpoint written since the rotation began is signed by none of the keys held"
            .into(),
    }
    .into()
}

fn open(
    vault: &Vault,
    v: &SealedValue,
) -> std::result::Result<zeroize::Zeroizing<Vec<u8>>, VaultError> {
    vault.open(&v.tenant, &v.connection, &purpose(v), &v.sealed)
}

impl ControlPlane {
    /// Re-seals every sealed value under `new` and moves the audit trail's signatures to it (see
    /// the module doc). The old key is this control plane's current one (for a rotation under
    /// way, the one it started from, which must be held). Admin only; audited.
    pub async fn keys_rotate(
        &self,
        who: &Principal,
        new: Vault,
        options: RotateOptions,
    ) -> Result<RotationReport> {
        self.audited(
            who,
            Action::KeysRotate,
            "master-key",
            Some("rotate"),
            self.rotate(who, new, options),
        )
        .await
    }

    async fn rotate(
        &self,
        who: &Principal,
        new: Vault,
        options: RotateOptions,
    ) -> Result<RotationReport> {
        self.audit
            .flush()
            .await
            .map_err(|e| RotationError::AuditUnavailable(e.to_string()))?;
        let (old_id, new_id) = (self.vault.key_id(), new.key_id());
        let to = new_id.to_string();
        let target = self.vault.rotating_to(&new);

        // Which rotation this run belongs to: one under way (or done) to the same new key, from
        // this key (or, run with the new key already current, from whichever it started from).
        let rotations = self.state.key_rotations().await?;
        let existing = match rotations.last() {
            Some(r) if r.to_key == to && (r.from_key == old_id.to_string() || old_id == new_id) => {
                Some(r.clone())
            }
            Some(r) if r.checkpoint.is_none() => {
                return Err(RotationError::OtherUnderWay {
                    from: r.from_key.clone(),
                    to: r.to_key.clone(),
                    by: r.started_by.clone(),
                }
                .into());
            }
            _ if old_id == new_id => return Err(RotationError::SameKey(new_id).into()),
            _ => None,
        };
        let from = existing
            .as_ref()
            .map_or_else(|| old_id.to_string(), |r| r.from_key.clone());
        let finishing = existing.as_ref().is_none_or(|r| r.checkpoint.is_none());
        let from_id = from.parse::<KeyId>().ok().filter(|id| target.holds(*id));
        if finishing && from_id.is_none() {
            return Err(RotationError::OldKeyMissing(from).into());
        }

        // 1. Check before touching. A new rotation verifies with the old key alone; one under way
        // may have re-signed some checkpoints already, so it takes either key.
        let verifier = if existing.is_some() {
            &target
        } else {
            &*self.vault
        };
        let verified = super::audit::verify(self.state.as_ref(), verifier, &[]).await?;
        if let Some(problem) = verified.problem {
            return Err(RotationError::AuditNotIntact {
                old: from,
                seq: problem.seq,
                what: problem.what,
            }
            .into());
        }
        let skip = self
            .check_readable(&target, new_id, options.skip_unreadable)
            .await?;

        // 2. Re-seal.
        let rotation = match existing.clone() {
            Some(r) => r,
            None => {
                self.state
                    .begin_key_rotation(&from, &to, &who.id, now_ms())
                    .await?
            }
        };
        let resealed = self
            .reseal_all(&target, new_id, &rotation, &skip, options.batch.max(1))
            .await?;

        // 3. Move to the new key.
        self.vault.switch_to(&target);
        let checkpoints_resigned = self.resign(&target, new_id).await?;

        // 4. Hand over.
        let rotation_seq = match &rotation.checkpoint {
            Some(c) => c.seq,
            None => {
                let from_id = from_id.expect("checked above: the old key is held");
                let (seq, hash) = match &verified.last_hash {
                    Some(hash) => (verified.last_seq, hash.clone()),
                    None => (0, super::audit::GENESIS.to_owned()),
                };
                let link = target
                    .sign_checkpoint_with(from_id, &link_message(&to, seq, &hash))
                    .expect("the old key is held");
                let mut checkpoint = RotationCheckpoint {
                    seq,
                    hash,
                    at: now_ms(),
                    signature: String::new(),
                    link,
                };
                checkpoint.signature =
                    target.sign_checkpoint(&rotation_message(&rotation, &checkpoint));
                self.state
                    .finish_key_rotation(rotation.id, &checkpoint)
                    .await?;
                seq
            }
        };
        let resealed_total = self
            .state
            .key_rotations()
            .await?
            .into_iter()
            .find(|r| r.id == rotation.id)
            .map_or(0, |r| r.resealed);
        Ok(RotationReport {
            from_key: from,
            to_key: to,
            run: match &existing {
                None => "started",
                Some(r) if r.checkpoint.is_none() => "resumed",
                Some(_) => "rechecked",
            },
            verified_through: verified.last_seq,
            resealed,
            resealed_total,
            skipped: skip.into_values().collect(),
            checkpoints_resigned,
            rotation_seq,
        })
    }

    /// Opens every value not yet under `new_id`. Returns the damaged ones to leave alone (with
    /// `skip_unreadable`), or refuses, naming the values that do not open.
    async fn check_readable(
        &self,
        vault: &Vault,
        new_id: KeyId,
        skip_unreadable: bool,
    ) -> Result<BTreeMap<Row, String>> {
        let mut unreadable = Vec::new();
        // Values sealed before key ids that did open: the evidence that a held key is the one
        // they were sealed with, so that one that does not open is damaged, not the key wrong.
        let mut opened_unnamed = 0;
        let mut after: Option<SealedValue> = None;
        loop {
            let page = self.state.sealed_values(after.as_ref(), 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.clone());
            for v in page {
                let with = SealedWith::of(&v.sealed);
                if with == SealedWith::Key(new_id) {
                    continue;
                }
                match open(vault, &v) {
                    Ok(_) if with == SealedWith::Unnamed => opened_unnamed += 1,
                    Ok(_) => {}
                    Err(e) => unreadable.push((v, with, e)),
                }
            }
        }
        let mut skip = BTreeMap::new();
        let mut listed = Vec::new();
        for (v, with, e) in &unreadable {
            let (damaged, why) = match (with, e) {
                (SealedWith::Key(id), VaultError::OtherKey { .. }) => {
                    (false, format!("sealed with master key {id}, which this process does not hold"))
                }
                (SealedWith::Key(_), _) => (true, "damaged: altered, or moved from another row".into()),
                (SealedWith::Unnamed, _) if opened_unnamed > 0 => (
                    true,
                    "sealed before key ids and no held key opens it, while others of its age open: damaged, \
                     or sealed with yet another key"
                        .into(),
                ),
                (SealedWith::Unnamed, _) => (
                    false,
                    "sealed before key ids and no held key opens it (is the old key the one in use?)".into(),
                ),
                (SealedWith::Unknown, _) => (true, "damaged: not a sealed value".into()),
            };
            if damaged && skip_unreadable {
                skip.insert(row(v), describe(v));
            } else {
                listed.push(format!("  - {}: {why}", describe(v)));
            }
        }
        if listed.is_empty() {
            return Ok(skip);
        }
        let count = listed.len();
        if count > MAX_LISTED {
            let more = count - MAX_LISTED;
            listed.truncate(MAX_LISTED);
            listed.push(format!("  - and {more} more"));
        }
        Err(RotationError::Unreadable {
            count,
            listed: listed.join("\n"),
        }
        .into())
    }

    /// Re-seals, batch by batch, every value not under `new_id`, until a full pass finds none.
    async fn reseal_all(
        &self,
        vault: &Vault,
        new_id: KeyId,
        rotation: &KeyRotation,
        skip: &BTreeMap<Row, String>,
        batch: usize,
    ) -> Result<BTreeMap<SealedKind, u64>> {
        let mut counts: BTreeMap<SealedKind, u64> =
            SealedKind::ALL.iter().map(|k| (*k, 0)).collect();
        for _ in 0..MAX_PASSES {
            let mut found = 0;
            let mut after: Option<SealedValue> = None;
            loop {
                let page = self
                    .state
                    .sealed_values(after.as_ref(), batch as i64)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.clone());
                let mut changes = Vec::new();
                for v in page {
                    if SealedWith::of(&v.sealed) == SealedWith::Key(new_id)
                        || skip.contains_key(&row(&v))
                    {
                        continue;
                    }
                    let plain = open(vault, &v)?;
                    let sealed = vault.seal(&v.tenant, &v.connection, &purpose(&v), &plain);
                    changes.push((v, sealed));
                }
                if changes.is_empty() {
                    continue;
                }
                found += changes.len();
                let made = self.state.reseal(rotation.id, &changes).await?;
                // A value not replaced changed under this run; the next pass reads it again.
                for ((v, _), made) in changes.iter().zip(made) {
                    if made {
                        *counts.entry(v.kind).or_default() += 1;
                    }
                }
                self.stop_here_for_tests("key-rotation-batch").await;
            }
            if found == 0 {
                return Ok(counts);
            }
        }
        Err(RotationError::KeepsChanging { to: new_id }.into())
    }

    /// Re-signs with the current key of `vault` every stored checkpoint and rotation checkpoint
    /// another held key signed. One the held keys do not vouch for (written since the check, by
    /// a key not held) stops the rotation.
    async fn resign(&self, vault: &Vault, new_id: KeyId) -> Result<u64> {
        let mut checkpoints = Vec::new();
        for mut c in self.state.checkpoints().await? {
            let message = checkpoint_message(c.seq, &c.hash, c.at);
            match vault.checkpoint_signer(&message, &c.signature) {
                Some(id) if id == new_id => {}
                Some(_) => {
                    c.signature = vault.sign_checkpoint(&message);
                    c.key_id = Some(new_id.to_string());
                    checkpoints.push(c);
                }
                None => return Err(unvouched(vault, c.seq)),
            }
        }
        let mut rotations = Vec::new();
        for r in self.state.key_rotations().await? {
            let Some(c) = &r.checkpoint else { continue };
            let message = rotation_message(&r, c);
            match vault.checkpoint_signer(&message, &c.signature) {
                Some(id) if id == new_id => {}
                Some(_) => rotations.push((r.id, vault.sign_checkpoint(&message))),
                None => return Err(unvouched(vault, c.seq)),
            }
        }
        self.state
            .resign_checkpoints(&checkpoints, &rotations)
            .await?;
        Ok((checkpoints.len() + rotations.len()) as u64)
    }
}
