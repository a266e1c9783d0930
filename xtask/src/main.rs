//! `cargo xtask <task>`: the project's set-up and entry points, so a fresh machine with only
//! rustup and cargo needs nothing else.
//!
//! - `guests`: add the `wasm32-wasip2` target if missing and build every guest component;
//! - `demo`: guests, then `airlock demo` on the embedded store;
//! - `test`: guests, the outside clients the tests drive (`tests/clients/setup.sh`), then the
//!   whole test suite;
//! - `bench`: guests, then the benchmark (release build).
//!
//! The guests are every crate under `guests/` that builds a component (`crate-type = ["cdylib"]`);
//! nothing else lists them, so a new guest is built as soon as its folder exists.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const GUEST_TARGET: &str = "wasm32-wasip2";

fn root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR for the process: the checkout being worked on. The
    // compile-time value is only a fallback, since one xtask binary can serve several checkouts
    // that share a target directory.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Path::new(&manifest_dir)
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Where the guest components land.
fn guest_dir() -> PathBuf {
    target_dir().join(GUEST_TARGET).join("release")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(mut cmd: Command) -> Result<(), String> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// Guest crates: folders under `guests/` whose Cargo.toml builds a cdylib.
fn guest_crates() -> Vec<String> {
    let mut names = Vec::new();
    let mut dirs = vec![root().join("guests")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            match std::fs::read_to_string(path.join("Cargo.toml")) {
                Ok(manifest) if manifest.contains("cdylib") => {
                    let name = manifest
                        .lines()
                        .find_map(|l| l.strip_prefix("name = \""))
                        .and_then(|l| l.strip_suffix('"'))
                        .expect("guest Cargo.toml has a name");
                    names.push(name.to_owned());
                }
                Ok(_) => {}
                Err(_) => dirs.push(path),
            }
        }
    }
    names.sort();
    names
}

fn ensure_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| {
            format!("cannot run rustup ({e}); install the {GUEST_TARGET} target by hand")
        })?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == GUEST_TARGET)
    {
        return Ok(());
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", GUEST_TARGET]);
    run(cmd)
}

fn build_guests() -> Result<(), String> {
    ensure_target()?;
    eprintln!(
        "xtask: building {} guest components for {GUEST_TARGET} (release)",
        guest_crates().len()
    );
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", GUEST_TARGET]);
    for name in guest_crates() {
        cmd.args(["-p", &name]);
    }
    run(cmd)
}

/// The outside clients the tests drive (schemathesis, the MCP SDK), into a virtual environment
/// in the target directory: `tests/clients/setup.sh`, quick once they are there.
fn install_clients() -> Result<(), String> {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("tests/clients/setup.sh"))
        .env("CARGO_TARGET_DIR", target_dir());
    run(cmd)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "guests" => build_guests(),
        "demo" => build_guests().and_then(|()| {
            // Built in its own step, with cargo's progress shown: a first build compiles
            // wasmtime and Cranelift for minutes, and a quiet `cargo run` looked hung.
            eprintln!(
                "xtask: building the airlock host (a first build compiles wasmtime and takes several minutes)"
            );
            let mut build = cargo();
            build.args(["build", "-p", "airlock", "--bin", "airlock"]);
            run(build)?;
            eprintln!("xtask: running the demo");
            let mut cmd = Command::new(target_dir().join("debug").join("airlock"));
            cmd.current_dir(root())
                .arg("demo")
                .arg("--guests")
                .arg(guest_dir())
                .args(rest);
            run(cmd)
        }),
        "test" => build_guests().and_then(|()| install_clients()).and_then(|()| {
            let mut cmd = cargo();
            // The default members: the runtime (with the tests in tests/) and this crate.
            cmd.arg("test");
            cmd.env("AIRLOCK_GUEST_DIR", guest_dir()).args(rest);
            run(cmd)
        }),
        "bench" => build_guests().and_then(|()| {
            let mut cmd = cargo();
            cmd.args(["bench", "-p", "airlock-runtime", "--bench", "invoke", "--"])
                .args(rest);
            cmd.env("AIRLOCK_GUEST_DIR", guest_dir());
            run(cmd)?;
            // The served invocation (issue 11) after the whole invocation benchmark, not after
            // a run of one part of it.
            if rest.iter().all(|a| a == "--quick") {
                let mut served = cargo();
                served
                    .args(["bench", "-p", "airlock-server", "--bench", "served", "--"])
                    .args(rest)
                    .env("AIRLOCK_GUEST_DIR", guest_dir());
                run(served)?;
            }
            Ok(())
        }),
        _ => {
            eprintln!("usage: cargo xtask <guests|demo|test|bench> [args...]");
            return ExitCode::from(if task == "help" { 0 } else { 2 });
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
