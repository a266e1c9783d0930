//! `/metrics`: this process's figures in the Prometheus text exposition format (0.0.4), for a
//! scraper of each node. Host-wide aggregates only, with no tenant or connection names (see
//! `airlock::control::counters`), so the endpoint needs no token; per-tenant figures are
//! `/v1/health`'s.

use crate::App;
use crate::problem::Problem;
use airlock::control::counters::LATENCY_BUCKETS;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

/// A label value with `\`, `"` and newlines escaped, as the format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// This process's figures in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "server", security(()),
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String),
        (status = 500, body = Problem, content_type = "application/problem+json")))]
pub async fn metrics(State(app): State<App>) -> Result<Response, Problem> {
    let m = app.control.metrics().await?;
    let mut out = String::new();
    let c = &m.counters;
    let _ = writeln!(
        out,
        "# HELP airlock_requests_total Control-plane requests by action and outcome.\n# TYPE airlock_requests_total counter"
    );
    for ((action, outcome), n) in &c.requests {
        let _ = writeln!(
            out,
            "airlock_requests_total{{action=\"{}\",outcome=\"{}\"}} {n}",
            label(action),
            label(outcome)
        );
    }
    let _ = writeln!(
        out,
        "# HELP airlock_denials_total Denials by the rule that denied.\n# TYPE airlock_denials_total counter"
    );
    for (rule, n) in &c.denials {
        let _ = writeln!(out, "airlock_denials_total{{rule=\"{}\"}} {n}", label(rule));
    }
    let _ = writeln!(
        out,
        "# HELP airlock_invocation_duration_seconds Invocations through the control plane, from the request to the answer.\n# TYPE airlock_invocation_duration_seconds histogram"
    );
    for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "airlock_invocation_duration_seconds_bucket{{le=\"{bound}\"}} {}",
            c.latency_buckets[i]
        );
    }
    let _ = writeln!(
        out,
        "airlock_invocation_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        c.latency_buckets[LATENCY_BUCKETS.len()]
    );
    let _ = writeln!(
        out,
        "airlock_invocation_duration_seconds_sum {}\nairlock_invocation_duration_seconds_count {}",
        c.latency_sum_seconds, c.latency_count
    );
    let _ = writeln!(
        out,
        "# HELP airlock_approvals_open Approval requests not yet finished, by status.\n# TYPE airlock_approvals_open gauge"
    );
    for status in ["pending", "approved", "executing"] {
        let n = m
            .approvals_open
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "airlock_approvals_open{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP airlock_breakers_tripped Circuit breakers not closed, by state.\n# TYPE airlock_breakers_tripped gauge"
    );
    for state in ["open", "half-open"] {
        let n = m
            .breakers
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "airlock_breakers_tripped{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP airlock_audit_available Whether the audit store takes writes (nothing runs while it does not).\n# TYPE airlock_audit_available gauge\nairlock_audit_available {}",
        u8::from(m.audit_available)
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
