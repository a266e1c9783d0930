//! Loads connector components and runs invocations, each in a fresh, bounded sandbox.
//!
//! One [`Executor`] per process: it owns the engine, the linker (every capability linked once)
//! and the compile cache. A loaded [`Connector`] holds an `InstancePre` (imports resolved and type
//! checked once), so an invocation costs a Store, an instantiation from the pool and the call.

use crate::bindings::{ConnectorWorld, ConnectorWorldPre};
use crate::cache::{CompileCache, LoadSource};
use crate::capability::config::ConfigCtx;
use crate::capability::keyvalue::{KeyValueCtx, KeyValueStore, MemoryStore};
use crate::engine::{PoolSize, new_engine, start_epoch_ticker};
use crate::error::{InvokeError, LoadError};
use crate::host::HostState;
use crate::invocation::{Access, Invocation, Role};
use crate::limits::{EPOCH_TICK, Limits, MAX_WASM_STACK_BYTES};
use crate::manifest::{ConnectorError, Manifest, ObjectInfo};
use crate::policy::Denial;
use crate::secrets::Secrets;
use crate::{bindings, capability};
use futures_util::FutureExt as _;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

/// How to build an [`Executor`].
#[derive(Debug, Clone, Default)]
pub struct ExecutorOptions {
    pub pool: PoolSize,
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
}

pub struct Executor {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<CompileCache>,
    pool: PoolSize,
}

/// A loaded, validated connector, ready to instantiate.
#[derive(Clone)]
pub struct Connector {
    pre: ConnectorWorldPre<HostState>,
    pub manifest: Arc<Manifest>,
    /// Hex sha256 of the component's bytes.
    pub digest: String,
    pub size: usize,
    /// The interfaces the component imports.
    pub imports: Vec<String>,
    pub load_source: LoadSource,
    /// Time to compile or load from the cache.
    pub load_time: Duration,
}

/// Who is calling, on whose behalf: the part of the invocation context the caller supplies. The
/// operation's declared access is taken from the manifest, never from the caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub principal: String,
    pub role: Role,
    pub connection: String,
}

/// What an invocation runs against: the connection's config, its storage and its limits.
#[derive(Clone)]
pub struct Environment {
    pub config: ConfigCtx,
    pub keyvalue: Arc<dyn KeyValueStore>,
    pub limits: Limits,
    /// Where the connection may send HTTP requests, and its pooled client. None by default.
    pub egress: crate::egress::Egress,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            config: ConfigCtx::default(),
            keyvalue: Arc::new(MemoryStore::new()),
            limits: Limits::default(),
            egress: crate::egress::Egress::default(),
        }
    }
}

/// Which export to call.
#[derive(Debug, Clone)]
pub enum Call {
    Health,
    Discover,
    /// The params were parsed (and found to be an object) where they entered.
    Invoke {
        operation: String,
        params: crate::params::Params,
    },
}

impl Call {
    fn name(&self) -> &str {
        match self {
            Call::Health => "health",
            Call::Discover => "discover",
            Call::Invoke { operation, .. } => operation,
        }
    }
}

/// A successful invocation.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// JSON text: the operation's result, the health message as a JSON string, or the discovered
    /// objects as a JSON array.
    pub output: String,
    /// Effects the host refused even though the guest went on to succeed.
    pub denials: Vec<Denial>,
    pub invocation_id: String,
    pub duration: Duration,
    /// Set by the control plane: the result's classification (the operation's, raised by the
    /// connection's policy).
    pub classification: Option<crate::manifest::Classification>,
    /// Set by the control plane: how many values its masking changed.
    pub masked: usize,
    /// Set by the control plane: served from the response cache.
    pub cached: bool,
}

/// Raised by the epoch callback when the wall-clock deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineReached;

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

