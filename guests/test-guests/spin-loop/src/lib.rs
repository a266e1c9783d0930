//! Never returns: the host must stop it at its deadline.
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value};

struct SpinLoop;

impl Connector for SpinLoop {
    fn manifest() -> Manifest {
        Manifest::new("spin-loop", "Spin loop", "0.1.0", "Loops forever")
            .operation(Operation::read("spin", "Loop forever"))
    }

    fn invoke(_operation: &str, _params: Params) -> Result<Value, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

airlock_guest::export_connector!(SpinLoop);
