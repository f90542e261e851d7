//! The controller's decisions, free of I/O: what a CreateVolume asks of the device, whether an
//! existing disk answers it, which disks are the driver's, how healthy a volume looks, and
//! how listings are paged.

use std::collections::HashMap;

use csi::v1::CapacityRange;
use routeros::{DiskSpec, FileDisk, FilePath, Nqn, NqnSource, Slot, SubvolumeName};

use crate::capacity::SizePolicy;
use crate::config::ControllerConfig;
use crate::error::{DriverError, Result};
use crate::naming::{self, VolumeComment};
use crate::params::{self, CopyMethod, SnapshotMethod, VolumeContext, VolumeParams};

/// A volume id of the shape the driver creates (`pvc-<uuid>` or `csi-<hash>`), which is also
/// the disk's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeId(Slot);

impl VolumeId {
    /// `None` for anything the driver would never have created: such ids are not ours.
    pub fn parse(id: &str) -> Option<Self> {
        if !naming::is_managed_volume_id(id) {
            return None;
        }
        Slot::try_from(id).ok().map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn slot(&self) -> &Slot {
        &self.0
    }
}

impl std::fmt::Display for VolumeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The image path of a volume in a directory: `<dir>/<id>.img`.
pub fn image_path(dir: &str, id: &VolumeId) -> FilePath {
    FilePath::try_from(naming::image_path(dir, id.as_str()))
        .expect("validated directory and volume id always form a valid file path")
}

/// The disk's image if the disk is one of the driver's: a managed slot whose image is
/// `<slot>.img` in a directory within the base path, or an image named after a managed
/// volume in a directory named after the slot (the volume's own subvolume, where a restored
/// image keeps its source's name). Anything else is never touched.
pub fn owned_image(disk: &FileDisk, base_path: &str) -> Option<FilePath> {
    if !naming::is_managed_volume_id(&disk.slot) {
        return None;
    }
    let (dir, file) = disk.file_path.rsplit_once('/')?;
    let own_directory = dir
        .rsplit_once('/')
        .is_some_and(|(_, last)| last == disk.slot)
        && file
            .strip_suffix(".img")
            .is_some_and(naming::is_managed_volume_id);
    let ours = params::is_within(dir, base_path)
        && (file == format!("{}.img", disk.slot) || own_directory);
    ours.then(|| FilePath::try_from(disk.file_path.as_str()).ok())
        .flatten()
}

/// The directory for a volume's image: the StorageClass's `volumePath`, which must lie
/// within the controller's base path, or the base path itself.
pub fn volume_path(config: &ControllerConfig, params: &VolumeParams) -> Result<String> {
    let path = params
        .volume_path
        .clone()
        .unwrap_or_else(|| config.volume_base_path.clone());
    if !params::is_within(&path, &config.volume_base_path) {
        return Err(DriverError::Params(params::ParamError::Invalid {
            key: params::VOLUME_PATH,
            value: path,
            reason: format!(
                "must lie within the controller's base path {:?}",
                config.volume_base_path
            ),
        }));
    }
    Ok(path)
}

/// What a new volume is a copy of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSource {
    /// One of the driver's snapshots (its id, a subvolume name).
    Snapshot(SubvolumeName),
    /// One of the driver's volumes.
    Volume(VolumeId),
}

impl ContentSource {
    /// Reads a CSI content source; ids the driver never issues name nothing (NOT_FOUND).
    pub fn parse(source: &csi::v1::VolumeContentSource) -> Result<Self> {
        use csi::v1::volume_content_source::Type;
        match &source.r#type {
            Some(Type::Snapshot(snapshot)) => {
                let id = &snapshot.snapshot_id;
                if id.is_empty() {
                    return Err(DriverError::MissingField("volume_content_source.snapshot"));
                }
                if naming::go_snapshot_source(id).is_some() {
                    return Err(DriverError::NotSupported(format!(
                        "volume_content_source: {id} is a snapshot of the Go driver, made with \
                         copy-from, which copies a disk's properties and not its data; it \
                         cannot be restored"
                    )));
                }
                naming::is_managed_snapshot_id(id)
                    .then(|| SubvolumeName::try_from(id.as_str()).ok())
                    .flatten()
                    .map(ContentSource::Snapshot)
                    .ok_or_else(|| DriverError::SnapshotNotFound(id.clone()))
            }
            Some(Type::Volume(volume)) => {
                let id = &volume.volume_id;
                if id.is_empty() {
                    return Err(DriverError::MissingField("volume_content_source.volume"));
                }
                VolumeId::parse(id)
                    .map(ContentSource::Volume)
                    .ok_or_else(|| DriverError::VolumeNotFound(id.clone()))
            }
            None => Err(DriverError::MissingField("volume_content_source.type")),
        }
    }

    /// The CSI form, echoed in the created volume.
    pub fn to_csi(&self) -> csi::v1::VolumeContentSource {
        use csi::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
        csi::v1::VolumeContentSource {
            r#type: Some(match self {
                ContentSource::Snapshot(id) => Type::Snapshot(SnapshotSource {
                    snapshot_id: id.to_string(),
                }),
                ContentSource::Volume(id) => Type::Volume(VolumeSource {
                    volume_id: id.to_string(),
                }),
            }),
        }
    }
}

