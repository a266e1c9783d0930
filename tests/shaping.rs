//! Data shaping and the read cache through the control plane: classification tags, PII masking
//! of real-looking records (with near misses left alone), and a cache that never serves one
//! tenant's, role's or agent's result to another.

use crate::common;

use airlock::Role;
use airlock::control::policies::ApprovalPolicy;
use airlock::control::shaping::{DataPolicy, Masking};
use airlock::control::{ConnectionSpec, ControlPlane, Principal, PrincipalKind};
use airlock::manifest::{Classification, Risk};
use common::*;
use serde_json::json;

fn person(tenant: &str, id: &str, role: Role) -> Principal {
    Principal {
        tenant: tenant.into(),
        id: id.into(),
        kind: PrincipalKind::User,
        role,
    }
}

/// A sandbox connection whose writes run at once (approvals are tested elsewhere).
async fn connection(cp: &ControlPlane, tenant: &str, data: DataPolicy) {
    let admin = person(tenant, "ada", Role::Admin);
    cp.register(&admin, &std::fs::read(guest("sandbox")).unwrap(), &|_| {})
        .await
        .unwrap();
    let spec = ConnectionSpec {
        name: "crm".into(),
        connector: "sandbox".into(),
        writes_enabled: true,
        approval: ApprovalPolicy {
            require_from: Some(Risk::Critical),
            ..Default::default()
        },
        data,
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
}

fn parse(out: &airlock::Outcome) -> serde_json::Value {
    serde_json::from_str(&out.output).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaping_results_are_classified_and_masked_before_they_leave() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _) = control_plane(dir.path()).await;
    let policy = DataPolicy {
        classification: [("list".to_owned(), Classification::Restricted)].into(),
        mask: Masking {
            id_patterns: vec![r"\b\d{3}-\d{2}-\d{4}\b".into()],
            fields: vec!["salary".into()],
            ..Masking::default().all()
        },
        ..DataPolicy::default()
    };
    connection(&cp, "acme", policy).await;
    let olivia = person("acme", "olivia", Role::Operator);
    let record = json!({"type": "contacts", "id": "c1", "data": {
        "name": "Jane Doe",
        "email": "jane.doe@example.com",
        "phone": "+44 20 7946 0958",
        "card": "5555-5555-5555-4444",
        "iban": "GB82 WEST 1234 5698 7654 32",
        "ssn": "078-05-1120",
        "salary": 91000,
        "order": "4111 1111 1111 1112",
        "since": "2019-04-01",
        "account": "ACC-2024-0042"
    }});
    let created = cp
        .invoke(&olivia, "crm", "create", &record.to_string())
        .await
        .unwrap();
    assert!(created.masked > 0, "the create's echo is a result too");
    let got = cp
        .invoke(&olivia, "crm", "get", r#"{"type":"contacts","id":"c1"}"#)
        .await
        .unwrap();
    let value = parse(&got);
    assert_eq!(got.classification, Some(Classification::Internal));
    assert_eq!(value["name"], "Jane Doe");
    assert_eq!(value["email"], "[EMAIL]");
    assert_eq!(value["phone"], "[PHONE]");
    assert_eq!(value["card"], "[CARD ****4444]");
    assert_eq!(value["iban"], "[IBAN]");
    assert_eq!(value["ssn"], "[ID]");
    assert_eq!(value["salary"], "[MASKED]");
    assert_eq!(got.masked, 6);
    // Near misses stay: a Luhn-invalid number, a date, an account code.
    assert_eq!(value["order"], "4111 1111 1111 1112");
    assert_eq!(value["since"], "2019-04-01");
    assert_eq!(value["account"], "ACC-2024-0042");
    for secret in ["jane.doe@", "7946", "5555-5555", "WEST", "078-05", "91000"] {
        assert!(
            !got.output.contains(secret),
            "{secret} left the host: {}",
            got.output
        );
    }
    // The connection raises list to restricted.
    let listed = cp
        .invoke(&olivia, "crm", "list", r#"{"type":"contacts"}"#)
        .await
        .unwrap();
    assert_eq!(listed.classification, Some(Classification::Restricted));
    assert!(!listed.output.contains("jane.doe@"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaping_cache_hits_never_cross_tenants_roles_or_agents() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _) = control_plane(dir.path()).await;
    let cached = DataPolicy {
        cache_ttl_s: Some(60),
        ..DataPolicy::default()
    };
    connection(&cp, "acme", cached.clone()).await;
    connection(&cp, "globex", cached).await;
    let get = r#"{"type":"items","id":"1"}"#;
    for (tenant, name) in [("acme", "acme's widget"), ("globex", "globex's gadget")] {
        let who = person(tenant, "olivia", Role::Operator);
        let data = json!({"type": "items", "id": "1", "data": {"name": name}}).to_string();
        cp.invoke(&who, "crm", "create", &data).await.unwrap();
    }
    let acme = person("acme", "olivia", Role::Operator);
    let first = cp.invoke(&acme, "crm", "get", get).await.unwrap();
    assert!(!first.cached);
    let second = cp.invoke(&acme, "crm", "get", get).await.unwrap();
    assert!(second.cached, "the second identical read is a hit");
    assert_eq!(first.output, second.output);
    // Same key in every other respect, another tenant: a miss, and its own data.
    let globex = cp
        .invoke(
            &person("globex", "olivia", Role::Operator),
            "crm",
            "get",
            get,
        )
        .await
        .unwrap();
    assert!(!globex.cached);
    assert!(
        globex.output.contains("globex's gadget"),
        "{}",
        globex.output
    );
    // Another role, another person with that role... and an agent with a grant: misses.
    let auditor = cp
        .invoke(&person("acme", "audrey", Role::Auditor), "crm", "get", get)
        .await
        .unwrap();
    assert!(!auditor.cached, "a result crossed roles");
    let colleague = cp
        .invoke(&person("acme", "oscar", Role::Operator), "crm", "get", get)
        .await
        .unwrap();
    assert!(
        colleague.cached,
        "same role, same grants: the same answer may be shared"
    );
    let admin = person("acme", "ada", Role::Admin);
    cp.connection_grant(&admin, "crm", "bot", "get", false)
        .await
        .unwrap();
    let bot = Principal {
        kind: PrincipalKind::Agent,
        ..person("acme", "bot", Role::Operator)
    };
    assert!(
        !cp.invoke(&bot, "crm", "get", get).await.unwrap().cached,
        "a result crossed to an agent"
    );
    // A write on the connection drops its cached reads.
    cp.invoke(
        &acme,
        "crm",
        "update",
        r#"{"type":"items","id":"1","data":{"name":"renamed"}}"#,
    )
    .await
    .unwrap();
    let after = cp.invoke(&acme, "crm", "get", get).await.unwrap();
    assert!(
        !after.cached && after.output.contains("renamed"),
        "{}",
        after.output
    );
    let stats = cp.cache_stats(&acme).await.unwrap();
    let crm = &stats.connections[0];
    assert_eq!((crm.counts.hits, crm.counts.misses), (2, 4), "{stats:?}");
}
