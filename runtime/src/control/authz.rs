//! Who may do what: one function, [`authorize`], decides every action from one table, [`RULES`].
//!
//! The table is the policy: docs/security-model.md prints it and `tests/rbac.rs` checks every
//! role and principal kind against it. Anything the table does not allow is denied (fail
//! closed). Tenant isolation is not a rule here but a property of every lookup: a principal only
//! ever reads its own tenant's rows, so another tenant's connection is "not found", never
//! "forbidden".

use crate::invocation::{Access, Role};
use crate::remedy::Remedy;
use std::fmt;

/// The kind of principal. Agents (AI agents, automations) act only through explicit grants.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    User,
    Agent,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Agent => "agent",
        }
    }
}

impl std::str::FromStr for PrincipalKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "user" => Ok(PrincipalKind::User),
            "agent" => Ok(PrincipalKind::Agent),
            other => Err(format!(
                "unknown principal kind `{}`: expected user or agent",
                other.escape_debug()
            )),
        }
    }
}

/// An authenticated caller: a user or agent of one tenant, with a role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    pub tenant: String,
    pub id: String,
    pub kind: PrincipalKind,
    pub role: Role,
}

/// Everything a principal can ask the control plane to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    ConnectorList,
    ConnectorShow,
    ConnectorRegister,
    ConnectorEnable,
    ConnectorHistory,
    ConnectionList,
    ConnectionShow,
    ConnectionCreate,
    ConnectionUpdate,
    ConnectionEnable,
    ConnectionTest,
    ConnectionGrant,
    InvokeRead,
    InvokeWrite,
    AuditList,
    CredentialList,
    CredentialManage,
    ApprovalList,
    ApprovalDecide,
    KeysRotate,
    TokenManage,
}

impl Action {
    pub const ALL: [Action; 21] = [
        Action::ConnectorList,
        Action::ConnectorShow,
        Action::ConnectorRegister,
        Action::ConnectorEnable,
        Action::ConnectorHistory,
        Action::ConnectionList,
        Action::ConnectionShow,
        Action::ConnectionCreate,
        Action::ConnectionUpdate,
        Action::ConnectionEnable,
        Action::ConnectionTest,
        Action::ConnectionGrant,
        Action::InvokeRead,
        Action::InvokeWrite,
        Action::AuditList,
        Action::CredentialList,
        Action::CredentialManage,
        Action::ApprovalList,
        Action::ApprovalDecide,
        Action::KeysRotate,
        Action::TokenManage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::ConnectorList => "connector.list",
            Action::ConnectorShow => "connector.show",
            Action::ConnectorRegister => "connector.register",
            Action::ConnectorEnable => "connector.enable",
            Action::ConnectorHistory => "connector.history",
            Action::ConnectionList => "connection.list",
            Action::ConnectionShow => "connection.show",
            Action::ConnectionCreate => "connection.create",
            Action::ConnectionUpdate => "connection.update",
            Action::ConnectionEnable => "connection.enable",
            Action::ConnectionTest => "connection.test",
            Action::ConnectionGrant => "connection.grant",
            Action::InvokeRead => "invoke.read",
            Action::InvokeWrite => "invoke.write",
            Action::AuditList => "audit.list",
            Action::CredentialList => "credential.list",
            Action::CredentialManage => "credential.manage",
            Action::ApprovalList => "approval.list",
            Action::ApprovalDecide => "approval.decide",
            Action::KeysRotate => "keys.rotate",
            Action::TokenManage => "token.manage",
        }
    }

    pub fn for_access(access: Access) -> Self {
        match access {
            Access::Read => Action::InvokeRead,
            Access::Write => Action::InvokeWrite,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who, beyond the minimum role, an action is open to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agents {
    /// Agents may never take this action.
    Never,
    /// Agents may, with a grant for this connection and operation (and the role).
    WithGrant,
}

/// One row of the policy.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub action: Action,
    /// The lowest role that may take the action. For invocations this is the default; a
    /// connection can require a higher role per operation.
    pub min_role: Role,
    pub agents: Agents,
    /// The rule's name, recorded with every decision.
    pub name: &'static str,
}

/// The whole policy. Seeds: listing is open to every role, registering and enabling connectors
/// is Admin's, invoking (testing) is Operator's.
pub const RULES: &[Rule] = &[
    Rule {
        action: Action::ConnectorList,
        min_role: Role::Viewer,
        agents: Agents::Never,
        name: "view-registry",
    },
    Rule {
        action: Action::ConnectorShow,
        min_role: Role::Viewer,
        agents: Agents::Never,
        name: "view-registry",
    },
    Rule {
        action: Action::ConnectorRegister,
        min_role: Role::Admin,
        agents: Agents::Never,
        name: "admin-manages-registry",
    },
    Rule {
        action: Action::ConnectorEnable,
        min_role: Role::Admin,
        agents: Agents::Never,
        name: "admin-manages-registry",
    },
    Rule {
        action: Action::ConnectorHistory,
        min_role: Role::Auditor,
        agents: Agents::Never,
        name: "auditor-reads-history",
    },
    Rule {
        action: Action::ConnectionList,
        min_role: Role::Viewer,
        agents: Agents::Never,
        name: "view-connections",
    },
    Rule {
        action: Action::ConnectionShow,
        min_role: Role::Viewer,
        agents: Agents::Never,
        name: "view-connections",
    },
    Rule {
        action: Action::ConnectionCreate,
        min_role: Role::Admin,
        agents: Agents::Never,
        name: "admin-configures-connections",
    },
    Rule {
        action: Action::ConnectionUpdate,
        min_role: Role::Admin,
        agents: Agents::Never,
        name: "admin-configures-connections",
    },
    Rule {
        action: Action::ConnectionEnable,
        min_role: Role::Admin,
        agents: Agents::Never,
        name: "admin-configures-connections",
    },
    Rule {
        action: Action::ConnectionTest,
        min_role: Role::Operator,
        agents: Agents::Never,
        name: "operator-tests-connections",
    },
    Rule {
        action: Action::ConnectionGrant,
        min_role: Role::Admin,
        agents: Agents::Never,
        name: "admin-grants-agents",
    },
    Rule {
        action: Action::InvokeRead,
        min_role: Role::Operator,
        agents: Agents::WithGrant,
        name: "operator-invokes",
    },
    Rule {
        action: Action::InvokeWrite,
        min_role: Role::Operator,
        agents: Agents::WithGrant,
        name: "operator-invokes",
    },
    Rule {
        action: Action::AuditList,
        min_role: Role::Auditor,
        agents: Agents::Never,
        name: "auditor-reads-audit",
    },
    // Approvers (and auditors) see requests; people decide them, never agents. Critical
    // requests need an Admin, checked with the request (`control::approvals`).
    Rule {
        action: Action::ApprovalList,
        min_role: Role::Operator,
        agents: Agents::Never,
        name: "operator-sees-approvals",
    },
    Rule {
        action: Action::ApprovalDecide,
        min_role: Role::Operator,
        agents: Agents::Never,
        name: "operator-decides-approvals",
    },
    Rule {
        action: Action::CredentialList,
        min_role: Role::Operator,
        agents: Agents::Never,
        name: "operator-sees-credential-metadata",
    },
    Rule {
        action: Action::CredentialManage,
        min_role: Role::Admin,
        agents: Agents::Never,
        name: "admin-manages-credentials",
    },
    // Re-seals every tenant's secrets and re-signs the whole audit trail: the host's Admin.
    Rule {
        action: Action::KeysRotate,
        min_role: Role::Admin,
        agents: Agents::Never,
        name: "admin-rotates-keys",
    },
    // API tokens stand for users and agents of the tenant: whoever makes one can act as them.
    Rule {
        action: Action::TokenManage,
        min_role: Role::Admin,
        agents: Agents::Never,
        name: "admin-manages-tokens",
    },
];

/// What the action is about, where the rule needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// For invocations: the role the connection requires for this operation, if higher.
    pub required_role: Option<Role>,
    /// For agents: whether a grant exists for this connection and operation.
    pub agent_granted: bool,
}

