//! `airlock serve` driven by clients nobody here wrote (issue 11): schemathesis fuzzing the
//! OpenAPI document the server generates, and the official MCP Python SDK over streamable HTTP
//! and stdio. They live in a virtual environment that `tests/clients/setup.sh` makes (`cargo
//! xtask test` runs it first), pinned in `tests/clients/requirements.txt`.

use crate::cli::{airlock_as, path};
use crate::serve::{Served, serve_process_with};
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
