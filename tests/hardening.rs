//! Regressions of the hostile review (issue 9), written as the attacker worked: a hostile
//! upstream, a hostile guest, a broken store, several processes. Each test names the item.

use crate::cli::{Run, airlock_as, path};
use crate::common::*;
use crate::http_server::{Reply, TestServer};
use airlock::capability::keyvalue::{BackendError, KeyPage, KeyValueStore, Namespace};
use airlock::control::ConnectionSpec;
use airlock::egress::Egress;
use airlock::egress::credential::Placement;
use airlock::{Environment, InvokeError, Role};
use serde_json::json;
use std::sync::Arc;

fn env_with(grants: &[&str]) -> Environment {
    let grants: Vec<String> = grants.iter().map(|g| g.to_string()).collect();
    Environment {
        egress: Egress::from_grants(&grants).unwrap(),
        ..env()
    }
}

/// Item 1: `Retry-After` values that overflow `Instant + Duration` (both integer spellings and a
/// far HTTP date) fail, or end, that request; the host keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_retry_after_overflow_does_not_crash_the_host() {
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    let who = caller("acme", "c1");
    // (value, attempts): a wait past the deadline is not waited for; a value that is no
    // duration is ignored and the usual backoff applies (3 attempts).
    for (retry_after, attempts) in [
        ("18446744073709551615", 1),
        ("9223372036854775807", 1),
        ("99999999999999999999999", 1),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 1),
        ("-1", 3),
    ] {
        let server = TestServer::scripted(
            Vec::new(),
            Reply::new(503, "busy").header("retry-after", retry_after),
        )
        .await;
        let url = format!("http://127.0.0.1:{}/x", server.port);
        let answer = invoke(
            &executor,
            &probe,
            &who,
            &env_with(&["http://127.0.0.1:*"]),
            "fetch",
            json!({"url": url}),
        )
        .await
        .unwrap_or_else(|e| panic!("Retry-After {retry_after}: {e}"));
        assert_eq!(answer["status"], 503, "Retry-After {retry_after}");
        assert_eq!(server.seen().len(), attempts, "Retry-After {retry_after}");
    }
}

/// A key-value backend that panics: a host bug under an invocation.
struct PanickingStore;

#[async_trait::async_trait]
impl KeyValueStore for PanickingStore {
    async fn get(&self, _: &Namespace, _: &str) -> Result<Option<Vec<u8>>, BackendError> {
        panic!("backend bug: get");
    }
    async fn set(&self, _: &Namespace, _: &str, _: Vec<u8>) -> Result<(), BackendError> {
        panic!("backend bug: set");
    }
    async fn delete(&self, _: &Namespace, _: &str) -> Result<(), BackendError> {
        panic!("backend bug: delete");
    }
    async fn exists(&self, _: &Namespace, _: &str) -> Result<bool, BackendError> {
        panic!("backend bug: exists");
    }
    async fn list_keys(&self, _: &Namespace, _: u64) -> Result<KeyPage, BackendError> {
        panic!("backend bug: list");
    }
    async fn increment(&self, _: &Namespace, _: &str, _: u64) -> Result<u64, BackendError> {
        panic!("backend bug: increment");
    }
}

