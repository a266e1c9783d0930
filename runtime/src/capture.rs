//! Dry runs: a write operation runs with its write effects captured instead of applied, so an
//! approver (or a connection in dry-run mode) sees what it would do.
//!
//! Two kinds of effect are captured. Storage writes go to an overlay ([`CapturingStore`]): the
//! guest reads its own writes back, the real store is untouched. HTTP requests other than GET,
//! HEAD and OPTIONS are checked by every egress rule as usual, then recorded (method, URL,
//! headers, body) and answered by the host with a synthetic `200 {"dry_run": true}`; they never
//! leave. They are captured before any credential is added, so no secret is in the capture; the
//! name of the credential that would have been added is noted, and secret-looking header and
//! JSON body values the guest itself set are redacted. Reads go through as usual.

use crate::capability::keyvalue::{BackendError, KeyPage, KeyValueStore, Namespace};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The most body bytes kept per captured request.
pub const MAX_CAPTURED_BODY: usize = 64 << 10;

/// One write effect that did not happen.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Effect {
    Http {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<serde_json::Value>,
        /// The credential the host would have added, by name.
        #[serde(skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
    },
    Storage {
        op: &'static str,
        bucket: String,
        key: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<serde_json::Value>,
    },
}

/// The effects of one dry run, in order.
#[derive(Debug, Default)]
pub struct Capture {
    effects: Mutex<Vec<Effect>>,
}

impl Capture {
    pub fn record(&self, effect: Effect) {
        self.effects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(effect);
    }

    pub fn effects(&self) -> Vec<Effect> {
        self.effects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A body as the capture shows it: JSON (secret-looking values redacted) when it parses, else
/// text, cut at [`MAX_CAPTURED_BODY`].
pub fn body_preview(bytes: &[u8]) -> Option<serde_json::Value> {
    if bytes.is_empty() {
        return None;
    }
    let cut = &bytes[..bytes.len().min(MAX_CAPTURED_BODY)];
    Some(match serde_json::from_slice::<serde_json::Value>(cut) {
        Ok(json) => crate::redact::redact(&json),
        Err(_) => {
            let mut text = String::from_utf8_lossy(cut).into_owned();
            if bytes.len() > cut.len() {
                text.push_str(&format!("... ({} bytes in all)", bytes.len()));
            }
            serde_json::Value::String(text)
        }
    })
}

/// The dry run's writes by (namespace, key): a value, or `None` for deleted.
type Overlay = BTreeMap<(Namespace, String), Option<Vec<u8>>>;

/// Storage for a dry run: reads see the real store through the run's own writes; writes stay
/// in the overlay and are recorded.
pub struct CapturingStore {
    inner: Arc<dyn KeyValueStore>,
    overlay: Mutex<Overlay>,
    capture: Arc<Capture>,
}

impl CapturingStore {
    pub fn new(inner: Arc<dyn KeyValueStore>, capture: Arc<Capture>) -> Self {
        CapturingStore {
            inner,
            overlay: Mutex::default(),
            capture,
        }
    }

    fn overlaid(&self, ns: &Namespace, key: &str) -> Option<Option<Vec<u8>>> {
        self.overlay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(ns.clone(), key.to_owned()))
            .cloned()
    }

    fn write(&self, ns: &Namespace, key: &str, value: Option<Vec<u8>>, op: &'static str) {
        self.capture.record(Effect::Storage {
            op,
            bucket: ns.bucket.to_string(),
            key: key.to_owned(),
            value: value.as_deref().and_then(body_preview),
        });
        self.overlay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((ns.clone(), key.to_owned()), value);
    }
}

#[async_trait::async_trait]
impl KeyValueStore for CapturingStore {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        match self.overlaid(ns, key) {
            Some(value) => Ok(value),
            None => self.inner.get(ns, key).await,
        }
    }

    async fn set(&self, ns: &Namespace, key: &str, value: Vec<u8>) -> Result<(), BackendError> {
        self.write(ns, key, Some(value), "set");
        Ok(())
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), BackendError> {
        self.write(ns, key, None, "delete");
        Ok(())
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, BackendError> {
        match self.overlaid(ns, key) {
            Some(value) => Ok(value.is_some()),
            None => self.inner.exists(ns, key).await,
        }
    }

    async fn list_keys(&self, ns: &Namespace, cursor: u64) -> Result<KeyPage, BackendError> {
        // The real page with the overlay applied: enough for a preview.
        let mut page = self.inner.list_keys(ns, cursor).await?;
        let overlay = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
        page.keys
            .retain(|k| !matches!(overlay.get(&(ns.clone(), k.clone())), Some(None)));
        for ((n, k), v) in overlay.iter() {
            if n == ns && v.is_some() && !page.keys.contains(k) {
                page.keys.push(k.clone());
            }
        }
        page.keys.sort();
        Ok(page)
    }

    async fn increment(&self, ns: &Namespace, key: &str, delta: u64) -> Result<u64, BackendError> {
        let current = self.get(ns, key).await?;
        let sum = crate::capability::keyvalue::add_to_counter(key, current.as_deref(), delta)?;
        self.write(ns, key, Some(sum.to_string().into_bytes()), "increment");
        Ok(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::keyvalue::MemoryStore;

    #[tokio::test]
    async fn capture_overlay_reads_its_own_writes_and_leaves_the_store() {
        let real: Arc<dyn KeyValueStore> = Arc::new(MemoryStore::new());
        let ns = Namespace {
            tenant: "t".into(),
            connection: "c".into(),
            bucket: "b".into(),
        };
        real.set(&ns, "kept", b"1".to_vec()).await.unwrap();
        let capture = Arc::new(Capture::default());
        let dry = CapturingStore::new(real.clone(), capture.clone());
        dry.set(&ns, "new", br#"{"password":"p","n":2}"#.to_vec())
            .await
            .unwrap();
        dry.delete(&ns, "kept").await.unwrap();
        assert_eq!(
            dry.get(&ns, "new").await.unwrap().as_deref(),
            Some(&br#"{"password":"p","n":2}"#[..])
        );
        assert!(!dry.exists(&ns, "kept").await.unwrap());
        assert_eq!(dry.list_keys(&ns, 0).await.unwrap().keys, ["new"]);
        assert_eq!(dry.increment(&ns, "count", 3).await.unwrap(), 3);
        // The real store did not change.
        assert!(real.exists(&ns, "kept").await.unwrap());
        assert!(!real.exists(&ns, "new").await.unwrap());
        let effects = serde_json::to_value(capture.effects()).unwrap();
        assert_eq!(effects[0]["op"], "set");
        assert_eq!(effects[0]["value"]["password"], "[REDACTED]");
        assert_eq!(effects[1]["op"], "delete");
        assert_eq!(effects[2]["op"], "increment");
    }
}
