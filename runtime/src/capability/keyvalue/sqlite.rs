//! The persistent backend on the embedded SQLite store: one file, created on first use.
//!
//! The namespace's parts are separate columns of the primary key, so a key is only ever compared
//! with keys of the same tenant, connection and bucket.

use super::backend::{
    BackendError, KeyPage, KeyValueStore, LIST_PAGE_SIZE, Namespace, add_to_counter,
};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::path::Path;
use std::str::FromStr;

/// The same table as the state store's migration creates, for a key-value file used on its own.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS keyvalue (
    tenant TEXT NOT NULL,
    connection TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (tenant, connection, bucket, key)
)";

pub struct SqliteStore {
    pool: SqlitePool,
    readers: Readers,
}

/// Point reads (`get`, `exists`) on the calling thread, through read-only connections of its
/// own. sqlx runs each SQLite connection on a worker thread, and a query is two hand-offs
/// between threads; on these VMs a hand-off to an idle core costs tens of microseconds, so a
/// guest's `get` took about 180 µs through sqlx against a few µs here, most of an embedded
/// invocation's time (docs/benchmarks.md). In WAL mode a reader never waits for a writer, so the
/// read does not block the async worker for longer than the lookup; writes stay on the pool, and
/// a write committed there is seen by the next read here.
struct Readers {
    path: std::path::PathBuf,
    idle: std::sync::Mutex<Vec<rusqlite::Connection>>,
}

/// Idle read connections kept; more are opened under load and closed after.
const IDLE_READERS: usize = 8;

fn read_failed(e: rusqlite::Error) -> BackendError {
    BackendError::Storage(e.to_string())
}

impl Readers {
    fn new(path: &Path) -> Self {
        Readers {
            path: path.to_path_buf(),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn connect(&self) -> Result<rusqlite::Connection, BackendError> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            BackendError::Storage(format!(
                "cannot open key-value database {} for reading: {e}",
                self.path.display()
            ))
        })?;
        // Only a WAL reset or recovery makes a reader wait, briefly.
        conn.busy_timeout(std::time::Duration::from_secs(1))
            .map_err(read_failed)?;
        Ok(conn)
    }

    /// Runs `read` on an idle connection (or a new one) and keeps it for the next read.
    fn read<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, BackendError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = read(&conn).map_err(read_failed);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

fn storage(e: sqlx::Error) -> BackendError {
    BackendError::Storage(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, BackendError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(storage)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A file on this machine does not go stale the way a network connection does: the
            // default liveness check before each use was a second round trip to the
            // connection's worker thread on every query.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| {
                BackendError::Storage(format!(
                    "cannot open key-value database {}: {e}",
                    path.display()
                ))
            })?;
        sqlx::query(SCHEMA).execute(&pool).await.map_err(storage)?;
        Ok(SqliteStore {
            pool,
            readers: Readers::new(path),
        })
    }

    /// Uses a pool whose database, the file at `path`, already has the `keyvalue` table (the
    /// state store's).
    pub fn from_pool(pool: SqlitePool, path: &Path) -> Self {
        SqliteStore {
            pool,
            readers: Readers::new(path),
        }
    }

    /// One point query on the reader path, with the namespace and key bound as `keyed` binds them.
    fn read_keyed<T>(
        &self,
        sql: &'static str,
        ns: &Namespace,
        key: &str,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, BackendError> {
        use rusqlite::OptionalExtension as _;
        self.readers.read(|conn| {
            conn.prepare_cached(sql)?
                .query_row(
                    rusqlite::params![&*ns.tenant, &*ns.connection, &*ns.bucket, key],
                    row,
                )
                .optional()
        })
    }

    fn keyed<'q>(
        sql: &'static str,
        ns: &'q Namespace,
        key: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        sqlx::query(sql)
            .bind(&*ns.tenant)
            .bind(&*ns.connection)
            .bind(&*ns.bucket)
            .bind(key)
    }
}

macro_rules! where_key {
    () => {
        " WHERE tenant = ?1 AND connection = ?2 AND bucket = ?3 AND key = ?4"
    };
}
const SELECT_VALUE: &str = concat!("SELECT value FROM keyvalue", where_key!());
const DELETE_KEY: &str = concat!("DELETE FROM keyvalue", where_key!());
const SELECT_EXISTS: &str = concat!("SELECT 1 FROM keyvalue", where_key!());
const UPSERT: &str =
    "INSERT INTO keyvalue (tenant, connection, bucket, key, value) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (tenant, connection, bucket, key) DO UPDATE SET value = excluded.value";

#[async_trait::async_trait]
impl KeyValueStore for SqliteStore {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.read_keyed(SELECT_VALUE, ns, key, |row| row.get::<_, Vec<u8>>(0))
    }

    async fn set(&self, ns: &Namespace, key: &str, value: Vec<u8>) -> Result<(), BackendError> {
        Self::keyed(UPSERT, ns, key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(())
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), BackendError> {
        Self::keyed(DELETE_KEY, ns, key)
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(())
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, BackendError> {
        Ok(self
            .read_keyed(SELECT_EXISTS, ns, key, |_| Ok(()))?
            .is_some())
    }

    async fn list_keys(&self, ns: &Namespace, cursor: u64) -> Result<KeyPage, BackendError> {
        // One extra row tells whether another page follows.
        let rows = sqlx::query(
            "SELECT key FROM keyvalue WHERE tenant = ?1 AND connection = ?2 AND bucket = ?3
             ORDER BY key LIMIT ?4 OFFSET ?5",
        )
        .bind(&*ns.tenant)
        .bind(&*ns.connection)
        .bind(&*ns.bucket)
        .bind(LIST_PAGE_SIZE as i64 + 1)
        .bind(cursor as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        let mut keys: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
        let more = keys.len() > LIST_PAGE_SIZE;
        keys.truncate(LIST_PAGE_SIZE);
        let cursor = more.then(|| cursor + LIST_PAGE_SIZE as u64);
        Ok(KeyPage { keys, cursor })
    }

    async fn increment(&self, ns: &Namespace, key: &str, delta: u64) -> Result<u64, BackendError> {
        // BEGIN IMMEDIATE takes the write lock before reading, so two increments cannot both
        // read the same old value.
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(storage)?;
        let result = async {
            let current = Self::keyed(SELECT_VALUE, ns, key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(storage)?
                .map(|r| r.get::<Vec<u8>, _>(0));
            let sum = add_to_counter(key, current.as_deref(), delta)?;
            Self::keyed(UPSERT, ns, key)
                .bind(sum.to_string().into_bytes())
                .execute(&mut *conn)
                .await
                .map_err(storage)?;
            Ok(sum)
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end)
            .execute(&mut *conn)
            .await
            .map_err(storage)?;
        result
    }
}
