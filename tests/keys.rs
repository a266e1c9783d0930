//! Master-key rotation, tried the way a careless operator or an attacker would: a wrong old key,
//! a tampered trail, a rotation started with one key and resumed with another, damaged values,
//! values from before key ids, and afterwards every sealed kind read with the new key alone
//! while the old key opens nothing. (The kill -9 half-way through is in `cli.rs`, with a real
//! process.)

use crate::common;
use crate::http_server;

use airlock::Role;
use airlock::control::keys::{RotateOptions, RotationError};
use airlock::control::state::stores::*;
use airlock::control::state::{Checkpoint, SealedKind, SealedValue, SqliteState};
use airlock::control::vault::{KeyId, SealedWith, Vault, generate_key};
use airlock::control::{ConnectionSpec, ControlError, ControlPlane};
use airlock::egress::credential::Placement;
use airlock::remedy::Remedy;
use common::*;
use http_server::TestServer;
use serde_json::json;
use std::sync::Arc;

const SECRET: &str = "rotation-secret-7d1e";

fn vault(key: &str) -> Vault {
    Vault::from_base64(key, "test").unwrap()
}

fn id(key: &str) -> KeyId {
    vault(key).key_id()
}

/// A control plane over `state` holding exactly `vault`'s keys: one process of a deployment.
fn plane(state: &Arc<SqliteState>, vault: Vault) -> ControlPlane {
    ControlPlane::new(
        state.clone(),
        Arc::new(executor()),
        vault,
        Arc::new(state.keyvalue()),
    )
}

/// A store with every kind of sealed value, all under `key1`: two connection configs, a
/// credential, the params of two approval requests and the output of the one that ran.
struct World {
    dir: tempfile::TempDir,
    state: Arc<SqliteState>,
    key1: String,
    cp: ControlPlane,
    server: TestServer,
    pending: String,
    executed: String,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(
        SqliteState::open(&dir.path().join("airlock.db"))
            .await
            .unwrap(),
    );
    let key1 = generate_key();
    let cp = plane(&state, vault(&key1));
    let server = TestServer::start(200, "ok").await;
    let admin = principal("acme", Role::Admin);
    for guest_name in ["sandbox", "egress-probe"] {
        cp.register(&admin, &std::fs::read(guest(guest_name)).unwrap(), &|_| {})
            .await
            .unwrap();
    }
    cp.connection_create(
        &admin,
        ConnectionSpec {
            name: "crm".into(),
            connector: "sandbox".into(),
            config: json!({"latency_ms": 7}),
            writes_enabled: true,
            ..ConnectionSpec::default()
        },
    )
    .await
    .unwrap();
    cp.connection_create(
        &admin,
        ConnectionSpec {
            name: "api".into(),
            connector: "egress-probe".into(),
            egress: vec!["http://127.0.0.1:*".into()],
            ..ConnectionSpec::default()
        },
    )
    .await
    .unwrap();
    cp.credential_set(
        &admin,
        "api",
        "token",
        Placement::Bearer,
        vec![format!("http://127.0.0.1:{}", server.port)],
        zeroize::Zeroizing::new(SECRET.to_owned()),
    )
    .await
    .unwrap();
    let olivia = airlock::control::Principal {
        id: "olivia".into(),
        ..principal("acme", Role::Operator)
    };
    let ticket = |r: Result<airlock::Outcome, ControlError>| match r {
        Err(ControlError::Pending(t)) => t.request_id,
        other => panic!("expected a pending approval: {other:?}"),
    };
    let create = |id: &str| json!({"type": "items", "id": id, "data": {"n": 1}}).to_string();
    let executed = ticket(cp.invoke(&olivia, "crm", "create", &create("w1")).await);
    let pending = ticket(cp.invoke(&olivia, "crm", "create", &create("w2")).await);
    let done = cp
        .approval_decide(&principal("acme", Role::Admin), &executed, true, None)
        .await
        .unwrap();
    assert_eq!(done.record.status, "executed");
    cp.flush_audit().await.unwrap();
    World {
        dir,
        state,
        key1,
        cp,
        server,
        pending,
        executed,
    }
}

