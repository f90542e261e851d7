use super::*;
use crate::controller::judge::tests::{disk, user};
use routeros::{DeviceTime, FileDisk, ImageUser};

const BASE: &str = "storage-pool/volumes";
const HOUR: Duration = Duration::from_secs(3600);

fn file(name: &str, modified: Option<&str>) -> FileEntry {
    FileEntry {
        id: "*F".into(),
        name: name.into(),
        kind: ".img file".into(),
        size: 1 << 30,
        last_modified: modified.map(str::to_owned),
    }
}

/// The device at 12:00; `disks` with their images, plus `extra_images` no disk uses.
fn inventory(disks: &[(&str, &str, &str)], extra_images: &[(&str, Option<&str>)]) -> Inventory {
    let mut images: Vec<FileEntry> = disks
        .iter()
        .map(|(_, path, modified)| file(path, Some(modified)))
        .collect();
    images.extend(
        extra_images
            .iter()
            .map(|(name, modified)| file(name, *modified)),
    );
    let disks: Vec<FileDisk> = disks
        .iter()
        .map(|(slot, path, _)| disk(&format!("*{}", slot.len()), slot, path))
        .collect();
    Inventory {
        clock: DeviceTime::parse("2026-12-05 12:00:00").unwrap(),
        image_users: disks.iter().map(user).collect(),
        images: images
            .into_iter()
            .filter(|f| f.name.starts_with(&format!("{BASE}/")))
            .collect(),
        disks,
    }
}

fn handles(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

const A: &str = "pvc-0b9a1f52-6a3c-4d2e-9f1a-2b3c4d5e6f70";
const B: &str = "pvc-1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
const C: &str = "csi-0123456789abcdef0123456789abcdef";

#[test]
fn a_disk_no_volume_names_is_found_with_its_idle_time_on_the_device() {
    let inv = inventory(
        &[
            (A, &format!("{BASE}/{A}.img"), "2026-12-05 09:00:00"),
            (B, &format!("{BASE}/{B}.img"), "2026-12-05 11:59:00"),
        ],
        &[],
    );
    let found = find(&inv, BASE, &handles(&[A]));
    assert_eq!(
        found,
        vec![Finding {
            kind: OrphanKind::Disk,
            volume_id: B.into(),
            image: format!("{BASE}/{B}.img"),
            idle: Some(Duration::from_secs(60)),
        }]
    );
    assert!(!found[0].is_orphan(HOUR), "a minute is not past the grace");
    let found = find(&inv, BASE, &handles(&[]));
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].idle, Some(3 * HOUR));
    assert!(found[0].is_orphan(HOUR));
}

#[test]
fn only_the_drivers_own_disks_and_images_are_findings() {
    let inv = inventory(
        &[
            // Not a managed id; an image outside the base path; an image under another name.
            (
                "backup-disk",
                &format!("{BASE}/backup-disk.img"),
                "2020-01-01 00:00:00",
            ),
            (
                A,
                &format!("storage-pool/other/{A}.img"),
                "2020-01-01 00:00:00",
            ),
            (B, &format!("{BASE}/{C}.img"), "2020-01-01 00:00:00"),
        ],
        &[
            (&format!("{BASE}/notes.img"), Some("2020-01-01 00:00:00")),
            (
                &format!("{BASE}/pvc-not-a-uuid.img"),
                Some("2020-01-01 00:00:00"),
            ),
            (
                "storage-pool/elsewhere/pvc-x.img",
                Some("2020-01-01 00:00:00"),
            ),
        ],
    );
    assert_eq!(find(&inv, BASE, &handles(&[])), vec![]);
}

#[test]
fn an_image_no_disk_uses_is_found_unless_a_volume_names_it_or_a_file_of_its_name_is_in_use() {
    let nested = format!("{BASE}/team/{C}.img");
    let inv = inventory(
        &[],
        &[
            (&format!("{BASE}/{A}.img"), Some("2026-12-04 12:00:00")),
            (&nested, Some("2026-12-05 11:00:00")),
        ],
    );
    let found = find(&inv, BASE, &handles(&[]));
    assert_eq!(
        found
            .iter()
            .map(|f| (f.kind, f.volume_id.as_str(), f.idle))
            .collect::<Vec<_>>(),
        vec![
            (OrphanKind::Image, C, Some(HOUR)),
            (OrphanKind::Image, A, Some(24 * HOUR)),
        ]
    );
    // A PersistentVolume names it: a broken volume, not an orphan.
    assert!(find(&inv, BASE, &handles(&[A, C])).is_empty());
    // A disk elsewhere backed by a file of the same name: the device would keep it too.
    let mut used = inv.clone();
    used.image_users.push(ImageUser {
        id: "*9".into(),
        slot: "other".into(),
        file_path: format!("storage-pool/other/{A}.img"),
    });
    assert_eq!(find(&used, BASE, &handles(&[C])), vec![]);
}

