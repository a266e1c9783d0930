//! Retry with backoff, and a circuit breaker per destination, for guest requests.
//!
//! Configuration comes from the host's settings (`crate::settings`), the seeds' variables, with
//! their defaults:
//! `RETRY_MAX_ATTEMPTS` (3, also `CONNECTOR_RETRY_MAX_ATTEMPTS`), `RETRY_BASE_MS` (400, also
//! `CONNECTOR_RETRY_BASE_DELAY_MS`), `RETRY_CAP_MS` (60000), `CB_FAILURES_TO_OPEN` (5, also
//! `CONNECTOR_CIRCUIT_BREAKER_THRESHOLD`), `CB_COOLDOWN_S` (60). Backoff uses full jitter
//! (a uniform delay between 0 and the exponential bound), which spreads retries better than the
//! seeds' ±20%. A `Retry-After` from the upstream replaces the computed delay.
//!
//! Only idempotent requests are retried: GET, HEAD, OPTIONS, PUT and DELETE, and POST or PATCH
//! when they carry an `Idempotency-Key` header. Retried: connection failures and 429, 502, 503,
//! 504. A retry never waits past the invocation's deadline.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub failures_to_open: u32,
    /// How long it stays open before one probe is let through.
    pub cooldown: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resilience {
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            retry: RetryPolicy {
                max_attempts: 3,
                base: Duration::from_millis(400),
                cap: Duration::from_secs(60),
            },
            breaker: BreakerPolicy {
                failures_to_open: 5,
                cooldown: Duration::from_secs(60),
            },
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1 for the first retry): full jitter over
    /// `min(cap, base * 2^(attempt-1))`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let bound = self
            .base
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(20))
            .min(self.cap);
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        bound.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Whether a request may be sent twice.
pub fn idempotent(method: &http::Method, headers: &http::HeaderMap) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    ) || headers.contains_key("idempotency-key")
}

/// Statuses worth another attempt.
pub fn retryable_status(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// `Retry-After` as seconds or an HTTP date. Any value the upstream sends is safe here: it is
/// only compared with the time left (see `crate::time`), never added to an `Instant`.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds still means "a very long time", not "no header".
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Where breaker state is shared: the control plane's store, so that every process serving a
/// connection sees an open circuit, one probe goes at a time across all of them, and a restart
/// does not forget an open circuit. Errors are reported as text; a breaker whose ledger fails
/// goes on with its own state (it protects the upstream, it is not an access rule).
#[async_trait::async_trait]
pub trait BreakerLedger: Send + Sync {
    async fn load(&self, origin: &str) -> Result<Shared, String>;
    /// Counts one failure of a closed breaker for every process; at `threshold` consecutive
    /// failures the breaker opens until `open_until_ms`. Returns the state and the count.
    async fn failure(
        &self,
        origin: &str,
        threshold: u32,
        open_until_ms: i64,
    ) -> Result<(Shared, u32), String>;
    async fn open(&self, origin: &str, until_ms: i64) -> Result<(), String>;
    async fn close(&self, origin: &str) -> Result<(), String>;
    /// True for exactly one caller once the cooldown (or a probe's lease) has run out.
    async fn take_probe(
        &self,
        origin: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, String>;
}

/// A breaker's state as the ledger holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    Closed,
    Open { until_ms: i64 },
    HalfOpen { lease_until_ms: i64 },
}

/// How long this process trusts its own "closed" before asking the ledger again: the most time
/// another process's open circuit goes unseen here.
pub const SHARED_STATE_REFRESH_MS: i64 = 1000;

use crate::time::now_unix_ms as now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    /// Refusing until then (wall clock, as the ledger keeps it).
    Open {
        until_ms: i64,
    },
    /// This process holds the one probe; others are refused until it reports.
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
struct Local {
    state: State,
    /// When the ledger was last read for this origin.
    synced_ms: i64,
    /// The shared count of consecutive failures as last seen: a success clears it for every
    /// process when it is not zero.
    shared_failures: u32,
}

/// Circuit breakers by origin (`scheme://host:port`), one set per connection.
#[derive(Default)]
pub struct Breakers {
    states: Mutex<HashMap<String, Local>>,
    ledger: Option<std::sync::Arc<dyn BreakerLedger>>,
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("shared", &self.ledger.is_some())
            .finish_non_exhaustive()
    }
}

/// The breaker refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub retry_in: Duration,
}

fn open_for(until_ms: i64, now: i64) -> Open {
    Open {
        retry_in: Duration::from_millis(until_ms.saturating_sub(now).max(0) as u64),
    }
}