/// Item 1, the class: a panic anywhere under one invocation fails that invocation with an
/// internal error; concurrent and later invocations are untouched and the process lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_a_host_panic_fails_only_its_invocation() {
    let executor = Arc::new(executor());
    let sandbox = load(&executor, "sandbox").await;
    let who = caller("acme", "c1");
    let broken = Environment {
        keyvalue: Arc::new(PanickingStore),
        ..env()
    };
    let healthy = env();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (executor, sandbox, who) = (executor.clone(), sandbox.clone(), who.clone());
        let env = if i % 2 == 0 {
            broken.clone()
        } else {
            healthy.clone()
        };
        tasks.push(tokio::spawn(async move {
            invoke(
                &executor,
                &sandbox,
                &who,
                &env,
                "create",
                json!({"type": "items", "data": {"n": i}}),
            )
            .await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task
            .await
            .expect("the invocation's task itself never panics");
        if i % 2 == 0 {
            match result {
                Err(InvokeError::HostPanic { message }) => {
                    assert!(message.contains("backend bug"), "{message}")
                }
                other => panic!("expected an internal error, got {other:?}"),
            }
        } else {
            result.unwrap();
        }
    }
    let listed = invoke(
        &executor,
        &sandbox,
        &who,
        &healthy,
        "list",
        json!({"type": "items"}),
    )
    .await
    .unwrap();
    assert_eq!(listed["count"], 4);

    // A panic in the task wasmtime-wasi-http spawns for a request (here: the shared token
    // store of an OAuth2 credential) reaches the invocation through the task's join, and stops
    // only that invocation too.
    let probe = load(&executor, "egress-probe").await;
    let api = TestServer::start(200, "fine").await;
    let origin = format!("http://127.0.0.1:{}", api.port);
    let tokens = airlock::egress::oauth::TokenCache::default();
    tokens.share_through(Arc::new(PanickingTokens));
    let mut egress = Egress::from_grants(std::slice::from_ref(&origin)).unwrap();
    egress.credentials = Arc::new(vec![airlock::egress::credential::Credential {
        name: "oauth".into(),
        placement: Placement::OAuth2ClientCredentials {
            token_url: format!("{origin}/token"),
            client_id: "app".into(),
            scope: None,
        },
        hosts: vec![airlock::egress::Grant::parse(&origin).unwrap()],
        tokens: Arc::new(tokens),
        secret: zeroize::Zeroizing::new("client-secret-123".into()),
    }]);
    let broken = Environment { egress, ..env() };
    let err = invoke(
        &executor,
        &probe,
        &who,
        &broken,
        "fetch",
        json!({"url": format!("{origin}/x")}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, InvokeError::HostPanic { .. }), "{err:?}");
    let plain = Environment {
        egress: Egress::from_grants(std::slice::from_ref(&origin)).unwrap(),
        ..env()
    };
    let fine = invoke(
        &executor,
        &probe,
        &who,
        &plain,
        "fetch",
        json!({"url": format!("{origin}/x")}),
    )
    .await
    .unwrap();
    assert_eq!(fine["status"], 200);
}

/// A token store that panics: a host bug inside a request's own task.
struct PanickingTokens;

#[async_trait::async_trait]
impl airlock::egress::oauth::TokenStore for PanickingTokens {
    async fn load(&self) -> Result<Option<(zeroize::Zeroizing<String>, i64)>, String> {
        panic!("token store bug")
    }
    async fn take_lease(&self, _: i64, _: i64) -> Result<bool, String> {
        panic!("token store bug")
    }
    async fn save(&self, _: &str, _: i64) -> Result<(), String> {
        panic!("token store bug")
    }
    async fn release(&self) -> Result<(), String> {
        panic!("token store bug")
    }
}

/// An upstream that echoes whatever credential it was sent: in the body, in a header, in an
/// error page, in the URL of a link.
fn echoing_upstream(seen: &http_server_echo::Seen) -> Reply {
    let auth = seen.header("authorization").unwrap_or("none").to_owned();
    let key = seen.header("x-api-key").unwrap_or("none").to_owned();
    let body = format!(
        r#"{{"you_sent":"{auth}","key":"{key}","path":"{}"}}"#,
        seen.path
    );
    let status = if seen.path.contains("fail") { 500 } else { 200 };
    Reply::new(status, &body)
        .header("x-echo-authorization", &auth)
        .header("link", &format!("<https://api.example/next{}>", seen.path))
}

use crate::http_server as http_server_echo;
use airlock::control::state::stores::*;

/// Item 3: every credential form the host injects is masked in what the guest reads (body and
/// headers), and so in the output, errors, audit records and the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_upstream_echoes_of_credentials_are_scrubbed_everywhere() {
    const BEARER: &str = "bearer-SECRET-9f3c1";
    const QUERY: &str = "query secret/+&42";
    const HEADER: &str = "header-SECRET-77aa";
    const PASSWORD: &str = "basic-PASSWORD-0b1";
    let api = TestServer::with_handler(echoing_upstream).await;
    let origin = format!("http://127.0.0.1:{}", api.port);
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    let operator = principal("acme", Role::Operator);
    register(&cp, "acme", "egress-probe").await;
    let secrets = [
        ("bearer", Placement::Bearer, BEARER),
        (
            "query",
            Placement::Query {
                param: "api_key".into(),
            },
            QUERY,
        ),
        (
            "header",
            Placement::Header {
                header: "x-api-key".into(),
            },
            HEADER,
        ),
        (
            "basic",
            Placement::Basic {
                username: "ada".into(),
            },
            PASSWORD,
        ),
    ];
    let basic_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("ada:{PASSWORD}"))
    };
    let mut outputs = Vec::new();
    for (name, placement, secret) in &secrets {
        let connection = format!("api-{name}");
        cp.connection_create(
            &admin,
            ConnectionSpec {
                name: connection.clone(),
                connector: "egress-probe".into(),
                egress: vec![origin.clone()],
                writes_enabled: true,
                ..ConnectionSpec::default()
            },
        )
        .await
        .unwrap();
        cp.credential_set(
            &admin,
            &connection,
            "cred",
            placement.clone(),
            vec![origin.clone()],
            zeroize::Zeroizing::new(secret.to_string()),
        )
        .await
        .unwrap();
        for path in ["/ok", "/fail"] {
            // Hex: what the guest was handed, past any scrubbing of its output.
            let params = json!({"url": format!("{origin}{path}"), "hex": true}).to_string();
            let out = cp.invoke(&operator, &connection, "fetch", &params).await;
            outputs.push(match out {
                Ok(o) => o.output,
                Err(e) => e.to_string(),
            });
        }
    }
    // The upstream did receive every credential: the scrubbing is on the way back.
    let seen = api.seen();
    assert!(
        seen.iter()
            .any(|s| s.header("authorization") == Some(&format!("Bearer {BEARER}")))
    );
    assert!(seen.iter().any(|s| s.header("x-api-key") == Some(HEADER)));
    assert!(
        seen.iter()
            .any(|s| s.path.contains("api_key=query%20secret"))
    );
    cp.flush_audit().await.unwrap();
    let auditor = principal("acme", Role::Auditor);
    let audit = serde_json::to_string(&cp.audit_list(&auditor, 1000).await.unwrap()).unwrap();
    let export =
        serde_json::to_string(&cp.audit_export(&auditor, 0, i64::MAX).await.unwrap()).unwrap();
    drop(cp);
    let mut database = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            database.extend(std::fs::read(path).unwrap());
        }
    }
    let database = String::from_utf8_lossy(&database);
    let everything = format!("{}\n{audit}\n{export}\n{database}", outputs.join("\n"));
    let hex = |t: &str| t.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for leaked in [
        BEARER.to_owned(),
        HEADER.to_owned(),
        PASSWORD.to_owned(),
        QUERY.to_owned(),
        "query%20secret%2F%2B%2642".to_owned(),
        basic_b64.clone(),
        hex(BEARER),
        hex(HEADER),
        hex(PASSWORD),
        hex("query%20secret%2F%2B%2642"),
        hex(&basic_b64),
    ] {
        let leaked = leaked.as_str();
        assert!(
            !everything.contains(leaked),
            "`{leaked}` leaked: {}",
            outputs.join("\n")
        );
    }
    assert!(outputs[0].contains(&hex("[REDACTED]")), "{}", outputs[0]);
    // The masked answer is still the upstream's answer.
    let first: serde_json::Value = serde_json::from_str(&outputs[0]).unwrap();
    assert_eq!(first["status"], 200);
}

