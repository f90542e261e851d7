//! Decisions on what the device showed, free of I/O. Every destructive step the controller
//! takes is chosen here from facts the current call read, never from an error text.

use routeros::{DiskItem, FileDisk, FilePath, ItemId, VolumeFacts};

use super::rules::{VolumePlan, owned_image};

/// What the items holding a volume's slot mean for a CreateVolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotVerdict {
    /// The volume exists as requested (idempotent success).
    Matches(FileDisk),
    /// Something else holds the slot: ALREADY_EXISTS with the reason. Never touched.
    Incompatible(String),
    /// Several items hold the slot (a device that allows duplicates, or hands at work): the
    /// driver will not choose between them.
    Ambiguous(String),
    /// Nothing holds it any more (it changed while we looked): retry.
    Vanished,
}

pub fn judge_slot(plan: &VolumePlan, items: &[DiskItem]) -> SlotVerdict {
    match items {
        [] => SlotVerdict::Vanished,
        [DiskItem::File(disk)] => match plan.check_existing(disk) {
            Ok(()) => SlotVerdict::Matches(disk.clone()),
            Err(reason) => SlotVerdict::Incompatible(reason),
        },
        [DiskItem::Other { kind, .. }] => {
            SlotVerdict::Incompatible(format!("its slot is held by a disk of type {kind}"))
        }
        several => SlotVerdict::Ambiguous(format!(
            "{} disks hold slot {} ({}); remove the ones that are not this volume by hand",
            several.len(),
            plan.id,
            ids(several)
        )),
    }
}

/// What DeleteVolume does with a volume's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletePlan {
    /// Nothing of the volume is left: already deleted.
    Nothing,
    /// The slot is held by something that is not the driver's: no change, a warning.
    NotOurs(String),
    /// Several items hold the slot: refuse rather than guess.
    Ambiguous(String),
    /// Remove this disk, and its image unless another disk uses it.
    RemoveDisk {
        id: ItemId,
        image: FilePath,
        /// Disks other than this one that use the image; the image stays when there are any.
        other_users: Vec<String>,
    },
    /// The disk is gone; remove the image an interrupted delete left (no disk uses it).
    RemoveImage {
        image: FilePath,
        /// Images named like this volume's that some disk uses: left alone.
        in_use: Vec<(String, String)>,
    },
    /// The disk is gone; several unused files carry the volume's image name (a copy an
    /// operator made, say: which one was the volume's cannot be told, so none is removed), or
    /// only files some disk uses do.
    LeaveImages {
        images: Vec<String>,
        in_use: Vec<(String, String)>,
    },
}

pub fn plan_delete(facts: &VolumeFacts, base_path: &str) -> DeletePlan {
    match facts.slot_items.as_slice() {
        [] => {}
        [DiskItem::Other { kind, .. }] => {
            return DeletePlan::NotOurs(format!("the slot is held by a disk of type {kind}"));
        }
        [DiskItem::File(disk)] => {
            let Some(image) = owned_image(disk, base_path) else {
                return DeletePlan::NotOurs(format!(
                    "the disk's image {} is not <id>.img within the base path {base_path}",
                    disk.file_path
                ));
            };
            let Ok(id) = ItemId::try_from(disk.id.as_str()) else {
                return DeletePlan::Ambiguous(format!(
                    "the disk has an unexpected id {:?}",
                    disk.id
                ));
            };
            let other_users = facts
                .image_users
                .iter()
                .filter(|u| u.file_path == image.as_str() && u.id != disk.id)
                .map(|u| u.slot.clone())
                .collect();
            return DeletePlan::RemoveDisk {
                id,
                image,
                other_users,
            };
        }
        several => {
            return DeletePlan::Ambiguous(format!(
                "{} disks hold the slot ({}); remove the ones that are not this volume by hand",
                several.len(),
                ids(several)
            ));
        }
    }
    let user_of = |name: &str| {
        facts
            .image_users
            .iter()
            .find(|u| u.file_path == name)
            .map(|u| u.slot.clone())
    };
    let mut unused = Vec::new();
    let mut in_use = Vec::new();
    for file in &facts.images {
        match (user_of(&file.name), FilePath::try_from(file.name.as_str())) {
            (Some(user), _) => in_use.push((file.name.clone(), user)),
            (None, Ok(path)) => unused.push(path),
            // A name our grammar refuses cannot have been made by the driver.
            (None, Err(_)) => {}
        }
    }
    match unused.len() {
        0 if in_use.is_empty() => DeletePlan::Nothing,
        1 => DeletePlan::RemoveImage {
            image: unused.remove(0),
            in_use,
        },
        _ => DeletePlan::LeaveImages {
            images: unused.iter().map(ToString::to_string).collect(),
            in_use,
        },
    }
}

