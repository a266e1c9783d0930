//! The state store: connectors, connections, grants, credentials, approvals, history, audit and
//! key rotations.
//!
//! The interface is eight narrow traits ([`RegistryStore`], [`ConnectionStore`],
//! [`CredentialStore`], [`ApprovalStore`], [`CoordinationStore`], [`AuditStore`],
//! [`SealedStore`], [`AccessStore`]), and [`StateStore`] for all of them; [`SqliteState`] is the embedded default
//! (one file under the data directory, created and migrated on first use). The migrations in
//! `runtime/migrations/` are written to run on PostgreSQL too, so a PostgreSQL backend implements
//! the same traits with the same migrations and passes the same contract tests (`tests/state.rs`,
//! one per trait, generic over the backend). Every query that reads tenant data takes the tenant
//! as part of its key.

mod sqlite;

pub use sqlite::SqliteState;

/// The migrations, in order. Applied ones are recorded in `schema_migrations`.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "control plane",
        include_str!("../../../migrations/0001_control_plane.sql"),
    ),
    (
        2,
        "connection egress",
        include_str!("../../../migrations/0002_connection_egress.sql"),
    ),
    (
        3,
        "credentials",
        include_str!("../../../migrations/0003_credentials.sql"),
    ),
    (
        4,
        "rate limit",
        include_str!("../../../migrations/0004_rate_limit.sql"),
    ),
    (
        5,
        "read routes",
        include_str!("../../../migrations/0005_read_routes.sql"),
    ),
    (
        6,
        "circuit breakers",
        include_str!("../../../migrations/0006_circuit_breakers.sql"),
    ),
    (
        7,
        "audit chain",
        include_str!("../../../migrations/0007_audit_chain.sql"),
    ),
    (
        8,
        "approvals",
        include_str!("../../../migrations/0008_approvals.sql"),
    ),
    (
        9,
        "data policy",
        include_str!("../../../migrations/0009_data_policy.sql"),
    ),
    (
        10,
        "approval preview",
        include_str!("../../../migrations/0010_approval_preview.sql"),
    ),
    (
        11,
        "rate buckets",
        include_str!("../../../migrations/0011_rate_buckets.sql"),
    ),
    (
        12,
        "shared protection state",
        include_str!("../../../migrations/0012_shared_protection.sql"),
    ),
    (
        13,
        "key rotation",
        include_str!("../../../migrations/0013_key_rotation.sql"),
    ),
    (
        14,
        "api tokens",
        include_str!("../../../migrations/0014_api_tokens.sql"),
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
        StateError::Storage(storage_message(&e))
    }
}

/// A database error in words an operator can act on. SQLite reports a full disk as
/// `SQLITE_FULL` (13) or, when the WAL's shared memory cannot grow, as one of the `SQLITE_IOERR`
/// family (10, e.g. 4874): both say "disk I/O error (code N)", which names neither cause nor fix.
pub(crate) fn storage_message(e: &sqlx::Error) -> String {
    let code = match e {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i64>().ok()),
        _ => None,
    };
    match code.map(|c| (c, c & 0xff)) {
        Some((code, 13)) => format!(
            "the disk holding the state store is full (SQLite code {code}); free space on it or move the data directory to a larger disk"
        ),
        Some((code, 10)) => format!(
            "the state store could not read or write its files (SQLite code {code}, an I/O error: most often a full disk, \
             else a failing or unmounted one); free space on the disk holding the data directory and retry"
        ),
        Some((code, 8)) => format!(
            "the state store is read-only (SQLite code {code}); check the permissions of the data directory and its files"
        ),
        _ => e.to_string(),
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ConnectionRecord {
    pub tenant: String,
    pub name: String,
    pub connector: String,
    /// `None` follows the latest registered version.
    pub connector_version: Option<String>,
    #[serde(skip)]
    pub config_sealed: Vec<u8>,
    pub status: ConnectionStatus,
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
    /// The approval policy as JSON (see `control::policies::ApprovalPolicy`); null: defaults.
    pub approval_policy: serde_json::Value,
    /// Classification, masking and caching as JSON (see `control::shaping::DataPolicy`).
    pub data_policy: serde_json::Value,
    pub last_test_at: Option<i64>,
    pub last_test_ok: Option<bool>,
    pub last_test_message: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Increases with every change; caches compare it.
    pub revision: i64,
}

/// An API token as stored: who it stands for, and a hash of its secret (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ApiTokenRecord {
    /// Public: names the token in lists, audit records and revocations.
    pub id: String,
    pub tenant: String,
    pub kind: crate::control::PrincipalKind,
    /// The user or agent it stands for.
    pub subject: String,
    pub role: crate::invocation::Role,
    /// SHA-256 of the secret part, hex.
    #[serde(skip)]
    pub secret_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// A stored credential: metadata and the sealed secret.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Grant {
    pub connection: String,
    pub agent: String,
    pub operation: String,
    pub granted_by: String,
    pub granted_at: i64,
}

