//! One operation per volume at a time. A second call for a busy volume is refused at once
//! (ABORTED, "operation pending" in the spec) instead of queued, so that retries of a slow
//! call cannot pile up behind it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Volume ids with an operation in flight.
#[derive(Debug, Default, Clone)]
pub struct VolumeLocks {
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Holds a volume while an operation runs; releases it when dropped.
#[derive(Debug)]
pub struct VolumeGuard {
    busy: Arc<Mutex<HashSet<String>>>,
    volume_id: String,
}

impl VolumeLocks {
    /// Takes the volume, or `None` when an operation already holds it.
    pub fn try_lock(&self, volume_id: &str) -> Option<VolumeGuard> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.insert(volume_id.to_owned()).then(|| VolumeGuard {
            busy: Arc::clone(&self.busy),
            volume_id: volume_id.to_owned(),
        })
    }
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.volume_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_volume_released_on_drop() {
        let locks = VolumeLocks::default();
        let first = locks.try_lock("pvc-a").expect("free");
        assert!(locks.try_lock("pvc-a").is_none());
        let other = locks.try_lock("pvc-b").expect("volumes are independent");
        drop(first);
        assert!(locks.try_lock("pvc-a").is_some());
        drop(other);
    }
}
