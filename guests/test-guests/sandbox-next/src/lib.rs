//! The sandbox connector's own source, compiled with this crate's version (0.2.0), so the
//! registry can hold two versions of one connector.

#[path = "../../../sandbox/src/lib.rs"]
mod sandbox;
