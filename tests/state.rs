//! The state store contract. `check_store` takes any [`StateStore`]: the PostgreSQL backend will
//! run the same function.

use airlock::control::state::{
    ConnectionRecord, ConnectorRecord, Grant, HistoryEntry, SqliteState, StateError, StateStore,
};
use std::sync::Arc;

fn connector(tenant: &str, version: &str, digest: &str) -> ConnectorRecord {
    ConnectorRecord {
        tenant: tenant.into(),
        id: "crm".into(),
        version: version.into(),
        digest: digest.into(),
        manifest: "{}".into(),
        enabled: true,
        registered_by: "ada".into(),
        registered_at: 1,
    }
}

fn connection(tenant: &str, name: &str) -> ConnectionRecord {
    ConnectionRecord {
        tenant: tenant.into(),
        name: name.into(),
        connector: "crm".into(),
        connector_version: None,
        config_sealed: vec![1, 2, 3],
        status: "new".into(),
        allowed_operations: Some(vec!["list".into()]),
        allowed_objects: None,
        required_roles: [("delete".to_owned(), "Admin".to_owned())].into(),
        writes_enabled: false,
        limits: serde_json::json!({"deadline": 1000}),
        last_test_at: None,
        last_test_ok: None,
        last_test_message: None,
        created_by: "ada".into(),
        created_at: 1,
        updated_at: 1,
        revision: 1,
        egress: vec!["https://api.example.com".into()],
        queries_per_minute: Some(60),
        accept_read_routes: true,
        approval_policy: serde_json::json!({"require_from": "high"}),
        data_policy: serde_json::json!({"cache_ttl_s": 30}),
    }
}

