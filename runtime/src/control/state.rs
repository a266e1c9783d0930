//! The state store: connectors, connections, grants, history and audit.
//!
//! [`StateStore`] is the interface; [`SqliteState`] is the embedded default (one file under the
//! data directory, created and migrated on first use). The migrations in `runtime/migrations/` are
//! written to run on PostgreSQL too, so a PostgreSQL backend implements the same trait with the
//! same migrations and passes the same tests (`tests/state.rs` is generic over the trait).
//! Every query that reads tenant data takes the tenant as part of its key.

use crate::capability::keyvalue::SqliteStore;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::str::FromStr;

/// The migrations, in order. Applied ones are recorded in `schema_migrations`.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "control plane",
        include_str!("../../migrations/0001_control_plane.sql"),
    ),
    (
        2,
        "connection egress",
        include_str!("../../migrations/0002_connection_egress.sql"),
    ),
    (
        3,
        "credentials",
        include_str!("../../migrations/0003_credentials.sql"),
    ),
    (
        4,
        "rate limit",
        include_str!("../../migrations/0004_rate_limit.sql"),
    ),
    (
        5,
        "read routes",
        include_str!("../../migrations/0005_read_routes.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store: {0}")]
    Storage(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StateError {
    fn from(e: sqlx::Error) -> Self {
        StateError::Storage(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StateError>;

/// A registered version of a connector.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConnectorRecord {
    pub tenant: String,
    pub id: String,
    pub version: String,
    pub digest: String,
    /// The manifest as JSON text, as read at registration.
    pub manifest: String,
    pub enabled: bool,
    pub registered_by: String,
    pub registered_at: i64,
}

/// One change to the registry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryEntry {
    pub seq: i64,
    pub connector: String,
    pub version: String,
    pub action: String,
    pub actor: String,
    pub at: i64,
    pub detail: serde_json::Value,
}

/// A tenant's configured instance of a connector.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConnectionRecord {
    pub tenant: String,
    pub name: String,
    pub connector: String,
    /// `None` follows the latest registered version.
    pub connector_version: Option<String>,
    #[serde(skip)]
    pub config_sealed: Vec<u8>,
    pub status: String,
    pub allowed_operations: Option<Vec<String>>,
    pub allowed_objects: Option<Vec<String>>,
    /// Operation -> role name, where higher than the default.
    pub required_roles: std::collections::BTreeMap<String, String>,
    pub writes_enabled: bool,
    pub limits: serde_json::Value,
    /// Egress grants, `scheme://host[:port][/path]`.
    pub egress: Vec<String>,
    /// Invocations per minute; `None`: no limit.
    pub queries_per_minute: Option<i64>,
    /// Whether the connector's declared read routes are honoured.
    pub accept_read_routes: bool,
    pub last_test_at: Option<i64>,
    pub last_test_ok: Option<bool>,
    pub last_test_message: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Increases with every change; caches compare it.
    pub revision: i64,
}

/// A stored credential: metadata and the sealed secret.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CredentialRecord {
    pub connection: String,
    pub name: String,
    pub kind: String,
    /// The placement as JSON (see `egress::credential::Placement`).
    pub placement: serde_json::Value,
    pub hosts: Vec<String>,
    #[serde(skip)]
    pub secret_sealed: Vec<u8>,
    pub created_by: String,
    pub created_at: i64,
    pub rotated_at: Option<i64>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Grant {
    pub connection: String,
    pub agent: String,
    pub operation: String,
    pub granted_by: String,
    pub granted_at: i64,
}

/// What the state store keeps. Implementations: [`SqliteState`]; PostgreSQL later.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Stores component bytes under their digest; storing the same digest again is a no-op.
    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()>;
    async fn get_component(&self, digest: &str) -> Result<Option<Vec<u8>>>;

    /// Inserts a connector version; a version already registered is a conflict.
    async fn insert_connector(&self, record: &ConnectorRecord) -> Result<()>;
    async fn connector_versions(&self, tenant: &str, id: &str) -> Result<Vec<ConnectorRecord>>;
    async fn list_connectors(&self, tenant: &str) -> Result<Vec<ConnectorRecord>>;
    /// Sets `enabled` on one version; returns false if there is no such version.
    async fn set_connector_enabled(
        &self,
        tenant: &str,
        id: &str,
        version: &str,
        enabled: bool,
    ) -> Result<bool>;
    /// Appends to the registry history, assigning the next sequence number.
    async fn append_history(&self, tenant: &str, entry: &HistoryEntry) -> Result<i64>;
    async fn history(&self, tenant: &str, connector: Option<&str>) -> Result<Vec<HistoryEntry>>;

    async fn insert_connection(&self, record: &ConnectionRecord) -> Result<()>;
    /// Replaces a connection if its revision is still `record.revision - 1`.
    async fn update_connection(&self, record: &ConnectionRecord) -> Result<()>;
    async fn get_connection(&self, tenant: &str, name: &str) -> Result<Option<ConnectionRecord>>;
    async fn list_connections(&self, tenant: &str) -> Result<Vec<ConnectionRecord>>;

    async fn put_grant(&self, tenant: &str, grant: &Grant) -> Result<()>;
    async fn delete_grant(
        &self,
        tenant: &str,
        connection: &str,
        agent: &str,
        operation: &str,
    ) -> Result<bool>;
    async fn has_grant(
        &self,
        tenant: &str,
        connection: &str,
        agent: &str,
        operation: &str,
    ) -> Result<bool>;
    async fn list_grants(&self, tenant: &str, connection: &str) -> Result<Vec<Grant>>;

    /// Creates or replaces a credential.
    async fn put_credential(&self, tenant: &str, record: &CredentialRecord) -> Result<()>;
    async fn list_credentials(
        &self,
        tenant: &str,
        connection: &str,
    ) -> Result<Vec<CredentialRecord>>;
    async fn delete_credential(&self, tenant: &str, connection: &str, name: &str) -> Result<bool>;

    /// Appends audit records (JSON), assigning consecutive sequence numbers; returns the last.
    async fn append_audit(&self, records: &[(i64, String, String)]) -> Result<i64>;
    /// The newest `limit` records of a tenant, oldest first.
    async fn list_audit(&self, tenant: &str, limit: i64) -> Result<Vec<(i64, String)>>;
}

