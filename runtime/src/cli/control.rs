//! The control-plane commands: `connector`, `connection`, `invoke`, `audit`, `keygen`.

use super::{EXIT_OK, report_invoke_error, report_outcome};
use crate::capability::keyvalue::KeyValueStore;
use crate::control::state::SqliteState;
use crate::control::vault::Vault;
use crate::control::{
    ConnectionSpec, ConnectionUpdate, ControlError, ControlPlane, Principal, PrincipalKind,
};
use crate::executor::{Executor, ExecutorOptions};
use crate::invocation::Role;
use crate::limits::Limits;
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
        crate::invocation::validate_id("tenant", &tenant).map_err(anyhow::Error::msg)?;
        let (id, kind) = match (&self.agent, &self.user) {
            (Some(agent), _) => (agent.clone(), PrincipalKind::Agent),
            (None, Some(user)) => (user.clone(), PrincipalKind::User),
            (None, None) => (
                std::env::var("USER").unwrap_or_else(|_| "cli".into()),
                PrincipalKind::User,
            ),
        };
        crate::invocation::validate_id("principal", &id).map_err(anyhow::Error::msg)?;
        Ok(Principal {
            tenant,
            id,
            kind,
            role: self.role.unwrap_or(Role::Viewer),
        })
    }
}

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

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CredentialKind {
    /// Authorization: Bearer <secret>
    Bearer,
    /// Authorization: Basic base64(username:secret)
    Basic,
    /// <header>: <secret>
    Header,
    /// ?<param>=<secret>
    Query,
    /// OAuth2 client credentials: the secret is the client secret; tokens are fetched from
    /// --token-url and sent as Bearer
    Oauth2,
    /// Sign the request body: <header>: sha256=<hex HMAC-SHA256(secret, body)>
    Hmac,
    /// OAuth2 refresh token: the secret is the refresh token; rotated ones are stored
    Oauth2Refresh,
    /// OAuth2 JWT bearer (RFC 7523): the secret is a PEM private key; the host signs assertions
    /// for --issuer and trades them at --token-url
    Oauth2Jwt,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only obscure the flags"
)]
pub enum CredentialCommand {
    /// Store a credential for a connection; the secret is read from --value-file or stdin, never
    /// from the command line.
    Set {
        connection: String,
        name: String,
        #[arg(long, value_enum)]
        kind: CredentialKind,
        /// The hosts it may be sent to, as egress grants (repeatable).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// For --kind basic.
        #[arg(long)]
        username: Option<String>,
        /// For --kind header, e.g. X-Api-Key.
        #[arg(long)]
        header: Option<String>,
        /// For --kind query, e.g. api_key.
        #[arg(long)]
        param: Option<String>,
        /// For --kind oauth2: the token endpoint (under one of the --host grants).
        #[arg(long)]
        token_url: Option<String>,
        /// For --kind oauth2.
        #[arg(long)]
        client_id: Option<String>,
        /// For --kind oauth2 and oauth2-jwt, optional.
        #[arg(long)]
        scope: Option<String>,
        /// For --kind oauth2-jwt: the assertion's `iss` (client id, service account email).
        #[arg(long)]
        issuer: Option<String>,
        /// For --kind oauth2-jwt: the assertion's `sub` (the user acted for); default the issuer.
        #[arg(long)]
        subject: Option<String>,
        /// For --kind oauth2-jwt: the assertion's `aud`; default the token URL.
        #[arg(long)]
        audience: Option<String>,
        /// For --kind oauth2-jwt: the `kid` header naming the key to the provider.
        #[arg(long)]
        key_id: Option<String>,
        /// For --kind oauth2-jwt: RS256 (RSA key) or ES256 (P-256 key).
        #[arg(long, default_value = "RS256")]
        algorithm: String,
        /// Read the secret from this file instead of stdin.
        #[arg(long)]
        value_file: Option<PathBuf>,
    },
    /// Replace a credential's secret (from --value-file or stdin).
    Rotate {
        connection: String,
        name: String,
        #[arg(long)]
        value_file: Option<PathBuf>,
    },
    /// Show a connection's credentials: metadata only.
    List { connection: String },
    /// Remove a credential.
    Delete { connection: String, name: String },
}

/// The secret, from a file or stdin, without a trailing newline.
fn read_secret(file: Option<&Path>) -> anyhow::Result<zeroize::Zeroizing<String>> {
    use std::io::Read;
    let mut text = zeroize::Zeroizing::new(String::new());
    match file {
        Some(path) => {
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(|e| {
                    anyhow::anyhow!("cannot read the secret from {}: {e}", path.display())
                })?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("secret (then Enter, then Ctrl-D):");
            }
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| anyhow::anyhow!("cannot read the secret from stdin: {e}"))?;
        }
    }
    let trimmed = zeroize::Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned());
    Ok(trimmed)
}

