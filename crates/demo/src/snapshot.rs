//! The snapshot steps: a snapshot of the filesystem volume while it is mounted, a new volume
//! restored from it, staged and read beside its source (the data of the snapshot's moment,
//! checked byte for byte), then both removed, as external-snapshotter and a restoring PVC
//! would drive the plugins.

use std::collections::HashMap;

use csi::v1::VolumeContentSource;
use csi::v1::volume_content_source::{SnapshotSource, Type};
use e2e::pattern::verify_pattern_file;
use e2e::{Attached, VolumeMode};

use crate::error::{DemoError, io_context};
use crate::flow::{DATA_FILE, SEED, blocking, mounted_device, shorten};
use crate::plan::{Step, pvc_name};
use crate::render::bytes;
use crate::session::Session;
use crate::term::{Reporter, StepFailure};

/// Snapshot, restore, read the copy, delete both; the source stays as it is.
pub async fn restore(
    rep: &mut Reporter,
    s: &mut Session,
    source: &Attached,
) -> Result<(), StepFailure> {
    let snapshot = rep
        .step(Step::Snapshot, async {
            let csi = s.csi()?;
            // What external-snapshotter names a VolumeSnapshotContent's snapshot.
            let name = format!("snapshot-{}", &pvc_name(rand::random())["pvc-".len()..]);
            s.ledger
                .snapshotting(&driver::naming::snapshot_id_for_name(&name));
            let snapshot = csi.create_snapshot(&name, source.id()).await?;
            if !snapshot.ready_to_use || snapshot.source_volume_id != source.id() {
                return Err(DemoError::Check(format!(
                    "CreateSnapshot answered {snapshot:?}"
                )));
            }
            let detail = format!(
                "{} of {}, {}, ready; on the RDS: a read-only btrfs snapshot of the volume's \
                 subvolume, taken while it is mounted",
                snapshot.snapshot_id,
                source.id(),
                bytes(snapshot.size_bytes.max(0) as u64)
            );
            Ok((snapshot, detail))
        })
        .await?;

    // Written after the snapshot: the restore must not have it.
    let later = source.target.join("after-the-snapshot");
    let copy = rep
        .step(Step::Restore, async {
            std::fs::write(&later, b"not in the snapshot")
                .map_err(io_context(format!("writing {}", later.display())))?;
            let csi = s.csi()?;
            let name = pvc_name(rand::random());
            s.ledger.creating(&name, source.mode.clone());
            let from = VolumeContentSource {
                r#type: Some(Type::Snapshot(SnapshotSource {
                    snapshot_id: snapshot.snapshot_id.clone(),
                })),
            };
            let volume = csi
                .create_volume_from(
                    &name,
                    s.sizes.volume,
                    &source.mode,
                    &HashMap::new(),
                    Some(from),
                )
                .await?;
            let detail = format!(
                "{name} from {}: a writable snapshot of the snapshot, a disk over its image",
                snapshot.snapshot_id
            );
            let copy = Attached {
                staging: s.layout.staging(&name),
                target: s.layout.target(&name, &source.mode),
                volume,
                mode: source.mode.clone(),
            };
            Ok((copy, detail))
        })
        .await?;

    rep.step(Step::ReadRestored, async {
        let csi = s.csi()?;
        s.ledger.staging(copy.id());
        let context = csi.controller_publish(&copy.volume, &copy.mode).await?;
        csi.node_stage(&copy.volume, &context, &copy.staging, &copy.mode)
            .await?;
        if let Some(parent) = copy.target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_context(format!("creating {}", parent.display())))?;
        }
        s.ledger.publishing(copy.id());
        csi.node_publish(&copy.volume, &copy.staging, &copy.target, &copy.mode)
            .await?;
        let data = copy.target.join(DATA_FILE);
        let len = s.sizes.data;
        let digest = blocking(&mut s.io_in_flight, move || {
            Ok(verify_pattern_file(&data, SEED, len)?)
        })
        .await?;
        if copy.target.join("after-the-snapshot").exists() {
            return Err(DemoError::Check(
                "the restored copy holds a file written after its snapshot".into(),
            ));
        }
        let device = mounted_device(&copy.staging).await?;
        csi.node_unpublish(copy.id(), &copy.target).await?;
        s.ledger.unpublished(copy.id());
        csi.node_unstage(copy.id(), &copy.staging).await?;
        csi.controller_unpublish(copy.id()).await?;
        s.ledger.unstaged(copy.id());
        let fs = match &copy.mode {
            VolumeMode::Filesystem { fs_type } => fs_type.as_str(),
            VolumeMode::Block => "block",
        };
        Ok((
            (),
            format!(
                "mounted {device} ({fs}) beside its source: sha256 {}… matches, the later \
                 file is absent; unmounted and detached",
                shorten(&digest)
            ),
        ))
    })
    .await?;

    rep.step(Step::DeleteRestored, async {
        let csi = s.csi()?;
        csi.delete_volume(copy.id()).await?;
        s.ledger.deleted(copy.id());
        csi.delete_snapshot(&snapshot.snapshot_id).await?;
        s.ledger.snapshot_deleted(&snapshot.snapshot_id);
        std::fs::remove_file(&later)
            .map_err(io_context(format!("removing {}", later.display())))?;
        Ok((
            (),
            format!(
                "{} with its subvolume, then {}; the source is untouched",
                copy.id(),
                snapshot.snapshot_id
            ),
        ))
    })
    .await
}
