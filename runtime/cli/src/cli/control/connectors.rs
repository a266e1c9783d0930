//! `airlock connector`: register, list, show, enable and disable connector versions.

use super::*;

#[derive(Subcommand)]
pub enum ConnectorCommand {
    /// Register a component (idempotent for the same bytes).
    Register { component: PathBuf },
    /// List registered connectors.
    List,
    /// Show every version of a connector.
    Show { id: String },
    /// Enable a connector (all versions, or one).
    Enable {
        id: String,
        #[arg(long)]
        version: Option<String>,
    },
    /// Disable a connector (all versions, or one): its connections stop working.
    Disable {
        id: String,
        #[arg(long)]
        version: Option<String>,
    },
    /// Every change to the registry (one connector's, if given).
    History { id: Option<String> },
}

pub async fn connector(
    cp: &ControlPlane,
    who: &Identity,
    command: ConnectorCommand,
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let result = match command {
        ConnectorCommand::Register { component } => {
            let bytes = std::fs::read(&component)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", component.display()))?;
            let spinner = progress_spinner();
            let progress = |message: &str| {
                if let Some(s) = &spinner {
                    s.set_message(message.to_owned());
                }
            };
            let result = cp.register(&principal, &bytes, &progress).await;
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            result.map(|r| {
                if who.json {
                    print_json(&r);
                } else {
                    let verb = if r.created {
                        "registered"
                    } else {
                        "already registered (unchanged)"
                    };
                    println!(
                        "{} {} {verb}: sha256:{}",
                        r.connector.id, r.connector.version, r.connector.digest
                    );
                }
            })
        }
        ConnectorCommand::List => cp.connector_list(&principal).await.map(|list| {
            if who.json {
                return print_json(&list);
            }
            let rows = list
                .iter()
                .map(|c| {
                    vec![
                        c.id.clone(),
                        c.version.clone(),
                        if c.enabled { "yes" } else { "no" }.into(),
                        c.manifest.operations.len().to_string(),
                        c.digest[..12].to_owned(),
                        c.registered_by.clone(),
                        when(Some(c.registered_at)),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "id",
                        "version",
                        "enabled",
                        "operations",
                        "sha256",
                        "by",
                        "registered"
                    ],
                    rows
                )
            );
        }),
        ConnectorCommand::Show { id } => cp.connector_show(&principal, &id).await.map(|versions| {
            if who.json {
                return print_json(&versions);
            }
            for c in versions {
                println!(
                    "{} {} ({}) sha256:{}",
                    c.id,
                    c.version,
                    if c.enabled { "enabled" } else { "disabled" },
                    c.digest
                );
                println!("  {}", c.manifest.description);
                for op in &c.manifest.operations {
                    println!(
                        "  {:<10} {:<5} risk={:?} {}",
                        op.name,
                        op.access.to_string(),
                        op.risk,
                        op.description
                    );
                }
            }
        }),
        ConnectorCommand::Enable { id, version } => {
            set_enabled(cp, &principal, &id, version.as_deref(), true).await
        }
        ConnectorCommand::Disable { id, version } => {
            set_enabled(cp, &principal, &id, version.as_deref(), false).await
        }
        ConnectorCommand::History { id } => cp
            .connector_history(&principal, id.as_deref())
            .await
            .map(|entries| {
                if who.json {
                    return print_json(&entries);
                }
                let rows = entries
                    .iter()
                    .map(|e| {
                        vec![
                            e.seq.to_string(),
                            when(Some(e.at)),
                            e.actor.clone(),
                            e.action.clone(),
                            e.connector.clone(),
                            e.version.clone(),
                            e.detail.to_string(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &["#", "when", "who", "what", "connector", "version", "detail"],
                        rows
                    )
                );
            }),
    };
    flush(cp).await;
    Ok(match result {
        Ok(()) => EXIT_OK,
        Err(e) => report_error(&e),
    })
}

async fn set_enabled(
    cp: &ControlPlane,
    who: &Principal,
    id: &str,
    version: Option<&str>,
    enabled: bool,
) -> airlock::control::Result<()> {
    cp.connector_set_enabled(who, id, version, enabled)
        .await
        .map(|changed| {
            let state = if enabled { "enabled" } else { "disabled" };
            if changed.is_empty() {
                println!("{id}: already {state}");
            } else {
                println!("{id} {}: {state}", changed.join(", "));
            }
        })
}

fn progress_spinner() -> Option<indicatif::ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(100));
    Some(spinner)
}
