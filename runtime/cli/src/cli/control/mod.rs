//! The control-plane commands, one module per noun. Here is what they share: who is acting,
//! opening the control plane, tables, times, JSON, and how errors become exit codes.

use super::{EXIT_OK, report_invoke_error, report_outcome, say};
use airlock::control::vault::Vault;
use airlock::control::{
    ConnectionSpec, ConnectionUpdate, ControlError, ControlPlane, Principal, PrincipalKind,
};
use airlock::invocation::Role;
use airlock::limits::Limits;
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod approvals;
mod audit;
mod connections;
mod connectors;
mod credentials;
mod health;
mod keys;
mod tokens;

pub use approvals::{ApprovalsCommand, approvals};
pub use audit::{audit, audit_checkpoint, audit_export, audit_verify};
pub use connections::{ConnectionCommand, connection};
pub use connectors::{ConnectorCommand, connector};
pub use credentials::{CredentialCommand, credential};
pub use health::health;
pub use keys::{KeysCommand, keys_id, keys_rotate};
pub use tokens::{TokenCommand, token};

/// Who is acting, from flags or the environment (as the seeds' CLI did).
#[derive(Args, Clone)]
pub struct Identity {
    // Global, so that they can stand before or after the subcommand.
    /// The tenant to act in.
    #[arg(long, global = true, env = "AIRLOCK_TENANT")]
    tenant: Option<String>,
    /// The user acting (default: the login name).
    #[arg(long, global = true, env = "AIRLOCK_USER", conflicts_with = "agent")]
    user: Option<String>,
    /// Act as this agent instead of a user: agents need a grant per connection and operation.
    #[arg(long, global = true, env = "AIRLOCK_AGENT")]
    agent: Option<String>,
    /// viewer, author, operator, auditor, compliance or admin (default viewer: least privilege).
    #[arg(long, global = true, env = "AIRLOCK_ROLE")]
    role: Option<Role>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

impl Identity {
    pub(crate) fn principal(&self) -> anyhow::Result<Principal> {
        let tenant = self
            .tenant
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no tenant: pass --tenant or set AIRLOCK_TENANT"))?;
        airlock::invocation::validate_id("tenant", &tenant).map_err(anyhow::Error::msg)?;
        let (id, kind) = match (&self.agent, &self.user) {
            (Some(agent), _) => (agent.clone(), PrincipalKind::Agent),
            (None, Some(user)) => (user.clone(), PrincipalKind::User),
            (None, None) => (
                std::env::var("USER").unwrap_or_else(|_| "cli".into()),
                PrincipalKind::User,
            ),
        };
        airlock::invocation::validate_id("principal", &id).map_err(anyhow::Error::msg)?;
        Ok(Principal {
            tenant,
            id,
            kind,
            role: self.role.unwrap_or(Role::Viewer),
        })
    }
}

fn parse_json(flag: &str, text: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{flag} is not valid JSON ({e})"))
}

/// Opens the control plane over the data directory's state store. Refuses without a master key.
pub async fn open(data_dir: &Path, vault: Vault) -> anyhow::Result<ControlPlane> {
    // The composition root lives in the library; the CLI only reads its settings.
    Ok(
        ControlPlane::open_embedded(data_dir, vault, airlock::settings::Settings::from_env())
            .await?,
    )
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(header.iter().copied());
    for row in rows {
        t.add_row(row);
    }
    t.to_string()
}

fn when(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) => {
            let secs = ms / 1000;
            let (d, s) = (secs / 86_400, secs % 86_400);
            // Days since the epoch to a civil date (Howard Hinnant's algorithm).
            let z = d + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let day = doy - (153 * mp + 2) / 5 + 1;
            let month = if mp < 10 { mp + 3 } else { mp - 9 };
            let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
            format!(
                "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
                s / 3600,
                s % 3600 / 60,
                s % 60
            )
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

/// The exit code for a control-plane error, after printing it with its remedy in the CLI's
/// terms (the command to run).
pub fn report_error(e: &ControlError) -> u8 {
    let text = crate::cli::remedy::with_hint(e, e.remedy().as_ref());
    match e {
        ControlError::Denied { .. } | ControlError::RateLimited { .. } => say("denied", &text),
        ControlError::Pending(_) => say("pending", &text),
        ControlError::Invoke(inner) => return report_invoke_error(inner),
        ControlError::Invalid(problems) => {
            eprintln!("error: invalid input:");
            for p in problems {
                eprintln!("  - {}", airlock::control::audit::escape_for_terminal(p));
            }
        }
        _ => say("error", &text),
    }
    e.exit_code()
}

pub async fn invoke(
    cp: &ControlPlane,
    who: &Identity,
    connection: &str,
    operation: &str,
    params: &str,
    rationale: Option<&str>,
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let result = cp
        .invoke_with(&principal, connection, operation, params, rationale)
        .await;
    flush(cp).await;
    Ok(match result {
        Ok(outcome) => report_outcome(&outcome),
        Err(ControlError::Pending(ticket)) if who.json => {
            print_json(&serde_json::json!({"status": "pending", "ticket": ticket}));
            4
        }
        Err(e) => report_error(&e),
    })
}

/// Waits for the audit records to be stored; says so loudly when they cannot be.
async fn flush(cp: &ControlPlane) {
    if let Err(e) = cp.flush_audit().await {
        say("error", &e);
    }
}

/// Closes the audit log before the process exits and says where any record the store refused
/// went. The exit code is 1 unless every record is stored or spooled.
pub async fn close(cp: &ControlPlane) -> u8 {
    use airlock::control::audit::Closed;
    match cp.shutdown().await {
        Closed::Stored => super::EXIT_OK,
        Closed::Spooled {
            records,
            path,
            reason,
        } => {
            eprintln!(
                "warning: {reason}; {records} record(s) kept in {} and stored by the next airlock command that can write",
                path.display()
            );
            super::EXIT_OK
        }
        Closed::Printed { records, reason } => {
            eprintln!(
                "error: {reason}, and the spool could not be written either; the {records} record(s) are printed above, keep them"
            );
            super::EXIT_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_formats_timestamps_as_utc() {
        assert_eq!(super::when(Some(0)), "1970-01-01 00:00:00Z");
        assert_eq!(super::when(Some(1_795_000_000_000)), "2026-11-18 11:06:40Z");
        assert_eq!(super::when(None), "-");
    }
}
