//! What the demo has made through CSI, so that an interruption at any point can be undone.
//!
//! A call is noted *before* it is sent: a call cut short may have taken effect on the other
//! side, and undoing something that did not happen is harmless (every CSI call is
//! idempotent), while forgetting something that did happen leaves a mount behind.

use e2e::VolumeMode;

/// One volume and what may be true of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub mode: VolumeMode,
    pub maybe_exists: bool,
    pub maybe_staged: bool,
    pub maybe_published: bool,
}

/// A CSI call that undoes part of what was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    Unpublish { id: String, mode: VolumeMode },
    Unstage { id: String },
    Delete { id: String },
    DeleteSnapshot { id: String },
}

impl Undo {
    pub fn id(&self) -> &str {
        match self {
            Undo::Unpublish { id, .. }
            | Undo::Unstage { id }
            | Undo::Delete { id }
            | Undo::DeleteSnapshot { id } => id,
        }
    }

    /// Done by the node plugin (the rest by the controller).
    pub fn is_node_side(&self) -> bool {
        !matches!(self, Undo::Delete { .. } | Undo::DeleteSnapshot { .. })
    }

    pub fn call(&self) -> &'static str {
        match self {
            Undo::Unpublish { .. } => "NodeUnpublishVolume",
            Undo::Unstage { .. } => "NodeUnstageVolume",
            Undo::Delete { .. } => "DeleteVolume",
            Undo::DeleteSnapshot { .. } => "DeleteSnapshot",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Ledger {
    entries: Vec<Entry>,
    /// Snapshots that may exist.
    snapshots: Vec<String>,
}

impl Ledger {
    fn entry(&mut self, id: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.id == id)
    }

    /// Before CreateVolume (the id is known in advance: it is the `pvc-<uuid>` name).
    pub fn creating(&mut self, id: &str, mode: VolumeMode) {
        if self.entry(id).is_none() {
            self.entries.push(Entry {
                id: id.to_owned(),
                mode,
                maybe_exists: true,
                maybe_staged: false,
                maybe_published: false,
            });
        }
    }

    /// A volume made by someone else through the same plugins (csi-e2e during `--keep`):
    /// it may be staged and published, and exists.
    pub fn adopt(&mut self, id: &str, mode: VolumeMode) {
        if self.entry(id).is_none() {
            self.entries.push(Entry {
                id: id.to_owned(),
                mode,
                maybe_exists: true,
                maybe_staged: true,
                maybe_published: true,
            });
        }
    }

    /// Before NodeStageVolume.
    pub fn staging(&mut self, id: &str) {
        if let Some(e) = self.entry(id) {
            e.maybe_staged = true;
        }
    }

    /// Before NodePublishVolume.
    pub fn publishing(&mut self, id: &str) {
        if let Some(e) = self.entry(id) {
            e.maybe_published = true;
        }
    }

    /// After a NodeUnpublishVolume that succeeded.
    pub fn unpublished(&mut self, id: &str) {
        if let Some(e) = self.entry(id) {
            e.maybe_published = false;
        }
    }

    /// After a NodeUnstageVolume that succeeded.
    pub fn unstaged(&mut self, id: &str) {
        if let Some(e) = self.entry(id) {
            e.maybe_staged = false;
        }
    }

    /// After a DeleteVolume that succeeded.
    pub fn deleted(&mut self, id: &str) {
        if let Some(e) = self.entry(id) {
            e.maybe_exists = false;
        }
    }

    /// Before CreateSnapshot (its id derives from the name, so it is known in advance).
    pub fn snapshotting(&mut self, id: &str) {
        if !self.snapshots.iter().any(|s| s == id) {
            self.snapshots.push(id.to_owned());
        }
    }

    /// After a DeleteSnapshot that succeeded.
    pub fn snapshot_deleted(&mut self, id: &str) {
        self.snapshots.retain(|s| s != id);
    }

    /// Applies the effect of an undo call that succeeded.
    pub fn undone(&mut self, undo: &Undo) {
        match undo {
            Undo::Unpublish { id, .. } => self.unpublished(id),
            Undo::Unstage { id } => self.unstaged(id),
            Undo::Delete { id } => self.deleted(id),
            Undo::DeleteSnapshot { id } => self.snapshot_deleted(id),
        }
    }

    /// Every volume id ever noted, deleted or not (to look for leftovers of each).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.id.as_str())
    }

