//! The control plane: which connectors exist, how each tenant configured them, who may do what,
//! and what happened.
//!
//! Every public method takes the calling [`Principal`] first and follows the same steps: look up
//! within the principal's tenant (another tenant's rows are "not found"), [`authz::authorize`],
//! act, and append an [`audit::AuditRecord`] whatever the outcome.
//!
//! Modules, bottom to top (docs/control-plane.md, "Modules", says which uses which):
//! - [`authz`]: the rules table and the one authorization function.
//! - [`state`]: the store, as eight narrow traits, and the embedded SQLite backend.
//! - [`vault`]: connection config, credentials and approvals encrypted at rest.
//! - [`policies`], [`shaping`], [`schema`]: a connection's approval and data policies, and
//!   validation against the manifest's JSON Schemas.
//! - [`audit`], `entry`: the hash-chained audit log; one request's record.
//! - `registry`, [`access`], `lookup`, `credentials`: connector versions; API tokens; what every
//!   operation looks up first; credentials and their OAuth2 tokens.
//! - `resolve`, `run`: a connection resolved for invocation; running an allowed call.
//! - [`approvals`], `invoke`, `connections`: the operations.
//! - [`keys`]: rotating the master key.
//! - [`lifecycle`]: background work and shutdown.
//!
//! Errors are [`ControlError`] values with a message free of any front end's wording and a
//! [`crate::remedy::Remedy`] where something would allow or repair the action.

pub mod access;
pub mod approvals;
pub mod audit;
pub mod authz;
mod breakers;
pub mod cache;
mod connections;
pub mod counters;
mod credentials;
mod entry;
mod invoke;
pub mod keys;
pub mod lifecycle;
mod lookup;
pub mod metrics;
pub mod policies;
pub mod ratelimit;
mod registry;
mod resolve;
mod run;
pub mod schema;
pub mod shaping;
pub mod state;
mod tokens;
pub mod tools;
pub mod vault;

pub use authz::{Action, Principal, PrincipalKind};
pub use connections::{ConnectionSpec, ConnectionUpdate, ConnectionView, TestReport};
pub use registry::{ConnectorView, Registered};

use crate::capability::keyvalue::KeyValueStore;
use crate::error::{InvokeError, LoadError};
use crate::executor::{Connector, Executor};
use crate::remedy::{Remedied, Remedy};
use audit::{AuditLog, AuditRecord};
use authz::{Context, Decision};
use entry::AuditEntry;
use state::{StateError, StateStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vault::Vault;

/// Rule: the connection's invocations per minute are spent.
pub const RULE_RATE_LIMIT: &str = "rate-limit";
/// Rule: the audit store does not take writes, so nothing that needs a record runs.
pub const RULE_AUDIT_UNAVAILABLE: &str = "audit-unavailable";

/// Why a control-plane request failed. Every variant carries a message without any front end's
/// wording in it; [`ControlError::remedy`] says what would allow or repair it, for the front end
/// to put in its own terms (see [`crate::remedy`]).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Absent, or in another tenant: the two are indistinguishable by design.
    #[error("{message}")]
    NotFound {
        message: String,
        remedy: Option<Remedy>,
    },
    #[error("{reason} (rule `{rule}`)")]
    Denied {
        rule: String,
        reason: String,
        remedy: Option<Remedy>,
    },
    /// Not run yet: the operation's risk needs an approver. Not a failure; exit code 4.
    #[error("{0}")]
    Pending(approvals::Ticket),
    /// Bad input; each entry names one problem.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("{message}")]
    Conflict {
        message: String,
        remedy: Option<Remedy>,
    },
    /// The connection's rate limit is spent; try again after `retry_after`.
    #[error("connection `{connection}` allows {per_minute} invocations per minute; retry in {} ms (rule `{RULE_RATE_LIMIT}`)", .retry_after.as_millis())]
    RateLimited {
        connection: String,
        per_minute: u32,
        retry_after: Duration,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Invoke(InvokeError),
    #[error(transparent)]
    Vault(#[from] vault::VaultError),
    #[error(transparent)]
    Keys(#[from] keys::RotationError),
    #[error(transparent)]
    State(StateError),
}

impl From<StateError> for ControlError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Conflict(m) => ControlError::conflict(m),
            other => ControlError::State(other),
        }
    }
}

