//! The state store's contracts, one per narrow trait (`registry_contract`, `connection_contract`,
//! ...), each generic over the backend: the PostgreSQL backend will run the same functions, and a
//! Redis backend the coordination one.

use crate::common;
use airlock::control::audit::chain_rows;
use airlock::control::state::{
    AccessStore, ApprovalStore, AuditHead, AuditStore, ConnectionRecord, ConnectionStore,
    ConnectorRecord, CoordinationStore, CredentialStore, Grant, HistoryEntry, RegistryStore,
    SqliteState, StateError, StateStore,
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
        status: airlock::control::state::ConnectionStatus::New,
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

/// Appends a batch the way the audit writer does: chained onto the head.
async fn append<S: AuditStore + ?Sized>(store: &S, batch: &[(i64, String, String)]) -> AuditHead {
    let head = store.audit_head().await.unwrap();
    let rows = chain_rows(&head, batch, true);
    assert!(store.append_audit(&head, &rows).await.unwrap());
    store.audit_head().await.unwrap()
}

/// [`RegistryStore`]: components, connector versions, history.
async fn registry_contract<S: RegistryStore + ?Sized>(store: &S) {
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
}

/// [`ConnectionStore`]: connections and grants.
async fn connection_contract<S: ConnectionStore + ?Sized>(store: &S) {
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
        status: airlock::control::state::ConnectionStatus::Error,
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
}

/// [`CredentialStore`], on a connection that exists.
async fn credential_contract<S: CredentialStore + ConnectionStore + ?Sized>(store: &S) {
    store
        .insert_connection(&connection("acme", "main"))
        .await
        .unwrap();
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
}

fn approval(tenant: &str, id: &str, expires_at: i64) -> airlock::control::state::ApprovalRecord {
    use airlock::control::state::{ApprovalRecord, ApprovalStatus};
    ApprovalRecord {
        tenant: tenant.into(),
        id: id.into(),
        connection: "main".into(),
        connector_digest: "d".into(),
        operation: "create".into(),
        params_sealed: vec![1],
        action_hash: "h".into(),
        risk: airlock::manifest::Risk::High,
        rationale: Some("why".into()),
        requested_by: "olivia".into(),
        requester_kind: airlock::control::PrincipalKind::Agent,
        requester_role: airlock::Role::Operator,
        requested_at: 1,
        expires_at,
        status: ApprovalStatus::Pending,
        decided_by: None,
        decided_at: None,
        reason: None,
        lease_until: None,
        finished_at: None,
        output_sealed: None,
        error: None,
        preview: Some("{}".into()),
    }
}

/// [`ApprovalStore`]: each status change true for exactly one caller; expiry for good;
/// tenants apart.
async fn approval_contract<S: ApprovalStore + ?Sized>(store: &S) {
    use airlock::control::state::ApprovalStatus;
    let pending = approval("acme", "apr-1", 1_000);
    store.insert_approval(&pending).await.unwrap();
    assert!(
        store.insert_approval(&pending).await.is_err(),
        "ids are unique"
    );
    assert_eq!(
        store.approval("acme", "apr-1").await.unwrap(),
        Some(pending.clone())
    );
    assert_eq!(store.approval("globex", "apr-1").await.unwrap(), None);
    // Decided once: the second decision (either way) loses.
    assert!(
        store
            .decide_approval("acme", "apr-1", true, "ada", None, 10)
            .await
            .unwrap()
    );
    assert!(
        !store
            .decide_approval("acme", "apr-1", false, "bob", Some("no"), 11)
            .await
            .unwrap()
    );
    let decided = store.approval("acme", "apr-1").await.unwrap().unwrap();
    assert_eq!(
        (decided.status, decided.decided_by.as_deref()),
        (ApprovalStatus::Approved, Some("ada"))
    );
    assert_eq!(
        store.count_open_approvals().await.unwrap(),
        [("approved".to_owned(), 1)]
    );
    // Claimed once, given back, claimed again, finished.
    assert_eq!(store.approvals_to_resume(20).await.unwrap().len(), 1);
    assert!(store.claim_approval("acme", "apr-1", 100).await.unwrap());
    assert!(!store.claim_approval("acme", "apr-1", 100).await.unwrap());
    assert!(
        store.approvals_to_resume(20).await.unwrap().is_empty(),
        "leased"
    );
    assert_eq!(
        store.approvals_to_resume(101).await.unwrap().len(),
        1,
        "lease ran out"
    );
    store.unclaim_approval("acme", "apr-1").await.unwrap();
    assert!(store.claim_approval("acme", "apr-1", 100).await.unwrap());
    store
        .finish_approval(
            "acme",
            "apr-1",
            ApprovalStatus::Executed,
            Some(&[7]),
            None,
            30,
        )
        .await
        .unwrap();
    let done = store.approval("acme", "apr-1").await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.output_sealed.as_deref()),
        (ApprovalStatus::Executed, Some(&[7u8][..]))
    );
    assert!(!store.claim_approval("acme", "apr-1", 100).await.unwrap());
    // Expiry: past its time a pending request cannot be decided, ever.
    store
        .insert_approval(&approval("acme", "apr-2", 50))
        .await
        .unwrap();
    store
        .insert_approval(&approval("globex", "apr-3", 50))
        .await
        .unwrap();
    assert_eq!(store.expire_approvals("acme", 60).await.unwrap(), 1);
    assert!(
        !store
            .decide_approval("acme", "apr-2", true, "ada", None, 61)
            .await
            .unwrap()
    );
    assert_eq!(
        store.expire_all_approvals(60).await.unwrap(),
        1,
        "globex's too"
    );
    let open: Vec<String> = store
        .list_approvals("acme", true)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert!(open.is_empty(), "{open:?}");
    assert_eq!(store.list_approvals("acme", false).await.unwrap().len(), 2);
}

