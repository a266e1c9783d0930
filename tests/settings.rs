//! Settings are a value (issue 10): two control planes built with different settings run side by
//! side in one process, each with its own, and nothing reads the environment below the root.

use crate::common::*;
use crate::http_server::TestServer;
use airlock::Role;
use airlock::control::state::{SqliteState, now_ms};
use airlock::control::{ConnectionSpec, ControlError, ControlPlane};
use airlock::egress::resilience::{BreakerPolicy, Resilience, RetryPolicy};
use airlock::settings::Settings;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

async fn plane(dir: &std::path::Path, settings: Settings) -> ControlPlane {
    let state = Arc::new(SqliteState::open(&dir.join("airlock.db")).await.unwrap());
    let vault = airlock::control::vault::Vault::from_base64(
        &airlock::control::vault::generate_key(),
        "test",
    )
    .unwrap();
    let keyvalue = Arc::new(state.keyvalue());
    ControlPlane::with_settings(state, Arc::new(executor()), vault, keyvalue, settings)
}

fn resilience(attempts: u32) -> Resilience {
    Resilience {
        retry: RetryPolicy {
            max_attempts: attempts,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        },
        breaker: BreakerPolicy {
            failures_to_open: 100,
            cooldown: Duration::from_secs(60),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_two_control_planes_keep_their_own_settings_in_one_process() {
    let api = TestServer::start(503, "busy").await;
    let origin = format!("http://127.0.0.1:{}", api.port);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = plane(
        dir_a.path(),
        Settings {
            approval_timeout: Duration::from_secs(30),
            dry_run: false,
            resilience: resilience(1),
            ..Settings::default()
        },
    )
    .await;
    let b = plane(
        dir_b.path(),
        Settings {
            approval_timeout: Duration::from_secs(3600),
            dry_run: true,
            resilience: resilience(3),
            ..Settings::default()
        },
    )
    .await;
    let admin = principal("acme", Role::Admin);
    let operator = principal("acme", Role::Operator);
    for cp in [&a, &b] {
        for connector in ["mail", "egress-probe"] {
            register(cp, "acme", connector).await;
        }
        for (name, connector, config) in [
            (
                "mail",
                "mail",
                json!({"api_base": format!("{origin}/v1.0")}),
            ),
            ("api", "egress-probe", json!({})),
        ] {
            cp.connection_create(
                &admin,
                ConnectionSpec {
                    name: name.into(),
                    connector: connector.into(),
                    config,
                    egress: vec![origin.clone()],
                    writes_enabled: true,
                    ..ConnectionSpec::default()
                },
            )
            .await
            .unwrap();
        }
    }

    // Retries: one attempt in A, three in B, against the same always-busy upstream.
    let fetch = json!({"url": format!("{origin}/x")}).to_string();
    a.invoke(&operator, "api", "fetch", &fetch).await.unwrap();
    assert_eq!(api.seen().len(), 1, "A makes one attempt");
    b.invoke(&operator, "api", "fetch", &fetch).await.unwrap();
    assert_eq!(api.seen().len(), 4, "B makes three");

    // Dry run: the prototype mail connector's send is a dry run in B only (where it answers at
    // once; in A it is sent, needs approval as a medium-risk write, and waits).
    let mail = json!({"to": ["ada@example.com"], "subject": "s", "body": "b"}).to_string();
    let dry = b
        .invoke(&operator, "mail", "send_mail", &mail)
        .await
        .unwrap();
    assert!(dry.output.contains("\"dry_run\":true"), "{}", dry.output);
    assert_eq!(api.seen().len(), 4, "B's dry run sent nothing");

    // Approval timeouts: each request expires after its own plane's timeout.
    let ticket = |e: ControlError| match e {
        ControlError::Pending(t) => t,
        other => panic!("expected a pending approval, got {other}"),
    };
    let in_a = ticket(
        a.invoke(&operator, "mail", "send_mail", &mail)
            .await
            .unwrap_err(),
    );
    let wait_a = in_a.expires_at - now_ms();
    assert!((25_000..=30_000).contains(&wait_a), "{wait_a} ms in A");
    let send = json!({"url": format!("{origin}/y"), "method": "POST"}).to_string();
    let in_b = ticket(b.invoke(&operator, "api", "send", &send).await.unwrap_err());
    let wait_b = in_b.expires_at - now_ms();
    assert!(
        (3_595_000..=3_600_000).contains(&wait_b),
        "{wait_b} ms in B"
    );
    assert_eq!(a.settings().approval_timeout, Duration::from_secs(30));
    assert_eq!(b.settings().approval_timeout, Duration::from_secs(3600));
}

/// Every source file of the library (the host and the control plane; the command is a crate of
/// its own in runtime/cli), with its path relative to the repository.
fn core_sources() -> Vec<(String, String)> {
    let mut sources = Vec::new();
    let mut dirs = vec![root().join("runtime/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root()).unwrap().display().to_string();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            sources.push((relative, std::fs::read_to_string(&path).unwrap()));
        }
    }
    sources
}

/// Nothing below the settings module and the binaries reads the environment.
#[test]
fn settings_no_environment_read_below_the_root() {
    let mut offenders = Vec::new();
    for (relative, text) in core_sources() {
        if relative == "runtime/src/settings.rs" {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("env::var") || code.contains("env::vars") {
                offenders.push(format!("{relative}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "read settings through crate::settings::Settings: {offenders:#?}"
    );
}

/// The core is front-end neutral: no message (nor comment) in the host or the control plane
/// names a CLI command; a remedy is data (`airlock::remedy::Remedy`) that each front end words.
#[test]
fn settings_no_command_line_text_in_the_core() {
    let mut offenders = Vec::new();
    for (relative, text) in core_sources() {
        for (i, line) in text.lines().enumerate() {
            // `airlock:connector/...` (WIT) and `airlock::...` (Rust paths) are not commands.
            let commands = line
                .match_indices("airlock ")
                .filter(|(at, _)| line[at + 8..].starts_with(|c: char| c.is_ascii_lowercase()));
            // A CLI flag (`--egress`) inside a string literal is command-line wording too.
            let quoted = match (line.find('"'), line.rfind('"')) {
                (Some(a), Some(b)) if b > a => &line[a..b],
                _ => "",
            };
            let flag = [" --", "(--", "`--"].iter().any(|p| {
                quoted.match_indices(p).any(|(at, _)| {
                    quoted[at + p.len()..].starts_with(|c: char| c.is_ascii_lowercase())
                })
            });
            if commands.count() > 0 || flag {
                offenders.push(format!("{relative}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "put the remedy in a crate::remedy::Remedy and word it in cli/remedy.rs: {offenders:#?}"
    );
}

/// The library links nothing only a terminal needs: the command is its own crate
/// (runtime/cli), and an embedder (a server, a test harness) gets no clap, tables or progress
/// bars.
#[test]
fn settings_the_library_links_no_command_line_dependencies() {
    let manifest = std::fs::read_to_string(root().join("runtime/Cargo.toml")).unwrap();
    let manifest: toml_like::Sections = toml_like::sections(&manifest);
    let deps = manifest
        .get("dependencies")
        .expect("a [dependencies] table");
    for cli_only in ["clap", "comfy-table", "indicatif", "tracing-subscriber"] {
        assert!(
            !deps
                .iter()
                .any(|line| line.split(['.', ' ', '=']).next() == Some(cli_only)),
            "runtime/Cargo.toml depends on {cli_only}; put it in runtime/cli/Cargo.toml"
        );
    }
    assert!(!root().join("runtime/src/cli.rs").exists());
}

/// The host (executor, capabilities, policy, egress) does not reach up into the control plane:
/// only the root's settings module, which builds the vault for the binaries, names it.
#[test]
fn settings_the_host_does_not_reach_into_the_control_plane() {
    let mut offenders = Vec::new();
    for (relative, text) in core_sources() {
        if relative.starts_with("runtime/src/control/")
            || ["runtime/src/lib.rs", "runtime/src/settings.rs"].contains(&relative.as_str())
        {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("control::") {
                offenders.push(format!("{relative}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

/// Just enough of TOML to find a table's lines.
mod toml_like {
    pub type Sections = std::collections::HashMap<String, Vec<String>>;
    pub fn sections(text: &str) -> Sections {
        let mut all = Sections::new();
        let mut current = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = name.trim_matches(['[', ']']).to_owned();
            } else if !line.is_empty() && !line.starts_with('#') {
                all.entry(current.clone())
                    .or_default()
                    .push(line.to_owned());
            }
        }
        all
    }
}

/// The composition root is the library's (issue 10): a control plane over the embedded store
/// in a data directory, with its settings, started and stopped with its background work and
/// closed with every audit record stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_the_embedded_store_opens_runs_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let vault = airlock::control::vault::Vault::from_base64(
        &airlock::control::vault::generate_key(),
        "test",
    )
    .unwrap();
    let settings = Settings {
        cache_max_entries_per_tenant: 7,
        ..Settings::default()
    };
    let cp = Arc::new(
        ControlPlane::open_embedded(dir.path(), vault, settings)
            .await
            .unwrap(),
    );
    assert_eq!(cp.settings().cache_max_entries_per_tenant, 7);
    assert!(dir.path().join("airlock.db").exists());
    let background = cp.start_background(Duration::from_millis(20));
    register(&cp, "acme", "sandbox").await;
    background.shutdown().await;
    assert_eq!(cp.shutdown().await, airlock::control::audit::Closed::Stored);
    assert!(
        !dir.path().join("audit-spool").exists()
            || std::fs::read_dir(dir.path().join("audit-spool"))
                .unwrap()
                .next()
                .is_none(),
        "nothing spooled from a healthy store"
    );
}