impl Remedied for ControlError {
    fn remedy(&self) -> Option<Remedy> {
        ControlError::remedy(self)
    }
}

impl ControlError {
    pub fn not_found(message: impl Into<String>) -> Self {
        ControlError::NotFound {
            message: message.into(),
            remedy: None,
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ControlError::Conflict {
            message: message.into(),
            remedy: None,
        }
    }

    pub fn denied(rule: impl Into<String>, reason: impl Into<String>) -> Self {
        ControlError::Denied {
            rule: rule.into(),
            reason: reason.into(),
            remedy: None,
        }
    }

    /// This error with `remedy` attached, where its kind carries one.
    pub fn with_remedy(mut self, remedy: Remedy) -> Self {
        if let ControlError::NotFound { remedy: r, .. }
        | ControlError::Denied { remedy: r, .. }
        | ControlError::Conflict { remedy: r, .. } = &mut self
        {
            *r = Some(remedy);
        }
        self
    }

    /// What would allow the action, or repair what failed, if anything would.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            ControlError::NotFound { remedy, .. }
            | ControlError::Denied { remedy, .. }
            | ControlError::Conflict { remedy, .. } => remedy.clone(),
            ControlError::Pending(ticket) => Some(Remedy::WaitForApproval {
                request: ticket.request_id.clone(),
            }),
            ControlError::RateLimited { connection, .. } => Some(Remedy::RaiseRateLimit {
                connection: connection.clone(),
            }),
            ControlError::Invoke(InvokeError::Denied { denial, .. }) => denial.remedy.clone(),
            ControlError::Vault(e) => e.remedy(),
            ControlError::Keys(e) => e.remedy(),
            ControlError::Load(_) | ControlError::Invalid(_) | ControlError::Invoke(_) => None,
            ControlError::State(_) => None,
        }
    }

    /// Whether policy refused the action (here or inside the sandbox): what the audit records
    /// as `denied`, whatever a front end makes of it.
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            ControlError::Denied { .. }
                | ControlError::RateLimited { .. }
                | ControlError::Invoke(InvokeError::Denied { .. })
        )
    }

    /// The CLI's exit code: 2 when policy denied, 4 when waiting for approval, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            _ if self.is_denial() => 2,
            ControlError::Pending(_) => 4,
            _ => 1,
        }
    }

    /// A stable name for the kind of failure, recorded in the audit log.
    pub fn kind(&self) -> &'static str {
        use crate::manifest::ConnectorError as C;
        match self {
            ControlError::NotFound { .. } => "not-found",
            ControlError::Denied { .. } => "denied",
            ControlError::Pending(_) => "pending-approval",
            ControlError::Invalid(_) => "invalid-input",
            ControlError::Conflict { .. } => "conflict",
            ControlError::RateLimited { .. } => "rate-limited",
            ControlError::Load(_) => "load",
            ControlError::Vault(_) => "vault",
            ControlError::Keys(_) => "key-rotation",
            ControlError::State(_) => "state",
            ControlError::Invoke(e) => match e {
                InvokeError::Connector(C::InvalidParams { .. }) | InvokeError::BadParams(_) => {
                    "invalid-params"
                }
                InvokeError::Connector(C::NotFound { .. })
                | InvokeError::UnknownOperation { .. } => "not-found",
                InvokeError::Connector(C::Unauthorized { .. }) => "unauthorized",
                InvokeError::Connector(C::Upstream { .. }) => "upstream",
                InvokeError::Connector(C::RateLimited { .. }) => "upstream-rate-limited",
                InvokeError::Connector(C::Internal { .. }) => "connector-internal",
                InvokeError::Denied { .. } => "denied",
                InvokeError::Deadline { .. } => "deadline",
                InvokeError::MemoryLimit { .. } => "memory-limit",
                InvokeError::StackOverflow { .. } => "stack-overflow",
                InvokeError::Panic { .. } => "panic",
                InvokeError::Trap { .. } => "trap",
                InvokeError::OutputTooLarge { .. } => "output-too-large",
                InvokeError::InvalidOutput(_) => "invalid-output",
                InvokeError::Busy { .. } => "busy",
                InvokeError::Invalid(_) | InvokeError::Host(_) => "host",
                InvokeError::HostPanic { .. } => "internal",
            },
        }
    }

    /// The policy rule that denied the action, if a rule did; empty otherwise.
    pub fn rule(&self) -> String {
        match self {
            ControlError::Denied { rule, .. } => rule.clone(),
            ControlError::RateLimited { .. } => RULE_RATE_LIMIT.to_owned(),
            ControlError::Invoke(InvokeError::Denied { denial, .. }) => denial.rule.to_owned(),
            _ => String::new(),
        }
    }
}

