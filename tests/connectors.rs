//! Connectors on the egress path, each against a local server that behaves like the real thing.

use crate::common;
use crate::http_server;

use airlock::Role;
use airlock::control::{ConnectionSpec, ControlError};
use airlock::egress::credential::Placement;
use common::*;
use hmac::Mac;
use http_server::{Reply, TestServer};
use serde_json::json;

/// These tests are about each connector against its upstream; writes run at once here
/// (approvals have their own tests in tests/approvals.rs).
fn writes_run_at_once() -> airlock::control::policies::ApprovalPolicy {
    airlock::control::policies::ApprovalPolicy {
        require_from: Some(airlock::manifest::Risk::Critical),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_webhook_posts_signed_events_it_cannot_sign_itself() {
    const SIGNING_SECRET: &str = "whsec_5b0e1c";
    let receiver =
        TestServer::scripted(vec![Reply::new(503, "busy")], Reply::new(202, "accepted")).await;
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    let operator = principal("acme", Role::Operator);
    cp.register(&admin, &std::fs::read(guest("webhook")).unwrap(), &|_| {})
        .await
        .unwrap();
    let origin = format!("http://127.0.0.1:{}", receiver.port);
    let spec = ConnectionSpec {
        name: "hooks".into(),
        connector: "webhook".into(),
        config: json!({"url": format!("{origin}/airlock/events")}),
        egress: vec![origin.clone()],
        writes_enabled: true,
        approval: writes_run_at_once(),
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    let placement = Placement::HmacSha256 {
        header: "X-Signature".into(),
    };
    cp.credential_set(
        &admin,
        "hooks",
        "signing",
        placement,
        vec![origin.clone()],
        zeroize::Zeroizing::new(SIGNING_SECRET.into()),
    )
    .await
    .unwrap();

    // The first delivery meets a 503; with an idempotency key the host retries it.
    let params = json!({"event": "order.created", "payload": {"id": 7, "total": 12.5}, "idempotency_key": "evt-7"});
    let out = cp
        .invoke(&operator, "hooks", "send", &params.to_string())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.output).unwrap(),
        json!({"delivered": true, "status": 202})
    );
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2, "one retry after the 503");
    let delivery = &seen[1];
    assert_eq!(
        (delivery.method.as_str(), delivery.path.as_str()),
        ("POST", "/airlock/events")
    );
    assert_eq!(delivery.header("x-airlock-event"), Some("order.created"));
    let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(
        body,
        json!({"event": "order.created", "payload": {"id": 7, "total": 12.5}})
    );
    // The receiver can verify the signature with the shared secret.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(&delivery.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(delivery.header("x-signature"), Some(expected.as_str()));
    assert!(!out.output.contains(SIGNING_SECRET));

    // Config is checked against the connector's schema; the default is read-only.
    let bad = ConnectionSpec {
        name: "bad".into(),
        connector: "webhook".into(),
        config: json!({"url": "ftp://x"}),
        ..ConnectionSpec::default()
    };
    assert!(matches!(
        cp.connection_create(&admin, bad).await.unwrap_err(),
        ControlError::Invalid(_)
    ));
    let quiet = ConnectionSpec {
        name: "quiet".into(),
        connector: "webhook".into(),
        config: json!({"url": format!("{origin}/x")}),
        egress: vec![origin.clone()],
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, quiet).await.unwrap();
    let err = cp
        .invoke(
            &operator,
            "quiet",
            "send",
            &json!({"event": "e", "payload": {}}).to_string(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("read-only-connection"), "{err}");
    assert_eq!(receiver.seen().len(), 2);
}

/// A small JSON API like the ones the REST connector meets: bearer auth (401 with an error body),
/// `Link: rel="next"` pagination, 404s, 201 on create, 429 with Retry-After.
fn items_api(
    port_hint: std::sync::Arc<std::sync::atomic::AtomicU16>,
) -> impl Fn(&http_server::Seen) -> Reply + Send + Sync {
    let items = std::sync::Mutex::new(
        (1..=5)
            .map(|i| json!({"id": i.to_string(), "name": format!("item {i}")}))
            .collect::<Vec<_>>(),
    );
    move |req| {
        if req.header("authorization") != Some("Bearer good-token") {
            return Reply::new(401, r#"{"error":"invalid_token"}"#)
                .header("www-authenticate", "Bearer");
        }
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
        };
        let port = port_hint.load(std::sync::atomic::Ordering::Relaxed);
        match (req.method.as_str(), path) {
            ("GET", "/v1/items") => {
                let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
                let page: usize = param("page").and_then(|p| p.parse().ok()).unwrap_or(0);
                let all = items.lock().unwrap().clone();
                let slice: Vec<_> = all.iter().skip(page * limit).take(limit).cloned().collect();
                let mut reply = Reply::new(200, &json!({ "data": slice }).to_string());
                if (page + 1) * limit < all.len() {
                    let next = format!(
                        "<http://127.0.0.1:{port}/v1/items?limit={limit}&page={}>; rel=\"next\"",
                        page + 1
                    );
                    reply = reply.header("link", &next);
                }
                reply
            }
            ("GET", "/v1/slow") => {
                Reply::new(429, r#"{"error":"slow down"}"#).header("retry-after", "120")
            }
            ("POST", "/v1/items") => {
                let mut body: serde_json::Value =
                    serde_json::from_slice(&req.body).unwrap_or_default();
                let mut items = items.lock().unwrap();
                body["id"] = json!((items.len() + 1).to_string());
                items.push(body.clone());
                Reply::new(201, &body.to_string())
            }
            ("GET", p) if p.starts_with("/v1/items/") => {
                let id = &p["/v1/items/".len()..];
                match items.lock().unwrap().iter().find(|i| i["id"] == id) {
                    Some(item) => Reply::new(200, &item.to_string()),
                    None => Reply::new(404, &json!({"error": "not_found", "id": id}).to_string()),
                }
            }
            _ => Reply::new(404, r#"{"error":"no_route"}"#),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_rest_pages_maps_errors_and_authenticates_through_the_host() {
    let port = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(0));
    let api = TestServer::with_handler(items_api(port.clone())).await;
    port.store(api.port, std::sync::atomic::Ordering::Relaxed);
    let origin = format!("http://127.0.0.1:{}", api.port);
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    let op = principal("acme", Role::Operator);
    cp.register(&admin, &std::fs::read(guest("rest")).unwrap(), &|_| {})
        .await
        .unwrap();
    for (name, token) in [("api", "good-token"), ("stale", "old-token")] {
        let spec = ConnectionSpec {
            name: name.into(),
            connector: "rest".into(),
            config: json!({"base_url": format!("{origin}/v1"), "resources": ["items", "slow"], "page_size": 2}),
            egress: vec![origin.clone()],
            writes_enabled: true,
            approval: writes_run_at_once(),
            ..ConnectionSpec::default()
        };
        cp.connection_create(&admin, spec).await.unwrap();
        cp.credential_set(
            &admin,
            name,
            "token",
            Placement::Bearer,
            vec![origin.clone()],
            zeroize::Zeroizing::new(token.into()),
        )
        .await
        .unwrap();
    }
    let call = |conn: &'static str, op_name: &'static str, params: serde_json::Value| {
        let (cp, op) = (&cp, &op);
        async move {
            cp.invoke(op, conn, op_name, &params.to_string())
                .await
                .map(|o| serde_json::from_str::<serde_json::Value>(&o.output).unwrap())
        }
    };

    // Pagination: 5 items, 2 per page, followed through Link headers.
    let listed = call("api", "list", json!({"resource": "items"}))
        .await
        .unwrap();
    assert_eq!(
        (
            listed["count"].as_u64(),
            listed["pages"].as_u64(),
            &listed["more"]
        ),
        (Some(5), Some(3), &json!(false))
    );
    let capped = call("api", "list", json!({"resource": "items", "max_pages": 2}))
        .await
        .unwrap();
    assert_eq!(
        (capped["count"].as_u64(), &capped["more"]),
        (Some(4), &json!(true))
    );

    let created = call(
        "api",
        "create",
        json!({"resource": "items", "body": {"name": "new"}}),
    )
    .await
    .unwrap();
    assert_eq!(created["id"], "6");
    let got = call("api", "get", json!({"resource": "items", "id": "6"}))
        .await
        .unwrap();
    assert_eq!(got["name"], "new");

    // Errors a caller can act on.
    let kind = |r: Result<serde_json::Value, ControlError>| match r.unwrap_err() {
        ControlError::Invoke(airlock::InvokeError::Connector(e)) => e,
        other => panic!("expected a connector error, got {other:?}"),
    };
    use airlock::manifest::ConnectorError as C;
    assert!(matches!(
        kind(call("api", "get", json!({"resource": "items", "id": "99"})).await),
        C::NotFound { .. }
    ));
    assert!(matches!(
        kind(call("stale", "list", json!({"resource": "items"})).await),
        C::Unauthorized { .. }
    ));
    match kind(call("api", "list", json!({"resource": "slow"})).await) {
        C::RateLimited { retry_after_ms, .. } => assert_eq!(retry_after_ms, Some(120_000)),
        other => panic!("expected rate limited, got {other:?}"),
    }
    assert!(
        matches!(
            kind(call("api", "get", json!({"resource": "users", "id": "1"})).await),
            C::NotFound { .. }
        ),
        "unconfigured resource"
    );
    // The token went only in headers the host added.
    assert!(
        api.seen()
            .iter()
            .all(|s| s.header("authorization").is_some())
    );
}

/// The Slack Web API's shape: bearer tokens, `ok: false` with error codes on HTTP 200, cursor
/// pagination in `response_metadata.next_cursor`, 429 with Retry-After.
fn slack_api() -> impl Fn(&http_server::Seen) -> Reply + Send + Sync {
    let posted = std::sync::Mutex::new(Vec::<serde_json::Value>::new());
    move |req| {
        if req.header("authorization") != Some("Bearer xoxb-good") {
            return Reply::new(200, r#"{"ok":false,"error":"invalid_auth"}"#);
        }
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let cursor = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("cursor="))
            .unwrap_or("");
        match path {
            "/api/auth.test" => {
                Reply::new(200, r#"{"ok":true,"team":"Acme","user":"airlock-bot"}"#)
            }
            "/api/conversations.list" => match cursor {
                "" => Reply::new(
                    200,
                    r#"{"ok":true,"channels":[{"id":"C1","name":"general"},{"id":"C2","name":"ops"}],"response_metadata":{"next_cursor":"dGVhbTpDMw=="}}"#,
                ),
                "dGVhbTpDMw%3D%3D" => Reply::new(
                    200,
                    r#"{"ok":true,"channels":[{"id":"C3","name":"random"}],"response_metadata":{"next_cursor":""}}"#,
                ),
                _ => Reply::new(200, r#"{"ok":false,"error":"invalid_cursor"}"#),
            },
            "/api/chat.postMessage" => {
                let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
                if body["channel"] == "C404" {
                    return Reply::new(200, r#"{"ok":false,"error":"channel_not_found"}"#);
                }
                let mut posted = posted.lock().unwrap();
                posted.push(body.clone());
                Reply::new(200, &json!({"ok": true, "channel": body["channel"], "ts": format!("1700000000.{:06}", posted.len())}).to_string())
            }
            "/api/conversations.history" => {
                Reply::new(429, r#"{"ok":false,"error":"ratelimited"}"#).header("retry-after", "30")
            }
            _ => Reply::new(404, "unknown method"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_slack_posts_lists_and_maps_slack_errors() {
    let api = TestServer::with_handler(slack_api()).await;
    let origin = format!("http://127.0.0.1:{}", api.port);
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    let op = principal("acme", Role::Operator);
    cp.register(&admin, &std::fs::read(guest("slack")).unwrap(), &|_| {})
        .await
        .unwrap();
    for (name, token) in [("slack", "xoxb-good"), ("revoked", "xoxb-old")] {
        let spec = ConnectionSpec {
            name: name.into(),
            connector: "slack".into(),
            config: json!({"api_base": format!("{origin}/api")}),
            egress: vec![origin.clone()],
            writes_enabled: true,
            approval: writes_run_at_once(),
            ..ConnectionSpec::default()
        };
        cp.connection_create(&admin, spec).await.unwrap();
        cp.credential_set(
            &admin,
            name,
            "bot",
            Placement::Bearer,
            vec![origin.clone()],
            zeroize::Zeroizing::new(token.into()),
        )
        .await
        .unwrap();
    }
    let call = |conn: &'static str, operation: &'static str, params: serde_json::Value| {
        let (cp, op) = (&cp, &op);
        async move {
            cp.invoke(op, conn, operation, &params.to_string())
                .await
                .map(|o| serde_json::from_str::<serde_json::Value>(&o.output).unwrap())
        }
    };
    let report = cp.connection_test(&op, "slack").await.unwrap();
    assert!(report.ok, "{report:?}");
    let listed = call("slack", "list_channels", json!({})).await.unwrap();
    assert_eq!(listed["count"], 3);
    assert_eq!(listed["pages"], 2);
    let posted = call(
        "slack",
        "post_message",
        json!({"channel": "C1", "text": "deploy finished"}),
    )
    .await
    .unwrap();
    assert_eq!(posted["ts"], "1700000000.000001");
    let body: serde_json::Value = serde_json::from_slice(&api.seen().last().unwrap().body).unwrap();
    assert_eq!(body, json!({"channel": "C1", "text": "deploy finished"}));

    use airlock::manifest::ConnectorError as C;
    let kind = |r: Result<serde_json::Value, ControlError>| match r.unwrap_err() {
        ControlError::Invoke(airlock::InvokeError::Connector(e)) => e,
        other => panic!("expected a connector error, got {other:?}"),
    };
    assert!(matches!(
        kind(
            call(
                "slack",
                "post_message",
                json!({"channel": "C404", "text": "x"})
            )
            .await
        ),
        C::NotFound { .. }
    ));
    assert!(matches!(
        kind(call("revoked", "list_channels", json!({})).await),
        C::Unauthorized { .. }
    ));
    match kind(call("slack", "history", json!({"channel": "C1"})).await) {
        C::RateLimited { retry_after_ms, .. } => assert_eq!(retry_after_ms, Some(30_000)),
        other => panic!("expected rate limited, got {other:?}"),
    }
    // Writes stay writes: a read-only Slack connection cannot post.
    let quiet = ConnectionSpec {
        name: "quiet".into(),
        connector: "slack".into(),
        config: json!({"api_base": format!("{origin}/api")}),
        egress: vec![origin.clone()],
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, quiet).await.unwrap();
    assert_eq!(
        call(
            "quiet",
            "post_message",
            json!({"channel": "C1", "text": "x"})
        )
        .await
        .unwrap_err()
        .exit_code(),
        2
    );
}

/// Salesforce's REST API shape: OAuth2 client-credentials token endpoint, SOQL pages linked by
/// `nextRecordsUrl`, sObject describe/get/create/update, errors as `[{message, errorCode}]`.
fn salesforce_api() -> impl Fn(&http_server::Seen) -> Reply + Send + Sync {
    move |req| {
        let path = req.path.split('?').next().unwrap_or("");
        if path == "/services/oauth2/token" {
            let form = String::from_utf8_lossy(&req.body).into_owned();
            return if form.contains("client_secret=sf-secret") {
                Reply::new(
                    200,
                    r#"{"access_token":"00D-session","token_type":"Bearer"}"#,
                )
            } else {
                Reply::new(400, r#"{"error":"invalid_client"}"#)
            };
        }
        if req.header("authorization") != Some("Bearer 00D-session") {
            return Reply::new(
                401,
                r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
            );
        }
        match (req.method.as_str(), path) {
            ("GET", "/services/data/v60.0/query") => Reply::new(
                200,
                r#"{"totalSize":3,"done":false,"nextRecordsUrl":"/services/data/v60.0/query/01gD-2000","records":[{"Id":"001A","Name":"Acme"},{"Id":"001B","Name":"Globex"}]}"#,
            ),
            ("GET", "/services/data/v60.0/query/01gD-2000") => Reply::new(
                200,
                r#"{"totalSize":3,"done":true,"records":[{"Id":"001C","Name":"Initech"}]}"#,
            ),
            ("GET", "/services/data/v60.0/sobjects/Account/describe") => Reply::new(
                200,
                r#"{"label":"Account","fields":[{"name":"Id","type":"id","nillable":false,"createable":false,"label":"Account ID"},{"name":"Name","type":"string","nillable":false,"createable":true,"label":"Account Name"}]}"#,
            ),
            ("GET", "/services/data/v60.0/sobjects/Account/001A") => {
                Reply::new(200, r#"{"Id":"001A","Name":"Acme"}"#)
            }
            ("GET", p) if p.starts_with("/services/data/v60.0/sobjects/Account/") => Reply::new(
                404,
                r#"[{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}]"#,
            ),
            ("POST", "/services/data/v60.0/sobjects/Account/") => {
                Reply::new(201, r#"{"id":"001N","success":true,"errors":[]}"#)
            }
            ("PATCH", "/services/data/v60.0/sobjects/Account/001A") => Reply::new(204, ""),
            _ => Reply::new(404, r#"[{"message":"no route","errorCode":"NOT_FOUND"}]"#),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_salesforce_queries_pages_and_records_with_host_held_oauth() {
    let api = TestServer::with_handler(salesforce_api()).await;
    let origin = format!("http://127.0.0.1:{}", api.port);
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    let op = principal("acme", Role::Operator);
    cp.register(
        &admin,
        &std::fs::read(guest("salesforce")).unwrap(),
        &|_| {},
    )
    .await
    .unwrap();
    let spec = ConnectionSpec {
        name: "sf".into(),
        connector: "salesforce".into(),
        config: json!({"instance_url": origin, "objects": ["Account"]}),
        egress: vec![origin.clone()],
        writes_enabled: true,
        approval: writes_run_at_once(),
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    let placement = Placement::OAuth2ClientCredentials {
        token_url: format!("{origin}/services/oauth2/token"),
        client_id: "3MVG-app".into(),
        scope: None,
    };
    cp.credential_set(
        &admin,
        "sf",
        "oauth",
        placement,
        vec![origin.clone()],
        zeroize::Zeroizing::new("sf-secret".into()),
    )
    .await
    .unwrap();
    let call = |operation: &'static str, params: serde_json::Value| {
        let (cp, op) = (&cp, &op);
        async move {
            cp.invoke(op, "sf", operation, &params.to_string())
                .await
                .map(|o| serde_json::from_str::<serde_json::Value>(&o.output).unwrap())
        }
    };
    let result = call("query", json!({"soql": "SELECT Id, Name FROM Account"}))
        .await
        .unwrap();
    assert_eq!(
        (
            result["count"].as_u64(),
            result["pages"].as_u64(),
            &result["done"]
        ),
        (Some(3), Some(2), &json!(true))
    );
    assert_eq!(result["records"][2]["Name"], "Initech");
    let soql = api
        .seen()
        .iter()
        .find(|s| s.path.starts_with("/services/data/v60.0/query?"))
        .unwrap()
        .path
        .clone();
    assert_eq!(
        soql,
        "/services/data/v60.0/query?q=SELECT%20Id%2C%20Name%20FROM%20Account"
    );
    assert_eq!(
        call("get", json!({"object": "Account", "id": "001A"}))
            .await
            .unwrap()["Name"],
        "Acme"
    );
    assert_eq!(
        call(
            "create",
            json!({"object": "Account", "fields": {"Name": "New"}})
        )
        .await
        .unwrap()["id"],
        "001N"
    );
    assert_eq!(
        call(
            "update",
            json!({"object": "Account", "id": "001A", "fields": {"Name": "Acme Corp"}})
        )
        .await
        .unwrap()["updated"],
        true
    );
    match call("get", json!({"object": "Account", "id": "001Z"}))
        .await
        .unwrap_err()
    {
        ControlError::Invoke(airlock::InvokeError::Connector(
            airlock::manifest::ConnectorError::NotFound { message },
        )) => {
            assert!(message.contains("NOT_FOUND"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let bad = call("get", json!({"object": "Account; DROP", "id": "1"}))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("letters, digits and _"), "{bad}");
    let report = cp.connection_test(&op, "sf").await.unwrap();
    let objects = serde_json::to_value(&report.objects).unwrap();
    assert_eq!(objects["ok"][0]["fields"][1]["name"], "Name", "{objects}");
    assert_eq!(objects["ok"][0]["fields"][1]["required"], true);
    // One token for everything above.
    assert_eq!(
        api.seen()
            .iter()
            .filter(|s| s.path == "/services/oauth2/token")
            .count(),
        1
    );
}

/// A Graph-style mail API: `value` collections linked by `@odata.nextLink`, errors as
/// `{"error": {"code", "message"}}`, 401 on a bad token, 202 on sendMail.
fn mail_api(
    port: std::sync::Arc<std::sync::atomic::AtomicU16>,
) -> impl Fn(&http_server::Seen) -> Reply + Send + Sync {
    move |req| {
        if req.header("authorization") != Some("Bearer graph-token") {
            return Reply::new(
                401,
                r#"{"error":{"code":"InvalidAuthenticationToken","message":"Access token is empty."}}"#,
            );
        }
        let p = port.load(std::sync::atomic::Ordering::Relaxed);
        let path = req.path.split('?').next().unwrap_or("");
        match (req.method.as_str(), path) {
            ("GET", "/v1.0/me/mailFolders/inbox/messages") => Reply::new(
                200,
                &json!({"value": [{"id": "m1", "subject": "Hello"}], "@odata.nextLink": format!("http://127.0.0.1:{p}/v1.0/me/mailFolders/inbox/messages/page2")}).to_string(),
            ),
            ("GET", "/v1.0/me/mailFolders/inbox/messages/page2") => Reply::new(200, r#"{"value":[{"id":"m2","subject":"Re: Hello"}]}"#),
            ("GET", "/v1.0/me/messages/m1") => Reply::new(200, r#"{"id":"m1","subject":"Hello","body":{"content":"hi"}}"#),
            ("GET", "/v1.0/me/messages/nope") => Reply::new(404, r#"{"error":{"code":"ErrorItemNotFound","message":"The specified object was not found in the store."}}"#),
            ("GET", "/v1.0/me/mailFolders") => Reply::new(200, r#"{"value":[{"id":"inbox","displayName":"Inbox"}]}"#),
            ("GET", "/v1.0/me/contacts") => Reply::new(200, r#"{"value":[{"id":"c1","displayName":"Ada"}]}"#),
            ("POST", "/v1.0/me/sendMail") => Reply::new(202, ""),
            _ => Reply::new(404, r#"{"error":{"code":"NoRoute","message":"no route"}}"#),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_mail_reads_pages_and_sends_only_when_dry_run_is_off() {
    // Mail is a prototype: its writes are dry runs unless the connection (or DRY_RUN=false,
    // tested in cli.rs) turns that off.
    let port = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(0));
    let api = TestServer::with_handler(mail_api(port.clone())).await;
    port.store(api.port, std::sync::atomic::Ordering::Relaxed);
    let origin = format!("http://127.0.0.1:{}", api.port);
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = control_plane(dir.path()).await;
    let admin = principal("acme", Role::Admin);
    let op = principal("acme", Role::Operator);
    cp.register(&admin, &std::fs::read(guest("mail")).unwrap(), &|_| {})
        .await
        .unwrap();
    for (name, dry_run) in [("mail", None), ("live", Some(false))] {
        let spec = ConnectionSpec {
            name: name.into(),
            connector: "mail".into(),
            config: json!({"api_base": format!("{origin}/v1.0")}),
            egress: vec![origin.clone()],
            writes_enabled: true,
            approval: airlock::control::policies::ApprovalPolicy {
                dry_run,
                ..writes_run_at_once()
            },
            ..ConnectionSpec::default()
        };
        cp.connection_create(&admin, spec).await.unwrap();
        cp.credential_set(
            &admin,
            name,
            "graph",
            Placement::Bearer,
            vec![origin.clone()],
            zeroize::Zeroizing::new("graph-token".into()),
        )
        .await
        .unwrap();
    }
    let call = |conn: &'static str, operation: &'static str, params: serde_json::Value| {
        let (cp, op) = (&cp, &op);
        async move {
            cp.invoke(op, conn, operation, &params.to_string())
                .await
                .map(|o| serde_json::from_str::<serde_json::Value>(&o.output).unwrap())
        }
    };
    let inbox = call("mail", "list_messages", json!({})).await.unwrap();
    assert_eq!(
        (inbox["count"].as_u64(), inbox["pages"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        call("mail", "get_message", json!({"id": "m1"}))
            .await
            .unwrap()["subject"],
        "Hello"
    );
    assert_eq!(
        call("mail", "list_folders", json!({})).await.unwrap()["count"],
        1
    );
    assert_eq!(
        call("mail", "list_contacts", json!({})).await.unwrap()["items"][0]["displayName"],
        "Ada"
    );
    match call("mail", "get_message", json!({"id": "nope"}))
        .await
        .unwrap_err()
    {
        ControlError::Invoke(airlock::InvokeError::Connector(
            airlock::manifest::ConnectorError::NotFound { message },
        )) => {
            assert!(message.contains("ErrorItemNotFound"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Dry run by default: the request that would go out is shown, without its token, and
    // nothing is sent.
    let mail = json!({"to": ["ada@example.com"], "subject": "Report", "body": "attached"});
    let dry = call("mail", "send_mail", mail.clone()).await.unwrap();
    assert_eq!(dry["dry_run"], true, "{dry}");
    let effect = &dry["effects"][0];
    assert_eq!(
        (effect["method"].as_str(), effect["url"].as_str()),
        (
            Some("POST"),
            Some(format!("{origin}/v1.0/me/sendMail").as_str())
        )
    );
    assert_eq!(effect["credential"], "graph");
    assert_eq!(
        effect["body"]["message"]["toRecipients"][0]["emailAddress"]["address"],
        "ada@example.com"
    );
    assert!(!dry.to_string().contains("graph-token"), "{dry}");
    assert!(
        !api.seen().iter().any(|s| s.path.ends_with("/sendMail")),
        "a dry run sent mail"
    );
    let sent = call("live", "send_mail", mail).await.unwrap();
    assert_eq!(sent, json!({"sent": true}));
    let posted = api
        .seen()
        .into_iter()
        .find(|s| s.path.ends_with("/sendMail"))
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&posted.body).unwrap();
    assert_eq!(body["message"]["subject"], "Report");
    let bad = call(
        "live",
        "send_mail",
        json!({"to": ["not an address"], "subject": "x", "body": "y"}),
    )
    .await
    .unwrap_err();
    assert!(bad.to_string().contains("is not an email address"), "{bad}");
}
