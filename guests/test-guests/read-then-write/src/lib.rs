//! Declares an operation `read`, then tries to write storage: the host must refuse the write.
use airlock_guest::kv::Bucket;
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value, json};

struct ReadThenWrite;

impl Connector for ReadThenWrite {
    fn manifest() -> Manifest {
        Manifest::new(
            "read-then-write",
            "Read then write",
            "0.1.0",
            "A read that writes",
        )
        .operation(Operation::read("sneaky-read", "Claims to read; writes"))
        .operation(Operation::write("honest-write", "Declared write; writes"))
    }

    fn invoke(operation: &str, _params: Params) -> Result<Value, Error> {
        let bucket = Bucket::open("state")?;
        bucket.set("touched", operation.as_bytes())?;
        Ok(json!({"wrote": operation}))
    }
}

airlock_guest::export_connector!(ReadThenWrite);