impl Breakers {
    /// Breakers whose state is kept in `ledger` as well as here.
    pub fn shared(ledger: std::sync::Arc<dyn BreakerLedger>) -> Self {
        Breakers {
            states: Mutex::default(),
            ledger: Some(ledger),
        }
    }

    fn with_local<R>(&self, origin: &str, f: impl FnOnce(&mut Local) -> R) -> R {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let local = states.entry(origin.to_owned()).or_insert(Local {
            state: State::Closed { failures: 0 },
            synced_ms: i64::MIN,
            shared_failures: 0,
        });
        f(local)
    }

    /// Whether a request to `origin` may go now. In the open state, after the cooldown, one
    /// probe is allowed (half-open), holding a lease of one cooldown.
    pub async fn allow(&self, origin: &str, policy: &BreakerPolicy) -> Result<(), Open> {
        let now = now_ms();
        let shared = self.ledger.is_some();
        // Decide locally when the local view is enough.
        let local = self.with_local(origin, |local| match local.state {
            State::Closed { .. }
                if !shared || now.saturating_sub(local.synced_ms) < SHARED_STATE_REFRESH_MS =>
            {
                Some(Ok(()))
            }
            State::Open { until_ms } if now < until_ms => Some(Err(open_for(until_ms, now))),
            State::HalfOpen => Some(Err(open_for(0, 0))),
            State::Open { .. } if !shared => {
                local.state = State::HalfOpen;
                Some(Ok(()))
            }
            _ => None,
        });
        if let Some(decided) = local {
            return decided;
        }
        let ledger = self.ledger.as_ref().expect("only shared breakers get here");
        let lease_until = now.saturating_add(policy.cooldown.as_millis() as i64);
        let outcome = match ledger.load(origin).await {
            Ok(Shared::Closed) => Ok(State::Closed { failures: 0 }),
            Ok(Shared::Open { until_ms }) if now < until_ms => Err(until_ms),
            // Ask again soon: the probe may close it well before its lease ends.
            Ok(Shared::HalfOpen { lease_until_ms }) if now < lease_until_ms => {
                Err(lease_until_ms.min(now.saturating_add(SHARED_STATE_REFRESH_MS)))
            }
            Ok(Shared::Open { .. } | Shared::HalfOpen { .. }) => {
                match ledger.take_probe(origin, now, lease_until).await {
                    Ok(true) => Ok(State::HalfOpen),
                    // Another caller took it a moment ago; ask again soon.
                    Ok(false) => Err(now.saturating_add(SHARED_STATE_REFRESH_MS)),
                    Err(e) => {
                        tracing::warn!(origin, "circuit breaker store: {e}");
                        Ok(State::HalfOpen)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(origin, "circuit breaker store: {e}");
                Ok(match self.with_local(origin, |l| l.state) {
                    State::Open { .. } => State::HalfOpen,
                    other => other,
                })
            }
        };
        self.with_local(origin, |local| {
            local.synced_ms = now;
            match outcome {
                Ok(State::Closed { .. }) => {
                    // Keep this process's count of consecutive failures.
                    if !matches!(local.state, State::Closed { .. }) {
                        local.state = State::Closed { failures: 0 };
                    }
                    Ok(())
                }
                Ok(state) => {
                    local.state = state;
                    Ok(())
                }
                Err(until_ms) => {
                    local.state = State::Open { until_ms };
                    Err(open_for(until_ms, now))
                }
            }
        })
    }

    /// Reports an attempt's outcome.
    pub async fn record(&self, origin: &str, success: bool, policy: &BreakerPolicy) {
        let now = now_ms();
        if let Some(ledger) = &self.ledger {
            // Shared: consecutive failures are counted in the ledger, by every process.
            let before = self.with_local(origin, |l| (l.state, l.shared_failures));
            match (before, success) {
                ((State::Closed { .. }, 0), true) => {}
                ((State::Closed { .. }, _), true) => {
                    if let Err(e) = ledger.close(origin).await {
                        tracing::warn!(origin, "circuit breaker store: {e}");
                    }
                    self.with_local(origin, |l| l.shared_failures = 0);
                }
                ((State::Closed { .. }, _), false) => {
                    let until = now.saturating_add(policy.cooldown.as_millis() as i64);
                    match ledger.failure(origin, policy.failures_to_open, until).await {
                        Ok((shared, failures)) => self.with_local(origin, |l| {
                            l.shared_failures = failures;
                            l.synced_ms = now;
                            l.state = match shared {
                                Shared::Open { until_ms } => State::Open { until_ms },
                                Shared::HalfOpen { lease_until_ms } => State::Open {
                                    until_ms: lease_until_ms,
                                },
                                Shared::Closed => State::Closed { failures },
                            };
                        }),
                        Err(e) => {
                            tracing::warn!(origin, "circuit breaker store: {e}");
                            self.record_locally(origin, false, policy, now);
                        }
                    }
                }
                _ => {
                    self.record_shared_probe(ledger.as_ref(), origin, success, policy, now)
                        .await
                }
            }
            return;
        }
        self.record_locally(origin, success, policy, now);
    }

    /// A probe's outcome (or a late answer while open), written through to the ledger.
    async fn record_shared_probe(
        &self,
        ledger: &dyn BreakerLedger,
        origin: &str,
        success: bool,
        policy: &BreakerPolicy,
        now: i64,
    ) {
        let (before, after) = self.record_locally(origin, success, policy, now);
        let written = match (before, after) {
            (State::HalfOpen, State::Closed { .. }) => {
                self.with_local(origin, |l| l.shared_failures = 0);
                ledger.close(origin).await
            }
            (State::HalfOpen, State::Open { until_ms }) => ledger.open(origin, until_ms).await,
            _ => return,
        };
        if let Err(e) = written {
            tracing::warn!(origin, "circuit breaker store: {e}");
        }
    }

    /// The state machine of one process: (state before, state after).
    fn record_locally(
        &self,
        origin: &str,
        success: bool,
        policy: &BreakerPolicy,
        now: i64,
    ) -> (State, State) {
        self.with_local(origin, |local| {
            let before = local.state;
            local.state = match (before, success) {
                (_, true) => State::Closed { failures: 0 },
                (State::Closed { failures }, false) if failures + 1 < policy.failures_to_open => {
                    State::Closed {
                        failures: failures + 1,
                    }
                }
                // A request let through before the circuit opened does not extend it.
                (State::Open { until_ms }, false) => State::Open { until_ms },
                (_, false) => State::Open {
                    until_ms: now.saturating_add(policy.cooldown.as_millis() as i64),
                },
            };
            (before, local.state)
        })
    }

    /// `closed`, `open` or `half-open` as this process sees it, for reports and tests.
    pub fn state(&self, origin: &str) -> &'static str {
        match self
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
            .map(|l| l.state)
        {
            None | Some(State::Closed { .. }) => "closed",
            Some(State::Open { .. }) => "open",
            Some(State::HalfOpen) => "half-open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_backoff_is_full_jitter_under_an_exponential_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(350),
        };
        for attempt in 1..=6 {
            let bound = Duration::from_millis((100u64 << (attempt - 1)).min(350));
            let delays: Vec<Duration> = (0..200).map(|_| p.backoff(attempt)).collect();
            assert!(
                delays.iter().all(|d| *d <= bound),
                "attempt {attempt}: over {bound:?}"
            );
            assert!(
                delays.iter().any(|d| *d < bound / 2),
                "attempt {attempt}: no jitter below half"
            );
        }
    }

    #[test]
    fn egress_retry_after_and_idempotency() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert("retry-after", later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert!(idempotent(&http::Method::GET, &http::HeaderMap::new()));
        assert!(!idempotent(&http::Method::POST, &http::HeaderMap::new()));
        let mut keyed = http::HeaderMap::new();
        keyed.insert("idempotency-key", "k1".parse().unwrap());
        assert!(idempotent(&http::Method::POST, &keyed));
    }

    #[tokio::test]
    async fn egress_breaker_opens_fails_fast_probes_and_closes() {
        let b = Breakers::default();
        let policy = BreakerPolicy {
            failures_to_open: 3,
            cooldown: Duration::from_millis(50),
        };
        let o = "https://api.example.com:443";
        for _ in 0..2 {
            b.allow(o, &policy).await.unwrap();
            b.record(o, false, &policy).await;
        }
        assert_eq!(b.state(o), "closed");
        b.record(o, false, &policy).await;
        assert_eq!(b.state(o), "open");
        assert!(
            b.allow(o, &policy).await.is_err(),
            "an open circuit must fail fast"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        b.allow(o, &policy).await.unwrap();
        assert_eq!(b.state(o), "half-open");
        assert!(
            b.allow(o, &policy).await.is_err(),
            "only one probe at a time"
        );
        b.record(o, false, &policy).await;
        assert_eq!(b.state(o), "open", "a failed probe reopens");
        tokio::time::sleep(Duration::from_millis(60)).await;
        b.allow(o, &policy).await.unwrap();
        b.record(o, true, &policy).await;
        assert_eq!(b.state(o), "closed");
        assert_eq!(b.state("https://other.example.com:443"), "closed");
    }
}