/// One stored audit record with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub tenant: String,
    pub record: String,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// A signed statement that the chain reached `hash` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at: i64,
    pub signature: String,
    /// The id of the master key that signed it (see `vault::KeyId`); absent in checkpoints
    /// signed before key ids. Not signed itself: it only says which key to blame in a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// Which sealed column a value lives in. A pass over sealed values goes kind by kind, in this
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SealedKind {
    /// `connections.config_sealed`
    ConnectionConfig,
    /// `credentials.secret_sealed`
    Credential,
    /// `approvals.params_sealed`
    ApprovalParams,
    /// `approvals.output_sealed`, where there is one
    ApprovalOutput,
}

impl SealedKind {
    pub const ALL: [SealedKind; 4] = [
        SealedKind::ConnectionConfig,
        SealedKind::Credential,
        SealedKind::ApprovalParams,
        SealedKind::ApprovalOutput,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SealedKind::ConnectionConfig => "connection config",
            SealedKind::Credential => "credential",
            SealedKind::ApprovalParams => "approval params",
            SealedKind::ApprovalOutput => "approval output",
        }
    }
}

/// One sealed value and the row it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub kind: SealedKind,
    pub tenant: String,
    pub connection: String,
    /// The credential's name or the approval's id; for a connection's config, the connection's
    /// name again.
    pub name: String,
    pub sealed: Vec<u8>,
}

/// A rotation of the master key (see `control::keys`), identified by key ids, never keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyRotation {
    pub id: i64,
    pub from_key: String,
    pub to_key: String,
    pub started_by: String,
    pub started_at: i64,
    /// Values re-sealed so far, over every run of this rotation.
    pub resealed: i64,
    /// Set when the rotation is done.
    pub checkpoint: Option<RotationCheckpoint>,
}

/// The end of a rotation, in the audit trail's terms: the old key verified the chain through
/// `seq` (whose hash is `hash`); `signature` is the new key's over all of it
/// (`audit::rotation_message`), `link` the old key's over the new key's id and the position
/// (`audit::link_message`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RotationCheckpoint {
    pub seq: i64,
    pub hash: String,
    pub at: i64,
    pub signature: String,
    pub link: String,
}

/// An approval request as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ApprovalRecord {
    pub tenant: String,
    pub id: String,
    pub connection: String,
    pub connector_digest: String,
    pub operation: String,
    #[serde(skip)]
    pub params_sealed: Vec<u8>,
    pub action_hash: String,
    pub risk: crate::manifest::Risk,
    pub rationale: Option<String>,
    pub requested_by: String,
    pub requester_kind: crate::control::PrincipalKind,
    #[serde(serialize_with = "lowercase_role")]
    #[schema(value_type = String)]
    pub requester_role: crate::Role,
    pub requested_at: i64,
    pub expires_at: i64,
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
    pub lease_until: Option<i64>,
    pub finished_at: Option<i64>,
    #[serde(skip)]
    pub output_sealed: Option<Vec<u8>>,
    pub error: Option<String>,
    /// The dry run's effects and answer, as JSON text (secrets never in it).
    #[serde(skip)]
    pub preview: Option<String>,
}

/// A connection's state: created and untested, last test passed or failed, or disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionStatus {
    New,
    Connected,
    Error,
    Disabled,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::New => "new",
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::Error => "error",
            ConnectionStatus::Disabled => "disabled",
        }
    }
}

impl std::fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ConnectionStatus {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        Ok(match text {
            "new" => ConnectionStatus::New,
            "connected" => ConnectionStatus::Connected,
            "error" => ConnectionStatus::Error,
            "disabled" => ConnectionStatus::Disabled,
            other => {
                return Err(format!(
                    "unknown connection status `{}`",
                    other.escape_debug()
                ));
            }
        })
    }
}

/// Compares with the stored name (`status == "disabled"`).
impl PartialEq<&str> for ConnectionStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A circuit breaker's state as every process sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BreakerState {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        Ok(match text {
            "closed" => BreakerState::Closed,
            "open" => BreakerState::Open,
            "half-open" => BreakerState::HalfOpen,
            other => {
                return Err(format!("unknown breaker state `{}`", other.escape_debug()));
            }
        })
    }
}

