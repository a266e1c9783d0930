//! `airlock demo`: the control plane on the embedded store. An admin registers the sandbox
//! connector and configures connections; an operator creates, lists and gets records; the
//! read-only default, tenant isolation and the sandbox's limits are shown stopping what they
//! should; the audit log tells the story.

use airlock::control::vault::Vault;
use airlock::control::{ConnectionSpec, ControlError, ControlPlane, Principal, PrincipalKind};
use airlock::invocation::Role;
use airlock::limits::Limits;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

fn step(title: &str) {
    println!("\n== {title}");
}

fn person(tenant: &str, id: &str, role: Role) -> Principal {
    Principal {
        tenant: tenant.into(),
        id: id.into(),
        kind: PrincipalKind::User,
        role,
    }
}

async fn register(
    cp: &ControlPlane,
    admin: &Principal,
    guests: &Path,
    name: &str,
) -> anyhow::Result<()> {
    let path = guests.join(format!("{}.wasm", name.replace('-', "_")));
    let bytes = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!("cannot read {} ({e}); build the guests first (`cargo xtask demo` does) or pass --guests", path.display())
    })?;
    let started = Instant::now();
    let r = cp.register(admin, &bytes, &|_| {}).await?;
    let verb = if r.created {
        "registered"
    } else {
        "already registered"
    };
    println!(
        "$ airlock connector register {name}.wasm\n{} {} {verb}, sha256:{}... ({:.0} ms)",
        r.connector.id,
        r.connector.version,
        &r.connector.digest[..12],
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Creates a connection unless a previous run of the demo did.
async fn connection(
    cp: &ControlPlane,
    admin: &Principal,
    spec: ConnectionSpec,
) -> anyhow::Result<()> {
    let name = spec.name.clone();
    let mode = if spec.writes_enabled {
        "writes enabled"
    } else {
        "read-only (the default)"
    };
    match cp.connection_create(admin, spec).await {
        Ok(_) => {
            println!("$ airlock connection create {name} ...\nconnection {name} created, {mode}")
        }
        Err(ControlError::Conflict { .. }) => {
            println!("connection {name} exists from an earlier run, {mode}")
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn invoke(
    cp: &ControlPlane,
    who: &Principal,
    name: &str,
    op: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, ControlError> {
    println!(
        "$ airlock invoke {name} {op} --params '{params}'   # as {} ({:?}) of {}",
        who.id, who.role, who.tenant
    );
    let started = Instant::now();
    match cp.invoke(who, name, op, &params.to_string()).await {
        Ok(outcome) => {
            let value: serde_json::Value =
                serde_json::from_str(&outcome.output).unwrap_or_default();
            println!(
                "{value}   ({:.2} ms)",
                started.elapsed().as_secs_f64() * 1000.0
            );
            Ok(value)
        }
        Err(e) => {
            let kind = match e.exit_code() {
                2 => "denied",
                4 => "pending",
                _ => "error",
            };
            println!(
                "{kind} (exit {}): {}",
                e.exit_code(),
                super::remedy::with_hint(&e, e.remedy().as_ref())
            );
            Err(e)
        }
    }
}

pub async fn run(data_dir: &Path, guests: &Path) -> anyhow::Result<u8> {
    std::fs::create_dir_all(data_dir)?;
    println!(
        "Airlock demo: the control plane on the embedded store in {}",
        data_dir.display()
    );
    println!(
        "(the demo keeps its own master key in demo-master.key; real use needs AIRLOCK_MASTER_KEY)"
    );
    let vault = Vault::demo_key(data_dir)?;
    let cp = super::control::open(data_dir, vault).await?;
    let admin = person("acme", "ada", Role::Admin);
    let alice = person("acme", "alice", Role::Operator);

    step("An admin registers connectors (content-addressed; the same bytes again change nothing)");
    for name in ["sandbox", "spin-loop", "memory-hog"] {
        register(&cp, &admin, guests, name).await?;
    }

    step("The admin configures connections for tenant acme");
    let crm = ConnectionSpec {
        name: "crm".into(),
        connector: "sandbox".into(),
        config: json!({"latency_ms": 0}),
        writes_enabled: true,
        // Creates (medium risk) run at once; deletes (high) wait for a second person.
        approval: airlock::control::policies::ApprovalPolicy {
            require_from: Some(airlock::manifest::Risk::High),
            ..Default::default()
        },
        ..ConnectionSpec::default()
    };
    connection(&cp, &admin, crm).await?;
    let reports = ConnectionSpec {
        name: "reports".into(),
        connector: "sandbox".into(),
        ..ConnectionSpec::default()
    };
    connection(&cp, &admin, reports).await?;

    step("An operator creates, lists and gets a record");
    let created = invoke(
        &cp,
        &alice,
        "crm",
        "create",
        json!({"type": "items", "data": {"name": "widget", "qty": 3}}),
    )
    .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    invoke(
        &cp,
        &alice,
        "crm",
        "list",
        json!({"type": "items", "filter": {"name": "widget"}}),
    )
    .await?;
    invoke(
        &cp,
        &alice,
        "crm",
        "get",
        json!({"type": "items", "id": id}),
    )
    .await?;

    step("A risky write waits for a second person, then runs once");
    let spare = invoke(
        &cp,
        &alice,
        "crm",
        "create",
        json!({"type": "items", "data": {"name": "spare"}}),
    )
    .await?;
    let spare = spare["id"].as_str().unwrap_or_default().to_owned();
    let pending = invoke(
        &cp,
        &alice,
        "crm",
        "delete",
        json!({"type": "items", "id": spare}),
    )
    .await;
    let Err(ControlError::Pending(ticket)) = pending else {
        anyhow::bail!("a high-risk delete ran without approval");
    };
    let id_ = &ticket.request_id;
    println!("$ airlock approvals approve {id_}   # as alice, who asked");
    match cp.approval_decide(&alice, id_, true, None).await {
        Err(e) => println!(
            "denied (exit {}): {}",
            e.exit_code(),
            super::remedy::with_hint(&e, e.remedy().as_ref())
        ),
        Ok(_) => anyhow::bail!("the requester approved her own request"),
    }
    let bob = person("acme", "bob", Role::Operator);
    println!("$ airlock approvals approve {id_}   # as bob (Operator)");
    let approved = cp.approval_decide(&bob, id_, true, None).await?;
    println!(
        "{} {}: {}",
        approved.record.id,
        approved.record.status,
        approved.output.as_deref().unwrap_or("")
    );

    step("Writes are off unless a connection enables them");
    let denied = invoke(
        &cp,
        &alice,
        "reports",
        "create",
        json!({"type": "items", "data": {}}),
    )
    .await;
    anyhow::ensure!(
        matches!(denied, Err(ControlError::Denied { .. })),
        "a write on a read-only connection was not denied"
    );

    step("Roles decide: a viewer may not invoke");
    let viewer = person("acme", "victor", Role::Viewer);
    anyhow::ensure!(
        invoke(
            &cp,
            &viewer,
            "crm",
            "get",
            json!({"type": "items", "id": id})
        )
        .await
        .is_err()
    );

    step("Another tenant cannot even see the connection");
    let intruder = person("globex", "mallory", Role::Admin);
    let seen = invoke(
        &cp,
        &intruder,
        "crm",
        "get",
        json!({"type": "items", "id": id}),
    )
    .await;
    anyhow::ensure!(
        matches!(seen, Err(ControlError::NotFound { .. })),
        "globex reached acme's connection"
    );

    step("A runaway guest is stopped at its connection's deadline");
    let runaway = ConnectionSpec {
        name: "runaway".into(),
        connector: "spin-loop".into(),
        limits: Some(Limits {
            deadline: Duration::from_millis(250),
            ..Limits::default()
        }),
        ..ConnectionSpec::default()
    };
    connection(&cp, &admin, runaway).await?;
    let stopped = invoke(&cp, &alice, "runaway", "spin", json!({})).await;
    anyhow::ensure!(stopped.is_err(), "the runaway guest was not stopped");

    step("A memory hog is stopped at its connection's memory limit");
    let hog = ConnectionSpec {
        name: "hog".into(),
        connector: "memory-hog".into(),
        limits: Some(Limits {
            max_memory_bytes: 32 << 20,
            ..Limits::default()
        }),
        ..ConnectionSpec::default()
    };
    connection(&cp, &admin, hog).await?;
    anyhow::ensure!(
        invoke(&cp, &alice, "hog", "hog", json!({})).await.is_err(),
        "the memory hog was not stopped"
    );

    step("The host keeps serving");
    invoke(
        &cp,
        &alice,
        "crm",
        "get",
        json!({"type": "items", "id": id}),
    )
    .await?;

    step("The audit log (as an auditor): every decision, with the rule that made it");
    let auditor = person("acme", "audrey", Role::Auditor);
    let records = cp.audit_list(&auditor, 12).await?;
    for r in records {
        let target = match &r.operation {
            Some(op) => format!("{}/{op}", r.target),
            None => r.target.clone(),
        };
        println!(
            "  {:<8} {:<18} {:<20} {:<7} {}",
            r.principal, r.action, target, r.outcome, r.rule
        );
    }
    step("The audit trail is a hash chain with signed checkpoints");
    let report = cp.audit_verify(&auditor, &[]).await?;
    println!(
        "$ airlock audit verify\n{}: {} records, {} signed checkpoint(s)",
        if report.problem.is_none() {
            "intact"
        } else {
            "NOT intact"
        },
        report.records,
        report.checkpoints
    );
    println!("\nDemo complete.");
    Ok(super::control::close(&cp).await)
}
