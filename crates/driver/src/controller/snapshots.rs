//! Snapshots (docs/snapshots.md). A volume that lives in a subvolume of its own
//! (`snapshotMethod: subvolume`) is snapshotted by a read-only snapshot of that subvolume,
//! named after the snapshot id, at the root of the pool's filesystem; a volume whose image
//! lies flat, by a copy of its image (see [`super::copy_snapshots`]).
//!
//! The device is the truth: a subvolume snapshot's source is the subvolume's `parent`, its
//! size the image in it, its creation time the device's `last-modified` of its directory;
//! nothing is kept anywhere else. A subvolume snapshot is atomic on the device, so it is
//! ready as soon as it exists; every snapshot is independent of its source: deleting the
//! volume leaves it working.

use std::collections::HashMap;

use routeros::{FileEntry, Subvolume, SubvolumeName, SubvolumeOutcome, SubvolumeRemoval};

use super::rules::VolumeId;
use super::service::ControllerService;
use crate::error::{DriverError, Result};
use crate::naming;
use crate::params::{CO_RESERVED_PREFIX, ParamError, SNAPSHOT_METHOD, SnapshotMethod};

/// What a CreateSnapshot asks, checked before any I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPlan {
    pub name: String,
    pub id: SubvolumeName,
    pub source: VolumeId,
    /// The VolumeSnapshotClass's `snapshotMethod`, for a source whose image lies flat.
    pub method: Option<SnapshotMethod>,
}

impl SnapshotPlan {
    /// Validates the CSI name, the source volume id and the VolumeSnapshotClass parameters.
    pub fn new(name: &str, source: &str, parameters: &HashMap<String, String>) -> Result<Self> {
        naming::validate_csi_name(name)?;
        if source.is_empty() {
            return Err(DriverError::MissingField("source_volume_id"));
        }
        let source = VolumeId::parse(source)
            .ok_or_else(|| DriverError::VolumeNotFound(source.to_owned()))?;
        let mut keys: Vec<_> = parameters.iter().collect();
        keys.sort();
        let mut method = None;
        for (key, value) in keys {
            match key.as_str() {
                k if k.starts_with(CO_RESERVED_PREFIX) => {}
                SNAPSHOT_METHOD => {
                    method = Some(SnapshotMethod::parse(value)?);
                }
                other => {
                    return Err(ParamError::Invalid {
                        key: "parameters",
                        value: other.to_owned(),
                        reason: format!(
                            "unknown VolumeSnapshotClass parameter (known: {SNAPSHOT_METHOD})"
                        ),
                    }
                    .into());
                }
            }
        }
        let id = SubvolumeName::try_from(naming::snapshot_id_for_name(name))
            .map_err(|e| DriverError::Internal(format!("snapshot id for {name:?}: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            id,
            source,
            method,
        })
    }
}

/// One of the driver's snapshots as the device shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: String,
    pub source: String,
    pub size: u64,
    /// The image in the snapshot (the source volume's image file, copied).
    pub image: Option<String>,
    /// Seconds since the epoch, from the device's clock (read as UTC).
    pub created: Option<i64>,
    pub ready: bool,
}

/// The device's time of the file `name` among `files` (without a leading `/`), as seconds
/// since the epoch (read as UTC): a snapshot's creation time.
pub(super) fn file_time(files: &[FileEntry], name: &str) -> Option<i64> {
    let name = name.trim_start_matches('/');
    files
        .iter()
        .find(|f| f.name == name)
        .and_then(routeros::Inventory::modified)
        .and_then(|t| t.unix_seconds_if_utc())
}

