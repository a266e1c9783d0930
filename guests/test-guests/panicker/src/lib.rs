//! Panics with a message the caller must see.
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value};

struct Panicker;

impl Connector for Panicker {
    fn manifest() -> Manifest {
        Manifest::new("panicker", "Panicker", "0.1.0", "Panics")
            .operation(Operation::read("panic", "Panic with a message"))
    }

    fn invoke(_operation: &str, _params: Params) -> Result<Value, Error> {
        let record_id = std::hint::black_box(42);
        panic!("upstream record {record_id} has no `Name` field");
    }
}

airlock_guest::export_connector!(Panicker);
