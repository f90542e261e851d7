//! NodeGetVolumeStats: usage of a published or staged volume, and its condition.

use std::path::Path;

use csi::v1::volume_usage::Unit;
use csi::v1::{NodeGetVolumeStatsResponse, VolumeCondition, VolumeUsage};
use mounts::DeviceNumber;
use mounts::mountinfo::read_self_mount_table;
use mounts::mountpoint::{MountState, mount_state, table_spelling};
use mounts::stats::{FsStats, block_device_size, filesystem_stats};
use tokio::time::Instant;

use super::NodeCore;
use super::error::{NodeError, Result};
use super::fabric::Condition;
use super::health::{identity_condition, is_volume_device};
use super::probe::path_kind;
use super::request::Volume;
use super::rules::PathKind;

/// What could be measured at a volume path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    Filesystem(FsStats),
    Block {
        size_bytes: u64,
    },
    /// Nothing could be measured (dead mount, vanished device); the condition says why.
    Unknown,
}

/// The first abnormal finding wins: the path's own trouble is the more precise message.
fn worse(first: Condition, second: Condition) -> Condition {
    match first {
        Condition::Healthy => second,
        abnormal => abnormal,
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The response for a measurement.
pub fn stats_response(usage: &Usage, condition: &Condition) -> NodeGetVolumeStatsResponse {
    let usage = match usage {
        Usage::Filesystem(fs) => vec![
            VolumeUsage {
                available: clamp(fs.available_bytes),
                total: clamp(fs.total_bytes),
                used: clamp(fs.used_bytes),
                unit: Unit::Bytes.into(),
            },
            VolumeUsage {
                available: clamp(fs.free_inodes),
                total: clamp(fs.total_inodes),
                used: clamp(fs.used_inodes),
                unit: Unit::Inodes.into(),
            },
        ],
        Usage::Block { size_bytes } => vec![VolumeUsage {
            total: clamp(*size_bytes),
            unit: Unit::Bytes.into(),
            ..VolumeUsage::default()
        }],
        Usage::Unknown => Vec::new(),
    };
    let volume_condition = Some(match condition {
        Condition::Healthy => VolumeCondition {
            abnormal: false,
            message: "volume is healthy".into(),
        },
        Condition::Abnormal(message) => VolumeCondition {
            abnormal: true,
            message: message.clone(),
        },
    });
    NodeGetVolumeStatsResponse {
        usage,
        volume_condition,
    }
}

impl NodeCore {
    pub(crate) async fn stats(
        &self,
        volume: &Volume,
        path: &Path,
        deadline: Instant,
    ) -> Result<(Usage, Condition)> {
        let nqn = volume.require_nqn()?;
        // When the volume is attached, what is at the path must be its device (or one it had
        // before the RDS replaced its namespace); when it is not (its controller lost), the
        // condition below says so.
        let attached = self.fabric.find(nqn, deadline).await?;
        let record = self.records.get(&volume.id);
        let not_here = |found: DeviceNumber| match &attached {
            Some(device) if !is_volume_device(record.as_ref(), Some(device.device), found) => {
                Err(NodeError::NotFound {
                    volume_id: volume.id.clone(),
                    reason: format!(
                        "{} holds device {found}, not this volume's {}",
                        path.display(),
                        device.device
                    ),
                })
            }
            _ => Ok(()),
        };
        let table = read_self_mount_table(deadline).await?;
        let state = mount_state(path, &table, deadline).await?;
        let mut at_path = None;
        if let MountState::Mounted | MountState::Stale { .. } = state
            && let Some(entry) = table.top_at(&table_spelling(path, deadline).await?)
        {
            if state == MountState::Mounted {
                not_here(entry.device)?;
            }
            at_path = Some(entry.device);
        }
        let (usage, path_condition) = match state {
            MountState::Missing => return Err(NodeError::PathNotFound(path.to_path_buf())),
            MountState::Stale { errno } => (
                Usage::Unknown,
                Condition::Abnormal(format!(
                    "the mount at {} is stale ({})",
                    path.display(),
                    std::io::Error::from_raw_os_error(errno)
                )),
            ),
            MountState::Mounted => match filesystem_stats(path, deadline).await {
                Ok(stats) => (Usage::Filesystem(stats), Condition::Healthy),
                Err(error) => (
                    Usage::Unknown,
                    Condition::Abnormal(format!("cannot read the filesystem: {error}")),
                ),
            },
            MountState::NotMounted => match path_kind(path, deadline).await? {
                PathKind::BlockNode(found) => match not_here(found)
                    .map(|()| at_path = Some(found))
                    .map(|()| block_device_size(path, deadline))?
                    .await
                {
                    Ok(size_bytes) => (Usage::Block { size_bytes }, Condition::Healthy),
                    Err(error) => (
                        Usage::Unknown,
                        Condition::Abnormal(format!("cannot read the device: {error}")),
                    ),
                },
                other => {
                    return Err(NodeError::NotFound {
                        volume_id: volume.id.clone(),
                        reason: format!(
                            "{} is {} with no volume mounted",
                            path.display(),
                            other.describe()
                        ),
                    });
                }
            },
        };
        let failure = self.recovery_failure(&volume.id);
        let (identity, wake) = identity_condition(
            record.as_ref(),
            attached.as_ref(),
            path,
            at_path,
            failure.as_deref(),
        );
        // A replaced namespace is re-staged, a missing one looked for (rescan), by the check.
        if wake || (record.is_some() && attached.is_none()) {
            self.wake_health_check();
        }
        let fabric = match (
            self.fabric.condition(nqn, deadline).await?,
            &record,
            &attached,
        ) {
            // No device at all for a staged volume: say what is missing and what happens next.
            (Condition::Abnormal(why), Some(record), None) => Condition::Abnormal(format!(
                "the namespace this volume was staged on ({}) is not on this node now: {why}; \
                 when the RDS presents it again the node re-stages the volume on it, if it \
                 holds the same filesystem",
                record.ids
            )),
            (other, _, _) => other,
        };
        Ok((usage, worse(identity, worse(path_condition, fabric))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_usage_reports_bytes_and_inodes() {
        let fs = FsStats {
            total_bytes: 1000,
            used_bytes: 300,
            available_bytes: 650,
            total_inodes: 64,
            used_inodes: 4,
            free_inodes: 60,
        };
        let response = stats_response(&Usage::Filesystem(fs), &Condition::Healthy);
        assert_eq!(
            response.usage,
            vec![
                VolumeUsage {
                    available: 650,
                    total: 1000,
                    used: 300,
                    unit: Unit::Bytes.into()
                },
                VolumeUsage {
                    available: 60,
                    total: 64,
                    used: 4,
                    unit: Unit::Inodes.into()
                },
            ]
        );
        assert!(!response.volume_condition.unwrap().abnormal);
    }

    #[test]
    fn block_usage_is_the_size_and_unknown_is_empty() {
        let response = stats_response(
            &Usage::Block {
                size_bytes: u64::MAX,
            },
            &Condition::Healthy,
        );
        assert_eq!(response.usage.len(), 1);
        assert_eq!(response.usage[0].total, i64::MAX);
        let response = stats_response(&Usage::Unknown, &Condition::Abnormal("gone".into()));
        assert!(response.usage.is_empty());
        assert_eq!(
            response.volume_condition,
            Some(VolumeCondition {
                abnormal: true,
                message: "gone".into()
            })
        );
    }

    #[test]
    fn the_paths_own_trouble_wins_over_the_fabrics() {
        let path = Condition::Abnormal("stale".into());
        let fabric = Condition::Abnormal("no controller".into());
        assert_eq!(worse(path.clone(), fabric.clone()), path);
        assert_eq!(worse(Condition::Healthy, fabric.clone()), fabric);
        assert_eq!(
            worse(Condition::Healthy, Condition::Healthy),
            Condition::Healthy
        );
    }
}
