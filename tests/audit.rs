//! The audit trail: a hash chain with signed checkpoints, verified against every kind of
//! tampering; escaping; failing closed when the store cannot be written.

use crate::common;

use airlock::Role;
use airlock::control::audit::{GENESIS, chain_hash};
use airlock::control::state::SqliteState;
use airlock::control::{ConnectionSpec, ControlPlane};
use common::*;
use sqlx::Row;
use std::sync::Arc;

/// A control plane with `n` audit records or more (connection listings), flushed.
async fn trail(
    dir: &std::path::Path,
    n: usize,
) -> (ControlPlane, Arc<SqliteState>, sqlx::SqlitePool) {
    let (cp, state) = control_plane(dir).await;
    let viewer = principal("acme", Role::Viewer);
    for _ in 0..n {
        cp.connection_list(&viewer).await.unwrap();
    }
    cp.flush_audit().await.unwrap();
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("airlock.db").display()))
        .await
        .unwrap();
    (cp, state, raw)
}

/// Runs verify and returns the first bad position and what was wrong, if anything.
async fn first_problem(cp: &ControlPlane) -> Option<(i64, String)> {
    let auditor = principal("acme", Role::Auditor);
    let report = cp.audit_verify(&auditor, &[]).await.unwrap();
    report.problem.map(|p| (p.seq, p.what))
}

