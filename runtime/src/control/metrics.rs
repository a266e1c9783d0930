//! Per connection and operation: calls, errors, latency percentiles, and a health state, computed
//! from the audit log (every invocation already leaves a record with its outcome and duration),
//! so every process, the CLI included, sees the same figures without a second store.
//!
//! Health, with the seeds' thresholds `CONNECTOR_HEALTH_P95_MS` (2000) and
//! `CONNECTOR_HEALTH_ERROR_RATE` (0.10), from the host's settings: `down` when at least half the calls failed, `degraded`
//! when the p95 latency or the error rate is over its threshold, `healthy` otherwise, `idle`
//! without calls. Denied calls are policy, not upstream trouble: they are counted apart.

use super::audit::AuditRecord;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub p95_ms: f64,
    pub error_rate: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            p95_ms: 2000.0,
            error_rate: 0.10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Down,
    Idle,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct OperationStats {
    pub connection: String,
    pub operation: String,
    pub calls: u64,
    pub errors: u64,
    pub denied: u64,
    /// Requests that waited for approval instead of running.
    pub awaiting_approval: u64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub health: Health,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Classifies one operation's figures.
pub fn health(calls: u64, errors: u64, p95_ms: f64, t: &Thresholds) -> Health {
    if calls == 0 {
        return Health::Idle;
    }
    let rate = errors as f64 / calls as f64;
    if rate >= 0.5 {
        Health::Down
    } else if p95_ms > t.p95_ms || rate > t.error_rate {
        Health::Degraded
    } else {
        Health::Healthy
    }
}

/// Failures that are the caller's (bad params, an id that does not exist): the connection is
/// working when it answers them.
fn caller_error(kind: Option<&str>) -> bool {
    matches!(kind, Some("invalid-params" | "not-found" | "rate-limited"))
}

/// Figures per (connection, operation) from invocation audit records.
pub fn summarize(records: &[AuditRecord], t: &Thresholds) -> Vec<OperationStats> {
    #[derive(Default)]
    struct Acc {
        durations: Vec<f64>,
        errors: u64,
        denied: u64,
        pending: u64,
    }
    let mut groups: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for r in records.iter().filter(|r| r.action.starts_with("invoke.")) {
        let Some(operation) = &r.operation else {
            continue;
        };
        let acc = groups
            .entry((r.target.clone(), operation.clone()))
            .or_default();
        match r.outcome.as_str() {
            "denied" => acc.denied += 1,
            // Not run (yet): the run, if approved, leaves its own record.
            "pending" => acc.pending += 1,
            // The write's outcome comes in its own record.
            super::audit::OUTCOME_STARTED => {}
            outcome => {
                acc.durations.push(r.duration_us as f64 / 1000.0);
                if outcome != "ok" && !caller_error(r.error_kind.as_deref()) {
                    acc.errors += 1;
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|((connection, operation), mut acc)| {
            acc.durations.sort_by(|a, b| a.total_cmp(b));
            let calls = acc.durations.len() as u64;
            let p95 = percentile(&acc.durations, 0.95);
            OperationStats {
                connection,
                operation,
                calls,
                errors: acc.errors,
                denied: acc.denied,
                awaiting_approval: acc.pending,
                error_rate: if calls == 0 {
                    0.0
                } else {
                    acc.errors as f64 / calls as f64
                },
                p50_ms: percentile(&acc.durations, 0.50),
                p95_ms: p95,
                p99_ms: percentile(&acc.durations, 0.99),
                health: health(calls, acc.errors, p95, t),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(target: &str, op: &str, outcome: &str, ms: u64) -> AuditRecord {
        AuditRecord {
            at: 0,
            tenant: "t".into(),
            principal: "p".into(),
            principal_kind: "user".into(),
            role: "Operator".into(),
            action: "invoke.read".into(),
            target: target.into(),
            operation: Some(op.into()),
            decision: "allowed".into(),
            rule: "operator-invokes".into(),
            outcome: outcome.into(),
            message: None,
            error_kind: (outcome == "error").then(|| "upstream".to_owned()),
            duration_us: ms * 1000,
            params: None,
            invocation_id: None,
            remedy: None,
        }
    }

    #[test]
    fn metrics_percentiles_error_rates_and_health() {
        let t = Thresholds::default();
        let mut records: Vec<AuditRecord> = (1..=100)
            .map(|ms| record("crm", "list", "ok", ms))
            .collect();
        records.push(record("crm", "list", "denied", 1));
        records.extend((0..10).map(|_| record("crm", "get", "ok", 3000)));
        records.extend((0..4).map(|_| record("erp", "sync", "error", 5)));
        records.extend((0..4).map(|_| record("erp", "sync", "ok", 5)));
        // A caller's mistake is not the connection failing.
        let mut not_found = record("crm", "list", "error", 1);
        not_found.error_kind = Some("not-found".into());
        records.push(not_found);
        let stats = summarize(&records, &t);
        let find = |c: &str, o: &str| {
            stats
                .iter()
                .find(|s| s.connection == c && s.operation == o)
                .unwrap()
                .clone()
        };
        let list = find("crm", "list");
        assert_eq!((list.calls, list.errors, list.denied), (101, 0, 1));
        assert_eq!((list.p50_ms, list.p95_ms, list.p99_ms), (50.0, 95.0, 99.0));
        assert_eq!(list.health, Health::Healthy);
        assert_eq!(
            find("crm", "get").health,
            Health::Degraded,
            "p95 over 2000 ms"
        );
        assert_eq!(
            find("erp", "sync").health,
            Health::Down,
            "half the calls failed"
        );
        assert_eq!(health(20, 3, 10.0, &t), Health::Degraded, "15% errors");
        assert_eq!(health(0, 0, 0.0, &t), Health::Idle);
    }
}
