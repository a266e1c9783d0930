//! The `airlock` binary: exit codes, messages, and a second process loading from the cache.

use crate::common;
use crate::http_server;

use airlock::control::state::stores::*;
use common::guest;
use std::process::Command;

pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn of(cmd: &mut Command) -> Run {
        let out = cmd.output().expect("run airlock");
        Run {
            code: out.status.code().expect("exit code"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn airlock(data_dir: &std::path::Path, args: &[&str]) -> Run {
    Run::of(
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .env("AIRLOCK_DATA_DIR", data_dir)
            .env_remove("AIRLOCK_TENANT")
            .env("AIRLOCK_LOG", "info"),
    )
}

pub(crate) fn path(name: &str) -> String {
    guest(name).display().to_string()
}

#[test]
fn cli_second_process_loads_from_the_cache_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let first = airlock(dir.path(), &["inspect", "--json", &path("sandbox")]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let first: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(first["load"]["source"], "compiled");
    let second = airlock(dir.path(), &["inspect", "--json", &path("sandbox")]);
    let second: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(second["load"]["source"], "cache");
    assert_eq!(first["digest"], second["digest"]);
    assert!(second["load"]["ms"].as_f64().unwrap() < first["load"]["ms"].as_f64().unwrap());
}

#[test]
fn cli_run_create_list_get_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = path("sandbox");
    let run = |op: &str, params: &str, tenant: &str| {
        airlock(
            dir.path(),
            &["run", &sandbox, op, "--params", params, "--tenant", tenant],
        )
    };
    let created = run(
        "create",
        r#"{"type":"items","data":{"name":"widget"}}"#,
        "acme",
    );
    assert_eq!(created.code, 0, "{}", created.stderr);
    // The guest's wasi:logging line, tagged by the host.
    assert!(
        created.stderr.contains("created items/"),
        "{}",
        created.stderr
    );
    assert!(created.stderr.contains("tenant=acme"), "{}", created.stderr);
    let record: serde_json::Value = serde_json::from_str(&created.stdout).unwrap();
    let id = record["id"].as_str().unwrap().to_owned();
    // A separate process sees it: the data is in the embedded store.
    let got = run("get", &format!(r#"{{"type":"items","id":"{id}"}}"#), "acme");
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert!(got.stdout.contains("widget"));
    let listed = run("list", r#"{"type":"items"}"#, "acme");
    assert!(listed.stdout.contains("\"count\": 1"), "{}", listed.stdout);
    let other = run(
        "get",
        &format!(r#"{{"type":"items","id":"{id}"}}"#),
        "globex",
    );
    assert_eq!(other.code, 1);
    assert!(other.stderr.contains("not found"), "{}", other.stderr);
}

#[test]
fn cli_usage_errors_exit_1_not_the_denied_code() {
    // Exit code 2 means "denied by policy"; a missing flag is an ordinary error.
    let dir = tempfile::tempdir().unwrap();
    let no_tenant = airlock(dir.path(), &["run", &path("sandbox"), "list"]);
    assert_eq!(no_tenant.code, 1, "{}", no_tenant.stderr);
    assert!(
        no_tenant.stderr.contains("--tenant"),
        "{}",
        no_tenant.stderr
    );
    let help = airlock(dir.path(), &["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("inspect"), "{}", help.stdout);
}

#[test]
fn cli_guest_output_is_logged_with_the_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let ok = airlock(
        dir.path(),
        &[
            "run",
            &path("ambient-authority"),
            "probe",
            "--tenant",
            "acme",
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let line = ok
        .stderr
        .lines()
        .find(|l| l.contains("hello from the guest's stdout"))
        .unwrap_or_else(|| panic!("guest stdout not logged: {}", ok.stderr));
    assert!(
        line.contains("invocation=")
            && line.contains("tenant=acme")
            && line.contains("stream=\"stdout\""),
        "{line}"
    );
}

pub(crate) fn airlock_as(data_dir: &std::path::Path, key: Option<&str>, args: &[&str]) -> Run {
    airlock_with(data_dir, key, &[], args)
}

/// As [`airlock_as`], with the host settings in `settings` (`DRY_RUN`, `CONNECTOR_RBAC_ROLE`...)
/// and none of them inherited from the test's own environment.
pub(crate) fn airlock_with(
    data_dir: &std::path::Path,
    key: Option<&str>,
    settings: &[(&str, &str)],
    args: &[&str],
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args)
        .env("AIRLOCK_DATA_DIR", data_dir)
        .env("AIRLOCK_TENANT", "acme");
    for inherited in [
        "AIRLOCK_USER",
        "AIRLOCK_AGENT",
        "AIRLOCK_ROLE",
        "AIRLOCK_MASTER_KEY",
        "AIRLOCK_MASTER_KEY_FILE",
        "AIRLOCK_PREVIOUS_MASTER_KEY",
        "AIRLOCK_PREVIOUS_MASTER_KEY_FILE",
        "AIRLOCK_TEST_STOP_AT",
        "DRY_RUN",
        "CONNECTOR_RBAC_ROLE",
    ] {
        cmd.env_remove(inherited);
    }
    if let Some(key) = key {
        cmd.env("AIRLOCK_MASTER_KEY", key);
    }
    cmd.envs(settings.iter().copied());
    Run::of(&mut cmd)
}

#[test]
fn cli_control_plane_refuses_to_start_without_a_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = airlock_as(dir.path(), None, &["connection", "list"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("no master key: set AIRLOCK_MASTER_KEY"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("airlock keygen"), "{}", run.stderr);
    let bad = airlock_as(dir.path(), Some("c2hvcnQ="), &["connection", "list"]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("5 bytes, expected 32"),
        "{}",
        bad.stderr
    );
}

#[test]
fn cli_write_on_a_read_only_connection_exits_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = airlock_as(d, None, &["keygen"]).stdout.trim().to_owned();
    let k = Some(key.as_str());
    let reg = airlock_as(
        d,
        k,
        &["connector", "register", &path("sandbox"), "--role", "admin"],
    );
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    let again = airlock_as(
        d,
        k,
        &[
            "connector",
            "register",
            &path("sandbox"),
            "--role",
            "admin",
            "--json",
        ],
    );
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["created"], false);
    let create = airlock_as(
        d,
        k,
        &[
            "connection",
            "create",
            "crm",
            "--connector",
            "sandbox",
            "--role",
            "admin",
        ],
    );
    assert_eq!(create.code, 0, "{}", create.stderr);
    let write = airlock_as(
        d,
        k,
        &[
            "invoke",
            "crm",
            "create",
            "--params",
            r#"{"type":"items","data":{}}"#,
            "--role",
            "operator",
        ],
    );
    assert_eq!(write.code, 2, "{}", write.stderr);
    assert!(
        write
            .stderr
            .contains("connection `crm` is read-only (writes_enabled = false)"),
        "{}",
        write.stderr
    );
    assert!(
        write.stderr.contains("rule `read-only-connection`"),
        "{}",
        write.stderr
    );
    let bad = airlock_as(
        d,
        k,
        &[
            "connection",
            "create",
            "x",
            "--connector",
            "sandbox",
            "--config",
            r#"{"latency_ms":"slow","error_rate":5}"#,
            "--role",
            "admin",
        ],
    );
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("config field `latency_ms`")
            && bad.stderr.contains("config field `error_rate`"),
        "{}",
        bad.stderr
    );
    let viewer = airlock_as(
        d,
        k,
        &["connection", "create", "y", "--connector", "sandbox"],
    );
    assert_eq!(
        viewer.code, 2,
        "the default role is viewer: {}",
        viewer.stderr
    );
    let other = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "invoke",
            "crm",
            "list",
            "--params",
            r#"{"type":"items"}"#,
            "--tenant",
            "globex",
            "--role",
            "admin",
        ])
        .env("AIRLOCK_DATA_DIR", d)
        .env("AIRLOCK_MASTER_KEY", &key)
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stderr).contains("connection `crm` not found"));
    let list = airlock_as(d, k, &["connection", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list[0]["name"], "crm");
    assert_eq!(list[0]["writes_enabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_credentials_come_from_stdin_and_never_show() {
    const SECRET: &str = "cli-secret-9c2e77";
    let server = http_server::TestServer::start(200, "ok").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let port = server.port;
    let (code, outputs, listed) = tokio::task::spawn_blocking(move || {
        let key = airlock_as(&d, None, &["keygen"]).stdout.trim().to_owned();
        let k = Some(key.as_str());
        let admin = |args: &[&str]| {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(["--role", "admin"]);
            airlock_as(&d, k, &all)
        };
        assert_eq!(
            admin(&["connector", "register", &path("egress-probe")]).code,
            0
        );
        assert_eq!(
            admin(&[
                "connection",
                "create",
                "api",
                "--connector",
                "egress-probe",
                "--egress",
                "http://127.0.0.1:*"
            ])
            .code,
            0
        );
        let mut set = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args([
                "credential",
                "set",
                "api",
                "token",
                "--kind",
                "bearer",
                "--host",
                &format!("http://127.0.0.1:{port}"),
                "--role",
                "admin",
            ])
            .env("AIRLOCK_DATA_DIR", &d)
            .env("AIRLOCK_TENANT", "acme")
            .env("AIRLOCK_MASTER_KEY", &key)
            .env("AIRLOCK_LOG", "trace")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            set.stdin.as_mut().unwrap(),
            format!("{SECRET}\n").as_bytes(),
        )
        .unwrap();
        let set = set.wait_with_output().unwrap();
        let invoke = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args([
                "invoke",
                "api",
                "fetch",
                "--params",
                &format!(r#"{{"url":"http://127.0.0.1:{port}/me"}}"#),
                "--role",
                "operator",
            ])
            .env("AIRLOCK_DATA_DIR", &d)
            .env("AIRLOCK_TENANT", "acme")
            .env("AIRLOCK_MASTER_KEY", &key)
            .env("AIRLOCK_LOG", "trace")
            .output()
            .unwrap();
        let listed = admin(&["credential", "list", "api", "--json"]).stdout;
        let audit = airlock_as(&d, k, &["audit", "list", "--json", "--role", "auditor"]).stdout;
        let outputs: Vec<String> = [&set.stdout, &set.stderr, &invoke.stdout, &invoke.stderr]
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .chain([audit])
            .collect();
        (invoke.status.code(), outputs, listed)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{outputs:?}");
    assert_eq!(
        server.seen()[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    for output in &outputs {
        assert!(
            !output.contains(SECRET),
            "the secret leaked into output or logs: {output}"
        );
    }
    assert!(
        outputs[3].contains("TRACE"),
        "trace logging was on, so the check above saw everything logged"
    );
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["name"], "token");
    assert_eq!(listed[0]["kind"], "bearer");
}

/// The seeds' DRY_RUN: a prototype connector's writes are dry runs by default, and the host's
/// `DRY_RUN=false` (or the connection's `--dry-run false`) makes them real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_dry_run_env_turns_a_prototypes_default_dry_run_off() {
    let api = http_server::TestServer::start(202, "").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let origin = format!("http://127.0.0.1:{}", api.port);
    let runs = tokio::task::spawn_blocking(move || {
        let key = airlock_as(&d, None, &["keygen"]).stdout.trim().to_owned();
        let admin = |args: &[&str]| {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(["--role", "admin"]);
            airlock_as(&d, Some(&key), &all)
        };
        assert_eq!(admin(&["connector", "register", &path("mail")]).code, 0);
        let config = format!(r#"{{"api_base":"{origin}/v1.0"}}"#);
        let created = admin(&[
            "connection",
            "create",
            "mail",
            "--connector",
            "mail",
            "--config",
            &config,
            "--egress",
            &origin,
            "--writes-enabled",
            "true",
            "--approval-from",
            "critical",
        ]);
        assert_eq!(created.code, 0, "{}", created.stderr);
        let send = |settings: &[(&str, &str)]| {
            airlock_with(
                &d,
                Some(&key),
                settings,
                &[
                    "invoke",
                    "mail",
                    "send_mail",
                    "--params",
                    r#"{"to":["ada@example.com"],"subject":"Report","body":"attached"}"#,
                    "--role",
                    "operator",
                ],
            )
        };
        [
            send(&[]),
            send(&[("DRY_RUN", "true")]),
            send(&[("DRY_RUN", "false")]),
        ]
    })
    .await
    .unwrap();
    let answer = |run: &Run| -> serde_json::Value {
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
    };
    for run in &runs[..2] {
        let dry = answer(run);
        assert_eq!(dry["dry_run"], true, "{dry}");
        assert!(
            dry["effects"][0]["url"]
                .as_str()
                .unwrap()
                .ends_with("/v1.0/me/sendMail")
        );
    }
    let sent: Vec<_> = api.seen();
    assert_eq!(
        sent.len(),
        1,
        "only DRY_RUN=false sends: {}",
        runs[2].stderr
    );
    assert_eq!(sent[0].path, "/v1.0/me/sendMail");
    assert_eq!(answer(&runs[2]), serde_json::json!({"sent": true}));
}

/// The seeds' CONNECTOR_RBAC_ROLE raises the role every invocation needs; a value that is not a
/// role refuses invocations (fails closed) and says which variable is wrong.
#[test]
fn cli_connector_rbac_role_raises_the_role_invocations_need() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = airlock_as(d, None, &["keygen"]).stdout.trim().to_owned();
    let k = Some(key.as_str());
    let admin = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--role", "admin"]);
        airlock_as(d, k, &all)
    };
    assert_eq!(admin(&["connector", "register", &path("sandbox")]).code, 0);
    assert_eq!(
        admin(&["connection", "create", "crm", "--connector", "sandbox"]).code,
        0
    );
    let list = |rbac_role: Option<&str>, role: &str| {
        let settings: Vec<(&str, &str)> = rbac_role
            .map(|value| ("CONNECTOR_RBAC_ROLE", value))
            .into_iter()
            .collect();
        let run = airlock_with(
            d,
            k,
            &settings,
            &[
                "invoke",
                "crm",
                "list",
                "--params",
                r#"{"type":"items"}"#,
                "--role",
                role,
            ],
        );
        (run.code, run.stderr)
    };
    assert_eq!(list(None, "operator").0, 0);
    let (code, stderr) = list(Some("admin"), "operator");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("host-required-role"), "{stderr}");
    assert!(
        stderr.contains("need role Admin or higher (CONNECTOR_RBAC_ROLE)"),
        "{stderr}"
    );
    assert_eq!(list(Some("Admin"), "admin").0, 0);
    // It never lowers the table's requirement: a viewer still cannot invoke.
    let (code, stderr) = list(Some("viewer"), "viewer");
    assert_eq!(code, 2, "{stderr}");
    let (code, stderr) = list(Some("bosss"), "admin");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("CONNECTOR_RBAC_ROLE: unknown role `bosss`"),
        "{stderr}"
    );
}

/// Issue 9: a rotation killed (kill -9) half-way leaves every row readable with the old key or
/// the new one, a process holding both reads everything, another rotation cannot start, and the
/// same command run again finishes it; afterwards the new key alone reads everything and
/// verifies the trail, and the old key opens nothing. No key appears in any output.
#[test]
fn cli_keys_rotate_killed_half_way_resumes() {
    use airlock::control::vault::{SealedWith, Vault};
    const SECRET: &str = "cli-rotation-secret-51c0";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keygen = || airlock_as(d, None, &["keygen"]).stdout.trim().to_owned();
    let (key1, key2, key3) = (keygen(), keygen(), keygen());
    let id = |key: &str| Vault::from_base64(key, "k").unwrap().key_id();
    let key_file = |name: &str, key: &str| {
        use std::os::unix::fs::OpenOptionsExt;
        let path = d.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, key.as_bytes()).unwrap();
        path.display().to_string()
    };
    let (file2, file3) = (key_file("new.key", &key2), key_file("other.key", &key3));
    let secret_file = d.join("secret.txt");
    std::fs::write(&secret_file, SECRET).unwrap();
    let with_key = |key: &str, args: &[&str]| airlock_as(d, Some(key), args);
    let admin = |key: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--role", "admin"]);
        with_key(key, &all)
    };
    assert_eq!(
        admin(&key1, &["connector", "register", &path("sandbox")]).code,
        0
    );
    for name in ["c1", "c2", "c3"] {
        let created = admin(
            &key1,
            &[
                "connection",
                "create",
                name,
                "--connector",
                "sandbox",
                "--config",
                r#"{"latency_ms": 3}"#,
            ],
        );
        assert_eq!(created.code, 0, "{}", created.stderr);
        let set = admin(
            &key1,
            &[
                "credential",
                "set",
                name,
                "token",
                "--kind",
                "bearer",
                "--host",
                "https://api.example.com",
                "--value-file",
                &secret_file.display().to_string(),
            ],
        );
        assert_eq!(set.code, 0, "{}", set.stderr);
    }
    let kept = with_key(&key1, &["audit", "checkpoint", "--role", "auditor"]);
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    let kept_file = d.join("checkpoint.json");
    std::fs::write(&kept_file, &kept.stdout).unwrap();

    // Three connections and three credentials, two per batch: killed after the first batch.
    let rotate = |key: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
        cmd.args([
            "keys",
            "rotate",
            "--new-key-file",
            &file2,
            "--batch-size",
            "2",
            "--role",
            "admin",
        ])
        .env("AIRLOCK_DATA_DIR", d)
        .env("AIRLOCK_TENANT", "acme")
        .env("AIRLOCK_MASTER_KEY", key)
        .env("AIRLOCK_LOG", "trace")
        .env_remove("AIRLOCK_MASTER_KEY_FILE")
        .env_remove("AIRLOCK_PREVIOUS_MASTER_KEY")
        .env_remove("AIRLOCK_PREVIOUS_MASTER_KEY_FILE");
        cmd
    };
    let mut killed = rotate(&key1)
        .env("AIRLOCK_TEST_STOP_AT", "key-rotation-batch")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = d.join("airlock.db");
    let query = |sql: &'static str| {
        runtime.block_on(async {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            let n: Option<i64> = sqlx::query_scalar(sql).fetch_optional(&pool).await.unwrap();
            pool.close().await;
            n
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while query("SELECT resealed FROM key_rotations") != Some(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first batch never committed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    killed.kill().unwrap(); // SIGKILL
    killed.wait().unwrap();

    // Half-way: each value wholly under one key or the other.
    let under: Vec<SealedWith> = runtime.block_on(async {
        let state = airlock::control::state::SqliteState::open(&db)
            .await
            .unwrap();
        let values = state.sealed_values(None, 100).await.unwrap();
        values.iter().map(|v| SealedWith::of(&v.sealed)).collect()
    });
    let count = |key: &str| {
        under
            .iter()
            .filter(|w| **w == SealedWith::Key(id(key)))
            .count()
    };
    assert_eq!(
        (under.len(), count(&key2), count(&key1)),
        (6, 2, 4),
        "{under:?}"
    );
    let show = |key: &str, previous: Option<&str>, name: &str| {
        let settings: Vec<(&str, &str)> = previous
            .map(|p| ("AIRLOCK_PREVIOUS_MASTER_KEY", p))
            .into_iter()
            .collect();
        airlock_with(
            d,
            Some(key),
            &settings,
            &["connection", "show", name, "--json", "--role", "admin"],
        )
    };
    // The old key alone reads what is still under it, and says what to do about the rest.
    let moved = show(&key1, None, "c1");
    assert_eq!(moved.code, 1, "{}", moved.stdout);
    assert!(
        moved
            .stderr
            .contains(&format!("sealed with master key {}", id(&key2)))
            && moved
                .stderr
                .contains(&format!("this process holds master key {}", id(&key1)))
            && moved.stderr.contains("AIRLOCK_PREVIOUS_MASTER_KEY"),
        "{}",
        moved.stderr
    );
    assert_eq!(show(&key1, None, "c3").code, 0);
    // The new key with the old one as previous reads everything.
    for name in ["c1", "c2", "c3"] {
        let run = show(&key2, Some(&key1), name);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        assert!(run.stdout.contains("\"latency_ms\": 3"), "{}", run.stdout);
    }
    // Another rotation cannot start meanwhile.
    let other = airlock_as(
        d,
        Some(&key1),
        &[
            "keys",
            "rotate",
            "--new-key-file",
            &file3,
            "--role",
            "admin",
        ],
    );
    assert_eq!(other.code, 1);
    assert!(other.stderr.contains("is under way"), "{}", other.stderr);

    // The same command again finishes it.
    let resumed = Run::of(&mut rotate(&key1));
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(resumed.stdout.contains("(resumed)"), "{}", resumed.stdout);
    assert_eq!(query("SELECT resealed FROM key_rotations"), Some(6));
    assert!(resumed.stderr.contains("TRACE"), "trace logging was on");

    // The new key alone: everything reads, the trail verifies, the old checkpoint file is the
    // retired key's, not a forgery.
    for name in ["c1", "c2", "c3"] {
        assert_eq!(show(&key2, None, name).code, 0, "{name}");
    }
    let verified = with_key(&key2, &["audit", "verify", "--role", "auditor"]);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    assert!(
        verified.stdout.contains("1 key rotation(s)"),
        "{}",
        verified.stdout
    );
    let old_checkpoint = with_key(
        &key2,
        &[
            "audit",
            "verify",
            "--role",
            "auditor",
            "--checkpoint",
            &kept_file.display().to_string(),
        ],
    );
    assert_eq!(old_checkpoint.code, 0, "{}", old_checkpoint.stdout);
    assert!(
        old_checkpoint
            .stdout
            .contains("note: the checkpoint at record"),
        "{}",
        old_checkpoint.stdout
    );
    assert!(
        old_checkpoint
            .stdout
            .contains(&format!("retired master key {}", id(&key1))),
        "{}",
        old_checkpoint.stdout
    );
    // The old key opens nothing now.
    for name in ["c1", "c2", "c3"] {
        assert_eq!(show(&key1, None, name).code, 1, "{name}");
    }
    // But those processes, still on the retired key, signed their audit checkpoints with it:
    // verify names the key and the fix, and the fix (the same command again) works.
    let stale = with_key(&key2, &["audit", "verify", "--role", "auditor"]);
    assert_eq!(stale.code, 3, "{}", stale.stdout);
    assert!(
        stale
            .stdout
            .contains(&format!("signed with the retired master key {}", id(&key1)))
            && stale.stdout.contains("airlock keys rotate"),
        "{}",
        stale.stdout
    );
    let rechecked = Run::of(&mut rotate(&key1));
    assert_eq!(rechecked.code, 0, "{}", rechecked.stderr);
    assert!(
        rechecked.stdout.contains("(rechecked)"),
        "{}",
        rechecked.stdout
    );
    assert_eq!(
        with_key(&key2, &["audit", "verify", "--role", "auditor"]).code,
        0
    );
    // `keys id` names keys by id, from the environment or a file.
    let ids = airlock_with(
        d,
        Some(&key2),
        &[("AIRLOCK_PREVIOUS_MASTER_KEY", &key1)],
        &["keys", "id"],
    );
    assert!(
        ids.stdout.contains(&format!("current   {}", id(&key2)))
            && ids.stdout.contains(&format!("previous  {}", id(&key1))),
        "{}",
        ids.stdout
    );
    let of_file = airlock_as(d, None, &["keys", "id", "--key-file", &file3]);
    assert!(
        of_file.stdout.contains(&id(&key3).to_string()),
        "{}",
        of_file.stdout
    );

    for output in [
        &resumed.stdout,
        &resumed.stderr,
        &rechecked.stdout,
        &rechecked.stderr,
        &other.stderr,
        &moved.stderr,
        &ids.stdout,
        &of_file.stdout,
    ] {
        for secret in [&key1, &key2, &key3, &SECRET.to_owned()] {
            assert!(
                !output.contains(secret.as_str()),
                "a key or secret leaked: {output}"
            );
        }
    }
}
