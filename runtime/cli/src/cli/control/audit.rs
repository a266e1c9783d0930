//! `airlock audit`: list, verify (with an external checkpoint), export as JSON lines, checkpoint.

use super::*;

pub async fn audit(cp: &ControlPlane, who: &Identity, limit: i64) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    match cp.audit_list(&principal, limit).await {
        Ok(records) => {
            if who.json {
                print_json(&records);
            } else {
                let rows = records
                    .iter()
                    .map(|r| {
                        use airlock::control::audit::escape;
                        // Every field escaped: a value must not forge a line in this table.
                        vec![
                            when(Some(r.at)),
                            escape(&format!(
                                "{} ({}, {})",
                                r.principal, r.principal_kind, r.role
                            )),
                            escape(&r.action),
                            escape(&match &r.operation {
                                Some(op) => format!("{}/{op}", r.target),
                                None => r.target.clone(),
                            }),
                            escape(&r.outcome),
                            escape(&r.rule),
                            format!("{:.1} ms", r.duration_us as f64 / 1000.0),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &["when", "who", "action", "target", "outcome", "rule", "took"],
                        rows
                    )
                );
            }
            Ok(EXIT_OK)
        }
        Err(e) => Ok(report_error(&e)),
    }
}

/// A point in time from the command line: RFC 3339, or an age such as `24h` (that long ago).
fn parse_time(flag: &str, text: &str) -> anyhow::Result<i64> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text.trim()) {
        return Ok(at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64));
    }
    if let Ok(age) = humantime::parse_duration(text.trim()) {
        return Ok(airlock::control::state::now_ms() - age.as_millis() as i64);
    }
    anyhow::bail!(
        "{flag} `{text}` is neither a time (2026-11-22T08:00:00Z) nor an age (24h, 7days)"
    )
}

pub async fn audit_verify(
    cp: &ControlPlane,
    who: &Identity,
    checkpoints: &[String],
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let mut extra = Vec::new();
    for given in checkpoints {
        let text = if given.trim_start().starts_with('{') {
            given.clone()
        } else {
            std::fs::read_to_string(given).map_err(|e| {
                anyhow::anyhow!("--checkpoint {given}: not JSON and not a readable file ({e})")
            })?
        };
        extra.push(serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "--checkpoint: not a checkpoint as `airlock audit checkpoint` prints it ({e})"
            )
        })?);
    }
    match cp.audit_verify(&principal, &extra).await {
        Ok(report) => {
            if who.json {
                print_json(&report);
            } else if let Some(problem) = &report.problem {
                println!(
                    "audit trail NOT intact: first bad record at position {}: {}",
                    problem.seq,
                    crate::cli::remedy::with_hint(&problem.what, problem.remedy.as_ref())
                );
            } else {
                println!(
                    "audit trail intact: {} records through {}, {} signed checkpoint(s){}{}{}",
                    report.records,
                    report.last_seq,
                    report.checkpoints,
                    match (report.rotations, report.links_checked) {
                        (0, _) => String::new(),
                        (n, 0) => format!(", {n} key rotation(s)"),
                        (n, l) => format!(
                            ", {n} key rotation(s) ({l} hand-over(s) checked with the old key)"
                        ),
                    },
                    if report.predating_chain > 0 {
                        format!(", {} record(s) predate the chain", report.predating_chain)
                    } else {
                        String::new()
                    },
                    if report.after_last_checkpoint > 0 {
                        format!(
                            ", {} record(s) after the newest checkpoint",
                            report.after_last_checkpoint
                        )
                    } else {
                        String::new()
                    }
                );
            }
            if !who.json {
                for note in &report.notes {
                    println!("note: {note}");
                }
            }
            Ok(if report.problem.is_some() { 3 } else { EXIT_OK })
        }
        Err(e) => Ok(report_error(&e)),
    }
}

pub async fn audit_export(
    cp: &ControlPlane,
    who: &Identity,
    since: Option<&str>,
    until: Option<&str>,
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let since = since
        .map(|t| parse_time("--since", t))
        .transpose()?
        .unwrap_or(0);
    let until = until
        .map(|t| parse_time("--until", t))
        .transpose()?
        .unwrap_or(i64::MAX);
    match cp.audit_export(&principal, since, until).await {
        Ok(rows) => {
            use std::io::Write as _;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for row in rows {
                let record: serde_json::Value =
                    serde_json::from_str(&row.record).unwrap_or(serde_json::Value::Null);
                let line = serde_json::json!({
                    "seq": row.seq,
                    "prev_hash": row.prev_hash,
                    "hash": row.hash,
                    "record": record,
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            Ok(EXIT_OK)
        }
        Err(e) => Ok(report_error(&e)),
    }
}

pub async fn audit_checkpoint(cp: &ControlPlane, who: &Identity) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    match cp.audit_checkpoint(&principal).await {
        Ok(Some(c)) => {
            println!("{}", serde_json::to_string(&c)?);
            Ok(EXIT_OK)
        }
        Ok(None) => {
            eprintln!("no audit records yet, so nothing to vouch for");
            Ok(1)
        }
        Err(e) => Ok(report_error(&e)),
    }
}
