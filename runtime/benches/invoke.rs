//! `cargo xtask bench`: what an invocation costs.
//!
//! Prints, in one run:
//! 1. latency (p50/p99) of a full invocation of the sandbox connector's `get` (fresh Store,
//!    instantiate, call `invoke`), beside the same operation implemented natively in Rust with the
//!    same JSON in and out and the same storage backend; their ratio and difference ("sandbox tax");
//! 2. where the fresh-instance time goes (Store + WASI context, instantiation, the call);
//! 3. throughput with both cores;
//! 4. memory with 10,000 invocations in flight at once;
//! 5. a cold load (compile) against a load from the compile cache;
//! 6. the same `get` through the control plane (connection lookup, authorization, execution,
//!    audit) beside the bare executor, and connection lookup time at 100 and 10,000 connections
//!    across 1,000 tenants;
//! 7. a guest GET through the full egress path (fresh instance, policy, resolution check, the
//!    connection's pooled client) against a local HTTP server, beside a direct GET from the host
//!    with pooled reqwest and hyper-util clients to the same server;
//! 8. the audit hash chain's cost: invocations whose audit records are chained against
//!    unchained ones;
//! 9. the read cache (a hit against the same read run in the sandbox) and approvals created and
//!    decided (with the approved write run) per second.
//!
//! Options (after `--`): `--quick` runs fewer iterations (a smoke test, not a measurement);
//! `--egress-only` runs part 7 alone, `--audit-only` part 8, `--governance-only` part 9;
//! `--egress-only --current-thread` runs part 7 on a one-thread runtime (no task ever changes
//! thread), to show how much of the guest's figure is cross-thread wake-ups.

use airlock::capability::config::ConfigCtx;
use airlock::capability::keyvalue::{KeyValueStore, MemoryStore, Namespace};
use airlock::engine::PoolSize;
use airlock::{Call, Caller, Environment, Executor, ExecutorOptions, Limits, Role};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IN_FLIGHT: usize = 10_000;

fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("AIRLOCK_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        });
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} missing: run `cargo xtask bench`",
        path.display()
    );
    path
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    Stats {
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
    }
}

/// Context switches so far, voluntary and not, summed over every thread of this process.
fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// The sandbox connector's `get`, natively: parse the params, read the record from the same
/// backend, parse it, serialize the result.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyParams {
    #[serde(rename = "type")]
    ty: String,
    id: String,
}

async fn native_get(
    store: &dyn KeyValueStore,
    tenant: &str,
    connection: &str,
    params: &str,
) -> Result<String, String> {
    let p: KeyParams = serde_json::from_str(params).map_err(|e| e.to_string())?;
    let ns = Namespace {
        tenant: tenant.into(),
        connection: connection.into(),
        bucket: format!("sandbox-{}", p.ty).into(),
    };
    let bytes = store
        .get(&ns, &p.id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("not found")?;
    let record: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    serde_json::to_string(&record).map_err(|e| e.to_string())
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let iterations = if quick { 2_000 } else { 20_000 };
    let current_thread = std::env::args().any(|a| a == "--current-thread");
    if current_thread && !std::env::args().any(|a| a == "--egress-only") {
        eprintln!("--current-thread goes with --egress-only (the other parts measure two workers)");
        std::process::exit(1);
    }
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    }
    .enable_all()
    .build()
    .unwrap();
    runtime.block_on(run(iterations, quick));
}