pub type Result<T> = std::result::Result<T, ControlError>;

/// What a metrics endpoint exposes (see [`ControlPlane::metrics`]).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub counters: counters::Snapshot,
    /// Approval requests by status (`pending`, `approved`, `executing`), across tenants.
    pub approvals_open: Vec<(String, u64)>,
    /// Circuit breakers by state (`open`, `half-open`), across tenants.
    pub breakers: Vec<(String, u64)>,
    pub audit_available: bool,
}

/// The read cache's figures for one tenant (see `ControlPlane::cache_stats`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub entries: usize,
    pub connections: Vec<CacheCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheCounts {
    pub connection: String,
    #[serde(flatten)]
    pub counts: cache::Counts,
}

/// How long a resolved connection is reused before it is read again from the store. Changes
/// made through this process take effect at once; changes made by another process within this.
pub const RESOLVED_TTL: Duration = Duration::from_secs(2);

/// What a connection keeps across re-resolutions: its pooled client and its circuit breakers.
type ConnectionTransport = (
    crate::egress::EgressClient,
    Arc<crate::egress::resilience::Breakers>,
);

/// (tenant, connection, credential name, credential version): a rotated credential starts afresh.
type TokenKey = (String, String, String, i64);

/// Resolved connections by (tenant, name), with when they were resolved.
type ResolvedCache = HashMap<(String, String), (Instant, Arc<resolve::Resolved>)>;

pub struct ControlPlane {
    state: Arc<dyn StateStore>,
    /// What processes serving the same connections share while they run (breakers, rate-limit
    /// buckets, OAuth2 tokens): the state store itself unless the builder was given another.
    coordination: Arc<dyn state::CoordinationStore>,
    executor: Arc<Executor>,
    vault: Arc<Vault>,
    keyvalue: Arc<dyn KeyValueStore>,
    audit: AuditLog,
    /// Loaded connectors by digest.
    loaded: Mutex<HashMap<String, Connector>>,
    /// Resolved connections by (tenant, name).
    resolved: Mutex<ResolvedCache>,
    /// Each connection's pooled HTTP client, by (tenant, name).
    clients: Mutex<HashMap<(String, String), ConnectionTransport>>,
    /// Read results, per tenant.
    cache: cache::ResponseCache,
    /// The host's settings, read once by whoever built this control plane.
    settings: Arc<crate::settings::Settings>,
    /// Waiters on approval requests, woken by this process's changes.
    decisions: lifecycle::Decisions,
    /// OAuth2 token caches by (tenant, connection, credential, version).
    tokens: Mutex<HashMap<TokenKey, Arc<crate::egress::oauth::TokenCache>>>,
    /// Sources refused for failed authentications, until when (see `access`); this node's
    /// shortcut in front of the shared bucket.
    auth_blocked: Mutex<HashMap<String, Instant>>,
    /// This process's request counters (see `counters`).
    counters: counters::Counters,
    /// API tokens looked up lately, by id, with when (see `access::TOKEN_TTL`).
    token_cache: Mutex<HashMap<String, (Instant, state::ApiTokenRecord)>>,
}

