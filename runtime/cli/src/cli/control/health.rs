//! `airlock health`: calls, errors, latency and state per connection and operation, and the
//! circuits that are not closed.

use super::*;

pub async fn health(cp: &ControlPlane, who: &Identity, window: i64) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let report = match cp.health(&principal, window).await {
        Ok(stats) => match cp.circuits(&principal).await {
            Ok(c) => cp
                .cache_stats(&principal)
                .await
                .map(|cache| (stats, c, cache)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match report {
        Ok((stats, circuits, cache)) => {
            if who.json {
                print_json(
                    &serde_json::json!({"operations": stats, "circuits": circuits, "cache": cache}),
                );
            } else {
                let rows = stats
                    .iter()
                    .map(|s| {
                        vec![
                            s.connection.clone(),
                            s.operation.clone(),
                            format!("{:?}", s.health).to_lowercase(),
                            s.calls.to_string(),
                            s.errors.to_string(),
                            s.denied.to_string(),
                            format!("{:.1}%", s.error_rate * 100.0),
                            format!("{:.1}", s.p50_ms),
                            format!("{:.1}", s.p95_ms),
                            format!("{:.1}", s.p99_ms),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &[
                            "connection",
                            "operation",
                            "health",
                            "calls",
                            "errors",
                            "denied",
                            "error rate",
                            "p50 ms",
                            "p95 ms",
                            "p99 ms"
                        ],
                        rows
                    )
                );
                for c in &cache.connections {
                    println!(
                        "cache {}: {} hit(s), {} miss(es) in this process",
                        c.connection, c.counts.hits, c.counts.misses
                    );
                }
                if !circuits.is_empty() {
                    let now = airlock::control::state::now_ms();
                    let rows = circuits
                        .iter()
                        .map(|c| {
                            let left = (c.until_ms - now).max(0) / 1000;
                            vec![
                                c.connection.clone(),
                                c.origin.clone(),
                                c.state.to_string(),
                                if c.state == "open" {
                                    format!("probe allowed in {left} s")
                                } else {
                                    "one probe in flight".into()
                                },
                            ]
                        })
                        .collect();
                    println!(
                        "circuit breakers not closed:\n{}",
                        table(&["connection", "origin", "state", "next"], rows)
                    );
                }
            }
            Ok(EXIT_OK)
        }
        Err(e) => Ok(report_error(&e)),
    }
}