pub struct SqliteState {
    pool: SqlitePool,
}

impl SqliteState {
    /// Opens (creating and migrating) the store at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StateError::Storage(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                StateError::Storage(format!("cannot open state store {}: {e}", path.display()))
            })?;
        let state = SqliteState { pool };
        state.migrate().await?;
        Ok(state)
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = async {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
            for (version, name, sql) in MIGRATIONS {
                let applied = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = ?1")
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await?
                    .is_some();
                if applied {
                    continue;
                }
                sqlx::raw_sql(sqlx::AssertSqlSafe(*sql)).execute(&mut *conn).await?;
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)")
                    .bind(version)
                    .bind(name)
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await?;
            }
            Ok::<(), sqlx::Error>(())
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut *conn).await?;
        result.map_err(|e| StateError::Storage(format!("migrating the state store: {e}")))
    }

    /// Key-value storage on the same database file.
    pub fn keyvalue(&self) -> SqliteStore {
        SqliteStore::from_pool(self.pool.clone())
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn json_list(text: Option<String>) -> Result<Option<Vec<String>>> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StateError::Corrupt(format!("stored list is not JSON: {e}")))
    })
    .transpose()
}

fn connector_row(r: &sqlx::sqlite::SqliteRow) -> ConnectorRecord {
    ConnectorRecord {
        tenant: r.get("tenant"),
        id: r.get("id"),
        version: r.get("version"),
        digest: r.get("digest"),
        manifest: r.get("manifest"),
        enabled: r.get("enabled"),
        registered_by: r.get("registered_by"),
        registered_at: r.get("registered_at"),
    }
}

