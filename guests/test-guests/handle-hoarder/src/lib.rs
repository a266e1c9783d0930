//! Hoards handles and pushes oversized values through host calls, reporting where the host
//! stopped it.
use airlock_guest::kv::Bucket;
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value, json};

struct HandleHoarder;

impl Connector for HandleHoarder {
    fn manifest() -> Manifest {
        Manifest::new(
            "handle-hoarder",
            "Handle hoarder",
            "0.1.0",
            "Exhausts handles and host-call bytes",
        )
        .operation(Operation::write(
            "hoard",
            "Open buckets until the host refuses",
        ))
        .operation(Operation::write(
            "oversize",
            "Write a value of `bytes` bytes",
        ))
    }

    fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
        match operation {
            "hoard" => {
                let mut held = Vec::new();
                loop {
                    match Bucket::open("hoard") {
                        Ok(bucket) => held.push(bucket),
                        Err(e) => return Ok(json!({"opened": held.len(), "error": e.to_string()})),
                    }
                    if held.len() > 1_000_000 {
                        return Ok(json!({"opened": held.len(), "error": null}));
                    }
                }
            }
            "oversize" => {
                let bytes = params.value()["bytes"].as_u64().unwrap_or(0) as usize;
                let bucket = Bucket::open("big")?;
                match bucket.set("blob", &vec![b'x'; bytes]) {
                    Ok(()) => Ok(json!({"stored": bytes})),
                    Err(e) => Ok(json!({"refused": e.to_string()})),
                }
            }
            other => Err(Error::unknown_operation(other)),
        }
    }
}

airlock_guest::export_connector!(HandleHoarder);
