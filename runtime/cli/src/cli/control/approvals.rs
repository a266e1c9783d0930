//! `airlock approvals`: list, show, approve, deny, wait and resume requests.

use super::*;
use airlock::control::state::ApprovalStatus;

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Open requests (pending, approved, running); --all for every one.
    List {
        #[arg(long)]
        all: bool,
        /// Print only the ids of pending requests, one per line.
        #[arg(long, short)]
        quiet: bool,
    },
    /// One request: the exact action (secret-looking params redacted), its risk and status,
    /// and the output once it ran.
    Show { id: String },
    /// Approve a request; the action runs at once and its outcome is printed.
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a request, saying why.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Wait for a request's outcome (exit 0 ran, 1 failed or expired, 2 denied, 4 still pending).
    Wait {
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
    },
    /// Run approved requests a stopped process left unstarted.
    Resume,
}

fn show_approval(view: &airlock::control::approvals::ApprovalView) -> u8 {
    let r = &view.record;
    let escape = airlock::control::audit::escape;
    println!(
        "{} {} {}/{} ({} risk, approver {:?} or higher)",
        r.id, r.status, r.connection, r.operation, r.risk, view.approver
    );
    println!(
        "  requested by {} at {}",
        escape(&r.requested_by),
        when(Some(r.requested_at))
    );
    if let Some(rationale) = &r.rationale {
        println!("  rationale: {}", escape(rationale));
    }
    println!("  params: {}", view.params);
    if let Some(effects) = view.preview["effects"].as_array() {
        println!("  dry run: {} effect(s) it would have", effects.len());
        for effect in effects {
            println!("    {effect}");
        }
    }
    println!("  expires: {}", when(Some(r.expires_at)));
    if let Some(by) = &r.decided_by {
        println!(
            "  decided by {} at {}{}",
            escape(by),
            when(r.decided_at),
            r.reason
                .as_deref()
                .map(|why| format!(": {}", escape(why)))
                .unwrap_or_default()
        );
    }
    if let Some(output) = &view.output {
        println!("{output}");
    }
    if let Some(error) = &r.error {
        super::say("error", &error);
    }
    match r.status {
        ApprovalStatus::Executed => EXIT_OK,
        ApprovalStatus::Denied => 2,
        ApprovalStatus::Pending | ApprovalStatus::Approved | ApprovalStatus::Executing => 4,
        ApprovalStatus::Expired | ApprovalStatus::Failed => 1,
    }
}

pub async fn approvals(
    cp: &ControlPlane,
    who: &Identity,
    command: ApprovalsCommand,
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    // Whatever a stopped process left approved but unstarted runs now, once.
    if let Err(e) = cp.approvals_resume().await {
        super::say("warning: could not resume approved requests", &e);
    }
    let result = match command {
        ApprovalsCommand::List { all, quiet } => {
            cp.approvals_list(&principal, all).await.map(|views| {
                if quiet {
                    for v in views
                        .iter()
                        .filter(|v| v.record.status == ApprovalStatus::Pending)
                    {
                        println!("{}", v.record.id);
                    }
                } else if who.json {
                    print_json(&views);
                } else {
                    let rows = views
                        .iter()
                        .map(|v| {
                            let r = &v.record;
                            vec![
                                r.id.clone(),
                                r.status.to_string(),
                                format!("{}/{}", r.connection, r.operation),
                                r.risk.to_string(),
                                airlock::control::audit::escape(&r.requested_by),
                                when(Some(r.requested_at)),
                                when(Some(r.expires_at)),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "id",
                                "status",
                                "action",
                                "risk",
                                "requested by",
                                "at",
                                "expires"
                            ],
                            rows
                        )
                    );
                }
                EXIT_OK
            })
        }
        ApprovalsCommand::Show { id } => cp.approval_show(&principal, &id).await.map(|v| {
            if who.json {
                print_json(&v);
                EXIT_OK
            } else {
                show_approval(&v)
            }
        }),
        ApprovalsCommand::Approve { id, reason } => cp
            .approval_decide(&principal, &id, true, reason.as_deref())
            .await
            .map(|v| {
                if who.json {
                    print_json(&v);
                    return if v.record.status == ApprovalStatus::Executed {
                        EXIT_OK
                    } else {
                        1
                    };
                }
                show_approval(&v)
            }),
        ApprovalsCommand::Deny { id, reason } => cp
            .approval_decide(&principal, &id, false, Some(&reason))
            .await
            .map(|v| {
                if who.json {
                    print_json(&v);
                } else {
                    show_approval(&v);
                }
                EXIT_OK
            }),
        ApprovalsCommand::Wait { id, timeout_s } => cp
            .approval_wait(&principal, &id, Duration::from_secs(timeout_s))
            .await
            .map(|v| {
                if who.json {
                    print_json(&v);
                }
                show_approval(&v)
            }),
        ApprovalsCommand::Resume => cp.approvals_resume().await.map(|n| {
            println!("{n} approved request(s) run");
            EXIT_OK
        }),
    };
    flush(cp).await;
    Ok(match result {
        Ok(code) => code,
        Err(e) => report_error(&e),
    })
}
