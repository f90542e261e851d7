//! Where the controller keeps who holds which volume: behind [`AttachmentState`], so that the
//! in-memory [`MemoryAttachments`] (tests, the demo, csi-sanity runs) and a state watched from
//! Kubernetes' VolumeAttachments can be swapped without touching the rules.

use std::collections::HashMap;
use std::sync::Mutex;

use super::rules::{Holder, Holders, MigrationWindow};

/// The attachment state could not be read or written (a watched state not synced yet, an API
/// server away). Retryable: UNAVAILABLE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attachment state: {0}")]
pub struct StateError(pub String);

/// Who holds each volume.
///
/// The controller serializes publishes and unpublishes of one volume (the per-volume lock), so
/// an implementation sees one writer per volume at a time; it must be safe across volumes.
/// Between a recorded change and the next read of the same volume, the read must show it
/// (a watched state that lags the API server keeps its own record until the watch catches up).
pub trait AttachmentState: std::fmt::Debug + Send + Sync {
    /// The volume's holders, oldest first, and its migration window (the default when the
    /// state knows none).
    fn holders(&self, volume_id: &str) -> Result<Holders, StateError>;

    /// Every volume with at least one holder.
    fn all(&self) -> Result<Vec<(String, Holders)>, StateError>;

    /// The volume was published to `holder.node`: it becomes the newest holder. `window` is the
    /// volume's migration window, as its volume context gave it.
    fn record_publish(
        &self,
        volume_id: &str,
        holder: Holder,
        window: MigrationWindow,
    ) -> Result<(), StateError>;

    /// The volume was unpublished from `node`; a node that does not hold it changes nothing.
    fn record_unpublish(&self, volume_id: &str, node: &str) -> Result<(), StateError>;
}

/// The attachment state of this process only: lost when it stops. Right without Kubernetes;
/// in a cluster a restarted controller would forget every holder.
#[derive(Debug, Default)]
pub struct MemoryAttachments {
    volumes: Mutex<HashMap<String, Holders>>,
}

impl MemoryAttachments {
    fn volumes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Holders>> {
        // A panic elsewhere does not make the map inconsistent: every change is one call.
        self.volumes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AttachmentState for MemoryAttachments {
    fn holders(&self, volume_id: &str) -> Result<Holders, StateError> {
        Ok(self.volumes().get(volume_id).cloned().unwrap_or_default())
    }

    fn all(&self) -> Result<Vec<(String, Holders)>, StateError> {
        let mut all: Vec<_> = self
            .volumes()
            .iter()
            .map(|(id, holders)| (id.clone(), holders.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    fn record_publish(
        &self,
        volume_id: &str,
        holder: Holder,
        window: MigrationWindow,
    ) -> Result<(), StateError> {
        let mut volumes = self.volumes();
        let entry = volumes.entry(volume_id.to_owned()).or_default();
        entry.window = window;
        if !entry.holders.iter().any(|h| h.node == holder.node) {
            entry.holders.push(holder);
        }
        Ok(())
    }

    fn record_unpublish(&self, volume_id: &str, node: &str) -> Result<(), StateError> {
        let mut volumes = self.volumes();
        if let Some(entry) = volumes.get_mut(volume_id) {
            entry.holders.retain(|h| h.node != node);
            if entry.holders.is_empty() {
                volumes.remove(volume_id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn holder(node: &str, secs: u64) -> Holder {
        Holder {
            node: node.into(),
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            access: None,
        }
    }

    fn nodes(state: &MemoryAttachments, volume: &str) -> Vec<String> {
        let holders = state.holders(volume).unwrap().holders;
        holders.into_iter().map(|h| h.node).collect()
    }

    #[test]
    fn holders_keep_their_publish_order_and_leave_one_by_one() {
        let state = MemoryAttachments::default();
        let window = MigrationWindow::from_seconds(Some(60));
        state.record_publish("v", holder("a", 1), window).unwrap();
        state.record_publish("v", holder("b", 2), window).unwrap();
        state.record_publish("v", holder("a", 3), window).unwrap();
        assert_eq!(
            nodes(&state, "v"),
            ["a", "b"],
            "a repeat is not a new holder"
        );
        assert_eq!(
            state.holders("v").unwrap().holders[0].since,
            holder("a", 1).since
        );
        assert_eq!(state.holders("v").unwrap().window, window);
        state.record_unpublish("v", "a").unwrap();
        assert_eq!(nodes(&state, "v"), ["b"]);
        state.record_unpublish("v", "nobody").unwrap();
        assert_eq!(nodes(&state, "v"), ["b"]);
        state.record_unpublish("v", "b").unwrap();
        assert!(
            state.all().unwrap().is_empty(),
            "a detached volume is forgotten"
        );
        assert_eq!(state.holders("v").unwrap(), Holders::default());
    }

    #[test]
    fn all_lists_every_held_volume() {
        let state = MemoryAttachments::default();
        let window = MigrationWindow::default();
        state.record_publish("v2", holder("a", 1), window).unwrap();
        state.record_publish("v1", holder("b", 1), window).unwrap();
        let ids: Vec<_> = state.all().unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["v1", "v2"]);
    }
}
