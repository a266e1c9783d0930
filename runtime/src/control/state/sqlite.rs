//! [`SqliteState`]: the embedded default store, one SQLite file (WAL) under the data directory.

use super::*;
use crate::capability::keyvalue::SqliteStore;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::str::FromStr;

pub struct SqliteState {
    pool: SqlitePool,
    /// The database file, which the key-value store also reads directly.
    path: std::path::PathBuf,
    /// The database file's directory, where the audit spool lives.
    dir: Option<std::path::PathBuf>,
}

/// Audit rows per `INSERT` (six parameters each, well within SQLite's limit of 32,766).
const AUDIT_ROWS_PER_INSERT: usize = 128;

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
            // A file on this machine does not go stale the way a network connection does: the
            // default liveness check before each use was a second round trip to the
            // connection's worker thread on every query.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| {
                StateError::Storage(format!(
                    "cannot open state store {}: {}",
                    path.display(),
                    storage_message(&e)
                ))
            })?;
        let state = SqliteState {
            pool,
            path: path.to_path_buf(),
            dir: path.parent().map(Path::to_path_buf),
        };
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

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction on one pooled connection: committed if it
    /// succeeds, rolled back if it fails. A connection whose transaction cannot be ended (a
    /// failed COMMIT and ROLLBACK on a full disk) is closed rather than returned to the pool, so
    /// the next caller never inherits an open transaction. (sqlx's own `begin_with` left such a
    /// connection in the pool: "begin_with at non-zero transaction depth" on every later try.)
    async fn immediate<T>(
        &self,
        body: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> std::result::Result<T, sqlx::Error>,
    ) -> Result<T> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = body(&mut conn).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if let Err(end_error) = sqlx::query(end).execute(&mut *conn).await {
            // A failed COMMIT leaves the transaction open: roll it back, or give up on the
            // connection.
            let closed =
                result.is_ok() && sqlx::query("ROLLBACK").execute(&mut *conn).await.is_ok();
            if !closed {
                conn.close_on_drop();
            }
            return Err(match result {
                Err(e) => e.into(),
                Ok(_) => end_error.into(),
            });
        }
        result.map_err(Into::into)
    }

    /// Key-value storage on the same database file.
    pub fn keyvalue(&self) -> SqliteStore {
        SqliteStore::from_pool(self.pool.clone(), &self.path)
    }
}

fn api_token_row(r: &sqlx::sqlite::SqliteRow) -> Result<ApiTokenRecord> {
    let id: String = r.get("id");
    let record = format!("api token {id}");
    Ok(ApiTokenRecord {
        tenant: r.get("tenant"),
        kind: stored(&record, "kind", &r.get::<String, _>("kind"))?,
        subject: r.get("subject"),
        role: stored(&record, "role", &r.get::<String, _>("role"))?,
        secret_hash: r.get("secret_hash"),
        label: r.get("label"),
        created_by: r.get("created_by"),
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
        revoked_at: r.get("revoked_at"),
        revoked_by: r.get("revoked_by"),
        id,
    })
}

fn approval_row(r: &sqlx::sqlite::SqliteRow) -> Result<ApprovalRecord> {
    let id: String = r.get("id");
    let record = format!("approval {id}");
    Ok(ApprovalRecord {
        tenant: r.get("tenant"),
        connection: r.get("connection"),
        connector_digest: r.get("connector_digest"),
        operation: r.get("operation"),
        params_sealed: r.get("params_sealed"),
        action_hash: r.get("action_hash"),
        risk: stored(&record, "risk", &r.get::<String, _>("risk"))?,
        rationale: r.get("rationale"),
        requested_by: r.get("requested_by"),
        requester_kind: stored(
            &record,
            "requester_kind",
            &r.get::<String, _>("requester_kind"),
        )?,
        requester_role: stored(
            &record,
            "requester_role",
            &r.get::<String, _>("requester_role"),
        )?,
        requested_at: r.get("requested_at"),
        expires_at: r.get("expires_at"),
        status: stored(&record, "status", &r.get::<String, _>("status"))?,
        decided_by: r.get("decided_by"),
        decided_at: r.get("decided_at"),
        reason: r.get("reason"),
        lease_until: r.get("lease_until"),
        finished_at: r.get("finished_at"),
        output_sealed: r.get("output_sealed"),
        error: r.get("error"),
        preview: r.get("preview"),
        id,
    })
}

