//! The `airlock` command line.
//!
//! Exit codes, as in the seeds: 0 success, 1 error, 2 denied by policy.

use airlock::cache::LoadSource;
use airlock::capability::config::ConfigCtx;
use airlock::capability::keyvalue::{KeyValueStore, MemoryStore, SqliteStore};
use airlock::error::InvokeError;
use airlock::executor::{Call, Caller, Connector, Environment, Executor, ExecutorOptions};
use airlock::limits::Limits;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_DENIED: u8 = 2;

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "Run connectors as sandboxed WebAssembly components"
)]
struct Cli {
    /// Where Airlock keeps its embedded store (airlock.db) and compiled-component cache.
    #[arg(long, global = true, env = "AIRLOCK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    identity: control::Identity,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a component's manifest, imports, size and digest.
    Inspect {
        component: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run one operation of a component.
    Run {
        component: PathBuf,
        operation: String,
        /// The operation's params, a JSON object.
        #[arg(long, default_value = "{}")]
        params: String,
        #[command(flatten)]
        invocation: InvocationArgs,
    },
    /// Without a component: calls, errors, p50/p95/p99 and health (healthy, degraded, down) per
    /// connection and operation. With one: run that component's connection test (`health`).
    Health {
        component: Option<PathBuf>,
        /// How many of the tenant's newest audit records to summarize.
        #[arg(long, default_value_t = 10_000)]
        window: i64,
        #[command(flatten)]
        invocation: InvocationArgs,
    },
    /// List the objects a component exposes (`discover`).
    Discover {
        component: PathBuf,
        #[command(flatten)]
        invocation: InvocationArgs,
    },
    /// Manage the connector registry.
    #[command(subcommand)]
    Connector(control::ConnectorCommand),
    /// Manage this tenant's connections.
    #[command(subcommand)]
    Connection(control::ConnectionCommand),
    /// Manage connections' credentials (injected by the host, never seen by connectors).
    #[command(subcommand)]
    Credential(control::CredentialCommand),
    /// Invoke an operation on one of this tenant's connections.
    Invoke {
        connection: String,
        operation: String,
        /// The operation's params, a JSON object.
        #[arg(long, default_value = "{}")]
        params: String,
        /// Why, for the approver when the operation's risk needs one.
        #[arg(long)]
        rationale: Option<String>,
    },
    /// Requests waiting for approval: list, show, approve, deny, wait.
    #[command(subcommand)]
    Approvals(control::ApprovalsCommand),
    /// Read this tenant's audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print a new random master key (base64) for AIRLOCK_MASTER_KEY or a key file.
    Keygen,
    /// Master keys: print a key's id, rotate to a new key.
    #[command(subcommand)]
    Keys(control::KeysCommand),
    /// API tokens for the HTTP API and MCP: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(control::TokenCommand),
    /// Serve the HTTP API for every tenant, with the control plane's background work (approved
    /// requests run, expired ones expired, the audit flushed), until SIGINT or SIGTERM.
    Serve {
        /// The address to listen on; port 0 picks a free one (the address is printed).
        #[arg(long, env = "AIRLOCK_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Serve MCP over stdio for a local agent: its tools are the operations it may call. The
    /// caller is the API token in AIRLOCK_TOKEN if set (an agent's token: exactly its grants),
    /// else --tenant with --agent or --user and --role.
    Mcp {
        /// An API token (`alk_...`) naming the caller; it is checked like a bearer token.
        #[arg(long, env = "AIRLOCK_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Walk through Airlock with the sandbox connector and a misbehaving guest.
    Demo {
        /// Directory holding the built guest components (sandbox.wasm, spin_loop.wasm...).
        #[arg(
            long,
            env = "AIRLOCK_GUEST_DIR",
            default_value = "target/wasm32-wasip2/release"
        )]
        guests: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The newest records, oldest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Check the hash chain and the signed checkpoints; exits 3 at the first bad record.
    Verify {
        /// A checkpoint kept outside the database (the JSON `audit checkpoint` printed, or a
        /// file holding it); may be repeated.
        #[arg(long)]
        checkpoint: Vec<String>,
    },
    /// The tenant's records as JSON lines (with their sequence numbers and hashes).
    Export {
        /// From this time: RFC 3339 (`2026-11-22T08:00:00Z`) or an age (`24h`, `7days`).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (exclusive), in the same forms; default now.
        #[arg(long)]
        until: Option<String>,
    },
    /// Sign a checkpoint now and print it, to keep outside the database.
    Checkpoint,
}

/// Settings of a bare run (no control plane): the identity comes from the global flags.
#[derive(Args)]
struct InvocationArgs {
    /// The connection whose storage the invocation uses; defaults to the connector's id.
    #[arg(long)]
    connection: Option<String>,
    /// The connection's non-secret config, a JSON object.
    #[arg(long, default_value = "{}")]
    config: String,
    /// Let the component reach this destination, `scheme://host[:port][/path]` (repeatable).
    #[arg(long)]
    egress: Vec<String>,
    /// Keep key-value data in memory for this run only, instead of the embedded store.
    #[arg(long)]
    ephemeral: bool,
    /// Wall-clock deadline in milliseconds.
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Memory limit in MiB.
    #[arg(long)]
    memory_mib: Option<usize>,
}

/// Entry point of the `airlock` binary.
pub fn main() -> ExitCode {
    // clap exits with 2 on a usage error; here 2 means "denied by policy", so a usage error is 1.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { EXIT_OK });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e),
    }
}

/// Prints an error that ended a command, with the command that would repair it when the core
/// says what would.
fn fail(error: &anyhow::Error) -> ExitCode {
    use airlock::remedy::Remedied;
    let remedy = error
        .downcast_ref::<airlock::control::ControlError>()
        .and_then(|e| e.remedy())
        .or_else(|| {
            error
                .downcast_ref::<airlock::control::vault::VaultError>()
                .and_then(|e| e.remedy())
        })
        .or_else(|| {
            error
                .downcast_ref::<airlock::control::keys::RotationError>()
                .and_then(|e| e.remedy())
        });
    say(
        "error",
        &remedy::with_hint(&format_args!("{error:#}"), remedy.as_ref()),
    );
    ExitCode::from(EXIT_ERROR)
}

/// Prints `label: text` to stderr with every line escaped (see `control::audit::escape`): names
/// in a message come from users, guests and upstreams, and an ESC, CR or OSC sequence in one
/// must not rewrite the operator's terminal or forge a line.
pub(crate) fn say(label: &str, text: &dyn std::fmt::Display) {
    let text = text.to_string();
    let mut lines = text
        .split('\n')
        .map(airlock::control::audit::escape_for_terminal);
    let first = lines.next().unwrap_or_default();
    let mut out = format!("{label}: {first}");
    for line in lines {
        out.push('\n');
        out.push_str(&line);
    }
    eprintln!("{out}");
}

/// The data directory: `--data-dir`, `$AIRLOCK_DATA_DIR`, else `$XDG_DATA_HOME/airlock` or
/// `~/.local/share/airlock`.
fn data_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
        return Ok(PathBuf::from(xdg).join("airlock"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/airlock")),
        None => anyhow::bail!("no data directory: pass --data-dir or set AIRLOCK_DATA_DIR"),
    }
}

fn executor(data_dir: &Path) -> anyhow::Result<Executor> {
    Executor::new(ExecutorOptions {
        cache_dir: Some(data_dir.join("cache")),
        ..Default::default()
    })
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let data_dir = data_dir(cli.data_dir)?;
    let who = cli.identity;
    match cli.command {
        Command::Inspect { component, json } => {
            let executor = executor(&data_dir)?;
            let connector = executor.load_file(&component).await?;
            print_inspection(&component, &connector, json);
            Ok(EXIT_OK)
        }
        Command::Run {
            component,
            operation,
            params,
            invocation,
        } => match airlock::params::Params::parse(params) {
            Ok(params) => {
                call(
                    &data_dir,
                    &component,
                    &who,
                    invocation,
                    Call::Invoke { operation, params },
                )
                .await
            }
            Err(e) => Ok(report_invoke_error(&e)),
        },
        Command::Health {
            component: Some(component),
            invocation,
            ..
        } => call(&data_dir, &component, &who, invocation, Call::Health).await,
        Command::Discover {
            component,
            invocation,
        } => call(&data_dir, &component, &who, invocation, Call::Discover).await,
        Command::Demo { guests } => crate::cli::demo::run(&data_dir, &guests).await,
        Command::Keygen => {
            println!("{}", airlock::control::vault::generate_key());
            Ok(EXIT_OK)
        }
        Command::Keys(control::KeysCommand::Id { key_file }) => {
            control::keys_id(&who, key_file.as_deref())
        }
        Command::Serve { listen } => {
            let vault = airlock::settings::vault_from_env()?;
            let cp = Arc::new(control::open(&data_dir, vault).await?);
            serve(cp, listen).await
        }
        Command::Mcp { token } => {
            let vault = airlock::settings::vault_from_env()?;
            let cp = Arc::new(control::open(&data_dir, vault).await?);
            mcp_stdio(cp, &who, token).await
        }
        command => {
            // Everything else goes through the control plane, which needs the master key.
            let vault = airlock::settings::vault_from_env()?;
            let cp = control::open(&data_dir, vault).await?;
            let code = control_command(&cp, &who, command).await;
            // Records the store refused are spooled (or printed) now, never dropped at exit.
            let closed = control::close(&cp).await;
            code.map(|code| code.max(closed))
        }
    }
}

/// `airlock serve`: the API until a signal, then a graceful stop: no new connections, requests in
/// flight finished, background work stopped after its round, the audit stored or spooled.
async fn serve(
    cp: Arc<airlock::control::ControlPlane>,
    listen: std::net::SocketAddr,
) -> anyhow::Result<u8> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} ({e}); pass another --listen"))?;
    let bound = listener.local_addr()?;
    let background = cp.start_background(std::time::Duration::from_secs(1));
    // On stdout, alone: a script (or a test) started with port 0 reads where to connect.
    println!("listening on http://{bound}");
    eprintln!("airlock: serving the API on http://{bound} (SIGINT or SIGTERM stops it)");
    let served = airlock_server::serve(listener, cp.clone(), stop_signal()).await;
    eprintln!("airlock: stopping: requests in flight finished, storing the audit");
    background.shutdown().await;
    let closed = control::close(&cp).await;
    served.map_err(|e| anyhow::anyhow!("serving failed: {e}"))?;
    Ok(closed)
}

