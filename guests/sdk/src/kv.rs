//! Key-value storage (`wasi:keyvalue`), scoped by the host to this tenant and connection.

use crate::Error;
use crate::bindings::wasi::keyvalue::{atomics, store};

/// A named bucket of this connection's storage.
pub struct Bucket(store::Bucket);

fn kv_error(what: &str, e: store::Error) -> Error {
    match e {
        store::Error::AccessDenied => Error::Internal(format!("{what}: access denied by the host")),
        store::Error::NoSuchStore => Error::Internal(format!("{what}: no such store")),
        store::Error::Other(m) => Error::Internal(format!("{what}: {m}")),
    }
}

impl Bucket {
    /// Opens a bucket; the name is an identifier (letters, digits, `._:@-`).
    pub fn open(name: &str) -> Result<Self, Error> {
        store::open(name)
            .map(Bucket)
            .map_err(|e| kv_error(&format!("opening bucket `{name}`"), e))
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(key).map_err(|e| kv_error("reading", e))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.0.set(key, value).map_err(|e| kv_error("writing", e))
    }

    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.0.delete(key).map_err(|e| kv_error("deleting", e))
    }

    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.0.exists(key).map_err(|e| kv_error("checking", e))
    }

    /// All keys, following the host's pages.
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .0
                .list_keys(cursor)
                .map_err(|e| kv_error("listing keys", e))?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to a decimal counter and returns the new value.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        atomics::increment(&self.0, key, delta).map_err(|e| kv_error("incrementing", e))
    }

    /// Reads and deserializes a JSON value.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Internal(format!("stored value of `{key}` is not valid JSON: {e}"))
            }),
        }
    }

    /// Serializes and writes a JSON value.
    pub fn set_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?;
        self.set(key, &bytes)
    }
}
