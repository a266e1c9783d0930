//! Approvals: risk from manifest and policy, separation of duties, exactly-once execution with
//! exactly the approved params, expiry, and a real crash between approval and execution.

use crate::common;
use crate::http_server;

use airlock::Role;
use airlock::control::policies::ApprovalPolicy;
use airlock::control::state::now_ms;
use airlock::control::state::stores::*;
use airlock::control::{ConnectionSpec, ControlError, ControlPlane, Principal, PrincipalKind};
use airlock::manifest::Risk;
use common::*;
use serde_json::json;

fn person(id: &str, role: Role) -> Principal {
    Principal {
        tenant: "acme".into(),
        id: id.into(),
        kind: PrincipalKind::User,
        role,
    }
}

async fn with_connection(
    dir: &std::path::Path,
    approval: ApprovalPolicy,
) -> (
    ControlPlane,
    std::sync::Arc<airlock::control::state::SqliteState>,
) {
    let (cp, state) = control_plane(dir).await;
    let admin = person("ada", Role::Admin);
    cp.register(&admin, &std::fs::read(guest("sandbox")).unwrap(), &|_| {})
        .await
        .unwrap();
    let spec = ConnectionSpec {
        name: "crm".into(),
        connector: "sandbox".into(),
        writes_enabled: true,
        approval,
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    (cp, state)
}

fn ticket(result: Result<airlock::Outcome, ControlError>) -> airlock::control::approvals::Ticket {
    match result {
        Err(ControlError::Pending(t)) => t,
        other => panic!("expected a pending approval, got {other:?}"),
    }
}

fn rule(err: &ControlError) -> String {
    err.rule()
}

async fn items(cp: &ControlPlane) -> usize {
    let out = cp
        .invoke(
            &person("olivia", Role::Operator),
            "crm",
            "list",
            r#"{"type":"items"}"#,
        )
        .await
        .unwrap();
    serde_json::from_str::<serde_json::Value>(&out.output).unwrap()["count"]
        .as_u64()
        .unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_a_write_waits_then_runs_once_for_one_of_two_approvers() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _) = with_connection(dir.path(), ApprovalPolicy::default()).await;
    let olivia = person("olivia", Role::Operator);
    let create =
        json!({"type": "items", "id": "w1", "data": {"name": "widget", "api_key": "k-secret-1"}})
            .to_string();
    let t = ticket(
        cp.invoke_with(&olivia, "crm", "create", &create, Some("restock"))
            .await,
    );
    assert_eq!((t.risk, t.approver), (Risk::Medium, Role::Operator));
    assert_eq!(items(&cp).await, 0, "a pending write ran");

    // The approver sees the exact action, secrets redacted, and the rationale.
    let bob = person("bob", Role::Operator);
    let shown = cp.approval_show(&bob, &t.request_id).await.unwrap();
    assert_eq!(shown.record.status, "pending");
    assert_eq!(shown.params["id"], "w1");
    assert_eq!(shown.params["data"]["api_key"], "[REDACTED]");
    assert_eq!(shown.record.rationale.as_deref(), Some("restock"));

    // Not the requester, not a viewer, not an agent.
    let own = cp
        .approval_decide(&olivia, &t.request_id, true, None)
        .await
        .unwrap_err();
    assert_eq!(rule(&own), "separation-of-duties", "{own}");
    let viewer = cp
        .approval_decide(&person("vic", Role::Viewer), &t.request_id, true, None)
        .await
        .unwrap_err();
    assert_eq!(rule(&viewer), "operator-decides-approvals", "{viewer}");
    let bot = Principal {
        kind: PrincipalKind::Agent,
        ..person("bot", Role::Admin)
    };
    assert_eq!(
        cp.approval_decide(&bot, &t.request_id, true, None)
            .await
            .unwrap_err()
            .exit_code(),
        2
    );

    // Two approvers at once: one wins, the action runs once.
    let carol = person("carol", Role::Admin);
    let (a, b) = tokio::join!(
        cp.approval_decide(&bob, &t.request_id, true, None),
        cp.approval_decide(&carol, &t.request_id, true, None)
    );
    assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");
    let won = a.as_ref().or(b.as_ref()).unwrap();
    assert_eq!(won.record.status, "executed", "{won:?}");
    assert!(won.output.as_deref().unwrap().contains("w1"));
    let lost = a.as_ref().err().or(b.as_ref().err()).unwrap();
    assert!(lost.to_string().contains("already"), "{lost}");
    assert_eq!(items(&cp).await, 1);
    // The requester follows it to the end.
    let done = cp
        .approval_wait(&olivia, &t.request_id, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(done.record.status, "executed");

    // A denial says why, and the action never runs.
    let t2 = ticket(
        cp.invoke(&olivia, "crm", "delete", r#"{"type":"items","id":"w1"}"#)
            .await,
    );
    assert_eq!(t2.risk, Risk::High);
    let no_reason = cp
        .approval_decide(&bob, &t2.request_id, false, None)
        .await
        .unwrap_err();
    assert!(matches!(no_reason, ControlError::Invalid(_)), "{no_reason}");
    let denied = cp
        .approval_decide(&bob, &t2.request_id, false, Some("still in stock"))
        .await
        .unwrap();
    assert_eq!(denied.record.status, "denied");
    let late = cp
        .approval_decide(&carol, &t2.request_id, true, None)
        .await
        .unwrap_err();
    assert!(late.to_string().contains("already denied by bob"), "{late}");
    assert_eq!(items(&cp).await, 1);

    // Reads (low risk) run at once.
    cp.invoke(&olivia, "crm", "get", r#"{"type":"items","id":"w1"}"#)
        .await
        .unwrap();
    let all = cp.approvals_list(&bob, true).await.unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_critical_needs_an_admin_whatever_the_guest_claims() {
    let dir = tempfile::tempdir().unwrap();
    // The operator calls create critical (the sandbox claims medium) and tries to call delete
    // low (the sandbox claims high): the higher of the two counts each time.
    let mut policy = ApprovalPolicy::default();
    policy
        .operation_risks
        .insert("create".into(), Risk::Critical);
    policy.operation_risks.insert("delete".into(), Risk::Low);
    let (cp, _) = with_connection(dir.path(), policy).await;
    let olivia = person("olivia", Role::Operator);
    let t = ticket(
        cp.invoke(
            &olivia,
            "crm",
            "create",
            r#"{"type":"items","id":"c1","data":{}}"#,
        )
        .await,
    );
    assert_eq!((t.risk, t.approver), (Risk::Critical, Role::Admin));
    let operator = cp
        .approval_decide(&person("bob", Role::Operator), &t.request_id, true, None)
        .await
        .unwrap_err();
    assert_eq!(rule(&operator), "critical-needs-admin", "{operator}");
    let ran = cp
        .approval_decide(&person("ada", Role::Admin), &t.request_id, true, None)
        .await
        .unwrap();
    assert_eq!(ran.record.status, "executed");
    let t = ticket(
        cp.invoke(&olivia, "crm", "delete", r#"{"type":"items","id":"c1"}"#)
            .await,
    );
    assert_eq!(
        t.risk,
        Risk::High,
        "a policy cannot lower the guest's own claim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_expired_requests_cannot_be_revived() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _) = with_connection(dir.path(), ApprovalPolicy::default()).await;
    let raw = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("airlock.db").display()
    ))
    .await
    .unwrap();
    let olivia = person("olivia", Role::Operator);
    let t = ticket(
        cp.invoke(
            &olivia,
            "crm",
            "create",
            r#"{"type":"items","id":"e1","data":{}}"#,
        )
        .await,
    );
    assert!(t.expires_at > now_ms() + 290_000, "five minutes by default");
    sqlx::query("UPDATE approvals SET expires_at = ?1 WHERE id = ?2")
        .bind(now_ms() - 1)
        .bind(&t.request_id)
        .execute(&raw)
        .await
        .unwrap();
    let bob = person("bob", Role::Operator);
    let err = cp
        .approval_decide(&bob, &t.request_id, true, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    // Moving the expiry back does not bring it back.
    sqlx::query("UPDATE approvals SET expires_at = ?1 WHERE id = ?2")
        .bind(now_ms() + 600_000)
        .bind(&t.request_id)
        .execute(&raw)
        .await
        .unwrap();
    let err = cp
        .approval_decide(&bob, &t.request_id, true, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(items(&cp).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_run_exactly_the_approved_params() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, state) = with_connection(dir.path(), ApprovalPolicy::default()).await;
    let raw = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("airlock.db").display()
    ))
    .await
    .unwrap();
    let olivia = person("olivia", Role::Operator);
    let bob = person("bob", Role::Operator);
    let small = ticket(
        cp.invoke(
            &olivia,
            "crm",
            "create",
            r#"{"type":"items","id":"p1","data":{"qty":1}}"#,
        )
        .await,
    );
    let large = ticket(
        cp.invoke(
            &olivia,
            "crm",
            "create",
            r#"{"type":"items","id":"p2","data":{"qty":1000}}"#,
        )
        .await,
    );
    // Someone with the database swaps the large request's params into the approved small one.
    sqlx::query("UPDATE approvals SET params_sealed = (SELECT params_sealed FROM approvals WHERE id = ?1) WHERE id = ?2")
        .bind(&large.request_id)
        .bind(&small.request_id)
        .execute(&raw)
        .await
        .unwrap();
    let ran = cp
        .approval_decide(&bob, &small.request_id, true, None)
        .await
        .unwrap();
    assert_eq!(ran.record.status, "failed");
    assert!(
        ran.record
            .error
            .as_deref()
            .unwrap()
            .contains("nothing was run"),
        "{ran:?}"
    );
    // Or rewrites the hash to match other params: the hash is checked too.
    sqlx::query("UPDATE approvals SET action_hash = 'ab' || substr(action_hash, 3) WHERE id = ?1")
        .bind(&large.request_id)
        .execute(&raw)
        .await
        .unwrap();
    let ran = cp
        .approval_decide(&bob, &large.request_id, true, None)
        .await
        .unwrap();
    assert_eq!(ran.record.status, "failed");
    assert!(
        ran.record
            .error
            .as_deref()
            .unwrap()
            .contains("no longer matches"),
        "{ran:?}"
    );
    assert_eq!(items(&cp).await, 0);
    // There is no way to hand other params to an approval: the API takes none.
    let stored = state
        .approval("acme", &small.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, "failed");
}

#[test]
fn approvals_a_process_killed_after_approval_runs_the_action_once_after_restart() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let key = airlock::control::vault::generate_key();
    let airlock = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
        c.args(args)
            .env("AIRLOCK_DATA_DIR", dir.path())
            .env("AIRLOCK_MASTER_KEY", &key)
            .env("AIRLOCK_TENANT", "acme")
            .env_remove("AIRLOCK_TEST_STOP_AT");
        c
    };
    let run = |args: &[&str]| {
        let out = airlock(args).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let sandbox = guest("sandbox").display().to_string();
    assert_eq!(
        run(&["connector", "register", &sandbox, "--role", "admin"]).0,
        0
    );
    let created = run(&[
        "connection",
        "create",
        "crm",
        "--connector",
        "sandbox",
        "--writes-enabled",
        "true",
        "--role",
        "admin",
    ]);
    assert_eq!(created.0, 0, "{}", created.2);
    let asked = run(&[
        "invoke",
        "crm",
        "create",
        "--role",
        "operator",
        "--user",
        "olivia",
        "--params",
        r#"{"type":"items","id":"k1","data":{"n":1}}"#,
        "--rationale",
        "test",
    ]);
    assert_eq!(asked.0, 4, "pending has its own exit code: {asked:?}");
    assert!(
        asked.2.contains("airlock approvals wait apr-"),
        "{}",
        asked.2
    );
    let (_, ids, _) = run(&[
        "approvals",
        "list",
        "-q",
        "--role",
        "operator",
        "--user",
        "bob",
    ]);
    let id = ids.trim().to_owned();
    assert!(id.starts_with("apr-") && !id.contains('\n'), "{ids}");

    // The approver's process stores the approval and is killed before the action starts.
    let mut approver = airlock(&[
        "approvals",
        "approve",
        &id,
        "--role",
        "operator",
        "--user",
        "bob",
    ])
    .env("AIRLOCK_TEST_STOP_AT", "approval-committed")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let db = dir.path().join("airlock.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = || {
        runtime.block_on(async {
            use sqlx::Row;
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            let row = sqlx::query("SELECT status FROM approvals")
                .fetch_one(&pool)
                .await
                .unwrap();
            let status: String = row.get(0);
            pool.close().await;
            status
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status() != "approved" {
        assert!(
            std::time::Instant::now() < deadline,
            "the approval was never stored"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    approver.kill().unwrap();
    approver.wait().unwrap();
    assert_eq!(status(), "approved", "the action started before the kill");

    // Two processes start afterwards at once; the action runs in exactly one of them.
    let resumers: Vec<_> = (0..2)
        .map(|_| {
            airlock(&[
                "approvals",
                "resume",
                "--role",
                "operator",
                "--user",
                "carol",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let resumers: Vec<_> = resumers.into_iter().map(|c| c.wait_with_output()).collect();
    for out in resumers {
        let out = out.unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(status(), "executed");
    let (code, out, err) = run(&[
        "invoke",
        "crm",
        "list",
        "--role",
        "operator",
        "--params",
        r#"{"type":"items"}"#,
    ]);
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["count"], 1, "{listed}");
    let (code, out, _) = run(&[
        "approvals",
        "show",
        &id,
        "--role",
        "operator",
        "--user",
        "olivia",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("executed") && out.contains("k1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_show_the_approver_a_dry_run_of_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _) = with_connection(dir.path(), ApprovalPolicy::default()).await;
    let olivia = person("olivia", Role::Operator);
    let params = r#"{"type":"items","id":"d1","data":{"name":"drill","token":"t-123"}}"#;
    let t = ticket(cp.invoke(&olivia, "crm", "create", params).await);
    // The dry run wrote nothing...
    assert_eq!(items(&cp).await, 0);
    // ...and shows the approver the write it would make, secrets redacted.
    let shown = cp
        .approval_show(&person("bob", Role::Operator), &t.request_id)
        .await
        .unwrap();
    let effects = shown.preview["effects"].as_array().unwrap();
    assert_eq!(
        effects.len(),
        2,
        "the record and the sandbox's type index: {:?}",
        shown.preview
    );
    assert_eq!(effects[0]["kind"], "storage");
    assert_eq!(effects[0]["op"], "set");
    assert_eq!(effects[0]["value"]["name"], "drill");
    assert_eq!(effects[0]["value"]["token"], "[REDACTED]");
    assert_eq!(shown.preview["result"]["id"], "d1");
    assert_eq!(shown.preview["result"]["token"], "[REDACTED]");
    // Approved, it runs for real.
    let ran = cp
        .approval_decide(&person("bob", Role::Operator), &t.request_id, true, None)
        .await
        .unwrap();
    assert_eq!(ran.record.status, "executed");
    assert_eq!(items(&cp).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_dry_run_mode_captures_http_writes_without_sending_or_signing() {
    use airlock::egress::credential::Placement;
    let receiver = http_server::TestServer::start(202, "accepted").await;
    let dir = tempfile::tempdir().unwrap();
    let (cp, _) = control_plane(dir.path()).await;
    let admin = person("ada", Role::Admin);
    cp.register(&admin, &std::fs::read(guest("webhook")).unwrap(), &|_| {})
        .await
        .unwrap();
    let origin = format!("http://127.0.0.1:{}", receiver.port);
    let spec = ConnectionSpec {
        name: "hooks".into(),
        connector: "webhook".into(),
        config: json!({"url": format!("{origin}/events")}),
        egress: vec![origin.clone()],
        writes_enabled: true,
        approval: ApprovalPolicy {
            dry_run: Some(true),
            ..Default::default()
        },
        ..ConnectionSpec::default()
    };
    cp.connection_create(&admin, spec).await.unwrap();
    cp.credential_set(
        &admin,
        "hooks",
        "signing",
        Placement::Bearer,
        vec![origin.clone()],
        zeroize::Zeroizing::new("bearer-secret-77".into()),
    )
    .await
    .unwrap();
    let olivia = person("olivia", Role::Operator);
    let params = json!({"event": "order.created", "payload": {"id": 7, "password": "p4ss"}});
    // Medium risk, but a dry run applies nothing: no approval, no request sent.
    let out = cp
        .invoke(&olivia, "hooks", "send", &params.to_string())
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&out.output).unwrap();
    assert_eq!(answer["dry_run"], true);
    let effect = &answer["effects"][0];
    assert_eq!(effect["kind"], "http");
    assert_eq!(effect["method"], "POST");
    assert_eq!(effect["url"], format!("{origin}/events"));
    assert_eq!(effect["credential"], "signing");
    assert_eq!(effect["body"]["payload"]["id"], 7);
    assert_eq!(effect["body"]["payload"]["password"], "[REDACTED]");
    assert!(!out.output.contains("bearer-secret-77") && !out.output.contains("p4ss"));
    // The guest was answered for the upstream.
    assert_eq!(answer["result"]["status"], 200, "{answer}");
    assert!(receiver.seen().is_empty(), "a dry run sent a request");
}

/// The control plane's background work (issue 10): a process killed between storing an
/// approval and running it leaves the request approved; the next processes' background work
/// runs it, exactly once between them, with no command issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_background_work_completes_a_killed_approval_exactly_once() {
    use airlock::control::state::SqliteState;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let key = airlock::control::vault::generate_key();
    let airlock = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
        c.args(args)
            .env("AIRLOCK_DATA_DIR", dir.path())
            .env("AIRLOCK_MASTER_KEY", &key)
            .env("AIRLOCK_TENANT", "acme")
            .env_remove("AIRLOCK_TEST_STOP_AT");
        c
    };
    let run = |args: &[&str]| {
        let out = airlock(args).output().unwrap();
        assert!(
            matches!(out.status.code(), Some(0) | Some(4)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let sandbox = guest("sandbox").display().to_string();
    run(&["connector", "register", &sandbox, "--role", "admin"]);
    run(&[
        "connection",
        "create",
        "crm",
        "--connector",
        "sandbox",
        "--writes-enabled",
        "true",
        "--role",
        "admin",
    ]);
    run(&[
        "invoke",
        "crm",
        "create",
        "--role",
        "operator",
        "--user",
        "olivia",
        "--params",
        r#"{"type":"items","id":"k1","data":{"n":1}}"#,
    ]);
    let id = run(&[
        "approvals",
        "list",
        "-q",
        "--role",
        "operator",
        "--user",
        "bob",
    ])
    .trim()
    .to_owned();
    let mut approver = airlock(&[
        "approvals",
        "approve",
        &id,
        "--role",
        "operator",
        "--user",
        "bob",
    ])
    .env("AIRLOCK_TEST_STOP_AT", "approval-committed")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let state = Arc::new(
        SqliteState::open(&dir.path().join("airlock.db"))
            .await
            .unwrap(),
    );
    let status = || async { state.approval("acme", &id).await.unwrap().unwrap().status };
    let waited = std::time::Instant::now();
    while status().await != "approved" {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(60),
            "never approved"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    approver.kill().unwrap();
    approver.wait().unwrap();
    assert_eq!(
        status().await,
        "approved",
        "the action started before the kill"
    );

    // Two processes start; neither is told anything; their background work finds the request.
    let planes: Vec<Arc<airlock::control::ControlPlane>> = (0..2)
        .map(|_| Arc::new(control_plane_on(&state, Arc::new(executor()), &key)))
        .collect();
    let background: Vec<_> = planes
        .iter()
        .map(|p| p.start_background(std::time::Duration::from_millis(100)))
        .collect();
    let waited = std::time::Instant::now();
    while status().await != "executed" {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(30),
            "the background work never ran it: {}",
            status().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for b in background {
        b.shutdown().await;
    }
    let operator = principal("acme", Role::Operator);
    let listed = planes[0]
        .invoke(&operator, "crm", "list", r#"{"type":"items"}"#)
        .await
        .unwrap();
    assert!(listed.output.contains("\"count\":1"), "{}", listed.output);
    planes[0].flush_audit().await.unwrap();
    let runs = planes[0]
        .audit_list(&principal("acme", Role::Auditor), 200)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "invoke.write" && r.rule == "approval-granted" && r.outcome == "ok")
        .count();
    assert_eq!(
        runs, 1,
        "the approved action ran more than once, or not at all"
    );
}
