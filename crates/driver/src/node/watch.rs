//! The background check of staged volumes: every `health_interval` (or at once when a stats
//! call saw trouble) each recorded volume is compared with what the fabric shows, and a volume
//! whose namespace was replaced is re-staged. A volume busy with a CSI call is skipped (the
//! call checks it itself); a re-stage that fails is retried with a growing wait.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use mounts::mountinfo::read_self_mount_table;
use mounts::mountpoint::table_spelling;

use super::health::Backoff;
use super::orphans::OrphanTracker;
use super::records::StagedLayout;
use super::recover::Checked;
use super::{NodeCore, NodeService};
use crate::locks::VolumeLocks;

/// Time one volume's check (and re-stage) may take.
const CHECK_TIME: Duration = Duration::from_secs(60);

impl NodeService {
    /// Forgets the records of volumes that are no longer staged: a node reboot unmounts and
    /// disconnects everything, and kubelet stages again what it still needs (with fresh
    /// records). A filesystem volume is staged while its staging path is a mount point, a
    /// block volume while anything of its attachment is left (a controller reconnecting
    /// through an RDS reboot included); when that cannot be read, the record stays.
    pub async fn forget_unstaged(&self) {
        let core = &self.core;
        let deadline = Instant::now() + CHECK_TIME;
        let table = match read_self_mount_table(deadline).await {
            Ok(table) => table,
            Err(error) => {
                tracing::warn!(%error, "records not checked: the mount table cannot be read");
                return;
            }
        };
        for record in core.records.all() {
            let staged = match &record.layout {
                StagedLayout::Filesystem { .. } => table_spelling(&record.staging, deadline)
                    .await
                    .map_or(true, |spelled| table.is_mount_point(&spelled)),
                StagedLayout::Block => core
                    .fabric
                    .is_connected(&record.nqn, deadline)
                    .await
                    .unwrap_or(true),
            };
            if !staged {
                tracing::info!(volume_id = %record.volume_id, "forgetting the record of a volume no longer staged here");
                if let Err(error) = core.records.remove(&record.volume_id, deadline).await {
                    tracing::warn!(volume_id = %record.volume_id, %error, "record not removed");
                }
            }
        }
        core.metrics.set_staged_volumes(core.records.all().len());
    }

    /// Starts the background check; `None` when `health_interval` is zero (disabled).
    pub fn spawn_health_check(&self) -> Option<HealthCheck> {
        let interval = self.core.config.health_interval;
        if interval.is_zero() {
            return None;
        }
        let core = Arc::clone(&self.core);
        let locks = self.locks.clone();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let (mut backoff, mut orphans) = (Backoff::default(), OrphanTracker::default());
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = core.wake_check.notified() => {}
                    _ = stopped.changed() => return,
                }
                check_all(&core, &locks, &mut backoff, &stopped).await;
                if !*stopped.borrow() {
                    core.sweep_orphans(&mut orphans, &locks, Instant::now() + CHECK_TIME)
                        .await;
                }
            }
        });
        Some(HealthCheck { stop, task })
    }
}

/// The running background check.
#[derive(Debug)]
pub struct HealthCheck {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HealthCheck {
    /// Lets the check finish the volume it is at (a re-stage cut off half-way is completed
    /// only by the next start) and starts no other; gives up after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            tracing::warn!("the background check did not finish in time; stopped");
            self.task.abort();
        }
    }
}

async fn check_all(
    core: &NodeCore,
    locks: &VolumeLocks,
    backoff: &mut Backoff,
    stopped: &tokio::sync::watch::Receiver<bool>,
) {
    let records = core.records.all();
    core.metrics.set_staged_volumes(records.len());
    backoff.retain(|id| records.iter().any(|r| r.volume_id == id));
    for listed in records {
        if *stopped.borrow() {
            return;
        }
        let id = listed.volume_id;
        if !backoff.due(&id, Instant::now()) {
            continue;
        }
        let Some(_guard) = locks.try_lock(&id) else {
            continue;
        };
        // Read again under the lock: an unstage may have just removed it.
        let Some(record) = core.records.get(&id) else {
            continue;
        };
        let span = tracing::info_span!("health check", volume_id = %id);
        match core
            .check_and_recover(&record, Instant::now() + CHECK_TIME)
            .instrument(span)
            .await
        {
            Ok(Checked::Healthy | Checked::Recovered(_)) => backoff.succeeded(&id),
            Ok(Checked::Waiting(why)) => tracing::debug!(%why, "volume waits for its controller"),
            Ok(Checked::Stranded(why)) => {
                let wait = backoff.failed(&id, Instant::now());
                tracing::warn!(%why, retry_in_s = wait.as_secs(),
                    "published paths of the volume are still on its replaced namespace");
            }
            Err(error) => {
                let wait = backoff.failed(&id, Instant::now());
                tracing::warn!(%error, retry_in_s = wait.as_secs(),
                    "could not re-stage the volume on its new namespace");
            }
        }
    }
}

impl NodeCore {
    fn failures(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.recovery_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn remember_recovery_failure(&self, volume_id: &str, why: String) {
        let mut failures = self.failures();
        failures.insert(volume_id.to_owned(), why);
        self.metrics.set_replaced_volumes(failures.len());
    }

    pub(crate) fn forget_recovery_failure(&self, volume_id: &str) {
        let mut failures = self.failures();
        failures.remove(volume_id);
        self.metrics.set_replaced_volumes(failures.len());
    }

    pub(crate) fn recovery_failure(&self, volume_id: &str) -> Option<String> {
        self.failures().get(volume_id).cloned()
    }

    /// Asks the background check to run now.
    pub(crate) fn wake_health_check(&self) {
        self.wake_check.notify_one();
    }
}