fn ids(items: &[DiskItem]) -> String {
    items
        .iter()
        .map(DiskItem::id)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::ControllerConfig;
    use routeros::{FileEntry, ImageUser, NqnSource};
    use std::collections::HashMap;

    const PVC: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";

    fn plan() -> VolumePlan {
        let config = ControllerConfig::new("10.0.0.1").validate().unwrap();
        VolumePlan::new(&config, PVC, None, &HashMap::new()).unwrap()
    }

    pub(crate) fn disk(id: &str, slot: &str, path: &str) -> FileDisk {
        FileDisk {
            allowed_hosts: routeros::AllowedHosts::Any,
            id: id.into(),
            slot: slot.into(),
            file_path: path.into(),
            file_size: 1 << 30,
            nvme_tcp_export: true,
            nvme_tcp_port: 4420,
            nqn: format!("nqn.2000-02.com.mikrotik:{slot}"),
            nqn_source: NqnSource::ServerNqn,
            mount_filesystem: false,
            comment: None,
        }
    }

    pub(crate) fn user(disk: &FileDisk) -> ImageUser {
        ImageUser {
            id: disk.id.clone(),
            slot: disk.slot.clone(),
            file_path: disk.file_path.clone(),
        }
    }

    fn file(name: &str) -> FileEntry {
        FileEntry {
            id: "*F1".into(),
            name: name.into(),
            kind: ".img file".into(),
            size: 1 << 30,
            last_modified: None,
        }
    }

    fn image() -> String {
        format!("storage-pool/{PVC}.img")
    }

    fn other(kind: &str) -> DiskItem {
        DiskItem::Other {
            id: "*9".into(),
            slot: PVC.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn slot_verdicts() {
        let p = plan();
        let mine = disk("*1", PVC, &image());
        assert_eq!(
            judge_slot(&p, &[DiskItem::File(mine.clone())]),
            SlotVerdict::Matches(mine.clone())
        );
        let elsewhere = disk("*1", PVC, &format!("storage-pool/x/{PVC}.img"));
        assert!(matches!(
            judge_slot(&p, &[DiskItem::File(elsewhere)]),
            SlotVerdict::Incompatible(r) if r.contains("volumePath")
        ));
        assert!(matches!(
            judge_slot(&p, &[other("nvme-tcp")]),
            SlotVerdict::Incompatible(r) if r.contains("nvme-tcp")
        ));
        let twin = disk("*2", PVC, &image());
        assert!(matches!(
            judge_slot(&p, &[DiskItem::File(mine), DiskItem::File(twin)]),
            SlotVerdict::Ambiguous(r) if r.contains("2 disks") && r.contains("*1, *2")
        ));
        assert_eq!(judge_slot(&p, &[]), SlotVerdict::Vanished);
    }

    #[test]
    fn delete_removes_only_an_owned_disk_and_an_unused_image() {
        let mine = disk("*1", PVC, &image());
        let facts = VolumeFacts {
            slot_items: vec![DiskItem::File(mine.clone())],
            images: vec![file(&image())],
            image_users: vec![user(&mine)],
        };
        assert_eq!(
            plan_delete(&facts, "storage-pool"),
            DeletePlan::RemoveDisk {
                id: ItemId::try_from("*1").unwrap(),
                image: FilePath::try_from(image()).unwrap(),
                other_users: vec![],
            }
        );
        // Another disk also uses the image: the disk goes, the image stays.
        let squatter = disk("*5", "vm-disk", &image());
        let shared = VolumeFacts {
            image_users: vec![user(&mine), user(&squatter)],
            ..facts.clone()
        };
        assert!(matches!(
            plan_delete(&shared, "storage-pool"),
            DeletePlan::RemoveDisk { other_users, .. } if other_users == ["vm-disk"]
        ));
    }

    #[test]
    fn delete_leaves_what_is_not_ours_and_refuses_to_guess() {
        let outside = VolumeFacts {
            slot_items: vec![DiskItem::File(disk("*1", PVC, &format!("other/{PVC}.img")))],
            ..VolumeFacts::default()
        };
        assert!(matches!(
            plan_delete(&outside, "storage-pool"),
            DeletePlan::NotOurs(r) if r.contains("base path")
        ));
        let pool_like = VolumeFacts {
            slot_items: vec![other("raid")],
            ..VolumeFacts::default()
        };
        assert!(matches!(
            plan_delete(&pool_like, "storage-pool"),
            DeletePlan::NotOurs(r) if r.contains("raid")
        ));
        let twins = VolumeFacts {
            slot_items: vec![
                DiskItem::File(disk("*1", PVC, &image())),
                DiskItem::File(disk("*2", PVC, &image())),
            ],
            ..VolumeFacts::default()
        };
        assert!(matches!(
            plan_delete(&twins, "storage-pool"),
            DeletePlan::Ambiguous(_)
        ));
    }

    #[test]
    fn delete_after_the_disk_is_gone_removes_an_unused_leftover_anywhere_under_the_base() {
        let custom = format!("storage-pool/k8s/{PVC}.img");
        let used = format!("storage-pool/vms/{PVC}.img");
        let facts = VolumeFacts {
            slot_items: vec![],
            images: vec![file(&custom), file(&used)],
            image_users: vec![user(&disk("*7", "vm-1", &used))],
        };
        assert_eq!(
            plan_delete(&facts, "storage-pool"),
            DeletePlan::RemoveImage {
                image: FilePath::try_from(custom.clone()).unwrap(),
                in_use: vec![(used, "vm-1".into())],
            }
        );
        // Two unused files of that name: one may be a copy someone keeps. Neither goes.
        let copy = format!("storage-pool/backup/{PVC}.img");
        let two = VolumeFacts {
            slot_items: vec![],
            images: vec![file(&custom), file(&copy)],
            image_users: vec![],
        };
        assert_eq!(
            plan_delete(&two, "storage-pool"),
            DeletePlan::LeaveImages {
                images: vec![custom, copy],
                in_use: vec![],
            }
        );
        assert_eq!(
            plan_delete(&VolumeFacts::default(), "storage-pool"),
            DeletePlan::Nothing
        );
    }

    #[test]
    fn a_leftover_image_is_reported_even_when_it_is_the_only_kind_found() {
        // An interrupted delete left only the unused image: it goes.
        let unused = VolumeFacts {
            images: vec![file(&image())],
            ..VolumeFacts::default()
        };
        assert_eq!(
            plan_delete(&unused, "storage-pool"),
            DeletePlan::RemoveImage {
                image: FilePath::try_from(image()).unwrap(),
                in_use: vec![],
            }
        );
        // Only an image another disk uses: nothing to remove, but not "already deleted" either,
        // so the caller can say why the image stays.
        let borrowed = VolumeFacts {
            images: vec![file(&image())],
            image_users: vec![user(&disk("*7", "vm-1", &image()))],
            ..VolumeFacts::default()
        };
        assert_eq!(
            plan_delete(&borrowed, "storage-pool"),
            DeletePlan::LeaveImages {
                images: vec![],
                in_use: vec![(image(), "vm-1".into())],
            }
        );
    }
}