async fn check_store(store: Arc<dyn StateStore>) {
    // Components: content-addressed, idempotent.
    store.put_component("d1", b"bytes").await.unwrap();
    store.put_component("d1", b"bytes").await.unwrap();
    assert_eq!(
        store.get_component("d1").await.unwrap().as_deref(),
        Some(&b"bytes"[..])
    );
    assert_eq!(store.get_component("nope").await.unwrap(), None);

    // Connectors: versions coexist, a duplicate version conflicts, tenants are apart.
    store.put_component("d2", b"other").await.unwrap();
    store
        .insert_connector(&connector("acme", "1.0.0", "d1"))
        .await
        .unwrap();
    store
        .insert_connector(&connector("acme", "1.1.0", "d2"))
        .await
        .unwrap();
    let dup = store
        .insert_connector(&connector("acme", "1.0.0", "d2"))
        .await
        .unwrap_err();
    assert!(matches!(dup, StateError::Conflict(_)), "{dup:?}");
    store
        .insert_connector(&connector("globex", "1.0.0", "d1"))
        .await
        .unwrap();
    assert_eq!(
        store.connector_versions("acme", "crm").await.unwrap().len(),
        2
    );
    assert_eq!(store.list_connectors("globex").await.unwrap().len(), 1);
    assert!(
        store
            .set_connector_enabled("acme", "crm", "1.0.0", false)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_connector_enabled("acme", "crm", "9.9.9", false)
            .await
            .unwrap()
    );
    let versions = store.connector_versions("acme", "crm").await.unwrap();
    assert!(
        !versions
            .iter()
            .find(|v| v.version == "1.0.0")
            .unwrap()
            .enabled
    );
    assert!(
        store.connector_versions("globex", "crm").await.unwrap()[0].enabled,
        "another tenant's flag changed"
    );

    // History: consecutive sequence numbers per tenant.
    for action in ["register", "disable"] {
        let entry = HistoryEntry {
            seq: 0,
            connector: "crm".into(),
            version: "1.0.0".into(),
            action: action.into(),
            actor: "ada".into(),
            at: 2,
            detail: serde_json::json!({"n": 1}),
        };
        store.append_history("acme", &entry).await.unwrap();
    }
    let history = store.history("acme", Some("crm")).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| (h.seq, h.action.as_str()))
            .collect::<Vec<_>>(),
        [(1, "register"), (2, "disable")]
    );
    assert!(store.history("globex", None).await.unwrap().is_empty());
    assert!(
        store
            .history("acme", Some("other"))
            .await
            .unwrap()
            .is_empty()
    );

    // Connections: round trip, conflict on create, optimistic concurrency on update.
    let c = connection("acme", "main");
    store.insert_connection(&c).await.unwrap();
    assert!(matches!(
        store.insert_connection(&c).await.unwrap_err(),
        StateError::Conflict(_)
    ));
    assert_eq!(
        store.get_connection("acme", "main").await.unwrap().unwrap(),
        c
    );
    assert_eq!(store.get_connection("globex", "main").await.unwrap(), None);
    let mut next = c.clone();
    next.revision = 2;
    next.writes_enabled = true;
    store.update_connection(&next).await.unwrap();
    let stale = ConnectionRecord {
        revision: 2,
        status: "error".into(),
        ..c.clone()
    };
    assert!(
        matches!(
            store.update_connection(&stale).await.unwrap_err(),
            StateError::Conflict(_)
        ),
        "a stale update won"
    );
    assert!(
        store
            .get_connection("acme", "main")
            .await
            .unwrap()
            .unwrap()
            .writes_enabled
    );
    store
        .insert_connection(&connection("acme", "aux"))
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_connections("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["aux", "main"]);

    // Grants.
    let grant = Grant {
        connection: "main".into(),
        agent: "bot".into(),
        operation: "list".into(),
        granted_by: "ada".into(),
        granted_at: 3,
    };
    store.put_grant("acme", &grant).await.unwrap();
    store.put_grant("acme", &grant).await.unwrap();
    assert!(
        store
            .has_grant("acme", "main", "bot", "list")
            .await
            .unwrap()
    );
    assert!(
        !store
            .has_grant("globex", "main", "bot", "list")
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_grants("acme", "main").await.unwrap(),
        vec![grant]
    );
    assert!(
        store
            .delete_grant("acme", "main", "bot", "list")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_grant("acme", "main", "bot", "list")
            .await
            .unwrap()
    );

    // Credentials: replace in place, per tenant.
    let cred = airlock::control::state::CredentialRecord {
        connection: "main".into(),
        name: "token".into(),
        kind: "bearer".into(),
        placement: serde_json::json!({"kind": "bearer"}),
        hosts: vec!["https://api.example.com".into()],
        secret_sealed: vec![9, 9, 9],
        created_by: "ada".into(),
        created_at: 4,
        rotated_at: None,
        version: 1,
    };
    store.put_credential("acme", &cred).await.unwrap();
    let rotated = airlock::control::state::CredentialRecord {
        secret_sealed: vec![7],
        rotated_at: Some(5),
        version: 2,
        ..cred.clone()
    };
    store.put_credential("acme", &rotated).await.unwrap();
    assert_eq!(
        store.list_credentials("acme", "main").await.unwrap(),
        vec![rotated]
    );
    assert!(
        store
            .list_credentials("globex", "main")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .delete_credential("globex", "main", "token")
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_credential("acme", "main", "token")
            .await
            .unwrap()
    );

    // Audit: consecutive sequence numbers across batches, per-tenant reads, oldest first.
    let batch = |n: i64, tenant: &str| {
        (0..n)
            .map(|i| (i, tenant.to_owned(), format!("{{\"i\":{i}}}")))
            .collect::<Vec<_>>()
    };
    let (seq, hash) = store.append_audit(&batch(3, "acme"), true).await.unwrap();
    assert_eq!((seq, hash.as_ref().map(String::len)), (3, Some(64)));
    let (seq, _) = store.append_audit(&batch(2, "globex"), true).await.unwrap();
    assert_eq!(seq, 5);
    // Each record chains onto the one before, across batches.
    let rows = store.audit_rows(0, 10).await.unwrap();
    assert_eq!(
        rows[0].prev_hash.as_deref(),
        Some(airlock::control::audit::GENESIS)
    );
    for pair in rows.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let acme = store.list_audit("acme", 10).await.unwrap();
    assert_eq!(
        acme.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        store
            .list_audit("acme", 2)
            .await
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
        [2, 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    check_store(Arc::new(
        SqliteState::open(&dir.path().join("airlock.db"))
            .await
            .unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_sqlite_migrates_once_and_keeps_data_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/airlock.db");
    {
        let store = SqliteState::open(&path).await.unwrap();
        store.put_component("d1", b"x").await.unwrap();
    }
    let store = SqliteState::open(&path).await.unwrap();
    assert_eq!(
        store.get_component("d1").await.unwrap().as_deref(),
        Some(&b"x"[..])
    );
    let err = SqliteState::open(std::path::Path::new("/proc/airlock/x.db"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("/proc/airlock"), "{err}");
}

#[test]
fn state_every_migration_file_is_listed_in_order() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let listed = airlock::control::state::MIGRATIONS;
    assert_eq!(
        files.len(),
        listed.len(),
        "a migration file is missing from MIGRATIONS: {files:?}"
    );
    for (i, (file, (version, _, sql))) in files.iter().zip(listed).enumerate() {
        assert_eq!(*version, i as i64 + 1);
        assert!(file.starts_with(&format!("{:04}_", version)), "{file}");
        assert_eq!(
            std::fs::read_to_string(format!("{dir}/{file}")).unwrap(),
            *sql,
            "{file}"
        );
    }
}
