//! `wasi:keyvalue`: storage scoped to the invocation's tenant and connection.
//!
//! The guest names only a bucket and a key; the host prefixes neither string with anything the
//! guest controls. The namespace comes from the invocation (set by the host before the guest
//! runs), and backends keep it in separate fields, so `../other-tenant/x` is just an odd key
//! inside the caller's own bucket. A `read` operation gets bucket handles of a type that has no
//! write path.

mod backend;
mod memory;
mod sqlite;

pub(crate) use backend::add_to_counter;
pub use backend::{BackendError, KeyPage, KeyValueStore, LIST_PAGE_SIZE, Namespace};
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use super::{DenialLog, check_call_bytes};
use crate::bindings::wasi::keyvalue::{atomics, store};
use crate::invocation::Invocation;
use crate::policy::{Denial, Effect, authorize};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// Bucket names are identifiers (see `invocation::validate_id`): 128 bytes at most.
const MAX_BUCKET_NAME_BYTES: usize = 128;

/// Per-invocation configuration of the key-value capability.
pub struct KeyValueCtx {
    pub store: Arc<dyn KeyValueStore>,
    pub max_call_bytes: usize,
}

/// A handle to a bucket that allows reads only.
pub struct ReadBucket {
    namespace: Namespace,
}

/// A handle to a bucket that allows reads and writes.
pub struct WriteBucket {
    namespace: Namespace,
}

/// The resource behind a guest's `bucket` handle. The write methods exist only on
/// [`WriteBucket`]; a [`ReadBucket`] carries the denial that explains why.
pub enum Bucket {
    Read(ReadBucket, Denial),
    Write(WriteBucket),
}

impl Bucket {
    fn namespace(&self) -> &Namespace {
        match self {
            Bucket::Read(b, _) => &b.namespace,
            Bucket::Write(b) => &b.namespace,
        }
    }
}

pub struct KeyValueView<'a> {
    pub ctx: &'a KeyValueCtx,
    pub table: &'a mut ResourceTable,
    pub invocation: &'a Invocation,
    pub denials: &'a DenialLog,
}

pub struct KeyValue;

impl HasData for KeyValue {
    type Data<'a> = KeyValueView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KeyValueView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, KeyValue>(linker, get)?;
    atomics::add_to_linker::<T, KeyValue>(linker, get)?;
    Ok(())
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

fn backend_error(e: BackendError) -> store::Error {
    store::Error::Other(e.to_string())
}

impl KeyValueView<'_> {
    /// Decodes a read: the handle's namespace, once the key fits the per-call limit. The outer
    /// error is a bad handle (a trap); the inner one is the guest's to handle.
    fn reading(
        &self,
        bucket: &Resource<Bucket>,
        key: &str,
    ) -> wasmtime::Result<Result<Namespace, store::Error>> {
        let ns = self.table.get(bucket)?.namespace().clone();
        Ok(self.check_size(key.len()).map(|()| ns))
    }

    /// Decodes a write: only a [`WriteBucket`] has a namespace to write to; a [`ReadBucket`]
    /// yields the denial decided when it was opened, recorded for the caller.
    fn writing(
        &self,
        bucket: &Resource<Bucket>,
        key: &str,
        value_len: usize,
    ) -> wasmtime::Result<Result<Namespace, store::Error>> {
        Ok(match self.table.get(bucket)? {
            Bucket::Write(b) => self
                .check_size(key.len() + value_len)
                .map(|()| b.namespace.clone()),
            Bucket::Read(_, denial) => {
                self.denials.record(denial.clone());
                return self.refused(store::Error::AccessDenied);
            }
        })
    }

    /// A refusal for the guest, or, once it has been refused too often, a trap that stops it.
    fn refused<T>(&self, error: store::Error) -> KvResult<T> {
        if self.denials.exhausted() {
            return Err(super::TooManyDenials.into());
        }
        Ok(Err(error))
    }

    fn check_size(&self, len: usize) -> Result<(), store::Error> {
        check_call_bytes("key-value key and value", len, self.ctx.max_call_bytes)
            .map_err(store::Error::Other)
    }
}

impl store::Host for KeyValueView<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        // Size before policy: a denial must not copy a megabyte of name around.
        if let Err(e) = check_call_bytes(
            "bucket name",
            identifier.len(),
            MAX_BUCKET_NAME_BYTES.min(self.ctx.max_call_bytes),
        ) {
            self.denials.record(Denial {
                rule: crate::policy::RULE_BUCKET_NAME,
                effect: "open key-value bucket".into(),
                reason: e.clone(),
                remedy: None,
            });
            return self.refused(store::Error::Other(e));
        }
        if let Err(denial) = authorize(
            self.invocation,
            &Effect::KeyValueOpen {
                bucket: &identifier,
            },
        ) {
            self.denials.record(denial);
            return self.refused(store::Error::AccessDenied);
        }
        let namespace = Namespace {
            tenant: self.invocation.tenant.as_str().into(),
            connection: self.invocation.connection.as_str().into(),
            bucket: identifier.as_str().into(),
        };
        let bucket = match authorize(
            self.invocation,
            &Effect::KeyValueWrite {
                bucket: &identifier,
            },
        ) {
            Ok(()) => Bucket::Write(WriteBucket { namespace }),
            Err(denial) => Bucket::Read(ReadBucket { namespace }, denial),
        };
        // A full table is the guest holding too many handles: its error, not a host bug.
        let limit = self.table.max_capacity();
        Ok(self.table.push(bucket).map_err(|e| {
            store::Error::Other(format!(
                "cannot open bucket: {e}; an invocation may hold at most {limit} handles, drop the ones no longer needed"
            ))
        }))
    }
}

impl store::HostBucket for KeyValueView<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        Ok(match self.reading(&bucket, &key)? {
            Ok(ns) => self.ctx.store.get(&ns, &key).await.map_err(backend_error),
            Err(e) => Err(e),
        })
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        Ok(match self.writing(&bucket, &key, value.len())? {
            Ok(ns) => self
                .ctx
                .store
                .set(&ns, &key, value)
                .await
                .map_err(backend_error),
            Err(e) => Err(e),
        })
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        Ok(match self.writing(&bucket, &key, 0)? {
            Ok(ns) => self
                .ctx
                .store
                .delete(&ns, &key)
                .await
                .map_err(backend_error),
            Err(e) => Err(e),
        })
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        Ok(match self.reading(&bucket, &key)? {
            Ok(ns) => self
                .ctx
                .store
                .exists(&ns, &key)
                .await
                .map_err(backend_error),
            Err(e) => Err(e),
        })
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let ns = self.table.get(&bucket)?.namespace().clone();
        Ok(self
            .ctx
            .store
            .list_keys(&ns, cursor.unwrap_or(0))
            .await
            .map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            })
            .map_err(backend_error))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> KvResult<u64> {
        Ok(match self.writing(&bucket, &key, 0)? {
            Ok(ns) => self
                .ctx
                .store
                .increment(&ns, &key, delta)
                .await
                .map_err(backend_error),
            Err(e) => Err(e),
        })
    }
}
