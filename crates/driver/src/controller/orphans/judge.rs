//! Which of the device's disks and images are orphans: the driver's by name and place, no
//! PersistentVolume of the cluster names them, and the device itself proves they have been
//! left alone for the grace period. Pure: the device's inventory and the cluster's volume
//! handles in, findings out.

use std::collections::HashSet;
use std::time::Duration;

use routeros::{FileEntry, Inventory};

use super::super::copy_snapshots::copy_snapshot_info;
use super::super::rules::owned_image;
use crate::naming::{is_managed_snapshot_id, is_managed_volume_id};

/// What an orphan is on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrphanKind {
    /// A file disk (with its image, when it has one).
    Disk,
    /// An image file no disk uses: what an interrupted delete leaves (or an interrupted
    /// snapshot copy, before its record was made).
    Image,
    /// A copy snapshot whose copy never finished (its record still says `copying`): the CO
    /// never got it as a snapshot, and its VolumeSnapshot went before a retry finished it.
    UnfinishedSnapshot,
}

impl OrphanKind {
    pub fn label(self) -> &'static str {
        match self {
            OrphanKind::Disk => "disk",
            OrphanKind::Image => "image",
            OrphanKind::UnfinishedSnapshot => "unfinished-snapshot",
        }
    }
}

/// A disk or image of the driver that no PersistentVolume names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: OrphanKind,
    /// The volume id (= slot) it would belong to; for a snapshot's remains, the snapshot id.
    pub volume_id: String,
    /// Its image file (for a disk without one on the device: the path it names).
    pub image: String,
    /// How long ago the image was last modified, by the device's clock; `None` when that
    /// cannot be proven (no file, no readable time, a time after the clock).
    pub idle: Option<Duration>,
}

impl Finding {
    /// Left alone at least `grace`, provably: an orphan. Anything younger, or of unknown
    /// age, may be a volume whose PersistentVolume is still being created.
    pub fn is_orphan(&self, grace: Duration) -> bool {
        self.idle.is_some_and(|idle| idle >= grace)
    }
}

/// The driver's disks and images that no PersistentVolume names, sorted by volume id.
///
/// `base_path` is the controller's volume base path; `handles` the volume handles of every
/// PersistentVolume of this driver. A disk is the driver's only by [`owned_image`] (managed
/// slot, image `<slot>.img` within the base path); an image only by its name `<id>.img` with
/// a managed volume or snapshot id, within the base path, and no disk backed by a file of
/// that name anywhere (the same rule as the device-side check that guards its removal). A
/// copy snapshot's record disk is a finding while it says `copying`: a finished one is a
/// snapshot, whatever the cluster says of it.
pub fn find(inventory: &Inventory, base_path: &str, handles: &HashSet<String>) -> Vec<Finding> {
    let idle = |file: Option<&FileEntry>| {
        file.and_then(Inventory::modified)
            .and_then(|modified| inventory.clock.since(&modified))
    };
    let image_named = |path: &str| inventory.images.iter().find(|f| f.name == path);
    let mut findings: Vec<Finding> = inventory
        .disks
        .iter()
        .filter(|disk| !handles.contains(&disk.slot))
        .filter_map(|disk| {
            let image = owned_image(disk, base_path)?;
            Some(Finding {
                kind: OrphanKind::Disk,
                volume_id: disk.slot.clone(),
                idle: idle(image_named(image.as_str())),
                image: image.as_str().to_owned(),
            })
        })
        .collect();
    findings.extend(inventory.disks.iter().filter_map(|disk| {
        let info = copy_snapshot_info(disk, base_path, None)?;
        let image = info.image?;
        (!info.ready).then(|| Finding {
            kind: OrphanKind::UnfinishedSnapshot,
            volume_id: info.id,
            idle: idle(image_named(&image)),
            image,
        })
    }));
    let used_names: HashSet<&str> = inventory
        .image_users
        .iter()
        .map(|user| file_name(&user.file_path))
        .collect();
    findings.extend(inventory.images.iter().filter_map(|file| {
        let volume_id = file_name(&file.name).strip_suffix(".img")?;
        let unused = !used_names.contains(file_name(&file.name));
        // A snapshot holds a copy of its source's image under the source's name: it is the
        // snapshot's, never an orphan of the volume.
        let ours = (is_managed_volume_id(volume_id) || is_managed_snapshot_id(volume_id))
            && within(&file.name, base_path)
            && !in_snapshot(&file.name);
        (ours && unused && !handles.contains(volume_id)).then(|| Finding {
            kind: OrphanKind::Image,
            volume_id: volume_id.to_owned(),
            image: file.name.clone(),
            idle: idle(Some(file)),
        })
    }));
    findings
        .sort_by(|a, b| (&a.volume_id, a.kind, &a.image).cmp(&(&b.volume_id, b.kind, &b.image)));
    findings
}

/// Whether `path` lies directly in a snapshot's directory (`…/snap-<id>/<file>`).
fn in_snapshot(path: &str) -> bool {
    path.rsplit_once('/')
        .and_then(|(dir, _)| dir.rsplit('/').next())
        .is_some_and(crate::naming::is_managed_snapshot_id)
}

fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

fn within(path: &str, base_path: &str) -> bool {
    path.rsplit_once('/')
        .is_some_and(|(dir, _)| crate::params::is_within(dir, base_path))
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
