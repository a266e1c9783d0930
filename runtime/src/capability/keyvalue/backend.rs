//! Where key-value data lives. Every operation takes a [`Namespace`] that the host built from
//! the invocation; a backend keeps the namespace's parts apart from the key (separate tuple fields
//! or columns), so no key string, however crafted, can name another namespace's data.

use std::sync::Arc;

/// Keys per page of `list-keys`.
pub const LIST_PAGE_SIZE: usize = 1_000;

/// The owner of a set of keys: one bucket of one connection of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace {
    pub tenant: Arc<str>,
    pub connection: Arc<str>,
    pub bucket: Arc<str>,
}

/// A failure of the storage itself (not a denial).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("stored value of `{key}` is not a decimal u64 counter")]
    NotACounter { key: String },
    #[error("counter `{key}` would overflow")]
    Overflow { key: String },
    #[error("key-value storage failed: {0}")]
    Storage(String),
}

/// One page of keys and the cursor of the next page, if any.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<u64>,
}

/// A key-value backend. Implementations must be safe to share between concurrent invocations.
#[async_trait::async_trait]
pub trait KeyValueStore: Send + Sync + 'static {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, BackendError>;
    async fn set(&self, ns: &Namespace, key: &str, value: Vec<u8>) -> Result<(), BackendError>;
    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), BackendError>;
    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, BackendError>;
    /// Keys in ascending order, [`LIST_PAGE_SIZE`] at a time; `cursor` is the offset.
    async fn list_keys(&self, ns: &Namespace, cursor: u64) -> Result<KeyPage, BackendError>;
    /// Adds `delta` to the decimal counter at `key` (absent counts as 0) and returns the sum.
    async fn increment(&self, ns: &Namespace, key: &str, delta: u64) -> Result<u64, BackendError>;
}

/// Parses a counter as `wasi:keyvalue/atomics` stores it: decimal text.
pub(crate) fn add_to_counter(
    key: &str,
    current: Option<&[u8]>,
    delta: u64,
) -> Result<u64, BackendError> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| BackendError::NotACounter {
                key: key.to_owned(),
            })?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| BackendError::Overflow {
            key: key.to_owned(),
        })
}