fn audit_row(r: &sqlx::sqlite::SqliteRow) -> AuditRow {
    AuditRow {
        seq: r.get("seq"),
        at: r.get("at"),
        tenant: r.get("tenant"),
        record: r.get("record"),
        prev_hash: r.get("prev_hash"),
        hash: r.get("hash"),
    }
}

fn key_rotation_row(r: &sqlx::sqlite::SqliteRow) -> KeyRotation {
    let status: String = r.get("status");
    KeyRotation {
        id: r.get("id"),
        from_key: r.get("from_key"),
        to_key: r.get("to_key"),
        started_by: r.get("started_by"),
        started_at: r.get("started_at"),
        resealed: r.get("resealed"),
        checkpoint: (status == "done").then(|| RotationCheckpoint {
            seq: r.get("seq"),
            hash: r.get("hash"),
            at: r.get("at"),
            signature: r.get("signature"),
            link: r.get("link"),
        }),
    }
}

fn breaker_row(r: &sqlx::sqlite::SqliteRow) -> Result<BreakerRecord> {
    let origin: String = r.get("origin");
    Ok(BreakerRecord {
        connection: r.get("connection"),
        state: stored(
            &format!("circuit breaker {origin}"),
            "state",
            &r.get::<String, _>("state"),
        )?,
        origin,
        until_ms: r.get("until_ms"),
        updated_at: r.get("updated_at"),
        failures: r.get("failures"),
    })
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
        status: stored(
            &format!("connection {}", r.get::<String, _>("name")),
            "status",
            &r.get::<String, _>("status"),
        )?,
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
        approval_policy: policy_column(r, "approval_policy")?,
        data_policy: policy_column(r, "data_policy")?,
        last_test_at: r.get("last_test_at"),
        last_test_ok: r.get("last_test_ok"),
        last_test_message: r.get("last_test_message"),
        created_by: r.get("created_by"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        revision: r.get("revision"),
    })
}

/// A nullable JSON policy column; NULL reads as JSON null (the defaults).
fn policy_column(r: &sqlx::sqlite::SqliteRow, column: &str) -> Result<serde_json::Value> {
    r.get::<Option<&str>, _>(column)
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| StateError::Corrupt(format!("stored {column} is not JSON: {e}")))
        .map(|v| v.unwrap_or(serde_json::Value::Null))
}

fn policy_text(policy: &serde_json::Value) -> Option<String> {
    (!policy.is_null()).then(|| policy.to_string())
}

/// A connection's columns, in the order [`bind_connection`] binds them: the one list both
/// statements are built from, so a new column cannot be written by one and forgotten by the
/// other.
const CONNECTION_COLUMNS: [&str; 23] = [
    "tenant",
    "name",
    "connector",
    "connector_version",
    "config_sealed",
    "status",
    "allowed_operations",
    "allowed_objects",
    "required_roles",
    "writes_enabled",
    "limits",
    "last_test_at",
    "last_test_ok",
    "last_test_message",
    "created_by",
    "created_at",
    "updated_at",
    "revision",
    "egress",
    "queries_per_minute",
    "accept_read_routes",
    "approval_policy",
    "data_policy",
];

/// Set once, never updated: the key and the creation.
const CONNECTION_FIXED: [&str; 4] = ["tenant", "name", "created_by", "created_at"];

static INSERT_CONNECTION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=CONNECTION_COLUMNS.len())
        .map(|i| format!("?{i}"))
        .collect();
    format!(
        "INSERT INTO connections ({}) VALUES ({})",
        CONNECTION_COLUMNS.join(", "),
        placeholders.join(", ")
    )
});