/// The parts of a [`ControlPlane`], before it starts (see [`ControlPlane::builder`]).
pub struct Builder {
    state: Arc<dyn StateStore>,
    coordination: Arc<dyn state::CoordinationStore>,
    executor: Arc<Executor>,
    vault: Vault,
    keyvalue: Arc<dyn KeyValueStore>,
    settings: crate::settings::Settings,
    audit_chain: bool,
}

impl Builder {
    /// The host's settings (default: `Settings::default()`).
    pub fn settings(mut self, settings: crate::settings::Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Where breakers, rate-limit buckets and OAuth2 tokens are shared between processes
    /// (default: the state store). Small, hot and atomic per step: a Redis backend fits here
    /// while the rest stays in SQL.
    pub fn coordination(mut self, store: Arc<dyn state::CoordinationStore>) -> Self {
        self.coordination = store;
        self
    }

    /// Audit records without hashes: only for benchmarks comparing the chain's cost (`audit
    /// verify` reports unchained records inside the chain as tampering).
    pub fn without_audit_chain(mut self) -> Self {
        self.audit_chain = false;
        self
    }

    /// The control plane, with its audit writer started. Must be called within a tokio runtime
    /// (the writer is a task); its other background work starts with
    /// [`ControlPlane::start_background`].
    pub fn build(self) -> ControlPlane {
        let vault = Arc::new(self.vault);
        let settings = self.settings;
        ControlPlane {
            audit: AuditLog::start(self.state.clone(), vault.clone(), self.audit_chain),
            state: self.state,
            coordination: self.coordination,
            executor: self.executor,
            vault,
            keyvalue: self.keyvalue,
            loaded: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            auth_blocked: Mutex::new(HashMap::new()),
            counters: counters::Counters::default(),
            token_cache: Mutex::new(HashMap::new()),
            cache: cache::ResponseCache::new(settings.cache_max_entries_per_tenant),
            settings: Arc::new(settings),
            decisions: lifecycle::Decisions::default(),
        }
    }
}

impl ControlPlane {
    /// A control plane over `state`, running connectors in `executor`, keeping connector storage
    /// in `keyvalue`, with the default settings. Must be called within a tokio runtime (the
    /// audit writer is a task).
    pub fn new(
        state: Arc<dyn StateStore>,
        executor: Arc<Executor>,
        vault: Vault,
        keyvalue: Arc<dyn KeyValueStore>,
    ) -> Self {
        Self::with_settings(
            state,
            executor,
            vault,
            keyvalue,
            crate::settings::Settings::default(),
        )
    }

    /// [`ControlPlane::new`] with the host's settings (the binary reads them from the
    /// environment once, see `crate::settings`).
    pub fn with_settings(
        state: Arc<dyn StateStore>,
        executor: Arc<Executor>,
        vault: Vault,
        keyvalue: Arc<dyn KeyValueStore>,
        settings: crate::settings::Settings,
    ) -> Self {
        Self::builder(state, executor, vault, keyvalue)
            .settings(settings)
            .build()
    }

    /// A builder for a control plane over `state`, running connectors in `executor`, keeping
    /// connector storage in `keyvalue`; the settings, the coordination store and the audit
    /// chain can be chosen before [`Builder::build`].
    pub fn builder(
        state: Arc<dyn StateStore>,
        executor: Arc<Executor>,
        vault: Vault,
        keyvalue: Arc<dyn KeyValueStore>,
    ) -> Builder {
        Builder {
            coordination: state.clone(),
            state,
            executor,
            vault,
            keyvalue,
            settings: crate::settings::Settings::default(),
            audit_chain: true,
        }
    }

