//! The control plane: registry, connections, RBAC at work, tenant isolation, encryption at rest
//! and the audit log.

use crate::common;

use airlock::control::state::SqliteState;
use airlock::control::state::stores::*;
use airlock::control::vault::generate_key;
use airlock::control::{
    ConnectionSpec, ConnectionUpdate, ControlError, ControlPlane, Principal, PrincipalKind,
};
use airlock::engine::PoolSize;
use airlock::{Executor, ExecutorOptions, Role};
use common::guest;
use serde_json::json;
use std::sync::Arc;

struct Setup {
    cp: ControlPlane,
    state: Arc<SqliteState>,
    dir: tempfile::TempDir,
    key: String,
}

impl Setup {
    /// Another control plane on the same store and key, as a second process would be.
    fn second_plane(&self) -> ControlPlane {
        common::control_plane_on(&self.state, small_executor(), &self.key)
    }
}

fn small_executor() -> Arc<Executor> {
    Arc::new(
        Executor::new(ExecutorOptions {
            pool: PoolSize {
                max_concurrent_instances: 32,
                max_memory_bytes: 64 << 20,
            },
            cache_dir: Some(common::root().join("target/airlock-test-cache")),
        })
        .unwrap(),
    )
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(
        SqliteState::open(&dir.path().join("airlock.db"))
            .await
            .unwrap(),
    );
    let key = generate_key();
    let cp = common::control_plane_on(&state, small_executor(), &key);
    Setup {
        cp,
        state,
        dir,
        key,
    }
}

fn user(tenant: &str, role: Role) -> Principal {
    Principal {
        tenant: tenant.into(),
        id: format!("{role:?}").to_lowercase(),
        kind: PrincipalKind::User,
        role,
    }
}

fn agent(tenant: &str, id: &str) -> Principal {
    Principal {
        tenant: tenant.into(),
        id: id.into(),
        kind: PrincipalKind::Agent,
        role: Role::Operator,
    }
}

fn admin(tenant: &str) -> Principal {
    user(tenant, Role::Admin)
}

async fn register_sandbox(cp: &ControlPlane, tenant: &str) {
    let bytes = std::fs::read(guest("sandbox")).unwrap();
    cp.register(&admin(tenant), &bytes, &|_| {}).await.unwrap();
}

fn spec(name: &str, writes: bool) -> ConnectionSpec {
    ConnectionSpec {
        name: name.into(),
        connector: "sandbox".into(),
        config: json!({"latency_ms": 0}),
        writes_enabled: writes,
        // These tests are about RBAC, isolation and the registry: writes run at once here
        // (approvals have their own tests in tests/approvals.rs).
        approval: airlock::control::policies::ApprovalPolicy {
            require_from: Some(airlock::manifest::Risk::Critical),
            ..Default::default()
        },
        ..ConnectionSpec::default()
    }
}

