//! The typed view of what the driver needs from the device.

use crate::error::Error;
use crate::validate::{FilePath, ItemId, Nqn, Slot, check_comment, check_port};
use crate::version::RouterOsVersion;

/// The default NVMe/TCP listener port.
pub const DEFAULT_NVME_TCP_PORT: u16 = 4420;

/// Where a file disk's subsystem NQN comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NqnSource {
    /// `nvme-tcp-server-nqn` (RouterOS 7.21 and newer).
    ServerNqn,
    /// The slot name, which is the subsystem NQN before 7.21 (or when the field is unset).
    SlotName,
}

/// A file-backed `/disk` entry as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDisk {
    /// RouterOS internal id (`*1A`).
    pub id: String,
    pub slot: String,
    /// The backing file, canonical (no leading `/`), as in `/file` names.
    pub file_path: String,
    /// Exact size of the backing file in bytes.
    pub file_size: u64,
    pub nvme_tcp_export: bool,
    pub nvme_tcp_port: u16,
    /// The NVMe subsystem NQN hosts connect to.
    pub nqn: String,
    pub nqn_source: NqnSource,
    pub mount_filesystem: bool,
    pub comment: Option<String>,
    /// Who may connect to the export (`nvme-tcp-server-allow-host-name`; absent = any host).
    pub allowed_hosts: crate::access::AllowedHosts,
}

/// Whatever holds a slot: one of our kind (a file disk) or anything else (the pool, a RAID
/// member, an NVMe or iSCSI client disk), which the driver must never touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskItem {
    File(FileDisk),
    Other {
        id: String,
        slot: String,
        kind: String,
    },
}

impl DiskItem {
    pub fn id(&self) -> &str {
        match self {
            DiskItem::File(d) => &d.id,
            DiskItem::Other { id, .. } => id,
        }
    }

    pub fn slot(&self) -> &str {
        match self {
            DiskItem::File(d) => &d.slot,
            DiskItem::Other { slot, .. } => slot,
        }
    }

    pub fn as_file(&self) -> Option<&FileDisk> {
        match self {
            DiskItem::File(d) => Some(d),
            DiskItem::Other { .. } => None,
        }
    }
}

/// What one guarded add saw and did, in one round trip: the add runs only when no item holds
/// the slot and no file exists at the image path, so it never meets a duplicate or an existing
/// file, whatever the device would do with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddReport {
    /// Ids of the items holding the slot before the add.
    pub slot_before: Vec<String>,
    /// Ids of the files at the image path before the add.
    pub files_before: Vec<String>,
    /// The id the add returned: the disk this call created. `None` when it did not add.
    pub added: Option<String>,
    /// Every item holding the slot afterwards.
    pub slot_after: Vec<DiskItem>,
}

/// The outcome of [`crate::Client::create_file_disk`], judged from an [`AddReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// This call created the disk and the device reports what was asked.
    Created(FileDisk),
    /// This call created disk `id` (its image did not exist before), but the device reports
    /// something else; the reason lists the differences. The disk and its image are this
    /// call's to remove.
    CreatedMismatch { id: ItemId, reason: String },
    /// Nothing was added: these items hold the slot.
    SlotTaken(Vec<DiskItem>),
    /// Nothing was added: the slot was free, but a file exists at the image path.
    FileExists,
}

/// What the device holds for one volume: the items in its slot, the files named
/// `<slot>.img` under a directory, and the disks backed by any file of that name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeFacts {
    pub slot_items: Vec<DiskItem>,
    pub images: Vec<FileEntry>,
    pub image_users: Vec<ImageUser>,
}

/// A disk backed by a file: only what a "is this image used?" check needs, read strictly
/// (a disk whose id or file path cannot be read fails the whole reading, never hides a user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    pub id: String,
    pub slot: String,
    /// Canonical (no leading `/`).
    pub file_path: String,
}

