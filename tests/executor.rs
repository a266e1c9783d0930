//! The sandbox's limits: each misbehaving guest is stopped with an error that says why, and the
//! host serves the next invocation.

use crate::common;

use airlock::limits::EPOCH_TICK;
use airlock::{Environment, InvokeError, Limits};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// After any failure, the sandbox connector still works on the same executor.
async fn host_still_serves(executor: &airlock::Executor) {
    let sandbox = load(executor, "sandbox").await;
    let env = env();
    let who = caller("acme", "c1");
    let created = invoke(
        executor,
        &sandbox,
        &who,
        &env,
        "create",
        json!({"type": "items", "data": {"n": 1}}),
    )
    .await
    .expect("create after a failure");
    let id = created["id"].as_str().unwrap();
    let got = invoke(
        executor,
        &sandbox,
        &who,
        &env,
        "get",
        json!({"type": "items", "id": id}),
    )
    .await
    .unwrap();
    assert_eq!(got["n"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_stops_a_runaway_guest_within_deadline_plus_one_tick() {
    let executor = executor();
    let spin = load(&executor, "spin-loop").await;
    let deadline = Duration::from_millis(200);
    let env = Environment {
        limits: Limits {
            deadline,
            ..Limits::default()
        },
        ..env()
    };
    let started = Instant::now();
    let err = invoke(
        &executor,
        &spin,
        &caller("acme", "c1"),
        &env,
        "spin",
        json!({}),
    )
    .await
    .unwrap_err();
    let wall = started.elapsed();
    let InvokeError::Deadline { limit, elapsed } = err else {
        panic!("expected a deadline error, got {err:?}")
    };
    assert_eq!(limit, deadline);
    assert!(elapsed >= deadline, "stopped early: {elapsed:?}");
    // One epoch tick past the deadline, plus room for the scheduler of a busy 2-core machine.
    let allowed = deadline + EPOCH_TICK + Duration::from_millis(100);
    assert!(
        elapsed <= allowed,
        "stopped after {elapsed:?}, allowed {allowed:?}"
    );
    assert!(
        wall < deadline + Duration::from_secs(2),
        "the call returned after {wall:?}"
    );
    assert!(err_text(&InvokeError::Deadline { limit, elapsed }).contains("deadline of 200 ms"));
    host_still_serves(&executor).await;
}

fn err_text(e: &InvokeError) -> String {
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_stops_a_guest_parked_in_a_slow_host_call() {
    // The sandbox sleeps (a host call) for its configured latency: the epoch cannot interrupt
    // host code, the invocation timeout must.
    let executor = executor();
    let sandbox = load(&executor, "sandbox").await;
    let env = Environment {
        config: airlock::capability::config::ConfigCtx::from_json(&json!({"latency_ms": 30_000}))
            .unwrap(),
        limits: Limits {
            deadline: Duration::from_millis(300),
            ..Limits::default()
        },
        ..env()
    };
    let started = Instant::now();
    let err = invoke(
        &executor,
        &sandbox,
        &caller("acme", "c1"),
        &env,
        "list",
        json!({"type": "items"}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, InvokeError::Deadline { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    host_still_serves(&executor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_stops_a_memory_hog_at_its_limit() {
    let executor = executor();
    let hog = load(&executor, "memory-hog").await;
    let limit = 32 << 20;
    let env = Environment {
        limits: Limits {
            max_memory_bytes: limit,
            ..Limits::default()
        },
        ..env()
    };
    let err = invoke(
        &executor,
        &hog,
        &caller("acme", "c1"),
        &env,
        "hog",
        json!({}),
    )
    .await
    .unwrap_err();
    match &err {
        InvokeError::MemoryLimit {
            limit: l,
            requested,
        } => {
            assert_eq!(*l, limit);
            assert!(*requested > limit, "requested {requested}");
        }
        other => panic!("expected a memory-limit error, got {other:?}"),
    }
    assert!(
        err.to_string().contains("memory limit of 32.0 MiB"),
        "{err}"
    );
    host_still_serves(&executor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_traps_deep_recursion_without_killing_the_host() {
    let executor = executor();
    let deep = load(&executor, "deep-recursion").await;
    let err = invoke(
        &executor,
        &deep,
        &caller("acme", "c1"),
        &env(),
        "recurse",
        json!({}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, InvokeError::StackOverflow { .. }), "{err:?}");
    assert!(err.to_string().contains("exhausted its stack"), "{err}");
    host_still_serves(&executor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_reports_the_guest_panic_message() {
    let executor = executor();
    let panicker = load(&executor, "panicker").await;
    let err = invoke(
        &executor,
        &panicker,
        &caller("acme", "c1"),
        &env(),
        "panic",
        json!({}),
    )
    .await
    .unwrap_err();
    let InvokeError::Panic { message } = &err else {
        panic!("expected a panic error, got {err:?}")
    };
    assert!(
        message.contains("upstream record 42 has no `Name` field"),
        "{message}"
    );
    assert!(
        message.contains("panicker/src/lib.rs"),
        "location missing: {message}"
    );
    host_still_serves(&executor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_refuses_oversized_output() {
    let executor = executor();
    let big = load(&executor, "big-output").await;
    let who = caller("acme", "c1");
    let env = Environment {
        limits: Limits {
            max_output_bytes: 1 << 20,
            ..Limits::default()
        },
        ..env()
    };
    // Under the cap: returned whole (the JSON string adds two quotes).
    let ok = invoke(
        &executor,
        &big,
        &who,
        &env,
        "emit",
        json!({"bytes": (1 << 20) - 2}),
    )
    .await
    .unwrap();
    assert_eq!(ok.as_str().unwrap().len(), (1 << 20) - 2);
    // One byte over: refused, naming both sizes.
    let err = invoke(
        &executor,
        &big,
        &who,
        &env,
        "emit",
        json!({"bytes": (1 << 20) - 1}),
    )
    .await
    .unwrap_err();
    match &err {
        InvokeError::OutputTooLarge { size, limit } => {
            assert_eq!((*size, *limit), ((1 << 20) + 1, 1 << 20));
        }
        other => panic!("expected output-too-large, got {other:?}"),
    }
    host_still_serves(&executor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_links_wasi_with_no_ambient_authority() {
    let executor = executor();
    let probe = load(&executor, "ambient-authority").await;
    let seen = invoke(
        &executor,
        &probe,
        &caller("acme", "c1"),
        &env(),
        "probe",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(seen["env"], json!([]), "environment leaked: {seen}");
    assert_eq!(seen["args"], json!([]), "arguments leaked: {seen}");
    assert_eq!(seen["tcp"], json!(false), "TCP allowed: {seen}");
    assert_eq!(seen["udp"], json!(false), "UDP allowed: {seen}");
    for file in seen["files"].as_array().unwrap() {
        assert_eq!(file["readable"], json!(false), "file readable: {file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_denies_egress_and_says_which_rule() {
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    // `fetch` uses the raw wasi:http bindings, `fetch-wstd` an ordinary client that writes its
    // body after `handle`: both must see the denial itself, every time, not "connection reset".
    for operation in ["fetch", "fetch-wstd"] {
        for _ in 0..20 {
            let err = invoke(
                &executor,
                &probe,
                &caller("acme", "c1"),
                &env(),
                operation,
                json!({"url": "https://example.com:443/"}),
            )
            .await
            .unwrap_err();
            let InvokeError::Denied {
                denial,
                guest_error,
            } = &err
            else {
                panic!("expected a denial, got {err:?}")
            };
            assert_eq!(denial.rule, airlock::policy::RULE_NO_EGRESS_GRANTS);
            assert!(
                denial
                    .effect
                    .contains("GET request to https://example.com:443"),
                "{denial}"
            );
            let guest_error = guest_error.as_deref().unwrap_or("");
            assert!(
                guest_error.contains("HttpRequestDenied"),
                "{operation}: {guest_error}"
            );
            assert_eq!(err.exit_code(), 2);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_holds_read_operations_to_reads() {
    let executor = executor();
    let guest = load(&executor, "read-then-write").await;
    let who = caller("acme", "c1");
    let env = env();
    let err = invoke(&executor, &guest, &who, &env, "sneaky-read", json!({}))
        .await
        .unwrap_err();
    let InvokeError::Denied { denial, .. } = &err else {
        panic!("expected a denial, got {err:?}")
    };
    assert_eq!(denial.rule, airlock::policy::RULE_READ_ONLY_OPERATION);
    assert!(
        denial.reason.contains("`sneaky-read` is declared `read`"),
        "{denial}"
    );
    // Nothing was written: the declared write then finds the key unset before writing it.
    let ns = airlock::capability::keyvalue::Namespace {
        tenant: "acme".into(),
        connection: "c1".into(),
        bucket: "state".into(),
    };
    assert_eq!(env.keyvalue.get(&ns, "touched").await.unwrap(), None);
    let ok = invoke(&executor, &guest, &who, &env, "honest-write", json!({}))
        .await
        .unwrap();
    assert_eq!(ok, json!({"wrote": "honest-write"}));
    assert_eq!(
        env.keyvalue.get(&ns, "touched").await.unwrap(),
        Some(b"honest-write".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_rejects_unknown_operations_and_non_object_params_before_running() {
    let executor = executor();
    let sandbox = load(&executor, "sandbox").await;
    let who = caller("acme", "c1");
    let err = invoke(&executor, &sandbox, &who, &env(), "drop_tables", json!({}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("it offers: list, get, create, update, delete"),
        "{err}"
    );
    // Params are checked where they enter: a call cannot be built with a non-object.
    let err = airlock::Params::parse("[1, 2]").unwrap_err();
    assert!(matches!(err, InvokeError::BadParams(_)), "{err:?}");
    let err = invoke(
        &executor,
        &sandbox,
        &who,
        &env(),
        "get",
        json!({"type": "items"}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("missing field `id`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_runs_sandbox_crud_with_injected_errors() {
    let executor = executor();
    let sandbox = load(&executor, "sandbox").await;
    let who = caller("acme", "c1");
    let env = env();
    let a = invoke(
        &executor,
        &sandbox,
        &who,
        &env,
        "create",
        json!({"type": "items", "data": {"name": "a"}}),
    )
    .await
    .unwrap();
    let b = invoke(
        &executor,
        &sandbox,
        &who,
        &env,
        "create",
        json!({"type": "items", "data": {"name": "b"}}),
    )
    .await
    .unwrap();
    assert_ne!(a["id"], b["id"]);
    let dup = invoke(
        &executor,
        &sandbox,
        &who,
        &env,
        "create",
        json!({"type": "items", "id": a["id"], "data": {}}),
    )
    .await;
    assert!(dup.unwrap_err().to_string().contains("already exists"));
    let listed = invoke(
        &executor,
        &sandbox,
        &who,
        &env,
        "list",
        json!({"type": "items", "filter": {"name": "b"}}),
    )
    .await
    .unwrap();
    assert_eq!(listed["count"], 1);
    let updated = invoke(
        &executor,
        &sandbox,
        &who,
        &env,
        "update",
        json!({"type": "items", "id": a["id"], "data": {"name": "z"}}),
    )
    .await
    .unwrap();
    assert_eq!(updated["name"], "z");
    invoke(
        &executor,
        &sandbox,
        &who,
        &env,
        "delete",
        json!({"type": "items", "id": a["id"]}),
    )
    .await
    .unwrap();
    let gone = invoke(
        &executor,
        &sandbox,
        &who,
        &env,
        "get",
        json!({"type": "items", "id": a["id"]}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            gone,
            InvokeError::Connector(airlock::manifest::ConnectorError::NotFound { .. })
        ),
        "{gone:?}"
    );
    let discovered = executor
        .call(&sandbox, &who, &env, airlock::Call::Discover)
        .await
        .unwrap();
    assert!(
        discovered.output.contains("\"items\""),
        "{}",
        discovered.output
    );

    let failing = Environment {
        config: airlock::capability::config::ConfigCtx::from_json(&json!({"error_rate": 1.0}))
            .unwrap(),
        ..env.clone()
    };
    let err = invoke(
        &executor,
        &sandbox,
        &who,
        &failing,
        "list",
        json!({"type": "items"}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            InvokeError::Connector(airlock::manifest::ConnectorError::Upstream { status: 503, .. })
        ),
        "{err:?}"
    );
    let health = executor
        .call(&sandbox, &who, &failing, airlock::Call::Health)
        .await
        .unwrap_err();
    assert!(health.to_string().contains("503"), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_bounds_handles_and_bytes_per_host_call() {
    let executor = executor();
    let hoarder = load(&executor, "handle-hoarder").await;
    let who = caller("acme", "c1");
    let env = Environment {
        limits: Limits {
            max_resources: 100,
            max_host_call_bytes: 64 << 10,
            ..Limits::default()
        },
        ..env()
    };
    let hoard = invoke(&executor, &hoarder, &who, &env, "hoard", json!({}))
        .await
        .unwrap();
    let opened = hoard["opened"].as_u64().unwrap();
    assert!(
        opened > 0 && opened <= 100,
        "opened {opened} handles with a limit of 100: {hoard}"
    );
    assert!(
        hoard["error"]
            .as_str()
            .unwrap_or("")
            .contains("at most 100 handles"),
        "{hoard}"
    );

    let small = invoke(
        &executor,
        &hoarder,
        &who,
        &env,
        "oversize",
        json!({"bytes": 1000}),
    )
    .await
    .unwrap();
    assert_eq!(small, json!({"stored": 1000}));
    let big = invoke(
        &executor,
        &hoarder,
        &who,
        &env,
        "oversize",
        json!({"bytes": 100_000}),
    )
    .await
    .unwrap();
    let refused = big["refused"]
        .as_str()
        .unwrap_or_else(|| panic!("a 100 KB value passed a 64 KiB limit: {big}"));
    assert!(
        refused.contains("over the host-call limit of 65536 bytes"),
        "{refused}"
    );
    host_still_serves(&executor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_refuses_work_beyond_its_pool_with_a_clear_error() {
    let executor = airlock::Executor::new(airlock::ExecutorOptions {
        pool: airlock::engine::PoolSize {
            max_concurrent_instances: 2,
            max_memory_bytes: 64 << 20,
        },
        cache_dir: Some(root().join("target/airlock-test-cache")),
    })
    .unwrap();
    let executor = std::sync::Arc::new(executor);
    let sandbox = std::sync::Arc::new(load(&executor, "sandbox").await);
    // Two invocations park in a slow host call and hold both slots.
    let slow = Environment {
        config: airlock::capability::config::ConfigCtx::from_json(&json!({"latency_ms": 1500}))
            .unwrap(),
        ..env()
    };
    let mut parked = Vec::new();
    for _ in 0..2 {
        let (executor, sandbox, slow) = (executor.clone(), sandbox.clone(), slow.clone());
        parked.push(tokio::spawn(async move {
            invoke(
                &executor,
                &sandbox,
                &caller("acme", "c1"),
                &slow,
                "list",
                json!({"type": "items"}),
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = invoke(
        &executor,
        &sandbox,
        &caller("acme", "c1"),
        &env(),
        "list",
        json!({"type": "items"}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, InvokeError::Busy { .. }), "{err:?}");
    assert!(
        err.to_string().contains("too many invocations in flight"),
        "{err}"
    );
    for task in parked {
        task.await
            .unwrap()
            .expect("the parked invocations finish normally");
    }
    // The slots are free again.
    invoke(
        &executor,
        &sandbox,
        &caller("acme", "c1"),
        &env(),
        "list",
        json!({"type": "items"}),
    )
    .await
    .unwrap();
}
