//! Returns a JSON string of the requested size.
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value};

struct BigOutput;

#[derive(serde::Deserialize)]
struct Size {
    bytes: usize,
}

impl Connector for BigOutput {
    fn manifest() -> Manifest {
        Manifest::new(
            "big-output",
            "Big output",
            "0.1.0",
            "Returns as many bytes as asked",
        )
        .operation(Operation::read("emit", "Return a string of `bytes` bytes"))
    }

    fn invoke(_operation: &str, params: Params) -> Result<Value, Error> {
        let size: Size = params.parse()?;
        Ok(Value::String("x".repeat(size.bytes)))
    }
}

airlock_guest::export_connector!(BigOutput);