/// Every sealed value in the store.
async fn sealed(state: &SqliteState) -> Vec<SealedValue> {
    state.sealed_values(None, 10_000).await.unwrap()
}

async fn raw(w: &World) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        w.dir.path().join("airlock.db").display()
    ))
    .await
    .unwrap()
}

/// Reads one value of every sealed kind through `cp`, as its users would; the first failure.
async fn read_everything(w: &World, cp: &ControlPlane) -> Result<(), String> {
    let admin = principal("acme", Role::Admin);
    let shown = cp
        .connection_show(&admin, "crm")
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(shown.config["latency_ms"], 7);
    let before = w.server.seen().len();
    cp.invoke(
        &principal("acme", Role::Operator),
        "api",
        "fetch",
        &json!({"url": format!("http://127.0.0.1:{}/me", w.server.port)}).to_string(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let seen = w.server.seen();
    assert_eq!(seen.len(), before + 1);
    assert_eq!(
        seen[before].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    let params = cp
        .approval_show(&admin, &w.pending)
        .await
        .map_err(|e| e.to_string())?
        .params;
    if params["id"] != "w2" {
        return Err(format!("approval params did not open: {params}"));
    }
    let output = cp
        .approval_show(&admin, &w.executed)
        .await
        .map_err(|e| e.to_string())?
        .output;
    if !output.as_deref().is_some_and(|o| o.contains("w1")) {
        return Err(format!("approval output did not open: {output:?}"));
    }
    Ok(())
}

fn batches_of(batch: usize) -> RotateOptions {
    RotateOptions {
        batch,
        ..RotateOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotation_leaves_every_sealed_kind_readable_with_the_new_key_alone() {
    let w = world().await;
    let (key1, key2) = (w.key1.clone(), generate_key());
    let admin = principal("acme", Role::Admin);
    let auditor = principal("acme", Role::Auditor);
    read_everything(&w, &w.cp).await.unwrap();
    let kept_outside = w.cp.audit_checkpoint(&auditor).await.unwrap().unwrap();
    assert_eq!(kept_outside.key_id, Some(id(&key1).to_string()));

    // Only an Admin rotates, and the refusal is audited like any other.
    let operator = principal("acme", Role::Operator);
    let denied =
        w.cp.keys_rotate(&operator, vault(&key2), RotateOptions::default())
            .await
            .unwrap_err();
    assert_eq!(denied.exit_code(), 2, "{denied}");
    assert_eq!(denied.rule(), "admin-rotates-keys");

    let report =
        w.cp.keys_rotate(&admin, vault(&key2), batches_of(2))
            .await
            .unwrap();
    assert_eq!(report.run, "started");
    assert_eq!(
        (report.from_key.as_str(), report.to_key.as_str()),
        (
            id(&key1).to_string().as_str(),
            id(&key2).to_string().as_str()
        )
    );
    let by_kind: Vec<u64> = report.resealed.values().copied().collect();
    assert_eq!(report.resealed_total, 6, "{report:?}");
    assert_eq!(by_kind.iter().sum::<u64>(), 6, "{report:?}");
    for kind in SealedKind::ALL {
        assert!(
            report.resealed[&kind] >= 1,
            "no {kind:?} re-sealed: {report:?}"
        );
    }
    assert!(report.checkpoints_resigned >= 1, "{report:?}");
    // Every value in the store now names the new key.
    let values = sealed(&w.state).await;
    assert_eq!(values.len(), 6);
    for v in &values {
        assert_eq!(
            SealedWith::of(&v.sealed),
            SealedWith::Key(id(&key2)),
            "{v:?}"
        );
    }

    // The process that rotated moved to the new key; a fresh one with only the new key reads
    // every kind, and an approved request's sealed params still run.
    read_everything(&w, &w.cp).await.unwrap();
    let new_only = plane(&w.state, vault(&key2));
    read_everything(&w, &new_only).await.unwrap();
    let ran = new_only
        .approval_decide(&admin, &w.pending, true, None)
        .await
        .unwrap();
    assert_eq!(ran.record.status, "executed", "{ran:?}");

    // The trail verifies with the new key alone; the checkpoint kept outside from before is
    // recognised as the retired key's (its position still checked), not taken for a forgery.
    let report = new_only.audit_verify(&auditor, &[]).await.unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!((report.rotations, report.links_checked), (1, 0));
    let report = new_only
        .audit_verify(&auditor, std::slice::from_ref(&kept_outside))
        .await
        .unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    assert!(
        report.notes.len() == 1
            && report.notes[0].contains(&format!("retired master key {}", id(&key1)))
            && report.notes[0].contains("AIRLOCK_PREVIOUS_MASTER_KEY"),
        "{report:?}"
    );
    // A checkpoint nobody signed is still a forgery, retired key or not.
    let forged = Checkpoint {
        signature: "00".repeat(32),
        key_id: None,
        ..kept_outside.clone()
    };
    let mut later = forged.clone();
    later.seq = report.last_seq;
    later.hash = report.last_hash.clone().unwrap();
    let report = new_only.audit_verify(&auditor, &[later]).await.unwrap();
    assert!(
        report
            .problem
            .as_ref()
            .is_some_and(|p| p.what.contains("forged")),
        "{report:?}"
    );
    // Whoever keeps the old key can check the hand-over too.
    let both = plane(&w.state, vault(&key2).with_retired(&vault(&key1)));
    let report = both
        .audit_verify(&auditor, std::slice::from_ref(&kept_outside))
        .await
        .unwrap();
    assert_eq!((report.problem, report.links_checked), (None, 1));
    assert!(report.notes.is_empty(), "{:?}", report.notes);

    // The old key no longer opens anything, and says which key would.
    let old_only = plane(&w.state, vault(&key1));
    let err = read_everything(&w, &old_only).await.unwrap_err();
    assert!(
        err.contains(&format!("sealed with master key {}", id(&key2)))
            && err.contains(&format!("this process holds master key {}", id(&key1)))
            && err.contains("AIRLOCK_PREVIOUS_MASTER_KEY"),
        "{err}"
    );
    let refused = old_only
        .invoke(
            &operator,
            "api",
            "fetch",
            &json!({"url": format!("http://127.0.0.1:{}/", w.server.port)}).to_string(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), "vault", "{refused}");
    for v in &values {
        let opened = vault(&key1).open(&v.tenant, &v.connection, "any", &v.sealed);
        assert!(
            matches!(
                opened,
                Err(airlock::control::vault::VaultError::OtherKey { .. })
            ),
            "{v:?}"
        );
    }
    let report = old_only.audit_verify(&auditor, &[]).await.unwrap();
    let problem = report
        .problem
        .expect("the old key vouches for the new trail");
    assert!(problem.what.contains(&id(&key2).to_string()), "{problem:?}");

    // The rotation is in the trail, and no key or secret is anywhere in it.
    let records = new_only.audit_export(&admin, 0, i64::MAX).await.unwrap();
    let rotated = records
        .iter()
        .filter(|r| r.record.contains("\"keys.rotate\""))
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.record).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        rotated.len(),
        2,
        "the refusal and the rotation: {rotated:?}"
    );
    assert_eq!(rotated[1]["outcome"], "ok");
    let everything = format!(
        "{records:?} {:?}",
        new_only.audit_verify(&auditor, &[]).await.unwrap()
    );
    for secret in [&key1[..], &key2[..], SECRET] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotation_refuses_a_wrong_old_key_or_a_tampered_trail_and_changes_nothing() {
    let w = world().await;
    let admin = principal("acme", Role::Admin);
    let (key2, wrong) = (generate_key(), generate_key());
    let before = (sealed(&w.state).await, w.state.checkpoints().await.unwrap());
    let unchanged = || async {
        assert_eq!(
            (sealed(&w.state).await, w.state.checkpoints().await.unwrap()),
            before,
            "a refused rotation changed the store"
        );
        assert!(w.state.key_rotations().await.unwrap().is_empty());
    };

    // The operator exported the wrong key as AIRLOCK_MASTER_KEY.
    let wrong_plane = plane(&w.state, vault(&wrong));
    let err = wrong_plane
        .keys_rotate(&admin, vault(&key2), RotateOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ControlError::Keys(RotationError::AuditNotIntact { .. })
        ) && text.contains(&format!("does not verify with the old key {}", id(&wrong)))
            && text.contains("nothing was changed")
            && err.remedy() == Some(Remedy::IdentifyMasterKey),
        "{text}"
    );
    unchanged().await;

    // With the checkpoints gone too (nothing left to verify a key against), the values
    // themselves refuse: they name the key they need, and are never skipped as "damaged".
    let raw = raw(&w).await;
    sqlx::query("DELETE FROM audit_checkpoints")
        .execute(&raw)
        .await
        .unwrap();
    // (Each refused attempt is audited, and that process's audit writer signs its checkpoints
    // with the wrong key it was given, so only the sealed values are compared here.)
    let before = sealed(&w.state).await;
    for skip_unreadable in [false, true] {
        let options = RotateOptions {
            skip_unreadable,
            ..RotateOptions::default()
        };
        let err = wrong_plane
            .keys_rotate(&admin, vault(&key2), options)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("6 sealed value(s) cannot be opened")
                && err.contains(&format!(
                    "credential acme/api/token: sealed with master key {}",
                    id(&w.key1)
                ))
                && err.contains("connection config acme/crm")
                && err.contains("nothing was changed"),
            "{err}"
        );
        assert_eq!(sealed(&w.state).await, before);
        assert!(w.state.key_rotations().await.unwrap().is_empty());
    }

    // The right key, but someone edited the trail: re-signing it would launder the edit.
    let w = world().await;
    let before_values = sealed(&w.state).await;
    let raw = self::raw(&w).await;
    let edited: i64 = sqlx::query_scalar("SELECT MIN(seq) FROM audit WHERE record LIKE '%\"ok\"%'")
        .fetch_one(&raw)
        .await
        .unwrap();
    sqlx::query("UPDATE audit SET record = replace(record, '\"ok\"', '\"error\"') WHERE seq = ?1")
        .bind(edited)
        .execute(&raw)
        .await
        .unwrap();
    let err =
        w.cp.keys_rotate(&admin, vault(&key2), RotateOptions::default())
            .await
            .unwrap_err()
            .to_string();
    assert!(
        err.contains(&format!("at record {edited}")) && err.contains("edited"),
        "{err}"
    );
    assert_eq!(sealed(&w.state).await, before_values);
    assert!(w.state.key_rotations().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotation_under_way_must_be_finished_with_the_same_new_key() {
    let w = world().await;
    let admin = principal("acme", Role::Admin);
    let (key1, key2, key3) = (w.key1.clone(), generate_key(), generate_key());

    // The new key must be new.
    let err =
        w.cp.keys_rotate(&admin, vault(&key1), RotateOptions::default())
            .await
            .unwrap_err();
    assert!(
        matches!(err, ControlError::Keys(RotationError::SameKey(_))),
        "{err}"
    );

    // A rotation to key 2 was started (and interrupted); starting another to key 3 is refused
    // with what to do, and nothing is re-sealed under key 3.
    w.state
        .begin_key_rotation(&id(&key1).to_string(), &id(&key2).to_string(), "ada", 1)
        .await
        .unwrap();
    let error =
        w.cp.keys_rotate(&admin, vault(&key3), RotateOptions::default())
            .await
            .unwrap_err();
    let err = error.to_string();
    assert!(
        err.contains(&format!(
            "from master key {} to {} is under way",
            id(&key1),
            id(&key2)
        )) && err.contains(&format!("key {} as the new key", id(&key2)))
            && error.remedy() == Some(Remedy::RotateMasterKey),
        "{err}"
    );
    assert!(
        sealed(&w.state)
            .await
            .iter()
            .all(|v| SealedWith::of(&v.sealed) == SealedWith::Key(id(&key1)))
    );
    // A process already moved to key 2 without key 1 cannot finish it, and says why.
    let new_only = plane(&w.state, vault(&key2));
    let err = new_only
        .keys_rotate(&admin, vault(&key2), RotateOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("needs the old key {}", id(&key1))),
        "{err}"
    );
    // With key 2 current and key 1 as the previous key, it finishes.
    let moved = plane(&w.state, vault(&key2).with_retired(&vault(&key1)));
    let report = moved
        .keys_rotate(&admin, vault(&key2), batches_of(4))
        .await
        .unwrap();
    assert_eq!(
        (report.run, report.resealed_total),
        ("resumed", 6),
        "{report:?}"
    );
    read_everything(&w, &plane(&w.state, vault(&key2)))
        .await
        .unwrap();
    // Run again, it only re-checks.
    let again = moved
        .keys_rotate(&admin, vault(&key2), RotateOptions::default())
        .await
        .unwrap();
    assert_eq!(again.run, "rechecked");
    assert_eq!(again.resealed.values().sum::<u64>(), 0, "{again:?}");
    assert_eq!(w.state.key_rotations().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotation_skips_damaged_values_only_when_asked() {
    let w = world().await;
    let admin = principal("acme", Role::Admin);
    let key2 = generate_key();
    let raw = raw(&w).await;
    // One bit of the stored credential flipped.
    let mut damaged = sealed(&w.state)
        .await
        .into_iter()
        .find(|v| v.name == "token")
        .unwrap()
        .sealed;
    *damaged.last_mut().unwrap() ^= 1;
    sqlx::query("UPDATE credentials SET secret_sealed = ?1")
        .bind(&damaged)
        .execute(&raw)
        .await
        .unwrap();

    let error =
        w.cp.keys_rotate(&admin, vault(&key2), RotateOptions::default())
            .await
            .unwrap_err();
    let err = error.to_string();
    assert!(
        err.contains("1 sealed value(s) cannot be opened")
            && err.contains("credential acme/api/token: damaged")
            && err.contains("skip unreadable values")
            && error.remedy() == Some(Remedy::ResealValue),
        "{err}"
    );
    assert!(w.state.key_rotations().await.unwrap().is_empty());

    let report =
        w.cp.keys_rotate(
            &admin,
            vault(&key2),
            RotateOptions {
                skip_unreadable: true,
                batch: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.skipped, vec!["credential acme/api/token".to_owned()]);
    assert_eq!(report.resealed_total, 5);
    for v in sealed(&w.state).await {
        let expected = if v.name == "token" { &w.key1 } else { &key2 };
        assert_eq!(
            SealedWith::of(&v.sealed),
            SealedWith::Key(id(expected)),
            "{v:?}"
        );
    }
    let new_only = plane(&w.state, vault(&key2));
    new_only.connection_show(&admin, "crm").await.unwrap();
}

/// A value as the releases before key ids sealed it (format 1): a fixture, written with the
/// cipher directly since the vault no longer writes this format.
fn seal_format_1(
    key: &str,
    tenant: &str,
    connection: &str,
    purpose: &str,
    plain: &[u8],
) -> Vec<u8> {
    use base64::Engine as _;
    use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    let cipher = XChaCha20Poly1305::new_from_slice(&bytes).unwrap();
    let nonce = XNonce::generate();
    let aad = format!("airlock:{purpose}:v1\0{tenant}\0{connection}");
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .unwrap();
    [&[1u8][..], nonce.as_slice(), &sealed].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotation_moves_a_store_from_before_key_ids() {
    let w = world().await;
    let admin = principal("acme", Role::Admin);
    let auditor = principal("acme", Role::Auditor);
    let key2 = generate_key();
    // As an upgraded store looks: config and credential in format 1, checkpoints without key
    // ids, and a copy of one kept outside from then.
    let raw = raw(&w).await;
    let config = seal_format_1(
        &w.key1,
        "acme",
        "crm",
        "connection-config",
        br#"{"latency_ms":7}"#,
    );
    let secret = seal_format_1(
        &w.key1,
        "acme",
        "api",
        "credential:token",
        SECRET.as_bytes(),
    );
    sqlx::query("UPDATE connections SET config_sealed = ?1 WHERE name = 'crm'")
        .bind(&config)
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("UPDATE credentials SET secret_sealed = ?1")
        .bind(&secret)
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_checkpoints SET key_id = NULL")
        .execute(&raw)
        .await
        .unwrap();
    let mut kept_outside = w.cp.audit_checkpoint(&auditor).await.unwrap().unwrap();
    kept_outside.key_id = None;
    read_everything(&w, &w.cp).await.unwrap();

    w.cp.keys_rotate(&admin, vault(&key2), batches_of(1))
        .await
        .unwrap();
    for v in sealed(&w.state).await {
        assert_eq!(
            SealedWith::of(&v.sealed),
            SealedWith::Key(id(&key2)),
            "{v:?}"
        );
    }
    let new_only = plane(&w.state, vault(&key2));
    read_everything(&w, &new_only).await.unwrap();
    // A copy without a key id, from before the rotation: the retired key is named from where
    // the rotation happened.
    let report = new_only
        .audit_verify(&auditor, std::slice::from_ref(&kept_outside))
        .await
        .unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains(&id(&w.key1).to_string())),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotation_checkpoint_hand_over_cannot_be_forged() {
    let w = world().await;
    let admin = principal("acme", Role::Admin);
    let auditor = principal("acme", Role::Auditor);
    let key2 = generate_key();
    w.cp.keys_rotate(&admin, vault(&key2), RotateOptions::default())
        .await
        .unwrap();
    let raw = raw(&w).await;
    let both = plane(&w.state, vault(&key2).with_retired(&vault(&w.key1)));
    let new_only = plane(&w.state, vault(&key2));
    assert_eq!(
        both.audit_verify(&auditor, &[]).await.unwrap().problem,
        None
    );

    // Someone swaps the link (the old key's signature) for another.
    sqlx::query("UPDATE key_rotations SET link = ?1")
        .bind("0".repeat(64))
        .execute(&raw)
        .await
        .unwrap();
    let problem = new_only
        .audit_verify(&auditor, &[])
        .await
        .unwrap()
        .problem
        .expect("a changed link goes unnoticed");
    assert!(problem.what.contains("rotation checkpoint"), "{problem:?}");
    // Even with its signature recomputed by someone holding the new key (an insider), the old
    // key's holder sees the hand-over was forged.
    let rotation = w.state.key_rotations().await.unwrap().remove(0);
    let c = rotation.checkpoint.clone().unwrap();
    let resigned =
        vault(&key2).sign_checkpoint(&airlock::control::audit::rotation_message(&rotation, &c));
    sqlx::query("UPDATE key_rotations SET signature = ?1")
        .bind(&resigned)
        .execute(&raw)
        .await
        .unwrap();
    assert_eq!(
        new_only.audit_verify(&auditor, &[]).await.unwrap().problem,
        None
    );
    let problem = both
        .audit_verify(&auditor, &[])
        .await
        .unwrap()
        .problem
        .expect("a forged hand-over goes unnoticed by the old key's holder");
    assert!(problem.what.contains("hand-over was forged"), "{problem:?}");
}

/// Issue 9's first symptom: with a config sealed by a key nobody has any more, `connection
/// update --config` failed because it opened the old config first. A new config now replaces
/// it; an update that keeps the config still needs to open it, and says which key it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_a_config_sealed_with_a_lost_key_can_still_be_replaced() {
    use airlock::control::ConnectionUpdate;
    let w = world().await;
    let admin = principal("acme", Role::Admin);
    let lost = generate_key();
    let stray = vault(&lost).seal("acme", "crm", "connection-config", br#"{"latency_ms":1}"#);
    sqlx::query("UPDATE connections SET config_sealed = ?1 WHERE name = 'crm'")
        .bind(&stray)
        .execute(&raw(&w).await)
        .await
        .unwrap();
    let keep =
        w.cp.connection_update(
            &admin,
            "crm",
            ConnectionUpdate {
                writes_enabled: Some(false),
                ..ConnectionUpdate::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        keep.contains(&format!("sealed with master key {}", id(&lost))),
        "{keep}"
    );
    let replaced =
        w.cp.connection_update(
            &admin,
            "crm",
            ConnectionUpdate {
                config: Some(json!({"latency_ms": 9})),
                ..ConnectionUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(replaced.config["latency_ms"], 9);
    let shown = w.cp.connection_show(&admin, "crm").await.unwrap();
    assert_eq!(shown.config["latency_ms"], 9);
}
