//! The audit log: every authorization decision and every administrative change, as a
//! tamper-evident hash chain.
//!
//! Records are written by a background task in batches, so an invocation pays for a channel send,
//! not a database write; [`AuditLog::flush`] waits until everything sent so far is stored (the CLI
//! flushes before it exits). Each record is one JSON object (so CR, LF and control characters in
//! any field are escaped by construction) stored with a sequence number, the hash of the record
//! before it and its own hash ([`chain_hash`]). Params are stored with secret-looking values
//! redacted.
//!
//! The chain alone shows an edited, deleted, inserted or reordered record; someone able to
//! write the database could still recompute every hash after an edit, or cut the tail. Signed
//! checkpoints close that: every [`CHECKPOINT_EVERY`] records, and at every flush, the writer
//! signs (seq, hash) with a key derived from the master key and stores it (and logs it, for a
//! copy kept outside the database). [`verify`] walks the chain and checks every checkpoint.
//!
//! A rotation of the master key (`control::keys`) re-signs the stored checkpoints with the new
//! key and ends with a rotation checkpoint ([`rotation_message`]), signed with the new key and
//! carrying the old key's signature over the new key's id and the chain position ([`link_message`]).
//! So after a rotation the trail verifies with the new key alone, and a checkpoint kept outside
//! the database from before it is recognised as signed by the retired key (its position is still
//! checked), not taken for a forgery.
//!
//! Fail closed: when the store cannot be written, the writer keeps the records (they are
//! retried, not dropped) and [`AuditLog::available`] turns false; the control plane refuses
//! invocations until a write succeeds again.

mod spool;

use super::state::{AuditHead, AuditRow, AuditStore, Checkpoint, KeyRotation, StateStore};
use super::vault::Vault;
use serde::Serialize;
use serde_json::Value;
use sha2::Digest;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Records waiting in the channel before senders wait: bounded, so a stalled store slows callers
/// down instead of growing memory.
const QUEUE: usize = 16_384;
/// Records written per transaction at most.
const BATCH: usize = 512;
/// Tries to store a batch before reporting the store unavailable.
const WRITE_ATTEMPTS: u32 = 5;
/// Records held in memory while the store refuses them, at most; then they are spooled, or
/// senders wait.
const MAX_HELD_RECORDS: usize = 65_536;
/// While the store is unavailable, how often the held records are tried again.
const HELD_RETRY: Duration = Duration::from_millis(500);
/// A signed checkpoint at least every this many records.
pub const CHECKPOINT_EVERY: i64 = 1000;
/// The outcome of a write's first record, stored durably before the guest runs; the outcome
/// follows in a second record with the same invocation id.
pub const OUTCOME_STARTED: &str = "started";
/// Numbers `records` (time, tenant, JSON text) after `head` and, with `chain`, links each to
/// the one before by [`chain_hash`]: the rows the store appends if `head` is still its head.
pub fn chain_rows(
    head: &AuditHead,
    records: &[(i64, String, String)],
    chain: bool,
) -> Vec<AuditRow> {
    let mut seq = head.seq;
    let mut prev = head.hash.clone();
    records
        .iter()
        .map(|(at, tenant, record)| {
            seq += 1;
            let (prev_hash, hash) = if chain {
                let prev_hash = prev.take().unwrap_or_else(|| GENESIS.to_owned());
                let hash = chain_hash(&prev_hash, seq, *at, tenant, record);
                (Some(prev_hash), Some(hash))
            } else {
                (None, None)
            };
            prev = hash.clone();
            AuditRow {
                seq,
                at: *at,
                tenant: tenant.clone(),
                record: record.clone(),
                prev_hash,
                hash,
            }
        })
        .collect()
}

/// How many times in a row a writer rebuilds its batch on a head another writer moved, before
/// it counts as a failed write (then retried as one, and held if it keeps failing).
const APPEND_RACES: usize = 64;

