//! Real NVMe/TCP exports through the Linux nvmet configfs tree.
//!
//! An exported disk becomes a subsystem named by its NQN with namespace 1 backed by the
//! disk's file, linked into a TCP port whose id is the TCP port number. It admits any host,
//! or, when the disk lists hosts (`nvme-tcp-server-allow-host-name`), only those: each is a
//! `hosts/<nqn>` entry linked into the subsystem's `allowed_hosts`, with
//! `attr_allow_any_host=0`. The kernel checks the list when a host connects; controllers
//! already connected stay (until their keep-alive lapses or they reconnect). The namespace's identifiers are written before it is
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

    fn host_dir(&self, host: &str) -> PathBuf {
        self.root.join("hosts").join(host)
    }

    /// Admits only `hosts` to the subsystem (any host when empty). The kernel refuses links
    /// while any host is allowed, and `attr_allow_any_host=1` while links exist, hence the
    /// order; a host entry no subsystem links to any more is removed.
    pub fn allow_hosts(&self, nqn: &str, hosts: &[String]) -> io::Result<()> {
        let subsystem = self.subsystem_dir(nqn);
        let links = subsystem.join("allowed_hosts");
        if let Some(bad) = hosts
            .iter()
            .find(|h| h.is_empty() || h.contains('/') || h.starts_with('.'))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a host NQN: {bad:?}"),
            ));
        }
        if !hosts.is_empty() {
            write_attr(&subsystem, "attr_allow_any_host", "0")?;
            fs::create_dir_all(&links)?;
            for host in hosts {
                let entry = self.host_dir(host);
                if !entry.exists() {
                    fs::create_dir_all(&entry)?;
                }
                if fs::symlink_metadata(links.join(host)).is_err() {
                    std::os::unix::fs::symlink(&entry, links.join(host))?;
                }
            }
        }
        let mut dropped = Vec::new();
        for link in fs::read_dir(&links).into_iter().flatten() {
            let name = link?.file_name().to_string_lossy().into_owned();
            if !hosts.contains(&name) {
                fs::remove_file(links.join(&name))?;
                dropped.push(name);
            }
        }
        if hosts.is_empty() {
            write_attr(&subsystem, "attr_allow_any_host", "1")?;
        }
        for host in dropped {
            self.remove_host_if_unused(&host)?;
        }
        Ok(())
    }

    fn remove_host_if_unused(&self, host: &str) -> io::Result<()> {
        let linked = fs::read_dir(self.root.join("subsystems"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|s| fs::symlink_metadata(s.path().join("allowed_hosts").join(host)).is_ok());
        if linked {
            return Ok(());
        }
        self.remove_dir(&self.host_dir(host))
    }

    /// Creates the subsystem (admitting `hosts`, any when empty), its namespace with
    /// identifiers `ids` and the port link. A leftover subsystem of the same name (e.g. after
    /// a crash) is replaced.
    pub fn export(
        &self,
        nqn: &str,
        port: u16,
        device_path: &Path,
        ids: &NamespaceIds,
        hosts: &[String],
    ) -> io::Result<()> {
        if self.subsystem_dir(nqn).exists() {
            self.unexport(nqn, port)?;
        }
        let result = self.try_export(nqn, port, device_path, ids, hosts);
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
        hosts: &[String],
    ) -> io::Result<()> {
        let subsystem = self.subsystem_dir(nqn);
        fs::create_dir(&subsystem)?;
        write_attr(&subsystem, "attr_allow_any_host", "1")?;
        self.allow_hosts(nqn, hosts)?;
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
            // configfs removes a subsystem only once nothing is linked into it.
            self.allow_hosts(nqn, &[])?;
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
                &[],
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
            .export("a", 4420, Path::new("/a.img"), &ids(), &[])
            .unwrap();
        nvmet
            .export("b", 4420, Path::new("/b.img"), &ids(), &[])
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
            .export("a", 4420, Path::new("/old.img"), &ids(), &[])
            .unwrap();
        nvmet
            .export("a", 4420, Path::new("/new.img"), &ids(), &[])
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
            .export("a", 4420, Path::new("/a.img"), &ids(), &[])
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
            .export("a", 4421, Path::new("/a.img"), &ids(), &[])
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
                .export("a", 4420, Path::new("/a.img"), &ids(), &[])
                .is_err()
        );
        assert!(!dir.path().join("ports/4420").exists());
    }

    #[test]
    fn listed_hosts_are_the_only_ones_admitted_and_their_entries_go_with_the_last_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let nvmet = exporter(root);
        let (a, b) = (
            "nqn.2014-08.org.nvmexpress:uuid:a",
            "nqn.2014-08.org.nvmexpress:uuid:b",
        );
        nvmet
            .export("s1", 4420, Path::new("/s1.img"), &ids(), &[a.into()])
            .unwrap();
        nvmet
            .export(
                "s2",
                4420,
                Path::new("/s2.img"),
                &ids(),
                &[a.into(), b.into()],
            )
            .unwrap();
        let links = |s: &str| -> Vec<String> {
            let mut names: Vec<String> =
                fs::read_dir(root.join(format!("subsystems/{s}/allowed_hosts")))
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
            names.sort();
            names
        };
        assert_eq!(read(root.join("subsystems/s1/attr_allow_any_host")), "0");
        assert_eq!(links("s1"), vec![a.to_owned()]);
        assert_eq!(links("s2"), vec![a.to_owned(), b.to_owned()]);
        assert_eq!(
            fs::read_link(root.join("subsystems/s1/allowed_hosts").join(a)).unwrap(),
            root.join("hosts").join(a)
        );

        // s1 moves from a to b: a's entry stays while s2 still links it.
        nvmet.allow_hosts("s1", &[b.into()]).unwrap();
        assert_eq!(links("s1"), vec![b.to_owned()]);
        assert!(root.join("hosts").join(a).exists());
        nvmet.allow_hosts("s2", &[b.into()]).unwrap();
        assert!(!root.join("hosts").join(a).exists(), "no subsystem links a");

        // Empty admits anyone again; the unexport leaves no host behind.
        nvmet.allow_hosts("s1", &[]).unwrap();
        assert_eq!(read(root.join("subsystems/s1/attr_allow_any_host")), "1");
        assert!(links("s1").is_empty());
        nvmet.unexport("s2", 4420).unwrap();
        assert!(!root.join("hosts").join(b).exists());
        assert!(nvmet.allow_hosts("s1", &["../x".into()]).is_err());
    }
}