/// MCP over stdin and stdout until the client closes them. Approved requests left unstarted
/// are run by the background work, as under `serve`.
async fn mcp_stdio(
    cp: Arc<airlock::control::ControlPlane>,
    who: &control::Identity,
    token: Option<String>,
) -> anyhow::Result<u8> {
    let principal = match token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(token) => cp
            .authenticate(Some(token), "stdio")
            .await
            .map_err(|e| anyhow::anyhow!("AIRLOCK_TOKEN: {e}"))?,
        None => who.principal()?,
    };
    let background = cp.start_background(std::time::Duration::from_secs(1));
    let served = airlock_server::mcp::serve_stdio(cp.clone(), principal)
        .await
        .map_err(anyhow::Error::msg);
    background.shutdown().await;
    let closed = control::close(&cp).await;
    served?;
    Ok(closed)
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

async fn control_command(
    cp: &airlock::control::ControlPlane,
    who: &control::Identity,
    command: Command,
) -> anyhow::Result<u8> {
    match command {
        Command::Connector(c) => control::connector(cp, who, c).await,
        Command::Connection(c) => control::connection(cp, who, c).await,
        Command::Credential(c) => control::credential(cp, who, c).await,
        Command::Invoke {
            connection,
            operation,
            params,
            rationale,
        } => {
            control::invoke(
                cp,
                who,
                &connection,
                &operation,
                &params,
                rationale.as_deref(),
            )
            .await
        }
        Command::Approvals(c) => control::approvals(cp, who, c).await,
        Command::Token(c) => control::token(cp, who, c).await,
        Command::Keys(control::KeysCommand::Rotate {
            new_key_file,
            batch_size,
            skip_unreadable,
        }) => control::keys_rotate(cp, who, &new_key_file, batch_size, skip_unreadable).await,
        Command::Audit(AuditCommand::List { limit }) => control::audit(cp, who, limit).await,
        Command::Audit(AuditCommand::Verify { checkpoint }) => {
            control::audit_verify(cp, who, &checkpoint).await
        }
        Command::Audit(AuditCommand::Export { since, until }) => {
            control::audit_export(cp, who, since.as_deref(), until.as_deref()).await
        }
        Command::Audit(AuditCommand::Checkpoint) => control::audit_checkpoint(cp, who).await,
        Command::Health {
            component: None,
            window,
            ..
        } => control::health(cp, who, window).await,
        _ => unreachable!("handled above"),
    }
}

