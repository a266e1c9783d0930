//! The `airlock` binary: exit codes, messages, and a second process loading from the cache.

mod common;

use common::guest;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn airlock(data_dir: &std::path::Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_DATA_DIR", data_dir)
        .env_remove("AIRLOCK_TENANT")
        .env("AIRLOCK_LOG", "info")
        .output()
        .expect("run airlock");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path(name: &str) -> String {
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
