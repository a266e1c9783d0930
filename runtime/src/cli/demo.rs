//! `airlock demo`: the sandbox connector on the embedded store doing a create, a list and a get,
//! then misbehaving guests being stopped while the host keeps serving.

use crate::capability::config::ConfigCtx;
use crate::capability::keyvalue::SqliteStore;
use crate::error::InvokeError;
use crate::executor::{Call, Caller, Connector, Environment, Executor, ExecutorOptions};
use crate::invocation::Role;
use crate::limits::Limits;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn step(title: &str) {
    println!("\n== {title}");
}

fn guest_path(dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    if !path.exists() {
        anyhow::bail!(
            "guest {} not found; build the guests first (`cargo xtask demo` does) or pass --guests",
            path.display()
        );
    }
    Ok(path)
}

async fn load(executor: &Executor, dir: &Path, name: &str) -> anyhow::Result<Connector> {
    let connector = executor.load_file(&guest_path(dir, name)?).await?;
    println!(
        "loaded {name}: {} bytes, sha256:{}..., {:?} in {:.1} ms",
        connector.size,
        &connector.digest[..12],
        connector.load_source,
        connector.load_time.as_secs_f64() * 1000.0
    );
    Ok(connector)
}

async fn show(
    executor: &Executor,
    connector: &Connector,
    caller: &Caller,
    env: &Environment,
    operation: &str,
    params: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    println!(
        "$ airlock run {} {operation} --params '{params}' --tenant {}",
        connector.manifest.id, caller.tenant
    );
    let call = Call::Invoke {
        operation: operation.into(),
        params: params.to_string(),
    };
    let outcome = executor.call(connector, caller, env, call).await?;
    let value: serde_json::Value = serde_json::from_str(&outcome.output)?;
    println!(
        "{}  ({:.2} ms)",
        serde_json::to_string(&value)?,
        outcome.duration.as_secs_f64() * 1000.0
    );
    Ok(value)
}

pub async fn run(data_dir: &Path, guests: &Path) -> anyhow::Result<u8> {
    std::fs::create_dir_all(data_dir)?;
    println!("Airlock demo (data directory {})", data_dir.display());
    let executor = Executor::new(ExecutorOptions {
        cache_dir: Some(data_dir.join("cache")),
        ..Default::default()
    })?;
    let store = Arc::new(SqliteStore::open(&data_dir.join("airlock.db")).await?);

    step("Load the sandbox connector (compiled once, then from the cache)");
    let sandbox = load(&executor, guests, "sandbox").await?;
    for op in &sandbox.manifest.operations {
        println!("  operation {:<7} access={}", op.name, op.access);
    }

    let env = Environment {
        config: ConfigCtx::from_json(&serde_json::json!({"latency_ms": 0}))
            .map_err(anyhow::Error::msg)?,
        keyvalue: store.clone(),
        limits: Limits::default(),
    };
    let acme = Caller {
        tenant: "acme".into(),
        principal: "alice".into(),
        role: Role::Operator,
        connection: "sandbox-demo".into(),
    };

    step("Create, list and get a record on the embedded store (tenant acme)");
    let created = show(
        &executor,
        &sandbox,
        &acme,
        &env,
        "create",
        serde_json::json!({"type": "items", "data": {"name": "widget", "qty": 3}}),
    )
    .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    show(
        &executor,
        &sandbox,
        &acme,
        &env,
        "list",
        serde_json::json!({"type": "items", "filter": {"name": "widget"}}),
    )
    .await?;
    show(
        &executor,
        &sandbox,
        &acme,
        &env,
        "get",
        serde_json::json!({"type": "items", "id": id}),
    )
    .await?;

    step("Another tenant sees none of it");
    let globex = Caller {
        tenant: "globex".into(),
        ..acme.clone()
    };
    let listed = show(
        &executor,
        &sandbox,
        &globex,
        &env,
        "get",
        serde_json::json!({"type": "items", "id": id}),
    )
    .await;
    match listed {
        Err(e) => println!("globex: {e}"),
        Ok(_) => anyhow::bail!("isolation failure: globex read acme's record"),
    }

    step("A runaway guest is stopped at its deadline");
    let spin = load(&executor, guests, "spin-loop").await?;
    let strict = Environment {
        limits: Limits {
            deadline: Duration::from_millis(250),
            ..Limits::default()
        },
        ..env.clone()
    };
    let started = Instant::now();
    let result = executor
        .call(
            &spin,
            &acme,
            &strict,
            Call::Invoke {
                operation: "spin".into(),
                params: "{}".into(),
            },
        )
        .await;
    match result {
        Err(e @ InvokeError::Deadline { .. }) => {
            println!(
                "stopped after {:.0} ms: {e}",
                started.elapsed().as_secs_f64() * 1000.0
            )
        }
        other => anyhow::bail!("the runaway guest was not stopped by its deadline: {other:?}"),
    }

    step("A memory hog is stopped at its memory limit");
    let hog = load(&executor, guests, "memory-hog").await?;
    let small = Environment {
        limits: Limits {
            max_memory_bytes: 32 << 20,
            ..Limits::default()
        },
        ..env.clone()
    };
    match executor
        .call(
            &hog,
            &acme,
            &small,
            Call::Invoke {
                operation: "hog".into(),
                params: "{}".into(),
            },
        )
        .await
    {
        Err(e @ InvokeError::MemoryLimit { .. }) => println!("stopped: {e}"),
        other => anyhow::bail!("the memory hog was not stopped at its limit: {other:?}"),
    }

    step("The host keeps serving");
    show(
        &executor,
        &sandbox,
        &acme,
        &env,
        "get",
        serde_json::json!({"type": "items", "id": id}),
    )
    .await?;
    println!("\nDemo complete.");
    Ok(super::EXIT_OK)
}