/// The `prev_hash` of the first chained record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of one record: SHA-256 over the previous hash and every stored column, each field
/// length-prefixed so no two different records hash the same input.
pub fn chain_hash(prev_hash: &str, seq: i64, at: i64, tenant: &str, record: &str) -> String {
    let mut h = sha2::Sha256::new();
    for field in [
        prev_hash.as_bytes(),
        seq.to_string().as_bytes(),
        at.to_string().as_bytes(),
        tenant.as_bytes(),
        record.as_bytes(),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    hex::encode(h.finalize())
}

/// What a checkpoint's signature covers.
pub fn checkpoint_message(seq: i64, hash: &str, at: i64) -> Vec<u8> {
    format!("airlock-audit-checkpoint:v1\n{seq}\n{hash}\n{at}").into_bytes()
}

/// What a rotation checkpoint's signature (by the new key) covers: both key ids, the position,
/// the time and the old key's link.
pub fn rotation_message(rotation: &KeyRotation, c: &super::state::RotationCheckpoint) -> Vec<u8> {
    format!(
        "airlock-key-rotation:v1\n{}\n{}\n{}\n{}\n{}\n{}",
        rotation.from_key, rotation.to_key, c.seq, c.hash, c.at, c.link
    )
    .into_bytes()
}

/// What the old key signs to hand over to the new one: the new key's id and the chain position
/// the old key verified.
pub fn link_message(to_key: &str, seq: i64, hash: &str) -> Vec<u8> {
    format!("airlock-key-link:v1\n{to_key}\n{seq}\n{hash}").into_bytes()
}

/// Signs the chain's position with the vault's current key.
pub fn checkpoint(vault: &Vault, seq: i64, hash: &str, at: i64) -> Checkpoint {
    let (key_id, signature) = vault.sign_checkpoint_naming_key(&checkpoint_message(seq, hash, at));
    Checkpoint {
        seq,
        hash: hash.to_owned(),
        at,
        signature,
        key_id: Some(key_id.to_string()),
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Unix milliseconds.
    pub at: i64,
    pub tenant: String,
    pub principal: String,
    pub principal_kind: String,
    pub role: String,
    /// The action, e.g. `invoke.write`, `connection.create`.
    pub action: String,
    /// What it was about: a connection, a connector (`id@version`), or the tenant.
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// `allowed` or `denied`.
    pub decision: String,
    /// The rule that decided.
    pub rule: String,
    /// `ok`, `denied`, `error`, `pending`, or `started` (a write about to run).
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For errors, what kind (`not-found`, `upstream`, `deadline`...), see `ControlError::kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    pub duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// For a refusal or an error, what would allow or repair it (see `crate::remedy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<crate::remedy::Remedy>,
}

/// The audit store could not be written; the records are held and retried.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the audit store cannot be written ({reason}); {held} record(s) held in memory and retried"
)]
pub struct Unavailable {
    pub reason: String,
    pub held: usize,
}

/// What became of the records when the writer was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Every record is in the store.
    Stored,
    /// The store refused them; they are in this spool file and the next writer to start on
    /// this data directory stores them.
    Spooled {
        records: usize,
        path: std::path::PathBuf,
        reason: String,
    },
    /// Neither the store nor the spool took them; they were printed to the error log in full.
    Printed { records: usize, reason: String },
}

enum Message {
    Record(Box<AuditRecord>),
    /// Answered once every record sent before is stored and a checkpoint covers it.
    Flush(oneshot::Sender<Result<(), Unavailable>>),
    /// Answered once every record sent before is stored (no checkpoint forced).
    Durable(oneshot::Sender<Result<(), Unavailable>>),
    /// Store what can be stored, spool the rest, stop.
    Close(oneshot::Sender<Closed>),
}

/// A handle to the audit writer. Cloning shares the writer.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Message>,
    available: Arc<AtomicBool>,
}

/// The writer task's state.
struct Writer {
    state: Arc<dyn AuditStore>,
    vault: Arc<Vault>,
    chain: bool,
    available: Arc<AtomicBool>,
    batch: Vec<spool::Entry>,
    waiting: Vec<oneshot::Sender<Result<(), Unavailable>>>,
    durable: Vec<oneshot::Sender<Result<(), Unavailable>>>,
    /// The last record written and whether a checkpoint covers it.
    last: Option<(i64, String)>,
    since_checkpoint: i64,
    /// Where records go when the writer must stop before the store takes them.
    spool_dir: Option<std::path::PathBuf>,
    /// Spool files whose records are in `batch`: deleted once those are stored.
    claimed: Vec<std::path::PathBuf>,
    /// Why the store last refused a batch.
    last_failure: Option<String>,
}

impl Writer {
    fn take(&mut self, message: Message) -> Option<oneshot::Sender<Closed>> {
        match message {
            Message::Record(r) => {
                let text = serde_json::to_string(&r).expect("audit records serialize");
                self.batch.push((r.at, r.tenant, text));
            }
            Message::Flush(done) => self.waiting.push(done),
            Message::Durable(done) => self.durable.push(done),
            Message::Close(done) => return Some(done),
        }
        None
    }

