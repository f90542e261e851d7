//! NodeExpandVolume: make the node see the grown device, then grow the filesystem on it.

use std::path::PathBuf;

use csi::v1::CapacityRange;
use mounts::format::FsType;
use mounts::mountinfo::read_self_mount_table;
use mounts::mountpoint::{MountState, mount_state, table_spelling};
use mounts::stats::block_device_size;
use tokio::time::Instant;

use super::NodeCore;
use super::error::{NodeError, Result};
use super::fabric::FabricError;
use super::probe::kind_unless_mounted;
use super::request::{Access, Volume};
use super::rules::PathKind;

/// A checked NodeExpandVolume request.
#[derive(Debug, Clone)]
pub struct ExpandRequest {
    pub volume: Volume,
    /// Where the volume is published (or staged).
    pub path: PathBuf,
    pub staging: Option<PathBuf>,
    /// Bytes the device must have at least; 0 when the CO did not say.
    pub required_bytes: u64,
    /// From the capability when the CO sent one; otherwise judged from the path.
    pub access: Option<Access>,
}

/// The size the device must reach: `required_bytes`, checked against `limit_bytes`.
pub fn required_bytes(range: Option<&CapacityRange>) -> Result<u64> {
    let Some(range) = range else {
        return Ok(0);
    };
    let required = u64::try_from(range.required_bytes)
        .map_err(|_| NodeError::invalid("capacity_range", "required_bytes is negative"))?;
    let limit = u64::try_from(range.limit_bytes)
        .map_err(|_| NodeError::invalid("capacity_range", "limit_bytes is negative"))?;
    if limit != 0 && required > limit {
        return Err(NodeError::OutOfRange(format!(
            "required_bytes {required} exceeds limit_bytes {limit}"
        )));
    }
    Ok(required)
}

impl NodeCore {
    /// Returns the device's size after expansion.
    pub(crate) async fn expand(&self, request: ExpandRequest, deadline: Instant) -> Result<u64> {
        let nqn = request.volume.require_nqn()?;
        let device = self
            .fabric
            .find(nqn, deadline)
            .await?
            .ok_or_else(|| NodeError::NotFound {
                volume_id: request.volume.id.clone(),
                reason: "not attached on this node".into(),
            })?;
        let table = read_self_mount_table(deadline).await?;
        let state = mount_state(&request.path, &table, deadline).await?;
        if state == MountState::Missing {
            return Err(NodeError::PathNotFound(request.path.clone()));
        }
        let kind = kind_unless_mounted(&request.path, state, deadline).await?;
        let block = match &request.access {
            Some(access) => *access == Access::Block,
            None => matches!(kind, PathKind::BlockNode(_)),
        };
        self.fabric
            .rescan(nqn, request.required_bytes, deadline)
            .await?;
        let size = block_device_size(&device.path, deadline).await?;
        if size < request.required_bytes {
            return Err(NodeError::Fabric(FabricError::TooSmall {
                nqn: nqn.to_owned(),
                found: size,
                wanted: request.required_bytes,
            }));
        }
        if block {
            tracing::info!(size, "block volume expanded");
            return Ok(size);
        }
        // The filesystem grows online, through whichever of the paths shows it mounted.
        let mut mounted = None;
        for path in std::iter::once(&request.path).chain(request.staging.as_ref()) {
            let spelled = table_spelling(path, deadline).await?;
            if let Some(entry) = table
                .top_at(&spelled)
                .filter(|entry| entry.device == device.device)
            {
                mounted = Some((spelled.clone(), entry.fs_type.clone()));
                break;
            }
        }
        let Some((mount_point, fs_type)) = mounted else {
            return Err(NodeError::precondition(format!(
                "volume {} is not mounted at {}; cannot grow its filesystem",
                request.volume.id,
                request.path.display()
            )));
        };
        let fs: FsType = fs_type
            .parse()
            .map_err(|_| NodeError::precondition(format!("cannot grow a {fs_type} filesystem")))?;
        self.tools
            .grow(fs, &device.path, Some(&mount_point), deadline)
            .await?;
        tracing::info!(size, %fs, mount_point = %mount_point.display(), "filesystem expanded");
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(required: i64, limit: i64) -> CapacityRange {
        CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }
    }

    #[test]
    fn capacity_ranges_are_checked() {
        assert_eq!(required_bytes(None).unwrap(), 0);
        assert_eq!(required_bytes(Some(&range(10, 0))).unwrap(), 10);
        assert_eq!(required_bytes(Some(&range(10, 10))).unwrap(), 10);
        assert!(matches!(
            required_bytes(Some(&range(11, 10))),
            Err(NodeError::OutOfRange(_))
        ));
        assert!(matches!(
            required_bytes(Some(&range(-1, 0))),
            Err(NodeError::Invalid { .. })
        ));
        assert!(matches!(
            required_bytes(Some(&range(1, -1))),
            Err(NodeError::Invalid { .. })
        ));
    }
}
