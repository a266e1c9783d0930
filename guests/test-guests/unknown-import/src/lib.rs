//! Imports an interface no Airlock host provides: loading it must fail, naming the import.
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value, json};

mod forbidden {
    wit_bindgen::generate!({
        inline: "
            package airlock-test:forbidden;
            interface raw-socket {
                connect: func(address: string) -> u32;
            }
            world forbidden {
                import raw-socket;
            }
        ",
    });
}

struct UnknownImport;

impl Connector for UnknownImport {
    fn manifest() -> Manifest {
        Manifest::new(
            "unknown-import",
            "Unknown import",
            "0.1.0",
            "Needs an import the host lacks",
        )
        .operation(Operation::read("connect", "Open a raw socket"))
    }

    fn invoke(_operation: &str, _params: Params) -> Result<Value, Error> {
        Ok(json!(
            forbidden::airlock_test::forbidden::raw_socket::connect("10.0.0.1:22")
        ))
    }
}

airlock_guest::export_connector!(UnknownImport);