    /// Puts records spooled by earlier processes ahead of this one's.
    fn claim_spool(&mut self) {
        let Some(dir) = &self.spool_dir else { return };
        let claimed = spool::claim(dir);
        if claimed.entries.is_empty() {
            return;
        }
        tracing::warn!(
            records = claimed.entries.len(),
            "storing audit records spooled by an earlier process"
        );
        let mine = std::mem::take(&mut self.batch);
        self.batch = claimed.entries;
        self.batch.extend(mine);
        self.claimed.extend(claimed.files);
    }

    /// Appends the batch after the trail's head, chained onto it; when another writer (another
    /// process) appended first, reads the new head and chains onto that instead.
    async fn append(&self) -> super::state::Result<AuditHead> {
        for _ in 0..APPEND_RACES {
            let head = self.state.audit_head().await?;
            let rows = chain_rows(&head, &self.batch, self.chain);
            if self.state.append_audit(&head, &rows).await? {
                return Ok(rows.last().map_or(head, |r| AuditHead {
                    seq: r.seq,
                    hash: r.hash.clone(),
                }));
            }
        }
        Err(super::state::StateError::Storage(format!(
            "the audit trail's head moved under this writer {APPEND_RACES} times in a row"
        )))
    }

    /// Stores the batch (and a checkpoint when one is due); on failure keeps it.
    async fn write(&mut self) {
        let mut failure = None;
        if !self.batch.is_empty() {
            let mut attempt = 0;
            loop {
                match self.append().await {
                    Ok(head) => {
                        self.since_checkpoint += self.batch.len() as i64;
                        self.last = head.hash.map(|h| (head.seq, h));
                        self.batch.clear();
                        for file in self.claimed.drain(..) {
                            let _ = std::fs::remove_file(file);
                        }
                        break;
                    }
                    Err(e) => {
                        attempt += 1;
                        if attempt >= WRITE_ATTEMPTS {
                            self.last_failure = Some(e.to_string());
                            failure = Some(e.to_string());
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20 * attempt as u64)).await;
                    }
                }
            }
        }
        let stored = failure.is_none();
        let recovered = stored && !self.available.swap(true, Ordering::SeqCst);
        let held = |reason: &str, held| Unavailable {
            reason: reason.to_owned(),
            held,
        };
        for done in self.durable.drain(..) {
            let _ = done.send(match &failure {
                None => Ok(()),
                Some(reason) => Err(held(reason, self.batch.len())),
            });
        }
        let flushing = !self.waiting.is_empty();
        if stored
            && self.since_checkpoint > 0
            && (flushing || self.since_checkpoint >= CHECKPOINT_EVERY)
            && let Some((seq, hash)) = &self.last
        {
            let c = checkpoint(&self.vault, *seq, hash, super::state::now_ms());
            match self.state.append_checkpoint(&c).await {
                Ok(()) => {
                    self.since_checkpoint = 0;
                    // A copy outside the database, which verify can be given back.
                    tracing::info!(target: "airlock::audit", checkpoint = %serde_json::to_string(&c).unwrap_or_default(), "audit checkpoint");
                }
                Err(e) => failure = Some(e.to_string()),
            }
        }
        match &failure {
            None => {
                for done in self.waiting.drain(..) {
                    let _ = done.send(Ok(()));
                }
            }
            Some(reason) => {
                if stored {
                    // Records are in; only the checkpoint failed.
                } else if self.available.swap(false, Ordering::SeqCst) {
                    tracing::error!(error = %reason, held = self.batch.len(), "audit store cannot be written; writes are refused until it can");
                }
                for done in self.waiting.drain(..) {
                    let _ = done.send(Err(held(reason, self.batch.len())));
                }
            }
        }
        if recovered {
            tracing::warn!("audit store writable again; writes resume");
            // Other processes may have spooled records meanwhile.
            self.claim_spool();
        }
    }

    /// Moves the held records to a spool file while the store refuses them, so a long outage
    /// does not grow memory. False when there is no spool or it cannot be written.
    fn spill(&mut self) -> Option<std::path::PathBuf> {
        let dir = self.spool_dir.as_ref()?;
        match spool::write(dir, &self.batch) {
            Ok(path) => {
                // Their records are in the new file now.
                for file in self.claimed.drain(..) {
                    let _ = std::fs::remove_file(file);
                }
                self.batch.clear();
                Some(path)
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), "cannot write the audit spool: {e}");
                None
            }
        }
    }

    /// The last try at the store, then the spool, then the error log.
    async fn close(&mut self) -> Closed {
        if !self.batch.is_empty() {
            self.write().await;
        }
        if self.batch.is_empty() {
            return Closed::Stored;
        }
        let records = self.batch.len();
        let reason = format!(
            "the audit store refused {records} record(s): {}",
            self.last_failure.as_deref().unwrap_or("no answer")
        );
        if let Some(path) = self.spill() {
            return Closed::Spooled {
                records,
                path,
                reason,
            };
        }
        // The last resort: the records go to the error log rather than nowhere.
        for (_, _, text) in self.batch.drain(..) {
            tracing::error!(target: "airlock::audit", record = %text, "audit record not stored");
            eprintln!("airlock: audit record not stored: {text}");
        }
        Closed::Printed { records, reason }
    }
}

