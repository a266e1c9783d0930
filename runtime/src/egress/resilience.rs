//! Retry with backoff, and a circuit breaker per destination, for guest requests.
//!
//! Configuration comes from the seeds' environment variables, with their defaults:
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
use std::time::{Duration, Instant, SystemTime};

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

fn env_u64(names: &[&str], default: u64) -> u64 {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok()?.trim().parse().ok())
        .unwrap_or(default)
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

impl Resilience {
    /// The defaults, overridden by the environment.
    pub fn from_env() -> Self {
        let d = Resilience::default();
        Resilience {
            retry: RetryPolicy {
                max_attempts: env_u64(
                    &["RETRY_MAX_ATTEMPTS", "CONNECTOR_RETRY_MAX_ATTEMPTS"],
                    d.retry.max_attempts.into(),
                )
                .max(1) as u32,
                base: Duration::from_millis(env_u64(
                    &["RETRY_BASE_MS", "CONNECTOR_RETRY_BASE_DELAY_MS"],
                    400,
                )),
                cap: Duration::from_millis(env_u64(&["RETRY_CAP_MS"], 60_000)),
            },
            breaker: BreakerPolicy {
                failures_to_open: env_u64(
                    &["CB_FAILURES_TO_OPEN", "CONNECTOR_CIRCUIT_BREAKER_THRESHOLD"],
                    5,
                )
                .max(1) as u32,
                cooldown: Duration::from_secs(env_u64(&["CB_COOLDOWN_S"], 60)),
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

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; others are refused until it reports.
    HalfOpen,
}

/// Circuit breakers by origin (`scheme://host:port`), one set per connection.
#[derive(Debug, Default)]
pub struct Breakers {
    states: Mutex<HashMap<String, State>>,
}

/// The breaker refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub retry_in: Duration,
}

impl Breakers {
    /// Whether a request to `origin` may go now. In the open state, after the cooldown, one
    /// probe is allowed (half-open).
    pub fn allow(&self, origin: &str) -> Result<(), Open> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states
            .entry(origin.to_owned())
            .or_insert(State::Closed { failures: 0 });
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    Ok(())
                } else {
                    Err(Open {
                        retry_in: until - now,
                    })
                }
            }
            State::HalfOpen => Err(Open {
                retry_in: Duration::ZERO,
            }),
        }
    }

    /// Reports an attempt's outcome.
    pub fn record(&self, origin: &str, success: bool, policy: &BreakerPolicy) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states
            .entry(origin.to_owned())
            .or_insert(State::Closed { failures: 0 });
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < policy.failures_to_open => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => State::Open {
                until: Instant::now() + policy.cooldown,
            },
        };
    }

    /// `closed`, `open` or `half-open`, for health reports and tests.
    pub fn state(&self, origin: &str) -> &'static str {
        match self
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
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

    #[test]
    fn egress_breaker_opens_fails_fast_probes_and_closes() {
        let b = Breakers::default();
        let policy = BreakerPolicy {
            failures_to_open: 3,
            cooldown: Duration::from_millis(50),
        };
        let o = "https://api.example.com:443";
        for _ in 0..2 {
            b.allow(o).unwrap();
            b.record(o, false, &policy);
        }
        assert_eq!(b.state(o), "closed");
        b.record(o, false, &policy);
        assert_eq!(b.state(o), "open");
        assert!(b.allow(o).is_err(), "an open circuit must fail fast");
        std::thread::sleep(Duration::from_millis(60));
        b.allow(o).unwrap();
        assert_eq!(b.state(o), "half-open");
        assert!(b.allow(o).is_err(), "only one probe at a time");
        b.record(o, false, &policy);
        assert_eq!(b.state(o), "open", "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(60));
        b.allow(o).unwrap();
        b.record(o, true, &policy);
        assert_eq!(b.state(o), "closed");
        assert_eq!(b.state("https://other.example.com:443"), "closed");
    }
}