/// Item 4: a guest looping on denied opens with 1 MiB names is stopped, named by a rule, and
/// leaves bounded denials, logs and audit messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_a_guest_hammering_denied_effects_is_stopped_and_bounded() {
    let executor = executor();
    let hammer = load(&executor, "denial-hammer").await;
    let who = caller("acme", "c1");
    let started = std::time::Instant::now();
    let err = invoke(
        &executor,
        &hammer,
        &who,
        &env(),
        "hammer",
        json!({"name_bytes": 1 << 20, "rounds": 1_000_000}),
    )
    .await
    .unwrap_err();
    let InvokeError::Denied { denial, .. } = &err else {
        panic!("expected a denial, got {err:?}");
    };
    assert_eq!(denial.rule, airlock::policy::RULE_TOO_MANY_DENIALS, "{err}");
    let text = err.to_string();
    assert!(text.len() < 4096, "{} bytes of error", text.len());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "stopped well before the deadline (took {:?})",
        started.elapsed()
    );
    // Short names too.
    let err = invoke(
        &executor,
        &hammer,
        &who,
        &env(),
        "hammer",
        json!({"name_bytes": 200, "rounds": 1_000_000}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("too-many-denials"), "{err}");
}

/// Installs (or removes) a trigger that makes every audit insert fail: a store that refuses
/// writes, as a full disk, a lock held too long or a broken replica would.
async fn refuse_audit_writes(db: &std::path::Path, refuse: bool) {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    let sql = if refuse {
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END"
    } else {
        "DROP TRIGGER refuse_audit"
    };
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
}

