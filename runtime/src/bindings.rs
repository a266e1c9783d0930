//! Host bindings for the `airlock:connector` world, generated once from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "airlock:connector/connector-world",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi:keyvalue/store.bucket": crate::capability::keyvalue::Bucket,
    },
});

pub use self::airlock::connector::types;
