//! The audit spool: records the store would not take, kept in files on this node until it does.
//!
//! A process that must stop while its store refuses writes (a full disk, a trigger, a lock held
//! too long) would otherwise take its held records with it. It writes them here instead, one
//! file per process exit, written whole to a temporary name, synced and renamed, so a file that
//! exists is complete. The next writer to start (any process on this data directory) claims each
//! file by renaming it to its own process id, so two processes never append one file twice, and
//! appends its records to the chain before its own; only after the store has taken them is the
//! file deleted. A claim whose process has died is taken over.
//!
//! When even the spool cannot be written (the same full disk), the records are printed to the
//! error log in full: nothing is dropped silently.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// One record as the writer stores it: (at, tenant, record JSON).
pub type Entry = (i64, String, String);

const SUFFIX: &str = ".jsonl";
const CLAIMED: &str = ".claimed-";

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    at: i64,
    tenant: String,
    record: String,
}

/// Writes `entries` to a new spool file in `dir`, returning its path.
pub fn write(dir: &Path, entries: &[Entry]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = format!(
        "{}-{}",
        super::super::state::now_ms(),
        uuid::Uuid::new_v4().simple()
    );
    let temporary = dir.join(format!(".{name}.tmp"));
    let path = dir.join(format!("{name}{SUFFIX}"));
    let result = (|| {
        let mut file = private_file(&temporary)?;
        for (at, tenant, record) in entries {
            let line = Line {
                at: *at,
                tenant: tenant.clone(),
                record: record.clone(),
            };
            serde_json::to_writer(&mut file, &line)?;
            file.write_all(b"\n")?;
        }
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        // The rename is durable once the directory is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map(|()| path)
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Files claimed by this process, and the records in them, oldest file first.
pub struct Claimed {
    pub files: Vec<PathBuf>,
    pub entries: Vec<Entry>,
}

/// Claims every complete spool file in `dir` that no live process holds, and reads it. A file
/// that cannot be parsed is left in place (renamed `.bad`) and reported, not dropped.
pub fn claim(dir: &Path) -> Claimed {
    let mut claimed = Claimed {
        files: Vec::new(),
        entries: Vec::new(),
    };
    let Ok(read) = std::fs::read_dir(dir) else {
        return claimed;
    };
    let me = std::process::id();
    let mut names: Vec<String> = read
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !n.ends_with(".bad"))
        .collect();
    names.sort();
    for name in names {
        let (base, holder) = match name.split_once(CLAIMED) {
            Some((base, pid)) => (base.to_owned(), pid.parse::<u32>().ok()),
            None if name.ends_with(SUFFIX) => (name.clone(), None),
            None => continue,
        };
        if holder.is_some_and(|pid| pid == me || process_alive(pid)) {
            continue;
        }
        let from = dir.join(&name);
        let to = dir.join(format!("{base}{CLAIMED}{me}"));
        // Another process may have claimed it a moment ago: then the rename fails.
        if std::fs::rename(&from, &to).is_err() {
            continue;
        }
        match read_entries(&to) {
            Ok(entries) => {
                claimed.entries.extend(entries);
                claimed.files.push(to);
            }
            Err(e) => {
                let bad = dir.join(format!("{base}.bad"));
                tracing::error!(file = %to.display(), "audit spool file cannot be read ({e}); kept as {}", bad.display());
                let _ = std::fs::rename(&to, &bad);
            }
        }
    }
    claimed
}

fn read_entries(path: &Path) -> std::io::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Line>(l)
                .map(|l| (l.at, l.tenant, l.record))
                .map_err(std::io::Error::other)
        })
        .collect()
}

/// Whether `pid` is a running process. Where that cannot be told, assume it is (a claim is then
/// never taken over, which keeps the records, only later).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_spool_round_trips_and_is_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![
            (1, "t1".to_owned(), r#"{"a":1}"#.to_owned()),
            (2, "t2".to_owned(), "{\"b\":\"line\\nbreak\"}".to_owned()),
        ];
        let path = write(dir.path(), &entries).unwrap();
        assert!(path.exists());
        let first = claim(dir.path());
        assert_eq!(first.entries, entries);
        assert_eq!(first.files.len(), 1);
        // Claimed by a live process (this one): nobody else takes it.
        assert!(claim(dir.path()).entries.is_empty());
        // A claim by a dead process is taken over.
        let dead = dir.path().join(format!("x{SUFFIX}{CLAIMED}4000000000"));
        std::fs::rename(&first.files[0], &dead).unwrap();
        let again = claim(dir.path());
        assert_eq!(again.entries, entries);
    }

    #[test]
    fn audit_spool_keeps_unreadable_files_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("broken{SUFFIX}")), "not json\n").unwrap();
        let claimed = claim(dir.path());
        assert!(claimed.entries.is_empty());
        assert!(dir.path().join("broken.jsonl.bad").exists());
    }
}