impl Executor {
    pub fn new(options: ExecutorOptions) -> anyhow::Result<Self> {
        let engine = new_engine(options.pool)?;
        start_epoch_ticker(&engine);
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        capability::keyvalue::add_to_linker(&mut linker, HostState::keyvalue)?;
        capability::config::add_to_linker(&mut linker, HostState::config)?;
        capability::logging::add_to_linker(&mut linker, HostState::logging)?;
        let cache = match options.cache_dir {
            Some(dir) => Some(CompileCache::new(&dir, &engine).map_err(|e| {
                anyhow::anyhow!("cannot use compile cache directory {}: {e}", dir.display())
            })?),
            None => None,
        };
        Ok(Executor {
            engine,
            linker,
            cache,
            pool: options.pool,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The largest memory limit this executor can honour: its pool's slot size. A connection
    /// asking for more is refused (see `Limits::check`), not silently capped.
    pub fn memory_ceiling(&self) -> usize {
        self.pool.max_memory_bytes
    }

    /// Reads and loads a component file.
    pub async fn load_file(&self, path: &Path) -> Result<Connector, LoadError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Read {
                path: path.display().to_string(),
                source,
            })?;
        self.load(&bytes).await
    }

    /// Validates and loads a component: compiles it (or loads it from the cache), resolves its
    /// imports against Airlock's capabilities and reads its manifest.
    pub async fn load(&self, bytes: &[u8]) -> Result<Connector, LoadError> {
        check_header(bytes)?;
        let digest = hex::encode(Sha256::digest(bytes));
        let started = Instant::now();
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, &digest));
        let (component, load_source) = match cached {
            Some(component) => (component, LoadSource::Cache),
            None => {
                let engine = self.engine.clone();
                let owned = bytes.to_vec();
                let component =
                    tokio::task::spawn_blocking(move || Component::new(&engine, &owned))
                        .await
                        .map_err(|e| LoadError::Invalid(format!("compilation task failed: {e}")))?
                        .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
                if let Some(cache) = &self.cache {
                    cache.store(&digest, &component);
                }
                (component, LoadSource::Compiled)
            }
        };
        let load_time = started.elapsed();
        tracing::debug!(%digest, source = ?load_source, ms = load_time.as_millis() as u64, "component loaded");

        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| unsupported_import(&e, &imports))?;
        let pre =
            ConnectorWorldPre::new(pre).map_err(|e| LoadError::NotAConnector(format!("{e:#}")))?;

        let manifest = Arc::new(self.read_manifest(&pre).await?);
        Ok(Connector {
            pre,
            manifest,
            digest,
            size: bytes.len(),
            imports,
            load_source,
            load_time,
        })
    }

    /// Calls the guest's `manifest` export in a sandbox of its own, with no config and empty
    /// storage, under the default limits.
    async fn read_manifest(
        &self,
        pre: &ConnectorWorldPre<HostState>,
    ) -> Result<Manifest, LoadError> {
        let invocation = Invocation::new(
            "airlock",
            "airlock",
            Role::Admin,
            "manifest",
            "manifest",
            Access::Read,
        )
        .map_err(LoadError::BadManifest)?;
        let env = Environment::default();
        let raw = self
            .sandboxed(pre, invocation, &env, |guest, store| {
                Box::pin(async move {
                    Ok(Ok(guest
                        .airlock_connector_connector()
                        .call_manifest(store)
                        .await?))
                })
            })
            .await
            .0
            .map_err(|e| LoadError::BadManifest(format!("calling `manifest` failed: {e}")))?;
        let (value, _denials) = raw;
        let value =
            value.map_err(|e| LoadError::BadManifest(ConnectorError::from(e).to_string()))?;
        Manifest::from_wit(value).map_err(LoadError::BadManifest)
    }

    /// Runs one call in a fresh sandbox.
    pub async fn call(
        &self,
        connector: &Connector,
        caller: &Caller,
        env: &Environment,
        call: Call,
    ) -> Result<Outcome, InvokeError> {
        self.call_with_id(connector, caller, env, call, None).await
    }

    /// [`Executor::call`] under an invocation id chosen by the caller (the control plane
    /// records it before the guest runs), or a fresh one.
    pub async fn call_with_id(
        &self,
        connector: &Connector,
        caller: &Caller,
        env: &Environment,
        call: Call,
        invocation_id: Option<String>,
    ) -> Result<Outcome, InvokeError> {
        let started = Instant::now();
        let access = match &call {
            Call::Invoke { operation, .. } => {
                let op = connector.manifest.operation(operation).ok_or_else(|| {
                    InvokeError::UnknownOperation {
                        operation: operation.clone(),
                        available: connector
                            .manifest
                            .operations
                            .iter()
                            .map(|o| o.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?;
                op.access
            }
            // Connection tests and discovery only look.
            Call::Health | Call::Discover => Access::Read,
        };
        let invocation = Invocation::with_id(
            invocation_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            &caller.tenant,
            &caller.principal,
            caller.role,
            &caller.connection,
            call.name(),
            access,
        )
        .map_err(InvokeError::Invalid)?;
        let invocation_id = invocation.id.clone();
        let limits = env.limits.clone();

        let (ran, secrets) = match call {
            Call::Health => {
                let (ran, secrets) = self
                    .sandboxed(&connector.pre, invocation, env, |guest, store| {
                        Box::pin(async move {
                            guest.airlock_connector_connector().call_health(store).await
                        })
                    })
                    .await;
                let ran =
                    ran.map(|(r, d)| (r.map(|msg| serde_json::Value::String(msg).to_string()), d));
                (ran, secrets)
            }
            Call::Discover => {
                let (ran, secrets) = self
                    .sandboxed(&connector.pre, invocation, env, |guest, store| {
                        Box::pin(async move {
                            guest
                                .airlock_connector_connector()
                                .call_discover(store)
                                .await
                        })
                    })
                    .await;
                let ran = ran.map(|(r, d)| {
                    let r = r.map(|objects| {
                        let objects: Vec<ObjectInfo> =
                            objects.into_iter().map(ObjectInfo::from).collect();
                        serde_json::to_string(&objects).expect("object infos serialize")
                    });
                    (r, d)
                });
                (ran, secrets)
            }
            Call::Invoke { operation, params } => {
                self.sandboxed(&connector.pre, invocation, env, move |guest, store| {
                    Box::pin(async move {
                        guest
                            .airlock_connector_connector()
                            .call_invoke(store, &operation, params.text())
                            .await
                    })
                })
                .await
            }
        };
        let result = ran.and_then(|(result, denials)| match result {
            Ok(output) => {
                if output.len() > limits.max_output_bytes {
                    return Err(InvokeError::OutputTooLarge {
                        size: output.len(),
                        limit: limits.max_output_bytes,
                    });
                }
                serde_json::from_str::<serde::de::IgnoredAny>(&output)
                    .map_err(|e| InvokeError::InvalidOutput(e.to_string()))?;
                Ok(Outcome {
                    output,
                    denials,
                    invocation_id,
                    duration: started.elapsed(),
                    classification: None,
                    masked: 0,
                    cached: false,
                })
            }
            Err(error) => {
                let error = ConnectorError::from(error);
                match denials.into_iter().next() {
                    Some(denial) => Err(InvokeError::Denied {
                        denial,
                        guest_error: Some(error.to_string()),
                    }),
                    None => Err(InvokeError::Connector(error)),
                }
            }
        });
        // Nothing leaves with a secret the host injected: not the output, not an error.
        match result {
            Ok(mut outcome) => {
                secrets.scrub_in_place(&mut outcome.output);
                for denial in &mut outcome.denials {
                    scrub_denial(&secrets, denial);
                }
                Ok(outcome)
            }
            Err(mut error) => {
                error.scrub(&secrets);
                Err(error)
            }
        }
    }

    /// Instantiates `connector` in a fresh Store for `invocation` and runs `f`, mapping traps and
    /// limits to [`InvokeError`]s. Returns `f`'s result and the denials recorded meanwhile.
    async fn sandboxed<R: Send>(
        &self,
        pre: &ConnectorWorldPre<HostState>,
        invocation: Invocation,
        env: &Environment,
        f: impl for<'a> FnOnce(
            &'a ConnectorWorld,
            &'a mut Store<HostState>,
        ) -> std::pin::Pin<
            Box<
                dyn Future<Output = wasmtime::Result<Result<R, bindings::types::ConnectorError>>>
                    + Send
                    + 'a,
            >,
        >,
    ) -> (
        Result<(Result<R, bindings::types::ConnectorError>, Vec<Denial>), InvokeError>,
        Arc<Secrets>,
    ) {
        let limits = env.limits.clone();
        let started = Instant::now();
        let mut store = self.new_store(
            invocation,
            env,
            crate::time::after(started, limits.deadline),
        );

        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            f(&instance, &mut store).await
        };
        // A panic anywhere under this invocation (a host function, a task it joined, a backend)
        // ends this invocation, never the process: the Store is dropped with everything in it.
        let run = std::panic::AssertUnwindSafe(run).catch_unwind();
        // The epoch callback stops guest code; this stops a guest parked in a slow host call.
        let outcome =
            tokio::time::timeout(limits.deadline.saturating_add(2 * EPOCH_TICK), run).await;
        let (denials, denied) = store.data().denials.take();
        let secrets = store.data().secrets.clone();
        let ran = match outcome {
            Err(_elapsed) => Err(InvokeError::Deadline {
                limit: limits.deadline,
                elapsed: started.elapsed(),
            }),
            Ok(Err(panic)) => {
                let message = panic_payload(panic.as_ref());
                tracing::error!(invocation = %store.data().invocation.id, "host panicked during an invocation: {message}");
                Err(InvokeError::HostPanic { message })
            }
            Ok(Ok(Ok(result))) => Ok((result, denials)),
            Ok(Ok(Err(error))) => Err(classify_trap(
                &error,
                store.data(),
                &limits,
                started.elapsed(),
                denials,
                denied,
            )),
        };
        (ran, secrets)
    }
}

impl Executor {
    /// A fresh Store for one invocation, with its limits and deadline armed.
    fn new_store(
        &self,
        invocation: Invocation,
        env: &Environment,
        deadline: Instant,
    ) -> Store<HostState> {
        let limits = env.limits.clone();
        let keyvalue = KeyValueCtx {
            store: env.keyvalue.clone(),
            max_call_bytes: limits.max_host_call_bytes,
        };
        let state = HostState::new(
            Arc::new(invocation),
            limits,
            keyvalue,
            env.config.clone(),
            env.egress.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            if Instant::now() >= deadline {
                Err(DeadlineReached.into())
            } else if ctx.data().denials.exhausted() {
                // A guest hammering denied effects is stopped, whatever it was asking for.
                Err(capability::TooManyDenials.into())
            } else {
                // Yield to the async runtime once per tick so a busy guest cannot starve others
                // sharing its thread.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Runs `call` `iterations` times on the same path as [`Executor::call`] and returns the
    /// median time of each phase: building the Store (with its WASI context), instantiating,
    /// calling the export, and dropping the Store. For the benchmark; the phases add up to one
    /// invocation less the host-side checks around it.
    pub async fn profile_phases(
        &self,
        connector: &Connector,
        caller: &Caller,
        env: &Environment,
        call: Call,
        iterations: usize,
    ) -> anyhow::Result<Vec<(&'static str, Duration)>> {
        let Call::Invoke { operation, params } = call else {
            anyhow::bail!("profile_phases measures `invoke` calls");
        };
        let access = connector
            .manifest
            .operation(&operation)
            .map(|o| o.access)
            .unwrap_or(Access::Read);
        let mut phases: [Vec<Duration>; 4] = Default::default();
        for _ in 0..iterations {
            let invocation = Invocation::new(
                &caller.tenant,
                &caller.principal,
                caller.role,
                &caller.connection,
                &operation,
                access,
            )
            .map_err(anyhow::Error::msg)?;
            let t0 = Instant::now();
            let mut store =
                self.new_store(invocation, env, crate::time::after(t0, env.limits.deadline));
            let t1 = Instant::now();
            let instance = connector.pre.instantiate_async(&mut store).await?;
            let t2 = Instant::now();
            let result = instance
                .airlock_connector_connector()
                .call_invoke(&mut store, &operation, params.text())
                .await?;
            std::hint::black_box(result.ok());
            let t3 = Instant::now();
            drop(store);
            let t4 = Instant::now();
            for (samples, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
                samples.push(d);
            }
        }
        let median = |samples: &mut Vec<Duration>| {
            samples.sort();
            samples[samples.len() / 2]
        };
        let [a, b, c, d] = &mut phases;
        Ok(vec![
            ("Store + WASI context", median(a)),
            ("instantiate (pooled)", median(b)),
            ("call `invoke`", median(c)),
            ("drop Store", median(d)),
        ])
    }
}

/// Refuses anything that is not a component before the compiler sees it.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(LoadError::NotWasm(format!(
            "{} bytes that do not start with the `\\0asm` magic; pass a .wasm component",
            bytes.len()
        )));
    }
    let version: [u8; 4] = bytes[4..8].try_into().expect("slice of 4");
    if version == CORE_MODULE_VERSION {
        return Err(LoadError::CoreModule);
    }
    if version != COMPONENT_VERSION {
        return Err(LoadError::NotWasm(format!(
            "unknown WebAssembly version/layer {version:02x?}; Airlock loads components (version 0x0d, layer 1)"
        )));
    }
    Ok(())
}