/// Every column but the fixed ones, where the stored revision is the one before (bound last).
static UPDATE_CONNECTION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let set: Vec<String> = CONNECTION_COLUMNS
        .iter()
        .enumerate()
        .filter(|(_, c)| !CONNECTION_FIXED.contains(c))
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect();
    format!(
        "UPDATE connections SET {} WHERE tenant = ?1 AND name = ?2 AND revision = ?{}",
        set.join(", "),
        CONNECTION_COLUMNS.len() + 1
    )
});

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds `c`'s values in [`CONNECTION_COLUMNS`]' order.
fn bind_connection<'q>(query: SqliteQuery<'q>, c: &ConnectionRecord) -> SqliteQuery<'q> {
    query
        .bind(c.tenant.clone())
        .bind(c.name.clone())
        .bind(c.connector.clone())
        .bind(c.connector_version.clone())
        .bind(c.config_sealed.clone())
        .bind(c.status.as_str())
        .bind(list_text(&c.allowed_operations))
        .bind(list_text(&c.allowed_objects))
        .bind(serde_json::to_string(&c.required_roles).expect("map serializes"))
        .bind(c.writes_enabled)
        .bind(c.limits.to_string())
        .bind(c.last_test_at)
        .bind(c.last_test_ok)
        .bind(c.last_test_message.clone())
        .bind(c.created_by.clone())
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.revision)
        .bind(serde_json::to_string(&c.egress).expect("strings serialize"))
        .bind(c.queries_per_minute)
        .bind(c.accept_read_routes)
        .bind(policy_text(&c.approval_policy))
        .bind(policy_text(&c.data_policy))
}

/// `(k, n)` rows of a grouped count.
async fn counts(pool: &sqlx::SqlitePool, query: &'static str) -> Result<Vec<(String, u64)>> {
    Ok(sqlx::query(query)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| (r.get("k"), r.get::<i64, _>("n").max(0) as u64))
        .collect())
}

/// The audit trail's last row.
const AUDIT_HEAD: &str = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";

fn audit_head(last: Option<sqlx::sqlite::SqliteRow>) -> AuditHead {
    last.map(|r| AuditHead {
        seq: r.get("seq"),
        hash: r.get("hash"),
    })
    .unwrap_or_default()
}

fn list_text(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|l| serde_json::to_string(l).expect("strings serialize"))
}

#[async_trait::async_trait]
impl RegistryStore for SqliteState {
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
}

#[async_trait::async_trait]
impl ConnectionStore for SqliteState {
    async fn insert_connection(&self, c: &ConnectionRecord) -> Result<()> {
        let result = bind_connection(sqlx::query(INSERT_CONNECTION.as_str()), c)
            .execute(&self.pool)
            .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StateError::Conflict(
                format!("connection `{}` already exists", c.name),
            )),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    async fn update_connection(&self, c: &ConnectionRecord) -> Result<()> {
        let done = bind_connection(sqlx::query(UPDATE_CONNECTION.as_str()), c)
            .bind(c.revision - 1)
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
}

#[async_trait::async_trait]
impl CredentialStore for SqliteState {
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
}

#[async_trait::async_trait]
impl ApprovalStore for SqliteState {
    async fn insert_approval(&self, a: &ApprovalRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO approvals (tenant, id, connection, connector_digest, operation, params_sealed, action_hash,
                risk, rationale, requested_by, requester_kind, requester_role, requested_at, expires_at, status, preview)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )
        .bind(&a.tenant)
        .bind(&a.id)
        .bind(&a.connection)
        .bind(&a.connector_digest)
        .bind(&a.operation)
        .bind(&a.params_sealed)
        .bind(&a.action_hash)
        .bind(a.risk.as_str())
        .bind(&a.rationale)
        .bind(&a.requested_by)
        .bind(a.requester_kind.as_str())
        .bind(a.requester_role.as_str())
        .bind(a.requested_at)
        .bind(a.expires_at)
        .bind(a.status.as_str())
        .bind(&a.preview)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn approval(&self, tenant: &str, id: &str) -> Result<Option<ApprovalRecord>> {
        let row = sqlx::query("SELECT * FROM approvals WHERE tenant = ?1 AND id = ?2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(approval_row).transpose()
    }

    async fn count_open_approvals(&self) -> Result<Vec<(String, u64)>> {
        counts(
            &self.pool,
            "SELECT status AS k, COUNT(*) AS n FROM approvals
             WHERE status IN ('pending', 'approved', 'executing') GROUP BY status ORDER BY status",
        )
        .await
    }

    async fn list_approvals(&self, tenant: &str, open_only: bool) -> Result<Vec<ApprovalRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM approvals WHERE tenant = ?1
               AND (?2 = 0 OR status IN ('pending', 'approved', 'executing'))
             ORDER BY requested_at DESC, id",
        )
        .bind(tenant)
        .bind(open_only)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(approval_row).collect()
    }

