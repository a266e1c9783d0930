//! Egress through the `wasi:http` choke point, against a real HTTP server on 127.0.0.1:0.

use crate::common;
use crate::http_server;

use airlock::control::state::stores::*;
use airlock::egress::Egress;
use airlock::policy;
use airlock::remedy::Remedy;
use airlock::{Environment, InvokeError};
use common::*;
use http_server::TestServer;
use serde_json::json;

fn env_with(grants: &[&str]) -> Environment {
    let grants: Vec<String> = grants.iter().map(|g| g.to_string()).collect();
    Environment {
        egress: Egress::from_grants(&grants).unwrap(),
        ..env()
    }
}

fn denial_rule(err: &InvokeError) -> &'static str {
    match err {
        InvokeError::Denied { denial, .. } => denial.rule,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_reaches_a_granted_address_and_nothing_else() {
    let server = TestServer::start(200, "hello from upstream").await;
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    let who = caller("acme", "c1");
    let url = format!("http://127.0.0.1:{}/v1/hello", server.port);
    let granted = env_with(&["http://127.0.0.1:*/v1"]);

    let ok = invoke(
        &executor,
        &probe,
        &who,
        &granted,
        "fetch",
        json!({"url": url}),
    )
    .await
    .unwrap();
    assert_eq!(ok, json!({"status": 200, "body": "hello from upstream"}));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/v1/hello")
    );
    assert_eq!(
        seen[0].header("host"),
        Some(format!("127.0.0.1:{}", server.port).as_str())
    );

    // Outside the path prefix, another port, another address spelling: denied before sending.
    for (url, rule) in [
        (
            format!("http://127.0.0.1:{}/v2/x", server.port),
            policy::RULE_EGRESS_NOT_GRANTED,
        ),
        (
            format!("http://127.0.0.1:{}/v1/../admin", server.port),
            policy::RULE_EGRESS_PATH,
        ),
        (
            format!("http://127.0.0.2:{}/v1/x", server.port),
            policy::RULE_EGRESS_NOT_GRANTED,
        ),
        (
            format!("https://127.0.0.1:{}/v1/x", server.port),
            policy::RULE_EGRESS_NOT_GRANTED,
        ),
        (
            format!("http://allowed@127.0.0.1:{}/v1/x", server.port),
            policy::RULE_EGRESS_USERINFO,
        ),
    ] {
        let err = invoke(
            &executor,
            &probe,
            &who,
            &granted,
            "fetch",
            json!({"url": url}),
        )
        .await
        .unwrap_err();
        assert_eq!(denial_rule(&err), rule, "{url}: {err}");
    }
    assert_eq!(
        server.seen().len(),
        1,
        "a denied request reached the server"
    );

    // No grants at all: the rule says how to grant.
    let err = invoke(
        &executor,
        &probe,
        &who,
        &env(),
        "fetch",
        json!({"url": url}),
    )
    .await
    .unwrap_err();
    assert_eq!(denial_rule(&err), policy::RULE_NO_EGRESS_GRANTS);
    // The remedy is data; each front end words it (the CLI's `--egress` is tested in cli.rs).
    match &err {
        InvokeError::Denied { denial, .. } => assert!(
            matches!(&denial.remedy, Some(Remedy::GrantEgress { origin, .. }) if origin.starts_with("http://127.0.0.1:")),
            "{err}"
        ),
        other => panic!("not a denial: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_denies_a_name_that_resolves_to_loopback() {
    let server = TestServer::start(200, "secret internal page").await;
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    // The name is granted; the address it resolves to is not.
    let env = env_with(&["http://localhost:*"]);
    let url = format!("http://localhost:{}/", server.port);
    let err = invoke(
        &executor,
        &probe,
        &caller("acme", "c1"),
        &env,
        "fetch",
        json!({"url": url}),
    )
    .await
    .unwrap_err();
    assert_eq!(denial_rule(&err), policy::RULE_EGRESS_ADDRESS);
    assert!(err.to_string().contains("a loopback address"), "{err}");
    let InvokeError::Denied { guest_error, .. } = &err else {
        unreachable!()
    };
    let guest_error = guest_error.as_deref().unwrap_or("");
    assert!(
        guest_error.contains("DestinationIpProhibited"),
        "the guest sees why: {guest_error}"
    );
    assert!(server.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_holds_read_operations_to_safe_methods() {
    let server = TestServer::start(204, "").await;
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    let env = env_with(&["http://127.0.0.1:*"]);
    let who = caller("acme", "c1");
    let url = format!("http://127.0.0.1:{}/records/7", server.port);
    for method in ["DELETE", "POST", "PUT", "PATCH"] {
        let err = invoke(
            &executor,
            &probe,
            &who,
            &env,
            "fetch",
            json!({"url": url, "method": method}),
        )
        .await
        .unwrap_err();
        assert_eq!(denial_rule(&err), policy::RULE_READ_ONLY_METHOD, "{method}");
        assert!(
            err.to_string()
                .contains("operation `fetch` is declared `read`"),
            "{err}"
        );
    }
    assert!(
        server.seen().is_empty(),
        "a read operation's {} reached the server",
        server.seen()[0].method
    );
    // Declared write: the same DELETE goes out.
    let ok = invoke(
        &executor,
        &probe,
        &who,
        &env,
        "send",
        json!({"url": url, "method": "DELETE"}),
    )
    .await
    .unwrap();
    assert_eq!(ok["status"], 204);
    let posted = invoke(
        &executor,
        &probe,
        &who,
        &env,
        "send",
        json!({"url": url, "method": "POST", "body": "{\"a\":1}"}),
    )
    .await
    .unwrap();
    assert_eq!(posted["status"], 204);
    let seen = server.seen();
    assert_eq!(
        seen.iter().map(|s| s.method.as_str()).collect::<Vec<_>>(),
        ["DELETE", "POST"]
    );
    assert_eq!(seen[1].body, b"{\"a\":1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_works_for_wstd_guests_every_time() {
    // wstd writes the body after `handle`; a sender that drops it sees "connection reset" for
    // some of them. Every one of these must succeed.
    let server = TestServer::start(200, "ok").await;
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    let env = env_with(&["http://127.0.0.1:*"]);
    let url = format!("http://127.0.0.1:{}/ping", server.port);
    for i in 0..50 {
        let ok = invoke(
            &executor,
            &probe,
            &caller("acme", "c1"),
            &env,
            "fetch-wstd",
            json!({"url": url}),
        )
        .await
        .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(ok, json!({"status": 200, "body": "ok"}));
    }
    assert_eq!(server.seen().len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_refuses_headers_a_guest_may_not_set() {
    let server = TestServer::start(200, "ok").await;
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    let env = env_with(&["http://127.0.0.1:*"]);
    let url = format!("http://127.0.0.1:{}/", server.port);
    for header in [
        "host",
        "proxy-authorization",
        "proxy-anything",
        "connection",
        "transfer-encoding",
        "te",
    ] {
        let err = invoke(
            &executor,
            &probe,
            &caller("acme", "c1"),
            &env,
            "fetch",
            json!({"url": url, "headers": [[header, "x"]]}),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("Forbidden"), "{header}: {err}");
    }
    assert!(server.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_grants_live_on_the_connection() {
    use airlock::Role;
    use airlock::control::{ConnectionSpec, ConnectionUpdate, ControlError};
    let server = TestServer::start(200, "via the control plane").await;
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    let operator = principal("acme", Role::Operator);
    cp.register(
        &admin,
        &std::fs::read(guest("egress-probe")).unwrap(),
        &|_| {},
    )
    .await
    .unwrap();
    let bad = ConnectionSpec {
        name: "api".into(),
        connector: "egress-probe".into(),
        egress: vec![
            "http://127.0.0.1:*".into(),
            "https://allowed@evil.example".into(),
            "ftp://x.example".into(),
        ],
        ..ConnectionSpec::default()
    };
    let ControlError::Invalid(problems) = cp.connection_create(&admin, bad).await.unwrap_err()
    else {
        panic!()
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("user info")),
        "{problems:?}"
    );

    let spec = ConnectionSpec {
        name: "api".into(),
        connector: "egress-probe".into(),
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    let params = json!({"url": format!("http://127.0.0.1:{}/x", server.port)}).to_string();
    let err = cp
        .invoke(&operator, "api", "fetch", &params)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("no-egress-grants"), "{err}");

    let grant = ConnectionUpdate {
        egress: Some(vec!["http://127.0.0.1:*".into()]),
        ..Default::default()
    };
    cp.connection_update(&admin, "api", grant).await.unwrap();
    let ok = cp.invoke(&operator, "api", "fetch", &params).await.unwrap();
    assert!(ok.output.contains("via the control plane"), "{}", ok.output);
    assert_eq!(server.seen().len(), 1);
    cp.flush_audit().await.unwrap();
    let audit = cp
        .audit_list(&principal("acme", Role::Auditor), 10)
        .await
        .unwrap();
    let denied = audit
        .iter()
        .find(|r| r.outcome == "denied")
        .expect("the denied request is audited");
    assert_eq!(denied.rule, "no-egress-grants");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_injects_credentials_the_guest_never_sees_and_only_where_bound() {
    use airlock::Role;
    use airlock::control::{ConnectionSpec, ControlError};
    use airlock::egress::credential::Placement;
    const SECRET: &str = "s3cr3t-TOKEN-4f9a";
    let bound = TestServer::start(200, "bound upstream").await;
    let other = TestServer::start(200, "other upstream").await;
    let redirecting = TestServer::start(302, "").await;
    let dir = tempfile::tempdir().unwrap();
    let (cp, state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    let operator = principal("acme", Role::Operator);
    cp.register(
        &admin,
        &std::fs::read(guest("egress-probe")).unwrap(),
        &|_| {},
    )
    .await
    .unwrap();
    let spec = ConnectionSpec {
        name: "api".into(),
        connector: "egress-probe".into(),
        egress: vec!["http://127.0.0.1:*".into()],
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    let host = format!("http://127.0.0.1:{}", bound.port);
    let secret = || zeroize::Zeroizing::new(SECRET.to_owned());
    cp.credential_set(
        &admin,
        "api",
        "token",
        Placement::Bearer,
        vec![host.clone()],
        secret(),
    )
    .await
    .unwrap();

    let fetch = |port: u16, path: &str| {
        json!({"url": format!("http://127.0.0.1:{port}{path}")}).to_string()
    };
    let out = cp
        .invoke(&operator, "api", "fetch", &fetch(bound.port, "/me"))
        .await
        .unwrap();
    assert_eq!(
        bound.seen()[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert!(
        !out.output.contains(SECRET),
        "the guest's output holds the secret"
    );

    // Another origin, even one the connection may reach, gets no credential.
    cp.invoke(&operator, "api", "fetch", &fetch(other.port, "/me"))
        .await
        .unwrap();
    assert_eq!(
        other.seen()[0].header("authorization"),
        None,
        "the credential went to another origin"
    );
    // Redirects are not followed by the host: the guest gets the 302 and must ask again.
    let redirected = cp
        .invoke(
            &operator,
            "api",
            "fetch",
            &fetch(redirecting.port, "/login"),
        )
        .await
        .unwrap();
    assert!(redirected.output.contains("302"), "{}", redirected.output);

    // Other placements.
    cp.credential_set(
        &admin,
        "api",
        "token",
        Placement::Query {
            param: "api_key".into(),
        },
        vec![host.clone()],
        secret(),
    )
    .await
    .unwrap();
    cp.invoke(&operator, "api", "fetch", &fetch(bound.port, "/search?q=x"))
        .await
        .unwrap();
    assert_eq!(
        bound.seen()[1].path,
        format!("/search?q=x&api_key={SECRET}")
    );
    cp.credential_set(
        &admin,
        "api",
        "token",
        Placement::Header {
            header: "X-Api-Key".into(),
        },
        vec![host.clone()],
        secret(),
    )
    .await
    .unwrap();
    cp.invoke(&operator, "api", "fetch", &fetch(bound.port, "/"))
        .await
        .unwrap();
    assert_eq!(bound.seen()[2].header("x-api-key"), Some(SECRET));
    let bad = cp
        .credential_set(
            &admin,
            "api",
            "bad",
            Placement::Header {
                header: "Host".into(),
            },
            vec![],
            zeroize::Zeroizing::new("a\nb".into()),
        )
        .await
        .unwrap_err();
    let ControlError::Invalid(problems) = &bad else {
        panic!("{bad:?}")
    };
    assert_eq!(problems.len(), 3, "{problems:?}");

    // Metadata only, everywhere a human or the audit log looks.
    let listed =
        serde_json::to_string(&cp.credential_list(&operator, "api").await.unwrap()).unwrap();
    assert!(
        listed.contains("api-key-header") && !listed.contains(SECRET),
        "{listed}"
    );
    assert_eq!(
        rule_of_control(
            cp.credential_list(&principal("acme", Role::Viewer), "api")
                .await
                .unwrap_err()
        ),
        "operator-sees-credential-metadata"
    );
    cp.flush_audit().await.unwrap();
    let records = state.list_audit("acme", 1000).await.unwrap();
    for (_, record) in &records {
        assert!(!record.contains(SECRET), "{record}");
    }
    // The host's own use of the secret is on the record.
    assert!(
        records
            .iter()
            .any(|(_, r)| r.contains("\"action\":\"credential.access\"")
                && r.contains("\"principal\":\"airlock-host\"")),
        "no credential.access record"
    );
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is stored in plaintext"
        );
    }
    // Another tenant cannot see or use it.
    let err = cp
        .credential_list(&principal("globex", Role::Admin), "api")
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::NotFound { .. }), "{err:?}");
}

fn rule_of_control(e: airlock::control::ControlError) -> String {
    match e {
        airlock::control::ControlError::Denied { rule, .. } => rule,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_retries_honor_retry_after_and_spare_non_idempotent_requests() {
    use http_server::Reply;
    let server = TestServer::scripted(
        vec![
            Reply::new(429, "slow down").header("Retry-After", "1"),
            Reply::new(200, "ok"),
            Reply::new(503, "busy"),
            Reply::new(503, "busy"),
        ],
        Reply::new(200, "ok"),
    )
    .await;
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    let env = env_with(&["http://127.0.0.1:*"]);
    let who = caller("acme", "c1");
    let url = format!("http://127.0.0.1:{}/items", server.port);

    // A GET that meets 429 + Retry-After: 1 waits a second, then succeeds.
    let started = std::time::Instant::now();
    let ok = invoke(&executor, &probe, &who, &env, "fetch", json!({"url": url}))
        .await
        .unwrap();
    assert_eq!(ok["status"], 200, "{ok}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was not honored: {:?}",
        started.elapsed()
    );
    assert_eq!(server.seen().len(), 2);

    // A POST without an idempotency key is sent once, whatever the answer.
    let posted = invoke(
        &executor,
        &probe,
        &who,
        &env,
        "send",
        json!({"url": url, "method": "POST", "body": "{}"}),
    )
    .await
    .unwrap();
    assert_eq!(posted["status"], 503);
    assert_eq!(
        server.seen().len(),
        3,
        "a POST without an idempotency key was retried"
    );

    // With one, it is retried (the body sent again, whole).
    let keyed = json!({"url": url, "method": "POST", "body": "{\"n\":1}", "headers": [["Idempotency-Key", "k-1"]]});
    let posted = invoke(&executor, &probe, &who, &env, "send", keyed)
        .await
        .unwrap();
    assert_eq!(posted["status"], 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[3].body, seen[4].body);
    assert_eq!(seen[4].body, b"{\"n\":1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_breaker_opens_fails_fast_probes_and_closes() {
    use airlock::egress::resilience::{BreakerPolicy, Resilience, RetryPolicy};
    use http_server::Reply;
    use std::time::Duration;
    let server =
        TestServer::scripted(vec![Reply::new(503, "down"); 3], Reply::new(200, "up")).await;
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    let mut env = env_with(&["http://127.0.0.1:*"]);
    env.egress.resilience = std::sync::Arc::new(Resilience {
        retry: RetryPolicy {
            max_attempts: 1,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(10),
        },
        breaker: BreakerPolicy {
            failures_to_open: 3,
            cooldown: Duration::from_millis(300),
        },
    });
    let who = caller("acme", "c1");
    let url = format!("http://127.0.0.1:{}/", server.port);
    let origin = format!("http://127.0.0.1:{}", server.port);
    for _ in 0..3 {
        let down = invoke(&executor, &probe, &who, &env, "fetch", json!({"url": url}))
            .await
            .unwrap();
        assert_eq!(down["status"], 503);
    }
    assert_eq!(env.egress.breakers.state(&origin), "open");
    let err = invoke(&executor, &probe, &who, &env, "fetch", json!({"url": url}))
        .await
        .unwrap_err();
    assert_eq!(denial_rule(&err), "circuit-open", "{err}");
    assert_eq!(
        server.seen().len(),
        3,
        "an open circuit let a request through"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let probe_ok = invoke(&executor, &probe, &who, &env, "fetch", json!({"url": url}))
        .await
        .unwrap();
    assert_eq!(probe_ok["status"], 200);
    assert_eq!(env.egress.breakers.state(&origin), "closed");
    invoke(&executor, &probe, &who, &env, "fetch", json!({"url": url}))
        .await
        .unwrap();
    assert_eq!(server.seen().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_caps_response_headers_and_body() {
    use http_server::Reply;
    let mut many = Reply::new(200, "ok");
    for i in 0..101 {
        many = many.header(&format!("x-h{i}"), "v");
    }
    let huge = Reply::new(
        200,
        &"x".repeat(airlock::capability::http::MAX_RESPONSE_BODY_BYTES + 1),
    );
    let server = TestServer::scripted(vec![many, huge], Reply::new(200, "fine")).await;
    let executor = executor();
    let probe = load(&executor, "egress-probe").await;
    let env = env_with(&["http://127.0.0.1:*"]);
    let who = caller("acme", "c1");
    let url = json!({"url": format!("http://127.0.0.1:{}/", server.port)});
    let err = invoke(&executor, &probe, &who, &env, "fetch", url.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("HttpResponseHeaderSectionSize"),
        "{err}"
    );
    // The body stops at the cap: the guest's read fails instead of the host buffering it all.
    // (wasmtime-wasi-http does not yet surface the error code on the stream: `http-error-code`
    // answers none.)
    let err = invoke(&executor, &probe, &who, &env, "fetch", url.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reading body"), "{err}");
    let ok = invoke(&executor, &probe, &who, &env, "fetch", url)
        .await
        .unwrap();
    assert_eq!(ok["body"], "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_oauth2_fifty_concurrent_invocations_cause_one_token_request() {
    use airlock::egress::credential::{Credential, Placement};
    use std::sync::Arc;
    let tokens = TestServer::start(
        200,
        r#"{"access_token":"tok-abc","expires_in":3600,"token_type":"Bearer"}"#,
    )
    .await;
    let api = TestServer::start(200, "data").await;
    let executor = Arc::new(executor());
    let probe = Arc::new(load(&executor, "egress-probe").await);
    let mut env = env_with(&["http://127.0.0.1:*"]);
    let token_url = format!("http://127.0.0.1:{}/oauth/token", tokens.port);
    let credential = Credential {
        name: "sf".into(),
        placement: Placement::OAuth2ClientCredentials {
            token_url,
            client_id: "app-1".into(),
            scope: Some("api".into()),
        },
        hosts: vec![
            airlock::egress::Grant::parse(&format!("http://127.0.0.1:{}", api.port)).unwrap(),
            airlock::egress::Grant::parse(&format!("http://127.0.0.1:{}", tokens.port)).unwrap(),
        ],
        secret: zeroize::Zeroizing::new("client-secret-xyz".into()),
        tokens: Default::default(),
    };
    let cache = credential.tokens.clone();
    env.egress.credentials = Arc::new(vec![credential]);
    let url = json!({"url": format!("http://127.0.0.1:{}/query", api.port)});
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (executor, probe, env, url) =
            (executor.clone(), probe.clone(), env.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            invoke(&executor, &probe, &caller("acme", "c1"), &env, "fetch", url).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap()["status"], 200);
    }
    assert_eq!(
        tokens.seen().len(),
        1,
        "50 concurrent invocations must share one token refresh"
    );
    assert_eq!(cache.fetched(), 1);
    let token_request = &tokens.seen()[0];
    assert_eq!(token_request.method, "POST");
    let form = String::from_utf8_lossy(&token_request.body).into_owned();
    assert!(
        form.contains("grant_type=client_credentials")
            && form.contains("client_id=app-1")
            && form.contains("scope=api"),
        "{form}"
    );
    let seen = api.seen();
    assert_eq!(seen.len(), 50);
    assert!(
        seen.iter()
            .all(|s| s.header("authorization") == Some("Bearer tok-abc"))
    );
    assert!(
        seen.iter()
            .all(|s| !String::from_utf8_lossy(&s.body).contains("client-secret-xyz"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_oauth2_refresh_tokens_rotate_and_the_rotation_is_stored() {
    use airlock::Role;
    use airlock::control::ConnectionSpec;
    use airlock::control::state::SqliteState;
    use airlock::control::vault::generate_key;
    use airlock::egress::credential::Placement;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    // An authorization server that rotates refresh tokens and refuses a used one, and an API
    // that takes only the newest access token.
    let current = Arc::new(AtomicU32::new(0));
    let issued = current.clone();
    let auth = TestServer::with_handler(move |req| {
        let form = String::from_utf8_lossy(&req.body).into_owned();
        let n = issued.load(Ordering::SeqCst);
        if !form.contains(&format!("refresh_token=rt-{n}&")) || !form.contains("grant_type=refresh_token") {
            return http_server::Reply::new(400, r#"{"error":"invalid_grant"}"#);
        }
        issued.store(n + 1, Ordering::SeqCst);
        let body = json!({"access_token": format!("at-{}", n + 1), "refresh_token": format!("rt-{}", n + 1), "expires_in": 1});
        http_server::Reply::new(200, &body.to_string())
    })
    .await;
    let valid = current.clone();
    let api = TestServer::with_handler(move |req| {
        let want = format!("Bearer at-{}", valid.load(Ordering::SeqCst));
        if req.header("authorization") == Some(want.as_str()) {
            http_server::Reply::new(200, "fresh")
        } else {
            http_server::Reply::new(401, "stale token")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = generate_key();
    let plane = |key: String| {
        let path = dir.path().join("airlock.db");
        async move {
            let state = Arc::new(SqliteState::open(&path).await.unwrap());
            control_plane_on(&state, Arc::new(executor()), &key)
        }
    };
    let cp = plane(key.clone()).await;
    let admin = principal("acme", Role::Admin);
    let op = principal("acme", Role::Operator);
    cp.register(
        &admin,
        &std::fs::read(guest("egress-probe")).unwrap(),
        &|_| {},
    )
    .await
    .unwrap();
    let (auth_origin, api_origin) = (
        format!("http://127.0.0.1:{}", auth.port),
        format!("http://127.0.0.1:{}", api.port),
    );
    let spec = ConnectionSpec {
        name: "api".into(),
        connector: "egress-probe".into(),
        egress: vec!["http://127.0.0.1:*".into()],
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    let placement = Placement::OAuth2RefreshToken {
        token_url: format!("{auth_origin}/token"),
        client_id: "app".into(),
    };
    cp.credential_set(
        &admin,
        "api",
        "oauth",
        placement,
        vec![api_origin.clone(), auth_origin],
        zeroize::Zeroizing::new("rt-0".into()),
    )
    .await
    .unwrap();
    let fetch = json!({"url": format!("{api_origin}/me")}).to_string();
    let body = |out: airlock::Outcome| {
        serde_json::from_str::<serde_json::Value>(&out.output).unwrap()["body"].clone()
    };

    assert_eq!(
        body(cp.invoke(&op, "api", "fetch", &fetch).await.unwrap()),
        "fresh"
    );
    // The token lives 1 s and is refreshed half-way: the next call uses the rotated refresh token.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(
        body(cp.invoke(&op, "api", "fetch", &fetch).await.unwrap()),
        "fresh"
    );
    // Another process (a new control plane on the same store), once the shared access token is
    // due for a refresh, starts from the stored, rotated refresh token; the original one was
    // spent and would be refused.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let other = plane(key).await;
    assert_eq!(
        body(other.invoke(&op, "api", "fetch", &fetch).await.unwrap()),
        "fresh"
    );
    let grants: Vec<String> = auth
        .seen()
        .iter()
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    assert_eq!(grants.len(), 3, "{grants:?}");
    for (i, form) in grants.iter().enumerate() {
        assert!(
            form.starts_with(&format!("grant_type=refresh_token&refresh_token=rt-{i}&")),
            "{form}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_declared_read_routes_count_only_where_the_connection_accepts_them() {
    use airlock::Role;
    use airlock::control::{ConnectionSpec, ConnectionUpdate};
    let server = TestServer::start(200, r#"{"data":{}}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    let op = principal("acme", Role::Operator);
    let registered = cp
        .register(
            &admin,
            &std::fs::read(guest("egress-probe")).unwrap(),
            &|_| {},
        )
        .await
        .unwrap();
    let fetch = registered
        .connector
        .manifest
        .operations
        .iter()
        .find(|o| o.name == "fetch")
        .unwrap();
    assert_eq!(fetch.read_routes, ["POST http://127.0.0.1:*/graphql"]);
    let spec = ConnectionSpec {
        name: "gql".into(),
        connector: "egress-probe".into(),
        egress: vec!["http://127.0.0.1:*".into()],
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    let query = |path: &str, method: &str| {
        json!({"url": format!("http://127.0.0.1:{}{path}", server.port), "method": method, "body": "{\"query\":\"{ me { id } }\"}"}).to_string()
    };
    let rule = |e: airlock::control::ControlError| match e {
        airlock::control::ControlError::Invoke(InvokeError::Denied { denial, .. }) => denial.rule,
        other => panic!("expected a denial, got {other:?}"),
    };
    // Not accepted: the declared route is still a POST from a read operation.
    assert_eq!(
        rule(
            cp.invoke(&op, "gql", "fetch", &query("/graphql", "POST"))
                .await
                .unwrap_err()
        ),
        policy::RULE_READ_ONLY_METHOD
    );
    cp.connection_update(
        &admin,
        "gql",
        ConnectionUpdate {
            accept_read_routes: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ok = cp
        .invoke(&op, "gql", "fetch", &query("/graphql", "POST"))
        .await
        .unwrap();
    assert!(ok.output.contains("200"), "{}", ok.output);
    // Only the declared method and route.
    assert_eq!(
        rule(
            cp.invoke(&op, "gql", "fetch", &query("/graphql", "DELETE"))
                .await
                .unwrap_err()
        ),
        policy::RULE_READ_ONLY_METHOD
    );
    assert_eq!(
        rule(
            cp.invoke(&op, "gql", "fetch", &query("/admin", "POST"))
                .await
                .unwrap_err()
        ),
        policy::RULE_READ_ONLY_METHOD
    );
    assert_eq!(server.seen().len(), 1);
    assert_eq!(server.seen()[0].method, "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_breaker_state_is_kept_in_the_store_across_processes() {
    use airlock::Role;
    use airlock::control::ConnectionSpec;
    use airlock::control::state::{SqliteState, now_ms};
    use airlock::control::vault::generate_key;
    use http_server::Reply;
    use std::sync::Arc;
    // Five failures open the circuit (CB_FAILURES_TO_OPEN's default); the probe then succeeds.
    // The probe is slow, so the other process asks while it is in flight.
    let mut script = vec![Reply::new(503, "down"); 5];
    script.push(Reply::new(200, "up").after(std::time::Duration::from_millis(300)));
    let server = TestServer::scripted(script, Reply::new(200, "up")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.db");
    let key = generate_key();
    // Each control plane on the same store stands for another process (or a restart).
    let plane = || {
        let (path, key) = (path.clone(), key.clone());
        async move {
            let state = Arc::new(SqliteState::open(&path).await.unwrap());
            let cp = control_plane_on(&state, Arc::new(executor()), &key);
            (cp, state)
        }
    };
    let (first, state) = plane().await;
    let admin = principal("acme", Role::Admin);
    let op = principal("acme", Role::Operator);
    first
        .register(
            &admin,
            &std::fs::read(guest("egress-probe")).unwrap(),
            &|_| {},
        )
        .await
        .unwrap();
    let spec = ConnectionSpec {
        name: "api".into(),
        connector: "egress-probe".into(),
        egress: vec!["http://127.0.0.1:*".into()],
        ..ConnectionSpec::default()
    };
    first.connection_create(&admin, spec).await.unwrap();
    let origin = format!("http://127.0.0.1:{}", server.port);
    let fetch = json!({"url": format!("{origin}/")}).to_string();
    let is_open_denial = |result: &Result<airlock::Outcome, airlock::control::ControlError>| matches!(result, Err(e) if e.rule() == "circuit-open");

    // Retried GETs fail until the fifth failure opens the circuit.
    let mut opened = false;
    for _ in 0..5 {
        if is_open_denial(&first.invoke(&op, "api", "fetch", &fetch).await) {
            opened = true;
            break;
        }
    }
    assert!(opened, "five 503s did not open the circuit");
    assert_eq!(server.seen().len(), 5);
    let stored = state
        .breaker("acme", "api", &origin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, "open");
    assert!(stored.until_ms > now_ms() + 30_000, "{stored:?}");

    // Another process fails fast at once, without a request of its own.
    let (second, _) = plane().await;
    let result = second.invoke(&op, "api", "fetch", &fetch).await;
    assert!(is_open_denial(&result), "{result:?}");
    assert_eq!(
        server.seen().len(),
        5,
        "an open circuit let a request through"
    );

    // The cooldown runs out: of two processes asking at once, exactly one sends the probe.
    state
        .set_breaker(
            "acme",
            "api",
            &origin,
            airlock::control::state::BreakerState::Open,
            now_ms() - 1,
        )
        .await
        .unwrap();
    let ((third, _), (fourth, _)) = (plane().await, plane().await);
    let (a, b) = tokio::join!(
        third.invoke(&op, "api", "fetch", &fetch),
        fourth.invoke(&op, "api", "fetch", &fetch)
    );
    assert_eq!(server.seen().len(), 6, "more than one probe: {a:?} {b:?}");
    assert!(
        a.is_ok() != b.is_ok() && (is_open_denial(&a) || is_open_denial(&b)),
        "{a:?} {b:?}"
    );
    // The probe succeeded: closed for everyone, the process that lost the race included.
    let stored = state
        .breaker("acme", "api", &origin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, "closed");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for cp in [&third, &fourth] {
        cp.invoke(&op, "api", "fetch", &fetch).await.unwrap();
    }
    assert_eq!(server.seen().len(), 8);
}

/// Splits a compact JWT and checks its signature with `public_key` (ES256, fixed encoding).
fn verified_claims(jwt: &str, public_key: &[u8]) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let decode = |p: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .ok()
    };
    let mut parts = jwt.split('.');
    let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, public_key)
        .verify(format!("{header}.{claims}").as_bytes(), &decode(signature)?)
        .ok()?;
    serde_json::from_slice(&decode(claims)?).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_oauth2_jwt_bearer_assertions_are_signed_by_the_host() {
    use airlock::Role;
    use airlock::control::state::SqliteState;
    use airlock::control::vault::generate_key;
    use airlock::control::{ConnectionSpec, ControlError};
    use airlock::egress::credential::Placement;
    use airlock::egress::jwt::Algorithm;
    use base64::Engine as _;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use std::sync::Arc;
    // A service account's key, as a provider hands it out (PKCS#8 PEM).
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let public = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let body64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{body64}\n-----END PRIVATE KEY-----\n");

    // The authorization server checks the assertion as Google's or Salesforce's does.
    let auth = TestServer::with_handler(move |req| {
        let form = String::from_utf8_lossy(&req.body).into_owned();
        let field = |name: &str| {
            form.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
        };
        if field("grant_type").as_deref()
            != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
        {
            return http_server::Reply::new(400, r#"{"error":"unsupported_grant_type"}"#);
        }
        let Some(claims) = field("assertion").and_then(|a| verified_claims(&a, &public)) else {
            return http_server::Reply::new(
                400,
                r#"{"error":"invalid_grant","error_description":"bad signature"}"#,
            );
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let fresh = claims["exp"]
            .as_u64()
            .is_some_and(|e| e > now && e <= now + 3600);
        if claims["iss"] != "svc@acme.example"
            || claims["sub"] != "ops@acme.example"
            || claims["scope"] != "records.read"
            || !claims["aud"]
                .as_str()
                .is_some_and(|a| a.ends_with("/token"))
            || !fresh
        {
            return http_server::Reply::new(400, r#"{"error":"invalid_grant"}"#);
        }
        http_server::Reply::new(
            200,
            r#"{"access_token":"jwt-granted-token","expires_in":3600,"token_type":"Bearer"}"#,
        )
    })
    .await;
    let api = TestServer::with_handler(|req| {
        if req.header("authorization") == Some("Bearer jwt-granted-token") {
            http_server::Reply::new(200, "records")
        } else {
            http_server::Reply::new(401, r#"{"error":"invalid_token"}"#)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(
        SqliteState::open(&dir.path().join("airlock.db"))
            .await
            .unwrap(),
    );
    let cp = control_plane_on(&state, Arc::new(executor()), &generate_key());
    let admin = principal("acme", Role::Admin);
    let op = principal("acme", Role::Operator);
    cp.register(
        &admin,
        &std::fs::read(guest("egress-probe")).unwrap(),
        &|_| {},
    )
    .await
    .unwrap();
    let spec = ConnectionSpec {
        name: "api".into(),
        connector: "egress-probe".into(),
        egress: vec!["http://127.0.0.1:*".into()],
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    let (auth_origin, api_origin) = (
        format!("http://127.0.0.1:{}", auth.port),
        format!("http://127.0.0.1:{}", api.port),
    );
    let placement = |algorithm| Placement::OAuth2JwtBearer {
        token_url: format!("{auth_origin}/token"),
        issuer: "svc@acme.example".into(),
        subject: Some("ops@acme.example".into()),
        audience: None,
        scope: Some("records.read".into()),
        key_id: Some("key-1".into()),
        algorithm,
    };
    let hosts = vec![api_origin.clone(), auth_origin.clone()];

    // A key that does not fit, or no key at all, is refused with the reason and without the key.
    for (algorithm, secret, expected) in [
        (Algorithm::RS256, pem.clone(), "RS256"),
        (
            Algorithm::ES256,
            "not-a-key".to_owned(),
            "not a PEM private key",
        ),
    ] {
        let err = cp
            .credential_set(
                &admin,
                "api",
                "sa",
                placement(algorithm),
                hosts.clone(),
                secret.clone().into(),
            )
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ControlError::Invalid(_)) && text.contains(expected),
            "{text}"
        );
        assert!(
            !text.contains(&body64[..40]) && !text.contains("not-a-key"),
            "{text}"
        );
    }
    cp.credential_set(
        &admin,
        "api",
        "sa",
        placement(Algorithm::ES256),
        hosts,
        pem.clone().into(),
    )
    .await
    .unwrap();

    let fetch = json!({"url": format!("{api_origin}/records")}).to_string();
    for _ in 0..3 {
        let out = cp.invoke(&op, "api", "fetch", &fetch).await.unwrap();
        assert!(out.output.contains("records"), "{}", out.output);
        assert!(!out.output.contains("jwt-granted-token"));
    }
    assert_eq!(
        auth.seen().len(),
        1,
        "the access token is cached until near its expiry"
    );
    // The key went nowhere: not upstream, not into the audit log.
    for seen in api.seen().iter().chain(auth.seen().iter()) {
        assert!(!String::from_utf8_lossy(&seen.body).contains(&body64[..40]));
    }
    let audit = serde_json::to_string(&cp.audit_list(&admin, 100).await.unwrap()).unwrap();
    assert!(!audit.contains(&body64[..40]) && !audit.contains("jwt-granted-token"));
}
