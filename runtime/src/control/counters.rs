//! This process's counters, for a metrics endpoint to expose (Prometheus scrapes each node):
//! requests by action and outcome, denials by rule, and invocation latency as a histogram.
//! Host-wide aggregates with no tenant or connection in them, so exposing them discloses no
//! tenant's names; per-tenant figures are `ControlPlane::health`'s. Counted where every
//! request's audit record is made, so nothing is counted twice or missed.

use super::audit::AuditRecord;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds (the last is +Inf).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
pub struct Counters(Mutex<Snapshot>);

/// The counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// (action, outcome) -> count.
    pub requests: BTreeMap<(String, String), u64>,
    /// rule -> count of denials.
    pub denials: BTreeMap<String, u64>,
    /// Invocations (reads and writes, not their `started` records): per bucket of
    /// [`LATENCY_BUCKETS`], plus +Inf, cumulative as Prometheus wants them.
    pub latency_buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub latency_sum_seconds: f64,
    pub latency_count: u64,
}

impl Counters {
    pub fn count(&self, record: &AuditRecord) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *s.requests
            .entry((record.action.clone(), record.outcome.clone()))
            .or_default() += 1;
        if record.outcome == "denied" {
            *s.denials.entry(record.rule.clone()).or_default() += 1;
        }
        if record.action.starts_with("invoke.") && record.outcome != "started" {
            let seconds = record.duration_us as f64 / 1e6;
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    s.latency_buckets[i] += 1;
                }
            }
            s.latency_buckets[LATENCY_BUCKETS.len()] += 1;
            s.latency_sum_seconds += seconds;
            s.latency_count += 1;
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