pub async fn credential(
    cp: &ControlPlane,
    who: &Identity,
    command: CredentialCommand,
) -> anyhow::Result<u8> {
    use crate::egress::credential::Placement;
    let principal = who.principal()?;
    let show = |c: &crate::control::state::CredentialRecord| {
        format!(
            "{} ({}, version {}) for {}",
            c.name,
            c.kind,
            c.version,
            c.hosts.join(", ")
        )
    };
    let result = match command {
        CredentialCommand::Set {
            connection,
            name,
            kind,
            hosts,
            username,
            header,
            param,
            token_url,
            client_id,
            scope,
            issuer,
            subject,
            audience,
            key_id,
            algorithm,
            value_file,
        } => {
            let missing = |flag: &str| anyhow::anyhow!("--kind needs {flag}");
            let placement = match kind {
                CredentialKind::Bearer => Placement::Bearer,
                CredentialKind::Basic => Placement::Basic {
                    username: username.ok_or_else(|| missing("--username"))?,
                },
                CredentialKind::Header => Placement::Header {
                    header: header.ok_or_else(|| missing("--header"))?,
                },
                CredentialKind::Query => Placement::Query {
                    param: param.ok_or_else(|| missing("--param"))?,
                },
                CredentialKind::Oauth2Refresh => Placement::OAuth2RefreshToken {
                    token_url: token_url.ok_or_else(|| missing("--token-url"))?,
                    client_id: client_id.ok_or_else(|| missing("--client-id"))?,
                },
                CredentialKind::Hmac => Placement::HmacSha256 {
                    header: header.ok_or_else(|| missing("--header"))?,
                },
                CredentialKind::Oauth2Jwt => Placement::OAuth2JwtBearer {
                    token_url: token_url.ok_or_else(|| missing("--token-url"))?,
                    issuer: issuer.ok_or_else(|| missing("--issuer"))?,
                    subject,
                    audience,
                    scope,
                    key_id,
                    algorithm: crate::egress::jwt::Algorithm::parse(&algorithm)
                        .map_err(|e| anyhow::anyhow!("--algorithm: {e}"))?,
                },
                CredentialKind::Oauth2 => Placement::OAuth2ClientCredentials {
                    token_url: token_url.ok_or_else(|| missing("--token-url"))?,
                    client_id: client_id.ok_or_else(|| missing("--client-id"))?,
                    scope,
                },
            };
            let secret = read_secret(value_file.as_deref())?;
            cp.credential_set(&principal, &connection, &name, placement, hosts, secret)
                .await
                .map(|c| {
                    if who.json {
                        print_json(&c)
                    } else {
                        println!("credential {}", show(&c))
                    }
                })
        }
        CredentialCommand::Rotate {
            connection,
            name,
            value_file,
        } => {
            let secret = read_secret(value_file.as_deref())?;
            cp.credential_rotate(&principal, &connection, &name, secret)
                .await
                .map(|c| {
                    if who.json {
                        print_json(&c)
                    } else {
                        println!("credential rotated: {}", show(&c))
                    }
                })
        }
        CredentialCommand::List { connection } => cp
            .credential_list(&principal, &connection)
            .await
            .map(|list| {
                if who.json {
                    return print_json(&list);
                }
                let rows = list
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.kind.clone(),
                            c.hosts.join(", "),
                            c.version.to_string(),
                            when(c.rotated_at.or(Some(c.created_at))),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["name", "kind", "hosts", "version", "set"], rows)
                );
            }),
        CredentialCommand::Delete { connection, name } => cp
            .credential_delete(&principal, &connection, &name)
            .await
            .map(|()| println!("credential {name} deleted")),
    };
    flush(cp).await;
    Ok(match result {
        Ok(()) => EXIT_OK,
        Err(e) => report_error(&e),
    })
}

fn parse_json(flag: &str, text: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{flag} is not valid JSON ({e})"))
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

fn parse_risk(flag: &str, text: &str) -> anyhow::Result<crate::manifest::Risk> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_ascii_lowercase())).map_err(
        |_| anyhow::anyhow!("{flag}: unknown risk `{text}`; use low, medium, high or critical"),
    )
}

