//! The core's remedies in the CLI's terms: the command that would allow or repair it.

use airlock::remedy::Remedy;

/// The remedy as a clause to follow an error on the terminal, naming the command to run.
pub fn hint(remedy: &Remedy) -> String {
    match remedy {
        Remedy::GrantEgress { connection, origin } => format!(
            "grant it with `--egress {origin}` (on `airlock run`, or `airlock connection update \
             {connection}`, whose --egress list replaces the old one)"
        ),
        Remedy::EnableConnection { connection } => {
            format!("enable it with `airlock connection enable {connection}`")
        }
        Remedy::AllowOperation { connection, .. } => format!(
            "allow it with `airlock connection update {connection}`, passing --allow-operation for \
             each operation to allow"
        ),
        Remedy::EnableWrites { connection } => format!(
            "enable writes with `airlock connection update {connection} --writes-enabled true`"
        ),
        Remedy::GrantAgent {
            agent,
            connection,
            operation,
        } => format!(
            "an admin grants it with `airlock connection grant {} --to-agent {agent} --operation {}`",
            connection.as_deref().unwrap_or("<connection>"),
            operation.as_deref().unwrap_or("<operation>")
        ),
        Remedy::RaiseRateLimit { connection } => format!(
            "retry then, or raise the limit with `airlock connection update {connection} \
             --queries-per-minute <n>`"
        ),
        Remedy::RegisterConnector { .. } => {
            "register it with `airlock connector register <file.wasm>`".to_owned()
        }
        Remedy::UpdateConnection { connection } => {
            format!("change it with `airlock connection update {connection}`")
        }
        Remedy::ListConnections => {
            "`airlock connection list` shows this tenant's connections".to_owned()
        }
        Remedy::ListApprovals => "`airlock approvals list --all` shows this tenant's".to_owned(),
        Remedy::WaitForApproval { request } => {
            format!("follow it with `airlock approvals wait {request}`")
        }
        Remedy::CreateMasterKey => "`airlock keygen` prints a new key".to_owned(),
        Remedy::RotateMasterKey => "run `airlock keys rotate` (again)".to_owned(),
        Remedy::IdentifyMasterKey => "`airlock keys id` prints a key's id".to_owned(),
        Remedy::ResealValue => "set the value again with `airlock credential set` or \
             `airlock connection update --config`, or leave it unreadable with `airlock keys \
             rotate --skip-unreadable`"
            .to_owned(),
    }
}

/// `message`, followed by the remedy's command when there is one.
pub fn with_hint(message: &dyn std::fmt::Display, remedy: Option<&Remedy>) -> String {
    match remedy {
        Some(r) => format!("{message}; {}", hint(r)),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every remedy has a command, and it names what the remedy names.
    #[test]
    fn remedy_every_remedy_is_worded_as_a_command() {
        let c = || "crm".to_owned();
        let all = [
            (
                Remedy::GrantEgress {
                    connection: c(),
                    origin: "https://api.example.com:443".into(),
                },
                "--egress https://api.example.com:443",
            ),
            (
                Remedy::EnableConnection { connection: c() },
                "airlock connection enable crm",
            ),
            (
                Remedy::AllowOperation {
                    connection: c(),
                    operation: "create".into(),
                },
                "airlock connection update crm",
            ),
            (
                Remedy::EnableWrites { connection: c() },
                "--writes-enabled true",
            ),
            (
                Remedy::GrantAgent {
                    agent: "bot".into(),
                    connection: Some(c()),
                    operation: Some("list".into()),
                },
                "airlock connection grant crm --to-agent bot --operation list",
            ),
            (
                Remedy::RaiseRateLimit { connection: c() },
                "--queries-per-minute",
            ),
            (
                Remedy::RegisterConnector {
                    connector: "sap".into(),
                },
                "airlock connector register",
            ),
            (
                Remedy::UpdateConnection { connection: c() },
                "airlock connection update crm",
            ),
            (Remedy::ListConnections, "airlock connection list"),
            (Remedy::ListApprovals, "airlock approvals list --all"),
            (
                Remedy::WaitForApproval {
                    request: "apr-1".into(),
                },
                "airlock approvals wait apr-1",
            ),
            (Remedy::CreateMasterKey, "airlock keygen"),
            (Remedy::RotateMasterKey, "airlock keys rotate"),
            (Remedy::IdentifyMasterKey, "airlock keys id"),
            (Remedy::ResealValue, "airlock credential set"),
        ];
        for (remedy, says) in all {
            let text = hint(&remedy);
            assert!(text.contains(says), "{remedy:?}: {text}");
            // The neutral sentence names no command: that is the front end's to add.
            assert!(!remedy.to_string().contains("airlock "), "{remedy}");
        }
    }
}
