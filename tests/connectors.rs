//! Connectors on the egress path, each against a local server that behaves like the real thing.

mod common;
#[path = "common/http_server.rs"]
mod http_server;

use airlock::Role;
use airlock::control::{ConnectionSpec, ControlError};
use airlock::egress::credential::Placement;
use common::*;
use hmac::Mac;
use http_server::{Reply, TestServer};
use serde_json::json;

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