fn connection_row(r: &sqlx::sqlite::SqliteRow) -> Result<ConnectionRecord> {
    let corrupt = |what: &str, e: serde_json::Error| {
        StateError::Corrupt(format!("stored {what} is not JSON: {e}"))
    };
    Ok(ConnectionRecord {
        tenant: r.get("tenant"),
        name: r.get("name"),
        connector: r.get("connector"),
        connector_version: r.get("connector_version"),
        config_sealed: r.get("config_sealed"),
        status: r.get("status"),
        allowed_operations: json_list(r.get("allowed_operations"))?,
        allowed_objects: json_list(r.get("allowed_objects"))?,
        required_roles: serde_json::from_str(r.get::<&str, _>("required_roles"))
            .map_err(|e| corrupt("roles", e))?,
        writes_enabled: r.get("writes_enabled"),
        limits: serde_json::from_str(r.get::<&str, _>("limits"))
            .map_err(|e| corrupt("limits", e))?,
        egress: serde_json::from_str(r.get::<&str, _>("egress"))
            .map_err(|e| corrupt("egress", e))?,
        queries_per_minute: r.get("queries_per_minute"),
        accept_read_routes: r.get("accept_read_routes"),
        last_test_at: r.get("last_test_at"),
        last_test_ok: r.get("last_test_ok"),
        last_test_message: r.get("last_test_message"),
        created_by: r.get("created_by"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        revision: r.get("revision"),
    })
}

fn list_text(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|l| serde_json::to_string(l).expect("strings serialize"))
}

