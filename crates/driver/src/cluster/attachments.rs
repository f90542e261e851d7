//! The watched side of the index: two kube-rs watchers (VolumeAttachments, PersistentVolumes)
//! feed [`AttachmentState`] event by event; callers read it without touching the network.

use std::fmt::Debug;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::backoff::RetryBackoff;
use super::facts::{Watched, update_of};
use super::index::{AttachmentState, ClusterAttachment, Kind};

/// The index stopped: its watch task ended (aborted or panicked), so it will not change
/// again and must not be decided from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the attachment index stopped: its watch task is gone")]
pub struct IndexStopped;

/// A watched, indexed view of this driver's VolumeAttachments: volume handle → the
/// attachments holding it, oldest first. Cheap to clone; clones share one index.
///
/// Wait for [`ready`](Self::ready) before deciding from it: until both the attachments and
/// the volumes have been listed once, an empty answer means "not known yet", not "free".
#[derive(Debug, Clone)]
pub struct AttachmentIndex {
    state: Arc<RwLock<AttachmentState>>,
    changes: watch::Receiver<u64>,
    ready: watch::Receiver<bool>,
}

/// The writing side, owned by the watch task: dropping it tells readers the index stopped.
struct Writer {
    state: Arc<RwLock<AttachmentState>>,
    changes: watch::Sender<u64>,
    ready: watch::Sender<bool>,
    driver: String,
}

impl AttachmentIndex {
    /// Starts watching VolumeAttachments whose `spec.attacher` is `driver_name`, and the
    /// PersistentVolumes whose `spec.csi.driver` is, through `client`. The task runs until
    /// aborted, retrying failed lists and watches ([`RetryBackoff`]).
    pub fn spawn(client: kube::Client, driver_name: impl Into<String>) -> (Self, JoinHandle<()>) {
        let state = Arc::new(RwLock::new(AttachmentState::new()));
        let (changes_tx, changes) = watch::channel(0);
        let (ready_tx, ready) = watch::channel(false);
        let writer = Arc::new(Writer {
            state: state.clone(),
            changes: changes_tx,
            ready: ready_tx,
            driver: driver_name.into(),
        });
        let attachments = Api::<VolumeAttachment>::all(client.clone());
        let volumes = Api::<PersistentVolume>::all(client);
        let task = tokio::spawn(async move {
            // One task per kind, so the two lists are parsed in parallel at start; the set
            // aborts both when this task is aborted.
            let mut kinds = JoinSet::new();
            kinds.spawn(follow(attachments, writer.clone()));
            kinds.spawn(follow(volumes, writer));
            while kinds.join_next().await.is_some() {}
        });
        let index = AttachmentIndex {
            state,
            changes,
            ready,
        };
        (index, task)
    }

    /// Returns once the attachments and the volumes have been listed once.
    pub async fn ready(&self) -> Result<(), IndexStopped> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|r| *r)
            .await
            .map(|_| ())
            .map_err(|_| IndexStopped)
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The attachments holding `volume_handle`, oldest first, from memory.
    pub fn holders(&self, volume_handle: &str) -> Vec<ClusterAttachment> {
        self.read().holders(volume_handle).to_vec()
    }

    /// Every volume handle some attachment holds, sorted.
    pub fn volume_handles(&self) -> Vec<String> {
        self.read().volume_handles()
    }

    /// The volume handles of this driver's PersistentVolumes, from memory.
    pub fn persistent_volume_handles(&self) -> std::collections::HashSet<String> {
        self.read().persistent_volume_handles()
    }

    /// Attachments of this driver whose PersistentVolume is not known (not seen yet,
    /// deleted, or another driver's), sorted: they hold no volume in [`holders`](Self::holders).
    pub fn unresolved(&self) -> Vec<String> {
        self.read().unresolved()
    }

    /// A receiver that sees a new value after every update that changed some volume's
    /// holders.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Waits until `cond` holds for the holders of `volume_handle`, checking now and after
    /// every change; returns the holders it held for. Unbounded: callers bound it with a
    /// timeout.
    pub async fn wait_for(
        &self,
        volume_handle: &str,
        mut cond: impl FnMut(&[ClusterAttachment]) -> bool,
    ) -> Result<Vec<ClusterAttachment>, IndexStopped> {
        let mut changes = self.changes.clone();
        loop {
            // Marked seen before reading, so a change after the read wakes the wait.
            changes.borrow_and_update();
            let holders = self.holders(volume_handle);
            if cond(&holders) {
                return Ok(holders);
            }
            changes.changed().await.map_err(|_| IndexStopped)?;
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, AttachmentState> {
        // The state is changed by whole updates; a panic elsewhere leaves it consistent.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Writer {
    fn apply(&self, update: super::index::Update) {
        let (changed, ready) = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            let changed = state.apply(update);
            (changed, state.is_ready())
        };
        if !changed.is_empty() {
            tracing::debug!(volumes = ?changed, "attachment holders changed");
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        // Only ever false → true: the two kinds' tasks apply in parallel, and one that saw
        // "not ready" must not undo the other's "ready" sent in between.
        if ready {
            self.ready.send_if_modified(|r| !std::mem::replace(r, true));
        }
    }
}

/// Feeds one kind's watcher into the index, forever: errors are logged and retried
/// ([`RetryBackoff`]); a 410 Gone makes the watcher relist, which the index reconciles.
async fn follow<K>(api: Api<K>, writer: Arc<Writer>)
where
    K: Watched + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let kind = match K::KIND {
        Kind::Attachments => "volumeattachments",
        Kind::Volumes => "persistentvolumes",
    };
    let mut events = watcher(api, watcher::Config::default())
        .backoff(RetryBackoff::default())
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if let Some(update) = update_of(event, &writer.driver) {
                    writer.apply(update);
                }
            }
            Err(error) => tracing::warn!(kind, %error, "watch failed; retrying"),
        }
    }
}
