//! The response cache for read operations: per tenant, least recently used out first
//! (`CONNECTOR_CACHE_MAX_ENTRIES_PER_TENANT`, 1000), each entry alive for its connection's TTL
//! (`--cache-ttl`, or `CONNECTOR_CACHE_TTL_SECONDS` (300) when a connection turns the cache on
//! without one).
//!
//! A key is a hash over everything that could make two answers differ: the connection (and its
//! revision), the connector's digest, the operation, the principal's kind, role and, for an
//! agent, its id (its grants), and the params. So a result never crosses tenants (one cache
//! each), connections, roles or agents. It is consulted only after every check has allowed the
//! call, and stores the result as shaped (masked) for the caller. A write that succeeds on a
//! connection drops that connection's entries in this process; other processes see the write
//! when their entries expire.

use super::authz::{Principal, PrincipalKind};
use crate::manifest::Classification;
use hashlink::LruCache;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Entry {
    pub output: String,
    pub classification: Option<Classification>,
    pub masked: usize,
    expires: Instant,
}

impl Entry {
    /// A result to keep for `ttl`.
    pub fn new(
        output: String,
        classification: Option<Classification>,
        masked: usize,
        ttl: Duration,
    ) -> Self {
        Entry {
            output,
            classification,
            masked,
            expires: crate::time::from_now(ttl),
        }
    }
}

/// Hits and misses per connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub hits: u64,
    pub misses: u64,
}

type Key = (String, [u8; 32]);

pub struct ResponseCache {
    tenants: Mutex<HashMap<String, LruCache<Key, Entry>>>,
    counts: Mutex<HashMap<(String, String), Counts>>,
    /// Entries per tenant (`CONNECTOR_CACHE_MAX_ENTRIES_PER_TENANT`).
    max_entries: usize,
}

impl ResponseCache {
    /// An empty cache holding at most `max_entries` results per tenant.
    pub fn new(max_entries: usize) -> Self {
        ResponseCache {
            tenants: Mutex::default(),
            counts: Mutex::default(),
            max_entries: max_entries.max(1),
        }
    }
}

/// The key's hash for one call. `params` as the caller parsed them (objects keep their keys
/// sorted, so spacing and order do not matter), else the text as given.
pub fn key(
    who: &Principal,
    connection: &str,
    revision: i64,
    digest: &str,
    operation: &str,
    params: &crate::params::Params,
) -> [u8; 32] {
    // The parsed value, re-serialized: the same params spelled with other spacing hit the
    // same entry.
    let params = params.value().to_string();
    let agent = match who.kind {
        PrincipalKind::Agent => who.id.as_str(),
        PrincipalKind::User => "",
    };
    let mut h = sha2::Sha256::new();
    for field in [
        connection,
        &revision.to_string(),
        digest,
        operation,
        who.kind.as_str(),
        who.role.as_str(),
        agent,
        &params,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().into()
}

impl ResponseCache {
    fn count(&self, tenant: &str, connection: &str, hit: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let c = counts
            .entry((tenant.to_owned(), connection.to_owned()))
            .or_default();
        if hit {
            c.hits += 1;
        } else {
            c.misses += 1;
        }
    }

    pub fn get(&self, tenant: &str, connection: &str, key: &[u8; 32]) -> Option<Entry> {
        let found = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            let lru = tenants.get_mut(tenant);
            let k = (connection.to_owned(), *key);
            match lru.as_ref().and_then(|l| l.peek(&k)).cloned() {
                Some(e) if e.expires > Instant::now() => {
                    lru.and_then(|l| l.get(&k)); // mark recently used
                    Some(e)
                }
                Some(_) => {
                    lru.and_then(|l| l.remove(&k));
                    None
                }
                None => None,
            }
        };
        self.count(tenant, connection, found.is_some());
        found
    }

    pub fn put(&self, tenant: &str, connection: &str, key: [u8; 32], entry: Entry) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| LruCache::new(self.max_entries))
            .insert((connection.to_owned(), key), entry);
    }

    /// Drops a connection's entries (after a write on it succeeded).
    pub fn invalidate(&self, tenant: &str, connection: &str) {
        if let Some(lru) = self
            .tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(tenant)
        {
            lru.retain(|(c, _), _| c != connection);
        }
    }

    /// A tenant's hits and misses by connection.
    pub fn counts(&self, tenant: &str) -> Vec<(String, Counts)> {
        let mut out: Vec<(String, Counts)> = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, c), n)| (c.clone(), *n))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Entries held for a tenant.
    pub fn len(&self, tenant: &str) -> usize {
        self.tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .map_or(0, LruCache::len)
    }
}
