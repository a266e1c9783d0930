//! The key-value backends, called directly (no Wasm): both keep namespaces apart, page keys,
//! count atomically, and the embedded one persists.

use airlock::capability::keyvalue::{
    KeyValueStore, LIST_PAGE_SIZE, MemoryStore, Namespace, SqliteStore,
};
use std::sync::Arc;

fn ns(tenant: &str, connection: &str, bucket: &str) -> Namespace {
    Namespace {
        tenant: tenant.into(),
        connection: connection.into(),
        bucket: bucket.into(),
    }
}

async fn check_backend(store: Arc<dyn KeyValueStore>) {
    let a = ns("t1", "c1", "b");
    store.set(&a, "k", b"v1".to_vec()).await.unwrap();
    assert_eq!(store.get(&a, "k").await.unwrap(), Some(b"v1".to_vec()));
    // Every other namespace, including ones whose parts concatenate to the same string, is empty.
    for other in [
        ns("t2", "c1", "b"),
        ns("t1", "c2", "b"),
        ns("t1", "c1", "b2"),
        ns("t1c", "1", "b"),
        ns("t", "1c1", "b"),
    ] {
        assert_eq!(store.get(&other, "k").await.unwrap(), None, "{other:?}");
        assert!(!store.exists(&other, "k").await.unwrap());
        assert!(store.list_keys(&other, 0).await.unwrap().keys.is_empty());
    }
    store.delete(&ns("t2", "c1", "b"), "k").await.unwrap();
    assert!(
        store.exists(&a, "k").await.unwrap(),
        "a delete in another tenant removed the key"
    );

    // Paging.
    let many = ns("t1", "c1", "many");
    for i in 0..(LIST_PAGE_SIZE + 5) {
        store
            .set(&many, &format!("key-{i:05}"), vec![])
            .await
            .unwrap();
    }
    let first = store.list_keys(&many, 0).await.unwrap();
    assert_eq!(first.keys.len(), LIST_PAGE_SIZE);
    let second = store
        .list_keys(&many, first.cursor.expect("a second page"))
        .await
        .unwrap();
    assert_eq!(second.keys.len(), 5);
    assert_eq!(second.cursor, None);

    // Counters, including concurrent increments.
    let counters = ns("t1", "c1", "counters");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            store.increment(&counters, "n", 1).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.increment(&counters, "n", 0).await.unwrap(), 20);
    store
        .set(&counters, "text", b"not a number".to_vec())
        .await
        .unwrap();
    let err = store.increment(&counters, "text", 1).await.unwrap_err();
    assert!(
        err.to_string().contains("not a decimal u64 counter"),
        "{err}"
    );
    store
        .set(&counters, "max", u64::MAX.to_string().into_bytes())
        .await
        .unwrap();
    assert!(
        store
            .increment(&counters, "max", 1)
            .await
            .unwrap_err()
            .to_string()
            .contains("overflow")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyvalue_memory_backend() {
    check_backend(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyvalue_sqlite_backend_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.db");
    check_backend(Arc::new(SqliteStore::open(&path).await.unwrap())).await;
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        reopened.get(&ns("t1", "c1", "b"), "k").await.unwrap(),
        Some(b"v1".to_vec())
    );
}

#[tokio::test]
async fn keyvalue_sqlite_reports_an_unusable_path() {
    let err = SqliteStore::open(std::path::Path::new("/proc/no-such-dir/airlock.db"))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("cannot open key-value database /proc/no-such-dir/airlock.db"),
        "{err}"
    );
}