    /// Crash testing: with the fail point `point` set (`Settings::fail_point`, which the binary
    /// takes from `AIRLOCK_TEST_STOP_AT`), the process stops making progress here (it waits
    /// forever), so a test can kill it for real and check what a restart does. Points:
    /// `approval-committed` (an approval is stored, the action not started), `key-rotation-batch`
    /// (a batch of re-sealed values is committed, the rotation not finished).
    pub(crate) async fn stop_here_for_tests(&self, point: &str) {
        if self.settings.fail_point.as_deref() == Some(point) {
            eprintln!("stopped at {point} (fail point)");
            std::future::pending::<()>().await;
        }
    }

    /// The settings this control plane runs with.
    pub fn settings(&self) -> &crate::settings::Settings {
        &self.settings
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Whether the audit store takes writes; invocations are refused while it does not.
    pub fn audit_available(&self) -> bool {
        self.audit.available()
    }

    /// The last thing a process does: stores the audit records it holds, or spools them for the
    /// next process when the store refuses (see `audit::Closed`). Later records are printed to
    /// the error log.
    pub async fn shutdown(&self) -> audit::Closed {
        self.audit.close().await
    }

    /// Waits until all audit records so far are stored and a signed checkpoint covers them.
    pub async fn flush_audit(&self) -> std::result::Result<(), audit::Unavailable> {
        self.audit.flush().await
    }

    /// Checks the whole audit chain and every checkpoint (the stored ones and `extra`, kept
    /// elsewhere). Auditors and above; reports positions only, never other tenants' records.
    pub async fn audit_verify(
        &self,
        who: &Principal,
        extra: &[state::Checkpoint],
    ) -> Result<audit::VerifyReport> {
        self.audited(
            who,
            Action::AuditList,
            "audit-chain",
            Some("verify"),
            async {
                let _ = self.audit.flush().await;
                Ok(audit::verify(self.state.as_ref(), &self.vault, extra).await?)
            },
        )
        .await
    }

    /// The tenant's stored audit rows (record, seq and hashes) with `since_ms <= at < until_ms`.
    pub async fn audit_export(
        &self,
        who: &Principal,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<state::AuditRow>> {
        self.audited(who, Action::AuditList, &who.tenant, Some("export"), async {
            let _ = self.audit.flush().await;
            let mut out = Vec::new();
            let mut after = 0;
            loop {
                let page = self
                    .state
                    .audit_range(&who.tenant, since_ms, until_ms, after, 10_000)
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                out.extend(page);
            }
            Ok(out)
        })
        .await
    }

    /// The newest signed checkpoint, after flushing: a copy to keep outside the database.
    pub async fn audit_checkpoint(&self, who: &Principal) -> Result<Option<state::Checkpoint>> {
        self.audited(
            who,
            Action::AuditList,
            "audit-chain",
            Some("checkpoint"),
            async {
                self.audit
                    .flush()
                    .await
                    .map_err(|e| ControlError::State(StateError::Storage(e.to_string())))?;
                Ok(self.state.checkpoints().await?.pop())
            },
        )
        .await
    }

    /// The tenant's audit records, newest `limit`, oldest first.
    pub async fn audit_list(&self, who: &Principal, limit: i64) -> Result<Vec<AuditRecord>> {
        self.check(
            &AuditEntry::new(who, Action::AuditList, &who.tenant),
            Context::default(),
        )
        .await?;
        let _ = self.audit.flush().await;
        let rows = self.state.list_audit(&who.tenant, limit).await?;
        rows.into_iter()
            .map(|(_, text)| {
                serde_json::from_str(&text)
                    .map_err(|e| ControlError::State(StateError::Corrupt(e.to_string())))
            })
            .collect()
    }

    /// Figures and health per connection and operation over the tenant's recent invocations
    /// (the newest `window` audit records).
    pub async fn health(
        &self,
        who: &Principal,
        window: i64,
    ) -> Result<Vec<metrics::OperationStats>> {
        self.check(
            &AuditEntry::new(who, Action::ConnectionList, "health"),
            Context::default(),
        )
        .await?;
        let _ = self.audit.flush().await;
        let records: Vec<AuditRecord> = self
            .state
            .list_audit(&who.tenant, window)
            .await?
            .into_iter()
            .filter_map(|(_, text)| serde_json::from_str(&text).ok())
            .collect();
        Ok(metrics::summarize(
            &records,
            &metrics::Thresholds {
                p95_ms: self.settings.health_p95_ms,
                error_rate: self.settings.health_error_rate,
            },
        ))
    }

    /// This process's read cache for the tenant: entries held, and hits and misses per
    /// connection.
    pub async fn cache_stats(&self, who: &Principal) -> Result<CacheStats> {
        self.check(
            &AuditEntry::new(who, Action::ConnectionList, "cache"),
            Context::default(),
        )
        .await?;
        Ok(CacheStats {
            entries: self.cache.len(&who.tenant),
            connections: self
                .cache
                .counts(&who.tenant)
                .into_iter()
                .map(|(connection, counts)| CacheCounts { connection, counts })
                .collect(),
        })
    }

    /// The tenant's circuit breakers that are open or probing, as every process sees them.
    pub async fn circuits(&self, who: &Principal) -> Result<Vec<state::BreakerRecord>> {
        self.check(
            &AuditEntry::new(who, Action::ConnectionList, "circuits"),
            Context::default(),
        )
        .await?;
        Ok(self.coordination.tripped_breakers(&who.tenant).await?)
    }

    /// The shape of every administrative action: authorize (a denial is audited), run `body`,
    /// audit the outcome. `body` is not started unless the action is allowed.
    async fn audited<T>(
        &self,
        who: &Principal,
        action: Action,
        target: &str,
        operation: Option<&str>,
        body: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let entry = AuditEntry {
            operation,
            ..AuditEntry::new(who, action, target)
        };
        let decision = self.check(&entry, Context::default()).await?;
        let result = body.await;
        self.audit(&entry, &decision, result.as_ref().map(|_| ()))
            .await;
        result
    }

    /// Authorizes the entry's action, and audits a denial. Allowed decisions are audited by the
    /// caller with the outcome of the action.
    async fn check(&self, entry: &AuditEntry<'_>, ctx: Context) -> Result<Decision> {
        let decision = authz::authorize(entry.who, entry.action, ctx);
        if !decision.allowed {
            let error = decision.to_error();
            self.audit(entry, &decision, Err(&error)).await;
            return Err(error);
        }
        Ok(decision)
    }

    /// Appends the entry's record, completed with the decision and the result.
    async fn audit(
        &self,
        entry: &AuditEntry<'_>,
        decision: &Decision,
        result: std::result::Result<(), &ControlError>,
    ) {
        let record = entry.record(decision, result);
        self.counters.count(&record);
        self.audit.record(record).await;
    }

    /// This process's counters, host-wide, and what the store says is waiting or tripped: for
    /// a metrics endpoint. No tenant or connection names.
    pub async fn metrics(&self) -> Result<Metrics> {
        Ok(Metrics {
            counters: self.counters.snapshot(),
            approvals_open: self.state.count_open_approvals().await?,
            breakers: self.coordination.count_tripped_breakers().await?,
            audit_available: self.audit_available(),
        })
    }

    /// The loaded connector for a digest, loading it from the stored bytes once.
    async fn connector_for(&self, digest: &str) -> Result<Connector> {
        if let Some(c) = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
        {
            return Ok(c.clone());
        }
        let bytes = self.state.get_component(digest).await?.ok_or_else(|| {
            ControlError::not_found(format!(
                "component sha256:{digest} is missing from the store"
            ))
        })?;
        let connector = self.executor.load(&bytes).await?;
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.to_owned(), connector.clone());
        Ok(connector)
    }

    pub(crate) fn forget_connection(&self, tenant: &str, name: &str) {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant.to_owned(), name.to_owned()));
    }

    fn forget_all_connections(&self) {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