/// The driver's snapshots among `subvolumes` (read-only, with a snapshot id for a name),
/// with their images from `files`, sorted by id. A snapshot whose source cannot be told is
/// left out: it cannot be the driver's.
pub fn snapshot_infos(
    pool: &str,
    subvolumes: &[Subvolume],
    files: &[FileEntry],
) -> Vec<SnapshotInfo> {
    let mut infos: Vec<SnapshotInfo> = subvolumes
        .iter()
        .filter(|s| s.read_only && naming::is_managed_snapshot_id(&s.name))
        .filter_map(|s| {
            let dir = format!("{pool}/{}", s.name);
            let inside = format!("{dir}/");
            let images: Vec<&FileEntry> = files
                .iter()
                .filter(|f| f.name.starts_with(&inside) && f.name.ends_with(".img"))
                .collect();
            let source = s
                .parent
                .clone()
                .filter(|p| naming::is_managed_volume_id(p))?;
            let created = file_time(files, &dir);
            let image = match images.as_slice() {
                [image] => Some(*image),
                _ => None,
            };
            Some(SnapshotInfo {
                id: s.name.clone(),
                source,
                size: image.map_or(0, |f| f.size),
                image: image.map(|f| f.name.clone()),
                created,
                ready: image.is_some(),
            })
        })
        .collect();
    infos.sort_by(|a, b| a.id.cmp(&b.id));
    infos
}

/// A page of snapshots after `token` (the last id of the previous page); an unknown token
/// shape is ABORTED, as the spec asks.
pub fn page_snapshots(
    infos: Vec<SnapshotInfo>,
    token: &str,
    max_entries: usize,
) -> Result<(Vec<SnapshotInfo>, Option<String>)> {
    if !token.is_empty()
        && !naming::is_managed_snapshot_id(token)
        && naming::go_snapshot_source(token).is_none()
    {
        return Err(DriverError::InvalidToken(token.to_owned()));
    }
    let mut rest: Vec<SnapshotInfo> = infos
        .into_iter()
        .filter(|s| token.is_empty() || s.id.as_str() > token)
        .collect();
    if max_entries == 0 || rest.len() <= max_entries {
        return Ok((rest, None));
    }
    rest.truncate(max_entries);
    let next = rest.last().map(|s| s.id.clone());
    Ok((rest, next))
}

/// The snapshot family's name prefix.
fn snapshot_prefix() -> SubvolumeName {
    SubvolumeName::try_from(naming::SNAPSHOT_PREFIX).expect("the prefix is a valid name")
}

impl ControllerService {
    /// CreateSnapshot: a read-only snapshot of the volume's subvolume, or a copy of an image
    /// that lies flat; the same request again is the same snapshot, the same name for another
    /// source ALREADY_EXISTS. Round trips for a subvolume snapshot: the volume (1), the
    /// guarded snapshot (1), the snapshot's facts (1).
    pub async fn create_snapshot(&self, plan: &SnapshotPlan) -> Result<SnapshotInfo> {
        let disk = match self.volume(&plan.source).await {
            Ok(disk) => disk,
            // A repeat after the source went: the snapshot taken before is still the answer.
            Err(gone @ DriverError::VolumeNotFound(_)) => {
                return match self.snapshot_by_id(&plan.id).await? {
                    Some(info) if info.source == plan.source.as_str() && info.ready => Ok(info),
                    _ => Err(gone),
                };
            }
            Err(e) => return Err(e),
        };
        if !self.lies_in_own_subvolume(&disk) {
            let method = self.copy_method(plan.method).await?;
            return self.create_copy_snapshot(plan, &disk, method).await;
        }
        let parent = SubvolumeName::try_from(plan.source.as_str())
            .map_err(|e| DriverError::Internal(format!("subvolume of {}: {e}", plan.source)))?;
        let fs = self.config().btrfs_filesystem();
        let outcome = self
            .rds()
            .snapshot_subvolume(fs, &parent, &plan.id, true)
            .await?;
        if let SubvolumeOutcome::Created(_) = outcome {
            tracing::info!(snapshot = %plan.id, source = %plan.source, "took the snapshot");
        }
        let info = self.snapshot(&plan.id).await?;
        match info {
            Some(info) if info.source == plan.source.as_str() => Ok(info),
            Some(info) => Err(DriverError::Incompatible {
                volume_id: plan.id.to_string(),
                reason: format!("is a snapshot of volume {}", info.source),
            }),
            None => Err(DriverError::Incompatible {
                volume_id: plan.id.to_string(),
                reason: "a subvolume of that name exists and is not one of the driver's \
                         snapshots"
                    .into(),
            }),
        }
    }

