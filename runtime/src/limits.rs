//! The bounds every invocation runs under.
//!
//! A guest is untrusted code: each resource it can consume (time, memory, stack, bytes passed to the
//! host, handles, output) has a limit here, enforced by the host rather than requested of the guest.
//! The defaults suit a connector that makes a few API calls and returns a page of JSON; a connection
//! can override them (see `docs/limits.md`).

use std::time::Duration;

/// Limits for one invocation. `Limits::default()` documents the defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time for the whole invocation, host calls included.
    #[serde(with = "millis")]
    pub deadline: Duration,
    /// Linear memory one instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Bytes a guest may pass to the host in one host call (a key, a value, a log line).
    pub max_host_call_bytes: usize,
    /// Handles (buckets, streams, requests...) a guest may hold at once.
    pub max_resources: usize,
    /// Bytes of the JSON text `invoke` may return.
    pub max_output_bytes: usize,
}

/// The default wall-clock deadline: generous for an API round trip, short enough that a stuck
/// guest releases its slot quickly.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// 64 MiB: ample for JSON processing, and it keeps 10,000 instances in flight within reach.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 64 << 20;
/// 1 MiB per host call.
pub const DEFAULT_MAX_HOST_CALL_BYTES: usize = 1 << 20;
/// 1,000 handles: a connector juggling more is leaking them.
pub const DEFAULT_MAX_RESOURCES: usize = 1_000;
/// 4 MiB of output: a page of results, not a database dump.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 4 << 20;

/// The wasm stack a guest may use. Fixed per engine (wasmtime sets it in the `Config`), so not
/// per connection. Deep recursion beyond it traps with "call stack exhausted".
pub const MAX_WASM_STACK_BYTES: usize = 512 << 10;
/// The native stack for each async invocation; must exceed [`MAX_WASM_STACK_BYTES`] so host
/// functions called at the guest's deepest frame still have room.
pub const ASYNC_STACK_BYTES: usize = 2 << 20;
/// How often the epoch ticker advances. A runaway guest is stopped at most one tick after its
/// deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: DEFAULT_DEADLINE,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_host_call_bytes: DEFAULT_MAX_HOST_CALL_BYTES,
            max_resources: DEFAULT_MAX_RESOURCES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