/// The directory of a volume in its own subvolume, and that subvolume: subvolumes live at
/// the root of the pool's filesystem, so the base path must be the pool itself and no
/// `volumePath` can apply.
fn subvolume_layout(
    config: &ControllerConfig,
    params: &VolumeParams,
    id: &VolumeId,
) -> Result<(String, SubvolumeName)> {
    let refuse = |value: String, reason: String| {
        DriverError::Params(params::ParamError::Invalid {
            key: params::SNAPSHOT_METHOD,
            value,
            reason,
        })
    };
    let method = SnapshotMethod::Subvolume.as_str().to_owned();
    if let Some(path) = &params.volume_path {
        return Err(refuse(
            method,
            format!(
                "a volume in its own subvolume lies at the pool's root; volumePath {path:?} cannot apply"
            ),
        ));
    }
    if config.volume_base_path != config.pool {
        return Err(refuse(
            method,
            format!(
                "subvolumes lie at the root of pool {:?}, outside the controller's base path {:?}",
                config.pool, config.volume_base_path
            ),
        ));
    }
    let subvolume = SubvolumeName::try_from(id.as_str())
        .map_err(|e| DriverError::Internal(format!("subvolume for {id}: {e}")))?;
    Ok((format!("{}/{id}", config.pool), subvolume))
}

/// Everything CreateVolume will ask of the device, decided before any I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    pub name: String,
    pub id: VolumeId,
    /// Bytes to provision (the range's answer, rounded up to the granularity).
    pub size: u64,
    pub required_bytes: i64,
    pub limit_bytes: i64,
    pub params: VolumeParams,
    /// Directory of the image, within the base path.
    pub volume_path: String,
    pub file_path: FilePath,
    /// The volume's own btrfs subvolume (named after its id), holding its image, when its
    /// snapshots are subvolume snapshots.
    pub subvolume: Option<SubvolumeName>,
    /// What the volume starts as a copy of (a restore or a clone).
    pub source: Option<ContentSource>,
    /// How its image is copied from a source whose image lies flat; `None` with a source: a
    /// writable snapshot of the source's subvolume (decided by `decide_layout`).
    pub copy_method: Option<CopyMethod>,
    /// Its disk is added with the comment of a block copy under way (see `restore_copy`).
    pub copying: bool,
    pub nqn: Nqn,
    pub port: u16,
    pub params_digest: String,
}

