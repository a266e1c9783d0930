//! What the loader refuses, and the compile cache.

use crate::common;

use airlock::cache::LoadSource;
use airlock::engine::PoolSize;
use airlock::{Executor, ExecutorOptions, LoadError};
use common::*;

#[tokio::test]
async fn loading_refuses_a_core_module() {
    // The smallest valid core module: magic and version 1.
    let err = executor()
        .load(b"\0asm\x01\0\0\0")
        .await
        .err()
        .expect("a core module must be refused");
    assert!(matches!(err, LoadError::CoreModule), "{err:?}");
    assert!(
        err.to_string()
            .contains("core WebAssembly module, not a component"),
        "{err}"
    );
    assert!(
        err.to_string().contains("wasm32-wasip2"),
        "the fix is not named: {err}"
    );
}

#[tokio::test]
async fn loading_refuses_garbage_bytes() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let err = executor()
        .load(&garbage)
        .await
        .err()
        .expect("garbage must be refused");
    assert!(err.to_string().contains("not a WebAssembly file"), "{err}");
    // A component header followed by garbage reaches the validator, which names the problem.
    let mut truncated = std::fs::read(guest("sandbox")).unwrap();
    truncated.truncate(truncated.len() / 2);
    let err = executor()
        .load(&truncated)
        .await
        .err()
        .expect("a truncated component must be refused");
    assert!(matches!(err, LoadError::Invalid(_)), "{err:?}");
    assert!(!err.to_string().is_empty());
}

#[tokio::test]
async fn loading_refuses_an_unknown_import_and_names_it() {
    let err = executor()
        .load_file(&guest("unknown-import"))
        .await
        .err()
        .expect("must be refused");
    match &err {
        LoadError::UnsupportedImport { import } => assert!(
            import.starts_with("airlock-test:forbidden/raw-socket"),
            "{import}"
        ),
        other => panic!("expected an unsupported-import error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("airlock-test:forbidden/raw-socket"),
        "{err}"
    );
}

#[tokio::test]
async fn loading_reads_and_checks_the_manifest() {
    let executor = executor();
    let sandbox = load(&executor, "sandbox").await;
    let m = &sandbox.manifest;
    assert_eq!(m.id, "sandbox");
    let access: Vec<_> = m
        .operations
        .iter()
        .map(|o| (o.name.as_str(), o.access))
        .collect();
    use airlock::Access::{Read, Write};
    assert_eq!(
        access,
        [
            ("list", Read),
            ("get", Read),
            ("create", Write),
            ("update", Write),
            ("delete", Write)
        ]
    );
    assert!(
        sandbox
            .imports
            .iter()
            .any(|i| i.starts_with("wasi:keyvalue/store"))
    );
    assert_eq!(sandbox.digest.len(), 64);
}

#[tokio::test]
async fn loading_uses_the_cache_on_second_load_and_recompiles_a_corrupt_entry() {
    let dir = tempfile::tempdir().unwrap();
    let options = ExecutorOptions {
        pool: PoolSize {
            max_concurrent_instances: 8,
            max_memory_bytes: 64 << 20,
        },
        cache_dir: Some(dir.path().to_path_buf()),
    };
    let first = Executor::new(options.clone())
        .unwrap()
        .load_file(&guest("panicker"))
        .await
        .unwrap();
    assert_eq!(first.load_source, LoadSource::Compiled);
    let second = Executor::new(options.clone())
        .unwrap()
        .load_file(&guest("panicker"))
        .await
        .unwrap();
    assert_eq!(second.load_source, LoadSource::Cache);
    assert_eq!(first.manifest, second.manifest);

    // A corrupted entry is discarded and recompiled, never executed.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not a compiled component").unwrap();
    }
    let third = Executor::new(options)
        .unwrap()
        .load_file(&guest("panicker"))
        .await
        .unwrap();
    assert_eq!(third.load_source, LoadSource::Compiled);
}
