//! What a guest can import. One module per capability, each with the same four parts (the shape
//! of wasmtime's own WASI crates):
//!
//! - a `FooCtx` with the per-invocation configuration,
//! - a view `FooView<'a>` borrowing that context, the resource table and the invocation,
//! - the generated `Host` traits implemented on the view, each host function doing three things:
//!   decode, [`crate::policy::authorize`], call the backend,
//! - one `add_to_linker(linker, getter)`.
//!
//! | module | WIT interfaces | what the host enforces |
//! |---|---|---|
//! | [`keyvalue`] | `wasi:keyvalue/store`, `wasi:keyvalue/atomics` | tenant + connection scope, read-only operations, value size |
//! | [`config`] | `wasi:config/store` | only the connection's own non-secret config |
//! | [`logging`] | `wasi:logging/logging` | lines tagged with the invocation, size-capped |
//! | [`http`] | `wasi:http/outgoing-handler` | every request decided by policy (method vs declared access, grants, resolved addresses), credentials added by the host, retries and circuit breaker, response caps |
//! | [`wasi`] | the rest of WASI 0.2 | no authority: no files, env, args, sockets; stdio to logs |

pub mod config;
pub mod http;
pub mod keyvalue;
pub mod logging;
pub mod wasi;

use crate::policy::Denial;
use std::sync::{Arc, Mutex};

/// The denials of one invocation, shared by its capabilities so the caller learns about a denied
/// effect even when the guest hides the error.
#[derive(Clone, Default, Debug)]
pub struct DenialLog(Arc<Mutex<Vec<Denial>>>);

impl DenialLog {
    pub fn record(&self, denial: Denial) -> Denial {
        // A denial is policy working, not a fault: info, and the caller gets it as a value.
        tracing::info!(rule = denial.rule, effect = %denial.effect, "{}", denial.reason);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(denial.clone());
        denial
    }

    pub fn take(&self) -> Vec<Denial> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Refuses a guest argument larger than the per-call limit, naming what was too big.
pub(crate) fn check_call_bytes(what: &str, len: usize, limit: usize) -> Result<(), String> {
    if len > limit {
        Err(format!(
            "{what} is {len} bytes, over the host-call limit of {limit} bytes"
        ))
    } else {
        Ok(())
    }
}