async fn exec(raw: &sqlx::SqlitePool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(raw)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_detects_each_kind_of_tampering() {
    // An intact trail verifies, with a checkpoint covering it.
    let dir = tempfile::tempdir().unwrap();
    let (cp, _, _) = trail(dir.path(), 10).await;
    let auditor = principal("acme", Role::Auditor);
    let report = cp.audit_verify(&auditor, &[]).await.unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    assert!(
        report.records >= 10 && report.checkpoints >= 1,
        "{report:?}"
    );

    // Edited: one record's content changed.
    let dir = tempfile::tempdir().unwrap();
    let (cp, _, raw) = trail(dir.path(), 10).await;
    exec(
        &raw,
        "UPDATE audit SET record = replace(record, '\"ok\"', '\"error\"') WHERE seq = 5",
    )
    .await;
    let (seq, what) = first_problem(&cp).await.expect("an edit goes unnoticed");
    assert_eq!(seq, 5, "{what}");
    assert!(what.contains("edited"), "{what}");

    // Deleted: one record removed from the middle.
    let dir = tempfile::tempdir().unwrap();
    let (cp, _, raw) = trail(dir.path(), 10).await;
    exec(&raw, "DELETE FROM audit WHERE seq = 4").await;
    let (seq, what) = first_problem(&cp).await.expect("a deletion goes unnoticed");
    assert_eq!(seq, 5, "{what}");
    assert!(what.contains("missing"), "{what}");

    // Reordered: two whole rows swap places.
    let dir = tempfile::tempdir().unwrap();
    let (cp, _, raw) = trail(dir.path(), 10).await;
    exec(
        &raw,
        "UPDATE audit SET seq = -1 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 6;
         UPDATE audit SET seq = 6 WHERE seq = -1;",
    )
    .await;
    let (seq, what) = first_problem(&cp)
        .await
        .expect("a reordering goes unnoticed");
    assert_eq!(seq, 3, "{what}");
    assert!(what.contains("does not follow"), "{what}");

    // Inserted: the rows after 4 moved up one, and a forged record, hashed correctly onto
    // record 4, put in the gap.
    let dir = tempfile::tempdir().unwrap();
    let (cp, _, raw) = trail(dir.path(), 10).await;
    exec(
        &raw,
        "UPDATE audit SET seq = seq + 1000 WHERE seq >= 5; UPDATE audit SET seq = seq - 999 WHERE seq >= 1000;",
    )
    .await;
    let prev: String = sqlx::query("SELECT hash FROM audit WHERE seq = 4")
        .fetch_one(&raw)
        .await
        .unwrap()
        .get(0);
    let forged = r#"{"at":1,"tenant":"acme","principal":"nobody","action":"connection.delete"}"#;
    sqlx::query("INSERT INTO audit (seq, at, tenant, record, prev_hash, hash) VALUES (5, 1, 'acme', ?1, ?2, ?3)")
        .bind(forged)
        .bind(&prev)
        .bind(chain_hash(&prev, 5, 1, "acme", forged))
        .execute(&raw)
        .await
        .unwrap();
    let (seq, what) = first_problem(&cp)
        .await
        .expect("an insertion goes unnoticed");
    assert_eq!(seq, 6, "{what}");
    assert!(what.contains("does not follow"), "{what}");

    // Rewritten: an edit with every later hash recomputed; the chain holds, the signed
    // checkpoint does not.
    let dir = tempfile::tempdir().unwrap();
    let (cp, _, raw) = trail(dir.path(), 10).await;
    exec(
        &raw,
        "UPDATE audit SET record = replace(record, '\"ok\"', '\"error\"') WHERE seq = 2",
    )
    .await;
    let rows = sqlx::query("SELECT seq, at, tenant, record FROM audit ORDER BY seq")
        .fetch_all(&raw)
        .await
        .unwrap();
    let mut prev = GENESIS.to_owned();
    for r in rows {
        let seq: i64 = r.get("seq");
        let hash = chain_hash(&prev, seq, r.get("at"), r.get("tenant"), r.get("record"));
        sqlx::query("UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3")
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(&raw)
            .await
            .unwrap();
        prev = hash;
    }
    let (_, what) = first_problem(&cp)
        .await
        .expect("a rewritten chain goes unnoticed");
    assert!(what.contains("rewritten"), "{what}");

    // Truncated: the tail cut. The stored checkpoint shows it...
    let dir = tempfile::tempdir().unwrap();
    let (cp, _, raw) = trail(dir.path(), 10).await;
    let kept = cp.audit_checkpoint(&auditor).await.unwrap().unwrap();
    exec(
        &raw,
        &format!("DELETE FROM audit WHERE seq > {}", kept.seq - 3),
    )
    .await;
    let (seq, what) = first_problem(&cp).await.expect("a cut tail goes unnoticed");
    assert!(what.contains("tail was cut"), "{what}");
    assert!(seq > kept.seq - 3);
    // ...and when the checkpoints are deleted too, the copy kept outside the database does.
    exec(&raw, "DELETE FROM audit_checkpoints").await;
    let report = cp
        .audit_verify(&auditor, std::slice::from_ref(&kept))
        .await
        .unwrap();
    let problem = report
        .problem
        .expect("a cut tail with its checkpoints gone goes unnoticed");
    assert!(problem.what.contains("tail was cut"), "{problem:?}");

    // Forged: a checkpoint not signed with the master key.
    let dir = tempfile::tempdir().unwrap();
    let (cp, _, raw) = trail(dir.path(), 10).await;
    exec(
        &raw,
        "UPDATE audit_checkpoints SET signature = 'beef' || substr(signature, 5)",
    )
    .await;
    let (_, what) = first_problem(&cp)
        .await
        .expect("a forged checkpoint goes unnoticed");
    assert!(what.contains("signature"), "{what}");
    // The verification itself is audited, and not for a viewer.
    let viewer = principal("acme", Role::Viewer);
    let denied = cp.audit_verify(&viewer, &[]).await.unwrap_err();
    assert_eq!(denied.exit_code(), 2, "{denied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_fields_cannot_forge_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _, _) = trail(dir.path(), 1).await;
    let operator = principal("acme", Role::Operator);
    // A connection name with CR/LF and an escape sequence, as a careless or hostile caller sends it.
    let hostile = "x\r\n2026-01-01 alice connection.delete ok\u{1b}[2J";
    let err = cp
        .invoke(&operator, hostile, "get", "{}")
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    let admin = principal("acme", Role::Admin);
    let rows = cp.audit_export(&admin, 0, i64::MAX).await.unwrap();
    let stored = rows
        .iter()
        .find(|r| r.record.contains("connection.delete"))
        .expect("the refused call is recorded");
    assert!(!stored.record.contains('\r') && !stored.record.contains('\n'));
    assert!(!stored.record.contains('\u{1b}'));
    let shown = airlock::control::audit::escape(hostile);
    assert_eq!(
        shown,
        "x\\r\\n2026-01-01 alice connection.delete ok\\u{1b}[2J"
    );
    assert_eq!(
        airlock::control::audit::escape("ok\u{202e}kcatta"),
        "ok\\u{202e}kcatta",
        "a bidirectional override could reorder what an auditor reads"
    );
    assert_eq!(airlock::control::audit::escape("Zoë"), "Zoë");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_fails_closed_when_the_store_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, state, raw) = trail(dir.path(), 1).await;
    let admin = principal("acme", Role::Admin);
    let operator = principal("acme", Role::Operator);
    cp.register(&admin, &std::fs::read(guest("sandbox")).unwrap(), &|_| {})
        .await
        .unwrap();
    let spec = ConnectionSpec {
        name: "crm".into(),
        connector: "sandbox".into(),
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    let get = r#"{"type":"items","id":"1"}"#;
    let _ = cp.invoke(&operator, "crm", "get", get).await;
    cp.flush_audit().await.unwrap();
    let before: i64 = sqlx::query("SELECT COUNT(*) FROM audit")
        .fetch_one(&raw)
        .await
        .unwrap()
        .get(0);

    // The disk is full, as far as the audit table knows.
    exec(&raw, "CREATE TRIGGER audit_full BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;").await;
    let _ = cp.invoke(&operator, "crm", "get", get).await;
    let err = cp.flush_audit().await.unwrap_err();
    assert!(
        err.to_string().contains("disk is full") && err.held >= 1,
        "{err}"
    );
    assert!(!cp.audit_available());
    let refused = cp.invoke(&operator, "crm", "get", get).await.unwrap_err();
    assert_eq!(refused.exit_code(), 2);
    assert!(
        refused.to_string().contains("audit-unavailable"),
        "{refused}"
    );

    // The store recovers: the held records are written, nothing was lost, invocations resume.
    exec(&raw, "DROP TRIGGER audit_full").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cp.audit_available() {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    cp.invoke(&operator, "crm", "get", get).await.ok();
    cp.flush_audit().await.unwrap();
    let rows = airlock::control::state::AuditStore::audit_rows(state.as_ref(), before, 100)
        .await
        .unwrap();
    let outcomes: Vec<String> = rows
        .iter()
        .filter(|r| r.record.contains("invoke."))
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.record).unwrap()["rule"].to_string())
        .collect();
    assert_eq!(outcomes.len(), 3, "records lost: {outcomes:?}");
    assert!(outcomes[1].contains("audit-unavailable"), "{outcomes:?}");
    let auditor = principal("acme", Role::Auditor);
    assert_eq!(cp.audit_verify(&auditor, &[]).await.unwrap().problem, None);
}
