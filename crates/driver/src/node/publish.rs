//! NodePublishVolume and NodeUnpublishVolume.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mounts::blocking::run_blocking;
use mounts::devnode::{
    NodeState, create_block_node, remove_device_node, remove_empty_dir, remove_empty_file,
};
use mounts::mount::{MountOptions, bind_mount};
use mounts::mountinfo::read_self_mount_table;
use mounts::mountpoint::{MountState, mount_state, table_spelling};
use tokio::time::Instant;

use super::NodeCore;
use super::error::{NodeError, Result};
use super::fabric::AttachedDevice;
use super::probe::{block_node, kind_unless_mounted, make_dirs, path_kind};
use super::recover::Checked;
use super::request::{Access, Capability, Volume};
use super::rules::{AtPath, PathKind, block_node_mode, judge_mount_path, publish_options};

/// A checked NodePublishVolume request.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub volume: Volume,
    pub staging: PathBuf,
    pub target: PathBuf,
    pub capability: Capability,
    /// The CO's `readonly` flag.
    pub readonly: bool,
}

impl PublishRequest {
    fn read_only(&self) -> bool {
        self.readonly || self.capability.reader_only
    }
}

impl NodeCore {
    pub(crate) async fn publish(&self, request: PublishRequest, deadline: Instant) -> Result<()> {
        let nqn = request.volume.require_nqn()?;
        // A volume whose namespace the RDS replaced is re-staged before a pod gets it.
        if let Some(record) = self.records.get(&request.volume.id)
            && let Checked::Waiting(why) = self.check_and_recover(&record, deadline).await?
        {
            return Err(NodeError::Unavailable(format!(
                "volume {} cannot be published now: {why}",
                request.volume.id
            )));
        }
        let device = self.fabric.find(nqn, deadline).await?.ok_or_else(|| {
            NodeError::precondition(format!(
                "volume {} is not staged on this node",
                request.volume.id
            ))
        })?;
        match &request.capability.access {
            Access::Block => self.publish_block(&request, &device, deadline).await?,
            Access::Filesystem { options, .. } => {
                self.publish_filesystem(&request, &device, options, deadline)
                    .await?
            }
        }
        // The paths a re-stage may re-point are exactly those published here.
        if let Some(mut record) = self.records.get(&request.volume.id)
            && record.add_published(&request.target)
        {
            self.records.save(record, deadline).await?;
        }
        Ok(())
    }

    /// Block: a device node of our own with the device's number at the target. Never a bind
    /// mount of `/dev/...`: under bidirectional propagation those multiply into mount storms.
    async fn publish_block(
        &self,
        request: &PublishRequest,
        device: &AttachedDevice,
        deadline: Instant,
    ) -> Result<()> {
        let target = &request.target;
        let mode = block_node_mode(request.read_only());
        // A device with a mounted filesystem (staged as one) handed raw to a pod would have
        // two writers that know nothing of each other.
        let table = read_self_mount_table(deadline).await?;
        if let Some(entry) = table.mounts_of_device(device.device).next() {
            return Err(NodeError::precondition(format!(
                "volume {} is staged as a {} filesystem (mounted at {}); it cannot be published \
                 as a block device",
                request.volume.id,
                entry.fs_type,
                entry.mount_point.display()
            )));
        }
        if let Some(parent) = target.parent() {
            make_dirs(parent, deadline).await?;
        }
        match block_node(target, device.device, deadline).await? {
            (NodeState::Missing, _) => {
                create_block_node(target, device.device, deadline).await?;
                set_mode(target, mode, deadline).await?;
                tracing::info!(target = %target.display(), device = %device.device, "block device node published");
                Ok(())
            }
            (NodeState::Matches, current) if current == mode => Ok(()),
            (NodeState::Matches, current) => Err(NodeError::Incompatible(format!(
                "{} is already published with mode {current:o}, not {mode:o} (read-only differs)",
                target.display()
            ))),
            (NodeState::OtherDevice(other), _) => Err(NodeError::Incompatible(format!(
                "{} is a device node for {other}, not this volume's {}",
                target.display(),
                device.device
            ))),
            (NodeState::NotABlockDevice(kind), _) => Err(NodeError::precondition(format!(
                "{} is {kind}; expected nothing or this volume's device node",
                target.display()
            ))),
        }
    }

