//! `airlock token`: API tokens for the served control plane (HTTP API, MCP), made for a user or
//! an agent of the tenant. A new token is printed once, on stdout alone, so it can be piped
//! into a secret store; lists show ids, never secrets.

use super::*;
use airlock::control::access::TokenSpec;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token for a user (`--for-user`) or an agent (`--for-agent`) of this tenant and
    /// print it (shown this once).
    Create {
        /// The user the token stands for.
        #[arg(
            long = "for-user",
            conflicts_with = "for_agent",
            required_unless_present = "for_agent"
        )]
        for_user: Option<String>,
        /// The agent the token stands for; it acts only through its grants.
        #[arg(long = "for-agent")]
        for_agent: Option<String>,
        /// The token's role (viewer, author, operator, auditor, compliance, admin).
        #[arg(long = "token-role", default_value = "viewer")]
        token_role: Role,
        /// A note for the list, such as where the token is used.
        #[arg(long)]
        label: Option<String>,
        /// Valid for this long (`30d`, `12h`); without it, until revoked.
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
    },
    /// This tenant's tokens: id, who, role, created, expiry, revoked.
    List,
    /// Revoke a token for good.
    Revoke { id: String },
}

pub async fn token(cp: &ControlPlane, who: &Identity, command: TokenCommand) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    match command {
        TokenCommand::Create {
            for_user,
            for_agent,
            token_role,
            label,
            expires_in,
        } => {
            let (kind, subject) = match (for_user, for_agent) {
                (_, Some(agent)) => (PrincipalKind::Agent, agent),
                (Some(user), None) => (PrincipalKind::User, user),
                (None, None) => {
                    anyhow::bail!("say who the token is for: --for-user or --for-agent")
                }
            };
            let spec = TokenSpec {
                kind,
                subject,
                role: token_role,
                label,
                expires_in: expires_in.map(Into::into),
            };
            match cp.token_create(&principal, spec).await {
                Ok(issued) => {
                    if who.json {
                        print_json(&serde_json::json!({
                            "token": &*issued.token,
                            "record": issued.record,
                        }));
                    } else {
                        println!("{}", &*issued.token);
                        eprintln!(
                            "(token {} for {} {} with role {}; shown this once, keep it in a secret store)",
                            issued.record.id,
                            issued.record.kind.as_str(),
                            issued.record.subject,
                            issued.record.role.as_str()
                        );
                    }
                    Ok(EXIT_OK)
                }
                Err(e) => Ok(report_error(&e)),
            }
        }
        TokenCommand::List => match cp.token_list(&principal).await {
            Ok(tokens) => {
                if who.json {
                    print_json(&tokens);
                } else {
                    let rows = tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                format!("{} {}", t.kind.as_str(), t.subject),
                                t.role.as_str().to_owned(),
                                t.label.clone().unwrap_or_default(),
                                when(Some(t.created_at)),
                                when(t.expires_at),
                                when(t.revoked_at),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "id", "for", "role", "label", "created", "expires", "revoked"
                            ],
                            rows
                        )
                    );
                }
                Ok(EXIT_OK)
            }
            Err(e) => Ok(report_error(&e)),
        },
        TokenCommand::Revoke { id } => match cp.token_revoke(&principal, &id).await {
            Ok(()) => {
                eprintln!("token {id} revoked");
                Ok(EXIT_OK)
            }
            Err(e) => Ok(report_error(&e)),
        },
    }
}