impl AuditLog {
    /// Starts the writer task on the current tokio runtime. `chain: false` stores records
    /// without hashes (for benchmarks comparing the cost; `verify` reports them).
    pub fn start(state: Arc<dyn AuditStore>, vault: Arc<Vault>, chain: bool) -> Self {
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
        let available = Arc::new(AtomicBool::new(true));
        let mut writer = Writer {
            spool_dir: state.audit_spool_dir(),
            state,
            vault,
            chain,
            available: available.clone(),
            batch: Vec::new(),
            waiting: Vec::new(),
            durable: Vec::new(),
            last: None,
            since_checkpoint: 0,
            claimed: Vec::new(),
            last_failure: None,
        };
        tokio::spawn(async move {
            writer.claim_spool();
            let mut closing = None;
            while closing.is_none() {
                if writer.batch.len() >= MAX_HELD_RECORDS {
                    let held = writer.batch.len();
                    if let Some(path) = writer.spill() {
                        tracing::warn!(records = held, file = %path.display(), "audit store still refusing writes; held records spooled");
                        continue;
                    }
                    // Held records are bounded: past the bound, and with no spool to take them,
                    // senders wait (their invocations with them) until the store is back.
                    tokio::time::sleep(HELD_RETRY).await;
                    writer.write().await;
                    continue;
                }
                // With records held back by a failing store, try again on a timer too.
                let first = if writer.batch.is_empty() {
                    rx.recv().await
                } else {
                    tokio::select! {
                        m = rx.recv() => m,
                        () = tokio::time::sleep(HELD_RETRY) => {
                            writer.write().await;
                            continue;
                        }
                    }
                };
                let Some(first) = first else { break };
                closing = writer.take(first);
                // Take what is queued, up to a batch, without waiting for more.
                while closing.is_none() && writer.batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(m) => closing = writer.take(m),
                        Err(_) => break,
                    }
                }
                if closing.is_none() {
                    writer.write().await;
                }
            }
            let closed = writer.close().await;
            for done in writer.waiting.drain(..).chain(writer.durable.drain(..)) {
                let _ = done.send(match &closed {
                    Closed::Stored => Ok(()),
                    Closed::Spooled { reason, .. } | Closed::Printed { reason, .. } => {
                        Err(Unavailable {
                            reason: reason.clone(),
                            held: 0,
                        })
                    }
                });
            }
            if let Some(done) = closing {
                let _ = done.send(closed);
            }
        });
        AuditLog { tx, available }
    }

    /// Whether the store took the last write.
    pub fn available(&self) -> bool {
        self.available.load(Ordering::SeqCst)
    }

    /// Queues a record.
    pub async fn record(&self, record: AuditRecord) {
        if let Err(mpsc::error::SendError(Message::Record(record))) =
            self.tx.send(Message::Record(Box::new(record))).await
        {
            // Closed already: the record goes to the error log rather than nowhere.
            let text = serde_json::to_string(&record).unwrap_or_default();
            tracing::error!(target: "airlock::audit", record = %text, "audit record not stored: the audit log is closed");
            eprintln!("airlock: audit record not stored: {text}");
        }
    }

    /// Stores `record` and waits until it is durable: what must happen before an effect that
    /// changes the outside world. An error means the record is not stored (it is held and
    /// retried, and spooled if the writer must stop) and the effect must not run.
    pub async fn record_durable(&self, record: AuditRecord) -> Result<(), Unavailable> {
        self.record(record).await;
        self.ask(Message::Durable).await
    }

    /// Waits until every record queued before this call is stored (and a checkpoint covers it).
    pub async fn flush(&self) -> Result<(), Unavailable> {
        self.ask(Message::Flush).await
    }

    async fn ask(
        &self,
        message: fn(oneshot::Sender<Result<(), Unavailable>>) -> Message,
    ) -> Result<(), Unavailable> {
        let stopped = || Unavailable {
            reason: "the audit writer has stopped".into(),
            held: 0,
        };
        let (done, wait) = oneshot::channel();
        if self.tx.send(message(done)).await.is_err() {
            return Err(stopped());
        }
        wait.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Stores what the store takes, spools the rest, and stops the writer: the last thing a
    /// process does with its audit log. Later records are printed to the error log.
    pub async fn close(&self) -> Closed {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Close(done)).await.is_err() {
            return Closed::Stored;
        }
        wait.await.unwrap_or(Closed::Stored)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Records written before the chain existed (a prefix with no hashes).
    pub predating_chain: u64,
    pub last_seq: i64,
    /// The last record's hash, when it is chained.
    pub last_hash: Option<String>,
    pub checkpoints: u64,
    /// Records after the newest checkpoint: an edit or a cut there shows only in the chain.
    pub after_last_checkpoint: i64,
    /// The id of the master key checked against (the current one).
    pub key_id: String,
    /// Key rotations, each with its rotation checkpoint.
    pub rotations: u64,
    /// Rotations whose link (the old key's signature) was checked: only possible while the old
    /// key is held, as `AIRLOCK_PREVIOUS_MASTER_KEY`.
    pub links_checked: u64,
    /// What was checked only in part, and why; not problems.
    pub notes: Vec<String>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = AuditChainProblem)]
