//! Real NVMe/TCP exports through the Linux nvmet configfs tree.
//!
//! An exported disk becomes a subsystem named by its NQN (any host allowed)
//! with namespace 1 backed by the disk's file, linked into a TCP port whose
//! id is the TCP port number. The namespace's identifiers are written before it is
//! enabled (else nvmet draws a new uuid each time). The root path is injectable so the exact tree
//! can be checked against a temporary directory.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::state::NamespaceIds;

/// Where the kernel's nvmet configfs tree lives.
pub const DEFAULT_NVMET_ROOT: &str = "/sys/kernel/config/nvmet";

/// `statfs` magic of configfs.
const CONFIGFS_MAGIC: u64 = 0x6265_6570;

/// How directories are removed. In configfs `rmdir` removes an item with its
/// attribute files; a plain directory tree (tests) needs a recursive removal
/// to behave the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirRemoval {
    Rmdir,
    Recursive,
}

/// Writes nvmet configuration under `root`.
#[derive(Debug, Clone)]
pub struct NvmetExporter {
    root: PathBuf,
    address: IpAddr,
    removal: DirRemoval,
}

impl NvmetExporter {
    /// An exporter for `root`, choosing [`DirRemoval`] by the filesystem
    /// `root` is on.
    pub fn new(root: impl Into<PathBuf>, address: IpAddr) -> io::Result<Self> {
        let root = root.into();
        let stat = rustix::fs::statfs(&root)?;
        // The width of f_type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let on_configfs = stat.f_type as u64 == CONFIGFS_MAGIC;
        let removal = if on_configfs {
            DirRemoval::Rmdir
        } else {
            DirRemoval::Recursive
        };
        Ok(Self::with_removal(root, address, removal))
    }

