//! The bounds every invocation runs under.
//!
//! A guest is untrusted code: each resource it can consume (time, memory, stack, bytes passed to the
//! host, handles, output) has a limit here, enforced by the host rather than requested of the guest.
//! The defaults suit a connector that makes a few API calls and returns a page of JSON; a connection
//! can override them (see `docs/limits.md`).

use std::time::Duration;

/// Limits for one invocation. `Limits::default()` documents the defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time for the whole invocation, host calls included.
    #[serde(with = "millis")]
    #[schema(value_type = u64)]
    pub deadline: Duration,
    /// Linear memory one instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Bytes a guest may pass to the host in one host call (a key, a value, a log line).
    pub max_host_call_bytes: usize,
    /// Handles (buckets, streams, requests...) a guest may hold at once.
    pub max_resources: usize,
    /// Bytes of the JSON text `invoke` may return.
    pub max_output_bytes: usize,
    /// Bytes of one outgoing HTTP request body. A body past it fails the request (the guest
    /// reads `HTTP-request-body-size`) instead of streaming on until the deadline.
    pub max_request_body_bytes: usize,
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
/// 16 MiB per outgoing request body: an upload of a document, not of a disk image.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 16 << 20;
/// The longest deadline a connection may set: an invocation holds a pooled instance slot for
/// that long.
pub const MAX_DEADLINE: Duration = Duration::from_secs(15 * 60);

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
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
        }
    }
}

impl Limits {
    /// The defaults with an operator's overrides (`--deadline-ms`, `--memory-mib`), checked:
    /// each problem names the flag, the bound and the value given.
    pub fn with_overrides(
        base: Limits,
        deadline_ms: Option<u64>,
        memory_mib: Option<usize>,
        memory_ceiling: usize,
    ) -> Result<Limits, Vec<String>> {
        let mut limits = base;
        if let Some(ms) = deadline_ms {
            limits.deadline = Duration::from_millis(ms);
        }
        if let Some(mib) = memory_mib {
            limits.max_memory_bytes = mib.saturating_mul(1 << 20);
        }
        limits.check(memory_ceiling).map(|()| limits)
    }

    /// Checks every bound against what this host can honour: a limit it would silently lower
    /// (memory above the pool's slot size) or never reach is refused, naming it.
    pub fn check(&self, memory_ceiling: usize) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.deadline.is_zero() || self.deadline > MAX_DEADLINE {
            problems.push(format!(
                "deadline: {} ms is outside 1..={} ms",
                self.deadline.as_millis(),
                MAX_DEADLINE.as_millis()
            ));
        }
        if self.max_memory_bytes < 1 << 20 || self.max_memory_bytes > memory_ceiling {
            problems.push(format!(
                "memory: {} MiB is outside 1..={} MiB, this host's largest instance slot",
                self.max_memory_bytes >> 20,
                memory_ceiling >> 20
            ));
        }
        for (what, value) in [
            ("host-call bytes", self.max_host_call_bytes),
            ("resources", self.max_resources),
            ("output bytes", self.max_output_bytes),
            ("request body bytes", self.max_request_body_bytes),
        ] {
            if value == 0 {
                problems.push(format!("{what}: 0 allows nothing; give a positive number"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
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
