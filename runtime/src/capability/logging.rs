//! `wasi:logging`: guest log lines become host `tracing` events tagged with the invocation.
//!
//! Every line a guest logs, through `wasi:logging` or on stdout and stderr, goes through one
//! [`GuestLog`], which tags it, masks the secrets the host injected (an upstream may have echoed
//! one into a response the guest then logs) and keeps each invocation within a budget: a line
//! longer than the per-call limit is cut (and says so), and past [`MAX_LOG_LINES`] lines or
//! [`MAX_LOG_BYTES`] bytes lines are counted, not logged, so a guest cannot flood the host's logs.

use crate::bindings::wasi::logging::logging::{self, Level};
use crate::invocation::Invocation;
use crate::secrets::Secrets;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::component::{HasData, Linker};

/// Lines one invocation may log.
pub const MAX_LOG_LINES: usize = 1_000;
/// Bytes one invocation may log.
pub const MAX_LOG_BYTES: usize = 1 << 20;

/// The log of one invocation's guest, shared by `wasi:logging` and stdout/stderr.
#[derive(Clone)]
pub struct GuestLog(Arc<Inner>);

struct Inner {
    invocation: Arc<Invocation>,
    secrets: Arc<Secrets>,
    lines: AtomicUsize,
    bytes: AtomicUsize,
    dropped: AtomicUsize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let dropped = *self.dropped.get_mut();
        if dropped > 0 {
            tracing::warn!(
                target: "airlock::guest",
                invocation = %self.invocation.id,
                tenant = %self.invocation.tenant,
                connection = %self.invocation.connection,
                "{dropped} more guest log line(s) not logged: an invocation may log {MAX_LOG_LINES} lines or {MAX_LOG_BYTES} bytes"
            );
        }
    }
}

impl GuestLog {
    pub fn new(invocation: Arc<Invocation>, secrets: Arc<Secrets>) -> Self {
        GuestLog(Arc::new(Inner {
            invocation,
            secrets,
            lines: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
        }))
    }

    /// Logs one line, if the budget allows.
    pub fn line(&self, level: Level, source: Source<'_>, message: &str) {
        let inner = &self.0;
        let lines = inner.lines.fetch_add(1, Ordering::Relaxed);
        let bytes = inner.bytes.fetch_add(message.len(), Ordering::Relaxed);
        if lines >= MAX_LOG_LINES || bytes.saturating_add(message.len()) > MAX_LOG_BYTES {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let message = inner.secrets.scrub(message);
        let inv = &inner.invocation;
        macro_rules! emit {
            ($lvl:ident, $field:ident, $value:expr) => {
                tracing::$lvl!(
                    target: "airlock::guest",
                    invocation = %inv.id,
                    tenant = %inv.tenant,
                    connection = %inv.connection,
                    operation = %inv.operation,
                    $field = %$value,
                    "{message}"
                )
            };
        }
        macro_rules! at_level {
            ($field:ident, $value:expr) => {
                match level {
                    Level::Trace => emit!(trace, $field, $value),
                    Level::Debug => emit!(debug, $field, $value),
                    Level::Info => emit!(info, $field, $value),
                    Level::Warn => emit!(warn, $field, $value),
                    Level::Error | Level::Critical => emit!(error, $field, $value),
                }
            };
        }
        match source {
            Source::Context(context) => at_level!(context, truncate(context, 256)),
            Source::Stream(stream) => at_level!(stream, format_args!("{stream:?}")),
        }
    }
}

/// Where a guest's line came from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// `wasi:logging`, with the guest's context.
    Context(&'a str),
    /// `stdout` or `stderr`.
    Stream(&'static str),
}

pub struct LoggingView<'a> {
    pub log: &'a GuestLog,
    pub max_call_bytes: usize,
}

pub struct Logging;

impl HasData for Logging {
    type Data<'a> = LoggingView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> LoggingView<'_>,
) -> wasmtime::Result<()> {
    logging::add_to_linker::<T, Logging>(linker, get)
}

/// Cuts `text` to at most `limit` bytes on a character boundary.
pub(crate) fn truncate(text: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= limit {
        return text.into();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} bytes cut]", &text[..end], text.len() - end).into()
}

impl logging::Host for LoggingView<'_> {
    async fn log(
        &mut self,
        level: Level,
        context: String,
        message: String,
    ) -> wasmtime::Result<()> {
        self.log.line(
            level,
            Source::Context(&context),
            &truncate(&message, self.max_call_bytes),
        );
        Ok(())
    }
}
