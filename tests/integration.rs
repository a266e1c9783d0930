//! Airlock's integration tests, built as one test binary: every file links the whole runtime
//! (wasmtime, Cranelift, the HTTP and SQL stacks), so one binary instead of one per file saves
//! most of the link time and several gigabytes of `target/`. Each file below is a module named as
//! before, so `cargo xtask test -- egress::` runs the egress tests alone.

mod common;
#[path = "common/http_server.rs"]
mod http_server;

mod access;
mod approvals;
mod audit;
mod cli;
mod clients;
mod connectors;
mod control;
mod egress;
mod executor;
mod guests;
mod hardening;
mod isolation;
mod keys;
mod keyvalue;
mod loading;
mod rbac;
mod response_property;
mod scenarios;
mod serve;
mod settings;
mod shaping;
mod state;