/// Names the import that the linker could not satisfy.
fn unsupported_import(error: &wasmtime::Error, imports: &[String]) -> LoadError {
    let text = format!("{error:#}");
    // wasmtime names the missing import between backticks; prefer a full import name.
    let named = imports
        .iter()
        .find(|name| text.contains(name.as_str()))
        .cloned()
        .or_else(|| {
            let start = text.find('`')? + 1;
            let len = text[start..].find('`')?;
            Some(text[start..start + len].to_owned())
        });
    match named {
        Some(import) => LoadError::UnsupportedImport { import },
        None => LoadError::Invalid(text),
    }
}

/// Turns a trap into the error that explains it, most specific cause first.
fn classify_trap(
    error: &wasmtime::Error,
    state: &HostState,
    limits: &Limits,
    elapsed: Duration,
    denials: Vec<Denial>,
    denied: usize,
) -> InvokeError {
    if error.downcast_ref::<capability::TooManyDenials>().is_some() {
        let first = denials
            .first()
            .map(|d| format!("; the first: {d}"))
            .unwrap_or_default();
        return InvokeError::Denied {
            denial: Denial {
                rule: crate::policy::RULE_TOO_MANY_DENIALS,
                effect: "the invocation".into(),
                reason: format!(
                    "the guest was denied {denied} effects, over the limit of {}, and was stopped{first}",
                    capability::MAX_DENIALS
                ),
                remedy: None,
            },
            guest_error: None,
        };
    }
    if error.downcast_ref::<DeadlineReached>().is_some() {
        return InvokeError::Deadline {
            limit: limits.deadline,
            elapsed,
        };
    }
    if let Some(requested) = state.memory.refused {
        return InvokeError::MemoryLimit {
            limit: limits.max_memory_bytes,
            requested,
        };
    }
    if let Some(Trap::StackOverflow) = error.downcast_ref::<Trap>() {
        return InvokeError::StackOverflow {
            limit: MAX_WASM_STACK_BYTES,
        };
    }
    if let Some(message) = panic_message(&state.stderr.text()) {
        return InvokeError::Panic { message };
    }
    if let Some(denial) = denials.into_iter().next() {
        return InvokeError::Denied {
            denial,
            guest_error: Some(format!("{error:#}")),
        };
    }
    if let Some(full) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return InvokeError::Busy {
            message: full.to_string(),
        };
    }
    let text = format!("{error:#}");
    InvokeError::Trap { message: text }
}

/// Masks injected secrets in a denial's texts.
fn scrub_denial(secrets: &Secrets, denial: &mut Denial) {
    secrets.scrub_in_place(&mut denial.effect);
    secrets.scrub_in_place(&mut denial.reason);
}

/// The text of a caught panic.
pub(crate) fn panic_payload(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Extracts "message (at file:line:col)" from a Rust panic report on stderr.
pub(crate) fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.rfind("panicked at ")? + "panicked at ".len();
    let rest = &stderr[start..];
    let (location, message) = rest.split_once(":\n")?;
    let message = message.split("\nnote: ").next().unwrap_or(message).trim();
    Some(format!("{message} (at {location})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executor_extracts_panic_messages() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom: bad thing\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(stderr).unwrap(),
            "boom: bad thing (at src/lib.rs:12:9)"
        );
        assert_eq!(panic_message("nothing here"), None);
    }

    #[test]
    fn executor_refuses_non_components_by_header() {
        assert!(matches!(
            check_header(b"garbage!"),
            Err(LoadError::NotWasm(_))
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(matches!(check_header(b"\0asm\x0d\0\x01\0"), Ok(())));
        assert!(matches!(check_header(b"\0as"), Err(LoadError::NotWasm(_))));
    }
}