async fn call(
    data_dir: &Path,
    component: &Path,
    who: &control::Identity,
    args: InvocationArgs,
    call: Call,
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let executor = executor(data_dir)?;
    let connector = executor.load_file(component).await?;
    let config: serde_json::Value = serde_json::from_str(&args.config).map_err(|e| {
        anyhow::anyhow!(
            "--config is not valid JSON ({e}); pass an object such as '{{\"latency_ms\": 10}}'"
        )
    })?;
    let limits = Limits::with_overrides(
        Limits::default(),
        args.deadline_ms,
        args.memory_mib,
        executor.memory_ceiling(),
    )
    .map_err(|problems| anyhow::anyhow!("{}", problems.join("; ")))?;
    let keyvalue: Arc<dyn KeyValueStore> = if args.ephemeral {
        Arc::new(MemoryStore::new())
    } else {
        std::fs::create_dir_all(data_dir)?;
        Arc::new(SqliteStore::open(&data_dir.join("airlock.db")).await?)
    };
    let env = Environment {
        config: ConfigCtx::from_json(&config).map_err(anyhow::Error::msg)?,
        keyvalue,
        limits,
        egress: airlock::egress::Egress {
            resilience: Arc::new(airlock::settings::Settings::from_env().resilience),
            ..airlock::egress::Egress::from_grants(&args.egress)
                .map_err(|p| anyhow::anyhow!(p.join("\n")))?
        },
    };
    let caller = Caller {
        tenant: principal.tenant,
        principal: principal.id,
        role: principal.role,
        connection: args
            .connection
            .unwrap_or_else(|| connector.manifest.id.clone()),
    };
    Ok(report(executor.call(&connector, &caller, &env, call).await))
}

