//! `airlock connection`: create, update, show, list, enable, grant, history, and the flags that
//! set a connection's policies (roles, risks, approvals, data shaping, limits).

use super::*;

/// Settings shared by `connection create` and `connection update`.
#[derive(Args, Default)]
pub struct ConnectionSettings {
    /// Non-secret config, a JSON object checked against the connector's config schema.
    #[arg(long)]
    config: Option<String>,
    /// Allow only these operations (repeatable); without it, all of the manifest's.
    #[arg(long = "allow-operation")]
    allow_operations: Vec<String>,
    /// Allow only these objects (repeatable), matched against the params' `object` or `type`.
    #[arg(long = "allow-object")]
    allow_objects: Vec<String>,
    /// Require a higher role for an operation, as OPERATION=ROLE (repeatable).
    #[arg(long = "require-role")]
    require_roles: Vec<String>,
    /// Let write operations run (connections are read-only by default).
    #[arg(long)]
    writes_enabled: Option<bool>,
    /// Wall-clock deadline per invocation, in milliseconds.
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Memory limit per invocation, in MiB.
    #[arg(long)]
    memory_mib: Option<usize>,
    /// Let the connection reach this destination, `scheme://host[:port][/path]`, e.g.
    /// `https://api.example.com` or `https://*.example.com:*` (repeatable; replaces the list).
    #[arg(long)]
    egress: Vec<String>,
    /// Remove every egress grant.
    #[arg(long, conflicts_with = "egress")]
    clear_egress: bool,
    /// Allow at most this many invocations per minute (0 removes the limit on update).
    #[arg(long)]
    queries_per_minute: Option<u32>,
    /// Honour the connector's declared read routes (POST-as-read for GraphQL, OData batch).
    #[arg(long)]
    accept_read_routes: Option<bool>,
    /// Raise an operation's risk, as OPERATION=LEVEL (low, medium, high, critical; repeatable;
    /// replaces the list). The connector's own claim still counts when it is higher.
    #[arg(long = "risk")]
    risks: Vec<String>,
    /// The lowest risk that waits for an approver (default medium; critical always waits for
    /// an Admin).
    #[arg(long)]
    approval_from: Option<String>,
    /// Dry-run mode: writes run with their effects captured and shown, never applied. Unset:
    /// on for prototype connectors (such as `mail`) unless the host runs with DRY_RUN=false.
    #[arg(long)]
    dry_run: Option<bool>,
    /// Raise an operation's data classification, as OPERATION=LEVEL (public, internal,
    /// confidential, restricted; repeatable; replaces the list).
    #[arg(long = "classification")]
    classifications: Vec<String>,
    /// Mask personal data in results: a comma-separated list of emails, phones, cards, ibans,
    /// or `all`, or `none`.
    #[arg(long)]
    mask: Option<String>,
    /// Mask national ids matching this regular expression (repeatable; replaces the list).
    #[arg(long = "mask-id-pattern")]
    mask_id_patterns: Vec<String>,
    /// Mask this field's value whole, wherever it appears (repeatable; replaces the list).
    #[arg(long = "mask-field")]
    mask_fields: Vec<String>,
    /// Serve read results from a cache for this many seconds, or `default`
    /// (CONNECTOR_CACHE_TTL_SECONDS, 300); 0 turns the cache off.
    #[arg(long)]
    cache_ttl: Option<String>,
}

#[derive(Subcommand)]
pub enum ConnectionCommand {
    /// Configure a connector for this tenant.
    Create {
        name: String,
        #[arg(long)]
        connector: String,
        /// Pin a version; without it the connection follows the latest.
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        settings: ConnectionSettings,
    },
    List,
    Show {
        name: String,
    },
    /// Change a connection's settings.
    Update {
        name: String,
        /// Pin a version, or `latest` to follow the latest.
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        settings: ConnectionSettings,
    },
    Enable {
        name: String,
    },
    Disable {
        name: String,
    },
    /// Run the connector's health check and discovery, and record the result.
    Test {
        name: String,
    },
    /// Let an agent invoke one operation on this connection.
    Grant {
        name: String,
        #[arg(long = "to-agent")]
        to_agent: String,
        #[arg(long)]
        operation: String,
    },
    /// Take an agent's grant back.
    Revoke {
        name: String,
        #[arg(long = "from-agent")]
        from_agent: String,
        #[arg(long)]
        operation: String,
    },
}

