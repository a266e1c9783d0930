//! `airlock serve` driven by clients nobody here wrote (issue 11): schemathesis fuzzing the
//! OpenAPI document the server generates, and the official MCP Python SDK over streamable HTTP
//! and stdio. They live in a virtual environment that `tests/clients/setup.sh` makes (`cargo
//! xtask test` runs it first), pinned in `tests/clients/requirements.txt`.

use crate::cli::{airlock_as, path};
use crate::serve::{Served, serve_process_with};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The clients' virtual environment, beside the test binary's target directory.
fn venv() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/integration-<hash>
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let venv = target.join("clients-venv");
    assert!(
        venv.join("bin/python").exists(),
        "the outside clients are not installed in {}: run `bash tests/clients/setup.sh` (`cargo xtask test` does)",
        venv.display()
    );
    venv
}

/// A data directory with the sandbox connector, a connection that writes (`crm`) and one that
/// does not (`ledger`), and its master key.
struct World {
    dir: tempfile::TempDir,
    key: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let key = airlock_as(dir.path(), None, &["keygen"])
            .stdout
            .trim()
            .to_owned();
        let world = World { dir, key };
        world.admin(&["connector", "register", &path("sandbox")]);
        world.admin(&[
            "connection",
            "create",
            "crm",
            "--connector",
            "sandbox",
            "--writes-enabled",
            "true",
        ]);
        world.admin(&["connection", "create", "ledger", "--connector", "sandbox"]);
        world
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs an admin's command; its standard output.
    fn admin(&self, args: &[&str]) -> String {
        let mut all = vec!["--user", "ada", "--role", "admin"];
        all.extend_from_slice(args);
        let run = airlock_as(self.dir(), Some(&self.key), &all);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        run.stdout.trim().to_owned()
    }

    /// Runs `olga`'s command, an operator's.
    fn operator(&self, args: &[&str]) -> crate::cli::Run {
        let mut all = vec!["--user", "olga", "--role", "operator"];
        all.extend_from_slice(args);
        airlock_as(self.dir(), Some(&self.key), &all)
    }

    /// A new token for a user (`--for-user`) or an agent (`--for-agent`) with a role.
    fn token(&self, for_whom: &str, subject: &str, role: &str) -> String {
        self.admin(&["token", "create", for_whom, subject, "--token-role", role])
    }

    fn serve(&self, settings: &[(&str, &str)]) -> Served {
        serve_process_with(self.dir(), &self.key, settings)
    }
}