/// What became of an image the driver asked to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRemoval {
    /// Removed, or already absent.
    Removed,
    /// A disk was backed by a file of its name when the removal ran: kept.
    InUse,
}

/// A `/file` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub id: String,
    /// Name without leading `/` (`storage-pool/pvc-x.img`).
    pub name: String,
    /// `.img file`, `directory`, ...
    pub kind: String,
    pub size: u64,
    pub last_modified: Option<String>,
}

/// The storage pool: the `/disk` entry mounted at the pool's mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub slot: String,
    pub mount_point: String,
    pub fs: String,
    /// Device size in bytes.
    pub size: u64,
    /// Free filesystem bytes.
    pub free: u64,
    pub mounted: bool,
    /// RAID state (`clean`, ...), when the pool is a RAID.
    pub state: Option<String>,
}

/// Version and identity of the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    pub version: RouterOsVersion,
    /// The version text as printed (`7.21.5 (stable)`).
    pub version_text: String,
    pub identity: String,
    pub board_name: Option<String>,
    pub architecture: Option<String>,
    pub uptime: Option<String>,
    pub cpu_count: Option<u64>,
    pub total_memory: Option<u64>,
    pub free_memory: Option<u64>,
}

/// What to create: an NVMe/TCP-exported file disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub slot: Slot,
    pub file_path: FilePath,
    /// Exact size in bytes (> 0).
    pub size: u64,
    /// NVMe/TCP listener port (1..=65535), usually [`DEFAULT_NVME_TCP_PORT`].
    pub port: u16,
    /// The NQN wanted; on RouterOS before 7.21 the slot name is used instead.
    pub nqn: Nqn,
    /// Free text stored with the disk.
    pub comment: Option<String>,
}

impl DiskSpec {
    /// Checks what the newtypes cannot: size, port and comment.
    pub fn validate(&self) -> Result<(), Error> {
        if self.size == 0 {
            return Err(Error::Invalid(
                "invalid size 0: must be at least 1 byte".into(),
            ));
        }
        check_port(self.port)?;
        if let Some(comment) = &self.comment {
            check_comment(comment)?;
        }
        Ok(())
    }
}

/// The parts of a create request a transport needs, after version decisions.
#[derive(Debug, Clone, Copy)]
pub struct CreateDisk<'a> {
    pub spec: &'a DiskSpec,
    /// Send `nvme-tcp-server-nqn` (7.21+); otherwise the device uses the slot as NQN.
    pub send_nqn: bool,
}

impl CreateDisk<'_> {
    /// The NQN the created disk must report.
    pub fn expected_nqn(&self) -> &str {
        if self.send_nqn {
            self.spec.nqn.as_str()
        } else {
            self.spec.slot.as_str()
        }
    }

    /// The disk a faithful device reports after this create (for test doubles of a
    /// [`crate::Transport`]).
    pub fn faithful_disk(&self, id: &str) -> FileDisk {
        FileDisk {
            id: id.to_owned(),
            slot: self.spec.slot.to_string(),
            file_path: self.spec.file_path.to_string(),
            file_size: self.spec.size,
            nvme_tcp_export: true,
            nvme_tcp_port: self.spec.port,
            nqn: self.expected_nqn().to_owned(),
            nqn_source: if self.send_nqn {
                NqnSource::ServerNqn
            } else {
                NqnSource::SlotName
            },
            mount_filesystem: false,
            comment: self.spec.comment.clone(),
            allowed_hosts: crate::access::AllowedHosts::Any,
        }
    }

    /// Compares a read-back disk with the request; the error lists every difference.
    pub fn verify(&self, disk: &FileDisk) -> Result<(), Error> {
        let spec = self.spec;
        let mut diffs = Vec::new();
        let mut check = |field: &str, wanted: String, got: String| {
            if wanted != got {
                diffs.push(format!("{field}: asked {wanted}, device has {got}"));
            }
        };
        check("slot", spec.slot.to_string(), disk.slot.clone());
        check(
            "file-path",
            spec.file_path.to_string(),
            disk.file_path.clone(),
        );
        check(
            "file-size",
            spec.size.to_string(),
            disk.file_size.to_string(),
        );
        check(
            "nvme-tcp-export",
            "true".into(),
            disk.nvme_tcp_export.to_string(),
        );
        check(
            "nvme-tcp-server-port",
            spec.port.to_string(),
            disk.nvme_tcp_port.to_string(),
        );
        check("nqn", self.expected_nqn().to_owned(), disk.nqn.clone());
        check(
            "mount-filesystem",
            "false".into(),
            disk.mount_filesystem.to_string(),
        );
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(Error::Protocol(format!(
                "disk {} read back differs from the request: {}",
                spec.slot,
                diffs.join("; ")
            )))
        }
    }
}

