//! The HTTP API (issue 11) over real HTTP on 127.0.0.1:0: tokens to principals, the same
//! authorization as the CLI, problem documents with the rule and the remedy, tenants apart,
//! bodies bounded, approvals followed to completion, and a graceful stop.

use crate::common;
use airlock::Role;
use airlock::control::access::TokenSpec;
use airlock::control::{ConnectionSpec, ControlPlane, PrincipalKind};
use serde_json::{Value, json};
use std::sync::Arc;

struct Api {
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    cp: Arc<ControlPlane>,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

impl Api {
    async fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let (cp, _state) = common::control_plane(dir.path()).await;
        let cp = Arc::new(cp);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(airlock_server::serve(
            listener,
            cp.clone(),
            std::future::pending(),
        ));
        Api {
            base,
            client: reqwest::Client::new(),
            _dir: dir,
            cp,
        }
    }

    async fn token(&self, tenant: &str, kind: PrincipalKind, subject: &str, role: Role) -> String {
        self.cp
            .token_create(
                &common::principal(tenant, Role::Admin),
                TokenSpec {
                    kind,
                    subject: subject.into(),
                    role,
                    label: None,
                    expires_in: None,
                },
            )
            .await
            .unwrap()
            .token
            .to_string()
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Reply {
            status,
            headers,
            json: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }
}

async fn setup(api: &Api, tenant: &str) {
    common::register(&api.cp, tenant, "sandbox").await;
    for (name, writes) in [("crm", true), ("ledger", false)] {
        api.cp
            .connection_create(
                &common::principal(tenant, Role::Admin),
                ConnectionSpec {
                    name: name.into(),
                    connector: "sandbox".into(),
                    writes_enabled: writes,
                    // Medium-risk writes (create) run at once; high-risk ones (delete) wait.
                    approval: airlock::control::policies::ApprovalPolicy {
                        require_from: Some(airlock::manifest::Risk::High),
                        ..Default::default()
                    },
                    ..ConnectionSpec::default()
                },
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tokens_authorization_and_problems_over_http() {
    let api = Api::start().await;
    setup(&api, "acme").await;
    setup(&api, "globex").await;
    assert_eq!(api.call("GET", "/healthz", None, None).await.status, 200);
    assert_eq!(api.call("GET", "/readyz", None, None).await.status, 200);

    // No token, a malformed one, an unknown one: 401 alike, with a challenge.
    for token in [
        None,
        Some("nonsense"),
        Some("alk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let r = api.call("GET", "/v1/connections", token, None).await;
        assert_eq!(r.status, 401, "{token:?}: {:?}", r.json);
        assert_eq!(r.json["kind"], "unauthenticated");
        assert!(r.headers.contains_key("www-authenticate"));
        assert_eq!(r.headers["content-type"], "application/problem+json");
    }

    // An admin token makes the others over the API; the token is in that answer only.
    let admin = api
        .token("acme", PrincipalKind::User, "ada", Role::Admin)
        .await;
    let made = api
        .call(
            "POST",
            "/v1/tokens",
            Some(&admin),
            Some(json!({"for_user": "olivia", "role": "operator", "label": "ci"}).to_string()),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.json);
    let olivia = made.json["token"].as_str().unwrap().to_owned();
    let listed = api.call("GET", "/v1/tokens", Some(&admin), None).await;
    let secret = olivia.splitn(3, '_').nth(2).unwrap();
    assert!(
        !listed.json.to_string().contains(secret),
        "{:?}",
        listed.json
    );
    let bad = api
        .call(
            "POST",
            "/v1/tokens",
            Some(&admin),
            Some(json!({"for_user": "x", "colour": "red"}).to_string()),
        )
        .await;
    assert_eq!(
        (bad.status, bad.json["kind"].as_str()),
        (422, Some("invalid-input"))
    );
    // Operators may not make tokens: the rule, as data.
    let refused = api
        .call(
            "POST",
            "/v1/tokens",
            Some(&olivia),
            Some(json!({"for_user": "mallory", "role": "admin"}).to_string()),
        )
        .await;
    assert_eq!(
        (refused.status, refused.json["rule"].as_str()),
        (403, Some("admin-manages-tokens"))
    );

    // The tenant's connections, and not another's: 404, never 403.
    let list = api
        .call("GET", "/v1/connections", Some(&olivia), None)
        .await;
    assert_eq!(list.status, 200);
    let names: Vec<&str> = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let globex_admin = api
        .token("globex", PrincipalKind::User, "gia", Role::Admin)
        .await;
    let theirs = api
        .call("GET", "/v1/connections/crm", Some(&globex_admin), None)
        .await;
    assert_eq!(theirs.status, 200, "globex has its own crm");
    api.cp
        .connection_create(
            &common::principal("globex", Role::Admin),
            ConnectionSpec {
                name: "secret-crm".into(),
                connector: "sandbox".into(),
                ..ConnectionSpec::default()
            },
        )
        .await
        .unwrap();
    let other = api
        .call("GET", "/v1/connections/secret-crm", Some(&olivia), None)
        .await;
    assert_eq!(
        (other.status, other.json["kind"].as_str()),
        (404, Some("not-found"))
    );
    assert_eq!(other.json["remedy"]["action"], "list-connections");

    // Invoke: a read answers the result; a write on a read-only connection is a 403 whose
    // remedy says what would allow it.
    let created = api
        .call(
            "POST",
            "/v1/connections/crm/operations/create",
            Some(&olivia),
            Some(json!({"type": "items", "id": "1", "data": {"n": 1}}).to_string()),
        )
        .await;
    assert_eq!(created.status, 200, "{:?}", created.json);
    let got = api
        .call(
            "POST",
            "/v1/connections/crm/operations/get",
            Some(&olivia),
            Some(json!({"type": "items", "id": "1"}).to_string()),
        )
        .await;
    assert_eq!(got.status, 200, "{:?}", got.json);
    assert_eq!(got.json["result"]["n"], 1, "{:?}", got.json);
    let read_only = api
        .call(
            "POST",
            "/v1/connections/ledger/operations/create",
            Some(&olivia),
            Some(json!({"type": "items", "id": "2", "data": {}}).to_string()),
        )
        .await;
    assert_eq!(read_only.status, 403, "{:?}", read_only.json);
    assert_eq!(read_only.json["rule"], "read-only-connection");
    let detail = read_only.json["detail"].as_str().unwrap();
    assert!(
        detail.contains("read-only") && !detail.contains("(rule"),
        "{detail}"
    );
    assert_eq!(
        read_only.json["remedy"],
        json!({"action": "enable-writes", "connection": "ledger"})
    );
    // Params that break the operation's schema: 422 naming the field.
    let bad_params = api
        .call(
            "POST",
            "/v1/connections/crm/operations/get",
            Some(&olivia),
            Some(json!({"type": "items"}).to_string()),
        )
        .await;
    assert_eq!(bad_params.status, 422, "{:?}", bad_params.json);
    assert!(
        bad_params.json["errors"].to_string().contains("id"),
        "{:?}",
        bad_params.json
    );
    let not_json = api
        .call(
            "POST",
            "/v1/connections/crm/operations/get",
            Some(&olivia),
            Some("{".into()),
        )
        .await;
    assert_eq!(not_json.status, 422, "{:?}", not_json.json);

    // An agent without a grant: 403 with the grant to ask for.
    let bot = api
        .token("acme", PrincipalKind::Agent, "bot", Role::Operator)
        .await;
    let ungranted = api
        .call(
            "POST",
            "/v1/connections/crm/operations/list",
            Some(&bot),
            Some(json!({"type": "items"}).to_string()),
        )
        .await;
    assert_eq!(ungranted.status, 403);
    assert_eq!(ungranted.json["rule"], "agent-needs-grant");
    assert_eq!(
        ungranted.json["remedy"],
        json!({"action": "grant-agent", "agent": "bot", "connection": "crm", "operation": "list"})
    );

    // Bodies are bounded: 413, as a problem.
    let huge = format!(
        "{{\"type\": \"items\", \"pad\": \"{}\"}}",
        "x".repeat(2 << 20)
    );
    let too_big = api
        .call(
            "POST",
            "/v1/connections/crm/operations/list",
            Some(&olivia),
            Some(huge),
        )
        .await;
    assert_eq!(
        (too_big.status, too_big.json["kind"].as_str()),
        (413, Some("bad-body"))
    );

    // A revoked token is refused at once.
    let id = olivia.split('_').nth(1).unwrap();
    assert_eq!(
        api.call("DELETE", &format!("/v1/tokens/{id}"), Some(&admin), None)
            .await
            .status,
        204
    );
    assert_eq!(
        api.call("GET", "/v1/connections", Some(&olivia), None)
            .await
            .status,
        401
    );
    // Unknown endpoints are problems too.
    assert_eq!(
        api.call("GET", "/v2/nothing", Some(&admin), None)
            .await
            .status,
        404
    );

    // A flood of bad tokens from one source: 429 with Retry-After, and then even a good token
    // from there waits (last: everything here comes from 127.0.0.1).
    let mut limited = None;
    for _ in 0..50 {
        let r = api
            .call("GET", "/v1/connections", Some("nonsense"), None)
            .await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 401);
    }
    let limited = limited.expect("the source is limited");
    assert_eq!(limited.json["rule"], "auth-failures-per-source");
    assert!(limited.headers.contains_key("retry-after"));

    // /metrics: Prometheus text, host-wide, no tenant's names, no token needed.
    let metrics = api.call("GET", "/metrics", None, None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.json.as_str().unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect(line);
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name_ok = series
            .split('{')
            .next()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
        assert!(name_ok && series.starts_with("airlock_"), "{line}");
    }
    for expected in [
        "airlock_requests_total{action=\"invoke.read\",outcome=\"ok\"}",
        "airlock_denials_total{rule=\"read-only-connection\"} 1",
        "airlock_denials_total{rule=\"agent-needs-grant\"} 1",
        "airlock_denials_total{rule=\"token-unknown\"}",
        "airlock_invocation_duration_seconds_bucket{le=\"+Inf\"}",
        "airlock_approvals_open{status=\"pending\"} 0",
        "airlock_audit_available 1",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    assert!(
        !text.contains("acme") && !text.contains("crm") && !text.contains("olivia"),
        "{text}"
    );
    assert_eq!(
        api.call("GET", "/v1/connections", Some(&admin), None)
            .await
            .status,
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_a_risky_write_waits_for_an_approver_over_http() {
    let api = Api::start().await;
    setup(&api, "acme").await;
    let olivia = api
        .token("acme", PrincipalKind::User, "olivia", Role::Operator)
        .await;
    let oscar = api
        .token("acme", PrincipalKind::User, "oscar", Role::Operator)
        .await;
    let create = json!({"type": "items", "id": "7", "data": {}}).to_string();
    assert_eq!(
        api.call(
            "POST",
            "/v1/connections/crm/operations/create",
            Some(&olivia),
            Some(create)
        )
        .await
        .status,
        200
    );
    // `delete` is high risk: 202, with where to follow it.
    let asked = api
        .call(
            "POST",
            "/v1/connections/crm/operations/delete?rationale=cleanup",
            Some(&olivia),
            Some(json!({"type": "items", "id": "7"}).to_string()),
        )
        .await;
    assert_eq!(asked.status, 202, "{:?}", asked.json);
    let follow = asked.json["follow"].as_str().unwrap().to_owned();
    assert_eq!(asked.headers["location"], follow.as_str());
    let shown = api.call("GET", &follow, Some(&olivia), None).await;
    assert_eq!(
        (shown.status, shown.json["status"].as_str()),
        (200, Some("pending"))
    );
    assert_eq!(shown.json["rationale"], "cleanup");
    // Not by the requester; then by another operator, who sees it run.
    let own = api
        .call("POST", &format!("{follow}/approve"), Some(&olivia), None)
        .await;
    assert_eq!(
        (own.status, own.json["rule"].as_str()),
        (403, Some("separation-of-duties"))
    );
    // The requester follows it as server-sent events: its state now, then the final one.
    let mut events = api
        .client
        .get(format!("{}{follow}/events?timeout=20s", api.base))
        .header("authorization", format!("Bearer {olivia}"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    while !seen.contains("event: status") {
        let chunk = events.chunk().await.unwrap().expect("the first event");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains(r#""status":"pending""#), "{seen}");
    let approved = api
        .call("POST", &format!("{follow}/approve"), Some(&oscar), None)
        .await;
    assert_eq!(approved.status, 200, "{:?}", approved.json);
    assert_eq!(approved.json["status"], "executed", "{:?}", approved.json);
    // The stream ends after the final event.
    while let Some(chunk) = tokio::time::timeout(std::time::Duration::from_secs(20), events.chunk())
        .await
        .expect("the stream ends once the request is final")
        .unwrap()
    {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let last = seen.split("event: final").nth(1).expect(&seen);
    assert!(last.contains(r#""status":"executed""#), "{seen}");
    // Another tenant's, or a request that is not there: a problem, before any event.
    let missing = api
        .call("GET", "/v1/approvals/apr-0000/events", Some(&olivia), None)
        .await;
    assert_eq!(missing.status, 404, "{:?}", missing.json);
    // A denial needs a reason; a decided request cannot be decided again.
    let again = api
        .call(
            "POST",
            &format!("{follow}/deny"),
            Some(&oscar),
            Some(json!({"reason": "late"}).to_string()),
        )
        .await;
    assert_eq!(
        (again.status, again.json["kind"].as_str()),
        (409, Some("conflict"))
    );
}

/// `airlock serve` stops on SIGTERM: it stops accepting, finishes, stores the audit and exits 0.
#[test]
fn serve_the_command_stops_gracefully_on_sigterm() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let key = crate::cli::airlock_as(dir.path(), None, &["keygen"])
        .stdout
        .trim()
        .to_owned();
    let mut served = serve_process(dir.path(), &key, None);
    let address = served.base.strip_prefix("http://").unwrap().to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = served.child.wait().unwrap();
    // The reader thread ends with the process's stderr.
    let stderr: Vec<String> = served.stderr.iter().collect();
    let stderr = stderr.join("\n");
    assert_eq!(exit.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "still listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_registry_audit_health_and_waiting_over_http() {
    let api = Api::start().await;
    let admin = api
        .token("acme", PrincipalKind::User, "ada", Role::Admin)
        .await;
    let olivia = api
        .token("acme", PrincipalKind::User, "olivia", Role::Operator)
        .await;
    let oscar = api
        .token("acme", PrincipalKind::User, "oscar", Role::Operator)
        .await;
    let auditor = api
        .token("acme", PrincipalKind::User, "aude", Role::Auditor)
        .await;

    // Register by upload: Admins only; a file that is not a component is refused, naming why.
    let wasm = std::fs::read(common::guest("sandbox")).unwrap();
    let upload = |token: String, bytes: Vec<u8>| {
        let api = &api;
        async move {
            let r = api
                .client
                .post(format!("{}/v1/connectors", api.base))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/wasm")
                .body(bytes)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (
                status,
                serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap(),
            )
        }
    };
    let (status, refused) = upload(olivia.clone(), wasm.clone()).await;
    assert_eq!(
        (status, refused["rule"].as_str()),
        (403, Some("admin-manages-registry"))
    );
    let (status, junk) = upload(admin.clone(), b"not wasm".to_vec()).await;
    assert_eq!(
        (status, junk["kind"].as_str()),
        (422, Some("load")),
        "{junk}"
    );
    let (status, registered) = upload(admin.clone(), wasm).await;
    assert_eq!(status, 201, "{registered}");
    let listed = api.call("GET", "/v1/connectors", Some(&olivia), None).await;
    assert_eq!(listed.status, 200);
    assert!(listed.json.to_string().contains("sandbox"));
    assert_eq!(
        api.call("GET", "/v1/connectors/sandbox", Some(&olivia), None)
            .await
            .status,
        200
    );
    let disabled = api
        .call("POST", "/v1/connectors/sandbox/disable", Some(&admin), None)
        .await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.json);
    assert_eq!(
        api.call("POST", "/v1/connectors/sandbox/enable", Some(&admin), None)
            .await
            .status,
        200
    );
    let history = api
        .call(
            "GET",
            "/v1/connectors/sandbox/history",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(history.status, 200);
    assert_eq!(
        history.json.as_array().unwrap().len(),
        3,
        "{:?}",
        history.json
    );

    // A write that waits, followed by a long poll that another operator's approval ends.
    api.cp
        .connection_create(
            &common::principal("acme", Role::Admin),
            ConnectionSpec {
                name: "crm".into(),
                connector: "sandbox".into(),
                writes_enabled: true,
                ..ConnectionSpec::default()
            },
        )
        .await
        .unwrap();
    let asked = api
        .call(
            "POST",
            "/v1/connections/crm/operations/create",
            Some(&olivia),
            Some(json!({"type": "items", "id": "9", "data": {}}).to_string()),
        )
        .await;
    assert_eq!(asked.status, 202, "{:?}", asked.json);
    let follow = asked.json["follow"].as_str().unwrap().to_owned();
    let waiting = {
        let (client, url, token) = (
            api.client.clone(),
            format!("{}{follow}/wait?timeout=20s", api.base),
            olivia.clone(),
        );
        tokio::spawn(async move {
            let r = client
                .get(url)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the wait holds until a decision");
    let approved = api
        .call("POST", &format!("{follow}/approve"), Some(&oscar), None)
        .await;
    assert_eq!(approved.status, 200, "{:?}", approved.json);
    let (status, waited) = waiting.await.unwrap();
    let waited: Value = serde_json::from_str(&waited).unwrap();
    assert_eq!(
        (status, waited["status"].as_str()),
        (200, Some("executed")),
        "{waited}"
    );
    let bad_wait = api
        .call(
            "GET",
            &format!("{follow}/wait?timeout=soon"),
            Some(&olivia),
            None,
        )
        .await;
    assert_eq!(bad_wait.status, 422);

    // Audit: auditors read, export, verify and checkpoint; operators may not.
    assert_eq!(
        api.call("GET", "/v1/audit", Some(&olivia), None)
            .await
            .status,
        403
    );
    let records = api
        .call("GET", "/v1/audit?limit=500", Some(&auditor), None)
        .await;
    assert_eq!(records.status, 200);
    assert!(records.json.as_array().unwrap().len() > 5);
    let checkpoint = api
        .call("POST", "/v1/audit/checkpoint", Some(&auditor), None)
        .await;
    assert_eq!(checkpoint.status, 200, "{:?}", checkpoint.json);
    let verified = api
        .call(
            "POST",
            "/v1/audit/verify",
            Some(&auditor),
            Some(json!({"checkpoints": [checkpoint.json]}).to_string()),
        )
        .await;
    assert_eq!(
        (verified.status, &verified.json["intact"]),
        (200, &json!(true)),
        "{:?}",
        verified.json
    );
    let export = api
        .client
        .get(format!("{}/v1/audit/export?since=1h", api.base))
        .header("authorization", format!("Bearer {auditor}"))
        .send()
        .await
        .unwrap();
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let lines = export.text().await.unwrap();
    assert!(lines.lines().count() > 5);
    for line in lines.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        assert!(
            row["hash"].is_string() && row["record"]["tenant"] == "acme",
            "{row}"
        );
    }
    let bad_since = api
        .call(
            "GET",
            "/v1/audit/export?since=yesterday",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(bad_since.status, 422);

    // Health, under /v1 and under the seeds' path.
    for path in ["/v1/health", "/api/connectors/health"] {
        let h = api.call("GET", path, Some(&olivia), None).await;
        assert_eq!(h.status, 200, "{path}: {:?}", h.json);
        assert!(
            h.json["operations"].to_string().contains("crm"),
            "{path}: {:?}",
            h.json
        );
        assert!(h.json["circuits"].is_array());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_connections_grants_and_credentials_over_http() {
    let api = Api::start().await;
    common::register(&api.cp, "acme", "sandbox").await;
    let admin = api
        .token("acme", PrincipalKind::User, "ada", Role::Admin)
        .await;
    let olivia = api
        .token("acme", PrincipalKind::User, "olivia", Role::Operator)
        .await;
    let bot = api
        .token("acme", PrincipalKind::Agent, "bot", Role::Operator)
        .await;
    let post = |path: &str, token: &str, body: Value| {
        let (path, token) = (path.to_owned(), token.to_owned());
        let api = &api;
        async move {
            api.call("POST", &path, Some(&token), Some(body.to_string()))
                .await
        }
    };

    // Created from JSON; field errors name the field; unknown fields are refused.
    let spec = json!({"name": "crm", "connector": "sandbox", "config": {"latency_ms": 1},
        "required_roles": {"delete": "admin"}});
    let created = post("/v1/connections", &admin, spec.clone()).await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let again = post("/v1/connections", &admin, spec).await;
    assert_eq!(
        (again.status, again.json["remedy"]["action"].as_str()),
        (409, Some("update-connection"))
    );
    let unknown = post(
        "/v1/connections",
        &admin,
        json!({"name": "x", "connector": "sandbox", "colour": 1}),
    )
    .await;
    assert_eq!(unknown.status, 422);
    assert!(
        unknown.json["detail"].as_str().unwrap().contains("colour"),
        "{:?}",
        unknown.json
    );
    let bad_config = post(
        "/v1/connections",
        &admin,
        json!({"name": "y", "connector": "sandbox", "config": {"latency_ms": "slow"}}),
    )
    .await;
    assert_eq!(bad_config.status, 422, "{:?}", bad_config.json);
    assert!(
        bad_config.json["errors"].to_string().contains("latency_ms"),
        "{:?}",
        bad_config.json
    );
    let by_operator = post(
        "/v1/connections",
        &olivia,
        json!({"name": "z", "connector": "sandbox"}),
    )
    .await;
    assert_eq!(
        (by_operator.status, by_operator.json["rule"].as_str()),
        (403, Some("admin-configures-connections"))
    );

    // PATCH: absent keeps, present changes.
    let patched = api
        .call(
            "PATCH",
            "/v1/connections/crm",
            Some(&admin),
            Some(json!({"writes_enabled": true}).to_string()),
        )
        .await;
    assert_eq!(
        (patched.status, &patched.json["writes_enabled"]),
        (200, &json!(true)),
        "{:?}",
        patched.json
    );
    assert_eq!(
        patched.json["config"]["latency_ms"], 1,
        "kept: {:?}",
        patched.json
    );

    // Disabled: invocations are refused with the remedy; enabled again, they run.
    assert_eq!(
        post("/v1/connections/crm/disable", &admin, json!({}))
            .await
            .status,
        200
    );
    let off = post(
        "/v1/connections/crm/operations/list",
        &olivia,
        json!({"type": "items"}),
    )
    .await;
    assert_eq!(
        off.json["remedy"],
        json!({"action": "enable-connection", "connection": "crm"})
    );
    assert_eq!(
        post("/v1/connections/crm/enable", &admin, json!({}))
            .await
            .status,
        200
    );
    let tested = post("/v1/connections/crm/test", &olivia, json!({})).await;
    assert_eq!(
        (tested.status, &tested.json["ok"]),
        (200, &json!(true)),
        "{:?}",
        tested.json
    );

    // Grants: the agent runs exactly the granted operation, until the grant is revoked.
    let list = json!({"type": "items"});
    assert_eq!(
        post("/v1/connections/crm/operations/list", &bot, list.clone())
            .await
            .status,
        403
    );
    assert_eq!(
        api.call(
            "PUT",
            "/v1/connections/crm/grants/bot/list",
            Some(&admin),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        post("/v1/connections/crm/operations/list", &bot, list.clone())
            .await
            .status,
        200
    );
    assert_eq!(
        post(
            "/v1/connections/crm/operations/get",
            &bot,
            json!({"type": "items", "id": "1"})
        )
        .await
        .status,
        403
    );
    assert_eq!(
        api.call(
            "DELETE",
            "/v1/connections/crm/grants/bot/list",
            Some(&admin),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        post("/v1/connections/crm/operations/list", &bot, list)
            .await
            .status,
        403
    );

    // Credentials: the secret goes in and never comes out.
    let secret = "s3cr3t-token-value-9f1c";
    let set = api
        .call(
            "PUT",
            "/v1/connections/crm/credentials/api",
            Some(&admin),
            Some(json!({"placement": {"kind": "bearer"}, "hosts": ["https://api.example.com"], "secret": secret}).to_string()),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.json);
    let rotated = post(
        "/v1/connections/crm/credentials/api/rotate",
        &admin,
        json!({"secret": format!("{secret}-2")}),
    )
    .await;
    assert_eq!(
        (rotated.status, &rotated.json["version"]),
        (200, &json!(2)),
        "{:?}",
        rotated.json
    );
    let listed = api
        .call(
            "GET",
            "/v1/connections/crm/credentials",
            Some(&olivia),
            None,
        )
        .await;
    let shown = api
        .call("GET", "/v1/connections/crm", Some(&admin), None)
        .await;
    let records = api
        .call("GET", "/v1/audit?limit=1000", Some(&admin), None)
        .await;
    for reply in [&set, &rotated, &listed, &shown, &records] {
        assert!(!reply.json.to_string().contains(secret), "{:?}", reply.json);
    }
    let missing_secret = api
        .call(
            "PUT",
            "/v1/connections/crm/credentials/other",
            Some(&admin),
            Some(json!({"placement": {"kind": "bearer"}, "hosts": []}).to_string()),
        )
        .await;
    assert_eq!(missing_secret.status, 422, "{:?}", missing_secret.json);
    assert_eq!(
        api.call(
            "DELETE",
            "/v1/connections/crm/credentials/api",
            Some(&admin),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        api.call(
            "DELETE",
            "/v1/connections/crm/credentials/api",
            Some(&admin),
            None
        )
        .await
        .status,
        404
    );
}

/// A started `airlock serve` and the address it printed.
pub(crate) struct Served {
    pub child: std::process::Child,
    pub base: String,
    pub stderr: std::sync::mpsc::Receiver<String>,
}

/// A test that fails must not leave its server running.
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_process(dir: &std::path::Path, key: &str, stop_at: Option<&str>) -> Served {
    let stop_at: Vec<(&str, &str)> = stop_at
        .map(|point| ("AIRLOCK_TEST_STOP_AT", point))
        .into_iter()
        .collect();
    serve_process_with(dir, key, &stop_at)
}

/// [`serve_process`] with these settings in its environment.
pub(crate) fn serve_process_with(
    dir: &std::path::Path,
    key: &str,
    settings: &[(&str, &str)],
) -> Served {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("AIRLOCK_DATA_DIR", dir)
        .env("AIRLOCK_MASTER_KEY", key)
        .env_remove("AIRLOCK_LISTEN")
        .env_remove("AIRLOCK_TEST_STOP_AT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (name, value) in settings {
        cmd.env(name, value);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_owned();
    let (tx, stderr) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Served {
        child,
        base,
        stderr,
    }
}

/// kill -9 of the server between an approval and its execution: after a restart the request
/// completes exactly once, with nobody issuing a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_a_server_killed_after_an_approval_runs_it_once_after_restart() {
    use crate::cli::airlock_as;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = airlock_as(d, None, &["keygen"]).stdout.trim().to_owned();
    let admin = |args: &[&str]| {
        let mut all = vec!["--user", "ada", "--role", "admin"];
        all.extend_from_slice(args);
        let run = airlock_as(d, Some(&key), &all);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        run.stdout.trim().to_owned()
    };
    admin(&["connector", "register", &crate::cli::path("sandbox")]);
    admin(&[
        "connection",
        "create",
        "crm",
        "--connector",
        "sandbox",
        "--writes-enabled",
        "true",
    ]);
    let olivia = admin(&[
        "token",
        "create",
        "--for-user",
        "olivia",
        "--token-role",
        "operator",
    ]);
    let oscar = admin(&[
        "token",
        "create",
        "--for-user",
        "oscar",
        "--token-role",
        "operator",
    ]);
    let client = reqwest::Client::new();
    let call = |base: &str, method: &str, path: &str, token: &str, body: Option<Value>| {
        let request = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .timeout(std::time::Duration::from_secs(30));
        let request = match body {
            Some(b) => request.body(b.to_string()),
            None => request,
        };
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            (
                status,
                serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap_or(Value::Null),
            )
        }
    };

    let mut first = serve_process(d, &key, Some("approval-committed"));
    let (status, asked) = call(
        &first.base,
        "POST",
        "/v1/connections/crm/operations/create",
        &olivia,
        Some(json!({"type": "items", "id": "once", "data": {"n": 1}})),
    )
    .await;
    assert_eq!(status, 202, "{asked}");
    let follow = asked["follow"].as_str().unwrap().to_owned();
    // The approval is stored, then the server stops making progress: kill it right there.
    let approving = {
        let (base, path, token) = (
            first.base.clone(),
            format!("{follow}/approve"),
            oscar.clone(),
        );
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(format!("{base}{path}"))
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await;
        })
    };
    let stopped = loop {
        match first
            .stderr
            .recv_timeout(std::time::Duration::from_secs(30))
        {
            Ok(line) if line.contains("stopped at approval-committed") => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    assert!(stopped, "the server never reached the fail point");
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    approving.abort();

    // A new server: its background work (or the wait itself) runs the approved request.
    let mut second = serve_process(d, &key, None);
    let (status, done) = call(
        &second.base,
        "GET",
        &format!("{follow}/wait?timeout=30s"),
        &olivia,
        None,
    )
    .await;
    assert_eq!(
        (status, done["status"].as_str()),
        (200, Some("executed")),
        "{done}"
    );
    let (status, got) = call(
        &second.base,
        "POST",
        "/v1/connections/crm/operations/get",
        &olivia,
        Some(json!({"type": "items", "id": "once"})),
    )
    .await;
    assert_eq!((status, &got["result"]["n"]), (200, &json!(1)), "{got}");
    // Exactly once: one started record and one outcome for the request's invocation.
    let id = follow.rsplit('/').next().unwrap();
    let audit = admin(&["audit", "list", "--json", "--role", "auditor"]);
    let records: Vec<Value> = serde_json::from_str(&audit).unwrap();
    let runs: Vec<&str> = records
        .iter()
        .filter(|r| r["invocation_id"] == id && r["action"] == "invoke.write")
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(runs, ["started", "ok"], "{records:#?}");
    second.child.kill().unwrap();
    second.child.wait().unwrap();
}

/// Hostile clients: one that never finishes its headers is cut off, connections beyond the
/// limit wait without being served, and the peer's address is what failures are charged to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_slow_and_surplus_clients_are_bounded() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let (cp, state) = common::control_plane(dir.path()).await;
    let cp = Arc::new(cp);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(airlock_server::serve_with(
        listener,
        cp.clone(),
        std::future::pending(),
        airlock_server::Options {
            header_read_timeout: Duration::from_millis(300),
            max_connections: 2,
            drain: Duration::from_secs(1),
        },
    ));
    let healthz = |stream: &mut std::net::TcpStream| {
        write!(stream, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    tokio::task::spawn_blocking(move || {
        // A slowloris: half a request line, then nothing. Cut off after the header timeout.
        let mut slow = std::net::TcpStream::connect(address).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost:").unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = slow.read(&mut buf).unwrap_or(0);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "held for {:?}: {:?}",
            started.elapsed(),
            String::from_utf8_lossy(&buf[..n])
        );
        drop(slow);

        // Two connections are served; a third waits until one of them closes.
        let mut first = std::net::TcpStream::connect(address).unwrap();
        let mut second = std::net::TcpStream::connect(address).unwrap();
        assert!(healthz(&mut first).starts_with("HTTP/1.1 200"));
        assert!(healthz(&mut second).starts_with("HTTP/1.1 200"));
        let mut third = std::net::TcpStream::connect(address).unwrap();
        third
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let waiting = healthz(&mut third);
        assert!(waiting.is_empty(), "served beyond the limit: {waiting}");
        drop(first);
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 256];
        let n = third.read(&mut buf).unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "the waiting connection is served once a slot frees"
        );

        // A failed authentication is charged to the peer's address.
        let mut bad = std::net::TcpStream::connect(address).unwrap();
        drop(second);
        bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            bad,
            "GET /v1/connections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n"
        )
        .unwrap();
        let n = bad.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 401"));
    })
    .await
    .unwrap();
    cp.flush_audit().await.unwrap();
    let rows = airlock::control::state::AuditStore::audit_rows(state.as_ref(), 0, 100)
        .await
        .unwrap();
    let charged = rows
        .iter()
        .find(|r| r.record.contains("token.authenticate"))
        .expect("the refusal is audited");
    assert!(
        charged.record.contains("anonymous@127.0.0.1"),
        "{}",
        charged.record
    );
}