    async fn decide_approval(
        &self,
        tenant: &str,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE approvals SET status = ?3, decided_by = ?4, reason = ?5, decided_at = ?6
             WHERE tenant = ?1 AND id = ?2 AND status = 'pending' AND expires_at > ?6",
        )
        .bind(tenant)
        .bind(id)
        .bind(if approve { "approved" } else { "denied" })
        .bind(by)
        .bind(reason)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expire_approvals(&self, tenant: &str, now_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE approvals SET status = 'expired', finished_at = expires_at
             WHERE tenant = ?1 AND status = 'pending' AND expires_at <= ?2",
        )
        .bind(tenant)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn expire_all_approvals(&self, now_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE approvals SET status = 'expired', finished_at = expires_at
             WHERE status = 'pending' AND expires_at <= ?1",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn claim_approval(&self, tenant: &str, id: &str, lease_until: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE approvals SET status = 'executing', lease_until = ?3
             WHERE tenant = ?1 AND id = ?2 AND status = 'approved'",
        )
        .bind(tenant)
        .bind(id)
        .bind(lease_until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unclaim_approval(&self, tenant: &str, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE approvals SET status = 'approved', lease_until = NULL
             WHERE tenant = ?1 AND id = ?2 AND status = 'executing'",
        )
        .bind(tenant)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn finish_approval(
        &self,
        tenant: &str,
        id: &str,
        status: ApprovalStatus,
        output_sealed: Option<&[u8]>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE approvals SET status = ?3, output_sealed = ?4, error = ?5, finished_at = ?6
             WHERE tenant = ?1 AND id = ?2 AND status = 'executing'",
        )
        .bind(tenant)
        .bind(id)
        .bind(status.as_str())
        .bind(output_sealed)
        .bind(error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn approvals_to_resume(&self, now_ms: i64) -> Result<Vec<ApprovalRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM approvals
             WHERE status = 'approved' OR (status = 'executing' AND lease_until <= ?1)
             ORDER BY decided_at",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(approval_row).collect()
    }
}

#[async_trait::async_trait]
impl CoordinationStore for SqliteState {
    async fn breaker(
        &self,
        tenant: &str,
        connection: &str,
        origin: &str,
    ) -> Result<Option<BreakerRecord>> {
        let row = sqlx::query(
            "SELECT * FROM circuit_breakers WHERE tenant = ?1 AND connection = ?2 AND origin = ?3",
        )
        .bind(tenant)
        .bind(connection)
        .bind(origin)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(breaker_row).transpose()
    }

    async fn set_breaker(
        &self,
        tenant: &str,
        connection: &str,
        origin: &str,
        state: BreakerState,
        until_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO circuit_breakers (tenant, connection, origin, state, until_ms, updated_at, failures)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
             ON CONFLICT (tenant, connection, origin) DO UPDATE SET state = excluded.state,
                until_ms = excluded.until_ms, updated_at = excluded.updated_at, failures = 0",
        )
        .bind(tenant)
        .bind(connection)
        .bind(origin)
        .bind(state.as_str())
        .bind(until_ms)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn count_breaker_failure(
        &self,
        tenant: &str,
        connection: &str,
        origin: &str,
        threshold: u32,
        open_until_ms: i64,
    ) -> Result<BreakerRecord> {
        // Counted only while closed: an open or probing breaker is decided by its lease.
        let row = sqlx::query(
            "INSERT INTO circuit_breakers (tenant, connection, origin, state, until_ms, updated_at, failures)
             VALUES (?1, ?2, ?3, CASE WHEN ?4 <= 1 THEN 'open' ELSE 'closed' END,
                     CASE WHEN ?4 <= 1 THEN ?5 ELSE 0 END, ?6, 1)
             ON CONFLICT (tenant, connection, origin) DO UPDATE SET
                state = CASE WHEN circuit_breakers.state = 'closed' AND circuit_breakers.failures + 1 >= ?4
                             THEN 'open' ELSE circuit_breakers.state END,
                until_ms = CASE WHEN circuit_breakers.state = 'closed' AND circuit_breakers.failures + 1 >= ?4
                                THEN ?5 ELSE circuit_breakers.until_ms END,
                failures = CASE WHEN circuit_breakers.state = 'closed'
                                THEN circuit_breakers.failures + 1 ELSE circuit_breakers.failures END,
                updated_at = ?6
             RETURNING *",
        )
        .bind(tenant)
        .bind(connection)
        .bind(origin)
        .bind(i64::from(threshold))
        .bind(open_until_ms)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        breaker_row(&row)
    }

