//! NodeGetVolumeStats read the way kubelet reads it, and the judgement of an expansion.

use csi::v1::NodeGetVolumeStatsResponse;
use csi::v1::volume_usage::Unit;

use crate::render::bytes;

/// A filesystem volume's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub total: u64,
    pub used: u64,
    pub available: u64,
    pub inodes: u64,
    pub inodes_used: u64,
}

fn non_negative(value: i64) -> u64 {
    value.max(0) as u64
}

impl FsUsage {
    /// Bytes and inodes from the response; an abnormal condition or a missing entry is an
    /// error carrying the node's own words.
    pub fn from_response(reply: &NodeGetVolumeStatsResponse) -> Result<Self, String> {
        if let Some(condition) = &reply.volume_condition
            && condition.abnormal
        {
            return Err(format!(
                "the node reports the volume abnormal: {}",
                condition.message
            ));
        }
        let find = |unit: Unit| {
            reply
                .usage
                .iter()
                .find(|u| u.unit == i32::from(unit))
                .ok_or_else(|| format!("NodeGetVolumeStats gave no {} usage", unit.as_str_name()))
        };
        let bytes = find(Unit::Bytes)?;
        let inodes = find(Unit::Inodes)?;
        Ok(Self {
            total: non_negative(bytes.total),
            used: non_negative(bytes.used),
            available: non_negative(bytes.available),
            inodes: non_negative(inodes.total),
            inodes_used: non_negative(inodes.used),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} filesystem, {} used, {} available; {} of {} inodes used; condition healthy",
            bytes(self.total),
            bytes(self.used),
            bytes(self.available),
            self.inodes_used,
            self.inodes
        )
    }
}

/// The filesystem grew, and to about the new size (its own metadata takes a few percent).
pub fn check_growth(before: &FsUsage, after: &FsUsage, capacity: u64) -> Result<(), String> {
    if after.total <= before.total || after.total < capacity / 10 * 9 {
        return Err(format!(
            "after expanding the volume to {} the filesystem has {} (was {})",
            bytes(capacity),
            bytes(after.total),
            bytes(before.total)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi::v1::{VolumeCondition, VolumeUsage};

    fn reply(abnormal: bool, with_inodes: bool) -> NodeGetVolumeStatsResponse {
        let mut usage = vec![VolumeUsage {
            available: 900,
            total: 1000,
            used: 64,
            unit: Unit::Bytes.into(),
        }];
        if with_inodes {
            usage.push(VolumeUsage {
                available: 90,
                total: 100,
                used: 10,
                unit: Unit::Inodes.into(),
            });
        }
        NodeGetVolumeStatsResponse {
            usage,
            volume_condition: Some(VolumeCondition {
                abnormal,
                message: if abnormal {
                    "mount is stale"
                } else {
                    "volume is healthy"
                }
                .into(),
            }),
        }
    }

    #[test]
    fn usage_is_read_from_both_units() {
        let usage = FsUsage::from_response(&reply(false, true)).unwrap();
        assert_eq!(
            usage,
            FsUsage {
                total: 1000,
                used: 64,
                available: 900,
                inodes: 100,
                inodes_used: 10
            }
        );
        assert!(usage.describe().contains("10 of 100 inodes used"));
    }

    #[test]
    fn abnormal_or_incomplete_answers_are_errors() {
        let err = FsUsage::from_response(&reply(true, true)).unwrap_err();
        assert!(err.contains("mount is stale"), "{err}");
        let err = FsUsage::from_response(&reply(false, false)).unwrap_err();
        assert!(err.contains("INODES"), "{err}");
    }

    #[test]
    fn growth_must_reach_most_of_the_new_size() {
        let at = |total| FsUsage {
            total,
            used: 0,
            available: 0,
            inodes: 0,
            inodes_used: 0,
        };
        let gib = 1u64 << 30;
        assert!(check_growth(&at(gib - 30_000_000), &at(2 * gib - 60_000_000), 2 * gib).is_ok());
        let err = check_growth(&at(gib), &at(gib), 2 * gib).unwrap_err();
        assert!(err.contains("has 1 GiB (was 1 GiB)"), "{err}");
        assert!(check_growth(&at(gib / 2), &at(gib), 2 * gib).is_err());
    }
}
