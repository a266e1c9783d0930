//! API tokens (issue 11): made by an Admin for a user or agent of the tenant, shown once, kept
//! as a hash, revoked for good; a bearer maps to exactly the principal it was made for, and
//! every refusal is audited alike.

use crate::common;
use airlock::Role;
use airlock::control::access::{AuthError, TokenSpec};
use airlock::control::{ControlError, PrincipalKind};
use std::time::Duration;

fn spec(kind: PrincipalKind, subject: &str, role: Role) -> TokenSpec {
    TokenSpec {
        kind,
        subject: subject.into(),
        role,
        label: Some("ci".into()),
        expires_in: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_a_token_stands_for_its_principal_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = common::control_plane(dir.path()).await;
    let admin = common::principal("acme", Role::Admin);
    let user = cp
        .token_create(&admin, spec(PrincipalKind::User, "olivia", Role::Operator))
        .await
        .unwrap();
    let agent = cp
        .token_create(&admin, spec(PrincipalKind::Agent, "bot", Role::Operator))
        .await
        .unwrap();
    assert!(user.token.starts_with("alk_") && user.token.contains(&user.record.id));
    let who = cp
        .authenticate(Some(&user.token), "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(
        (who.tenant.as_str(), who.id.as_str(), who.kind, who.role),
        ("acme", "olivia", PrincipalKind::User, Role::Operator)
    );
    let bot = cp
        .authenticate(Some(&agent.token), "127.0.0.1")
        .await
        .unwrap();
    assert_eq!((bot.id.as_str(), bot.kind), ("bot", PrincipalKind::Agent));

    // Listed without secrets; the store holds no secret either.
    let listed = cp.token_list(&admin).await.unwrap();
    assert_eq!(listed.len(), 2);
    let json = serde_json::to_string(&listed).unwrap();
    // `alk_<id>_<secret>`; the secret is base64url and may itself hold `_`.
    let secret = user.token.splitn(3, '_').nth(2).unwrap().to_owned();
    assert!(secret.len() >= 40, "{secret}");
    assert!(
        !json.contains(&secret) && !json.contains("secret_hash"),
        "{json}"
    );
    cp.flush_audit().await.unwrap();
    let db = std::fs::read(dir.path().join("airlock.db")).unwrap();
    let wal = std::fs::read(dir.path().join("airlock.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is stored"
        );
    }

    // A wrong secret for a real id, a malformed token, none at all: refused.
    let forged = format!("{}{}", &user.token[..user.token.len() - 4], "AAAA");
    for (bearer, expected) in [
        (Some(forged.as_str()), AuthError::Unknown),
        (Some("alk_nothex_x"), AuthError::Malformed),
        (Some("Bearer something"), AuthError::Malformed),
        (None, AuthError::Missing),
        (Some("  "), AuthError::Missing),
    ] {
        assert_eq!(
            cp.authenticate(bearer, "10.0.0.9").await.unwrap_err(),
            expected,
            "{bearer:?}"
        );
    }

    // Revoked for good; another tenant cannot revoke it, and a second revoke finds nothing.
    let globex = common::principal("globex", Role::Admin);
    assert!(matches!(
        cp.token_revoke(&globex, &user.record.id).await.unwrap_err(),
        ControlError::NotFound { .. }
    ));
    cp.token_revoke(&admin, &user.record.id).await.unwrap();
    assert_eq!(
        cp.authenticate(Some(&user.token), "127.0.0.1")
            .await
            .unwrap_err(),
        AuthError::Revoked(user.record.id.clone())
    );
    assert!(matches!(
        cp.token_revoke(&admin, &user.record.id).await.unwrap_err(),
        ControlError::NotFound { .. }
    ));
    assert!(
        cp.authenticate(Some(&agent.token), "127.0.0.1")
            .await
            .is_ok()
    );

    // Every refusal is audited, under the token's tenant when the token is known.
    cp.flush_audit().await.unwrap();
    let records = cp.audit_list(&admin, 100).await.unwrap();
    let refusals: Vec<&str> = records
        .iter()
        .filter(|r| r.action == "token.authenticate")
        .map(|r| r.rule.as_str())
        .collect();
    assert_eq!(refusals, ["token-unknown", "token-revoked"], "{records:#?}");
    assert!(
        records
            .iter()
            .all(|r| !serde_json::to_string(r).unwrap().contains(&secret))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_only_admins_make_tokens_and_expired_ones_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = common::control_plane(dir.path()).await;
    for role in [Role::Viewer, Role::Operator, Role::Auditor] {
        let err = cp
            .token_create(
                &common::principal("acme", role),
                spec(PrincipalKind::User, "x", Role::Viewer),
            )
            .await
            .unwrap_err();
        assert_eq!(err.rule(), "admin-manages-tokens", "{role:?}: {err}");
    }
    let admin = common::principal("acme", Role::Admin);
    let bad = cp
        .token_create(&admin, spec(PrincipalKind::User, "../olivia", Role::Viewer))
        .await
        .unwrap_err();
    assert!(matches!(bad, ControlError::Invalid(_)), "{bad}");
    let short = cp
        .token_create(
            &admin,
            TokenSpec {
                expires_in: Some(Duration::ZERO),
                ..spec(PrincipalKind::User, "temp", Role::Viewer)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        cp.authenticate(Some(&short.token), "127.0.0.1")
            .await
            .unwrap_err(),
        AuthError::Expired(short.record.id.clone())
    );
}

/// `airlock token`: the token on stdout alone, once; lists without secrets; Admins only.
#[test]
fn access_cli_creates_lists_and_revokes_tokens() {
    use crate::cli::airlock_as;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = airlock_as(d, None, &["keygen"]).stdout.trim().to_owned();
    let admin = |args: &[&str]| {
        let mut all = vec!["--user", "ada", "--role", "admin"];
        all.extend_from_slice(args);
        airlock_as(d, Some(&key), &all)
    };
    let made = admin(&[
        "token",
        "create",
        "--for-agent",
        "bot",
        "--token-role",
        "operator",
        "--label",
        "ci",
    ]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let token = made.stdout.trim().to_owned();
    assert!(
        token.starts_with("alk_") && !token.contains('\n'),
        "{token}"
    );
    assert!(made.stderr.contains("shown this once"), "{}", made.stderr);
    let id = token.split('_').nth(1).unwrap().to_owned();
    let listed = admin(&["token", "list", "--json"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let secret = token.splitn(3, '_').nth(2).unwrap();
    assert!(
        listed.stdout.contains(&id) && !listed.stdout.contains(secret),
        "{}",
        listed.stdout
    );
    let operator = airlock_as(
        d,
        Some(&key),
        &["--user", "olivia", "--role", "operator", "token", "list"],
    );
    assert_eq!(operator.code, 2, "{}", operator.stderr);
    assert!(
        operator.stderr.contains("admin-manages-tokens"),
        "{}",
        operator.stderr
    );
    let revoked = admin(&["token", "revoke", &id]);
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    let again = admin(&["token", "revoke", &id]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    let audit = admin(&["audit", "list", "--json"]);
    assert!(!audit.stdout.contains(secret));
}

/// Failed authentications are limited per source: past the limit the source is refused at once,
/// even with a good token, while other sources go on; the flood leaves a bounded audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_failed_authentications_are_limited_per_source() {
    let auth_failures_per_minute = airlock::settings::Settings::default().auth_failures_per_minute;
    let dir = tempfile::tempdir().unwrap();
    let (cp, _state) = common::control_plane(dir.path()).await;
    let admin = common::principal("acme", Role::Admin);
    let good = cp
        .token_create(&admin, spec(PrincipalKind::User, "olivia", Role::Operator))
        .await
        .unwrap();
    let wrong = "alk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for i in 0..auth_failures_per_minute {
        assert_eq!(
            cp.authenticate(Some(wrong), "203.0.113.7")
                .await
                .unwrap_err(),
            AuthError::Unknown,
            "failure {i}"
        );
    }
    let tripped = cp
        .authenticate(Some(wrong), "203.0.113.7")
        .await
        .unwrap_err();
    assert!(
        matches!(tripped, AuthError::TooManyFailures(_)),
        "{tripped:?}"
    );
    for _ in 0..100 {
        assert!(matches!(
            cp.authenticate(Some(&good.token), "203.0.113.7")
                .await
                .unwrap_err(),
            AuthError::TooManyFailures(_)
        ));
    }
    assert!(
        cp.authenticate(Some(&good.token), "198.51.100.1")
            .await
            .is_ok()
    );
    cp.flush_audit().await.unwrap();
    let host_records = airlock::control::state::AuditStore::audit_rows(_state.as_ref(), 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.record.contains("token.authenticate"))
        .count();
    assert_eq!(
        host_records,
        auth_failures_per_minute as usize + 1,
        "one record per failure up to the limit, one for tripping it, none after"
    );
}