    pub fn with_removal(root: impl Into<PathBuf>, address: IpAddr, removal: DirRemoval) -> Self {
        Self {
            root: root.into(),
            address,
            removal,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn subsystem_dir(&self, nqn: &str) -> PathBuf {
        self.root.join("subsystems").join(nqn)
    }

    fn namespace_dir(&self, nqn: &str) -> PathBuf {
        self.subsystem_dir(nqn).join("namespaces").join("1")
    }

    fn port_dir(&self, port: u16) -> PathBuf {
        self.root.join("ports").join(port.to_string())
    }

    /// Creates the subsystem, its namespace with identifiers `ids` and the port link. A
    /// leftover subsystem of the same name (e.g. after a crash) is replaced.
    pub fn export(
        &self,
        nqn: &str,
        port: u16,
        device_path: &Path,
        ids: &NamespaceIds,
    ) -> io::Result<()> {
        if self.subsystem_dir(nqn).exists() {
            self.unexport(nqn, port)?;
        }
        let result = self.try_export(nqn, port, device_path, ids);
        if result.is_err() {
            // Leave nothing half-made behind; the original error matters more.
            let _ = self.unexport(nqn, port);
        }
        result
    }

    fn try_export(
        &self,
        nqn: &str,
        port: u16,
        device_path: &Path,
        ids: &NamespaceIds,
    ) -> io::Result<()> {
        let subsystem = self.subsystem_dir(nqn);
        fs::create_dir(&subsystem)?;
        write_attr(&subsystem, "attr_allow_any_host", "1")?;
        let namespace = self.namespace_dir(nqn);
        fs::create_dir_all(&namespace)?;
        write_attr(&namespace, "device_path", &device_path.to_string_lossy())?;
        // File-backed namespaces on tmpfs cannot use O_DIRECT.
        write_attr(&namespace, "buffered_io", "1")?;
        write_attr(&namespace, "device_uuid", &ids.uuid.to_string())?;
        write_attr(&namespace, "device_nguid", &ids.nguid.to_string())?;
        write_attr(&namespace, "enable", "1")?;

        let port_dir = self.port_dir(port);
        if !port_dir.exists() {
            fs::create_dir_all(&port_dir)?;
            write_attr(&port_dir, "addr_trtype", "tcp")?;
            let family = if self.address.is_ipv4() {
                "ipv4"
            } else {
                "ipv6"
            };
            write_attr(&port_dir, "addr_adrfam", family)?;
            write_attr(&port_dir, "addr_traddr", &self.address.to_string())?;
            write_attr(&port_dir, "addr_trsvcid", &port.to_string())?;
        }
        let links = port_dir.join("subsystems");
        fs::create_dir_all(&links)?;
        std::os::unix::fs::symlink(&subsystem, links.join(nqn))
    }

    /// Removes the port link, the namespace and the subsystem; removes the
    /// port too once no subsystem uses it. Missing pieces are not errors.
    pub fn unexport(&self, nqn: &str, port: u16) -> io::Result<()> {
        let port_dir = self.port_dir(port);
        ignore_missing(fs::remove_file(port_dir.join("subsystems").join(nqn)))?;
        let namespace = self.namespace_dir(nqn);
        if namespace.exists() {
            write_attr(&namespace, "enable", "0")?;
            self.remove_dir(&namespace)?;
        }
        let subsystem = self.subsystem_dir(nqn);
        if subsystem.exists() {
            self.remove_dir(&subsystem)?;
        }
        let links = port_dir.join("subsystems");
        let port_unused = match fs::read_dir(&links) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => port_dir.exists(),
            Err(e) => return Err(e),
        };
        if port_unused {
            self.remove_dir(&port_dir)?;
        }
        Ok(())
    }

    /// Tells hosts the namespace changed size (after a grow).
    pub fn revalidate(&self, nqn: &str) -> io::Result<()> {
        write_attr(&self.namespace_dir(nqn), "revalidate_size", "1")
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        match self.removal {
            DirRemoval::Rmdir => ignore_missing(fs::remove_dir(dir)),
            DirRemoval::Recursive => ignore_missing(fs::remove_dir_all(dir)),
        }
    }
}

fn write_attr(dir: &Path, name: &str, value: &str) -> io::Result<()> {
    let path = dir.join(name);
    fs::write(&path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: PathBuf) -> String {
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn ids() -> NamespaceIds {
        NamespaceIds {
            uuid: "3f1c2a9e-7b4d-4e21-9a53-0c6d8e2f1b47".parse().unwrap(),
            nguid: "a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90".parse().unwrap(),
        }
    }

    /// A temp tree with the directories the kernel provides in configfs.
    fn exporter(root: &Path) -> NvmetExporter {
        fs::create_dir_all(root.join("subsystems")).unwrap();
        fs::create_dir_all(root.join("ports")).unwrap();
        // A plain directory is not configfs: detection must pick recursive removal.
        let exporter = NvmetExporter::new(root, "10.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(exporter.removal, DirRemoval::Recursive);
        exporter
    }

    #[test]
    fn export_builds_the_nvmet_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let nvmet = exporter(root);
        nvmet
            .export(
                "nqn.2000-02.com.mikrotik:pvc-1",
                4420,
                Path::new("/data/pvc-1.img"),
                &ids(),
            )
            .unwrap();

        let subsystem = root.join("subsystems/nqn.2000-02.com.mikrotik:pvc-1");
        assert_eq!(read(subsystem.join("attr_allow_any_host")), "1");
        let ns = subsystem.join("namespaces/1");
        assert_eq!(read(ns.join("device_path")), "/data/pvc-1.img");
        assert_eq!(read(ns.join("buffered_io")), "1");
        // Written before `enable`, which is when nvmet would draw a uuid of its own.
        assert_eq!(
            read(ns.join("device_uuid")),
            "3f1c2a9e-7b4d-4e21-9a53-0c6d8e2f1b47"
        );
        assert_eq!(
            read(ns.join("device_nguid")),
            "a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90"
        );
        assert_eq!(read(ns.join("enable")), "1");
        let port = root.join("ports/4420");
        assert_eq!(read(port.join("addr_trtype")), "tcp");
        assert_eq!(read(port.join("addr_adrfam")), "ipv4");
        assert_eq!(read(port.join("addr_traddr")), "10.0.0.5");
        assert_eq!(read(port.join("addr_trsvcid")), "4420");
        let link = port.join("subsystems/nqn.2000-02.com.mikrotik:pvc-1");
        assert_eq!(fs::read_link(link).unwrap(), subsystem);
    }

    #[test]
    fn unexport_tears_down_and_keeps_shared_ports() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let nvmet = exporter(root);
        nvmet
            .export("a", 4420, Path::new("/a.img"), &ids())
            .unwrap();
        nvmet
            .export("b", 4420, Path::new("/b.img"), &ids())
            .unwrap();

        nvmet.unexport("a", 4420).unwrap();
        assert!(!root.join("subsystems/a").exists());
        assert!(!root.join("ports/4420/subsystems/a").exists());
        assert!(root.join("ports/4420").exists(), "b still uses the port");

        nvmet.unexport("b", 4420).unwrap();
        assert!(!root.join("ports/4420").exists());
        // Idempotent.
        nvmet.unexport("b", 4420).unwrap();
    }

    #[test]
    fn export_replaces_a_leftover_subsystem() {
        let dir = tempfile::tempdir().unwrap();
        let nvmet = exporter(dir.path());
        nvmet
            .export("a", 4420, Path::new("/old.img"), &ids())
            .unwrap();
        nvmet
            .export("a", 4420, Path::new("/new.img"), &ids())
            .unwrap();
        assert_eq!(
            read(dir.path().join("subsystems/a/namespaces/1/device_path")),
            "/new.img"
        );
    }

    #[test]
    fn revalidate_writes_the_attribute() {
        let dir = tempfile::tempdir().unwrap();
        let nvmet = exporter(dir.path());
        nvmet
            .export("a", 4420, Path::new("/a.img"), &ids())
            .unwrap();
        nvmet.revalidate("a").unwrap();
        assert_eq!(
            read(dir.path().join("subsystems/a/namespaces/1/revalidate_size")),
            "1"
        );
        assert!(nvmet.revalidate("missing").is_err());
    }

    #[test]
    fn ipv6_ports_say_so() {
        let dir = tempfile::tempdir().unwrap();
        exporter(dir.path());
        let nvmet =
            NvmetExporter::with_removal(dir.path(), "::1".parse().unwrap(), DirRemoval::Recursive);
        nvmet
            .export("a", 4421, Path::new("/a.img"), &ids())
            .unwrap();
        assert_eq!(read(dir.path().join("ports/4421/addr_adrfam")), "ipv6");
        assert_eq!(read(dir.path().join("ports/4421/addr_traddr")), "::1");
    }

    #[test]
    fn failed_export_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let nvmet = exporter(dir.path());
        // `subsystems` is a file, so the subsystem directory cannot be made.
        fs::remove_dir(dir.path().join("subsystems")).unwrap();
        fs::write(dir.path().join("subsystems"), "").unwrap();
        assert!(
            nvmet
                .export("a", 4420, Path::new("/a.img"), &ids())
                .is_err()
        );
        assert!(!dir.path().join("ports/4420").exists());
    }
}
