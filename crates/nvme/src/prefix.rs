//! Which NQNs this driver may connect and disconnect: `<prefix><volume id>`, where the volume
//! id has the shape the driver creates ([`crate::volume_id`]) and nothing follows it.
//!
//! Nodes can boot from NVMe-oF (a diskless node's root or `/var` behind a foreign NQN), often
//! exported by the very same RDS under the vendor's naming authority
//! (`nqn.2000-02.com.mikrotik:nixos-root`). A prefix alone covers that whole namespace, so the
//! volume id's shape is part of the check. A cleanup that disconnects by pattern or by mistake
//! takes the node down; so the ability to delete a controller is a value: [`ManagedController`]
//! can only be obtained from [`ManagedPrefix::authorize_controller`], which re-reads the
//! controller's NQN from sysfs and checks it, and the kernel interface deletes nothing else.

use std::path::{Path, PathBuf};

use crate::identity::validate_nqn;
use crate::sysfs::{NodeName, Sysfs, parse_node_name};
use crate::volume_id::is_managed_volume_id;
use crate::{Error, Result};

/// The NVMe standard's own naming authority (UUID host NQNs, the discovery NQN); a prefix in it
/// would cover other software's subsystems.
const STANDARD_AUTHORITY: &str = "nqn.2014-08.org.nvmexpress";

/// The NQN prefix of the volumes this driver manages, with its separator: a volume's NQN is
/// this prefix followed directly by the volume id (the node passes `<--nqn-prefix>:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPrefix(String);

impl ManagedPrefix {
    /// Accepts a prefix that names something specific: at least 4 characters; if in `nqn.`
    /// form, including the naming authority up to its `:`; never the NVMe standard's authority.
    pub fn new(prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        validate_nqn("managed NQN prefix", &prefix)?;
        let too_broad = |reason: &str| {
            Err(Error::invalid(
                "managed NQN prefix",
                format!("{prefix:?} {reason}"),
            ))
        };
        if prefix.len() < 4 {
            return too_broad("is too short to be specific");
        }
        if prefix.starts_with("nqn.") && !prefix.contains(':') {
            return too_broad("must include the naming authority and its ':'");
        }
        if prefix.starts_with(STANDARD_AUTHORITY) {
            return too_broad("lies in the NVMe standard's own naming authority");
        }
        Ok(Self(prefix))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True only for `<prefix><id>` with an id of the driver's own shape.
    pub fn covers(&self, nqn: &str) -> bool {
        nqn.strip_prefix(&self.0).is_some_and(is_managed_volume_id)
    }

    /// Authorizes an NQN of one of the driver's volumes, or refuses with [`Error::ForeignNqn`].
    pub fn authorize(&self, nqn: &str) -> Result<ManagedNqn> {
        if self.covers(nqn) {
            Ok(ManagedNqn(nqn.to_owned()))
        } else {
            Err(Error::ForeignNqn {
                nqn: nqn.to_owned(),
                prefix: self.0.clone(),
            })
        }
    }

    /// Reads controller `name`'s NQN from sysfs now and authorizes it. `Ok(None)` when the
    /// controller no longer exists.
    pub fn authorize_controller(
        &self,
        sysfs: &Sysfs,
        name: &str,
    ) -> Result<Option<ManagedController>> {
        if !matches!(parse_node_name(name), Some(NodeName::Controller { .. })) {
            return Err(Error::invalid("controller name", format!("{name:?}")));
        }
        let dir = sysfs.controller_dir(name);
        let path = dir.join("subsysnqn");
        let nqn = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::sysfs("read", path, error)),
        };
        Ok(Some(ManagedController {
            name: name.to_owned(),
            dir,
            nqn: self.authorize(&nqn)?,
        }))
    }
}

/// An NQN checked against the managed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedNqn(String);

impl ManagedNqn {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A controller whose NQN was just read from sysfs and found managed: the only thing the kernel
/// interface will delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedController {
    name: String,
    dir: PathBuf,
    nqn: ManagedNqn,
}

impl ManagedController {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its sysfs directory (`class/nvme/nvmeC`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn nqn(&self) -> &ManagedNqn {
        &self.nqn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "nqn.2000-02.com.mikrotik:";
    const PVC: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";

    #[test]
    fn specific_prefixes_are_accepted() {
        for prefix in [PREFIX, "nqn.2026-01.io.example:", "pvc-"] {
            assert!(ManagedPrefix::new(prefix).is_ok(), "{prefix}");
        }
    }

    #[test]
    fn broad_or_malformed_prefixes_are_refused() {
        for prefix in [
            "",
            "nqn",
            "nqn.",
            "nqn.2000-02.com.mikrotik",
            "nqn.2014-08.org.nvmexpress:",
            "nqn.2014-08.org.nvmexpress:uuid:",
            "pvc-,x",
            "pvc =",
        ] {
            assert!(ManagedPrefix::new(prefix).is_err(), "{prefix:?}");
        }
    }

    #[test]
    fn field_lesson_04_only_the_drivers_volume_ids_under_the_prefix_are_authorized() {
        let prefix = ManagedPrefix::new(PREFIX).unwrap();
        for ours in [
            format!("{PREFIX}{PVC}"),
            format!("{PREFIX}csi-0123456789abcdef0123456789abcdef"),
        ] {
            assert_eq!(prefix.authorize(&ours).unwrap().as_str(), ours);
        }
        for foreign in [
            // A diskless node's root, exported by the same RDS under the vendor's authority.
            "nqn.2000-02.com.mikrotik:nixos-root",
            // Under the prefix, but not an id this driver creates.
            "nqn.2000-02.com.mikrotik:pvc-1",
            "nqn.2000-02.com.mikrotik:pvc-",
            "nqn.2000-02.com.mikrotik:",
            &format!("{PREFIX}{PVC}:extra"),
            &format!("{PREFIX}{PVC}0"),
            &format!("{PREFIX}{}", PVC.to_uppercase()),
            "nqn.2014-08.org.nvmexpress:boot-root",
            &format!("NQN.2000-02.com.mikrotik:{PVC}"),
        ] {
            assert!(!prefix.covers(foreign), "{foreign}");
            assert!(
                matches!(prefix.authorize(foreign), Err(Error::ForeignNqn { .. })),
                "{foreign}"
            );
        }
    }

    #[test]
    fn controller_authorization_reads_sysfs_now() {
        let root = tempfile::tempdir().unwrap();
        let sysfs = Sysfs::new(root.path());
        let prefix = ManagedPrefix::new(PREFIX).unwrap();
        let dir = root.path().join("class/nvme/nvme0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("subsysnqn"),
            "nqn.2000-02.com.mikrotik:nixos-root\n",
        )
        .unwrap();
        assert!(matches!(
            prefix.authorize_controller(&sysfs, "nvme0"),
            Err(Error::ForeignNqn { .. })
        ));
        std::fs::write(dir.join("subsysnqn"), format!("{PREFIX}{PVC}\n")).unwrap();
        let managed = prefix
            .authorize_controller(&sysfs, "nvme0")
            .unwrap()
            .unwrap();
        assert_eq!(managed.name(), "nvme0");
        assert_eq!(managed.dir(), dir);
        assert!(
            prefix
                .authorize_controller(&sysfs, "nvme7")
                .unwrap()
                .is_none()
        );
        for bad in ["../nvme0", "nvme0n1", "nvme-subsys0", ""] {
            assert!(prefix.authorize_controller(&sysfs, bad).is_err(), "{bad:?}");
        }
    }
}