impl VolumePlan {
    /// Validates a CreateVolume's name, capacity range and parameters against the
    /// configuration and derives every device-side name from them.
    pub fn new(
        config: &ControllerConfig,
        name: &str,
        range: Option<&CapacityRange>,
        parameters: &HashMap<String, String>,
    ) -> Result<Self> {
        naming::validate_csi_name(name)?;
        let (required_bytes, limit_bytes) =
            range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
        let size = config.sizes.choose(required_bytes, limit_bytes)?;
        let params = VolumeParams::parse(parameters)?;
        let id = VolumeId::parse(&naming::volume_id_for_name(name))
            .expect("derived volume ids are managed slots");
        let (volume_path, subvolume) = match params.snapshot_method {
            Some(SnapshotMethod::Subvolume) => {
                let (dir, subvolume) = subvolume_layout(config, &params, &id)?;
                (dir, Some(subvolume))
            }
            // `auto` starts flat; [`VolumePlan::with_subvolume`] moves it when the device can.
            Some(SnapshotMethod::Auto | SnapshotMethod::FileCopy | SnapshotMethod::DiskCopy)
            | None => (volume_path(config, &params)?, None),
        };
        let nqn = Nqn::try_from(naming::nqn_for_volume(&config.nqn_prefix, id.as_str()))
            .map_err(|e| DriverError::Internal(format!("NQN for {id}: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            file_path: image_path(&volume_path, &id),
            subvolume,
            source: None,
            copy_method: None,
            copying: false,
            size,
            required_bytes,
            limit_bytes,
            port: params.nvme_port.unwrap_or(config.nvme_port),
            params_digest: params.digest(),
            params,
            volume_path,
            nqn,
            id,
        })
    }

    /// The same plan for a volume that starts as a copy of `source`; how the copy is made,
    /// and so where the volume lies, is decided with the device (`decide_layout`).
    pub fn with_source(mut self, source: ContentSource) -> Self {
        self.source = Some(source);
        self
    }

    /// Whether `auto` may put this volume in a subvolume of its own: it sets no `volumePath`
    /// and the base path is the pool's root.
    pub fn auto_may_use_subvolume(&self, config: &ControllerConfig) -> bool {
        self.params.snapshot_method == Some(SnapshotMethod::Auto)
            && self.params.volume_path.is_none()
            && config.volume_base_path == config.pool
    }

    /// The same plan with the volume in a subvolume of its own.
    pub fn with_subvolume(mut self, config: &ControllerConfig) -> Result<Self> {
        let (volume_path, subvolume) = subvolume_layout(config, &self.params, &self.id)?;
        self.file_path = image_path(&volume_path, &self.id);
        self.volume_path = volume_path;
        self.subvolume = Some(subvolume);
        Ok(self)
    }

    /// What to ask `/disk add` for.
    pub fn disk_spec(&self) -> DiskSpec {
        let comment = VolumeComment {
            params_digest: &self.params_digest,
            name: &self.name,
        }
        .render();
        DiskSpec {
            slot: self.id.slot().clone(),
            file_path: self.file_path.clone(),
            size: self.size,
            port: self.port,
            nqn: self.nqn.clone(),
            comment: Some(if self.copying {
                naming::copying_comment(&comment)
            } else {
                comment
            }),
        }
    }

    /// Whether an existing disk with this volume's slot is the volume this request asks for
    /// (idempotent success) or not (`Err` with the reason, ALREADY_EXISTS).
    ///
    /// Disks the driver made record the name and a parameter digest in their comment; disks
    /// adopted from the Go driver have no comment and are compared on what the device shows.
    pub fn check_existing(&self, disk: &FileDisk) -> std::result::Result<(), String> {
        match disk.comment.as_deref().and_then(VolumeComment::parse) {
            Some(recorded) => {
                if recorded.name != self.name {
                    return Err(format!("was created for the CSI name {:?}", recorded.name));
                }
                if recorded.params_digest != self.params_digest {
                    return Err("was created with different parameters".into());
                }
            }
            // Only `pvc-` names are verbatim slots; a hashed slot must say which name it holds.
            None if !naming::is_pvc_name(&disk.slot) => {
                return Err("does not record which CSI name it was created for".into());
            }
            None => {}
        }
        if disk.file_path != self.file_path.as_str() {
            return Err(format!(
                "its image is {}, not {} (volumePath differs)",
                disk.file_path, self.file_path
            ));
        }
        if disk.nvme_tcp_port != self.port {
            return Err(format!(
                "it is exported on port {}, not {}",
                disk.nvme_tcp_port, self.port
            ));
        }
        if !disk.nvme_tcp_export {
            return Err("it is not exported over NVMe/TCP".into());
        }
        if disk.nqn != self.nqn.as_str() {
            return Err(format!("it is exported as {}, not {}", disk.nqn, self.nqn));
        }
        if disk.mount_filesystem {
            return Err(
                "mount-filesystem is on: RouterOS could mount its filesystem while a node writes"
                    .into(),
            );
        }
        if !SizePolicy::satisfies(disk.file_size, self.required_bytes, self.limit_bytes) {
            return Err(format!(
                "its size {} bytes is outside the requested range (required {}, limit {})",
                disk.file_size, self.required_bytes, self.limit_bytes
            ));
        }
        Ok(())
    }

    /// The VolumeContext for the node: the NQN as the device reports it (the slot before
    /// RouterOS 7.21), where to connect, and the StorageClass's connect and mkfs options.
    pub fn context(&self, config: &ControllerConfig, disk: &FileDisk) -> VolumeContext {
        VolumeContext {
            nqn: disk.nqn.clone(),
            nvme_address: self
                .params
                .nvme_address
                .clone()
                .unwrap_or_else(|| config.nvme_address.clone()),
            nvme_port: disk.nvme_tcp_port,
            connect: self.params.connect.clone(),
            mkfs_options: self.params.mkfs_options.clone(),
            volume_path: Some(self.volume_path.clone()),
            migration_timeout_seconds: self.params.migration_timeout_seconds,
            copy_of: self.source.as_ref().map(|source| match source {
                ContentSource::Snapshot(id) => id.to_string(),
                ContentSource::Volume(id) => id.to_string(),
            }),
        }
    }
}

/// The controller's view of a volume's health (CSI VolumeCondition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub abnormal: bool,
    pub message: String,
}