    async fn take_breaker_probe(
        &self,
        tenant: &str,
        connection: &str,
        origin: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool> {
        // One statement: the row changes for one caller only, whichever process it is in.
        let done = sqlx::query(
            "UPDATE circuit_breakers SET state = 'half-open', until_ms = ?5, updated_at = ?4
             WHERE tenant = ?1 AND connection = ?2 AND origin = ?3
               AND state IN ('open', 'half-open') AND until_ms <= ?4",
        )
        .bind(tenant)
        .bind(connection)
        .bind(origin)
        .bind(now_ms)
        .bind(lease_until_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_tripped_breakers(&self) -> Result<Vec<(String, u64)>> {
        counts(
            &self.pool,
            "SELECT state AS k, COUNT(*) AS n FROM circuit_breakers WHERE state <> 'closed' GROUP BY state ORDER BY state",
        )
        .await
    }

    async fn tripped_breakers(&self, tenant: &str) -> Result<Vec<BreakerRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM circuit_breakers WHERE tenant = ?1 AND state <> 'closed'
             ORDER BY connection, origin",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(breaker_row).collect()
    }

    async fn take_rate_token(
        &self,
        tenant: &str,
        connection: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<std::result::Result<(), i64>> {
        // A new bucket, or one whose limit changed, starts full.
        sqlx::query(
            "INSERT INTO rate_buckets (tenant, connection, per_minute, tokens, at_ms)
             VALUES (?1, ?2, ?3, ?3, ?4)
             ON CONFLICT (tenant, connection) DO UPDATE SET per_minute = excluded.per_minute,
                tokens = excluded.tokens, at_ms = excluded.at_ms
             WHERE rate_buckets.per_minute <> excluded.per_minute",
        )
        .bind(tenant)
        .bind(connection)
        .bind(i64::from(per_minute))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        // One statement refills and takes: SQLite runs writes one at a time, so two processes
        // can never both take the last token.
        macro_rules! refilled {
            () => {
                "MIN(per_minute, tokens + MAX(0, ?3 - at_ms) * per_minute / 60000.0)"
            };
        }
        let taken = sqlx::query(concat!(
            "UPDATE rate_buckets SET tokens = ",
            refilled!(),
            " - 1, at_ms = MAX(at_ms, ?3) WHERE tenant = ?1 AND connection = ?2 AND ",
            refilled!(),
            " >= 1"
        ))
        .bind(tenant)
        .bind(connection)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let tokens: f64 = sqlx::query_scalar(concat!(
            "SELECT ",
            refilled!(),
            " FROM rate_buckets WHERE tenant = ?1 AND connection = ?2"
        ))
        .bind(tenant)
        .bind(connection)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        let per_ms = f64::from(per_minute) / 60_000.0;
        Ok(Err(((1.0 - tokens) / per_ms).ceil().max(1.0) as i64))
    }

    async fn oauth_token(&self, key: &TokenKey<'_>) -> Result<Option<OAuthTokenRecord>> {
        let row = sqlx::query(
            "SELECT token_sealed, refresh_at_ms, lease_until_ms FROM oauth_tokens
             WHERE tenant = ?1 AND connection = ?2 AND credential = ?3 AND version = ?4",
        )
        .bind(key.tenant)
        .bind(key.connection)
        .bind(key.credential)
        .bind(key.version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| OAuthTokenRecord {
            token_sealed: r.get("token_sealed"),
            refresh_at_ms: r.get("refresh_at_ms"),
            lease_until_ms: r.get("lease_until_ms"),
        }))
    }

    async fn take_oauth_lease(
        &self,
        key: &TokenKey<'_>,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO oauth_tokens (tenant, connection, credential, version, token_sealed, refresh_at_ms, lease_until_ms)
             VALUES (?1, ?2, ?3, ?4, NULL, 0, ?6)
             ON CONFLICT (tenant, connection, credential, version) DO UPDATE SET lease_until_ms = ?6
             WHERE oauth_tokens.lease_until_ms <= ?5",
        )
        .bind(key.tenant)
        .bind(key.connection)
        .bind(key.credential)
        .bind(key.version)
        .bind(now_ms)
        .bind(until_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_oauth_lease(&self, key: &TokenKey<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE oauth_tokens SET lease_until_ms = 0
             WHERE tenant = ?1 AND connection = ?2 AND credential = ?3 AND version = ?4",
        )
        .bind(key.tenant)
        .bind(key.connection)
        .bind(key.credential)
        .bind(key.version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn put_oauth_token(
        &self,
        key: &TokenKey<'_>,
        token_sealed: &[u8],
        refresh_at_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO oauth_tokens (tenant, connection, credential, version, token_sealed, refresh_at_ms, lease_until_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
             ON CONFLICT (tenant, connection, credential, version) DO UPDATE SET
                token_sealed = excluded.token_sealed, refresh_at_ms = excluded.refresh_at_ms,
                lease_until_ms = 0",
        )
        .bind(key.tenant)
        .bind(key.connection)
        .bind(key.credential)
        .bind(key.version)
        .bind(token_sealed)
        .bind(refresh_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl AuditStore for SqliteState {
    async fn audit_head(&self) -> Result<AuditHead> {
        let last = sqlx::query(AUDIT_HEAD).fetch_optional(&self.pool).await?;
        Ok(audit_head(last))
    }

    async fn append_audit(&self, head: &AuditHead, rows: &[AuditRow]) -> Result<bool> {
        // IMMEDIATE: take the write lock before reading the last record; a deferred transaction
        // would fail with SQLITE_BUSY (no busy wait) if another connection wrote in between, and
        // two processes must never chain onto the same record.
        self.immediate(async |conn| {
            let last = sqlx::query(AUDIT_HEAD).fetch_optional(&mut *conn).await?;
            if audit_head(last) != *head {
                return Ok(false);
            }
            // One statement per chunk of rows, not per row: each statement is a round trip to
            // the connection's worker thread, and a busy server appends batches of hundreds.
            for chunk in rows.chunks(AUDIT_ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO audit (seq, at, tenant, record, prev_hash, hash) ",
                );
                insert.push_values(chunk, |mut values, row| {
                    values
                        .push_bind(row.seq)
                        .push_bind(row.at)
                        .push_bind(&row.tenant)
                        .push_bind(&row.record)
                        .push_bind(&row.prev_hash)
                        .push_bind(&row.hash);
                });
                insert.build().execute(&mut *conn).await?;
            }
            Ok(true)
        })
        .await
    }

    fn audit_spool_dir(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|d| d.join("audit-spool"))
    }

    async fn audit_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query("SELECT * FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(audit_row).collect())
    }

    async fn audit_range(
        &self,
        tenant: &str,
        since_ms: i64,
        until_ms: i64,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT * FROM audit WHERE tenant = ?1 AND at >= ?2 AND at < ?3 AND seq > ?4
             ORDER BY seq LIMIT ?5",
        )
        .bind(tenant)
        .bind(since_ms)
        .bind(until_ms)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(audit_row).collect())
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

    async fn append_checkpoint(&self, c: &Checkpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at, signature, key_id) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (seq) DO NOTHING",
        )
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.at)
        .bind(&c.signature)
        .bind(&c.key_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let rows = sqlx::query("SELECT * FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Checkpoint {
                seq: r.get("seq"),
                hash: r.get("hash"),
                at: r.get("at"),
                signature: r.get("signature"),
                key_id: r.get("key_id"),
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl SealedStore for SqliteState {
    async fn sealed_values(
        &self,
        after: Option<&SealedValue>,
        limit: i64,
    ) -> Result<Vec<SealedValue>> {
        let mut out = Vec::new();
        for kind in SealedKind::ALL {
            if after.is_some_and(|a| kind < a.kind) {
                continue;
            }
            let left = limit - out.len() as i64;
            if left <= 0 {
                break;
            }
            // Rows after the cursor within its own kind; every row of the kinds after it.
            let from = after.filter(|a| a.kind == kind);
            let sql = match kind {
                SealedKind::ConnectionConfig => {
                    "SELECT tenant, name AS connection, name, config_sealed AS sealed FROM connections
                     WHERE ?1 IS NULL OR (tenant, name) > (?1, ?3) ORDER BY tenant, name LIMIT ?4"
                }
                SealedKind::Credential => {
                    "SELECT tenant, connection, name, secret_sealed AS sealed FROM credentials
                     WHERE ?1 IS NULL OR (tenant, connection, name) > (?1, ?2, ?3)
                     ORDER BY tenant, connection, name LIMIT ?4"
                }
                SealedKind::ApprovalParams => {
                    "SELECT tenant, connection, id AS name, params_sealed AS sealed FROM approvals
                     WHERE ?1 IS NULL OR (tenant, id) > (?1, ?3) ORDER BY tenant, id LIMIT ?4"
                }
                SealedKind::ApprovalOutput => {
                    "SELECT tenant, connection, id AS name, output_sealed AS sealed FROM approvals
                     WHERE output_sealed IS NOT NULL AND (?1 IS NULL OR (tenant, id) > (?1, ?3))
                     ORDER BY tenant, id LIMIT ?4"
                }
            };
            let rows = sqlx::query(sql)
                .bind(from.map(|a| a.tenant.as_str()))
                .bind(from.map(|a| a.connection.as_str()))
                .bind(from.map(|a| a.name.as_str()))
                .bind(left)
                .fetch_all(&self.pool)
                .await?;
            out.extend(rows.iter().map(|r| SealedValue {
                kind,
                tenant: r.get("tenant"),
                connection: r.get("connection"),
                name: r.get("name"),
                sealed: r.get("sealed"),
            }));
        }
        Ok(out)
    }

    async fn reseal(&self, rotation: i64, changes: &[(SealedValue, Vec<u8>)]) -> Result<Vec<bool>> {
        self.immediate(async |conn| {
            let mut made = Vec::with_capacity(changes.len());
            for (old, new) in changes {
                // Compare-and-set on the sealed bytes: a value another process replaced since it
                // was read keeps the newer value.
                let sql = match old.kind {
                    SealedKind::ConnectionConfig => {
                        "UPDATE connections SET config_sealed = ?5
                         WHERE tenant = ?1 AND name = ?3 AND config_sealed = ?4 AND ?2 = name"
                    }
                    SealedKind::Credential => {
                        "UPDATE credentials SET secret_sealed = ?5
                         WHERE tenant = ?1 AND connection = ?2 AND name = ?3 AND secret_sealed = ?4"
                    }
                    SealedKind::ApprovalParams => {
                        "UPDATE approvals SET params_sealed = ?5
                         WHERE tenant = ?1 AND connection = ?2 AND id = ?3 AND params_sealed = ?4"
                    }
                    SealedKind::ApprovalOutput => {
                        "UPDATE approvals SET output_sealed = ?5
                         WHERE tenant = ?1 AND connection = ?2 AND id = ?3 AND output_sealed = ?4"
                    }
                };
                let done = sqlx::query(sql)
                    .bind(&old.tenant)
                    .bind(&old.connection)
                    .bind(&old.name)
                    .bind(&old.sealed)
                    .bind(new)
                    .execute(&mut *conn)
                    .await?;
                made.push(done.rows_affected() == 1);
            }
            sqlx::query("UPDATE key_rotations SET resealed = resealed + ?2 WHERE id = ?1")
                .bind(rotation)
                .bind(made.iter().filter(|m| **m).count() as i64)
                .execute(&mut *conn)
                .await?;
            Ok(made)
        })
        .await
    }

    async fn key_rotations(&self) -> Result<Vec<KeyRotation>> {
        let rows = sqlx::query("SELECT * FROM key_rotations ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(key_rotation_row).collect())
    }

    async fn begin_key_rotation(
        &self,
        from_key: &str,
        to_key: &str,
        by: &str,
        at: i64,
    ) -> Result<KeyRotation> {
        let inserted = self
            .immediate(async |conn| {
                let id: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 FROM key_rotations")
                    .fetch_one(&mut *conn)
                    .await?
                    .get(0);
                sqlx::query(
                    "INSERT INTO key_rotations (id, from_key, to_key, status, started_by, started_at, resealed)
                     VALUES (?1, ?2, ?3, 'resealing', ?4, ?5, 0)",
                )
                .bind(id)
                .bind(from_key)
                .bind(to_key)
                .bind(by)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map(|_| id)
            })
            .await;
        let id = match inserted {
            Err(StateError::Storage(m)) if m.contains("UNIQUE constraint failed") => {
                return Err(StateError::Conflict(
                    "another key rotation is under way; let it finish, or run it again to resume it".into(),
                ));
            }
            other => other?,
        };
        Ok(KeyRotation {
            id,
            from_key: from_key.into(),
            to_key: to_key.into(),
            started_by: by.into(),
            started_at: at,
            resealed: 0,
            checkpoint: None,
        })
    }

    async fn finish_key_rotation(&self, id: i64, c: &RotationCheckpoint) -> Result<()> {
        self.immediate(async |conn| {
            sqlx::query(
                "UPDATE key_rotations SET status = 'done', seq = ?2, hash = ?3, at = ?4, signature = ?5, link = ?6
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(c.seq)
            .bind(&c.hash)
            .bind(c.at)
            .bind(&c.signature)
            .bind(&c.link)
            .execute(&mut *conn)
            .await?;
            // Shared OAuth2 tokens are a cache sealed under the old key: dropped, fetched again.
            sqlx::query("DELETE FROM oauth_tokens")
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
        .await
    }

    async fn resign_checkpoints(
        &self,
        checkpoints: &[Checkpoint],
        rotations: &[(i64, String)],
    ) -> Result<()> {
        self.immediate(async |conn| {
            for c in checkpoints {
                sqlx::query(
                    "UPDATE audit_checkpoints SET signature = ?2, key_id = ?3 WHERE seq = ?1",
                )
                .bind(c.seq)
                .bind(&c.signature)
                .bind(&c.key_id)
                .execute(&mut *conn)
                .await?;
            }
            for (id, signature) in rotations {
                sqlx::query("UPDATE key_rotations SET signature = ?2 WHERE id = ?1")
                    .bind(id)
                    .bind(signature)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait::async_trait]
impl AccessStore for SqliteState {
    async fn insert_api_token(&self, t: &ApiTokenRecord) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO api_tokens (id, tenant, kind, subject, role, secret_hash, label, created_by,
                created_at, expires_at, revoked_at, revoked_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .bind(&t.id)
        .bind(&t.tenant)
        .bind(t.kind.as_str())
        .bind(&t.subject)
        .bind(t.role.as_str())
        .bind(&t.secret_hash)
        .bind(&t.label)
        .bind(&t.created_by)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.revoked_at)
        .bind(&t.revoked_by)
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StateError::Conflict(
                format!("an API token with id `{}` exists", t.id),
            )),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    async fn api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>> {
        sqlx::query("SELECT * FROM api_tokens WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(api_token_row)
            .transpose()
    }

    async fn list_api_tokens(&self, tenant: &str) -> Result<Vec<ApiTokenRecord>> {
        sqlx::query("SELECT * FROM api_tokens WHERE tenant = ?1 ORDER BY created_at DESC, id")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(api_token_row)
            .collect()
    }

    async fn revoke_api_token(&self, tenant: &str, id: &str, by: &str, at: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = ?3, revoked_by = ?4
             WHERE tenant = ?1 AND id = ?2 AND revoked_at IS NULL",
        )
        .bind(tenant)
        .bind(id)
        .bind(at)
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