/// Compares with the stored name (`state == "open"`).
impl PartialEq<&str> for BreakerState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

fn lowercase_role<S: serde::Serializer>(
    role: &crate::Role,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}

/// Where an approval request is in its life. Each change is one conditional update (see
/// `control::approvals`): pending -> approved | denied | expired; approved -> executing ->
/// executed | failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    Executing,
    Executed,
    Failed,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Executing => "executing",
            ApprovalStatus::Executed => "executed",
            ApprovalStatus::Failed => "failed",
        }
    }

    /// Nothing moves a request out of these.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ApprovalStatus::Denied
                | ApprovalStatus::Expired
                | ApprovalStatus::Executed
                | ApprovalStatus::Failed
        )
    }
}

/// Compares with the stored name (`status == "pending"`).
impl PartialEq<&str> for ApprovalStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ApprovalStatus {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        Ok(match text {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            "executing" => ApprovalStatus::Executing,
            "executed" => ApprovalStatus::Executed,
            "failed" => ApprovalStatus::Failed,
            other => {
                return Err(format!(
                    "unknown approval status `{}`",
                    other.escape_debug()
                ));
            }
        })
    }
}

/// Reads a stored enum, or says which record holds a value this version does not know: never a
/// silent default (an unknown risk once read as critical, an unknown kind as a user).
pub fn stored<T: std::str::FromStr<Err = String>>(
    record: &str,
    field: &str,
    text: &str,
) -> Result<T> {
    text.parse()
        .map_err(|e: String| StateError::Corrupt(format!("{record}: {field}: {e}")))
}

/// A circuit breaker's shared state (see `egress::resilience`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct BreakerRecord {
    pub connection: String,
    pub origin: String,
    pub state: BreakerState,
    /// Open: when one probe may go. Half-open: when the probe's lease ends.
    pub until_ms: i64,
    pub updated_at: i64,
    /// Consecutive failures counted by every process while closed.
    pub failures: i64,
}

/// A connection credential's OAuth2 access token as every process shares it.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthTokenRecord {
    pub token_sealed: Option<Vec<u8>>,
    pub refresh_at_ms: i64,
    pub lease_until_ms: i64,
}

/// Which credential a shared OAuth2 token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey<'a> {
    pub tenant: &'a str,
    pub connection: &'a str,
    pub credential: &'a str,
    pub version: i64,
}

// The state store, as narrow traits a backend implements one by one (SQLite embedded; PostgreSQL
// next, with Redis able to take `CoordinationStore`). Each has its contract test, generic over
// the backend (`tests/state.rs`). Code that needs all of it takes a `StateStore`.

/// The connector registry: component bytes by digest, versions per tenant, and their history.
#[async_trait::async_trait]
pub trait RegistryStore: Send + Sync + 'static {
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
}

/// Tenants' connections and the agents' grants on them.
#[async_trait::async_trait]
pub trait ConnectionStore: Send + Sync + 'static {
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
}

/// Connections' credentials, sealed.
#[async_trait::async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// Creates or replaces a credential.
    async fn put_credential(&self, tenant: &str, record: &CredentialRecord) -> Result<()>;

    async fn list_credentials(
        &self,
        tenant: &str,
        connection: &str,
    ) -> Result<Vec<CredentialRecord>>;

    async fn delete_credential(&self, tenant: &str, connection: &str, name: &str) -> Result<bool>;
}

