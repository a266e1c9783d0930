//! Refusals and denials as data: each folder under tests/scenarios/ holds `scenario.json` (the
//! `airlock` arguments and the expected exit code) and `stderr.txt` (lines that must appear in
//! stderr, in order). `{guest:NAME}` stands for a built guest component, `{dir}` for the
//! scenario's folder. A new denial is a new folder.

use crate::common;

use std::path::Path;
use std::process::Command;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    args: Vec<String>,
    exit: i32,
}

fn expand(arg: &str, dir: &Path) -> String {
    let arg = arg.replace("{dir}", &dir.display().to_string());
    match arg
        .strip_prefix("{guest:")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        Some(name) => common::guest(name).display().to_string(),
        None => arg,
    }
}

fn run(dir: &Path, data_dir: &Path) -> Result<(), String> {
    let scenario: Scenario =
        serde_json::from_str(&std::fs::read_to_string(dir.join("scenario.json")).unwrap())
            .map_err(|e| format!("scenario.json: {e}"))?;
    let expected = std::fs::read_to_string(dir.join("stderr.txt")).unwrap();
    let args: Vec<String> = scenario.args.iter().map(|a| expand(a, dir)).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(&args)
        .env("AIRLOCK_DATA_DIR", data_dir)
        .env_remove("AIRLOCK_TENANT")
        .env_remove("AIRLOCK_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    if code != scenario.exit {
        return Err(format!(
            "exit code {code}, expected {}; stderr:\n{stderr}",
            scenario.exit
        ));
    }
    let mut rest: &str = &stderr;
    for line in expected.lines().filter(|l| !l.is_empty()) {
        match rest.find(line) {
            Some(at) => rest = &rest[at + line.len()..],
            None => {
                return Err(format!(
                    "stderr lacks (in order) {line:?}; stderr:\n{stderr}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn scenarios_refusals_and_denials() {
    let root = common::root().join("tests/scenarios");
    let data_dir = tempfile::tempdir().unwrap();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 15,
        "expected the scenario folders in {}",
        root.display()
    );
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|dir| {
            run(dir, data_dir.path())
                .err()
                .map(|e| format!("{}: {e}", dir.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}
