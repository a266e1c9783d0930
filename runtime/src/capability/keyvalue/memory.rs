//! An in-memory backend: for tests, benchmarks and one-shot runs. Data lives as long as
//! the store value.

use super::backend::{
    BackendError, KeyPage, KeyValueStore, LIST_PAGE_SIZE, Namespace, add_to_counter,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Buckets keyed by their full namespace. A std `Mutex` is right here: no lock is held across an
/// `.await`, and each critical section is a map lookup.
#[derive(Default)]
pub struct MemoryStore {
    buckets: Mutex<HashMap<Namespace, BTreeMap<String, Vec<u8>>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut HashMap<Namespace, BTreeMap<String, Vec<u8>>>) -> R,
    ) -> R {
        // A panic while holding the lock cannot leave a half-written map entry, so a poisoned
        // lock still guards consistent data.
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

#[async_trait::async_trait]
impl KeyValueStore for MemoryStore {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.with(|b| b.get(ns).and_then(|m| m.get(key).cloned())))
    }

    async fn set(&self, ns: &Namespace, key: &str, value: Vec<u8>) -> Result<(), BackendError> {
        self.with(|b| {
            b.entry(ns.clone())
                .or_default()
                .insert(key.to_owned(), value)
        });
        Ok(())
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), BackendError> {
        self.with(|b| b.get_mut(ns).map(|m| m.remove(key)));
        Ok(())
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, BackendError> {
        Ok(self.with(|b| b.get(ns).is_some_and(|m| m.contains_key(key))))
    }

    async fn list_keys(&self, ns: &Namespace, cursor: u64) -> Result<KeyPage, BackendError> {
        Ok(self.with(|b| {
            let Some(map) = b.get(ns) else {
                return KeyPage::default();
            };
            let keys: Vec<String> = map
                .keys()
                .skip(cursor as usize)
                .take(LIST_PAGE_SIZE)
                .cloned()
                .collect();
            let next = cursor + keys.len() as u64;
            let cursor = (next < map.len() as u64).then_some(next);
            KeyPage { keys, cursor }
        }))
    }

    async fn increment(&self, ns: &Namespace, key: &str, delta: u64) -> Result<u64, BackendError> {
        self.with(|b| {
            let map = b.entry(ns.clone()).or_default();
            let sum = add_to_counter(key, map.get(key).map(Vec::as_slice), delta)?;
            map.insert(key.to_owned(), sum.to_string().into_bytes());
            Ok(sum)
        })
    }
}
