//! Airlock: a WebAssembly-sandboxed connector runtime.
//!
//! # Layout
//!
//! - [`executor`]: loads connector components and runs each invocation in a fresh, bounded Store.
//!   Start here.
//! - [`engine`]: the wasmtime engine configured for untrusted code, and the epoch ticker.
//! - [`limits`]: the bounds of every invocation (deadline, memory, stack, host-call bytes, handles,
//!   output) and their defaults.
//! - [`invocation`]: the context (tenant, principal, role, connection, operation, access) the host
//!   fixes before a guest runs.
//! - [`policy`]: the one function that decides every effect a guest asks for.
//! - [`capability`]: what a guest can import, one module per WASI interface, all of the same shape.
//! - [`egress`]: what the `wasi:http` capability uses: the grant grammar, address classification,
//!   the per-connection pooled client, credentials (static, OAuth2, HMAC), retries and breakers.
//! - [`secrets`]: the secrets injected into an invocation, scrubbed from all that leaves it;
//!   [`redact`]: what merely looks like a secret, redacted from records and previews.
//! - [`host`]: the Store's data, tying the capabilities to one invocation.
//! - [`cache`]: compiled components on disk, keyed by digest and engine configuration.
//! - [`manifest`], [`error`], [`params`]: the host's types for what connectors declare, how calls
//!   fail, and an invocation's params (parsed once where they enter).
//! - [`remedy`]: what would allow or repair a failure, as data each front end words its own way.
//! - [`settings`]: the host's settings as a value, read once at the root.
//! - [`control`]: the control plane above the executor: the state store, the connector registry,
//!   tenants' connections, RBAC (one rules table), encryption at rest (and rotating its key) and
//!   the audit log.
//! - [`time`]: deadlines from outside values (an upstream's `Retry-After`, an operator's
//!   timeout), saturating instead of panicking.
//!
//! The `airlock` command is a crate of its own (`runtime/cli`, package `airlock`): this library
//! links nothing a terminal needs (no clap, tables or progress bars).

mod bindings;
pub mod cache;
pub mod capability;
pub mod capture;
pub mod control;
pub mod egress;
pub mod engine;
pub mod error;
pub mod executor;
pub mod host;
pub mod invocation;
pub mod limits;
pub mod manifest;
pub mod params;
pub mod policy;
pub mod redact;
pub mod remedy;
pub mod secrets;
pub mod settings;
pub mod time;

pub use error::{InvokeError, LoadError};
pub use executor::{Call, Caller, Connector, Environment, Executor, ExecutorOptions, Outcome};
pub use invocation::{Access, Role};
pub use limits::Limits;
pub use params::Params;