fn sandbox_connection(name: &str) -> ConnectionSpec {
    ConnectionSpec {
        name: name.into(),
        connector: "sandbox".into(),
        writes_enabled: true,
        approval: airlock::control::policies::ApprovalPolicy {
            require_from: Some(airlock::manifest::Risk::Critical),
            ..Default::default()
        },
        ..ConnectionSpec::default()
    }
}

/// Item 2: with the audit store refusing writes, a write does not run (its effect is not
/// applied) and is refused by the rule `audit-unavailable`; once the store takes writes again,
/// the same process recovers and every held record lands in a chain that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_a_write_runs_only_after_its_audit_record_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    let operator = principal("acme", Role::Operator);
    register(&cp, "acme", "sandbox").await;
    cp.connection_create(&admin, sandbox_connection("crm"))
        .await
        .unwrap();
    let create = |id: &str| json!({"type": "items", "id": id, "data": {"name": id}}).to_string();
    cp.invoke(&operator, "crm", "create", &create("before"))
        .await
        .unwrap();
    let db = dir.path().join("airlock.db");
    refuse_audit_writes(&db, true).await;
    let refused = cp
        .invoke(&operator, "crm", "create", &create("during"))
        .await
        .unwrap_err();
    assert_eq!(refused.rule(), "audit-unavailable", "{refused}");
    assert!(
        refused.to_string().contains("nothing was sent"),
        "{refused}"
    );
    // Reads do not change the outside world; their record waits for the store.
    let listed = cp
        .invoke(&operator, "crm", "list", r#"{"type":"items"}"#)
        .await;
    // Either refused (the store is known to be down) or served without the refused write.
    if let Ok(listed) = listed {
        assert!(!listed.output.contains("during"), "{}", listed.output);
    }
    refuse_audit_writes(&db, false).await;
    // The writer retries on its own; a write goes through again in the same process.
    let mut recovered = false;
    for _ in 0..50 {
        match cp
            .invoke(&operator, "crm", "create", &create("after"))
            .await
        {
            Ok(_) => {
                recovered = true;
                break;
            }
            Err(e) if e.rule() == "audit-unavailable" => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(recovered, "the writer never recovered");
    cp.flush_audit().await.unwrap();
    let auditor = principal("acme", Role::Auditor);
    let records = cp.audit_list(&auditor, 1000).await.unwrap();
    let denied = records
        .iter()
        .filter(|r| r.rule == "audit-unavailable" && r.outcome == "denied")
        .count();
    assert!(
        denied >= 1,
        "the refusal itself is recorded once the store is back"
    );
    let listed = cp
        .invoke(&operator, "crm", "list", r#"{"type":"items"}"#)
        .await
        .unwrap();
    assert!(!listed.output.contains("\"during\""), "{}", listed.output);
    assert!(listed.output.contains("\"after\""), "{}", listed.output);
    let report = cp.audit_verify(&auditor, &[]).await.unwrap();
    assert!(report.problem.is_none(), "{report:?}");
}

/// Item 2 through the binary, as the attacker ran it: `airlock invoke` of a write with the
/// audit insert failing exits 2 naming the rule, applies nothing, and the records it could not
/// store are spooled, not dropped; the next command on a healthy store stores them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_cli_write_with_a_failing_audit_store_is_refused_and_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let key = airlock_as(&d, None, &["keygen"]).stdout.trim().to_owned();
    let run = {
        let (d, key) = (d.clone(), key.clone());
        move |args: &[&str]| -> Run { airlock_as(&d, Some(&key), args) }
    };
    let admin = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--role", "admin"]);
        run(&all)
    };
    assert_eq!(admin(&["connector", "register", &path("sandbox")]).code, 0);
    let created = admin(&[
        "connection",
        "create",
        "crm",
        "--connector",
        "sandbox",
        "--writes-enabled",
        "true",
        "--approval-from",
        "critical",
    ]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    refuse_audit_writes(&d.join("airlock.db"), true).await;
    let write = run(&[
        "invoke",
        "crm",
        "create",
        "--params",
        r#"{"type":"items","id":"w1","data":{"name":"widget"}}"#,
        "--role",
        "operator",
    ]);
    assert_eq!(write.code, 2, "{}", write.stderr);
    assert!(
        write.stderr.contains("audit-unavailable"),
        "{}",
        write.stderr
    );
    assert!(write.stderr.contains("spool"), "{}", write.stderr);
    let spooled: Vec<_> = std::fs::read_dir(d.join("audit-spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    refuse_audit_writes(&d.join("airlock.db"), false).await;
    let listed = run(&[
        "invoke",
        "crm",
        "list",
        "--params",
        r#"{"type":"items"}"#,
        "--role",
        "operator",
    ]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stdout.contains("\"count\": 0"), "{}", listed.stdout);
    let audit = run(&["audit", "list", "--json", "--role", "auditor"]);
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    assert!(
        audit.stdout.contains("audit-unavailable"),
        "the spooled refusal is in the trail: {}",
        audit.stdout
    );
    assert!(
        std::fs::read_dir(d.join("audit-spool"))
            .unwrap()
            .next()
            .is_none(),
        "the spool is emptied once its records are stored"
    );
    let verified = run(&["audit", "verify", "--role", "auditor"]);
    assert_eq!(verified.code, 0, "{}", verified.stderr);
}

/// Item 5: each "process" (a control plane of its own on one store) fails once against an
/// upstream that is always down; together they open the circuit as one process would, after
/// `CB_FAILURES_TO_OPEN` (5) failures, and the rest are refused without a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_breaker_failures_are_counted_across_processes() {
    use airlock::control::state::SqliteState;
    let server = TestServer::start(503, "down").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.db");
    let key = airlock::control::vault::generate_key();
    let executor = Arc::new(executor());
    let plane = || async {
        let state = Arc::new(SqliteState::open(&path).await.unwrap());
        control_plane_on(&state, executor.clone(), &key)
    };
    let admin = principal("acme", Role::Admin);
    let operator = principal("acme", Role::Operator);
    let first = plane().await;
    register(&first, "acme", "egress-probe").await;
    first
        .connection_create(
            &admin,
            ConnectionSpec {
                name: "api".into(),
                connector: "egress-probe".into(),
                egress: vec!["http://127.0.0.1:*".into()],
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
    // A POST without an idempotency key is never retried: one attempt per process.
    let send =
        json!({"url": format!("http://127.0.0.1:{}/x", server.port), "method": "POST"}).to_string();
    let mut refused = 0;
    for _ in 0..12 {
        let process = plane().await;
        match process.invoke(&operator, "api", "send", &send).await {
            Err(e) if e.rule() == "circuit-open" => refused += 1,
            Ok(outcome) => assert!(outcome.output.contains("503"), "{}", outcome.output),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        server.seen().len(),
        5,
        "five failures in all open the circuit, whichever processes they were in"
    );
    assert_eq!(refused, 7);
}

/// Item 5: ten processes invoking at once with an OAuth2 credential ask the token endpoint once;
/// the others use the token it stored (sealed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_oauth_tokens_are_shared_by_processes() {
    use airlock::control::state::SqliteState;
    let tokens = TestServer::with_handler(|_| {
        Reply::new(
            200,
            r#"{"access_token":"tok-shared-123","expires_in":3600,"token_type":"Bearer"}"#,
        )
        .after(std::time::Duration::from_millis(200))
    })
    .await;
    let api = TestServer::start(200, "data").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.db");
    let key = airlock::control::vault::generate_key();
    let executor = Arc::new(executor());
    let admin = principal("acme", Role::Admin);
    let setup = {
        let state = Arc::new(SqliteState::open(&path).await.unwrap());
        control_plane_on(&state, executor.clone(), &key)
    };
    register(&setup, "acme", "egress-probe").await;
    setup
        .connection_create(
            &admin,
            ConnectionSpec {
                name: "sf".into(),
                connector: "egress-probe".into(),
                egress: vec!["http://127.0.0.1:*".into()],
                ..ConnectionSpec::default()
            },
        )
        .await
        .unwrap();
    setup
        .credential_set(
            &admin,
            "sf",
            "oauth",
            Placement::OAuth2ClientCredentials {
                token_url: format!("http://127.0.0.1:{}/token", tokens.port),
                client_id: "app".into(),
                scope: None,
            },
            vec![
                format!("http://127.0.0.1:{}", tokens.port),
                format!("http://127.0.0.1:{}", api.port),
            ],
            zeroize::Zeroizing::new("client-secret-shared".into()),
        )
        .await
        .unwrap();
    let fetch = json!({"url": format!("http://127.0.0.1:{}/q", api.port)}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (path, key, executor, fetch) =
            (path.clone(), key.clone(), executor.clone(), fetch.clone());
        tasks.push(tokio::spawn(async move {
            let state = Arc::new(SqliteState::open(&path).await.unwrap());
            let process = control_plane_on(&state, executor, &key);
            process
                .invoke(&principal("acme", Role::Operator), "sf", "fetch", &fetch)
                .await
                .map(|o| o.output)
        }));
    }
    for task in tasks {
        let output = task.await.unwrap().unwrap();
        assert!(output.contains("200"), "{output}");
    }
    assert_eq!(
        tokens.seen().len(),
        1,
        "one token request for ten processes"
    );
    assert_eq!(api.seen().len(), 10);
    assert!(
        api.seen()
            .iter()
            .all(|s| s.header("authorization") == Some("Bearer tok-shared-123"))
    );
    // Stored sealed: the token is not in the database file in clear.
    drop(setup);
    let db = std::fs::read(&path).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("tok-shared-123"));
}

/// Item 8: a guest streaming a request body past its limit gets `HTTP-request-body-size`, and
/// the upstream does not receive the whole of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_request_bodies_are_capped() {
    let server = TestServer::start(200, "ok").await;
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    let mut env = env_with(&["http://127.0.0.1:*"]);
    env.limits.max_request_body_bytes = 4 << 10;
    let send = |bytes: usize| {
        json!({
            "url": format!("http://127.0.0.1:{}/upload", server.port),
            "method": "POST",
            "headers": [["content-type", "text/plain"]],
            "body": "x".repeat(bytes),
        })
    };
    let small = invoke(
        &executor,
        &probe,
        &caller("acme", "c1"),
        &env,
        "send",
        send(1 << 10),
    )
    .await
    .unwrap();
    assert_eq!(small["status"], 200);
    let big = invoke(
        &executor,
        &probe,
        &caller("acme", "c1"),
        &env,
        "send",
        send(64 << 10),
    )
    .await
    .unwrap_err();
    assert!(big.to_string().contains("BodySize"), "{big}");
    assert!(
        server.seen().iter().all(|s| s.body.len() <= 4 << 10),
        "the upstream received a body past the cap"
    );
}

/// Item 8: a rate-limit refusal is a denial (exit 2) that names its rule.
#[test]
fn hardening_cli_rate_limit_refusals_exit_2_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = airlock_as(d, None, &["keygen"]).stdout.trim().to_owned();
    let run = |args: &[&str]| airlock_as(d, Some(&key), args);
    assert_eq!(
        run(&["connector", "register", &path("sandbox"), "--role", "admin"]).code,
        0
    );
    let created = run(&[
        "connection",
        "create",
        "crm",
        "--connector",
        "sandbox",
        "--queries-per-minute",
        "1",
        "--role",
        "admin",
    ]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let list = || {
        run(&[
            "invoke",
            "crm",
            "list",
            "--params",
            r#"{"type":"items"}"#,
            "--role",
            "operator",
        ])
    };
    assert_eq!(list().code, 0);
    let limited = list();
    assert_eq!(limited.code, 2, "{}", limited.stderr);
    assert!(
        limited.stderr.contains("rule `rate-limit`"),
        "{}",
        limited.stderr
    );
}

/// Item 8: names carrying terminal escapes (ESC, OSC, BEL, CR) are escaped in error lines.
#[test]
fn hardening_cli_error_lines_escape_terminal_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = "acme\u{1b}]0;owned\u{7}\r\u{1b}[2Jx";
    let run = airlock_as(
        dir.path(),
        None,
        &[
            "run",
            &path("sandbox"),
            "list",
            "--tenant",
            hostile,
            "--ephemeral",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("invalid tenant"), "{}", run.stderr);
    for raw in ['\u{1b}', '\u{7}', '\r'] {
        assert!(
            !run.stderr.contains(raw),
            "raw {raw:?} in: {:?}",
            run.stderr
        );
    }
}

/// Item 4: a refused invocation is decided before the component is loaded: a process with an
/// empty compile cache refuses without compiling, and compiles for the first allowed call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_policy_is_decided_before_the_component_is_loaded() {
    use airlock::control::state::SqliteState;
    use airlock::engine::PoolSize;
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(
        SqliteState::open(&dir.path().join("airlock.db"))
            .await
            .unwrap(),
    );
    let key = airlock::control::vault::generate_key();
    let cp = control_plane_on(&state, Arc::new(executor()), &key);
    let admin = principal("acme", Role::Admin);
    register(&cp, "acme", "sandbox").await;
    cp.connection_create(&admin, sandbox_connection("crm"))
        .await
        .unwrap();
    drop(cp);
    let cache = dir.path().join("fresh-cache");
    let fresh = airlock::Executor::new(airlock::ExecutorOptions {
        pool: PoolSize {
            max_concurrent_instances: 8,
            max_memory_bytes: 256 << 20,
        },
        cache_dir: Some(cache.clone()),
    })
    .unwrap();
    let process = control_plane_on(&state, Arc::new(fresh), &key);
    let compiled = || {
        std::fs::read_dir(&cache)
            .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
            .unwrap_or(0)
    };
    let viewer = principal("acme", Role::Viewer);
    let refused = process
        .invoke(&viewer, "crm", "list", r#"{"type":"items"}"#)
        .await
        .unwrap_err();
    assert_eq!(refused.exit_code(), 2, "{refused}");
    assert_eq!(compiled(), 0, "a refused call compiled the component");
    let operator = principal("acme", Role::Operator);
    process
        .invoke(&operator, "crm", "list", r#"{"type":"items"}"#)
        .await
        .unwrap();
    assert!(compiled() > 0, "an allowed call loads the component");
}

/// A tmpfs of `size` mounted at a new temporary directory, unmounted when dropped. Root only
/// (CI runs as root); elsewhere `None`, and the caller says why it did not run.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?;
        mounted.status.success().then_some(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the disk holding `path` with one file, returning its size.
fn fill(path: &std::path::Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 << 10];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = file.sync_all();
    written
}

/// Item 2 on a real full disk: at every fill level, a write either is refused before it sends
/// anything or sends with its audit record stored (or spooled and stored later); never the
/// attacker's "sent, exit 0, record lost".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_a_full_disk_never_loses_the_record_of_a_sent_write() {
    let Some(disk) = SmallDisk::mount("48m") else {
        assert!(
            !nix_root(),
            "running as root, but a tmpfs could not be mounted"
        );
        eprintln!("hardening_a_full_disk...: not run: mounting a tmpfs needs root");
        return;
    };
    let api = TestServer::start(201, r#"{"ok":true}"#).await;
    let origin = format!("http://127.0.0.1:{}", api.port);
    let data = disk.path().join("data");
    let filler = disk.path().join("filler");
    let levels: Vec<u64> = vec![
        0,
        1 << 10,
        4 << 10,
        8 << 10,
        16 << 10,
        32 << 10,
        64 << 10,
        128 << 10,
        512 << 10,
        2 << 20,
    ];
    let runs = {
        let (data, filler, origin, levels) =
            (data.clone(), filler.clone(), origin.clone(), levels.clone());
        tokio::task::spawn_blocking(move || {
            let key = airlock_as(&data, None, &["keygen"])
                .stdout
                .trim()
                .to_owned();
            let run = |args: &[&str]| airlock_as(&data, Some(&key), args);
            assert_eq!(
                run(&[
                    "connector",
                    "register",
                    &path("egress-probe"),
                    "--role",
                    "admin"
                ])
                .code,
                0
            );
            let created = run(&[
                "connection",
                "create",
                "hook",
                "--connector",
                "egress-probe",
                "--egress",
                &origin,
                "--writes-enabled",
                "true",
                "--approval-from",
                "critical",
                "--role",
                "admin",
            ]);
            assert_eq!(created.code, 0, "{}", created.stderr);
            let full = fill(&filler);
            let mut runs = Vec::new();
            for level in &levels {
                // Free `level` bytes of a full disk.
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&filler)
                    .unwrap()
                    .set_len(full.saturating_sub(*level))
                    .unwrap();
                let params =
                    json!({"url": format!("{origin}/m{level}"), "method": "POST", "body": "{}"})
                        .to_string();
                runs.push((
                    *level,
                    run(&[
                        "invoke", "hook", "send", "--params", &params, "--role", "operator",
                    ]),
                ));
            }
            std::fs::remove_file(&filler).unwrap();
            let audit = run(&[
                "audit", "list", "--json", "--limit", "1000", "--role", "auditor",
            ]);
            let verified = run(&["audit", "verify", "--role", "auditor"]);
            (runs, audit, verified)
        })
        .await
        .unwrap()
    };
    let (runs, audit, verified) = runs;
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    let records: Vec<serde_json::Value> = serde_json::from_str(&audit.stdout).unwrap();
    let sent: Vec<String> = api.seen().iter().map(|s| s.path.clone()).collect();
    let mut refused = 0;
    for (level, run) in &runs {
        let marker = format!("/m{level}");
        let was_sent = sent.contains(&marker);
        let started = records.iter().any(|r| {
            r["outcome"] == "started"
                && r["params"]["url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(&marker))
        });
        if was_sent {
            assert!(
                started,
                "{level} bytes free: sent without a stored record; exit {}: {}",
                run.code, run.stderr
            );
        } else {
            refused += 1;
            assert_ne!(
                run.code, 0,
                "{level} bytes free: exit 0 but nothing sent: {}",
                run.stderr
            );
        }
    }
    assert!(
        refused > 0,
        "no fill level was tight enough to refuse a write: {:?}",
        runs.iter().map(|(l, r)| (l, r.code)).collect::<Vec<_>>()
    );
    assert!(
        refused < runs.len(),
        "no write went through even with 2 MiB free"
    );
}

/// Whether this process runs as root (mount is then expected to work).
fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Item 1, the class: no code but `runtime/src/time.rs` adds to `Instant::now()` directly
/// (`Instant + Duration` panics on overflow; `time::after` saturates).
#[test]
fn hardening_deadlines_are_built_by_the_time_module_only() {
    let mut offenders = Vec::new();
    let mut dirs = vec![root().join("runtime/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.ends_with("time.rs") || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let compact: String = code.split_whitespace().collect();
                if compact.contains("Instant::now()+") {
                    offenders.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "use crate::time::after/from_now: {offenders:#?}"
    );
}

/// Item 4: a guest's error message of megabytes is cut before it reaches the caller, and an
/// audit record stays a few kilobytes whatever its message and params.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_error_messages_and_audit_records_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    register(&cp, "acme", "denial-hammer").await;
    cp.connection_create(
        &admin,
        ConnectionSpec {
            name: "loud".into(),
            connector: "denial-hammer".into(),
            ..ConnectionSpec::default()
        },
    )
    .await
    .unwrap();
    let operator = principal("acme", Role::Operator);
    let params = json!({"bytes": 8 << 20, "padding": "p".repeat(1 << 20)}).to_string();
    let err = cp
        .invoke(&operator, "loud", "fail", &params)
        .await
        .unwrap_err();
    assert!(
        err.to_string().len() < 16 << 10,
        "{} bytes of error",
        err.to_string().len()
    );
    cp.flush_audit().await.unwrap();
    let records = cp
        .audit_list(&principal("acme", Role::Auditor), 10)
        .await
        .unwrap();
    let failed = records
        .iter()
        .find(|r| r.operation.as_deref() == Some("fail"))
        .unwrap();
    let stored = serde_json::to_string(failed).unwrap();
    assert!(
        stored.len() < 8 << 10,
        "{} bytes in one audit record",
        stored.len()
    );
    assert_eq!(failed.params.as_ref().unwrap()["_truncated"], true);
}

/// Item 2, approvals: an approved write whose record the store refuses does not run and is not
/// lost: it stays approved, and runs once the store takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_an_approved_write_waits_for_the_audit_store_instead_of_failing() {
    use airlock::control::PrincipalKind;
    let dir = tempfile::tempdir().unwrap();
    let (cp, state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    register(&cp, "acme", "sandbox").await;
    cp.connection_create(
        &admin,
        ConnectionSpec {
            name: "crm".into(),
            connector: "sandbox".into(),
            writes_enabled: true,
            ..ConnectionSpec::default()
        },
    )
    .await
    .unwrap();
    let person = |id: &str| airlock::control::Principal {
        tenant: "acme".into(),
        id: id.into(),
        kind: PrincipalKind::User,
        role: Role::Operator,
    };
    let pending = cp
        .invoke(
            &person("olivia"),
            "crm",
            "create",
            r#"{"type":"items","id":"a1","data":{}}"#,
        )
        .await
        .unwrap_err();
    let airlock::control::ControlError::Pending(ticket) = pending else {
        panic!("expected a pending approval: {pending}");
    };
    let db = dir.path().join("airlock.db");
    refuse_audit_writes(&db, true).await;
    let _ = cp
        .approval_decide(&person("bob"), &ticket.request_id, true, None)
        .await;
    let stored = state
        .approval("acme", &ticket.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, "approved", "{stored:?}");
    refuse_audit_writes(&db, false).await;
    let mut executed = false;
    for _ in 0..50 {
        cp.background_round().await;
        let now = state
            .approval("acme", &ticket.request_id)
            .await
            .unwrap()
            .unwrap();
        if now.status == "executed" {
            executed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        executed,
        "the approved write never ran after the store came back"
    );
}