    /// Filesystem: a bind mount of the staging mount, with the per-mount flags asked for.
    async fn publish_filesystem(
        &self,
        request: &PublishRequest,
        device: &AttachedDevice,
        options: &MountOptions,
        deadline: Instant,
    ) -> Result<()> {
        let (staging, target) = (&request.staging, &request.target);
        let table = read_self_mount_table(deadline).await?;
        let staged = table
            .top_at(&table_spelling(staging, deadline).await?)
            .is_some_and(|entry| entry.device == device.device);
        if !staged {
            return Err(NodeError::precondition(format!(
                "volume {} is not staged at {}",
                request.volume.id,
                staging.display()
            )));
        }
        let state = mount_state(target, &table, deadline).await?;
        let kind = kind_unless_mounted(target, state, deadline).await?;
        let read_only = request.read_only();
        match judge_mount_path(
            state,
            table.top_at(&table_spelling(target, deadline).await?),
            kind,
            Some(device.device),
        ) {
            AtPath::Free => {}
            AtPath::Ours(entry) if entry.is_read_only() == read_only => return Ok(()),
            AtPath::Ours(_) => {
                return Err(NodeError::Incompatible(format!(
                    "{} is already published {}",
                    target.display(),
                    if read_only { "read-write" } else { "read-only" }
                )));
            }
            AtPath::OtherMount(what) => {
                return Err(NodeError::Incompatible(format!(
                    "{}: {what}",
                    target.display()
                )));
            }
            AtPath::NotADirectory(kind) => {
                return Err(NodeError::precondition(format!(
                    "{} is {}, not a directory",
                    target.display(),
                    kind.describe()
                )));
            }
            AtPath::Stale => {
                return Err(NodeError::precondition(format!(
                    "{} holds a stale mount; unpublish first",
                    target.display()
                )));
            }
        }
        if kind == PathKind::Missing {
            make_dirs(target, deadline).await?;
        }
        bind_mount(
            staging,
            target,
            &publish_options(options, read_only),
            deadline,
        )
        .await?;
        tracing::info!(target = %target.display(), read_only, "published");
        Ok(())
    }

    /// Unmounts the target (or removes the device node there), then removes what is left
    /// only after a fresh look shows it is no longer a mount point. A directory is removed
    /// only when empty; anything unexpected is left in place and reported.
    pub(crate) async fn unpublish(
        &self,
        volume_id: &str,
        target: &Path,
        deadline: Instant,
    ) -> Result<()> {
        self.unpublish_path(target, deadline).await?;
        // A pod that held a replaced namespace there is gone with it.
        if let Some(mut record) = self.records.get(volume_id)
            && record.forget_published(target)
        {
            self.records.save(record, deadline).await?;
        }
        Ok(())
    }

    async fn unpublish_path(&self, target: &Path, deadline: Instant) -> Result<()> {
        let table = read_self_mount_table(deadline).await?;
        match mount_state(target, &table, deadline).await? {
            MountState::Missing => return Ok(()),
            MountState::NotMounted => {}
            MountState::Mounted | MountState::Stale { .. } => {
                self.unmount_all(target, deadline).await?;
            }
        }
        let table = read_self_mount_table(deadline).await?;
        match path_kind(target, deadline).await? {
            PathKind::Missing => {}
            PathKind::Directory => {
                remove_empty_dir(target, &table, deadline).await?;
            }
            PathKind::BlockNode(_) | PathKind::CharNode => {
                remove_device_node(target, &table, deadline).await?;
            }
            // An empty file is what a bind mount of a device node leaves behind.
            PathKind::File(0) => {
                remove_empty_file(target, &table, deadline).await?;
            }
            other => {
                return Err(NodeError::precondition(format!(
                    "{} is {}; left in place",
                    target.display(),
                    other.describe()
                )));
            }
        }
        tracing::info!(target = %target.display(), "unpublished");
        Ok(())
    }
}

async fn set_mode(path: &Path, mode: u32, deadline: Instant) -> Result<()> {
    let path = path.to_path_buf();
    let op = format!("chmod {}", path.display());
    run_blocking(&op, deadline, move || {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
            mounts::Error::Io {
                op: "chmod",
                path,
                source,
            }
        })
    })
    .await
    .map_err(NodeError::Mount)
}