async fn run(iterations: usize, quick: bool) {
    println!(
        "Airlock invocation benchmark ({} iterations{})",
        iterations,
        if quick { ", --quick" } else { "" }
    );
    let cache = tempfile::tempdir().unwrap();
    let executor = Arc::new(
        Executor::new(ExecutorOptions {
            pool: PoolSize {
                max_concurrent_instances: IN_FLIGHT as u32 + 100,
                max_memory_bytes: 64 << 20,
            },
            cache_dir: Some(cache.path().to_path_buf()),
        })
        .unwrap(),
    );
    let sandbox = executor.load_file(&guest("sandbox")).await.unwrap();
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let env = Environment {
        config: ConfigCtx::default(),
        keyvalue: store.clone(),
        limits: Limits::default(),
        egress: Default::default(),
    };
    let caller = Caller {
        tenant: "acme".into(),
        principal: "bench".into(),
        role: Role::Operator,
        connection: "c1".into(),
    };
    if std::env::args().any(|a| a == "--audit-only") {
        let env = Environment {
            keyvalue: Arc::new(MemoryStore::new()),
            ..Environment::default()
        };
        audit_chain(&executor, &env, iterations).await;
        return;
    }
    if std::env::args().any(|a| a == "--governance-only") {
        let env = Environment {
            keyvalue: Arc::new(MemoryStore::new()),
            ..Environment::default()
        };
        governance(&executor, &env, iterations).await;
        return;
    }
    if std::env::args().any(|a| a == "--egress-only") {
        egress(&executor, &caller, iterations).await;
        return;
    }
    let create = Call::Invoke {
        operation: "create".into(),
        params: airlock::Params::parse(
            r#"{"type":"items","id":"42","data":{"name":"widget","qty":3,"tags":["a","b"]}}"#,
        )
        .unwrap(),
    };
    executor
        .call(&sandbox, &caller, &env, create)
        .await
        .unwrap();
    let params = r#"{"type":"items","id":"42"}"#;
    let get = Call::Invoke {
        operation: "get".into(),
        params: airlock::Params::parse(params).unwrap(),
    };

    // Same answer from both.
    let wasm_out = executor
        .call(&sandbox, &caller, &env, get.clone())
        .await
        .unwrap()
        .output;
    let native_out = native_get(store.as_ref(), "acme", "c1", params)
        .await
        .unwrap();
    assert_eq!(
        wasm_out, native_out,
        "the native and sandboxed `get` must agree"
    );

    // 1. Sequential latency.
    for _ in 0..iterations / 10 {
        executor
            .call(&sandbox, &caller, &env, get.clone())
            .await
            .unwrap();
    }
    let mut wasm = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        executor
            .call(&sandbox, &caller, &env, get.clone())
            .await
            .unwrap();
        wasm.push(t.elapsed());
    }
    let mut native = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        std::hint::black_box(
            native_get(store.as_ref(), "acme", "c1", params)
                .await
                .unwrap(),
        );
        native.push(t.elapsed());
    }
    let (w, n) = (stats(wasm), stats(native));
    println!(
        "\n1. full invocation of sandbox `get` (fresh Store + instantiate + invoke), one at a time"
    );
    println!("   {:<28} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "   {:<28} {:>8.1}µs {:>8.1}µs",
        "sandboxed (wasm)",
        us(w.p50),
        us(w.p99)
    );
    println!(
        "   {:<28} {:>8.1}µs {:>8.1}µs",
        "native Rust, same JSON",
        us(n.p50),
        us(n.p99)
    );
    println!(
        "   ratio (p50) {:.1}x, sandbox tax (p50) {:.1} µs",
        us(w.p50) / us(n.p50),
        us(w.p50) - us(n.p50)
    );

    // 2. Where the time goes.
    let phases = executor
        .profile_phases(&sandbox, &caller, &env, get.clone(), iterations)
        .await
        .unwrap();
    println!("\n2. where a fresh invocation's time goes (p50)");
    for (name, d) in &phases {
        println!("   {:<28} {:>8.1}µs", name, us(*d));
    }

    // 3. Throughput on both cores.
    let duration = if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(3)
    };
    let sandbox = Arc::new(sandbox);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (executor, sandbox, env, caller, get) = (
            executor.clone(),
            sandbox.clone(),
            env.clone(),
            caller.clone(),
            get.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < duration {
                executor
                    .call(&sandbox, &caller, &env, get.clone())
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!("\n3. throughput, 2 worker threads, 8 concurrent callers");
    println!(
        "   {:.0} invocations/s ({} in {:.2} s)",
        total as f64 / secs,
        total,
        secs
    );

    // 4. Many in flight: each invocation sleeps in a host call (the sandbox's simulated latency),
    // so all of them hold an instance at once.
    let in_flight = if quick { 1_000 } else { IN_FLIGHT };
    let slow = Environment {
        config: ConfigCtx::from_json(&serde_json::json!({"latency_ms": 3000})).unwrap(),
        limits: Limits {
            deadline: Duration::from_secs(60),
            ..Limits::default()
        },
        ..env.clone()
    };
    let before = rss_bytes();
    let barrier = Instant::now();
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let (executor, sandbox, slow, caller, get) = (
            executor.clone(),
            sandbox.clone(),
            slow.clone(),
            caller.clone(),
            get.clone(),
        );
        tasks.push(tokio::spawn(async move {
            executor
                .call(&sandbox, &caller, &slow, get)
                .await
                .map(|_| ())
        }));
    }
    // Sample memory while all are parked in their sleep.
    let mut peak = before;
    while barrier.elapsed() < Duration::from_millis(2500) {
        peak = peak.max(rss_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut failed = 0;
    for t in tasks {
        if t.await.unwrap().is_err() {
            failed += 1;
        }
    }
    let all_done = barrier.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_bytes();
    println!("\n4. {in_flight} invocations in flight at once (each parked 3 s in a host call)");
    println!(
        "   RSS before {:.0} MiB, peak {:.0} MiB: {:.0} MiB for all, {:.1} KiB each; {} failed; all done in {:.2} s",
        before as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        (peak - before) as f64 / 1048576.0,
        (peak - before) as f64 / 1024.0 / in_flight as f64,
        failed,
        all_done.as_secs_f64()
    );
    println!(
        "   RSS after all finished {:.0} MiB (pooled slots keep up to 1 MiB of dirtied memory each resident for reuse)",
        after as f64 / 1048576.0
    );

    // 5. Cold compile against a cache load.
    let bytes = std::fs::read(guest("sandbox")).unwrap();
    let cold_dir = tempfile::tempdir().unwrap();
    let options = ExecutorOptions {
        pool: PoolSize {
            max_concurrent_instances: 16,
            max_memory_bytes: 64 << 20,
        },
        cache_dir: Some(cold_dir.path().to_path_buf()),
    };
    let cold = Executor::new(options.clone())
        .unwrap()
        .load(&bytes)
        .await
        .unwrap();
    let warm = Executor::new(options).unwrap().load(&bytes).await.unwrap();
    println!(
        "\n5. loading the sandbox connector ({} KiB)",
        bytes.len() / 1024
    );
    println!(
        "   cold (compile) {:.1} ms, from cache {:.2} ms: {:.0}x faster",
        cold.load_time.as_secs_f64() * 1e3,
        warm.load_time.as_secs_f64() * 1e3,
        cold.load_time.as_secs_f64() / warm.load_time.as_secs_f64()
    );

    control_plane(&executor, &sandbox, &env, &caller, iterations).await;
    egress(&executor, &caller, iterations).await;
    audit_chain(&executor, &env, iterations).await;
    governance(&executor, &env, iterations).await;
}

/// A keep-alive HTTP/1.1 server on 127.0.0.1:0 answering every request with a small body.
async fn local_server() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            socket.set_nodelay(true).ok();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut pending = Vec::new();
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    // Requests here are bodiless GETs: one per blank line.
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{\"id\":42,\"ok\":1}";
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// 7. Egress: the full mediation path against a direct pooled GET.
async fn egress(executor: &Arc<Executor>, caller: &Caller, iterations: usize) {
    use http_body_util::BodyExt;
    let port = local_server().await;
    let url = format!("http://127.0.0.1:{port}/records/42");
    let probe = executor.load_file(&guest("egress_probe")).await.unwrap();
    let env = Environment {
        egress: airlock::egress::Egress::from_grants(&["http://127.0.0.1:*".to_owned()]).unwrap(),
        ..Environment::default()
    };
    let fetch = Call::Invoke {
        operation: "fetch".into(),
        params: airlock::Params::parse(serde_json::json!({ "url": url }).to_string()).unwrap(),
    };
    let out = executor
        .call(&probe, caller, &env, fetch.clone())
        .await
        .unwrap()
        .output;
    assert!(out.contains("200"), "{out}");

    let direct_client = airlock::egress::EgressClient::default();
    let direct = || async {
        let request = http::Request::get(url.as_str())
            .body(
                http_body_util::Empty::<bytes::Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        let response = direct_client.get().request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        std::hint::black_box(body);
    };
    // The issue's baseline: reqwest, pooled (one client, keep-alive).
    let reqwest_client = reqwest::Client::new();
    let with_reqwest = || async {
        let response = reqwest_client.get(url.as_str()).send().await.unwrap();
        std::hint::black_box(response.bytes().await.unwrap());
    };
    // A request the policy denies: the same guest and wasi-http plumbing, no network.
    let denied = Call::Invoke {
        operation: "fetch".into(),
        params: airlock::Params::parse(
            serde_json::json!({ "url": "http://127.0.0.2:9/records/42" }).to_string(),
        )
        .unwrap(),
    };
    let mut guest_samples = Vec::with_capacity(iterations);
    let mut denied_samples = Vec::with_capacity(iterations);
    let mut direct_samples = Vec::with_capacity(iterations);
    let mut reqwest_samples = Vec::with_capacity(iterations);
    // Context switches of the whole process (every thread), per sender.
    let mut switches = [0u64; 4];
    for _ in 0..iterations / 10 {
        executor
            .call(&probe, caller, &env, fetch.clone())
            .await
            .unwrap();
        direct().await;
        with_reqwest().await;
    }
    // In blocks, each sender alone for a while, the blocks alternating so that both see the
    // machine's moods. (Interleaving single calls made every baseline call pay for the threads
    // the guest call before it had woken: reqwest measured 70-100 us that way, 22 us alone.)
    const BLOCKS: usize = 10;
    for _ in 0..BLOCKS {
        let before = context_switches();
        for _ in 0..iterations / BLOCKS {
            let t = Instant::now();
            with_reqwest().await;
            reqwest_samples.push(t.elapsed());
        }
        let after_reqwest = context_switches();
        for _ in 0..iterations / BLOCKS {
            let t = Instant::now();
            executor
                .call(&probe, caller, &env, fetch.clone())
                .await
                .unwrap();
            guest_samples.push(t.elapsed());
        }
        let after_guest = context_switches();
        for _ in 0..iterations / BLOCKS {
            let t = Instant::now();
            let result = executor.call(&probe, caller, &env, denied.clone()).await;
            assert!(result.is_err(), "the request to 127.0.0.2 was not denied");
            denied_samples.push(t.elapsed());
        }
        let after_denied = context_switches();
        for _ in 0..iterations / BLOCKS {
            let t = Instant::now();
            direct().await;
            direct_samples.push(t.elapsed());
        }
        let after_direct = context_switches();
        switches[0] += after_guest - after_reqwest;
        switches[1] += after_denied - after_guest;
        switches[2] += after_reqwest - before;
        switches[3] += after_direct - after_denied;
    }
    let per_call = |n: u64| n as f64 / (iterations / BLOCKS * BLOCKS) as f64;
    let (g, x, d, r) = (
        stats(guest_samples),
        stats(denied_samples),
        stats(direct_samples),
        stats(reqwest_samples),
    );

    #[derive(Clone, Copy, PartialEq)]
    enum Sender {
        Guest,
        Hyper,
        Reqwest,
    }
    let throughput = |concurrency: usize, sender: Sender| {
        let reqwest_client = reqwest_client.clone();
        let (executor, probe, env, caller, fetch, direct_client, url) = (
            executor.clone(),
            probe.clone(),
            env.clone(),
            caller.clone(),
            fetch.clone(),
            direct_client.clone(),
            url.clone(),
        );
        async move {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let reqwest_client = reqwest_client.clone();
                let (executor, probe, env, caller, fetch, client, url) = (
                    executor.clone(),
                    probe.clone(),
                    env.clone(),
                    caller.clone(),
                    fetch.clone(),
                    direct_client.clone(),
                    url.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while started.elapsed() < Duration::from_secs(2) {
                        if sender == Sender::Guest {
                            executor
                                .call(&probe, &caller, &env, fetch.clone())
                                .await
                                .unwrap();
                        } else if sender == Sender::Reqwest {
                            let response = reqwest_client.get(url.as_str()).send().await.unwrap();
                            std::hint::black_box(response.bytes().await.unwrap());
                        } else {
                            let request = http::Request::get(url.as_str())
                                .body(
                                    http_body_util::Empty::<bytes::Bytes>::new()
                                        .map_err(|never| match never {})
                                        .boxed_unsync(),
                                )
                                .unwrap();
                            let response = client.get().request(request).await.unwrap();
                            std::hint::black_box(response.into_body().collect().await.unwrap());
                        }
                        n += 1;
                    }
                    n
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total as f64 / started.elapsed().as_secs_f64()
        }
    };
    let guest_rate = throughput(8, Sender::Guest).await;
    let direct_rate = throughput(8, Sender::Hyper).await;
    let reqwest_rate = throughput(8, Sender::Reqwest).await;
    println!(
        "\n7. egress: GET from a guest through the full mediation path, against a direct pooled GET{}",
        if std::env::args().any(|a| a == "--current-thread") {
            " (one-thread runtime)"
        } else {
            ""
        }
    );
    println!(
        "   {:<34} {:>10} {:>10} {:>14} {:>10}",
        "", "p50", "p99", "throughput", "switches"
    );
    let row = |label: &str, s: &Stats, rate: Option<f64>, switches: u64| {
        println!(
            "   {:<34} {:>8.1}µs {:>8.1}µs {:>14} {:>10.2}",
            label,
            us(s.p50),
            us(s.p99),
            rate.map_or("".to_owned(), |r| format!("{r:.0}/s")),
            per_call(switches)
        );
    };
    row(
        "guest (fresh instance + egress)",
        &g,
        Some(guest_rate),
        switches[0],
    );
    row("guest, request denied (no network)", &x, None, switches[1]);
    row(
        "host, pooled reqwest client",
        &r,
        Some(reqwest_rate),
        switches[2],
    );
    row(
        "host, pooled hyper-util client",
        &d,
        Some(direct_rate),
        switches[3],
    );
    println!("   (switches: context switches of all the process's threads per call)");
    println!(
        "   ratio (p50) {:.2}x against reqwest, {:.2}x against hyper-util",
        us(g.p50) / us(r.p50),
        us(g.p50) / us(d.p50)
    );
}

/// A control plane on a fresh store in a temporary folder, over `env`'s storage, with the
/// sandbox registered by an admin of tenant acme; `chain: false` leaves audit records unchained.
struct BenchPlane {
    cp: airlock::control::ControlPlane,
    state: Arc<airlock::control::state::SqliteState>,
    admin: airlock::control::Principal,
    operator: airlock::control::Principal,
    dir: tempfile::TempDir,
}

async fn bench_plane(executor: &Arc<Executor>, env: &Environment, chain: bool) -> BenchPlane {
    use airlock::control::state::SqliteState;
    use airlock::control::vault::{Vault, generate_key};
    use airlock::control::{ControlPlane, Principal, PrincipalKind};
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(
        SqliteState::open(&dir.path().join("airlock.db"))
            .await
            .unwrap(),
    );
    let mut builder = ControlPlane::builder(
        state.clone(),
        executor.clone(),
        Vault::from_base64(&generate_key(), "bench").unwrap(),
        env.keyvalue.clone(),
    );
    if !chain {
        builder = builder.without_audit_chain();
    }
    let cp = builder.build();
    let admin = Principal {
        tenant: "acme".into(),
        id: "ada".into(),
        kind: PrincipalKind::User,
        role: Role::Admin,
    };
    let operator = Principal {
        role: Role::Operator,
        id: "bench".into(),
        ..admin.clone()
    };
    cp.register(&admin, &std::fs::read(guest("sandbox")).unwrap(), &|_| {})
        .await
        .unwrap();
    BenchPlane {
        cp,
        state,
        admin,
        operator,
        dir,
    }
}

/// Part 9: the read cache and the approval workflow.
async fn governance(executor: &Arc<Executor>, env: &Environment, iterations: usize) {
    use airlock::control::policies::ApprovalPolicy;
    use airlock::control::shaping::DataPolicy;
    use airlock::control::{ConnectionSpec, ControlError, Principal};
    let BenchPlane {
        cp,
        admin,
        operator,
        dir: _dir,
        ..
    } = bench_plane(executor, env, true).await;
    for (name, ttl) in [("cached", Some(300)), ("plain", None)] {
        let spec = ConnectionSpec {
            name: name.into(),
            connector: "sandbox".into(),
            writes_enabled: true,
            data: DataPolicy {
                cache_ttl_s: ttl,
                ..DataPolicy::default()
            },
            approval: ApprovalPolicy::default(),
            ..ConnectionSpec::default()
        };
        cp.connection_create(&admin, spec).await.unwrap();
    }
    // The record both read (same storage namespace per connection: create it in each).
    for name in ["cached", "plain"] {
        let caller = Caller {
            tenant: "acme".into(),
            principal: "bench".into(),
            role: Role::Operator,
            connection: name.into(),
        };
        let sandbox = executor.load_file(&guest("sandbox")).await.unwrap();
        let create = Call::Invoke {
            operation: "create".into(),
            params: airlock::Params::parse(
                r#"{"type":"items","id":"42","data":{"name":"widget","qty":3}}"#,
            )
            .unwrap(),
        };
        let _ = executor.call(&sandbox, &caller, env, create).await;
    }
    let params = r#"{"type":"items","id":"42"}"#;
    let mut hit = Vec::with_capacity(iterations);
    let mut miss = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let out = cp.invoke(&operator, "cached", "get", params).await.unwrap();
        hit.push(t.elapsed());
        std::hint::black_box(out);
        let t = Instant::now();
        cp.invoke(&operator, "plain", "get", params).await.unwrap();
        miss.push(t.elapsed());
    }
    let (hit, miss) = (stats(hit), stats(miss));

    // Approvals: each request is a medium-risk create, approved by another person, which
    // runs it; measured end to end.
    let approver = Principal {
        id: "bob".into(),
        ..operator.clone()
    };
    let rounds = (iterations / 20).max(100);
    let t = Instant::now();
    let mut ids = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let p = format!(r#"{{"type":"orders","id":"o{i}","data":{{"qty":{i}}}}}"#);
        match cp.invoke(&operator, "plain", "create", &p).await {
            Err(ControlError::Pending(ticket)) => ids.push(ticket.request_id),
            other => panic!("expected a pending approval, got {other:?}"),
        }
    }
    let created = t.elapsed();
    let t = Instant::now();
    for id in &ids {
        let done = cp.approval_decide(&approver, id, true, None).await.unwrap();
        assert_eq!(done.record.status, "executed");
    }
    let decided = t.elapsed();
    cp.flush_audit().await.unwrap();
    println!("\n9. governance: the read cache, and approvals");
    println!("   {:<34} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "   {:<34} {:>8.1}µs {:>8.1}µs",
        "get, cache hit",
        us(hit.p50),
        us(hit.p99)
    );
    println!(
        "   {:<34} {:>8.1}µs {:>8.1}µs",
        "get, no cache (runs the sandbox)",
        us(miss.p50),
        us(miss.p99)
    );
    println!(
        "   approvals: {:.0} requests created/s, {:.0} approved and executed/s ({rounds} each)",
        rounds as f64 / created.as_secs_f64(),
        rounds as f64 / decided.as_secs_f64()
    );
}

/// Part 8, the audit hash chain's cost: the same invocation through two control planes, one
/// chaining its audit records (the default) and one not, interleaved; then the sustained rate
/// with every record written (invocations and a final flush).
async fn audit_chain(executor: &Arc<Executor>, env: &Environment, iterations: usize) {
    use airlock::control::{ConnectionSpec, ControlPlane, Principal};
    let mut planes = Vec::new();
    let mut dirs = Vec::new();
    let mut operator = None;
    for chain in [true, false] {
        let plane = bench_plane(executor, env, chain).await;
        let spec = ConnectionSpec {
            name: "c1".into(),
            connector: "sandbox".into(),
            ..ConnectionSpec::default()
        };
        plane
            .cp
            .connection_create(&plane.admin, spec)
            .await
            .unwrap();
        operator = Some(plane.operator);
        planes.push(plane.cp);
        dirs.push(plane.dir);
    }
    let operator = operator.expect("two planes");
    // The record both planes read (same storage namespace: tenant acme, connection c1).
    let sandbox = executor.load_file(&guest("sandbox")).await.unwrap();
    let caller = Caller {
        tenant: "acme".into(),
        principal: "bench".into(),
        role: Role::Operator,
        connection: "c1".into(),
    };
    let create = Call::Invoke {
        operation: "create".into(),
        params: airlock::Params::parse(
            r#"{"type":"items","id":"42","data":{"name":"widget","qty":3,"tags":["a","b"]}}"#,
        )
        .unwrap(),
    };
    // Already there when part 1 ran first.
    let _ = executor.call(&sandbox, &caller, env, create).await;
    let params = r#"{"type":"items","id":"42"}"#;
    async fn latency(cp: &ControlPlane, who: &Principal, params: &str, iterations: usize) -> Stats {
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            cp.invoke(who, "c1", "get", params).await.unwrap();
            samples.push(t.elapsed());
        }
        cp.flush_audit().await.unwrap();
        stats(samples)
    }
    async fn sustained(cp: &ControlPlane, who: &Principal, params: &str, iterations: usize) -> f64 {
        let t = Instant::now();
        for _ in 0..iterations {
            cp.invoke(who, "c1", "get", params).await.unwrap();
        }
        cp.flush_audit().await.unwrap();
        iterations as f64 / t.elapsed().as_secs_f64()
    }
    let (on_plane, off_plane) = (&planes[0], &planes[1]);
    let on1 = latency(on_plane, &operator, params, iterations).await;
    let off1 = latency(off_plane, &operator, params, iterations).await;
    let on2 = latency(on_plane, &operator, params, iterations).await;
    let off2 = latency(off_plane, &operator, params, iterations).await;
    let rate_on = sustained(on_plane, &operator, params, iterations).await;
    let rate_off = sustained(off_plane, &operator, params, iterations).await;
    let on = on1.p50.min(on2.p50);
    let off = off1.p50.min(off2.p50);
    println!(
        "\n8. audit chain: invocation through the control plane, audit records chained or not"
    );
    println!(
        "   {:<28} {:>10} {:>10} {:>22}",
        "", "p50", "p99", "sustained (flushed)"
    );
    println!(
        "   {:<28} {:>8.1}µs {:>8.1}µs {:>20.0}/s",
        "chained (default)",
        us(on),
        us(on1.p99.min(on2.p99)),
        rate_on
    );
    println!(
        "   {:<28} {:>8.1}µs {:>8.1}µs {:>20.0}/s",
        "not chained",
        us(off),
        us(off1.p99.min(off2.p99)),
        rate_off
    );
    println!(
        "   ratio (p50) {:.2}x; sustained {:.2}x",
        us(on) / us(off),
        rate_off / rate_on
    );
    drop(dirs);
}

/// 6. The control plane's overhead and lookup scaling.
async fn control_plane(
    executor: &Arc<Executor>,
    sandbox: &airlock::Connector,
    env: &Environment,
    caller: &Caller,
    iterations: usize,
) {
    use airlock::control::state::stores::*;
    use airlock::control::{ConnectionSpec, Principal};

    let BenchPlane {
        cp,
        state,
        admin,
        operator,
        dir: _dir,
    } = bench_plane(executor, env, true).await;
    let spec = ConnectionSpec {
        name: "c1".into(),
        connector: "sandbox".into(),
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    let params = r#"{"type":"items","id":"42"}"#;
    let get = Call::Invoke {
        operation: "get".into(),
        params: airlock::Params::parse(params).unwrap(),
    };
    // Same storage namespace (tenant acme, connection c1) as the bare runs: same record.
    let through = cp
        .invoke(&operator, "c1", "get", params)
        .await
        .unwrap()
        .output;
    let bare = executor
        .call(sandbox, caller, env, get.clone())
        .await
        .unwrap()
        .output;
    assert_eq!(
        through, bare,
        "the control plane and the bare executor must answer alike"
    );

    let measure_bare = || async {
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            executor
                .call(sandbox, caller, env, get.clone())
                .await
                .unwrap();
            samples.push(t.elapsed());
        }
        stats(samples)
    };
    let measure_cp = |who: Principal, name: &'static str| {
        let cp = &cp;
        async move {
            let mut samples = Vec::with_capacity(iterations);
            for _ in 0..iterations {
                let t = Instant::now();
                cp.invoke(&who, name, "get", params).await.unwrap();
                samples.push(t.elapsed());
            }
            stats(samples)
        }
    };
    // Interleave, so both see the same machine.
    let b1 = measure_bare().await;
    let c1 = measure_cp(operator.clone(), "c1").await;
    let b2 = measure_bare().await;
    let c2 = measure_cp(operator.clone(), "c1").await;
    let bare = Stats {
        p50: b1.p50.min(b2.p50),
        p99: b1.p99.min(b2.p99),
    };
    let through = Stats {
        p50: c1.p50.min(c2.p50),
        p99: c1.p99.min(c2.p99),
    };
    cp.flush_audit().await.unwrap();
    let audited = state.list_audit("acme", i64::MAX).await.unwrap().len();
    println!(
        "\n6. control plane: lookup + authorize + execute + audit, against the bare executor (same `get`)"
    );
    println!("   {:<28} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "   {:<28} {:>8.1}µs {:>8.1}µs",
        "bare executor",
        us(bare.p50),
        us(bare.p99)
    );
    println!(
        "   {:<28} {:>8.1}µs {:>8.1}µs",
        "through the control plane",
        us(through.p50),
        us(through.p99)
    );
    println!(
        "   ratio (p50) {:.2}x; {} audit records written",
        us(through.p50) / us(bare.p50),
        audited
    );

    // Lookup scaling: the store's indexed lookup and the control plane's invoke path.
    let sealed = state.get_connection("acme", "c1").await.unwrap().unwrap();
    let mut lookups = Vec::new();
    let mut created = 1usize;
    for target in [100usize, 10_000] {
        while created < target {
            let tenant = format!("tenant-{:04}", created % 1_000);
            let record = airlock::control::state::ConnectionRecord {
                tenant,
                name: format!("conn-{created:05}"),
                ..sealed.clone()
            };
            state.insert_connection(&record).await.unwrap();
            created += 1;
        }
        let n = 2_000;
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let k = 1 + (i * 7919) % (target - 1);
            let (tenant, name) = (format!("tenant-{:04}", k % 1_000), format!("conn-{k:05}"));
            let t = Instant::now();
            std::hint::black_box(state.get_connection(&tenant, &name).await.unwrap().unwrap());
            samples.push(t.elapsed());
        }
        let db = stats(samples);
        let cp_stats = measure_cp(operator.clone(), "c1").await;
        lookups.push((target, db, cp_stats));
    }
    println!("   connection lookup, connections across up to 1,000 tenants:");
    for (n, db, cp_stats) in lookups {
        println!(
            "   {:>6} connections: store lookup p50 {:>6.1}µs p99 {:>6.1}µs; invoke through the control plane p50 {:>6.1}µs",
            n,
            us(db.p50),
            us(db.p99),
            us(cp_stats.p50)
        );
    }
}