fn roles(pairs: &[String]) -> anyhow::Result<BTreeMap<String, Role>> {
    pairs
        .iter()
        .map(|pair| {
            let (op, role) = pair.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--require-role takes OPERATION=ROLE, got `{pair}`")
            })?;
            Ok((op.to_owned(), role.parse().map_err(anyhow::Error::msg)?))
        })
        .collect()
}

fn parse_risk(flag: &str, text: &str) -> anyhow::Result<airlock::manifest::Risk> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_ascii_lowercase())).map_err(
        |_| anyhow::anyhow!("{flag}: unknown risk `{text}`; use low, medium, high or critical"),
    )
}

/// The approval policy from --risk and --approval-from, on top of `base`; `None` when neither
/// flag was given.
fn approval_policy(
    settings: &ConnectionSettings,
    base: Option<airlock::control::policies::ApprovalPolicy>,
) -> anyhow::Result<Option<airlock::control::policies::ApprovalPolicy>> {
    if settings.risks.is_empty() && settings.approval_from.is_none() && settings.dry_run.is_none() {
        return Ok(None);
    }
    let mut policy = base.unwrap_or_default();
    if !settings.risks.is_empty() {
        policy.operation_risks = settings
            .risks
            .iter()
            .map(|pair| {
                let (op, level) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--risk takes OPERATION=LEVEL, got `{pair}`"))?;
                Ok((op.to_owned(), parse_risk("--risk", level)?))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(level) = &settings.approval_from {
        policy.require_from = Some(parse_risk("--approval-from", level)?);
    }
    if let Some(dry_run) = settings.dry_run {
        policy.dry_run = Some(dry_run);
    }
    Ok(Some(policy))
}

fn data_flags(settings: &ConnectionSettings) -> bool {
    !settings.classifications.is_empty()
        || settings.mask.is_some()
        || !settings.mask_id_patterns.is_empty()
        || !settings.mask_fields.is_empty()
        || settings.cache_ttl.is_some()
}

/// The data policy from the classification, masking and cache flags, on top of `base`; `None`
/// when none was given.
fn data_policy(
    settings: &ConnectionSettings,
    base: Option<airlock::control::shaping::DataPolicy>,
    default_ttl: std::time::Duration,
) -> anyhow::Result<Option<airlock::control::shaping::DataPolicy>> {
    use airlock::control::shaping::Masking;
    if !data_flags(settings) {
        return Ok(None);
    }
    let mut policy = base.unwrap_or_default();
    if !settings.classifications.is_empty() {
        policy.classification = settings
            .classifications
            .iter()
            .map(|pair| {
                let (op, level) = pair.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!("--classification takes OPERATION=LEVEL, got `{pair}`")
                })?;
                let level = serde_json::from_value(serde_json::Value::String(
                    level.trim().to_ascii_lowercase(),
                ))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--classification: unknown level `{level}`; use public, internal, confidential or restricted"
                    )
                })?;
                Ok((op.to_owned(), level))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(list) = &settings.mask {
        let (patterns, fields) = (
            std::mem::take(&mut policy.mask.id_patterns),
            std::mem::take(&mut policy.mask.fields),
        );
        let mut mask = Masking::default();
        for item in list.split(',').map(|i| i.trim().to_ascii_lowercase()) {
            match item.as_str() {
                "emails" | "email" => mask.emails = true,
                "phones" | "phone" => mask.phones = true,
                "cards" | "card" => mask.cards = true,
                "ibans" | "iban" => mask.ibans = true,
                "all" => mask = mask.all(),
                "none" | "" => {}
                other => anyhow::bail!(
                    "--mask: unknown kind `{other}`; use emails, phones, cards, ibans, all or none"
                ),
            }
        }
        mask.id_patterns = patterns;
        mask.fields = fields;
        policy.mask = mask;
    }
    if !settings.mask_id_patterns.is_empty() {
        policy.mask.id_patterns = settings.mask_id_patterns.clone();
    }
    if !settings.mask_fields.is_empty() {
        policy.mask.fields = settings.mask_fields.clone();
    }
    if let Some(ttl) = &settings.cache_ttl {
        let seconds = if ttl.trim() == "default" {
            default_ttl.as_secs().min(u32::MAX.into()) as u32
        } else {
            ttl.trim().parse().map_err(|_| {
                anyhow::anyhow!("--cache-ttl takes seconds (300), `default` or 0, got `{ttl}`")
            })?
        };
        policy.cache_ttl_s = (seconds > 0).then_some(seconds);
        if seconds > 0 {
            eprintln!(
                "note: the read cache lives in the process that serves the calls; it pays off in a \
                 long-running process embedding the control plane, while each `airlock invoke` is a \
                 process of its own and starts with an empty cache"
            );
        }
    }
    Ok(Some(policy))
}

fn limits(settings: &ConnectionSettings, base: Option<Limits>) -> Option<Limits> {
    if settings.deadline_ms.is_none() && settings.memory_mib.is_none() {
        return base;
    }
    let mut limits = base.unwrap_or_default();
    if let Some(ms) = settings.deadline_ms {
        limits.deadline = Duration::from_millis(ms);
    }
    if let Some(mib) = settings.memory_mib {
        // Checked by the control plane against what the host can honour.
        limits.max_memory_bytes = mib.saturating_mul(1 << 20);
    }
    Some(limits)
}

pub async fn connection(
    cp: &ControlPlane,
    who: &Identity,
    command: ConnectionCommand,
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let result = match command {
        ConnectionCommand::Create {
            name,
            connector,
            version,
            settings,
        } => {
            let spec = ConnectionSpec {
                name,
                connector,
                version,
                config: match &settings.config {
                    Some(text) => parse_json("--config", text)?,
                    None => serde_json::json!({}),
                },
                allowed_operations: (!settings.allow_operations.is_empty())
                    .then(|| settings.allow_operations.clone()),
                allowed_objects: (!settings.allow_objects.is_empty())
                    .then(|| settings.allow_objects.clone()),
                required_roles: roles(&settings.require_roles)?,
                writes_enabled: settings.writes_enabled.unwrap_or(false),
                limits: limits(&settings, None),
                egress: settings.egress.clone(),
                queries_per_minute: settings.queries_per_minute.filter(|n| *n > 0),
                accept_read_routes: settings.accept_read_routes.unwrap_or(false),
                approval: approval_policy(&settings, None)?.unwrap_or_default(),
                data: data_policy(&settings, None, cp.settings().cache_default_ttl)?
                    .unwrap_or_default(),
            };
            cp.connection_create(&principal, spec).await.map(|view| {
                if who.json {
                    return print_json(&view);
                }
                let mode = if view.record.writes_enabled {
                    "writes enabled"
                } else {
                    "read-only"
                };
                println!(
                    "connection {} created ({} {}, {mode})",
                    view.record.name,
                    view.record.connector,
                    view.record.connector_version.as_deref().unwrap_or("latest")
                );
            })
        }
        ConnectionCommand::List => cp.connection_list(&principal).await.map(|list| {
            if who.json {
                return print_json(&list);
            }
            let rows = list
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.connector.clone(),
                        c.connector_version
                            .clone()
                            .unwrap_or_else(|| "latest".into()),
                        c.status.to_string(),
                        if c.writes_enabled { "yes" } else { "no" }.into(),
                        when(c.last_test_at),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "name",
                        "connector",
                        "version",
                        "status",
                        "writes",
                        "last test"
                    ],
                    rows
                )
            );
        }),
        ConnectionCommand::Show { name } => cp
            .connection_show(&principal, &name)
            .await
            .map(|view| print_json(&view)),
        ConnectionCommand::Update {
            name,
            version,
            settings,
        } => {
            let current_limits = if settings.deadline_ms.is_some() || settings.memory_mib.is_some()
            {
                let shown = cp.connection_show(&principal, &name).await;
                match shown {
                    Ok(view) => serde_json::from_value(view.record.limits.clone()).ok(),
                    Err(e) => return Ok(report_error(&e)),
                }
            } else {
                None
            };
            let (current_approval, current_data) = if !settings.risks.is_empty()
                || settings.approval_from.is_some()
                || settings.dry_run.is_some()
                || data_flags(&settings)
            {
                match cp.connection_show(&principal, &name).await {
                    Ok(view) => (
                        Some(
                            airlock::control::policies::ApprovalPolicy::from_value(
                                &view.record.approval_policy,
                            )
                            .map_err(|e| anyhow::anyhow!("stored approval policy: {e}"))?,
                        ),
                        Some(
                            airlock::control::shaping::DataPolicy::from_value(
                                &view.record.data_policy,
                            )
                            .map_err(|e| anyhow::anyhow!("stored data policy: {e}"))?,
                        ),
                    ),
                    Err(e) => return Ok(report_error(&e)),
                }
            } else {
                (None, None)
            };
            let update = ConnectionUpdate {
                version: version.map(|v| (v != "latest").then_some(v)),
                config: settings
                    .config
                    .as_deref()
                    .map(|t| parse_json("--config", t))
                    .transpose()?,
                allowed_operations: (!settings.allow_operations.is_empty())
                    .then(|| Some(settings.allow_operations.clone())),
                allowed_objects: (!settings.allow_objects.is_empty())
                    .then(|| Some(settings.allow_objects.clone())),
                required_roles: (!settings.require_roles.is_empty())
                    .then(|| roles(&settings.require_roles))
                    .transpose()?,
                writes_enabled: settings.writes_enabled,
                limits: limits(&settings, current_limits),
                queries_per_minute: settings.queries_per_minute.map(|n| (n > 0).then_some(n)),
                accept_read_routes: settings.accept_read_routes,
                approval: approval_policy(&settings, current_approval)?,
                data: data_policy(&settings, current_data, cp.settings().cache_default_ttl)?,
                egress: if settings.clear_egress {
                    Some(Vec::new())
                } else {
                    (!settings.egress.is_empty()).then(|| settings.egress.clone())
                },
            };
            cp.connection_update(&principal, &name, update)
                .await
                .map(|view| {
                    if who.json {
                        return print_json(&view);
                    }
                    println!(
                        "connection {} updated (revision {})",
                        view.record.name, view.record.revision
                    );
                })
        }
        ConnectionCommand::Enable { name } => cp
            .connection_set_enabled(&principal, &name, true)
            .await
            .map(|r| println!("connection {}: {}", r.name, r.status)),
        ConnectionCommand::Disable { name } => cp
            .connection_set_enabled(&principal, &name, false)
            .await
            .map(|r| println!("connection {}: {}", r.name, r.status)),
        ConnectionCommand::Test { name } => match cp.connection_test(&principal, &name).await {
            Ok(report) => {
                if who.json {
                    print_json(&report);
                } else {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report).expect("serializable")
                    );
                }
                flush(cp).await;
                return Ok(if report.ok {
                    EXIT_OK
                } else {
                    crate::cli::EXIT_ERROR
                });
            }
            Err(e) => Err(e),
        },
        ConnectionCommand::Grant {
            name,
            to_agent,
            operation,
        } => cp
            .connection_grant(&principal, &name, &to_agent, &operation, false)
            .await
            .map(|()| println!("agent {to_agent} may invoke {operation} on {name}")),
        ConnectionCommand::Revoke {
            name,
            from_agent,
            operation,
        } => cp
            .connection_grant(&principal, &name, &from_agent, &operation, true)
            .await
            .map(|()| println!("agent {from_agent} may no longer invoke {operation} on {name}")),
    };
    flush(cp).await;
    Ok(match result {
        Ok(()) => EXIT_OK,
        Err(e) => report_error(&e),
    })
}