    /// The driver's snapshot `id`, if the device has it (one round trip).
    pub async fn snapshot(&self, id: &SubvolumeName) -> Result<Option<SnapshotInfo>> {
        let pool = &self.config().pool;
        let (subvolumes, files) = self.rds().subvolume_contents(pool, id).await?;
        let exact: Vec<Subvolume> = subvolumes
            .into_iter()
            .filter(|s| s.name == id.as_str())
            .collect();
        Ok(snapshot_infos(pool, &exact, &files).into_iter().next())
    }

    /// Every snapshot: the copies and the Go driver's (one round trip), and the subvolume
    /// snapshots (one more, on a device with subvolumes), sorted by id.
    pub async fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let pool = &self.config().pool;
        let mut infos = self.device_snapshots().await?;
        if self.rds().version().await?.supports_subvolumes() {
            let (subvolumes, files) = self
                .rds()
                .subvolume_contents(pool, &snapshot_prefix())
                .await?;
            infos.extend(snapshot_infos(pool, &subvolumes, &files));
        }
        infos.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(infos)
    }

    /// Any snapshot by id: the driver's or the Go driver's; `None` for other ids.
    pub async fn any_snapshot(&self, id: &str) -> Result<Option<SnapshotInfo>> {
        if naming::go_snapshot_source(id).is_some() {
            return Ok(self.go_snapshots().await?.into_iter().find(|s| s.id == id));
        }
        match SubvolumeName::try_from(id) {
            Ok(name) if naming::is_managed_snapshot_id(id) => self.snapshot_by_id(&name).await,
            _ => Ok(None),
        }
    }

    /// The driver's snapshot `id` of either kind: a subvolume snapshot (on a device with
    /// subvolumes) or a copy.
    pub async fn snapshot_by_id(&self, id: &SubvolumeName) -> Result<Option<SnapshotInfo>> {
        if self.rds().version().await?.supports_subvolumes()
            && let Some(info) = self.snapshot(id).await?
        {
            return Ok(Some(info));
        }
        self.copy_snapshot(id.as_str()).await
    }

    /// DeleteSnapshot: removes a copy snapshot's record disk and image, or the snapshot's
    /// subvolume when it is one of the driver's snapshots and no disk uses a file in it
    /// (checked by the device in the same command); absent is success. Round trips: the copy's
    /// facts (1), then for a subvolume snapshot its facts (1) and the guarded removal (1).
    pub async fn delete_snapshot(&self, id: &SubvolumeName) -> Result<()> {
        if self.delete_copy_snapshot(id.as_str()).await? {
            return Ok(());
        }
        if !self.rds().version().await?.supports_subvolumes() {
            return Ok(());
        }
        let Some(info) = self.snapshot(id).await? else {
            tracing::info!(snapshot = %id, "no such snapshot; nothing to delete");
            return Ok(());
        };
        match self
            .rds()
            .remove_unused_subvolume(&self.config().pool, id)
            .await?
        {
            SubvolumeRemoval::Gone => {
                tracing::info!(snapshot = %id, source = %info.source, "deleted the snapshot");
                Ok(())
            }
            SubvolumeRemoval::InUse => Err(DriverError::Precondition(format!(
                "snapshot {id}: a disk uses a file in it"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: &str = "snap-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
    const VOL: &str = "pvc-11111111-2222-4333-8444-555555555555";

    fn subvolume(name: &str, parent: Option<&str>, read_only: bool) -> Subvolume {
        Subvolume {
            id: "*1".into(),
            name: name.into(),
            fs: "storage-pool".into(),
            parent: parent.map(str::to_string),
            read_only,
        }
    }

    fn file(name: &str, size: u64, modified: &str) -> FileEntry {
        FileEntry {
            id: "*9".into(),
            name: name.into(),
            kind: String::new(),
            size,
            last_modified: Some(modified.into()),
        }
    }

    #[test]
    fn only_read_only_snapshot_subvolumes_with_a_known_source_are_the_driver_s() {
        let subvolumes = [
            subvolume(SNAP, Some(VOL), true),
            subvolume(VOL, None, false),
            subvolume("snap-by-hand", Some(VOL), true),
            subvolume(
                "snap-4f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60",
                Some(VOL),
                false,
            ),
            subvolume("snap-5f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60", None, true),
        ];
        let files = [
            file(&format!("storage-pool/{SNAP}"), 0, "2026-12-05 10:00:00"),
            file(
                &format!("storage-pool/{SNAP}/{VOL}.img"),
                1 << 30,
                "2026-12-05 09:00:00",
            ),
        ];
        let infos = snapshot_infos("storage-pool", &subvolumes, &files);
        assert_eq!(
            infos,
            vec![SnapshotInfo {
                id: SNAP.into(),
                source: VOL.into(),
                size: 1 << 30,
                image: Some(format!("storage-pool/{SNAP}/{VOL}.img")),
                created: Some(1_796_464_800),
                ready: true,
            }]
        );
    }

    #[test]
    fn pages_follow_the_last_id_and_refuse_foreign_tokens() {
        let info = |n: u8| SnapshotInfo {
            id: format!("snap-{n:032x}"),
            source: VOL.into(),
            size: 1,
            image: None,
            created: None,
            ready: true,
        };
        let all: Vec<_> = (1..=5).map(info).collect();
        let (first, next) = page_snapshots(all.clone(), "", 2).unwrap();
        assert_eq!(first, all[..2]);
        let (second, next) = page_snapshots(all.clone(), &next.unwrap(), 2).unwrap();
        assert_eq!(second, all[2..4]);
        let (last, next) = page_snapshots(all.clone(), &next.unwrap(), 2).unwrap();
        assert_eq!((last, next), (all[4..].to_vec(), None));
        assert_eq!(page_snapshots(all.clone(), "", 0).unwrap().0.len(), 5);
        assert!(matches!(
            page_snapshots(all, "bogus", 2),
            Err(DriverError::InvalidToken(_))
        ));
    }

    #[test]
    fn plans_check_name_source_and_parameters() {
        let none = HashMap::new();
        let plan =
            SnapshotPlan::new("snapshot-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60", VOL, &none).unwrap();
        assert_eq!(plan.id.as_str(), SNAP);
        assert!(matches!(
            SnapshotPlan::new("", VOL, &none),
            Err(DriverError::Name(_))
        ));
        assert!(matches!(
            SnapshotPlan::new("s", "", &none),
            Err(DriverError::MissingField("source_volume_id"))
        ));
        assert!(matches!(
            SnapshotPlan::new("s", "not-ours", &none),
            Err(DriverError::VolumeNotFound(_))
        ));
        let params = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
        assert!(SnapshotPlan::new("s", VOL, &params("snapshotMethod", "subvolume")).is_ok());
        assert!(
            SnapshotPlan::new(
                "s",
                VOL,
                &params("csi.storage.k8s.io/snapshotter-secret-name", "x")
            )
            .is_ok()
        );
        for (k, v) in [("snapshotMethod", "copy-from"), ("bogus", "1")] {
            assert!(
                matches!(
                    SnapshotPlan::new("s", VOL, &params(k, v)),
                    Err(DriverError::Params(_))
                ),
                "{k}={v}"
            );
        }
    }
}