pub struct Problem {
    /// The first sequence number where the trail is wrong.
    pub seq: i64,
    pub what: String,
    /// What would repair it if the cause is the benign one the message names first (a process
    /// still on a retired key); the message says what else it may be, to rule out first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<crate::remedy::Remedy>,
}

/// Walks the whole chain in order and checks every stored checkpoint, every rotation
/// checkpoint, and `extra` ones (kept outside the database). Reports the first problem.
pub async fn verify(
    state: &dyn StateStore,
    vault: &Vault,
    extra: &[Checkpoint],
) -> super::state::Result<VerifyReport> {
    let mut report = VerifyReport {
        records: 0,
        predating_chain: 0,
        last_seq: 0,
        last_hash: None,
        checkpoints: 0,
        after_last_checkpoint: 0,
        key_id: vault.key_id().to_string(),
        rotations: 0,
        links_checked: 0,
        notes: Vec::new(),
        problem: None,
    };
    let mut hashes: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let mut prev: Option<String> = None;
    let mut after = 0;
    'walk: loop {
        let rows: Vec<AuditRow> = state.audit_rows(after, 10_000).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            after = row.seq;
            report.records += 1;
            let fail = |what: String| Problem {
                seq: row.seq,
                what,
                remedy: None,
            };
            if row.seq != report.last_seq + 1 && (report.last_seq > 0 || prev.is_some()) {
                report.problem = Some(fail(format!(
                    "record {} follows record {}: {} record(s) missing (deleted)",
                    row.seq,
                    report.last_seq,
                    row.seq - report.last_seq - 1
                )));
                break 'walk;
            }
            report.last_seq = row.seq;
            let (Some(prev_hash), Some(hash)) = (&row.prev_hash, &row.hash) else {
                if prev.is_none() {
                    report.predating_chain += 1;
                    continue;
                }
                report.problem = Some(fail(
                    "record has no hash inside the chain (chain removed or record inserted)".into(),
                ));
                break 'walk;
            };
            let expected_prev = prev.as_deref().unwrap_or(GENESIS);
            if prev_hash != expected_prev {
                report.problem = Some(fail(
                    "record does not follow the one before it (a record was deleted, inserted or reordered)".into(),
                ));
                break 'walk;
            }
            if chain_hash(prev_hash, row.seq, row.at, &row.tenant, &row.record) != *hash {
                report.problem = Some(fail(
                    "record's content does not match its hash (edited)".into(),
                ));
                break 'walk;
            }
            hashes.insert(row.seq, hash.clone());
            prev = Some(hash.clone());
        }
    }
    report.last_hash = hashes.get(&report.last_seq).cloned();
    // Each checkpoint with whether it was kept outside the database.
    let mut all: Vec<(Checkpoint, bool)> = state
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| (c, false))
        .chain(extra.iter().map(|c| (c.clone(), true)))
        .collect();
    all.sort_by_key(|(c, _)| c.seq);
    let rotations: Vec<KeyRotation> = state
        .key_rotations()
        .await?
        .into_iter()
        .filter(|r| r.checkpoint.is_some())
        .collect();
    report.checkpoints = all.len() as u64;
    report.rotations = rotations.len() as u64;
    let newest = all
        .iter()
        .map(|(c, _)| c.seq)
        .chain(
            rotations
                .iter()
                .filter_map(|r| Some(r.checkpoint.as_ref()?.seq)),
        )
        .max()
        .unwrap_or(0);
    report.after_last_checkpoint = (report.last_seq - newest).max(0);
    if report.problem.is_some() {
        return Ok(report);
    }
    let position = |seq: i64, hash: &str| {
        if seq == 0 && hash == GENESIS {
            None
        } else if seq > report.last_seq {
            Some(format!(
                "the trail ends at record {} but a checkpoint vouches for record {seq} (the tail was cut)",
                report.last_seq
            ))
        } else if hashes.get(&seq).map(String::as_str) != Some(hash) {
            Some(
                "record differs from the checkpoint signed for it (the chain was rewritten)"
                    .to_owned(),
            )
        } else {
            None
        }
    };
    let mut notes = Vec::new();
    let mut problem = None;
    for (c, external) in &all {
        let message = checkpoint_message(c.seq, &c.hash, c.at);
        let mut remedy = None;
        let what = if vault.checkpoint_signer(&message, &c.signature).is_some() {
            None
        } else {
            match retired_signer(c, &rotations) {
                // A copy kept outside from before a rotation: its position still counts.
                Some(r) if *external => {
                    notes.push(format!(
                        "the checkpoint at record {} is signed with the retired master key {}{}, which \
                         this process does not hold: its position was checked, its signature was not \
                         (set {} to that key to check it too)",
                        c.seq,
                        r.from_key,
                        replaced_by(r),
                        super::vault::PREVIOUS_KEY_ENV
                    ));
                    None
                }
                Some(r) => {
                    remedy = Some(crate::remedy::Remedy::RotateMasterKey);
                    Some(format!(
                        "checkpoint is signed with the retired master key {}{}, not with a key this process \
                         holds: a process still running with the retired key wrote it after the rotation, or \
                         it was forged (the rotation run again with the retired key re-signs it)",
                        r.from_key,
                        replaced_by(r)
                    ))
                }
                None => Some(format!(
                    "checkpoint's signature is wrong (forged, or signed with another master key{})",
                    c.key_id
                        .as_ref()
                        .map(|k| format!(
                            ": it names key {k}, this process holds {}",
                            report.key_id
                        ))
                        .unwrap_or_default()
                )),
            }
        };
        if let Some(what) = what.or_else(|| position(c.seq, &c.hash)) {
            problem = Some(Problem {
                seq: c.seq,
                what,
                remedy,
            });
            break;
        }
    }
    let mut links_checked = 0;
    for r in &rotations {
        if problem.is_some() {
            break;
        }
        let c = r.checkpoint.as_ref().expect("only finished rotations");
        let from = r.from_key.parse::<super::vault::KeyId>().ok();
        let what = if vault
            .checkpoint_signer(&rotation_message(r, c), &c.signature)
            .is_none()
        {
            Some(format!(
                "the rotation checkpoint from master key {} to {} is not signed by a key this process \
                 holds (forged, or signed with another master key)",
                r.from_key, r.to_key
            ))
        } else if let Some(from) = from.filter(|id| vault.holds(*id)) {
            links_checked += 1;
            let link = link_message(&r.to_key, c.seq, &c.hash);
            (vault.checkpoint_signer(&link, &c.link) != Some(from)).then(|| {
                format!(
                    "the link from master key {} to {} is not signed by {} (the hand-over was forged)",
                    r.from_key, r.to_key, r.from_key
                )
            })
        } else {
            None
        };
        if let Some(what) = what.or_else(|| position(c.seq, &c.hash)) {
            problem = Some(Problem {
                seq: c.seq,
                what,
                remedy: None,
            });
        }
    }
    report.links_checked = links_checked;
    report.notes = notes;
    report.problem = problem;
    Ok(report)
}

