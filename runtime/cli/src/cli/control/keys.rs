//! `airlock keys`: which master key is in use, and rotating to a new one. Keys come from the
//! environment or from files, never from the command line (where process listings show them),
//! and are never printed: only their ids are.

use super::*;
use airlock::control::keys::{DEFAULT_BATCH, RotateOptions};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print the id of the master key in use (and of the previous key, if set), or of a key
    /// file. An id names a key without revealing it.
    Id {
        /// Identify the key in this file instead of the environment's.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Re-seal every stored secret under a new master key and move the audit trail's signatures
    /// to it. The old key is AIRLOCK_MASTER_KEY (or _FILE); interrupted, run it again to resume.
    Rotate {
        /// The file holding the new key (`airlock keygen > new.key`).
        #[arg(long)]
        new_key_file: PathBuf,
        /// Values re-sealed per transaction.
        #[arg(long, default_value_t = DEFAULT_BATCH)]
        batch_size: usize,
        /// Leave damaged values (altered, or moved from another row: unreadable with any key) as
        /// they are instead of refusing.
        #[arg(long)]
        skip_unreadable: bool,
    },
}

/// `airlock keys id`: needs no store, only the keys.
pub fn keys_id(who: &Identity, key_file: Option<&Path>) -> anyhow::Result<u8> {
    let vault = match key_file {
        Some(path) => Vault::from_file(path)?,
        None => airlock::settings::vault_from_env()?,
    };
    let keys: Vec<serde_json::Value> = vault
        .key_sources()
        .into_iter()
        .enumerate()
        .map(|(i, (id, source))| {
            serde_json::json!({
                "key": if i == 0 { "current" } else { "previous" },
                "id": id.to_string(),
                "source": source,
            })
        })
        .collect();
    if who.json {
        print_json(&keys);
    } else {
        for k in &keys {
            println!(
                "{:<9} {}  ({})",
                k["key"].as_str().unwrap_or_default(),
                k["id"].as_str().unwrap_or_default(),
                k["source"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(EXIT_OK)
}

pub async fn keys_rotate(
    cp: &ControlPlane,
    who: &Identity,
    new_key_file: &Path,
    batch_size: usize,
    skip_unreadable: bool,
) -> anyhow::Result<u8> {
    let principal = who.principal()?;
    let new = Vault::from_file(new_key_file)?;
    warn_if_shared(new_key_file);
    let options = RotateOptions {
        batch: batch_size,
        skip_unreadable,
    };
    let result = cp.keys_rotate(&principal, new, options).await;
    flush(cp).await;
    let report = match result {
        Ok(report) => report,
        Err(e) => return Ok(report_error(&e)),
    };
    if who.json {
        print_json(&report);
        return Ok(EXIT_OK);
    }
    let counts: Vec<String> = report
        .resealed
        .iter()
        .map(|(kind, n)| format!("{n} {}", kind.name()))
        .collect();
    println!(
        "master key {} -> {} ({}): audit trail verified through record {}; re-sealed {} ({} over the \
         whole rotation); {} checkpoint(s) re-signed; rotation checkpoint at record {}",
        report.from_key,
        report.to_key,
        report.run,
        report.verified_through,
        counts.join(", "),
        report.resealed_total,
        report.checkpoints_resigned,
        report.rotation_seq
    );
    for skipped in &report.skipped {
        println!("left as it was (damaged, still unreadable): {skipped}");
    }
    println!(
        "next: give every process the new key {} as AIRLOCK_MASTER_KEY (or _FILE) and drop the old key {}; \
         keep the old one offline only to check old checkpoints or the hand-over",
        report.to_key, report.from_key
    );
    Ok(EXIT_OK)
}

/// A key file others can read is a key others have: say so (the rotation still runs).
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: {} can be read by other users (mode {:o}); `chmod 600` it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
}
