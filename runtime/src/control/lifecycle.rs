//! The control plane's life: built over the embedded default store ([`ControlPlane::open_embedded`],
//! the composition root every front end shares), its own background work, started by whoever
//! serves it (a server, a test) and stopped with it, and shutdown (`ControlPlane::shutdown`).
//! Nothing waits for a command to be typed.
//!
//! Every round (at once, then every `interval`): approved requests that no process is running are
//! run, exactly once across processes (the store's claim decides who; a process that died between
//! approval and execution leaves its request to the next round anywhere), executions whose
//! process died are marked failed once their lease runs out, pending requests past their expiry
//! are expired, and the audit log is flushed (which signs a checkpoint over new records). A
//! decision made in this process wakes its waiters at once ([`Decisions`]); one made in another
//! process is seen at the next look at the store.

use super::ControlPlane;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How often, by default, the background work looks at the store.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// Running background work; [`Background::shutdown`] stops it.
pub struct Background {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Stops after the round in progress, if any, and waits for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl ControlPlane {
    /// A control plane over the embedded default store in `data_dir`: `airlock.db` (SQLite:
    /// registry, connections, audit, and connector key-value storage), the compile cache in
    /// `cache/`, and the audit spool in `audit-spool/`. The same for every front end.
    pub async fn open_embedded(
        data_dir: &std::path::Path,
        vault: super::vault::Vault,
        settings: crate::settings::Settings,
    ) -> super::Result<ControlPlane> {
        let state = Arc::new(super::state::SqliteState::open(&data_dir.join("airlock.db")).await?);
        let keyvalue: Arc<dyn crate::capability::keyvalue::KeyValueStore> =
            Arc::new(state.keyvalue());
        let executor = crate::Executor::new(crate::ExecutorOptions {
            cache_dir: Some(data_dir.join("cache")),
            ..Default::default()
        })
        .map_err(|e| {
            super::ControlError::State(super::state::StateError::Storage(format!(
                "cannot start the executor: {e:#}"
            )))
        })?;
        Ok(ControlPlane::with_settings(
            state,
            Arc::new(executor),
            vault,
            keyvalue,
            settings,
        ))
    }

    /// Starts the background work on the current tokio runtime (see the module doc).
    pub fn start_background(self: &Arc<Self>, interval: Duration) -> Background {
        let (stop, mut stopped) = watch::channel(false);
        let cp = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                let Some(plane) = cp.upgrade() else { break };
                plane.background_round().await;
                drop(plane);
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        });
        Background { stop, task }
    }

    /// One round of background work; errors are logged and retried next round.
    pub async fn background_round(&self) {
        if let Err(e) = self
            .state
            .expire_all_approvals(super::state::now_ms())
            .await
        {
            tracing::warn!("background: expiring approval requests: {e}");
        }
        match self.approvals_resume().await {
            Ok(0) => {}
            Ok(ran) => tracing::info!(ran, "background: ran approved requests"),
            Err(e) => tracing::warn!("background: resuming approved requests: {e}"),
        }
        if let Err(e) = self.audit.flush().await {
            tracing::warn!("background: {e}");
        }
    }
}

/// Wakes the waiters on an approval request when this process changes it.
#[derive(Default)]
pub struct Decisions {
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Decisions {
    /// The signal for `id`: notified on every change made through this process.
    pub fn watch(&self, id: &str) -> Arc<Notify> {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// Wakes every waiter on `id`.
    pub fn changed(&self, id: &str) {
        let notify = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Forgets `id` once nobody waits on it.
    pub fn release(&self, id: &str) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.get(id).is_some_and(|n| Arc::strong_count(n) == 1) {
            waiting.remove(id);
        }
    }
}
