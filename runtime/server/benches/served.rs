//! The served invocation against a bare handler, in one run (issue 11): `POST
//! /v1/connections/c1/operations/get` on `airlock serve`'s router (token check, the control
//! plane's whole invocation path, the sandbox `get`, the audit record) against a bare axum
//! handler answering the same JSON, both on 127.0.0.1, driven by the same keep-alive HTTP/1.1
//! clients at 1 and at 32 connections. Prints p50/p99 latency and requests per second, and the
//! same call in process: one at a time (p50) and from 32 tasks at once (invocations per second).
//!
//! `cargo xtask bench` runs it after the invocation benchmark (or `cargo bench -p airlock-server
//! --bench served` once the guests are built). `--quick` is a smoke run. Client, servers and
//! guests share this machine's cores, so compare the two rows of one run, not across machines.

use airlock::control::access::TokenSpec;
use airlock::control::state::SqliteState;
use airlock::control::vault::{Vault, generate_key};
use airlock::control::{ConnectionSpec, ControlPlane, Principal, PrincipalKind};
use airlock::engine::PoolSize;
use airlock::invocation::Role;
use airlock::{Executor, ExecutorOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("AIRLOCK_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm32-wasip2/release")
        });
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} missing: run `cargo xtask bench`",
        path.display()
    );
    path
}

struct Load {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

/// `connections` clients, each with its own keep-alive connection, sending `body` to `url` for
/// `run` (after a short warm-up), each waiting for its answer before the next request.
async fn load(
    url: &str,
    token: Option<&str>,
    body: &str,
    connections: usize,
    run: Duration,
) -> Load {
    let mut tasks = Vec::new();
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + run;
    for _ in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let (url, body, token) = (url.to_owned(), body.to_owned(), token.map(str::to_owned));
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let mut request = client.post(&url).body(body.clone());
                if let Some(t) = &token {
                    request = request.header("authorization", format!("Bearer {t}"));
                }
                let response = request.send().await.expect("request");
                assert!(response.status().is_success(), "{}", response.status());
                let _ = response.bytes().await.expect("body");
                if sent >= start {
                    samples.push(sent.elapsed());
                }
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let at = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    Load {
        p50: at(0.5),
        p99: at(0.99),
        per_second: all.len() as f64 / run.as_secs_f64(),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    }));
}

async fn run(duration: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(
        SqliteState::open(&dir.path().join("airlock.db"))
            .await
            .unwrap(),
    );
    let executor = Arc::new(
        Executor::new(ExecutorOptions {
            pool: PoolSize {
                max_concurrent_instances: 200,
                max_memory_bytes: 64 << 20,
            },
            cache_dir: Some(dir.path().join("cache")),
        })
        .unwrap(),
    );
    let cp = Arc::new(ControlPlane::new(
        state.clone(),
        executor,
        Vault::from_base64(&generate_key(), "bench").unwrap(),
        Arc::new(state.keyvalue()),
    ));
    let admin = Principal {
        tenant: "acme".into(),
        id: "ada".into(),
        kind: PrincipalKind::User,
        role: Role::Admin,
    };
    cp.register(&admin, &std::fs::read(guest("sandbox")).unwrap(), &|_| {})
        .await
        .unwrap();
    cp.connection_create(
        &admin,
        ConnectionSpec {
            name: "c1".into(),
            connector: "sandbox".into(),
            writes_enabled: true,
            approval: airlock::control::policies::ApprovalPolicy {
                require_from: Some(airlock::manifest::Risk::Critical),
                ..Default::default()
            },
            ..ConnectionSpec::default()
        },
    )
    .await
    .unwrap();
    let operator = Principal {
        id: "olivia".into(),
        role: Role::Operator,
        ..admin.clone()
    };
    cp.invoke(
        &operator,
        "c1",
        "create",
        r#"{"type":"items","id":"42","data":{"name":"widget","qty":3,"tags":["a","b"]}}"#,
    )
    .await
    .unwrap();
    let params = r#"{"type":"items","id":"42"}"#;
    let token = cp
        .token_create(
            &admin,
            TokenSpec {
                kind: PrincipalKind::User,
                subject: "olivia".into(),
                role: Role::Operator,
                label: Some("bench".into()),
                expires_in: None,
            },
        )
        .await
        .unwrap()
        .token
        .to_string();

    // The served API, and a bare handler answering what the served one does.
    let served = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served_url = format!(
        "http://{}/v1/connections/c1/operations/get",
        served.local_addr().unwrap()
    );
    tokio::spawn(airlock_server::serve(
        served,
        cp.clone(),
        std::future::pending(),
    ));
    let answer = reqwest::Client::new()
        .post(&served_url)
        .header("authorization", format!("Bearer {token}"))
        .body(params)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_url = format!("http://{}/get", bare.local_addr().unwrap());
    let canned = answer.clone();
    let app = axum::Router::new().route(
        "/get",
        axum::routing::post(move |_body: axum::body::Bytes| {
            let canned = canned.clone();
            async move { ([("content-type", "application/json")], canned) }
        }),
    );
    tokio::spawn(async move { axum::serve(bare, app).await });

    println!(
        "Airlock served-invocation benchmark ({} s per row; client and servers share the machine)",
        duration.as_secs_f64()
    );
    // The same call in process, for where the served time goes.
    let mut direct = Vec::new();
    for _ in 0..2_000 {
        let t = Instant::now();
        cp.invoke(&operator, "c1", "get", params).await.unwrap();
        direct.push(t.elapsed());
    }
    direct.sort();
    let mut authenticated = Vec::new();
    for _ in 0..2_000 {
        let t = Instant::now();
        cp.authenticate(Some(&token), "127.0.0.1").await.unwrap();
        authenticated.push(t.elapsed());
    }
    authenticated.sort();
    println!(
        "in process: invoke p50 {:.1}µs, authenticate p50 {:.1}µs",
        direct[direct.len() / 2].as_secs_f64() * 1e6,
        authenticated[authenticated.len() / 2].as_secs_f64() * 1e6
    );
    // The same call from 32 tasks at once, without HTTP: what the control plane alone sustains
    // (its audit records included), to set against the served rows at 32 connections.
    let concurrent = {
        let end = Instant::now() + duration;
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (cp, operator) = (cp.clone(), operator.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < end {
                    cp.invoke(&operator, "c1", "get", params).await.unwrap();
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total as f64 / duration.as_secs_f64()
    };
    println!("in process, 32 tasks at once: {concurrent:.0} invocations/s");
    println!("answer: {} bytes of JSON from both", answer.len());
    println!(
        "{:>12} {:>26} {:>10} {:>10} {:>12}",
        "connections", "server", "p50", "p99", "requests/s"
    );
    for connections in [1, 32] {
        let bare_load = load(&bare_url, None, params, connections, duration).await;
        let served_load = load(&served_url, Some(&token), params, connections, duration).await;
        for (name, l) in [
            ("bare axum handler", &bare_load),
            ("airlock serve (sandbox get)", &served_load),
        ] {
            println!(
                "{connections:>12} {name:>26} {:>8.1}µs {:>8.1}µs {:>12.0}",
                l.p50.as_secs_f64() * 1e6,
                l.p99.as_secs_f64() * 1e6,
                l.per_second
            );
        }
        println!(
            "{:>12} served/bare requests per second: {:.2}",
            "",
            served_load.per_second / bare_load.per_second
        );
    }
    let _ = cp.shutdown().await;
}
