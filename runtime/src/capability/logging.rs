//! `wasi:logging`: guest log lines become host `tracing` events tagged with the invocation.
//!
//! A line longer than the per-call limit is cut (and says so), so a guest cannot flood the host's
//! logs with one call.

use crate::bindings::wasi::logging::logging::{self, Level};
use crate::invocation::Invocation;
use wasmtime::component::{HasData, Linker};

pub struct LoggingView<'a> {
    pub invocation: &'a Invocation,
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
        let inv = self.invocation;
        let context = truncate(&context, 256);
        let message = truncate(&message, self.max_call_bytes);
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(
                    target: "airlock::guest",
                    invocation = %inv.id,
                    tenant = %inv.tenant,
                    connection = %inv.connection,
                    operation = %inv.operation,
                    context = %context,
                    "{message}"
                )
            };
        }
        match level {
            Level::Trace => emit!(trace),
            Level::Debug => emit!(debug),
            Level::Info => emit!(info),
            Level::Warn => emit!(warn),
            Level::Error | Level::Critical => emit!(error),
        }
        Ok(())
    }
}
