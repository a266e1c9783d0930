//! Shared by the integration tests: where the guest components are, and an executor to run them.

use airlock::capability::keyvalue::MemoryStore;
use airlock::engine::PoolSize;
use airlock::{Call, Caller, Connector, Environment, Executor, ExecutorOptions, InvokeError, Role};
use std::path::PathBuf;
use std::sync::Arc;

/// The workspace root (these tests belong to runtime/cli).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// The built component of the guest crate `name` (as named in its Cargo.toml). Every guest used
/// by a test goes through here, which `guests.rs` checks against the guests/ folder.
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("AIRLOCK_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/wasm32-wasip2/release"));
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "guest component {} is missing: run the tests with `cargo xtask test`, which builds the guests",
        path.display()
    );
    path
}

/// A small executor sharing one compile cache across test runs, so each guest compiles once.
pub fn executor() -> Executor {
    Executor::new(ExecutorOptions {
        pool: PoolSize {
            max_concurrent_instances: 64,
            max_memory_bytes: 256 << 20,
        },
        cache_dir: Some(root().join("target/airlock-test-cache")),
    })
    .expect("executor")
}

pub async fn load(executor: &Executor, name: &str) -> Connector {
    executor
        .load_file(&guest(name))
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

pub fn caller(tenant: &str, connection: &str) -> Caller {
    Caller {
        tenant: tenant.into(),
        principal: "tester".into(),
        role: Role::Operator,
        connection: connection.into(),
    }
}

/// An environment with its own in-memory storage.
pub fn env() -> Environment {
    Environment {
        keyvalue: Arc::new(MemoryStore::new()),
        ..Environment::default()
    }
}

/// Invokes `operation` and parses the JSON output.
pub async fn invoke(
    executor: &Executor,
    connector: &Connector,
    caller: &Caller,
    env: &Environment,
    operation: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, InvokeError> {
    let call = Call::Invoke {
        operation: operation.into(),
        params: airlock::Params::parse(params.to_string())?,
    };
    let outcome = executor.call(connector, caller, env, call).await?;
    Ok(serde_json::from_str(&outcome.output).expect("output is JSON"))
}

/// A control plane on a fresh state store in `dir`, with a random master key.
pub async fn control_plane(
    dir: &std::path::Path,
) -> (
    airlock::control::ControlPlane,
    Arc<airlock::control::state::SqliteState>,
) {
    use airlock::control::state::SqliteState;
    let state = Arc::new(SqliteState::open(&dir.join("airlock.db")).await.unwrap());
    let key = airlock::control::vault::generate_key();
    let cp = control_plane_on(&state, Arc::new(executor()), &key);
    (cp, state)
}

/// A control plane over `state` with master key `key`, its connector storage in the same store.
/// Two of them on one store stand for two processes (or a restart).
pub fn control_plane_on(
    state: &Arc<airlock::control::state::SqliteState>,
    executor: Arc<Executor>,
    key: &str,
) -> airlock::control::ControlPlane {
    airlock::control::ControlPlane::new(
        state.clone(),
        executor,
        airlock::control::vault::Vault::from_base64(key, "test").unwrap(),
        Arc::new(state.keyvalue()),
    )
}

pub fn principal(tenant: &str, role: Role) -> airlock::control::Principal {
    airlock::control::Principal {
        tenant: tenant.into(),
        id: format!("{role:?}").to_lowercase(),
        kind: airlock::control::PrincipalKind::User,
        role,
    }
}

/// Registers the built guest `name` in `tenant`, as its admin.
pub async fn register(cp: &airlock::control::ControlPlane, tenant: &str, name: &str) {
    cp.register(
        &principal(tenant, Role::Admin),
        &std::fs::read(guest(name)).unwrap(),
        &|_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("registering {name}: {e}"));
}
