//! What the demo does, free of I/O: the steps in order, what each is called on screen, and
//! the sizes derived from `--size` and `--fs`.

use std::fmt;

use clap::ValueEnum;

const MIB: u64 = 1 << 20;

/// Bytes written to the filesystem volume and read back (a quarter of small volumes).
pub const DATA_BYTES: u64 = 64 * MIB;
/// Bytes written raw at each end of the block volume.
pub const RAW_IO_BYTES: u64 = MIB;

/// The filesystem the node puts on the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsKind {
    Ext4,
    Xfs,
}

impl FsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
        }
    }

    /// The smallest volume its mkfs accepts (mkfs.xfs refuses filesystems under 300 MiB).
    pub fn min_volume_bytes(self) -> u64 {
        match self {
            FsKind::Ext4 => 16 * MIB,
            FsKind::Xfs => 300 * MIB,
        }
    }

    /// Programs the node runs for this filesystem (besides blkid).
    pub fn tools(self) -> [&'static str; 2] {
        match self {
            FsKind::Ext4 => ["mkfs.ext4", "resize2fs"],
            FsKind::Xfs => ["mkfs.xfs", "xfs_growfs"],
        }
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Each volume as created.
    pub volume: u64,
    /// The filesystem volume after expansion: twice the size.
    pub grown: u64,
    /// The file written and read back.
    pub data: u64,
}

impl Sizes {
    /// Checks `--size` against the filesystem and derives the rest.
    pub fn new(volume: u64, fs: FsKind) -> Result<Self, String> {
        let min = fs.min_volume_bytes();
        if volume < min {
            return Err(format!(
                "--size {volume} is too small: {fs} needs at least {} bytes ({} MiB)",
                min,
                min / MIB
            ));
        }
        // CSI carries sizes as int64; the grown size must fit too.
        let grown = volume
            .checked_mul(2)
            .filter(|g| i64::try_from(*g).is_ok())
            .ok_or_else(|| format!("--size {volume} is too large to double"))?;
        let data = DATA_BYTES.min(volume / 4 / MIB * MIB);
        Ok(Self {
            volume,
            grown,
            data,
        })
    }
}

/// One step as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    StartSimulator,
    StartController,
    StartNode,
    CreateFilesystem,
    StageFilesystem,
    PublishFilesystem,
    SecondNode,
    WriteFile,
    ReadBack,
    Snapshot,
    Restore,
    ReadRestored,
    DeleteRestored,
    VolumeStats,
    ExpandController,
    ExpandNode,
    UnpublishFilesystem,
    UnstageFilesystem,
    CreateBlock,
    StageBlock,
    PublishBlock,
    RawIo,
    UnpublishBlock,
    UnstageBlock,
    DeleteFilesystem,
    DeleteBlock,
    Metrics,
    DeviceClean,
    HostClean,
    KeepVolume,
    Shutdown,
}

impl Step {
    pub const ALL: [Step; 31] = [
        Step::StartSimulator,
        Step::StartController,
        Step::StartNode,
        Step::CreateFilesystem,
        Step::StageFilesystem,
        Step::PublishFilesystem,
        Step::SecondNode,
        Step::WriteFile,
        Step::ReadBack,
        Step::Snapshot,
        Step::Restore,
        Step::ReadRestored,
        Step::DeleteRestored,
        Step::VolumeStats,
        Step::ExpandController,
        Step::ExpandNode,
        Step::UnpublishFilesystem,
        Step::UnstageFilesystem,
        Step::CreateBlock,
        Step::StageBlock,
        Step::PublishBlock,
        Step::RawIo,
        Step::UnpublishBlock,
        Step::UnstageBlock,
        Step::DeleteFilesystem,
        Step::DeleteBlock,
        Step::Metrics,
        Step::DeviceClean,
        Step::HostClean,
        Step::KeepVolume,
        Step::Shutdown,
    ];

