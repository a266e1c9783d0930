//! The data of one invocation's Store: the invocation context and every capability's context.
//!
//! A new `HostState` is built for each invocation and dropped with its Store, so nothing a guest
//! leaves behind (handles, buffered output, memory) reaches the next one.

use crate::capability::DenialLog;
use crate::capability::config::{ConfigCtx, ConfigView};
use crate::capability::http::EgressHooks;
use crate::capability::keyvalue::{KeyValueCtx, KeyValueView};
use crate::capability::logging::{GuestLog, LoggingView};
use crate::capability::wasi::{StderrTail, no_authority_ctx};
use crate::invocation::Invocation;
use crate::limits::Limits;
use crate::secrets::Secrets;
use std::sync::Arc;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub struct HostState {
    pub(crate) invocation: Arc<Invocation>,
    pub(crate) limits: Limits,
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) egress: EgressHooks,
    pub(crate) keyvalue: KeyValueCtx,
    pub(crate) config: ConfigCtx,
    pub(crate) denials: DenialLog,
    /// What the host injected: scrubbed from responses, output, errors and logs.
    pub(crate) secrets: Arc<Secrets>,
    pub(crate) log: GuestLog,
    pub(crate) stderr: StderrTail,
    pub(crate) memory: MemoryLimiter,
}

impl HostState {
    pub fn new(
        invocation: Arc<Invocation>,
        limits: Limits,
        keyvalue: KeyValueCtx,
        config: ConfigCtx,
        egress: crate::egress::Egress,
    ) -> Self {
        let denials = DenialLog::default();
        let stderr = StderrTail::default();
        let secrets = Arc::new(Secrets::default());
        let log = GuestLog::new(invocation.clone(), secrets.clone());
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        HostState {
            wasi: no_authority_ctx(&log, &stderr),
            http: WasiHttpCtx::new(),
            egress: EgressHooks {
                invocation: invocation.clone(),
                denials: denials.clone(),
                secrets: secrets.clone(),
                egress,
                deadline: crate::time::from_now(limits.deadline),
                max_request_body_bytes: limits.max_request_body_bytes,
            },
            secrets,
            log,
            memory: MemoryLimiter::new(limits.max_memory_bytes),
            invocation,
            limits,
            table,
            keyvalue,
            config,
            denials,
            stderr,
        }
    }

    pub(crate) fn keyvalue(&mut self) -> KeyValueView<'_> {
        KeyValueView {
            ctx: &self.keyvalue,
            table: &mut self.table,
            invocation: &self.invocation,
            denials: &self.denials,
        }
    }

    pub(crate) fn config(&mut self) -> ConfigView<'_> {
        ConfigView { ctx: &self.config }
    }

    pub(crate) fn logging(&mut self) -> LoggingView<'_> {
        LoggingView {
            log: &self.log,
            max_call_bytes: self.limits.max_host_call_bytes,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.egress,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// Caps linear memory. A grow past the cap fails (the guest may recover, e.g. with `try_reserve`)
/// and is remembered, so that if the guest then traps the caller hears "memory limit", not
/// "unreachable".
pub struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) refused: Option<usize>,
}

/// Core tables (function references) are small in real guests; this bounds a hostile one, at
/// what the pooling allocator's table slots hold.
const MAX_TABLE_ELEMENTS: usize = crate::engine::TABLE_ELEMENTS;

impl MemoryLimiter {
    fn new(max_bytes: usize) -> Self {
        MemoryLimiter {
            max_bytes,
            refused: None,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