#[test]
fn an_age_that_cannot_be_proven_is_never_past_the_grace() {
    let inv = inventory(
        &[(A, &format!("{BASE}/{A}.img"), "2026-12-05 12:30:00")],
        &[
            (&format!("{BASE}/{B}.img"), None),
            (&format!("{BASE}/{C}.img"), Some("sometime")),
        ],
    );
    let found = find(&inv, BASE, &handles(&[]));
    assert_eq!(found.len(), 3);
    for finding in &found {
        assert_eq!(finding.idle, None, "{finding:?}");
        assert!(!finding.is_orphan(Duration::ZERO));
    }
    // A disk whose image the device did not list.
    let mut no_file = inventory(
        &[(A, &format!("{BASE}/{A}.img"), "2020-01-01 00:00:00")],
        &[],
    );
    no_file.images.clear();
    let found = find(&no_file, BASE, &handles(&[]));
    assert_eq!((found[0].kind, found[0].idle), (OrphanKind::Disk, None));
}

#[test]
fn a_snapshot_s_copy_of_an_image_is_never_an_orphan() {
    let snapshot = "snap-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
    let inv = inventory(
        &[],
        &[
            (
                &format!("{BASE}/{snapshot}/{A}.img"),
                Some("2026-12-05 01:00:00"),
            ),
            (&format!("{BASE}/{B}/{B}.img"), Some("2026-12-05 01:00:00")),
        ],
    );
    let found = find(&inv, BASE, &handles(&[]));
    assert_eq!(
        found.iter().map(|f| f.image.as_str()).collect::<Vec<_>>(),
        [format!("{BASE}/{B}/{B}.img")],
        "the image left in a volume's own directory is one; the snapshot's copy is not"
    );
}

/// A copy snapshot is a disk named as the snapshot, unexported, over `<base>/<id>.img`, whose
/// comment records it; one still `copying` is an unfinished snapshot once idle, a finished one
/// never a finding. An image of a snapshot's name with no record is an interrupted copy.
#[test]
fn unfinished_copy_snapshots_and_their_leftover_images_are_findings() {
    use crate::controller::copy_snapshots::CopyRecord;
    use crate::params::CopyMethod;
    const COPYING: &str = "snap-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
    const READY: &str = "snap-4a3b2c1d-0b7d-4e21-9a55-1d2c3b4a5f60";
    const LEFT: &str = "snap-5b4c3d2e-0b7d-4e21-9a55-1d2c3b4a5f60";
    let mut inv = inventory(
        &[
            (
                COPYING,
                &format!("{BASE}/{COPYING}.img"),
                "2026-12-05 09:00:00",
            ),
            (READY, &format!("{BASE}/{READY}.img"), "2026-12-05 09:00:00"),
        ],
        &[(&format!("{BASE}/{LEFT}.img"), Some("2026-12-05 10:00:00"))],
    );
    for disk in &mut inv.disks {
        disk.nvme_tcp_export = false;
        disk.comment = Some(
            CopyRecord {
                source: A.into(),
                method: CopyMethod::DiskCopy,
                ready: disk.slot == READY,
            }
            .render(),
        );
    }
    let found = find(&inv, BASE, &handles(&[A]));
    assert_eq!(
        found
            .iter()
            .map(|f| (f.kind, f.volume_id.as_str(), f.image.as_str(), f.idle))
            .collect::<Vec<_>>(),
        vec![
            (
                OrphanKind::UnfinishedSnapshot,
                COPYING,
                format!("{BASE}/{COPYING}.img").as_str(),
                Some(3 * HOUR)
            ),
            (
                OrphanKind::Image,
                LEFT,
                format!("{BASE}/{LEFT}.img").as_str(),
                Some(2 * HOUR)
            ),
        ]
    );
    // Exported, it is not a record of the driver's: nothing of it is judged.
    inv.disks[0].nvme_tcp_export = true;
    assert!(
        find(&inv, BASE, &handles(&[A]))
            .iter()
            .all(|f| f.volume_id != COPYING)
    );
}