    /// The name on screen: the CSI call where the step is one, so that what Kubernetes would
    /// call can be read off the output.
    pub fn label(self) -> &'static str {
        match self {
            Step::StartSimulator => "start the RDS simulator",
            Step::StartController => "start the controller",
            Step::StartNode => "start the node plugin",
            Step::CreateFilesystem => "CreateVolume (filesystem)",
            Step::StageFilesystem => "NodeStageVolume (filesystem)",
            Step::PublishFilesystem => "NodePublishVolume (filesystem)",
            Step::SecondNode => "ControllerPublishVolume (node 2)",
            Step::WriteFile => "write a file",
            Step::ReadBack => "read it back",
            Step::Snapshot => "CreateSnapshot",
            Step::Restore => "CreateVolume (from the snapshot)",
            Step::ReadRestored => "read the restored copy",
            Step::DeleteRestored => "DeleteVolume, DeleteSnapshot",
            Step::VolumeStats => "NodeGetVolumeStats",
            Step::ExpandController => "ControllerExpandVolume",
            Step::ExpandNode => "NodeExpandVolume",
            Step::UnpublishFilesystem => "NodeUnpublishVolume (filesystem)",
            Step::UnstageFilesystem => "NodeUnstageVolume (filesystem)",
            Step::CreateBlock => "CreateVolume (block)",
            Step::StageBlock => "NodeStageVolume (block)",
            Step::PublishBlock => "NodePublishVolume (block)",
            Step::RawIo => "raw I/O on the device node",
            Step::UnpublishBlock => "NodeUnpublishVolume (block)",
            Step::UnstageBlock => "NodeUnstageVolume (block)",
            Step::DeleteFilesystem => "DeleteVolume (filesystem)",
            Step::DeleteBlock => "DeleteVolume (block)",
            Step::Metrics => "GET /metrics (Prometheus)",
            Step::DeviceClean => "nothing left on the RDS",
            Step::HostClean => "nothing left on this host",
            Step::KeepVolume => "keep a volume published",
            Step::Shutdown => "stop and clean up",
        }
    }

    /// The widest label, for aligned columns.
    pub fn label_width() -> usize {
        Step::ALL.iter().map(|s| s.label().len()).max().unwrap_or(0)
    }
}

/// The steps of a run, in order.
pub fn plan(keep: bool) -> Vec<Step> {
    Step::ALL
        .into_iter()
        .filter(|step| keep || *step != Step::KeepVolume)
        .collect()
}

/// A volume name as Kubernetes' external-provisioner makes them: `pvc-<uuid>` (a random,
/// version 4 UUID here), which the driver uses verbatim as the volume id.
pub fn pvc_name(random: u128) -> String {
    const VERSION_MASK: u128 = 0xF << 76;
    const VERSION_4: u128 = 0x4 << 76;
    const VARIANT_MASK: u128 = 0xC << 60;
    const VARIANT_RFC: u128 = 0x8 << 60;
    let bits = (random & !VERSION_MASK & !VARIANT_MASK) | VERSION_4 | VARIANT_RFC;
    let hex = format!("{bits:032x}");
    format!(
        "pvc-{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_double_and_data_fits() {
        let s = Sizes::new(1 << 30, FsKind::Ext4).unwrap();
        assert_eq!(s.grown, 2 << 30);
        assert_eq!(s.data, DATA_BYTES);
        let small = Sizes::new(32 * MIB, FsKind::Ext4).unwrap();
        assert_eq!(small.data, 8 * MIB);
    }

    #[test]
    fn sizes_below_the_filesystem_minimum_or_too_large_are_refused() {
        let err = Sizes::new(200 * MIB, FsKind::Xfs).unwrap_err();
        assert!(
            err.contains("xfs needs at least") && err.contains("300 MiB"),
            "{err}"
        );
        assert!(Sizes::new(200 * MIB, FsKind::Ext4).is_ok());
        assert!(
            Sizes::new(1 << 62, FsKind::Ext4)
                .unwrap_err()
                .contains("too large")
        );
        assert!(Sizes::new((1 << 62) - MIB, FsKind::Ext4).is_ok());
    }

    #[test]
    fn keep_adds_exactly_one_step_before_shutdown() {
        let plain = plan(false);
        let kept = plan(true);
        assert_eq!(kept.len(), plain.len() + 1);
        assert!(!plain.contains(&Step::KeepVolume));
        assert_eq!(kept[kept.len() - 2], Step::KeepVolume);
        assert_eq!(plain.first(), Some(&Step::StartSimulator));
        assert_eq!(plain.last(), Some(&Step::Shutdown));
    }

    #[test]
    fn labels_are_unique() {
        let mut labels: Vec<_> = Step::ALL.iter().map(|s| s.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Step::ALL.len());
        assert!(Step::label_width() >= "NodeUnpublishVolume (filesystem)".len());
    }

    #[test]
    fn pvc_names_are_what_external_provisioner_makes() {
        for random in [0u128, u128::MAX, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef] {
            let name = pvc_name(random);
            assert!(driver::naming::is_pvc_name(&name), "{name}");
            assert_eq!(driver::naming::volume_id_for_name(&name), name);
            assert_eq!(&name[18..19], "4", "{name}");
        }
        assert_ne!(pvc_name(1), pvc_name(2));
    }
}