/// The finished rotation that retired the key `c` was signed with: the key it names, or, for a
/// checkpoint from before key ids, the key in use at its position (the first rotation at or
/// after it).
fn retired_signer<'a>(c: &Checkpoint, rotations: &'a [KeyRotation]) -> Option<&'a KeyRotation> {
    let at = |r: &KeyRotation| r.checkpoint.as_ref().map_or(0, |k| k.seq);
    match &c.key_id {
        Some(id) => rotations.iter().find(|r| &r.from_key == id),
        None => rotations
            .iter()
            .filter(|r| at(r) >= c.seq)
            .min_by_key(|r| at(r)),
    }
}

fn replaced_by(r: &KeyRotation) -> String {
    format!(
        " (replaced by {} at record {})",
        r.to_key,
        r.checkpoint.as_ref().map_or(0, |c| c.seq)
    )
}

/// A field made safe for a one-line display: control characters (CR, LF, ESC...), Unicode line
/// separators and bidirectional overrides escaped, so a value cannot forge a line, reorder
/// text or send a terminal sequence in a listing.
pub fn escape(text: &str) -> String {
    escape_with(text, true)
}

/// [`escape`] for a terminal line: control characters and bidirectional overrides escaped,
/// backslashes kept as they are (they cannot move the cursor or forge a line).
pub fn escape_for_terminal(text: &str) -> String {
    escape_with(text, false)
}