#[async_trait::async_trait]
impl StateStore for SqliteState {
    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        sqlx::query("INSERT INTO components (digest, size, bytes) VALUES (?1, ?2, ?3) ON CONFLICT (digest) DO NOTHING")
            .bind(digest)
            .bind(bytes.len() as i64)
            .bind(bytes)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT bytes FROM components WHERE digest = ?1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("bytes")))
    }

    async fn insert_connector(&self, c: &ConnectorRecord) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO connectors (tenant, id, version, digest, manifest, enabled, registered_by, registered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(&c.tenant)
        .bind(&c.id)
        .bind(&c.version)
        .bind(&c.digest)
        .bind(&c.manifest)
        .bind(c.enabled)
        .bind(&c.registered_by)
        .bind(c.registered_at)
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StateError::Conflict(format!(
                    "connector {} version {} is already registered",
                    c.id, c.version
                )))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    async fn connector_versions(&self, tenant: &str, id: &str) -> Result<Vec<ConnectorRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM connectors WHERE tenant = ?1 AND id = ?2 ORDER BY registered_at",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(connector_row).collect())
    }

    async fn list_connectors(&self, tenant: &str) -> Result<Vec<ConnectorRecord>> {
        let rows =
            sqlx::query("SELECT * FROM connectors WHERE tenant = ?1 ORDER BY id, registered_at")
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(connector_row).collect())
    }

    async fn set_connector_enabled(
        &self,
        tenant: &str,
        id: &str,
        version: &str,
        enabled: bool,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE connectors SET enabled = ?4 WHERE tenant = ?1 AND id = ?2 AND version = ?3",
        )
        .bind(tenant)
        .bind(id)
        .bind(version)
        .bind(enabled)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn append_history(&self, tenant: &str, e: &HistoryEntry) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = async {
            let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 FROM connector_history WHERE tenant = ?1")
                .bind(tenant)
                .fetch_one(&mut *conn)
                .await?
                .get(0);
            sqlx::query(
                "INSERT INTO connector_history (tenant, seq, connector, version, action, actor, at, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .bind(tenant)
            .bind(seq)
            .bind(&e.connector)
            .bind(&e.version)
            .bind(&e.action)
            .bind(&e.actor)
            .bind(e.at)
            .bind(e.detail.to_string())
            .execute(&mut *conn)
            .await?;
            Ok::<i64, sqlx::Error>(seq)
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut *conn).await?;
        Ok(result?)
    }

    async fn history(&self, tenant: &str, connector: Option<&str>) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM connector_history WHERE tenant = ?1 AND (?2 IS NULL OR connector = ?2) ORDER BY seq",
        )
        .bind(tenant)
        .bind(connector)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryEntry {
                    seq: r.get("seq"),
                    connector: r.get("connector"),
                    version: r.get("version"),
                    action: r.get("action"),
                    actor: r.get("actor"),
                    at: r.get("at"),
                    detail: serde_json::from_str(r.get::<&str, _>("detail"))
                        .map_err(|e| StateError::Corrupt(format!("history detail: {e}")))?,
                })
            })
            .collect()
    }

    async fn insert_connection(&self, c: &ConnectionRecord) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO connections (tenant, name, connector, connector_version, config_sealed, status,
                allowed_operations, allowed_objects, required_roles, writes_enabled, limits, last_test_at,
                last_test_ok, last_test_message, created_by, created_at, updated_at, revision, egress, queries_per_minute, accept_read_routes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        )
        .bind(&c.tenant)
        .bind(&c.name)
        .bind(&c.connector)
        .bind(&c.connector_version)
        .bind(&c.config_sealed)
        .bind(&c.status)
        .bind(list_text(&c.allowed_operations))
        .bind(list_text(&c.allowed_objects))
        .bind(serde_json::to_string(&c.required_roles).expect("map serializes"))
        .bind(c.writes_enabled)
        .bind(c.limits.to_string())
        .bind(c.last_test_at)
        .bind(c.last_test_ok)
        .bind(&c.last_test_message)
        .bind(&c.created_by)
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.revision)
        .bind(serde_json::to_string(&c.egress).expect("strings serialize"))
        .bind(c.queries_per_minute)
        .bind(c.accept_read_routes)
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StateError::Conflict(format!(
                    "connection `{}` already exists; change it with `airlock connection update`",
                    c.name
                )))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    async fn update_connection(&self, c: &ConnectionRecord) -> Result<()> {
        let done = sqlx::query(
            "UPDATE connections SET connector = ?3, connector_version = ?4, config_sealed = ?5, status = ?6,
                allowed_operations = ?7, allowed_objects = ?8, required_roles = ?9, writes_enabled = ?10,
                limits = ?11, last_test_at = ?12, last_test_ok = ?13, last_test_message = ?14,
                updated_at = ?15, revision = ?16, egress = ?18, queries_per_minute = ?19, accept_read_routes = ?20
             WHERE tenant = ?1 AND name = ?2 AND revision = ?17",
        )
        .bind(&c.tenant)
        .bind(&c.name)
        .bind(&c.connector)
        .bind(&c.connector_version)
        .bind(&c.config_sealed)
        .bind(&c.status)
        .bind(list_text(&c.allowed_operations))
        .bind(list_text(&c.allowed_objects))
        .bind(serde_json::to_string(&c.required_roles).expect("map serializes"))
        .bind(c.writes_enabled)
        .bind(c.limits.to_string())
        .bind(c.last_test_at)
        .bind(c.last_test_ok)
        .bind(&c.last_test_message)
        .bind(c.updated_at)
        .bind(c.revision)
        .bind(c.revision - 1)
        .bind(serde_json::to_string(&c.egress).expect("strings serialize"))
        .bind(c.queries_per_minute)
        .bind(c.accept_read_routes)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StateError::Conflict(format!(
                "connection `{}` was changed by someone else meanwhile; reload it and try again",
                c.name
            )));
        }
        Ok(())
    }

    async fn get_connection(&self, tenant: &str, name: &str) -> Result<Option<ConnectionRecord>> {
        let row = sqlx::query("SELECT * FROM connections WHERE tenant = ?1 AND name = ?2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(connection_row).transpose()
    }

    async fn list_connections(&self, tenant: &str) -> Result<Vec<ConnectionRecord>> {
        let rows = sqlx::query("SELECT * FROM connections WHERE tenant = ?1 ORDER BY name")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(connection_row).collect()
    }

    async fn put_grant(&self, tenant: &str, g: &Grant) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_grants (tenant, connection, agent, operation, granted_by, granted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant, connection, agent, operation) DO NOTHING",
        )
        .bind(tenant)
        .bind(&g.connection)
        .bind(&g.agent)
        .bind(&g.operation)
        .bind(&g.granted_by)
        .bind(g.granted_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_grant(
        &self,
        tenant: &str,
        connection: &str,
        agent: &str,
        operation: &str,
    ) -> Result<bool> {
        let done = sqlx::query("DELETE FROM agent_grants WHERE tenant = ?1 AND connection = ?2 AND agent = ?3 AND operation = ?4")
            .bind(tenant)
            .bind(connection)
            .bind(agent)
            .bind(operation)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn has_grant(
        &self,
        tenant: &str,
        connection: &str,
        agent: &str,
        operation: &str,
    ) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM agent_grants WHERE tenant = ?1 AND connection = ?2 AND agent = ?3 AND operation = ?4")
            .bind(tenant)
            .bind(connection)
            .bind(agent)
            .bind(operation)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn list_grants(&self, tenant: &str, connection: &str) -> Result<Vec<Grant>> {
        let rows = sqlx::query("SELECT * FROM agent_grants WHERE tenant = ?1 AND connection = ?2 ORDER BY agent, operation")
            .bind(tenant)
            .bind(connection)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Grant {
                connection: r.get("connection"),
                agent: r.get("agent"),
                operation: r.get("operation"),
                granted_by: r.get("granted_by"),
                granted_at: r.get("granted_at"),
            })
            .collect())
    }

    async fn put_credential(&self, tenant: &str, c: &CredentialRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO credentials (tenant, connection, name, kind, placement, hosts, secret_sealed, created_by,
                created_at, rotated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (tenant, connection, name) DO UPDATE SET kind = excluded.kind, placement = excluded.placement,
                hosts = excluded.hosts, secret_sealed = excluded.secret_sealed, rotated_at = excluded.rotated_at,
                version = excluded.version",
        )
        .bind(tenant)
        .bind(&c.connection)
        .bind(&c.name)
        .bind(&c.kind)
        .bind(c.placement.to_string())
        .bind(serde_json::to_string(&c.hosts).expect("strings serialize"))
        .bind(&c.secret_sealed)
        .bind(&c.created_by)
        .bind(c.created_at)
        .bind(c.rotated_at)
        .bind(c.version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_credentials(
        &self,
        tenant: &str,
        connection: &str,
    ) -> Result<Vec<CredentialRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM credentials WHERE tenant = ?1 AND connection = ?2 ORDER BY name",
        )
        .bind(tenant)
        .bind(connection)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let corrupt =
                    |e: serde_json::Error| StateError::Corrupt(format!("stored credential: {e}"));
                Ok(CredentialRecord {
                    connection: r.get("connection"),
                    name: r.get("name"),
                    kind: r.get("kind"),
                    placement: serde_json::from_str(r.get::<&str, _>("placement"))
                        .map_err(corrupt)?,
                    hosts: serde_json::from_str(r.get::<&str, _>("hosts")).map_err(corrupt)?,
                    secret_sealed: r.get("secret_sealed"),
                    created_by: r.get("created_by"),
                    created_at: r.get("created_at"),
                    rotated_at: r.get("rotated_at"),
                    version: r.get("version"),
                })
            })
            .collect()
    }

    async fn delete_credential(&self, tenant: &str, connection: &str, name: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM credentials WHERE tenant = ?1 AND connection = ?2 AND name = ?3",
        )
        .bind(tenant)
        .bind(connection)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn append_audit(&self, records: &[(i64, String, String)]) -> Result<i64> {
        // IMMEDIATE: take the write lock before reading MAX(seq); a deferred transaction would fail
        // with SQLITE_BUSY (no busy wait) if another connection wrote in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM audit")
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        for (at, tenant, record) in records {
            seq += 1;
            sqlx::query("INSERT INTO audit (seq, at, tenant, record) VALUES (?1, ?2, ?3, ?4)")
                .bind(seq)
                .bind(at)
                .bind(tenant)
                .bind(record)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(seq)
    }

    async fn list_audit(&self, tenant: &str, limit: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT seq, record FROM audit WHERE tenant = ?1 ORDER BY seq DESC LIMIT ?2",
        )
        .bind(tenant)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(i64, String)> = rows
            .iter()
            .map(|r| (r.get("seq"), r.get("record")))
            .collect();
        out.reverse();
        Ok(out)
    }
}