/// [`CoordinationStore`]: breakers counted and probed by every process together, rate tokens
/// taken atomically, one OAuth2 fetch lease at a time.
async fn coordination_contract<S: CoordinationStore + ?Sized>(store: &S) {
    use airlock::control::state::{BreakerState, TokenKey};
    let (t, c, o) = ("acme", "main", "https://api.example.com:443");
    assert_eq!(store.breaker(t, c, o).await.unwrap(), None);
    // Two failures under a threshold of three stay closed; the third opens it.
    for expected in [
        BreakerState::Closed,
        BreakerState::Closed,
        BreakerState::Open,
    ] {
        let b = store
            .count_breaker_failure(t, c, o, 3, 1_000)
            .await
            .unwrap();
        assert_eq!(b.state, expected, "{b:?}");
    }
    assert_eq!(store.tripped_breakers(t).await.unwrap().len(), 1);
    assert_eq!(
        store.count_tripped_breakers().await.unwrap(),
        [("open".to_owned(), 1)]
    );
    assert!(store.tripped_breakers("globex").await.unwrap().is_empty());
    // Not before the cooldown; then one probe for one caller.
    assert!(!store.take_breaker_probe(t, c, o, 999, 2_000).await.unwrap());
    assert!(
        store
            .take_breaker_probe(t, c, o, 1_000, 2_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_breaker_probe(t, c, o, 1_001, 2_000)
            .await
            .unwrap()
    );
    store
        .set_breaker(t, c, o, BreakerState::Closed, 0)
        .await
        .unwrap();
    assert!(store.tripped_breakers(t).await.unwrap().is_empty());
    // Two tokens a minute: two now, the third waits about half a minute.
    assert_eq!(store.take_rate_token(t, c, 2, 0).await.unwrap(), Ok(()));
    assert_eq!(store.take_rate_token(t, c, 2, 0).await.unwrap(), Ok(()));
    let wait = store
        .take_rate_token(t, c, 2, 0)
        .await
        .unwrap()
        .unwrap_err();
    assert!((29_000..=30_000).contains(&wait), "{wait}");
    assert_eq!(
        store.take_rate_token(t, c, 2, 30_000).await.unwrap(),
        Ok(())
    );
    assert_eq!(
        store.take_rate_token(t, "other", 2, 0).await.unwrap(),
        Ok(())
    );
    // OAuth2: one lease at a time; the token outlives a released lease.
    let key = TokenKey {
        tenant: t,
        connection: c,
        credential: "oauth",
        version: 1,
    };
    assert_eq!(store.oauth_token(&key).await.unwrap(), None);
    assert!(store.take_oauth_lease(&key, 0, 100).await.unwrap());
    assert!(!store.take_oauth_lease(&key, 50, 150).await.unwrap());
    store.put_oauth_token(&key, &[1, 2], 5_000).await.unwrap();
    let token = store.oauth_token(&key).await.unwrap().unwrap();
    assert_eq!(
        (token.token_sealed.as_deref(), token.refresh_at_ms),
        (Some(&[1u8, 2][..]), 5_000)
    );
    assert!(
        store.take_oauth_lease(&key, 60, 160).await.unwrap(),
        "put frees the lease"
    );
    store.release_oauth_lease(&key).await.unwrap();
    assert!(
        store
            .oauth_token(&key)
            .await
            .unwrap()
            .unwrap()
            .token_sealed
            .is_some()
    );
    assert!(store.take_oauth_lease(&key, 70, 170).await.unwrap());
}

/// [`AccessStore`]: tokens by id, listed per tenant, revoked once and only in their tenant.
async fn access_contract<S: AccessStore + ?Sized>(store: &S) {
    use airlock::control::state::ApiTokenRecord;
    let token = |tenant: &str, id: &str, at: i64| ApiTokenRecord {
        id: id.into(),
        tenant: tenant.into(),
        kind: airlock::control::PrincipalKind::Agent,
        subject: "bot".into(),
        role: airlock::Role::Operator,
        secret_hash: "ab".repeat(32),
        label: Some("ci".into()),
        created_by: "ada".into(),
        created_at: at,
        expires_at: Some(at + 1_000),
        revoked_at: None,
        revoked_by: None,
    };
    let first = token("acme", "0000000000000001", 1);
    store.insert_api_token(&first).await.unwrap();
    store
        .insert_api_token(&token("acme", "0000000000000002", 2))
        .await
        .unwrap();
    store
        .insert_api_token(&token("globex", "0000000000000003", 3))
        .await
        .unwrap();
    assert!(matches!(
        store.insert_api_token(&first).await.unwrap_err(),
        StateError::Conflict(_)
    ));
    assert_eq!(
        store.api_token("0000000000000001").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.api_token("ffffffffffffffff").await.unwrap(), None);
    let ids: Vec<String> = store
        .list_api_tokens("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        ids,
        ["0000000000000002", "0000000000000001"],
        "newest first"
    );
    assert!(
        !store
            .revoke_api_token("globex", &first.id, "eve", 5)
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke_api_token("acme", &first.id, "ada", 5)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_api_token("acme", &first.id, "ada", 6)
            .await
            .unwrap()
    );
    let revoked = store.api_token(&first.id).await.unwrap().unwrap();
    assert_eq!(
        (revoked.revoked_at, revoked.revoked_by.as_deref()),
        (Some(5), Some("ada"))
    );
}

/// [`AuditStore`]: appends at the head only, conditionally; reads in order and per tenant.
async fn audit_contract<S: AuditStore + ?Sized>(store: &S) {
    // Audit: consecutive sequence numbers across batches, per-tenant reads, oldest first.
    let batch = |n: i64, tenant: &str| {
        (0..n)
            .map(|i| (i, tenant.to_owned(), format!("{{\"i\":{i}}}")))
            .collect::<Vec<_>>()
    };
    assert_eq!(store.audit_head().await.unwrap(), AuditHead::default());
    let head = append(store, &batch(3, "acme")).await;
    assert_eq!(
        (head.seq, head.hash.as_ref().map(String::len)),
        (3, Some(64))
    );
    assert_eq!(store.audit_head().await.unwrap(), head);
    // A writer that read the head before another appended writes nothing, and says so.
    let stale = AuditHead::default();
    let rows = chain_rows(&stale, &batch(1, "acme"), true);
    assert!(!store.append_audit(&stale, &rows).await.unwrap());
    assert_eq!(store.audit_head().await.unwrap(), head);
    assert_eq!(append(store, &batch(2, "globex")).await.seq, 5);
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

/// Sealed values and key rotations: every sealed column in one order, re-sealing as a
/// compare-and-set, one rotation under way at a time.
async fn check_sealed_store<S: StateStore + ?Sized>(store: &S) {
    use airlock::control::state::{
        ApprovalRecord, Checkpoint, CredentialRecord, RotationCheckpoint, SealedKind,
    };
    for (tenant, name, sealed) in [("globex", "a", 3u8), ("acme", "b", 2), ("acme", "a", 1)] {
        store
            .insert_connection(&ConnectionRecord {
                config_sealed: vec![sealed],
                ..connection(tenant, name)
            })
            .await
            .unwrap();
    }
    store
        .put_credential(
            "acme",
            &CredentialRecord {
                connection: "a".into(),
                name: "token".into(),
                kind: "bearer".into(),
                placement: serde_json::json!({"kind": "bearer"}),
                hosts: vec![],
                secret_sealed: vec![4],
                created_by: "ada".into(),
                created_at: 1,
                rotated_at: None,
                version: 1,
            },
        )
        .await
        .unwrap();
    let approval = |id: &str, status: &str, params: u8| ApprovalRecord {
        tenant: "acme".into(),
        id: id.into(),
        connection: "a".into(),
        connector_digest: "d".into(),
        operation: "create".into(),
        params_sealed: vec![params],
        action_hash: "h".into(),
        risk: airlock::manifest::Risk::Medium,
        rationale: None,
        requested_by: "olivia".into(),
        requester_kind: airlock::control::PrincipalKind::User,
        requester_role: airlock::Role::Operator,
        requested_at: 1,
        expires_at: i64::MAX,
        status: status.parse().unwrap(),
        decided_by: None,
        decided_at: None,
        reason: None,
        lease_until: None,
        finished_at: None,
        output_sealed: None,
        error: None,
        preview: None,
    };
    store
        .insert_approval(&approval("apr-2", "pending", 6))
        .await
        .unwrap();
    store
        .insert_approval(&approval("apr-1", "approved", 5))
        .await
        .unwrap();
    assert!(
        store
            .claim_approval("acme", "apr-1", i64::MAX)
            .await
            .unwrap()
    );
    store
        .finish_approval(
            "acme",
            "apr-1",
            airlock::control::state::ApprovalStatus::Executed,
            Some(&[7]),
            None,
            2,
        )
        .await
        .unwrap();

    // Kind by kind, each in its key's order; the same whatever the page size.
    let all = store.sealed_values(None, 100).await.unwrap();
    let seen: Vec<(SealedKind, &str, &str, &str, u8)> = all
        .iter()
        .map(|v| {
            (
                v.kind,
                v.tenant.as_str(),
                v.connection.as_str(),
                v.name.as_str(),
                v.sealed[0],
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (SealedKind::ConnectionConfig, "acme", "a", "a", 1),
            (SealedKind::ConnectionConfig, "acme", "b", "b", 2),
            (SealedKind::ConnectionConfig, "globex", "a", "a", 3),
            (SealedKind::Credential, "acme", "a", "token", 4),
            (SealedKind::ApprovalParams, "acme", "a", "apr-1", 5),
            (SealedKind::ApprovalParams, "acme", "a", "apr-2", 6),
            (SealedKind::ApprovalOutput, "acme", "a", "apr-1", 7),
        ]
    );
    let mut paged = Vec::new();
    loop {
        let page = store.sealed_values(paged.last(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        paged.extend(page);
    }
    assert_eq!(paged, all);

    // One rotation under way at a time.
    let rotation = store
        .begin_key_rotation("k1", "k2", "ada", 10)
        .await
        .unwrap();
    assert!(matches!(
        store.begin_key_rotation("k1", "k3", "bob", 11).await,
        Err(StateError::Conflict(_))
    ));
    // Re-sealing replaces only what still holds the bytes read, and counts what it replaced.
    let mut stale = all[1].clone();
    stale.sealed = vec![99];
    let changes: Vec<_> = all
        .iter()
        .cloned()
        .map(|v| {
            let new = vec![v.sealed[0] + 100];
            (v, new)
        })
        .chain([(stale, vec![0])])
        .collect();
    let made = store.reseal(rotation.id, &changes).await.unwrap();
    assert_eq!(made, [true, true, true, true, true, true, true, false]);
    let after: Vec<u8> = store
        .sealed_values(None, 100)
        .await
        .unwrap()
        .iter()
        .map(|v| v.sealed[0])
        .collect();
    assert_eq!(after, [101, 102, 103, 104, 105, 106, 107]);
    let rotations = store.key_rotations().await.unwrap();
    assert_eq!((rotations.len(), rotations[0].resealed), (1, 7));
    assert_eq!(rotations[0].checkpoint, None);

    // Finished, with its checkpoint; then another may begin.
    let done = RotationCheckpoint {
        seq: 0,
        hash: "h".into(),
        at: 12,
        signature: "s".into(),
        link: "l".into(),
    };
    store.finish_key_rotation(rotation.id, &done).await.unwrap();
    let next = store
        .begin_key_rotation("k2", "k3", "ada", 13)
        .await
        .unwrap();
    assert_eq!(next.id, rotation.id + 1);
    let rotations = store.key_rotations().await.unwrap();
    assert_eq!(rotations[0].checkpoint.as_ref(), Some(&done));

    // Checkpoints keep the id of their key, and are re-signed in place.
    let checkpoint = Checkpoint {
        seq: 1,
        hash: "h".into(),
        at: 1,
        signature: "old".into(),
        key_id: Some("k1".into()),
    };
    store.append_checkpoint(&checkpoint).await.unwrap();
    assert_eq!(
        store.checkpoints().await.unwrap(),
        std::slice::from_ref(&checkpoint)
    );
    let resigned = Checkpoint {
        signature: "new".into(),
        key_id: Some("k2".into()),
        ..checkpoint
    };
    store
        .resign_checkpoints(
            std::slice::from_ref(&resigned),
            &[(rotation.id, "s2".into())],
        )
        .await
        .unwrap();
    assert_eq!(store.checkpoints().await.unwrap(), [resigned]);
    assert_eq!(
        store.key_rotations().await.unwrap()[0]
            .checkpoint
            .as_ref()
            .map(|c| c.signature.as_str()),
        Some("s2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    // Each contract on a store of its own, as a backend that implements one trait would be.
    let store = |name: &'static str| {
        let path = dir.path().join(name);
        async move { SqliteState::open(&path).await.unwrap() }
    };
    registry_contract(&store("registry.db").await).await;
    connection_contract(&store("connections.db").await).await;
    credential_contract(&store("credentials.db").await).await;
    approval_contract(&store("approvals.db").await).await;
    coordination_contract(&store("coordination.db").await).await;
    audit_contract(&store("audit.db").await).await;
    access_contract(&store("access.db").await).await;
    check_sealed_store(&store("sealed.db").await).await;
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
    let dir = common::root().join("runtime/migrations");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
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
    // Versions increase; a number may be missing while the change that took it is elsewhere.
    let mut last = 0;
    for (file, (version, _, sql)) in files.iter().zip(listed) {
        assert!(*version > last, "{file}: version {version} after {last}");
        last = *version;
        assert!(file.starts_with(&format!("{:04}_", version)), "{file}");
        assert_eq!(
            std::fs::read_to_string(dir.join(file)).unwrap(),
            *sql,
            "{file}"
        );
    }
}

/// Records are typed (issue 10): a stored value this version does not know is an error that
/// names the record and the field, never a silent default (an unknown risk once read as
/// critical, an unknown kind as a user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_an_unknown_stored_value_names_its_record() {
    use airlock::control::state::{ApprovalRecord, ApprovalStatus};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.db");
    let store = SqliteState::open(&path).await.unwrap();
    store
        .insert_approval(&ApprovalRecord {
            tenant: "acme".into(),
            id: "apr-odd".into(),
            connection: "a".into(),
            connector_digest: "d".into(),
            operation: "create".into(),
            params_sealed: vec![1],
            action_hash: "h".into(),
            risk: airlock::manifest::Risk::High,
            rationale: None,
            requested_by: "olivia".into(),
            requester_kind: airlock::control::PrincipalKind::Agent,
            requester_role: airlock::Role::Operator,
            requested_at: 1,
            expires_at: i64::MAX,
            status: ApprovalStatus::Pending,
            decided_by: None,
            decided_at: None,
            reason: None,
            lease_until: None,
            finished_at: None,
            output_sealed: None,
            error: None,
            preview: None,
        })
        .await
        .unwrap();
    let read = store.approval("acme", "apr-odd").await.unwrap().unwrap();
    assert_eq!(
        (read.risk, read.requester_kind, read.status),
        (
            airlock::manifest::Risk::High,
            airlock::control::PrincipalKind::Agent,
            ApprovalStatus::Pending
        )
    );
    // (status has a CHECK constraint in the schema; these two do not.)
    for (column, value) in [("risk", "extreme"), ("requester_kind", "robot")] {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        // Test-made SQL: the column is one of three names above, the value is bound.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE approvals SET {column} = ?1 WHERE id = 'apr-odd'"
        )))
        .bind(value)
        .execute(&mut conn)
        .await
        .unwrap();
        let err = store
            .approval("acme", "apr-odd")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("approval apr-odd") && err.contains(column) && err.contains(value),
            "{err}"
        );
        sqlx::query(
            "UPDATE approvals SET risk = 'high', requester_kind = 'agent', status = 'pending'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

/// A connection's stored policies and required roles are typed on the way in: one that does not
/// read fails the invocation naming the connection and the field, never falls back to the
/// default (an approval threshold quietly lowered, a required role quietly dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_a_damaged_connection_policy_fails_closed_naming_the_connection() {
    use airlock::control::ConnectionSpec;
    use sqlx::ConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(
        SqliteState::open(&dir.path().join("airlock.db"))
            .await
            .unwrap(),
    );
    let key = airlock::control::vault::generate_key();
    let plane = || common::control_plane_on(&state, Arc::new(common::executor()), &key);
    let cp = plane();
    let admin = common::principal("acme", airlock::Role::Admin);
    common::register(&cp, "acme", "sandbox").await;
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
    let params = r#"{"type":"items"}"#;
    cp.invoke(&admin, "crm", "list", params).await.unwrap();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("airlock.db"))
        .connect()
        .await
        .unwrap();
    for (column, value, says) in [
        (
            "approval_policy",
            r#"{"require_from":"extreme"}"#,
            "connection `crm`'s stored approval policy does not read",
        ),
        (
            "data_policy",
            r#"{"mask":17}"#,
            "connection `crm`'s stored data policy does not read",
        ),
        (
            "required_roles",
            r#"{"list":"superuser"}"#,
            "stored required role for `list` is `superuser`, which is not a role",
        ),
    ] {
        // Test-made SQL: the column is one of the three names above, the value is bound.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE connections SET {column} = ?1 WHERE name = 'crm'"
        )))
        .bind(value)
        .execute(&mut conn)
        .await
        .unwrap();
        // Another process (or this one, once its resolution expires) reads it fresh.
        let err = plane()
            .invoke(&admin, "crm", "list", params)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{column}: {err}");
        let undo = match column {
            "required_roles" => "{}",
            _ => "null",
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE connections SET {column} = ?1 WHERE name = 'crm'"
        )))
        .bind(undo)
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