fn escape_with(text: &str, backslashes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' if backslashes => out.push_str("\\\\"),
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}' => out.extend(c.escape_unicode()),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

pub use crate::redact::{REDACTED, redact, secret_name};

/// Bytes of an audit record's message kept.
pub const MAX_MESSAGE_BYTES: usize = 4 << 10;
/// Bytes of an audit record's params kept; larger params are recorded by size and digest.
pub const MAX_PARAMS_BYTES: usize = 16 << 10;

/// A message cut to [`MAX_MESSAGE_BYTES`]: one record never grows the store by more than a few
/// kilobytes, whatever a guest or an upstream put into an error.
pub fn bounded_message(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    crate::capability::logging::truncate(&message, MAX_MESSAGE_BYTES).into_owned()
}

/// Params as recorded: as given (redacted) up to about [`MAX_PARAMS_BYTES`] of JSON, else their
/// size and SHA-256, which still identify them. The size is estimated by a walk that stops at the
/// bound (every invocation pays for this; only oversized params are serialized).
pub fn bounded_params(params: Value) -> Value {
    fn size(v: &Value, budget: &mut isize) {
        if *budget < 0 {
            return;
        }
        match v {
            Value::String(s) => *budget -= s.len() as isize + 2,
            Value::Array(items) => {
                *budget -= 2;
                for item in items {
                    size(item, budget);
                }
            }
            Value::Object(map) => {
                *budget -= 2;
                for (k, item) in map {
                    *budget -= k.len() as isize + 4;
                    size(item, budget);
                }
            }
            _ => *budget -= 8,
        }
    }
    let mut budget = MAX_PARAMS_BYTES as isize;
    size(&params, &mut budget);
    if budget >= 0 {
        return params;
    }
    let text = params.to_string();
    serde_json::json!({
        "_truncated": true,
        "bytes": text.len(),
        "sha256": hex::encode(sha2::Sha256::digest(text.as_bytes())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audit_redacts_secret_looking_values_and_keeps_the_rest() {
        let params = json!({
            "type": "items",
            "password": "hunter2",
            "api_key": "k-123",
            "X-Api-Key": "k-456",
            "nested": {"clientSecret": "s3", "note": "Bearer abc.def", "keep": "visible"},
            "list": ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "AKIAABCDEFGHIJKLMNOP", "plain"],
            "author": "alice"
        });
        let r = redact(&params);
        let text = r.to_string();
        for secret in [
            "hunter2",
            "k-123",
            "k-456",
            "s3",
            "Bearer abc",
            "eyJhbGci",
            "AKIAABCD",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(r["type"], "items");
        assert_eq!(r["nested"]["keep"], "visible");
        assert_eq!(r["list"][2], "plain");
        // Near misses are not secrets... except where a name contains one ("author" has "auth").
        assert_eq!(
            r["author"], REDACTED,
            "fields named like auth* are redacted, erring on the safe side"
        );
    }
}
