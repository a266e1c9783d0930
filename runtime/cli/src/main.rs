//! The `airlock` command: a front end over the library (package `airlock-runtime`, crate
//! `airlock`), as the HTTP API and MCP will be. It reads the settings, renders the core's errors and remedies
//! in its own terms (commands and exit codes), and links what only a terminal needs (clap,
//! tables, progress bars), which the library does not.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