/// The approval policy from --risk and --approval-from, on top of `base`; `None` when neither
/// flag was given.
fn approval_policy(
    settings: &ConnectionSettings,
    base: Option<crate::control::approvals::ApprovalPolicy>,
) -> anyhow::Result<Option<crate::control::approvals::ApprovalPolicy>> {
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
    base: Option<crate::control::shaping::DataPolicy>,
) -> anyhow::Result<Option<crate::control::shaping::DataPolicy>> {
    use crate::control::shaping::Masking;
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
            crate::control::cache::default_ttl().as_secs() as u32
        } else {
            ttl.trim().parse().map_err(|_| {
                anyhow::anyhow!("--cache-ttl takes seconds (300), `default` or 0, got `{ttl}`")
            })?
        };
        policy.cache_ttl_s = (seconds > 0).then_some(seconds);
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
        limits.max_memory_bytes = mib << 20;
    }
    Some(limits)
}

/// Opens the control plane over the data directory's state store. Refuses without a master key.
pub async fn open(data_dir: &Path, vault: Vault) -> anyhow::Result<ControlPlane> {
    let state = Arc::new(SqliteState::open(&data_dir.join("airlock.db")).await?);
    let keyvalue: Arc<dyn KeyValueStore> = Arc::new(state.keyvalue());
    let executor = Arc::new(Executor::new(ExecutorOptions {
        cache_dir: Some(data_dir.join("cache")),
        ..Default::default()
    })?);
    Ok(ControlPlane::new(state, executor, vault, keyvalue))
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

/// The exit code for a control-plane error, after printing it.
pub fn report_error(e: &ControlError) -> u8 {
    match e {
        ControlError::Denied { .. } => eprintln!("denied: {e}"),
        ControlError::Pending(_) => eprintln!("pending: {e}"),
        ControlError::Invoke(inner) => return report_invoke_error(inner),
        ControlError::Invalid(problems) => {
            eprintln!("error: invalid input:");
            for p in problems {
                eprintln!("  - {p}");
            }
        }
        other => eprintln!("error: {other}"),
    }
    e.exit_code()
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
) -> crate::control::Result<()> {
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
                data: data_policy(&settings, None)?.unwrap_or_default(),
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
                        c.status.clone(),
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
                        Some(crate::control::approvals::ApprovalPolicy::from_value(
                            &view.record.approval_policy,
                        )),
                        Some(crate::control::shaping::DataPolicy::from_value(
                            &view.record.data_policy,
                        )),
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
                data: data_policy(&settings, current_data)?,
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
                    super::EXIT_ERROR
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

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Open requests (pending, approved, running); --all for every one.
    List {
        #[arg(long)]
        all: bool,
        /// Print only the ids of pending requests, one per line.
        #[arg(long, short)]
        quiet: bool,
    },
    /// One request: the exact action (secret-looking params redacted), its risk and status,
    /// and the output once it ran.
    Show { id: String },
    /// Approve a request; the action runs at once and its outcome is printed.
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a request, saying why.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Wait for a request's outcome (exit 0 ran, 1 failed or expired, 2 denied, 4 still pending).
    Wait {
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
    },
    /// Run approved requests a stopped process left unstarted.
    Resume,
}

fn show_approval(view: &crate::control::approvals::ApprovalView) -> u8 {
    let r = &view.record;
    let escape = crate::control::audit::escape;
    println!(
        "{} {} {}/{} ({} risk, approver {:?} or higher)",
        r.id, r.status, r.connection, r.operation, r.risk, view.approver
    );
    println!(
        "  requested by {} at {}",
        escape(&r.requested_by),
        when(Some(r.requested_at))
    );
    if let Some(rationale) = &r.rationale {
        println!("  rationale: {}", escape(rationale));
    }
    println!("  params: {}", view.params);
    if let Some(effects) = view.preview["effects"].as_array() {
        println!("  dry run: {} effect(s) it would have", effects.len());
        for effect in effects {
            println!("    {effect}");
        }
    }
    println!("  expires: {}", when(Some(r.expires_at)));
    if let Some(by) = &r.decided_by {
        println!(
            "  decided by {} at {}{}",
            escape(by),
            when(r.decided_at),
            r.reason
                .as_deref()
                .map(|why| format!(": {}", escape(why)))
                .unwrap_or_default()
        );
    }
    if let Some(output) = &view.output {
        println!("{output}");
    }
    if let Some(error) = &r.error {
        eprintln!("error: {error}");
    }
    match r.status.as_str() {
        "executed" => EXIT_OK,
        "denied" => 2,
        "pending" | "approved" | "executing" => 4,
        _ => 1,
    }
}

pub async fn approvals(
    cp: &ControlPlane,
    who: &Identity,
    command: ApprovalsCommand,
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    // Whatever a stopped process left approved but unstarted runs now, once.
    if let Err(e) = cp.approvals_resume().await {
        eprintln!("warning: could not resume approved requests: {e}");
    }
    let result = match command {
        ApprovalsCommand::List { all, quiet } => {
            cp.approvals_list(&principal, all).await.map(|views| {
                if quiet {
                    for v in views.iter().filter(|v| v.record.status == "pending") {
                        println!("{}", v.record.id);
                    }
                } else if who.json {
                    print_json(&views);
                } else {
                    let rows = views
                        .iter()
                        .map(|v| {
                            let r = &v.record;
                            vec![
                                r.id.clone(),
                                r.status.clone(),
                                format!("{}/{}", r.connection, r.operation),
                                r.risk.clone(),
                                crate::control::audit::escape(&r.requested_by),
                                when(Some(r.requested_at)),
                                when(Some(r.expires_at)),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "id",
                                "status",
                                "action",
                                "risk",
                                "requested by",
                                "at",
                                "expires"
                            ],
                            rows
                        )
                    );
                }
                EXIT_OK
            })
        }
        ApprovalsCommand::Show { id } => cp.approval_show(&principal, &id).await.map(|v| {
            if who.json {
                print_json(&v);
                EXIT_OK
            } else {
                show_approval(&v)
            }
        }),
        ApprovalsCommand::Approve { id, reason } => cp
            .approval_decide(&principal, &id, true, reason.as_deref())
            .await
            .map(|v| {
                if who.json {
                    print_json(&v);
                    return if v.record.status == "executed" {
                        EXIT_OK
                    } else {
                        1
                    };
                }
                show_approval(&v)
            }),
        ApprovalsCommand::Deny { id, reason } => cp
            .approval_decide(&principal, &id, false, Some(&reason))
            .await
            .map(|v| {
                if who.json {
                    print_json(&v);
                } else {
                    show_approval(&v);
                }
                EXIT_OK
            }),
        ApprovalsCommand::Wait { id, timeout_s } => cp
            .approval_wait(&principal, &id, Duration::from_secs(timeout_s))
            .await
            .map(|v| {
                if who.json {
                    print_json(&v);
                }
                show_approval(&v)
            }),
        ApprovalsCommand::Resume => cp.approvals_resume().await.map(|n| {
            println!("{n} approved request(s) run");
            EXIT_OK
        }),
    };
    flush(cp).await;
    Ok(match result {
        Ok(code) => code,
        Err(e) => report_error(&e),
    })
}

pub async fn health(cp: &ControlPlane, who: &Identity, window: i64) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let report = match cp.health(&principal, window).await {
        Ok(stats) => match cp.circuits(&principal).await {
            Ok(c) => cp
                .cache_stats(&principal)
                .await
                .map(|cache| (stats, c, cache)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match report {
        Ok((stats, circuits, cache)) => {
            if who.json {
                print_json(
                    &serde_json::json!({"operations": stats, "circuits": circuits, "cache": cache}),
                );
            } else {
                let rows = stats
                    .iter()
                    .map(|s| {
                        vec![
                            s.connection.clone(),
                            s.operation.clone(),
                            format!("{:?}", s.health).to_lowercase(),
                            s.calls.to_string(),
                            s.errors.to_string(),
                            s.denied.to_string(),
                            format!("{:.1}%", s.error_rate * 100.0),
                            format!("{:.1}", s.p50_ms),
                            format!("{:.1}", s.p95_ms),
                            format!("{:.1}", s.p99_ms),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &[
                            "connection",
                            "operation",
                            "health",
                            "calls",
                            "errors",
                            "denied",
                            "error rate",
                            "p50 ms",
                            "p95 ms",
                            "p99 ms"
                        ],
                        rows
                    )
                );
                for c in &cache.connections {
                    println!(
                        "cache {}: {} hit(s), {} miss(es) in this process",
                        c.connection, c.counts.hits, c.counts.misses
                    );
                }
                if !circuits.is_empty() {
                    let now = crate::control::state::now_ms();
                    let rows = circuits
                        .iter()
                        .map(|c| {
                            let left = (c.until_ms - now).max(0) / 1000;
                            vec![
                                c.connection.clone(),
                                c.origin.clone(),
                                c.state.clone(),
                                if c.state == "open" {
                                    format!("probe allowed in {left} s")
                                } else {
                                    "one probe in flight".into()
                                },
                            ]
                        })
                        .collect();
                    println!(
                        "circuit breakers not closed:\n{}",
                        table(&["connection", "origin", "state", "next"], rows)
                    );
                }
            }
            Ok(EXIT_OK)
        }
        Err(e) => Ok(report_error(&e)),
    }
}

/// Waits for the audit records to be stored; says so loudly when they cannot be.
async fn flush(cp: &ControlPlane) {
    if let Err(e) = cp.flush_audit().await {
        eprintln!("error: {e}");
    }
}

pub async fn audit(cp: &ControlPlane, who: &Identity, limit: i64) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    match cp.audit_list(&principal, limit).await {
        Ok(records) => {
            if who.json {
                print_json(&records);
            } else {
                let rows = records
                    .iter()
                    .map(|r| {
                        use crate::control::audit::escape;
                        // Every field escaped: a value must not forge a line in this table.
                        vec![
                            when(Some(r.at)),
                            escape(&format!(
                                "{} ({}, {})",
                                r.principal, r.principal_kind, r.role
                            )),
                            escape(&r.action),
                            escape(&match &r.operation {
                                Some(op) => format!("{}/{op}", r.target),
                                None => r.target.clone(),
                            }),
                            escape(&r.outcome),
                            escape(&r.rule),
                            format!("{:.1} ms", r.duration_us as f64 / 1000.0),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &["when", "who", "action", "target", "outcome", "rule", "took"],
                        rows
                    )
                );
            }
            Ok(EXIT_OK)
        }
        Err(e) => Ok(report_error(&e)),
    }
}

/// A point in time from the command line: RFC 3339, or an age such as `24h` (that long ago).
fn parse_time(flag: &str, text: &str) -> anyhow::Result<i64> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text.trim()) {
        return Ok(at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64));
    }
    if let Ok(age) = humantime::parse_duration(text.trim()) {
        return Ok(crate::control::state::now_ms() - age.as_millis() as i64);
    }
    anyhow::bail!(
        "{flag} `{text}` is neither a time (2026-11-22T08:00:00Z) nor an age (24h, 7days)"
    )
}

pub async fn audit_verify(
    cp: &ControlPlane,
    who: &Identity,
    checkpoints: &[String],
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let mut extra = Vec::new();
    for given in checkpoints {
        let text = if given.trim_start().starts_with('{') {
            given.clone()
        } else {
            std::fs::read_to_string(given).map_err(|e| {
                anyhow::anyhow!("--checkpoint {given}: not JSON and not a readable file ({e})")
            })?
        };
        extra.push(serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "--checkpoint: not a checkpoint as `airlock audit checkpoint` prints it ({e})"
            )
        })?);
    }
    match cp.audit_verify(&principal, &extra).await {
        Ok(report) => {
            if who.json {
                print_json(&report);
            } else if let Some(problem) = &report.problem {
                println!(
                    "audit trail NOT intact: first bad record at position {}: {}",
                    problem.seq, problem.what
                );
            } else {
                println!(
                    "audit trail intact: {} records through {}, {} signed checkpoint(s){}{}",
                    report.records,
                    report.last_seq,
                    report.checkpoints,
                    if report.predating_chain > 0 {
                        format!(", {} record(s) predate the chain", report.predating_chain)
                    } else {
                        String::new()
                    },
                    if report.after_last_checkpoint > 0 {
                        format!(
                            ", {} record(s) after the newest checkpoint",
                            report.after_last_checkpoint
                        )
                    } else {
                        String::new()
                    }
                );
            }
            Ok(if report.problem.is_some() { 3 } else { EXIT_OK })
        }
        Err(e) => Ok(report_error(&e)),
    }
}

