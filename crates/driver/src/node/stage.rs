//! NodeStageVolume and NodeUnstageVolume.

use std::path::{Path, PathBuf};

use mounts::DeviceNumber;
use mounts::format::{FormatOutcome, FsType, MkfsOptions, Probe};
use mounts::mount::{MountOptions, mount_filesystem};
use mounts::mountinfo::read_self_mount_table;
use mounts::mountpoint::{MountState, mount_state, table_spelling};
use mounts::phase;
use tokio::time::Instant;

use super::NodeCore;
use super::error::{NodeError, Result};
use super::fabric::AttachedDevice;
use super::health::is_volume_device;
use super::probe::{self, kind_unless_mounted, make_dirs};
use super::records::{RECORD_FORMAT, StagedLayout, StagedVolume, unix_now};
use super::recover::Checked;
use super::request::{Access, Capability};
use super::rules::{AtPath, PathKind, judge_mount_path, other_mounts};
use crate::params::VolumeContext;

/// A checked NodeStageVolume request.
#[derive(Debug, Clone)]
pub struct StageRequest {
    pub volume_id: String,
    pub staging: PathBuf,
    pub capability: Capability,
    pub context: VolumeContext,
}

impl NodeCore {
    pub(crate) async fn stage(&self, request: StageRequest, deadline: Instant) -> Result<()> {
        match &request.capability.access {
            Access::Block => self.stage_block(&request, deadline).await,
            Access::Filesystem { fs, options } => {
                self.stage_filesystem(&request, *fs, options, deadline)
                    .await
            }
        }
    }

    /// Block: attach and nothing else. Nothing is created at the staging path: kubelet's own
    /// block handling inspects what it finds there.
    async fn stage_block(&self, request: &StageRequest, deadline: Instant) -> Result<()> {
        let table = phase::timed("mountinfo", read_self_mount_table(deadline)).await?;
        if let MountState::Mounted | MountState::Stale { .. } = phase::timed(
            "path checks",
            mount_state(&request.staging, &table, deadline),
        )
        .await?
        {
            // This volume staged there as a filesystem is the spec's "staged, but incompatible".
            let spelled = table_spelling(&request.staging, deadline).await?;
            let attached = self.fabric.find(&request.context.nqn, deadline).await?;
            if let (Some(entry), Some(device)) = (table.top_at(&spelled), attached)
                && entry.device == device.device
            {
                return Err(NodeError::Incompatible(format!(
                    "already staged at {} as a {} filesystem, not as a block volume",
                    request.staging.display(),
                    entry.fs_type
                )));
            }
            return Err(NodeError::precondition(format!(
                "staging path {} holds a mount; a block volume stages nothing there",
                request.staging.display()
            )));
        }
        // A stage retried after the RDS replaced the namespace: the published device nodes
        // move to the new device first, so that the record keeps what they pointed at. Without
        // a device, attaching is this call's own job.
        if let Some(record) = self.records.get(&request.volume_id)
            && record.layout == StagedLayout::Block
        {
            self.check_and_recover(&record, deadline).await?;
        }
        let device = self.fabric.attach(&request.context, deadline).await?;
        self.remember_stage(request, &device, StagedLayout::Block, deadline)
            .await?;
        tracing::info!(device = %device.path.display(), "block volume staged");
        Ok(())
    }

    /// Records what this stage established (see [`super::records`]). A retried stage keeps
    /// the record of the same namespace on the same device (and its history of recoveries);
    /// a stage that mounted anew always starts a fresh one, so that device numbers from
    /// before (a node reboot renumbers devices) never count as this volume's.
    async fn remember_stage(
        &self,
        request: &StageRequest,
        device: &AttachedDevice,
        layout: StagedLayout,
        deadline: Instant,
    ) -> Result<()> {
        if !device.newly_attached
            && let Some(known) = self.records.get(&request.volume_id)
            && known.device == device.device
            && known.ids == device.ids
            && known.staging == request.staging
            && known.layout == layout
        {
            return Ok(());
        }
        let record = StagedVolume {
            format: RECORD_FORMAT,
            volume_id: request.volume_id.clone(),
            nqn: request.context.nqn.clone(),
            staging: request.staging.clone(),
            layout,
            device: device.device,
            device_path: device.path.clone(),
            ids: device.ids.clone(),
            context: request.context.to_map(),
            staged_at: unix_now(),
            recoveries: 0,
            recovered_at: None,
            replaced: Vec::new(),
            republished: Vec::new(),
            published: Vec::new(),
            stranded: Vec::new(),
        };
        self.records.save(record, deadline).await?;
        self.metrics.set_staged_volumes(self.records.all().len());
        Ok(())
    }

    fn filesystem_layout(
        request: &StageRequest,
        fs: FsType,
        fs_uuid: Option<String>,
    ) -> StagedLayout {
        StagedLayout::Filesystem {
            fs_type: fs.as_str().to_owned(),
            fs_uuid,
            mount_flags: request.capability.mount_flags.clone(),
            read_only: request.capability.reader_only,
        }
    }