/// Prints an outcome: its JSON on stdout, denials that did not stop it as warnings.
pub(crate) fn report_outcome(outcome: &airlock::executor::Outcome) -> u8 {
    for denial in &outcome.denials {
        say(
            "warning",
            &remedy::with_hint(denial, denial.remedy.as_ref()),
        );
    }
    println!("{}", pretty(&outcome.output));
    // What the control plane did to the result, on stderr so stdout stays the JSON.
    let mut notes = Vec::new();
    if let Some(c) = outcome.classification {
        notes.push(format!(
            "classification {}",
            format!("{c:?}").to_lowercase()
        ));
    }
    if outcome.masked > 0 {
        notes.push(format!("{} value(s) masked", outcome.masked));
    }
    if outcome.cached {
        notes.push("from the cache".to_owned());
    }
    if !notes.is_empty() {
        eprintln!("({})", notes.join("; "));
    }
    EXIT_OK
}

/// Prints an invocation error and returns its exit code.
pub(crate) fn report_invoke_error(e: &InvokeError) -> u8 {
    match e {
        InvokeError::Denied {
            denial,
            guest_error,
        } => {
            say("denied", &remedy::with_hint(denial, denial.remedy.as_ref()));
            if let Some(guest_error) = guest_error {
                say("  the connector then failed with", guest_error);
            }
        }
        other => say("error", other),
    }
    if e.exit_code() == 2 {
        EXIT_DENIED
    } else {
        EXIT_ERROR
    }
}

fn report(result: Result<airlock::executor::Outcome, InvokeError>) -> u8 {
    match result {
        Ok(outcome) => report_outcome(&outcome),
        Err(e) => report_invoke_error(&e),
    }
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_owned())
}

fn print_inspection(path: &Path, connector: &Connector, json: bool) {
    let m = &connector.manifest;
    let source = match connector.load_source {
        LoadSource::Compiled => "compiled",
        LoadSource::Cache => "loaded from cache",
    };
    if json {
        let value = serde_json::json!({
            "path": path.display().to_string(),
            "digest": format!("sha256:{}", connector.digest),
            "size": connector.size,
            "load": {"source": connector.load_source, "ms": connector.load_time.as_secs_f64() * 1000.0},
            "imports": connector.imports,
            "manifest": m.as_ref(),
        });
        println!("{}", serde_json::to_string_pretty(&value).expect("json"));
        return;
    }
    println!("{} {} ({})", m.name, m.version, m.id);
    println!("  {}", m.description);
    println!("file      {}", path.display());
    println!("digest    sha256:{}", connector.digest);
    println!("size      {} bytes", connector.size);
    println!(
        "load      {source} in {:.1} ms",
        connector.load_time.as_secs_f64() * 1000.0
    );
    println!("operations");
    for op in &m.operations {
        println!(
            "  {:<12} {:<5} risk={:<8} class={:<12} {}",
            op.name,
            op.access.to_string(),
            format!("{:?}", op.risk).to_lowercase(),
            format!("{:?}", op.classification).to_lowercase(),
            op.description
        );
    }
    if !m.hosts.is_empty() {
        println!("hosts     {}", m.hosts.join(", "));
    }
    if m.prototype {
        println!(
            "prototype writes are dry runs unless the connection or DRY_RUN=false says otherwise"
        );
    }
    println!("imports");
    for import in &connector.imports {
        println!("  {import}");
    }
}

mod control;
mod demo;
mod remedy;
