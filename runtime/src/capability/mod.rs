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

/// A guest past this many denied effects in one invocation is stopped: it is hammering the
/// policy, not doing work.
pub const MAX_DENIALS: usize = 1_000;
/// Denials kept (and logged) per invocation; the rest are counted.
pub const KEPT_DENIALS: usize = 16;
/// Bytes of a denial's effect or reason kept: names in them come from the guest.
pub const MAX_DENIAL_TEXT: usize = 512;

/// The denials of one invocation, shared by its capabilities so the caller learns about a denied
/// effect even when the guest hides the error. Bounded in count and bytes: the first
/// [`KEPT_DENIALS`] are kept and logged, the rest counted, and past [`MAX_DENIALS`] the
/// invocation is stopped (see [`DenialLog::exhausted`]).
#[derive(Clone, Default, Debug)]
pub struct DenialLog(Arc<Mutex<Denials>>);

#[derive(Default, Debug)]
struct Denials {
    kept: Vec<Denial>,
    count: usize,
}

/// Cuts a guest-influenced text to [`MAX_DENIAL_TEXT`] bytes.
fn bounded(text: &mut String) {
    if text.len() > MAX_DENIAL_TEXT {
        *text = logging::truncate(text, MAX_DENIAL_TEXT).into_owned();
    }
}

impl DenialLog {
    pub fn record(&self, mut denial: Denial) -> Denial {
        bounded(&mut denial.effect);
        bounded(&mut denial.reason);
        // A remedy names what the guest asked for (an origin): as bounded as the rest.
        if denial
            .remedy
            .as_ref()
            .is_some_and(|r| r.to_string().len() > MAX_DENIAL_TEXT)
        {
            denial.remedy = None;
        }
        let mut denials = self.0.lock().unwrap_or_else(|p| p.into_inner());
        denials.count += 1;
        if denials.kept.len() < KEPT_DENIALS {
            // A denial is policy working, not a fault: info, and the caller gets it as a value.
            tracing::info!(rule = denial.rule, effect = %denial.effect, "{}", denial.reason);
            denials.kept.push(denial.clone());
        }
        denial
    }

    /// The kept denials, and how many there were in all.
    pub fn take(&self) -> (Vec<Denial>, usize) {
        let mut denials = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = std::mem::take(&mut denials.count);
        (std::mem::take(&mut denials.kept), count)
    }

    /// Whether the guest has been denied more than [`MAX_DENIALS`] times: the executor then stops
    /// it at its next epoch check, and capabilities refuse outright.
    pub fn exhausted(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).count > MAX_DENIALS
    }
}

/// The error that stops a guest that keeps asking for denied effects.
#[derive(Debug, thiserror::Error)]
#[error("stopped after more than {MAX_DENIALS} denied effects")]
pub struct TooManyDenials;

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