fn rule_of(e: &ControlError) -> String {
    match e {
        ControlError::Denied { rule, .. } => rule.clone(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_reregistration_is_idempotent_and_history_shows_every_change() {
    let s = setup().await;
    let bytes = std::fs::read(guest("sandbox")).unwrap();
    let first =
        s.cp.register(&admin("acme"), &bytes, &|_| {})
            .await
            .unwrap();
    assert!(first.created);
    let again =
        s.cp.register(&admin("acme"), &bytes, &|_| {})
            .await
            .unwrap();
    assert!(
        !again.created,
        "re-registering the same bytes must change nothing"
    );
    assert_eq!(first.connector.digest, again.connector.digest);
    assert_eq!(s.cp.connector_list(&admin("acme")).await.unwrap().len(), 1);

    s.cp.connector_set_enabled(&admin("acme"), "sandbox", None, false)
        .await
        .unwrap();
    s.cp.connector_set_enabled(&admin("acme"), "sandbox", Some("0.1.0"), true)
        .await
        .unwrap();
    // Enabling what is enabled is not a change.
    assert!(
        s.cp.connector_set_enabled(&admin("acme"), "sandbox", None, true)
            .await
            .unwrap()
            .is_empty()
    );
    let history =
        s.cp.connector_history(&user("acme", Role::Auditor), Some("sandbox"))
            .await
            .unwrap();
    let actions: Vec<(&str, &str, &str)> = history
        .iter()
        .map(|h| (h.action.as_str(), h.actor.as_str(), h.version.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("register", "admin", "0.1.0"),
            ("disable", "admin", "0.1.0"),
            ("enable", "admin", "0.1.0")
        ]
    );
    assert_eq!(history.iter().map(|h| h.seq).collect::<Vec<_>>(), [1, 2, 3]);
    // Another tenant's registry is its own.
    assert!(
        s.cp.connector_list(&admin("globex"))
            .await
            .unwrap()
            .is_empty()
    );
    let err =
        s.cp.connector_show(&admin("globex"), "sandbox")
            .await
            .unwrap_err();
    assert!(matches!(err, ControlError::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_cross_tenant_access_by_id_is_not_found() {
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    register_sandbox(&s.cp, "globex").await;
    s.cp.connection_create(&admin("acme"), spec("crm", true))
        .await
        .unwrap();
    let intruder = admin("globex");
    let not_found = |r: Result<(), ControlError>, what: &str| match r {
        Err(ControlError::NotFound { message: m, .. }) => {
            assert!(m.contains("not found"), "{what}: {m}")
        }
        other => panic!("{what}: expected not found, got {other:?}"),
    };
    not_found(
        s.cp.connection_show(&intruder, "crm").await.map(|_| ()),
        "show",
    );
    not_found(
        s.cp.connection_update(&intruder, "crm", ConnectionUpdate::default())
            .await
            .map(|_| ()),
        "update",
    );
    not_found(
        s.cp.connection_set_enabled(&intruder, "crm", false)
            .await
            .map(|_| ()),
        "disable",
    );
    not_found(
        s.cp.connection_test(&intruder, "crm").await.map(|_| ()),
        "test",
    );
    not_found(
        s.cp.connection_grant(&intruder, "crm", "bot", "list", false)
            .await,
        "grant",
    );
    not_found(
        s.cp.invoke(&intruder, "crm", "list", r#"{"type":"items"}"#)
            .await
            .map(|_| ()),
        "invoke",
    );
    assert!(s.cp.connection_list(&intruder).await.unwrap().is_empty());
    // The owner still has it, untouched.
    assert_eq!(
        s.cp.connection_show(&admin("acme"), "crm")
            .await
            .unwrap()
            .record
            .revision,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_write_on_a_read_only_connection_is_denied_naming_the_setting() {
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    s.cp.connection_create(&admin("acme"), spec("crm", false))
        .await
        .unwrap();
    let op = user("acme", Role::Operator);
    let err =
        s.cp.invoke(&op, "crm", "create", r#"{"type":"items","data":{}}"#)
            .await
            .unwrap_err();
    assert_eq!(rule_of(&err), "read-only-connection");
    assert!(err.to_string().contains("writes_enabled = false"), "{err}");
    assert_eq!(
        err.remedy(),
        Some(airlock::remedy::Remedy::EnableWrites {
            connection: "crm".into()
        })
    );
    assert_eq!(err.exit_code(), 2);
    // The audit record keeps the remedy as data, for whichever front end shows it later.
    let records = s.cp.audit_list(&admin("acme"), 10).await.unwrap();
    let denied = records
        .iter()
        .rev()
        .find(|r| r.rule == "read-only-connection")
        .expect("the denial is audited");
    assert_eq!(
        denied.remedy,
        Some(airlock::remedy::Remedy::EnableWrites {
            connection: "crm".into()
        })
    );
    // Reads work; after enabling writes, so does the write.
    s.cp.invoke(&op, "crm", "list", r#"{"type":"items"}"#)
        .await
        .unwrap();
    s.cp.connection_update(
        &admin("acme"),
        "crm",
        ConnectionUpdate {
            writes_enabled: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.cp.invoke(&op, "crm", "create", r#"{"type":"items","data":{}}"#)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_invalid_config_is_rejected_field_by_field() {
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    let bad = ConnectionSpec {
        config: json!({"latency_ms": "slow", "error_rate": 7, "region": "eu"}),
        allowed_operations: Some(vec!["list".into(), "truncate".into()]),
        ..spec("crm", false)
    };
    let err =
        s.cp.connection_create(&admin("acme"), bad)
            .await
            .unwrap_err();
    let ControlError::Invalid(problems) = &err else {
        panic!("expected invalid input, got {err:?}")
    };
    let text = problems.join("\n");
    assert!(text.contains("config field `latency_ms`"), "{text}");
    assert!(text.contains("config field `error_rate`"), "{text}");
    assert!(text.contains("'region' was unexpected"), "{text}");
    assert!(
        text.contains("operation `truncate` is not in sandbox's manifest"),
        "{text}"
    );
    assert_eq!(problems.len(), 4, "{text}");
    // Nothing was stored.
    assert!(
        s.cp.connection_list(&admin("acme"))
            .await
            .unwrap()
            .is_empty()
    );
    let name =
        s.cp.connection_create(&admin("acme"), spec("bad/name", false))
            .await
            .unwrap_err();
    assert!(
        name.to_string().contains("invalid connection name"),
        "{name}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_stored_config_is_not_readable_as_plaintext() {
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    // A unique value that only the config holds; the sandbox's config schema allows numbers only,
    // so the marker is a number no schema or manifest contains.
    let marker = 987_654_321_u64;
    let spec = ConnectionSpec {
        config: json!({"latency_ms": marker}),
        ..spec("crm", false)
    };
    s.cp.connection_create(&admin("acme"), spec).await.unwrap();
    s.cp.flush_audit().await.unwrap();
    let shown = s.cp.connection_show(&admin("acme"), "crm").await.unwrap();
    assert_eq!(shown.config["latency_ms"], marker);
    let mut scanned = 0;
    for entry in std::fs::read_dir(s.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        scanned += bytes.len();
        assert!(
            !bytes.windows(9).any(|w| w == marker.to_string().as_bytes()),
            "the config value is readable in the database files"
        );
    }
    assert!(scanned > 0);
    // And the sealed row does not open for another tenant or connection (it is bound to both).
    let row = s
        .state
        .get_connection("acme", "crm")
        .await
        .unwrap()
        .unwrap();
    let mut moved = row.clone();
    moved.tenant = "globex".into();
    s.state.insert_connection(&moved).await.unwrap();
    let err =
        s.cp.connection_show(&admin("globex"), "crm")
            .await
            .unwrap_err();
    assert!(
        matches!(err, ControlError::Vault(_)),
        "a config moved to another tenant opened: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_agents_need_a_grant_per_connection_and_operation() {
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    s.cp.connection_create(&admin("acme"), spec("crm", true))
        .await
        .unwrap();
    let bot = agent("acme", "support-bot");
    let err =
        s.cp.invoke(&bot, "crm", "list", r#"{"type":"items"}"#)
            .await
            .unwrap_err();
    assert_eq!(rule_of(&err), "agent-needs-grant");
    s.cp.connection_grant(&admin("acme"), "crm", "support-bot", "list", false)
        .await
        .unwrap();
    s.cp.invoke(&bot, "crm", "list", r#"{"type":"items"}"#)
        .await
        .unwrap();
    // The grant is for `list` only, and for this agent only.
    assert_eq!(
        rule_of(
            &s.cp
                .invoke(&bot, "crm", "get", r#"{"type":"items","id":"1"}"#)
                .await
                .unwrap_err()
        ),
        "agent-needs-grant"
    );
    let other = agent("acme", "sales-bot");
    assert_eq!(
        rule_of(
            &s.cp
                .invoke(&other, "crm", "list", r#"{"type":"items"}"#)
                .await
                .unwrap_err()
        ),
        "agent-needs-grant"
    );
    // Agents take no administrative action, even as admins.
    let admin_bot = Principal {
        role: Role::Admin,
        ..bot.clone()
    };
    assert_eq!(
        rule_of(&s.cp.connection_list(&admin_bot).await.unwrap_err()),
        "agents-act-through-grants"
    );
    s.cp.connection_grant(&admin("acme"), "crm", "support-bot", "list", true)
        .await
        .unwrap();
    assert_eq!(
        rule_of(
            &s.cp
                .invoke(&bot, "crm", "list", r#"{"type":"items"}"#)
                .await
                .unwrap_err()
        ),
        "agent-needs-grant"
    );
    let err =
        s.cp.connection_grant(&admin("acme"), "crm", "support-bot", "drop", false)
            .await
            .unwrap_err();
    assert!(
        err.to_string()
            .contains("operation `drop` is not in sandbox's manifest"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_connection_settings_restrict_invocations() {
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    let restricted = ConnectionSpec {
        allowed_operations: Some(vec!["list".into(), "create".into()]),
        allowed_objects: Some(vec!["tickets".into()]),
        required_roles: [("create".to_owned(), Role::Admin)].into(),
        ..spec("crm", true)
    };
    s.cp.connection_create(&admin("acme"), restricted)
        .await
        .unwrap();
    let op = user("acme", Role::Operator);
    let deny = |r: Result<airlock::Outcome, ControlError>| rule_of(&r.unwrap_err());
    assert_eq!(
        deny(
            s.cp.invoke(&op, "crm", "get", r#"{"type":"tickets","id":"1"}"#)
                .await
        ),
        "operation-not-allowed"
    );
    assert_eq!(
        deny(
            s.cp.invoke(&op, "crm", "list", r#"{"type":"invoices"}"#)
                .await
        ),
        "object-not-allowed"
    );
    s.cp.invoke(&op, "crm", "list", r#"{"type":"tickets"}"#)
        .await
        .unwrap();
    assert_eq!(
        deny(
            s.cp.invoke(&op, "crm", "create", r#"{"type":"tickets","data":{}}"#)
                .await
        ),
        "connection-required-role"
    );
    s.cp.invoke(
        &admin("acme"),
        "crm",
        "create",
        r#"{"type":"tickets","data":{}}"#,
    )
    .await
    .unwrap();

    s.cp.connection_set_enabled(&admin("acme"), "crm", false)
        .await
        .unwrap();
    assert_eq!(
        deny(
            s.cp.invoke(&op, "crm", "list", r#"{"type":"tickets"}"#)
                .await
        ),
        "connection-disabled"
    );
    s.cp.connection_set_enabled(&admin("acme"), "crm", true)
        .await
        .unwrap();
    s.cp.connector_set_enabled(&admin("acme"), "sandbox", None, false)
        .await
        .unwrap();
    assert_eq!(
        deny(
            s.cp.invoke(&op, "crm", "list", r#"{"type":"tickets"}"#)
                .await
        ),
        "connector-disabled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_test_records_the_result_and_status() {
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    s.cp.connection_create(&admin("acme"), spec("crm", true))
        .await
        .unwrap();
    let op = user("acme", Role::Operator);
    s.cp.invoke(&op, "crm", "create", r#"{"type":"items","data":{"n":1}}"#)
        .await
        .unwrap();
    let report = s.cp.connection_test(&op, "crm").await.unwrap();
    assert!(report.ok, "{report:?}");
    let shown = s.cp.connection_show(&op, "crm").await.unwrap();
    assert_eq!(shown.record.status, "connected");
    assert_eq!(shown.record.last_test_ok, Some(true));
    assert!(
        shown
            .record
            .last_test_message
            .unwrap()
            .contains("sandbox 0.1.0 ready")
    );
    s.cp.connection_update(
        &admin("acme"),
        "crm",
        ConnectionUpdate {
            config: Some(json!({"error_rate": 1})),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let report = s.cp.connection_test(&op, "crm").await.unwrap();
    assert!(!report.ok);
    let shown = s.cp.connection_show(&op, "crm").await.unwrap();
    assert_eq!(shown.record.status, "error");
    assert!(shown.record.last_test_message.unwrap().contains("503"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_audit_records_every_decision_with_secrets_redacted() {
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    s.cp.connection_create(&admin("acme"), spec("crm", true))
        .await
        .unwrap();
    let op = user("acme", Role::Operator);
    s.cp.invoke(
        &op,
        "crm",
        "create",
        r#"{"type":"items","data":{"name":"w","password":"hunter2","api_token":"t0k"}}"#,
    )
    .await
    .unwrap();
    s.cp.invoke(
        &user("acme", Role::Viewer),
        "crm",
        "list",
        r#"{"type":"items"}"#,
    )
    .await
    .unwrap_err();
    s.cp.invoke(&admin("globex"), "crm", "list", "{}")
        .await
        .unwrap_err();
    let err = s.cp.audit_list(&op, 100).await.unwrap_err();
    assert_eq!(rule_of(&err), "auditor-reads-audit");

    let records =
        s.cp.audit_list(&user("acme", Role::Auditor), 100)
            .await
            .unwrap();
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| (r.action.clone(), r.outcome.clone(), r.rule.clone()))
        .collect();
    let expect = [
        ("connector.register", "ok", "admin-manages-registry"),
        ("connection.create", "ok", "admin-configures-connections"),
        // A write's record is stored before it runs, its outcome after.
        ("invoke.write", "started", "operator-invokes"),
        ("invoke.write", "ok", "operator-invokes"),
        ("invoke.read", "denied", "operator-invokes"),
        ("audit.list", "denied", "auditor-reads-audit"),
    ];
    for (i, (a, o, r)) in expect.iter().enumerate() {
        assert_eq!(
            summary[i],
            (a.to_string(), o.to_string(), r.to_string()),
            "record {i}: {summary:?}"
        );
    }
    let write = &records[3];
    assert_eq!(
        records[2].invocation_id, write.invocation_id,
        "the started and the finished record of one write share its invocation id"
    );
    assert_eq!(write.principal, "operator");
    assert_eq!(write.operation.as_deref(), Some("create"));
    assert!(write.invocation_id.is_some());
    let params = write.params.as_ref().unwrap().to_string();
    assert!(
        !params.contains("hunter2") && !params.contains("t0k"),
        "{params}"
    );
    assert!(params.contains("\"name\":\"w\""), "{params}");
    // Globex's failed lookup is in globex's log, not acme's.
    assert!(records.iter().all(|r| r.tenant == "acme"));
    let globex = s.cp.audit_list(&admin("globex"), 100).await.unwrap();
    assert!(
        globex
            .iter()
            .any(|r| r.action == "invoke.read" && r.outcome == "error"),
        "{globex:?}"
    );
    // Nothing in the stored log contains a secret.
    for (_, text) in s.state.list_audit("acme", 1000).await.unwrap() {
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_versions_coexist_and_connections_pin_or_follow_the_latest_enabled() {
    let s = setup().await;
    let a = admin("acme");
    register_sandbox(&s.cp, "acme").await;
    let next = std::fs::read(guest("sandbox-next")).unwrap();
    let registered = s.cp.register(&a, &next, &|_| {}).await.unwrap();
    assert_eq!(
        (
            registered.connector.id.as_str(),
            registered.connector.version.as_str()
        ),
        ("sandbox", "0.2.0")
    );
    let versions: Vec<String> =
        s.cp.connector_show(&a, "sandbox")
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.version)
            .collect();
    assert_eq!(versions, ["0.1.0", "0.2.0"]);

    s.cp.connection_create(&a, spec("follows", false))
        .await
        .unwrap();
    s.cp.connection_create(
        &a,
        ConnectionSpec {
            version: Some("0.1.0".into()),
            ..spec("pinned", false)
        },
    )
    .await
    .unwrap();
    let health = |name: &'static str| {
        let cp = &s.cp;
        let a = a.clone();
        async move {
            let report = cp.connection_test(&a, name).await.unwrap();
            serde_json::to_string(&report.health).unwrap()
        }
    };
    assert!(health("follows").await.contains("sandbox 0.2.0 ready"));
    assert!(health("pinned").await.contains("sandbox 0.1.0 ready"));
    // Disabling the newest version moves followers back to the one before; pins stay.
    s.cp.connector_set_enabled(&a, "sandbox", Some("0.2.0"), false)
        .await
        .unwrap();
    assert!(health("follows").await.contains("sandbox 0.1.0 ready"));
    // A pin to a disabled version is refused with the rule that says so.
    s.cp.connection_update(
        &a,
        "pinned",
        ConnectionUpdate {
            version: Some(Some("0.2.0".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let err =
        s.cp.invoke(
            &user("acme", Role::Operator),
            "pinned",
            "list",
            r#"{"type":"items"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(rule_of(&err), "connector-disabled");
    let err =
        s.cp.connection_update(
            &a,
            "pinned",
            ConnectionUpdate {
                version: Some(Some("9.0.0".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has no version 9.0.0; registered: 0.1.0, 0.2.0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_rate_limit_answers_with_the_time_to_wait() {
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    let limited = ConnectionSpec {
        queries_per_minute: Some(2),
        ..spec("crm", false)
    };
    s.cp.connection_create(&admin("acme"), limited)
        .await
        .unwrap();
    let op = user("acme", Role::Operator);
    let list = r#"{"type":"items"}"#;
    s.cp.invoke(&op, "crm", "list", list).await.unwrap();
    s.cp.invoke(&op, "crm", "list", list).await.unwrap();
    let err = s.cp.invoke(&op, "crm", "list", list).await.unwrap_err();
    let ControlError::RateLimited {
        per_minute,
        retry_after,
        ..
    } = &err
    else {
        panic!("expected a rate limit, got {err:?}")
    };
    assert_eq!(*per_minute, 2);
    assert!(
        retry_after.as_secs() >= 29 && retry_after.as_secs() <= 30,
        "{retry_after:?}"
    );
    assert!(
        err.to_string()
            .contains("allows 2 invocations per minute; retry in"),
        "{err}"
    );
    // The bucket is in the store: another process (each `airlock invoke` is one) finds it
    // empty too, rather than a full bucket of its own.
    let other = s.second_plane();
    let err = other.invoke(&op, "crm", "list", list).await.unwrap_err();
    assert!(
        matches!(err, ControlError::RateLimited { .. }),
        "a second process got past the limit: {err:?}"
    );
    // Lifting the limit lets calls through at once.
    let lift = ConnectionUpdate {
        queries_per_minute: Some(None),
        ..Default::default()
    };
    s.cp.connection_update(&admin("acme"), "crm", lift)
        .await
        .unwrap();
    s.cp.invoke(&op, "crm", "list", list).await.unwrap();
    s.cp.flush_audit().await.unwrap();
    let audit =
        s.cp.audit_list(&user("acme", Role::Auditor), 50)
            .await
            .unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.rule == "rate-limit" && r.outcome == "denied"),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_health_reports_figures_and_states_per_connection_and_operation() {
    use airlock::control::metrics::Health;
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    s.cp.connection_create(&admin("acme"), spec("good", true))
        .await
        .unwrap();
    let failing = ConnectionSpec {
        config: json!({"error_rate": 1.0}),
        ..spec("flaky", false)
    };
    s.cp.connection_create(&admin("acme"), failing)
        .await
        .unwrap();
    let op = user("acme", Role::Operator);
    for _ in 0..5 {
        s.cp.invoke(&op, "good", "create", r#"{"type":"items","data":{}}"#)
            .await
            .unwrap();
        s.cp.invoke(&op, "flaky", "list", r#"{"type":"items"}"#)
            .await
            .unwrap_err();
    }
    // A caller's mistake (no such record) and a policy denial are not the connection failing.
    s.cp.invoke(&op, "good", "get", r#"{"type":"items","id":"nope"}"#)
        .await
        .unwrap_err();
    s.cp.invoke(
        &user("acme", Role::Viewer),
        "good",
        "create",
        r#"{"type":"items","data":{}}"#,
    )
    .await
    .unwrap_err();
    let stats =
        s.cp.health(&user("acme", Role::Viewer), 1000)
            .await
            .unwrap();
    let find = |c: &str, o: &str| {
        stats
            .iter()
            .find(|x| x.connection == c && x.operation == o)
            .unwrap_or_else(|| panic!("{c}/{o}: {stats:?}"))
    };
    let create = find("good", "create");
    assert_eq!(
        (create.calls, create.errors, create.denied, create.health),
        (5, 0, 1, Health::Healthy)
    );
    assert!(
        create.p50_ms > 0.0 && create.p50_ms <= create.p95_ms && create.p95_ms <= create.p99_ms
    );
    let get = find("good", "get");
    assert_eq!((get.calls, get.errors, get.health), (1, 0, Health::Healthy));
    let flaky = find("flaky", "list");
    assert_eq!(
        (flaky.calls, flaky.errors, flaky.health),
        (5, 5, Health::Down)
    );
    assert_eq!(flaky.error_rate, 1.0);
    // Another tenant sees none of it.
    assert!(
        s.cp.health(&admin("globex"), 1000)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Params are checked against the operation's `params-schema` before anything runs (issue 10):
/// refused naming each bad field, with no rate-limit token, approval request, audit "started"
/// record or guest run spent on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_params_violating_the_schema_are_refused_before_the_guest_runs() {
    let s = setup().await;
    register_sandbox(&s.cp, "acme").await;
    s.cp.connection_create(&admin("acme"), spec("crm", true))
        .await
        .unwrap();
    let op = user("acme", Role::Operator);
    let err =
        s.cp.invoke(
            &op,
            "crm",
            "create",
            r#"{"type": "no such/type!", "data": "not an object", "colour": "red"}"#,
        )
        .await
        .unwrap_err();
    let ControlError::Invalid(problems) = &err else {
        panic!("expected invalid params, got {err:?}");
    };
    let text = problems.join("\n");
    for field in ["field `type`", "field `data`", "colour"] {
        assert!(text.contains(field), "{field} not named: {text}");
    }
    assert_eq!(err.exit_code(), 1);
    let listed =
        s.cp.invoke(&op, "crm", "list", r#"{"type": "items"}"#)
            .await
            .unwrap();
    assert!(listed.output.contains("\"count\":0"), "{}", listed.output);
    s.cp.flush_audit().await.unwrap();
    let records =
        s.cp.audit_list(&user("acme", Role::Auditor), 50)
            .await
            .unwrap();
    assert!(
        !records.iter().any(|r| r.outcome == "started"),
        "the refused write was started"
    );
    let refused = records
        .iter()
        .find(|r| r.operation.as_deref() == Some("create"))
        .unwrap();
    assert_eq!(
        (refused.rule.as_str(), refused.error_kind.as_deref()),
        ("params-schema", Some("invalid-input"))
    );
}
