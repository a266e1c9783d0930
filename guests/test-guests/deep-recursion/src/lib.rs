//! Recurses without bound: the host's stack limit must trap it.
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value, json};

struct DeepRecursion;

#[inline(never)]
#[expect(unconditional_recursion, reason = "the point of this guest")]
fn descend(depth: u64) -> u64 {
    // The frame keeps live data after the call, so the recursion cannot become a loop.
    let frame = std::hint::black_box([depth; 8]);
    descend(depth + 1) + frame[7]
}

impl Connector for DeepRecursion {
    fn manifest() -> Manifest {
        Manifest::new(
            "deep-recursion",
            "Deep recursion",
            "0.1.0",
            "Recurses forever",
        )
        .operation(Operation::read("recurse", "Recurse without bound"))
    }

    fn invoke(_operation: &str, _params: Params) -> Result<Value, Error> {
        Ok(json!(descend(std::hint::black_box(0))))
    }
}

airlock_guest::export_connector!(DeepRecursion);