/// A decision, with the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub rule: &'static str,
    pub reason: String,
    /// For a denial: what would allow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<Remedy>,
}

impl Decision {
    /// Allowed by `rule`, which needs no reason (a dry run, an approval, a grant).
    pub fn allowed_by(rule: &'static str) -> Self {
        Decision {
            allowed: true,
            rule,
            reason: String::new(),
            remedy: None,
        }
    }

    /// Refused at `rule` before any policy was weighed (the connection cannot be found); the
    /// error says why.
    pub fn refused(rule: &'static str) -> Self {
        Decision {
            allowed: false,
            ..Decision::allowed_by(rule)
        }
    }

    /// The error a refusal answers with.
    pub fn to_error(&self) -> super::ControlError {
        super::ControlError::Denied {
            rule: self.rule.into(),
            reason: self.reason.clone(),
            remedy: self.remedy.clone(),
        }
    }
}

/// Decides `action` for `principal`. Fails closed: no rule, no access.
pub fn authorize(principal: &Principal, action: Action, ctx: Context) -> Decision {
    let Some(rule) = RULES.iter().find(|r| r.action == action) else {
        return Decision {
            allowed: false,
            rule: "default-deny",
            reason: format!("no rule allows {action}"),
            remedy: None,
        };
    };
    let deny = |rule: &'static str, reason: String| Decision {
        allowed: false,
        rule,
        reason,
        remedy: None,
    };
    if principal.kind == PrincipalKind::Agent {
        match rule.agents {
            Agents::Never => {
                return deny(
                    "agents-act-through-grants",
                    format!("agents may not take {action}; only users may"),
                );
            }
            Agents::WithGrant if !ctx.agent_granted => {
                return Decision {
                    remedy: Some(Remedy::GrantAgent {
                        agent: principal.id.clone(),
                        connection: None,
                        operation: None,
                    }),
                    ..deny(
                        "agent-needs-grant",
                        format!(
                            "agent `{}` has no grant for this connection and operation",
                            principal.id
                        ),
                    )
                };
            }
            Agents::WithGrant => {}
        }
    }
    let required = ctx
        .required_role
        .map_or(rule.min_role, |r| r.max(rule.min_role));
    if principal.role < required {
        let rule_name = if required > rule.min_role {
            "connection-required-role"
        } else {
            rule.name
        };
        return deny(
            rule_name,
            format!(
                "{action} needs role {required:?} or higher; {} has {:?}",
                principal.id, principal.role
            ),
        );
    }
    Decision {
        allowed: true,
        rule: rule.name,
        reason: format!("{:?} may take {action}", principal.role),
        remedy: None,
    }
}