/// The command's output, both streams, for a failure message.
fn output_of(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("start the client");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// schemathesis (from PyPI) reads `/v1/openapi.json` and sends what it derives from it, valid
/// and invalid, with an admin's token and without: no answer may be a 5xx, and every answer's
/// status, content type, headers and body must match the document.
#[test]
fn clients_schemathesis_finds_the_api_true_to_its_openapi_document() {
    let venv = venv();
    let world = World::new();
    let admin = world.token("--for-user", "ada", "admin");
    // A request waiting for approval, so the approvals endpoints have one to show and decide.
    let pending = world.operator(&[
        "invoke",
        "crm",
        "create",
        "--params",
        r#"{"type":"items","data":{"name":"Ada"}}"#,
    ]);
    assert!(pending.stderr.contains("apr-"), "{}", pending.stderr);
    // The fuzzer sends bad tokens by design; the per-source limit would soon answer it 429 only.
    let served = world.serve(&[("AIRLOCK_AUTH_FAILURES_PER_MINUTE", "1000000")]);
    let (ok, output) = output_of(
        Command::new(venv.join("bin/schemathesis"))
            .arg("run")
            .arg(format!("{}/v1/openapi.json", served.base))
            .args(["--header", &format!("Authorization: Bearer {admin}")])
            .args(["--checks", "all"])
            // Schema-valid is not valid: an operation must be in the connector's manifest, an
            // upload must be a component, a name must be free. Those are 422s with the reason,
            // which this check counts against the server.
            .args(["--exclude-checks", "positive_data_acceptance"])
            // Its stateful phase would find the token's id in GET /v1/tokens and revoke the
            // token it runs with; revocation has its own tests (tests/access.rs).
            .args(["--exclude-operation-id", "token_revoke"])
            .args(["--max-examples", "30", "--seed", "11", "--workers", "2"])
            .arg("--no-color")
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(world.dir()),
    );
    assert!(ok, "schemathesis found problems:\n{output}");
    // It ran, against every operation but the one left out.
    assert!(output.contains("passed"), "{output}");
    assert!(!output.contains("Tested: 0"), "{output}");
}

/// The agent's world: `bot` may list, get and delete on `crm` (where delete, high risk, waits
/// for an approver) and create on the read-only `ledger`; `oscar` approves; record `c1` exists.
struct AgentWorld {
    world: World,
    bot: String,
    oscar: String,
    eve: String,
}

impl AgentWorld {
    fn new() -> AgentWorld {
        let world = World::new();
        world.admin(&["connection", "update", "crm", "--approval-from", "high"]);
        for op in ["list", "get", "delete"] {
            world.admin(&[
                "connection",
                "grant",
                "crm",
                "--to-agent",
                "bot",
                "--operation",
                op,
            ]);
        }
        world.admin(&[
            "connection",
            "grant",
            "ledger",
            "--to-agent",
            "bot",
            "--operation",
            "create",
        ]);
        let seeded = world.operator(&[
            "invoke",
            "crm",
            "create",
            "--params",
            r#"{"type":"items","id":"c1","data":{"name":"Ada"}}"#,
        ]);
        assert_eq!(seeded.code, 0, "{}", seeded.stderr);
        AgentWorld {
            bot: world.token("--for-agent", "bot", "operator"),
            oscar: world.token("--for-user", "oscar", "operator"),
            eve: world.token("--for-agent", "eve", "operator"),
            world,
        }
    }

    /// Runs tests/clients/mcp_agent.py over `transport` against `target`; its JSON report.
    fn agent(&self, served: &Served, transport: &str, token: &str, list_only: bool) -> Value {
        let target = match transport {
            "http" => format!("{}/mcp", served.base),
            _ => env!("CARGO_BIN_EXE_airlock").to_owned(),
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/mcp_agent.py");
        let mut cmd = Command::new(venv().join("bin/python"));
        cmd.arg(script)
            .args([transport, &target, token, &served.base, &self.oscar])
            .env("AIRLOCK_DATA_DIR", self.world.dir())
            .env("AIRLOCK_MASTER_KEY", &self.world.key)
            .env_remove("AIRLOCK_TENANT")
            .env_remove("AIRLOCK_TOKEN");
        if list_only {
            cmd.env("MCP_AGENT_LIST_ONLY", "1");
        }
        let out = cmd.output().expect("start the MCP agent");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the MCP agent failed over {transport}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }
}

/// What an agent on the official Python SDK sees and does, the same over either transport.
fn check_agent_report(transport: &str, report: &Value) {
    let tools: Vec<&str> = report["tools"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // Exactly its grants (crm create and update exist, and are not its), discovery and
    // following approvals.
    let mut expected = vec![
        "airlock_await_approval",
        "airlock_discover",
        "crm__delete",
        "crm__get",
        "crm__list",
        "ledger__create",
    ];
    expected.sort_unstable();
    let mut seen = tools.clone();
    seen.sort_unstable();
    assert_eq!(seen, expected, "{transport}");
    let tool = |name: &str| &report["tools"][name];
    assert_eq!(tool("crm__get")["annotations"]["read_only_hint"], true);
    assert_eq!(tool("crm__delete")["annotations"]["read_only_hint"], false);
    assert_eq!(tool("crm__delete")["annotations"]["destructive_hint"], true);
    assert_eq!(
        tool("ledger__create")["annotations"]["destructive_hint"],
        false
    );
    // The operation's params schema is the tool's input schema.
    assert_eq!(
        tool("crm__get")["input_schema"]["required"],
        json!(["type", "id"])
    );
    assert!(
        tool("crm__get")["description"]
            .as_str()
            .unwrap()
            .starts_with("Get one record by id"),
        "{transport}"
    );
    // A read.
    assert_eq!(report["read"]["is_error"], false, "{transport}: {report}");
    assert_eq!(
        report["read"]["structured"]["result"],
        json!({"id": "c1", "name": "Ada"})
    );
    assert!(
        report["discover"]["structured"]["objects"]
            .to_string()
            .contains("items")
    );
    // A refusal is a tool error naming the rule and what would allow it.
    let refused = &report["refused"];
    assert_eq!(refused["is_error"], true, "{transport}: {refused}");
    assert_eq!(refused["structured"]["rule"], "read-only-connection");
    assert_eq!(refused["structured"]["remedy"]["action"], "enable-writes");
    assert!(
        refused["text"][0]
            .as_str()
            .unwrap()
            .contains("read-only-connection")
    );
    // Another's tool does not exist for it.
    assert!(
        report["not_granted"]
            .as_str()
            .unwrap()
            .contains("no tool `crm__update`"),
        "{transport}: {}",
        report["not_granted"]
    );
    // The high-risk delete waited for oscar, then ran, once, and answered its result.
    let approved = &report["approved"];
    assert_eq!(approved["is_error"], false, "{transport}: {approved}");
    assert_eq!(approved["structured"]["status"], "executed");
    assert_eq!(approved["structured"]["approved_by"], "oscar");
    assert_eq!(approved["structured"]["result"]["deleted"], true);
    assert_eq!(
        report["followed"]["structured"]["request_id"],
        approved["request_id"]
    );
    assert_eq!(report["followed"]["structured"]["status"], "executed");
    assert_eq!(report["after"]["structured"]["kind"], "not-found");
}

/// The official MCP Python SDK over streamable HTTP at `/mcp` with an agent's token, and the
/// same agent's view from another agent's token (nothing of bot's), and without a token.
#[test]
fn clients_mcp_python_sdk_over_streamable_http() {
    let agents = AgentWorld::new();
    let served = agents.world.serve(&[]);
    let report = agents.agent(&served, "http", &agents.bot, false);
    check_agent_report("http", &report);
    let eve = agents.agent(&served, "http", &agents.eve, true);
    assert_eq!(eve["tools"], json!(["airlock_await_approval"]));
    // No token: the API's 401, before MCP is spoken.
    let status = {
        use std::io::{Read, Write};
        let address = served.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST /mcp HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or_default().to_owned()
    };
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    // Each call is audited as the agent's own invocation.
    let audit = agents
        .world
        .admin(&["audit", "list", "--json", "--limit", "200"]);
    let records: Vec<Value> = serde_json::from_str(&audit).unwrap();
    let by_bot: Vec<&Value> = records
        .iter()
        .filter(|r| r["principal"] == "bot" && r["action"] == "invoke.write")
        .collect();
    assert!(
        by_bot
            .iter()
            .any(|r| r["rule"] == "read-only-connection" && r["target"] == "ledger"),
        "{audit}"
    );
}

/// The same agent over stdio: `airlock mcp` with its token in AIRLOCK_TOKEN, while a person
/// approves over the HTTP API of a server on the same data directory.
#[test]
fn clients_mcp_python_sdk_over_stdio() {
    let agents = AgentWorld::new();
    let served = agents.world.serve(&[]);
    let report = agents.agent(&served, "stdio", &agents.bot, false);
    check_agent_report("stdio", &report);
    let eve = agents.agent(&served, "stdio", &agents.eve, true);
    assert_eq!(eve["tools"], json!(["airlock_await_approval"]));
}

/// `airlock mcp` with a token that is not one, or with no caller at all, stops at once and says
/// which setting is wrong (an MCP client shows a server's stderr when it fails to start).
#[test]
fn clients_mcp_over_stdio_refuses_a_bad_token_naming_the_setting() {
    let world = World::new();
    for (token, expected) in [
        (Some("alk_0123456789abcdef_not-the-secret"), "AIRLOCK_TOKEN"),
        (Some("bearer-of-nothing"), "AIRLOCK_TOKEN"),
        (None, "no tenant"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
        cmd.arg("mcp")
            .env("AIRLOCK_DATA_DIR", world.dir())
            .env("AIRLOCK_MASTER_KEY", &world.key)
            .env_remove("AIRLOCK_TENANT")
            .env_remove("AIRLOCK_TOKEN")
            .stdin(std::process::Stdio::null());
        if let Some(token) = token {
            cmd.env("AIRLOCK_TOKEN", token);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{token:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "stdout is the transport: nothing else goes there"
        );
        if let Some(token) = token {
            assert!(!stderr.contains(token), "the token is echoed: {stderr}");
        }
    }
}