    /// What to call to undo everything still possibly there: newest volume first, each
    /// unpublished, unstaged and deleted in the order a CO would.
    pub fn undo_plan(&self) -> Vec<Undo> {
        let mut plan = Vec::new();
        for e in self.entries.iter().rev() {
            if e.maybe_published {
                plan.push(Undo::Unpublish {
                    id: e.id.clone(),
                    mode: e.mode.clone(),
                });
            }
            if e.maybe_staged {
                plan.push(Undo::Unstage { id: e.id.clone() });
            }
            if e.maybe_exists {
                plan.push(Undo::Delete { id: e.id.clone() });
            }
        }
        // Snapshots are independent of their volumes: last, newest first.
        plan.extend(
            self.snapshots
                .iter()
                .rev()
                .map(|id| Undo::DeleteSnapshot { id: id.clone() }),
        );
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> VolumeMode {
        VolumeMode::Filesystem {
            fs_type: "ext4".into(),
        }
    }

    #[test]
    fn nothing_made_means_nothing_to_undo() {
        assert!(Ledger::default().undo_plan().is_empty());
    }

    #[test]
    fn a_volume_cut_short_while_staging_is_unstaged_and_deleted() {
        let mut ledger = Ledger::default();
        ledger.creating("pvc-a", fs());
        ledger.staging("pvc-a");
        assert_eq!(
            ledger.undo_plan(),
            [
                Undo::Unstage { id: "pvc-a".into() },
                Undo::Delete { id: "pvc-a".into() }
            ]
        );
    }

    #[test]
    fn newest_first_and_finished_work_is_not_repeated() {
        let mut ledger = Ledger::default();
        ledger.creating("pvc-a", fs());
        ledger.staging("pvc-a");
        ledger.publishing("pvc-a");
        ledger.unpublished("pvc-a");
        ledger.unstaged("pvc-a");
        ledger.creating("pvc-b", VolumeMode::Block);
        ledger.staging("pvc-b");
        ledger.publishing("pvc-b");
        let plan = ledger.undo_plan();
        let calls: Vec<_> = plan.iter().map(|u| (u.call(), u.id())).collect();
        assert_eq!(
            calls,
            [
                ("NodeUnpublishVolume", "pvc-b"),
                ("NodeUnstageVolume", "pvc-b"),
                ("DeleteVolume", "pvc-b"),
                ("DeleteVolume", "pvc-a"),
            ]
        );
        assert_eq!(
            plan[0],
            Undo::Unpublish {
                id: "pvc-b".into(),
                mode: VolumeMode::Block
            }
        );
        assert_eq!(
            plan.iter().filter(|u| u.is_node_side()).count(),
            2,
            "unpublish and unstage are the node's"
        );
        for undo in &plan {
            ledger.undone(undo);
        }
        assert!(ledger.undo_plan().is_empty());
        assert_eq!(ledger.ids().collect::<Vec<_>>(), ["pvc-a", "pvc-b"]);
    }

    #[test]
    fn adopted_volumes_are_undone_fully_and_known_ones_are_not_adopted() {
        let mut ledger = Ledger::default();
        ledger.creating("pvc-a", fs());
        ledger.adopt("pvc-a", VolumeMode::Block);
        ledger.adopt("csi-b", VolumeMode::Block);
        let calls: Vec<_> = ledger
            .undo_plan()
            .iter()
            .map(|u| (u.call(), u.id().to_owned()))
            .collect();
        assert_eq!(
            calls,
            [
                ("NodeUnpublishVolume", "csi-b".to_owned()),
                ("NodeUnstageVolume", "csi-b".to_owned()),
                ("DeleteVolume", "csi-b".to_owned()),
                ("DeleteVolume", "pvc-a".to_owned()),
            ]
        );
    }

    #[test]
    fn noting_a_volume_twice_keeps_one_entry() {
        let mut ledger = Ledger::default();
        ledger.creating("pvc-a", fs());
        ledger.creating("pvc-a", fs());
        assert_eq!(ledger.undo_plan().len(), 1);
    }

    #[test]
    fn snapshots_are_deleted_after_the_volumes_and_only_while_they_may_exist() {
        let mut ledger = Ledger::default();
        ledger.creating("pvc-a", fs());
        ledger.snapshotting("snap-a");
        ledger.snapshotting("snap-a");
        ledger.creating("pvc-b", fs());
        let calls: Vec<_> = ledger
            .undo_plan()
            .iter()
            .map(|u| (u.call(), u.id().to_owned(), u.is_node_side()))
            .collect();
        assert_eq!(
            calls,
            [
                ("DeleteVolume", "pvc-b".into(), false),
                ("DeleteVolume", "pvc-a".into(), false),
                ("DeleteSnapshot", "snap-a".into(), false),
            ]
        );
        ledger.undone(&Undo::DeleteSnapshot {
            id: "snap-a".into(),
        });
        assert!(
            ledger
                .undo_plan()
                .iter()
                .all(|u| u.call() != "DeleteSnapshot")
        );
    }
}