/// What running processes share (breakers, rate-limit buckets, OAuth2 tokens) can live in a
/// store of its own, as Redis will: two control planes on separate stores, given one
/// coordination store, spend one connection's rate limit together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_coordination_can_live_in_a_store_of_its_own() {
    use airlock::control::{ConnectionSpec, ControlError, ControlPlane};
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(
        SqliteState::open(&dir.path().join("coordination.db"))
            .await
            .unwrap(),
    );
    let mut planes = Vec::new();
    for name in ["a.db", "b.db"] {
        let state = Arc::new(SqliteState::open(&dir.path().join(name)).await.unwrap());
        let cp = ControlPlane::builder(
            state.clone(),
            Arc::new(common::executor()),
            airlock::control::vault::Vault::from_base64(
                &airlock::control::vault::generate_key(),
                "test",
            )
            .unwrap(),
            Arc::new(state.keyvalue()),
        )
        .coordination(shared.clone())
        .build();
        let admin = common::principal("acme", airlock::Role::Admin);
        common::register(&cp, "acme", "sandbox").await;
        cp.connection_create(
            &admin,
            ConnectionSpec {
                name: "crm".into(),
                connector: "sandbox".into(),
                queries_per_minute: Some(2),
                ..ConnectionSpec::default()
            },
        )
        .await
        .unwrap();
        planes.push(cp);
    }
    let op = common::principal("acme", airlock::Role::Operator);
    let list = r#"{"type":"items"}"#;
    planes[0].invoke(&op, "crm", "list", list).await.unwrap();
    planes[1].invoke(&op, "crm", "list", list).await.unwrap();
    let third = planes[0]
        .invoke(&op, "crm", "list", list)
        .await
        .unwrap_err();
    assert!(
        matches!(third, ControlError::RateLimited { per_minute: 2, .. }),
        "the two planes share one bucket: {third}"
    );
}