    /// A stage retried while the staging path still holds the filesystem of a namespace the
    /// RDS has since replaced: the volume is re-staged on the new one (or the call says why
    /// it cannot be yet). `None` when this is not that case.
    async fn restage_if_replaced(
        &self,
        request: &StageRequest,
        fs: FsType,
        mounted: DeviceNumber,
        attached: Option<&AttachedDevice>,
        deadline: Instant,
    ) -> Result<Option<()>> {
        let Some(record) = self.records.get(&request.volume_id) else {
            return Ok(None);
        };
        if attached.is_some_and(|d| d.device == mounted)
            || !is_volume_device(Some(&record), None, mounted)
        {
            return Ok(None);
        }
        if let StagedLayout::Filesystem { fs_type, .. } = &record.layout
            && fs_type != fs.as_str()
        {
            return Err(NodeError::Incompatible(format!(
                "already staged at {} as {fs_type}, not {fs}",
                request.staging.display()
            )));
        }
        match self.check_and_recover(&record, deadline).await? {
            Checked::Healthy | Checked::Recovered(_) | Checked::Stranded(_) => Ok(Some(())),
            Checked::Waiting(why) => Err(NodeError::Unavailable(why)),
        }
    }

    async fn stage_filesystem(
        &self,
        request: &StageRequest,
        fs: FsType,
        options: &MountOptions,
        deadline: Instant,
    ) -> Result<()> {
        let staging = &request.staging;
        let nqn = request.context.nqn.as_str();
        let table = phase::timed("mountinfo", read_self_mount_table(deadline)).await?;
        let (state, kind, spelled) = phase::timed("path checks", async {
            let state = mount_state(staging, &table, deadline).await?;
            let kind = kind_unless_mounted(staging, state, deadline).await?;
            let spelled = table_spelling(staging, deadline).await?;
            Ok::<_, NodeError>((state, kind, spelled))
        })
        .await?;
        // A mount already there is judged before anything is attached: a retry of a stage
        // that succeeded, or something that is not this volume.
        let attached = match state {
            MountState::Mounted | MountState::Stale { .. } => {
                phase::timed("find device", self.fabric.find(nqn, deadline)).await?
            }
            _ => None,
        };
        if let Some(entry) = table.top_at(&spelled)
            && self
                .restage_if_replaced(request, fs, entry.device, attached.as_ref(), deadline)
                .await?
                .is_some()
        {
            tracing::info!("already staged (re-staged on the volume's new namespace)");
            return Ok(());
        }
        match judge_mount_path(
            state,
            table.top_at(&spelled),
            kind,
            attached.as_ref().map(|d| d.device),
        ) {
            AtPath::Free => {}
            AtPath::Ours(entry) if entry.fs_type == fs.as_str() => {
                if let Some(device) = &attached
                    && self.records.get(&request.volume_id).is_none()
                {
                    // Staged before records were kept: adopt it as it is.
                    let fs_uuid = match self.tools.probe(&device.path, deadline).await? {
                        Probe::Found(signature) => signature.uuid,
                        Probe::Empty => None,
                    };
                    let layout = Self::filesystem_layout(request, fs, fs_uuid);
                    self.remember_stage(request, device, layout, deadline)
                        .await?;
                }
                tracing::info!("already staged");
                return Ok(());
            }
            AtPath::Ours(entry) => {
                return Err(NodeError::Incompatible(format!(
                    "already staged at {} as {}, not {fs}",
                    staging.display(),
                    entry.fs_type
                )));
            }
            AtPath::OtherMount(what) => {
                return Err(NodeError::precondition(format!(
                    "staging path {}: {what}",
                    staging.display()
                )));
            }
            AtPath::NotADirectory(kind) => {
                return Err(NodeError::precondition(format!(
                    "staging path {} is {}, not a directory",
                    staging.display(),
                    kind.describe()
                )));
            }
            AtPath::Stale => {
                return Err(NodeError::precondition(format!(
                    "staging path {} holds a stale mount; unstage the volume first",
                    staging.display()
                )));
            }
        }
        if kind == PathKind::Missing {
            // The CO normally creates it.
            phase::timed("path checks", make_dirs(staging, deadline)).await?;
        }
        let device = self.fabric.attach(&request.context, deadline).await?;
        if !device.newly_attached {
            // Raw data of a pod using the volume as a block device has no filesystem signature
            // for blkid to find: it must never reach format_if_empty.
            let nodes =
                probe::published_nodes(&self.config.block_publish_dir, device.device, deadline)
                    .await?;
            if !nodes.is_empty() {
                return Err(NodeError::precondition(format!(
                    "{} is published as a block device at {nodes:?}; it cannot be staged as a \
                     filesystem",
                    device.path.display()
                )));
            }
        }
        let result = self
            .format_and_mount(request, &device, fs, options, deadline)
            .await;
        let fs_uuid = match result {
            Ok(fs_uuid) => fs_uuid,
            Err(error) => {
                if device.newly_attached {
                    self.release_if_unused(nqn, &device).await;
                }
                return Err(error);
            }
        };
        let layout = Self::filesystem_layout(request, fs, fs_uuid);
        // Mounted anew: whatever was recorded before is of another stage.
        self.records.remove(&request.volume_id, deadline).await?;
        self.remember_stage(request, &device, layout, deadline)
            .await
    }

