//! The rest of WASI 0.2, linked with no authority.
//!
//! Components built by ordinary toolchains import clocks, random, environment, stdio and often
//! filesystem; leaving them out would refuse such components at load. So they are linked, but the
//! context grants nothing: no preopened directories, no environment variables, no arguments, no
//! sockets and no name lookups, and stdin is closed. Stdout and stderr become log lines tagged
//! with the invocation; the tail of stderr is kept so a guest's panic message can reach the caller.

use super::logging::{GuestLog, Source};
use crate::bindings::wasi::logging::logging::Level;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Bytes of stderr kept per invocation for error reports.
pub const STDERR_TAIL_BYTES: usize = 8 << 10;
/// A line longer than this is logged in pieces.
const MAX_LOG_LINE_BYTES: usize = 4 << 10;

/// Builds the WASI context of one invocation.
pub fn no_authority_ctx(log: &GuestLog, stderr_tail: &StderrTail) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(GuestOutput::new(log.clone(), "stdout", None))
        .stderr(GuestOutput::new(
            log.clone(),
            "stderr",
            Some(stderr_tail.clone()),
        ))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder.build()
}

/// The last [`STDERR_TAIL_BYTES`] a guest wrote to stderr.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend_from_slice(bytes);
        if tail.len() > STDERR_TAIL_BYTES {
            let cut = tail.len() - STDERR_TAIL_BYTES;
            tail.drain(..cut);
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// A guest's stdout or stderr: complete lines go to `tracing` with the invocation's tags.
#[derive(Clone)]
struct GuestOutput {
    log: GuestLog,
    stream: &'static str,
    tail: Option<StderrTail>,
}

impl GuestOutput {
    fn new(log: GuestLog, stream: &'static str, tail: Option<StderrTail>) -> Self {
        GuestOutput { log, stream, tail }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineLogger {
            out: self.clone(),
            pending: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 guests use this; Airlock links WASIp2.
        Box::new(tokio::io::sink())
    }
}

struct LineLogger {
    out: GuestOutput,
    pending: Vec<u8>,
}

impl LineLogger {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        self.out.log.line(
            Level::Info,
            Source::Stream(self.out.stream),
            text.trim_end(),
        );
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.emit(&pending);
        }
    }
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if let Some(tail) = &self.out.tail {
            tail.push(&bytes);
        }
        self.pending.extend_from_slice(&bytes);
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            self.emit(&line);
        }
        if self.pending.len() > MAX_LOG_LINE_BYTES {
            let pending = std::mem::take(&mut self.pending);
            self.emit(&pending);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_LOG_LINE_BYTES)
    }
}

#[async_trait::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}