pub async fn audit_export(
    cp: &ControlPlane,
    who: &Identity,
    since: Option<&str>,
    until: Option<&str>,
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let since = since
        .map(|t| parse_time("--since", t))
        .transpose()?
        .unwrap_or(0);
    let until = until
        .map(|t| parse_time("--until", t))
        .transpose()?
        .unwrap_or(i64::MAX);
    match cp.audit_export(&principal, since, until).await {
        Ok(rows) => {
            use std::io::Write as _;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for row in rows {
                let record: serde_json::Value =
                    serde_json::from_str(&row.record).unwrap_or(serde_json::Value::Null);
                let line = serde_json::json!({
                    "seq": row.seq,
                    "prev_hash": row.prev_hash,
                    "hash": row.hash,
                    "record": record,
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            Ok(EXIT_OK)
        }
        Err(e) => Ok(report_error(&e)),
    }
}

pub async fn audit_checkpoint(cp: &ControlPlane, who: &Identity) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    match cp.audit_checkpoint(&principal).await {
        Ok(Some(c)) => {
            println!("{}", serde_json::to_string(&c)?);
            Ok(EXIT_OK)
        }
        Ok(None) => {
            eprintln!("no audit records yet, so nothing to vouch for");
            Ok(1)
        }
        Err(e) => Ok(report_error(&e)),
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
