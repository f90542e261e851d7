//! Which NQNs this driver may connect and disconnect.
//!
//! Nodes can boot from NVMe-oF (a diskless node's root or `/var` behind a foreign NQN); a
//! cleanup that disconnects by pattern or by mistake takes the node down. So the ability to
//! delete a controller is a value: [`ManagedController`] can only be obtained from
//! [`ManagedPrefix::authorize_controller`], which re-reads the controller's NQN from sysfs and
//! checks it against the prefix, and the kernel interface deletes nothing else.

use std::path::{Path, PathBuf};

use crate::identity::validate_nqn;
use crate::sysfs::{NodeName, Sysfs, parse_node_name};
use crate::{Error, Result};

/// The NVMe standard's own naming authority (UUID host NQNs, the discovery NQN); a prefix in it
/// would cover other software's subsystems.
const STANDARD_AUTHORITY: &str = "nqn.2014-08.org.nvmexpress";

/// The NQN prefix of the volumes this driver manages.
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

    pub fn covers(&self, nqn: &str) -> bool {
        nqn.starts_with(&self.0) && nqn.len() > self.0.len()
    }

    /// Authorizes an NQN, or refuses with [`Error::ForeignNqn`].
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

    #[test]
    fn specific_prefixes_are_accepted() {
        for prefix in [
            "nqn.2000-02.com.mikrotik:pvc-",
            "nqn.2026-01.io.example:",
            "pvc-",
        ] {
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
    fn authorization_is_by_prefix_and_never_the_bare_prefix() {
        let prefix = ManagedPrefix::new("nqn.2000-02.com.mikrotik:pvc-").unwrap();
        assert_eq!(
            prefix
                .authorize("nqn.2000-02.com.mikrotik:pvc-1")
                .unwrap()
                .as_str(),
            "nqn.2000-02.com.mikrotik:pvc-1"
        );
        for foreign in [
            "nqn.2014-08.org.nvmexpress:boot-root",
            "nqn.2000-02.com.mikrotik:pvc-",
            "nqn.2000-02.com.mikrotik:other",
            "NQN.2000-02.com.mikrotik:pvc-1",
        ] {
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
        let prefix = ManagedPrefix::new("nqn.2000-02.com.mikrotik:pvc-").unwrap();
        let dir = root.path().join("class/nvme/nvme0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("subsysnqn"),
            "nqn.2014-08.org.nvmexpress:boot-root\n",
        )
        .unwrap();
        assert!(matches!(
            prefix.authorize_controller(&sysfs, "nvme0"),
            Err(Error::ForeignNqn { .. })
        ));
        std::fs::write(dir.join("subsysnqn"), "nqn.2000-02.com.mikrotik:pvc-9\n").unwrap();
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