/// Approval requests. Every status change is one conditional update: true for exactly one caller,
/// in whichever process.
#[async_trait::async_trait]
pub trait ApprovalStore: Send + Sync + 'static {
    async fn insert_approval(&self, record: &ApprovalRecord) -> Result<()>;

    async fn approval(&self, tenant: &str, id: &str) -> Result<Option<ApprovalRecord>>;

    /// A tenant's requests, newest first; `open_only`: pending, approved and executing ones.
    async fn list_approvals(&self, tenant: &str, open_only: bool) -> Result<Vec<ApprovalRecord>>;

    /// Moves a pending, unexpired request to `approved` or `denied`: true for exactly one caller.
    async fn decide_approval(
        &self,
        tenant: &str,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<bool>;

    /// Marks pending requests past their expiry `expired` (for good: nothing moves them back).
    async fn expire_approvals(&self, tenant: &str, now_ms: i64) -> Result<u64>;

    /// [`ApprovalStore::expire_approvals`] for every tenant (the control plane's background work).
    async fn expire_all_approvals(&self, now_ms: i64) -> Result<u64>;

    /// Takes an approved request to run it (`approved` -> `executing`, leased until
    /// `lease_until`): true for exactly one caller, in whichever process.
    async fn claim_approval(&self, tenant: &str, id: &str, lease_until: i64) -> Result<bool>;

    /// Gives a claimed request back (`executing` -> `approved`) when its action did not start,
    /// so that it runs later.
    async fn unclaim_approval(&self, tenant: &str, id: &str) -> Result<()>;

    /// Records how an execution ended (`executed` or `failed`).
    async fn finish_approval(
        &self,
        tenant: &str,
        id: &str,
        status: ApprovalStatus,
        output_sealed: Option<&[u8]>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()>;

    /// Approved requests not yet started, and executions whose lease ran out, in every tenant.
    async fn approvals_to_resume(&self, now_ms: i64) -> Result<Vec<ApprovalRecord>>;
    /// Open requests (pending, approved, executing) across tenants, by status: for metrics.
    async fn count_open_approvals(&self) -> Result<Vec<(String, u64)>>;
}

/// What processes serving the same connections share while they run: circuit breakers, rate-limit
/// buckets and OAuth2 tokens with their fetch leases. Small, hot and each step atomic: the part a
/// Redis backend can take.
#[async_trait::async_trait]
pub trait CoordinationStore: Send + Sync + 'static {
    /// One circuit breaker's shared state.
    async fn breaker(
        &self,
        tenant: &str,
        connection: &str,
        origin: &str,
    ) -> Result<Option<BreakerRecord>>;

    /// Sets a breaker's state (`closed` or `open` until `until_ms`).
    async fn set_breaker(
        &self,
        tenant: &str,
        connection: &str,
        origin: &str,
        state: BreakerState,
        until_ms: i64,
    ) -> Result<()>;

    /// Counts a failure against a closed breaker, opening it until `open_until_ms` when the
    /// count reaches `threshold`, in one statement (any number of processes count together).
    /// Returns the breaker as it now is.
    async fn count_breaker_failure(
        &self,
        tenant: &str,
        connection: &str,
        origin: &str,
        threshold: u32,
        open_until_ms: i64,
    ) -> Result<BreakerRecord>;

    /// Takes the one probe of an open circuit whose cooldown has passed, or of a half-open one
    /// whose probe's lease has run out: true for exactly one caller across all processes.
    async fn take_breaker_probe(
        &self,
        tenant: &str,
        connection: &str,
        origin: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool>;

    /// A tenant's breakers that are not closed.
    async fn tripped_breakers(&self, tenant: &str) -> Result<Vec<BreakerRecord>>;
    /// Breakers that are not closed across tenants, by state: for metrics.
    async fn count_tripped_breakers(&self) -> Result<Vec<(String, u64)>>;

    /// Takes one token from the connection's bucket (`per_minute` tokens, refilling
    /// continuously; a bucket whose limit changed starts full), atomically across processes.
    /// `Err(wait_ms)`: empty, and how long until a token is there.
    async fn take_rate_token(
        &self,
        tenant: &str,
        connection: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<std::result::Result<(), i64>>;

    /// The shared OAuth2 token of a credential version, if any process stored one.
    async fn oauth_token(&self, key: &TokenKey<'_>) -> Result<Option<OAuthTokenRecord>>;

    /// Takes the right to fetch a token until `until_ms`, if nobody holds it at `now_ms`: true
    /// for exactly one caller.
    async fn take_oauth_lease(
        &self,
        key: &TokenKey<'_>,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool>;

    /// Frees the lease (a fetch failed), keeping any stored token.
    async fn release_oauth_lease(&self, key: &TokenKey<'_>) -> Result<()>;

    /// Stores a fetched token and frees the lease.
    async fn put_oauth_token(
        &self,
        key: &TokenKey<'_>,
        token_sealed: &[u8],
        refresh_at_ms: i64,
    ) -> Result<()>;
}

/// The audit trail: rows appended at the head only, conditionally, so writers in any number of
/// processes chain onto each other and never fork the chain. The hashes are computed above the
/// backend (`audit::chain_rows`); the backend stores and reads.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// The last stored record: its sequence number and hash (`(0, None)` for an empty trail;
    /// no hash for a record that predates the chain).
    async fn audit_head(&self) -> Result<AuditHead>;

    /// Appends `rows`, numbered and chained by the caller after `head`, if the last stored
    /// record is still `head`; `Ok(false)`, with nothing written, when another writer appended
    /// first (read the head again and rebuild the rows). Never two records with one number, and
    /// never two records chained onto the same one.
    async fn append_audit(&self, head: &AuditHead, rows: &[AuditRow]) -> Result<bool>;

    /// A directory on this node where audit records that could not be stored are kept until
    /// the store takes them (see `audit`); none keeps them in memory only.
    fn audit_spool_dir(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Stored records after `after_seq`, in order, at most `limit`.
    async fn audit_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>>;

    /// A tenant's records with `since_ms <= at < until_ms` after `after_seq`, at most `limit`.
    async fn audit_range(
        &self,
        tenant: &str,
        since_ms: i64,
        until_ms: i64,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>>;

    /// The newest `limit` records of a tenant, oldest first.
    async fn list_audit(&self, tenant: &str, limit: i64) -> Result<Vec<(i64, String)>>;

    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;

    /// Every checkpoint, oldest first.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;
}

/// API tokens: who a bearer is. Looked up by the token's public id; the secret is checked
/// against the stored hash by the caller.
#[async_trait::async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// Stores a new token; an id already taken is a conflict.
    async fn insert_api_token(&self, token: &ApiTokenRecord) -> Result<()>;
    /// The token with this id, in any tenant (the bearer names no tenant; the token does).
    async fn api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>>;
    /// A tenant's tokens, newest first, revoked ones included.
    async fn list_api_tokens(&self, tenant: &str) -> Result<Vec<ApiTokenRecord>>;
    /// Revokes a tenant's token for good: true if it was live.
    async fn revoke_api_token(&self, tenant: &str, id: &str, by: &str, at: i64) -> Result<bool>;
}

/// Every sealed value, for rotating the master key, and the rotations themselves.
#[async_trait::async_trait]
pub trait SealedStore: Send + Sync + 'static {
    /// Sealed values of every kind after `after`, in order of kind, then tenant, then the row's
    /// key (connection and name for credentials, name for connections, id for approvals); at
    /// most `limit`.
    async fn sealed_values(
        &self,
        after: Option<&SealedValue>,
        limit: i64,
    ) -> Result<Vec<SealedValue>>;

    /// In one transaction: replaces each value's sealed bytes with the new ones where they are
    /// still the old ones (a row changed or deleted meanwhile is left alone), and adds the number
    /// replaced to rotation `rotation`'s count. Returns, per change, whether it was made.
    async fn reseal(&self, rotation: i64, changes: &[(SealedValue, Vec<u8>)]) -> Result<Vec<bool>>;

    /// Every key rotation, oldest first.
    async fn key_rotations(&self) -> Result<Vec<KeyRotation>>;

    /// Records a rotation under way; a conflict when another one is.
    async fn begin_key_rotation(
        &self,
        from_key: &str,
        to_key: &str,
        by: &str,
        at: i64,
    ) -> Result<KeyRotation>;

    /// Marks a rotation done, with its checkpoint.
    async fn finish_key_rotation(&self, id: i64, checkpoint: &RotationCheckpoint) -> Result<()>;

    /// In one transaction: new signatures (and key ids) for stored checkpoints, by `seq`, and
    /// for rotation checkpoints, by rotation id.
    async fn resign_checkpoints(
        &self,
        checkpoints: &[Checkpoint],
        rotations: &[(i64, String)],
    ) -> Result<()>;
}

/// Everything the control plane keeps: every narrow store. Any type that implements them all
/// is one (see the blanket implementation).
pub trait StateStore:
    RegistryStore
    + ConnectionStore
    + CredentialStore
    + ApprovalStore
    + CoordinationStore
    + AuditStore
    + SealedStore
    + AccessStore
{
}

impl<T> StateStore for T where
    T: RegistryStore
        + ConnectionStore
        + CredentialStore
        + ApprovalStore
        + CoordinationStore
        + AuditStore
        + SealedStore
        + AccessStore
{
}

/// Every store trait, for code that calls them on a concrete backend:
/// `use airlock::control::state::stores::*`.
pub mod stores {
    pub use super::{
        AccessStore, ApprovalStore, AuditStore, ConnectionStore, CoordinationStore,
        CredentialStore, RegistryStore, SealedStore, StateStore,
    };
}

/// Where the audit trail ends: the last record's sequence number and hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: Option<String>,
}

pub fn now_ms() -> i64 {
    crate::time::now_unix_ms()
}