/// Judges a volume from its disk: abnormal when it is not exported, exported under another
/// NQN than the one its id implies, or set to have RouterOS mount its filesystem.
pub fn volume_condition(disk: &FileDisk, nqn_prefix: &str) -> Condition {
    let expected_nqn = match disk.nqn_source {
        NqnSource::ServerNqn => naming::nqn_for_volume(nqn_prefix, &disk.slot),
        NqnSource::SlotName => disk.slot.clone(),
    };
    let mut problems = Vec::new();
    if !disk.nvme_tcp_export {
        problems.push("the disk is not exported over NVMe/TCP".to_owned());
    }
    if disk.nqn != expected_nqn {
        problems.push(format!(
            "the disk is exported as {}, expected {expected_nqn}",
            disk.nqn
        ));
    }
    if disk.mount_filesystem {
        problems.push(
            "mount-filesystem is on: RouterOS may mount the volume's filesystem while nodes use it"
                .to_owned(),
        );
    }
    if problems.is_empty() {
        Condition {
            abnormal: false,
            message: format!(
                "exported as {} on port {}, {} bytes",
                disk.nqn, disk.nvme_tcp_port, disk.file_size
            ),
        }
    } else {
        Condition {
            abnormal: true,
            message: problems.join("; "),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub disks: Vec<FileDisk>,
    /// Token for the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// A listing token is empty or the last volume id of the previous page; anything else was
/// not issued by the driver.
pub fn check_token(starting_token: &str) -> Result<()> {
    if starting_token.is_empty() || naming::is_managed_volume_id(starting_token) {
        Ok(())
    } else {
        Err(DriverError::InvalidToken(starting_token.to_owned()))
    }
}

/// Pages the driver's disks by slot. The token is the last slot of the previous page, so a
/// listing survives volumes being added or removed between pages (the spec allows the CO to
/// see some twice or not at all).
pub fn page(
    disks: Vec<FileDisk>,
    base_path: &str,
    starting_token: &str,
    max_entries: usize,
) -> Result<Page> {
    page_and_rest(disks, base_path, starting_token, max_entries).map(|(page, _)| page)
}

/// [`page`], and the driver's disks after it (in slot order): what the pages after this one
/// hold, read from the same listing.
pub fn page_and_rest(
    disks: Vec<FileDisk>,
    base_path: &str,
    starting_token: &str,
    max_entries: usize,
) -> Result<(Page, Vec<FileDisk>)> {
    check_token(starting_token)?;
    let mut ours: Vec<FileDisk> = disks
        .into_iter()
        .filter(|d| owned_image(d, base_path).is_some())
        .filter(|d| starting_token.is_empty() || d.slot.as_str() > starting_token)
        .collect();
    ours.sort_by(|a, b| a.slot.cmp(&b.slot));
    let mut rest = Vec::new();
    let next_token = (max_entries != 0 && ours.len() > max_entries).then(|| {
        rest = ours.split_off(max_entries);
        ours[max_entries - 1].slot.clone()
    });
    ours.shrink_to_fit();
    Ok((
        Page {
            disks: ours,
            next_token,
        },
        rest,
    ))
}

#[cfg(test)]
mod tests;
