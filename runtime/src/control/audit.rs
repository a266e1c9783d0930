//! The audit log: every authorization decision and every administrative change.
//!
//! Records are written by a background task in batches, so an invocation pays for a channel send,
//! not a database write; [`AuditLog::flush`] waits until everything sent so far is stored (the CLI
//! flushes before it exits). Each record is one JSON object with a stable field order and is
//! stored with a sequence number, so a later issue can chain them (hash of the previous record +
//! this one) without changing the record. Params are stored with secret-looking values redacted.

use super::state::StateStore;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Records waiting in the channel before senders wait: bounded, so a stalled store slows callers
/// down instead of growing memory.
const QUEUE: usize = 16_384;
/// Records written per transaction at most.
const BATCH: usize = 512;
/// Tries to store a batch before giving up (with a loud error).
const WRITE_ATTEMPTS: u32 = 10;

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
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
    /// `ok`, `denied` or `error`.
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
}

enum Message {
    Record(Box<AuditRecord>),
    Flush(oneshot::Sender<()>),
}

/// A handle to the audit writer. Cloning shares the writer.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Message>,
}

impl AuditLog {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(state: Arc<dyn StateStore>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
        tokio::spawn(async move {
            let mut batch: Vec<(i64, String, String)> = Vec::new();
            let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                // Take what is queued, up to a batch, without waiting for more.
                while let Some(message) = next.take() {
                    match message {
                        Message::Record(r) => {
                            let r = *r;
                            let text = serde_json::to_string(&r).expect("audit records serialize");
                            batch.push((r.at, r.tenant, text));
                        }
                        Message::Flush(done) => waiting.push(done),
                    }
                    if batch.len() < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    // A busy store is retried: an audit record is not something to drop.
                    let mut attempt = 0;
                    while let Err(e) = state.append_audit(&batch).await {
                        attempt += 1;
                        if attempt >= WRITE_ATTEMPTS {
                            // Losing audit records silently would be worse than a loud log line.
                            tracing::error!(error = %e, records = batch.len(), "could not write audit records");
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64))
                            .await;
                    }
                    batch.clear();
                }
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        AuditLog { tx }
    }

    /// Queues a record.
    pub async fn record(&self, record: AuditRecord) {
        if self
            .tx
            .send(Message::Record(Box::new(record)))
            .await
            .is_err()
        {
            tracing::error!("audit writer has stopped; record lost");
        }
    }

    /// Waits until every record queued before this call is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Names of fields whose values are secrets, matched case-insensitively as substrings after
/// removing `-` and `_`.
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "auth",
    "credential",
    "privatekey",
    "cookie",
    "session",
    "signature",
    "ssn",
];
pub const REDACTED: &str = "[REDACTED]";

fn secret_name(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_NAMES.iter().any(|s| folded.contains(s))
}

/// A value that is a secret whatever its field is called: bearer tokens, JWTs, AWS access keys,
/// PEM private keys.
fn secret_value(text: &str) -> bool {
    let t = text.trim();
    let jwt = {
        let parts: Vec<&str> = t.split('.').collect();
        parts.len() == 3
            && t.starts_with("eyJ")
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    let aws = t.len() == 20
        && (t.starts_with("AKIA") || t.starts_with("ASIA"))
        && t.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    t.to_ascii_lowercase().starts_with("bearer ")
        || t.to_ascii_lowercase().starts_with("basic ")
        || jwt
        || aws
        || t.contains("PRIVATE KEY-----")
}

/// A copy of `value` with secret-looking values replaced by [`REDACTED`].
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if secret_name(k) && !v.is_object() && !v.is_array() {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) if secret_value(s) => Value::String(REDACTED.into()),
        other => other.clone(),
    }
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
