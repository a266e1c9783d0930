//! Hammers the policy: opens key-value buckets whose names are never allowed (slashes, and as
//! long as asked), over and over, ignoring every refusal. The host must stop it, with its memory,
//! logs and audit record bounded.
use airlock_guest::kv::Bucket;
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value, json};

struct DenialHammer;

#[derive(serde::Deserialize)]
struct Hammer {
    /// Bytes of each bucket name.
    name_bytes: usize,
    /// Opens to try.
    rounds: u64,
}

impl Connector for DenialHammer {
    fn manifest() -> Manifest {
        Manifest::new(
            "denial-hammer",
            "Denial hammer",
            "0.1.0",
            "Asks for denied effects in a loop",
        )
        .operation(Operation::read(
            "hammer",
            "Open forbidden buckets, ignoring refusals",
        ))
    }

    fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
        if operation == "fail" {
            #[derive(serde::Deserialize)]
            struct Fail {
                bytes: usize,
            }
            let f: Fail = params.parse()?;
            return Err(Error::Internal("e".repeat(f.bytes)));
        }
        if operation != "hammer" {
            return Err(Error::unknown_operation(operation));
        }
        let h: Hammer = params.parse()?;
        // `/` is never allowed in a bucket name.
        let name = format!("a/{}", "x".repeat(h.name_bytes.saturating_sub(2)));
        let mut refused = 0u64;
        for _ in 0..h.rounds {
            if Bucket::open(&name).is_err() {
                refused += 1;
            }
        }
        Ok(json!({ "refused": refused }))
    }
}

airlock_guest::export_connector!(DenialHammer);