/// Checks a disk read back after growing it.
pub fn verify_grown(slot: &Slot, size: u64, disk: &FileDisk) -> Result<(), Error> {
    if disk.slot != slot.as_str() || disk.file_size != size {
        return Err(Error::Protocol(format!(
            "disk {slot} read back after grow: asked file-size {size}, device has {} (slot {})",
            disk.file_size, disk.slot
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DiskSpec {
        DiskSpec {
            slot: Slot::try_from("pvc-1").unwrap(),
            file_path: FilePath::try_from("storage-pool/pvc-1.img").unwrap(),
            size: 1 << 30,
            port: 4420,
            nqn: Nqn::try_from("nqn.2000-02.com.mikrotik:pvc-1").unwrap(),
            comment: None,
        }
    }

    #[test]
    fn spec_validation() {
        assert!(spec().validate().is_ok());
        assert!(DiskSpec { size: 0, ..spec() }.validate().is_err());
        assert!(DiskSpec { port: 0, ..spec() }.validate().is_err());
        assert!(
            DiskSpec {
                comment: Some("x".repeat(5000)),
                ..spec()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn verify_accepts_a_faithful_read_back_and_lists_every_difference() {
        let s = spec();
        for send_nqn in [true, false] {
            let req = CreateDisk { spec: &s, send_nqn };
            assert!(req.verify(&req.faithful_disk("*1")).is_ok());
        }
        let req = CreateDisk {
            spec: &s,
            send_nqn: true,
        };
        let mut bad = req.faithful_disk("*1");
        bad.file_size -= 512;
        bad.nvme_tcp_export = false;
        bad.nvme_tcp_port = 4421;
        bad.nqn = "pvc-1".into();
        bad.mount_filesystem = true;
        bad.file_path = "other/pvc-1.img".into();
        bad.slot = "pvc-2".into();
        let Err(Error::Protocol(msg)) = req.verify(&bad) else {
            panic!("accepted")
        };
        for needle in [
            "slot",
            "file-path",
            "file-size: asked 1073741824, device has 1073741312",
            "nvme-tcp-export",
            "port",
            "nqn",
            "mount-filesystem",
        ] {
            assert!(msg.contains(needle), "{needle} missing in {msg}");
        }
    }

    #[test]
    fn pre_7_21_expects_the_slot_as_nqn() {
        let s = spec();
        let req = CreateDisk {
            spec: &s,
            send_nqn: false,
        };
        assert_eq!(req.expected_nqn(), "pvc-1");
        let mut d = req.faithful_disk("*1");
        d.nqn = s.nqn.to_string();
        assert!(req.verify(&d).is_err());
    }

    #[test]
    fn grow_verification() {
        let s = spec();
        let req = CreateDisk {
            spec: &s,
            send_nqn: true,
        };
        let d = req.faithful_disk("*1");
        assert!(verify_grown(&s.slot, 1 << 30, &d).is_ok());
        assert!(matches!(
            verify_grown(&s.slot, 2 << 30, &d),
            Err(Error::Protocol(_))
        ));
    }
}
