//! Allocates and touches memory until allocation fails.
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value, json};

struct MemoryHog;

impl Connector for MemoryHog {
    fn manifest() -> Manifest {
        Manifest::new(
            "memory-hog",
            "Memory hog",
            "0.1.0",
            "Allocates without bound",
        )
        .operation(Operation::read("hog", "Allocate 1 MiB chunks forever"))
    }

    fn invoke(_operation: &str, _params: Params) -> Result<Value, Error> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            chunk[0] = 1;
            chunks.push(std::hint::black_box(chunk));
            if chunks.len() == usize::MAX {
                return Ok(json!(chunks.len()));
            }
        }
    }
}

airlock_guest::export_connector!(MemoryHog);
