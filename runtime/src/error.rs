//! Errors a caller of the executor can act on.

use crate::policy::Denial;
use std::time::Duration;

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a WebAssembly file: {0}")]
    NotWasm(String),
    #[error(
        "this is a core WebAssembly module, not a component; build the connector for `wasm32-wasip2` \
         (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error(
        "the component imports `{import}`, which Airlock does not provide; connectors may import \
         wasi:keyvalue, wasi:config/store, wasi:logging, wasi:http and the rest of WASI 0.2"
    )]
    UnsupportedImport { import: String },
    #[error("the component does not export `airlock:connector/connector@0.1.0`: {0}")]
    NotAConnector(String),
    #[error("the connector's manifest is unusable: {0}")]
    BadManifest(String),
}

/// Why an invocation did not produce a result. Guest-caused failures never take the host down.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The connector ran and returned one of its WIT error variants.
    #[error("{0}")]
    Connector(#[from] crate::manifest::ConnectorError),
    /// The host refused an effect and the connector failed because of it.
    #[error("{denial}")]
    Denied {
        denial: Denial,
        guest_error: Option<String>,
    },
    #[error("operation `{operation}` is not in the connector's manifest; it offers: {available}")]
    UnknownOperation {
        operation: String,
        available: String,
    },
    #[error("params must be a JSON object: {0}")]
    BadParams(String),
    #[error("guest exceeded its deadline of {} ms and was stopped after {} ms", .limit.as_millis(), .elapsed.as_millis())]
    Deadline { limit: Duration, elapsed: Duration },
    #[error("guest exceeded its memory limit of {:.1} MiB (it tried to grow to {:.1} MiB)", *.limit as f64 / 1048576.0, *.requested as f64 / 1048576.0)]
    MemoryLimit { limit: usize, requested: usize },
    #[error("guest exhausted its stack (limit {} KiB), e.g. by unbounded recursion", .limit >> 10)]
    StackOverflow { limit: usize },
    #[error("guest panicked: {message}")]
    Panic { message: String },
    #[error("guest trapped: {message}")]
    Trap { message: String },
    #[error("guest returned {size} bytes, over the output limit of {limit} bytes")]
    OutputTooLarge { size: usize, limit: usize },
    #[error("guest returned output that is not JSON: {0}")]
    InvalidOutput(String),
    #[error(
        "too many invocations in flight ({message}); retry shortly, or raise the executor's pool size"
    )]
    Busy { message: String },
    #[error("invalid invocation: {0}")]
    Invalid(String),
    #[error("host error: {0}")]
    Host(String),
    /// A bug in the host, caught at the invocation's boundary: this invocation failed, the
    /// process and every other invocation go on.
    #[error("internal error in the host, this invocation was stopped: {message}; please report it")]
    HostPanic { message: String },
}

impl InvokeError {
    /// Masks the invocation's injected secrets in every text this error carries (the guest's
    /// messages, the host's reasons): an upstream may have echoed one into them.
    pub fn scrub(&mut self, secrets: &crate::secrets::Secrets) {
        use crate::manifest::ConnectorError as C;
        let text: Vec<&mut String> = match self {
            InvokeError::Connector(
                C::InvalidParams { message }
                | C::NotFound { message }
                | C::Unauthorized { message }
                | C::Upstream { message, .. }
                | C::RateLimited { message, .. }
                | C::Internal { message },
            ) => vec![message],
            InvokeError::Denied {
                denial,
                guest_error,
            } => {
                let mut all = vec![&mut denial.effect, &mut denial.reason];
                all.extend(guest_error.as_mut());
                all
            }
            InvokeError::UnknownOperation { operation, .. } => vec![operation],
            InvokeError::BadParams(m)
            | InvokeError::InvalidOutput(m)
            | InvokeError::Invalid(m)
            | InvokeError::Host(m)
            | InvokeError::HostPanic { message: m }
            | InvokeError::Panic { message: m }
            | InvokeError::Trap { message: m }
            | InvokeError::Busy { message: m } => vec![m],
            InvokeError::Deadline { .. }
            | InvokeError::MemoryLimit { .. }
            | InvokeError::StackOverflow { .. }
            | InvokeError::OutputTooLarge { .. } => Vec::new(),
        };
        for t in text {
            secrets.scrub_in_place(t);
        }
    }

    /// The CLI exit code for this error, as in the seeds: 2 when policy denied, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            InvokeError::Denied { .. } => 2,
            _ => 1,
        }
    }
}