    async fn format_and_mount(
        &self,
        request: &StageRequest,
        device: &AttachedDevice,
        fs: FsType,
        options: &MountOptions,
        deadline: Instant,
    ) -> Result<Option<String>> {
        let mkfs = MkfsOptions::parse(request.context.mkfs_options.as_deref().unwrap_or(""))
            .map_err(|e| NodeError::invalid("volume_context mkfsOptions", e.to_string()))?;
        // Timed step by step inside (readable check, blkid, mkfs).
        let formatted = self
            .tools
            .format_if_empty(&device.path, fs, &mkfs, deadline)
            .await?;
        let fs_uuid = match formatted {
            FormatOutcome::Formatted => {
                tracing::info!(device = %device.path.display(), %fs, "formatted an empty volume");
                // The new filesystem's UUID, for the record: what a re-stage must find.
                match self.tools.probe(&device.path, deadline).await? {
                    Probe::Found(signature) => signature.uuid,
                    Probe::Empty => None,
                }
            }
            // A copy of an XFS volume carries its source's UUID, which XFS refuses to mount
            // twice on one host: it gets a new one first (its log replayed if need be). An
            // unmounted filesystem with a signature is all this touches; never its data.
            FormatOutcome::AlreadyFormatted { fs_type, .. }
                if fs == FsType::Xfs
                    && fs_type == fs.as_str()
                    && request.context.copy_of.is_some() =>
            {
                let uuid = phase::timed(
                    "new filesystem UUID",
                    self.tools
                        .regenerate_uuid(fs, &device.path, &request.staging, deadline),
                )
                .await?;
                tracing::info!(device = %device.path.display(), %uuid, copy_of = ?request.context.copy_of,
                    "gave the copy's filesystem a UUID of its own");
                Some(uuid)
            }
            FormatOutcome::AlreadyFormatted { fs_type, uuid } if fs_type == fs.as_str() => uuid,
            FormatOutcome::AlreadyFormatted { fs_type, .. } => {
                return Err(NodeError::precondition(format!(
                    "{} holds {fs_type}, but {fs} was asked for; it is neither mounted nor \
                     formatted",
                    device.path.display()
                )));
            }
        };
        let options = if request.capability.reader_only {
            options.clone().read_only()
        } else {
            options.clone()
        };
        phase::timed(
            "mount",
            mount_filesystem(
                &device.path,
                &request.staging,
                fs.as_str(),
                &options,
                deadline,
            ),
        )
        .await?;
        tracing::info!(device = %device.path.display(), staging = %request.staging.display(), %fs, "staged");
        Ok(fs_uuid)
    }

    /// Unmounts the staging path (refusing while the filesystem is bind-mounted elsewhere),
    /// then detaches the device once nothing uses it. Without a volume context, the device is
    /// found by the volume's NQN.
    pub(crate) async fn unstage(
        &self,
        volume_id: &str,
        nqn: &str,
        staging: &Path,
        deadline: Instant,
    ) -> Result<()> {
        let attached = self.fabric.find(nqn, deadline).await?;
        let record = self.records.get(volume_id);
        let table = read_self_mount_table(deadline).await?;
        if let MountState::Mounted | MountState::Stale { .. } =
            mount_state(staging, &table, deadline).await?
        {
            let spelled = table_spelling(staging, deadline).await?;
            if let Some(entry) = table.top_at(&spelled) {
                // The staging mount may be on a namespace the RDS replaced: still this volume's.
                if let Some(device) = &attached
                    && !is_volume_device(record.as_ref(), Some(device.device), entry.device)
                {
                    return Err(NodeError::precondition(format!(
                        "staging path {} holds device {}, not this volume's {}",
                        staging.display(),
                        entry.device,
                        device.device
                    )));
                }
                let published = other_mounts(&table, entry.device, &spelled);
                if !published.is_empty() {
                    return Err(NodeError::precondition(format!(
                        "still published at {published:?}; unpublish first"
                    )));
                }
            }
            self.unmount_all(staging, deadline).await?;
        }
        if let Some(device) = &attached {
            let users = self.users_of(device.device, deadline).await?;
            if !users.is_empty() {
                return Err(NodeError::precondition(format!(
                    "{} is still in use: {}",
                    device.path.display(),
                    users.join(", ")
                )));
            }
        }
        self.fabric.detach(nqn, deadline).await?;
        self.records.remove(volume_id, deadline).await?;
        self.metrics.set_staged_volumes(self.records.all().len());
        self.forget_recovery_failure(volume_id);
        tracing::info!("unstaged");
        Ok(())
    }
}
