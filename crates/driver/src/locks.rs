//! Per-volume exclusion: at most one mutating operation per volume id at a time.
//!
//! A second call for a busy volume is refused at once (the spec's "operation pending",
//! ABORTED) rather than queued: the CO retries with backoff, and a queue would let retries of
//! a slow call pile up behind it.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The set of volume ids with an operation in flight.
#[derive(Debug, Default, Clone)]
pub struct VolumeLocks {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    busy: Mutex<HashSet<String>>,
    /// Signalled whenever a volume is released.
    released: Notify,
}

/// Held while an operation runs; releases the volume when dropped.
#[derive(Debug)]
pub struct VolumeGuard {
    shared: Arc<Shared>,
    volume_id: String,
}

impl VolumeLocks {
    /// Takes the volume, or `None` if an operation already holds it.
    pub fn try_lock(&self, volume_id: &str) -> Option<VolumeGuard> {
        let mut busy = self.shared.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.insert(volume_id.to_owned()).then(|| VolumeGuard {
            shared: self.shared.clone(),
            volume_id: volume_id.to_owned(),
        })
    }

    /// Runs `work` as a task of its own while holding the volume, or `None` if an operation
    /// already holds it.
    ///
    /// A caller that gives up (deadline, disconnect) does not cut a device change in half:
    /// the lock travels with the task, so a retry is refused until the first attempt has
    /// finished, and then finds its result in place.
    pub fn spawn_exclusive<F>(&self, volume_id: &str, work: F) -> Option<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let guard = self.try_lock(volume_id)?;
        Some(tokio::spawn(async move {
            let _guard = guard;
            work.await
        }))
    }

    /// Whether an operation holds the volume now.
    pub fn is_held(&self, volume_id: &str) -> bool {
        self.shared
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(volume_id)
    }

    /// Number of volumes currently held.
    pub fn held(&self) -> usize {
        self.shared
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Completes once no volume is held, e.g. so that shutdown lets device changes finish.
    pub async fn idle(&self) {
        loop {
            // Registered before checking, so a release in between is not missed.
            let released = self.shared.released.notified();
            if self.held() == 0 {
                return;
            }
            released.await;
        }
    }

    /// At shutdown, after the server stopped taking calls: lets operations whose callers
    /// may have gone (they run detached) finish, for at most `grace`. Stopping half-way
    /// through a format or a device change would leave work a retry must untangle.
    /// Returns whether everything finished.
    pub async fn drain(&self, grace: std::time::Duration) -> bool {
        let pending = self.held();
        if pending == 0 {
            return true;
        }
        tracing::info!(pending, "waiting for volume operations in flight");
        let finished = tokio::time::timeout(grace, self.idle()).await.is_ok();
        if !finished {
            tracing::warn!(
                still_running = self.held(),
                "volume operations still running at exit; the CO's retries will complete them"
            );
        }
        finished
    }
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        self.shared
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.volume_id);
        self.shared.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_volume_and_release_on_drop() {
        let locks = VolumeLocks::default();
        let a = locks.try_lock("pvc-a").expect("free");
        assert!(locks.try_lock("pvc-a").is_none());
        let b = locks
            .try_lock("pvc-b")
            .expect("other volumes are independent");
        assert_eq!(locks.held(), 2);
        drop(a);
        assert!(locks.try_lock("pvc-a").is_some());
        drop(b);
        assert_eq!(locks.held(), 0);
    }

    #[tokio::test]
    async fn a_spawned_operation_holds_the_volume_until_it_ends() {
        let locks = VolumeLocks::default();
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let task = locks
            .spawn_exclusive("pvc-a", async move {
                finished.await.ok();
                7
            })
            .expect("free");
        assert!(locks.spawn_exclusive("pvc-a", async {}).is_none());
        assert!(locks.try_lock("pvc-a").is_none());
        finish.send(()).unwrap();
        assert_eq!(task.await.unwrap(), 7);
        assert_eq!(locks.held(), 0, "released when the task ends");
    }

    #[tokio::test]
    async fn idle_waits_for_the_last_release() {
        let locks = VolumeLocks::default();
        locks.idle().await; // nothing held: at once
        let a = locks.try_lock("a").unwrap();
        let b = locks.try_lock("b").unwrap();
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move { locks.idle().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one volume still held");
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("idle after the last release")
            .unwrap();
    }

    #[tokio::test]
    async fn drain_waits_within_its_grace_only() {
        use std::time::Duration;
        let locks = VolumeLocks::default();
        assert!(locks.drain(Duration::ZERO).await, "nothing held");
        let running = locks
            .spawn_exclusive("a", tokio::time::sleep(Duration::from_millis(200)))
            .unwrap();
        assert!(
            !locks.drain(Duration::from_millis(10)).await,
            "still running"
        );
        assert!(
            locks.drain(Duration::from_secs(10)).await,
            "finished in time"
        );
        assert!(running.is_finished());
    }
}
