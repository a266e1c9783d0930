//! Tenant and connection isolation of key-value storage, attacked from inside a guest.

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_tenant_a_cannot_read_tenant_b_keys_whatever_key_it_uses() {
    let executor = executor();
    let sandbox = load(&executor, "sandbox").await;
    let snoop = load(&executor, "tenant-snoop").await;
    // One store shared by both tenants, as in production.
    let env = env();
    let victim = caller("tenant-b", "crm");
    let created = invoke(
        &executor,
        &sandbox,
        &victim,
        &env,
        "create",
        json!({"type": "items", "id": "secret-1", "data": {"card": "4111-VICTIM"}}),
    )
    .await
    .unwrap();
    assert_eq!(created["id"], "secret-1");

    // The attacker uses the same connection name and knows every identifier of the victim.
    let attacker = caller("tenant-a", "crm");
    invoke(
        &executor,
        &sandbox,
        &attacker,
        &env,
        "create",
        json!({"type": "items", "id": "own-1", "data": {"mine": "ATTACKER-OWN"}}),
    )
    .await
    .unwrap();
    let target = json!({"tenant": "tenant-b", "connection": "crm", "bucket": "sandbox-items", "key": "secret-1"});
    let report = invoke(&executor, &snoop, &attacker, &env, "snoop", target)
        .await
        .unwrap();
    let text = report.to_string();
    assert!(
        !text.contains("4111-VICTIM"),
        "tenant A read tenant B's data: {text}"
    );
    // Positive control: the same tricks do find the attacker's own data, so the probe works.
    assert!(
        text.contains("ATTACKER-OWN"),
        "the snoop found nothing at all, so it proves nothing: {text}"
    );
    // Bucket names that try to smuggle a tenant are refused outright.
    let refused = report["refused"].as_array().unwrap();
    assert!(
        refused
            .iter()
            .any(|r| r["bucket"] == "tenant-b/crm/sandbox-items"),
        "{report}"
    );

    // And tenant B still has its record.
    let got = invoke(
        &executor,
        &sandbox,
        &victim,
        &env,
        "get",
        json!({"type": "items", "id": "secret-1"}),
    )
    .await
    .unwrap();
    assert_eq!(got["card"], "4111-VICTIM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_connections_of_one_tenant_do_not_share_storage() {
    let executor = executor();
    let sandbox = load(&executor, "sandbox").await;
    let snoop = load(&executor, "tenant-snoop").await;
    let env = env();
    invoke(
        &executor,
        &sandbox,
        &caller("acme", "billing"),
        &env,
        "create",
        json!({"type": "items", "id": "inv-9", "data": {"amount": "BILLING-ONLY"}}),
    )
    .await
    .unwrap();
    let other = caller("acme", "support");
    let missing = invoke(
        &executor,
        &sandbox,
        &other,
        &env,
        "get",
        json!({"type": "items", "id": "inv-9"}),
    )
    .await;
    assert!(missing.is_err(), "support connection read billing's record");
    let target = json!({"tenant": "acme", "connection": "billing", "bucket": "sandbox-items", "key": "inv-9"});
    let report = invoke(&executor, &snoop, &other, &env, "snoop", target)
        .await
        .unwrap();
    assert!(!report.to_string().contains("BILLING-ONLY"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_identifiers_that_could_forge_a_namespace_are_refused() {
    let executor = executor();
    let sandbox = load(&executor, "sandbox").await;
    for (tenant, connection) in [
        ("a/b", "c"),
        ("a", "../c"),
        ("", "c"),
        ("a\0b", "c"),
        ("a", "c d"),
    ] {
        let err = invoke(
            &executor,
            &sandbox,
            &caller(tenant, connection),
            &env(),
            "list",
            json!({"type": "items"}),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("invalid"),
            "{tenant:?}/{connection:?}: {err}"
        );
    }
}
