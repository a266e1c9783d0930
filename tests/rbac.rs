//! The RBAC matrix: every role and principal kind against every action, checked against the table
//! in docs/security-model.md.

use crate::common;
use airlock::Role;
use airlock::control::authz::{Action, Context, Principal, PrincipalKind, RULES, authorize};

const ROLES: [Role; 6] = [
    Role::Viewer,
    Role::Author,
    Role::Operator,
    Role::Auditor,
    Role::Compliance,
    Role::Admin,
];

/// The matrix rows of docs/security-model.md: action -> (rule, [cell per role..., agent]).
fn documented() -> Vec<(String, String, Vec<String>)> {
    let doc = std::fs::read_to_string(common::root().join("docs/security-model.md")).unwrap();
    doc.lines()
        .filter(|l| {
            l.starts_with("| ") && !l.starts_with("| action") && l.matches('|').count() == 10
        })
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            (cells[0].clone(), cells[1].clone(), cells[2..].to_vec())
        })
        .collect()
}

fn principal(kind: PrincipalKind, role: Role) -> Principal {
    Principal {
        tenant: "acme".into(),
        id: "p".into(),
        kind,
        role,
    }
}

#[test]
fn rbac_matrix_matches_the_documented_table() {
    let doc = documented();
    assert_eq!(
        doc.len(),
        Action::ALL.len(),
        "the doc's table must have one row per action"
    );
    for action in Action::ALL {
        let (_, rule, cells) = doc
            .iter()
            .find(|(name, _, _)| name == action.name())
            .unwrap_or_else(|| panic!("{action} is missing from docs/security-model.md"));
        assert_eq!(
            RULES.iter().find(|r| r.action == action).unwrap().name,
            rule,
            "{action}: rule name"
        );
        for (i, role) in ROLES.iter().enumerate() {
            let expected = match cells[i].as_str() {
                "yes" => true,
                "no" => false,
                other => panic!("{action} {role:?}: cell `{other}`"),
            };
            let decision = authorize(
                &principal(PrincipalKind::User, *role),
                action,
                Context::default(),
            );
            assert_eq!(
                decision.allowed, expected,
                "user {role:?} {action}: {decision:?}"
            );
        }
        // Agents: without a grant always denied; with one, as the role allows where the doc says `grant`.
        let agent_cell = cells[6].as_str();
        for role in ROLES {
            let without = authorize(
                &principal(PrincipalKind::Agent, role),
                action,
                Context::default(),
            );
            assert!(
                !without.allowed,
                "agent {role:?} {action} allowed without a grant"
            );
            let with = authorize(
                &principal(PrincipalKind::Agent, role),
                action,
                Context {
                    agent_granted: true,
                    ..Context::default()
                },
            );
            let user = authorize(
                &principal(PrincipalKind::User, role),
                action,
                Context::default(),
            );
            match agent_cell {
                "grant" => assert_eq!(
                    with.allowed, user.allowed,
                    "granted agent {role:?} {action}"
                ),
                "no" => assert!(
                    !with.allowed,
                    "agent {role:?} {action} allowed with a grant"
                ),
                other => panic!("{action} agent cell `{other}`"),
            }
        }
    }
}

#[test]
fn rbac_denials_name_the_rule_and_what_is_needed() {
    let d = authorize(
        &principal(PrincipalKind::User, Role::Viewer),
        Action::InvokeWrite,
        Context::default(),
    );
    assert_eq!(d.rule, "operator-invokes");
    assert!(d.reason.contains("needs role Operator"), "{}", d.reason);
    let d = authorize(
        &principal(PrincipalKind::User, Role::Operator),
        Action::InvokeWrite,
        Context {
            required_role: Some(Role::Admin),
            ..Context::default()
        },
    );
    assert_eq!((d.allowed, d.rule), (false, "connection-required-role"));
    let d = authorize(
        &principal(PrincipalKind::Agent, Role::Admin),
        Action::InvokeRead,
        Context::default(),
    );
    assert_eq!(d.rule, "agent-needs-grant");
    assert!(
        matches!(&d.remedy, Some(airlock::remedy::Remedy::GrantAgent { agent, .. }) if agent == &principal(PrincipalKind::Agent, Role::Admin).id),
        "{d:?}"
    );
    let d = authorize(
        &principal(PrincipalKind::Agent, Role::Admin),
        Action::ConnectorRegister,
        Context::default(),
    );
    assert_eq!(d.rule, "agents-act-through-grants");
}
