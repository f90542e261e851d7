//! A fake NVMe host kernel for tests (feature `test-fixtures`): a sysfs tree laid out like the
//! real one (device directories, class symlinks, subsystem links) in a scratch directory, device
//! nodes in a scratch `/dev`, and a [`Kernel`] that creates and deletes controllers there the
//! way Linux does. Creating device nodes needs root, as on a real node.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use mounts::DeviceNumber;

use crate::kernel::Kernel;
use crate::options::{FabricsOptions, Target};
use crate::prefix::ManagedController;
use crate::sysfs::{NodeName, Sysfs, parse_node_name};

/// The major number Linux gives NVMe namespaces (blkext).
pub const NVME_MAJOR: u32 = 259;

/// Writes an attribute whole (temporary file, then rename): a real sysfs attribute is never
/// seen half-written, and tests that race a scan against the fixture must not see one either.
fn write(path: &Path, text: &str) {
    let fail = |e: io::Error| panic!("fixture write {}: {e}", path.display());
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, text).unwrap_or_else(fail);
    std::fs::rename(&temporary, path).unwrap_or_else(fail);
}

fn link(target: &str, at: &Path) {
    symlink(target, at).unwrap_or_else(|e| panic!("fixture symlink {}: {e}", at.display()));
}

/// A sysfs tree under a directory, built object by object.
#[derive(Debug, Clone)]
pub struct FakeSysfs {
    root: PathBuf,
}

impl FakeSysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        for dir in [
            "class/nvme",
            "class/nvme-subsystem",
            "block",
            "devices/virtual/nvme-subsystem",
            "devices/virtual/nvme-fabrics/ctl",
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sysfs(&self) -> Sysfs {
        Sysfs::new(&self.root)
    }

    fn subsystem_dir(&self, subsystem: u32) -> PathBuf {
        self.root.join(format!(
            "devices/virtual/nvme-subsystem/nvme-subsys{subsystem}"
        ))
    }

    fn controller_dir(&self, controller: u32) -> PathBuf {
        self.root
            .join(format!("devices/virtual/nvme-fabrics/ctl/nvme{controller}"))
    }

    pub fn add_subsystem(&self, subsystem: u32, nqn: &str) {
        let dir = self.subsystem_dir(subsystem);
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir.join("subsysnqn"), &format!("{nqn}\n"));
        link(
            &format!("../../devices/virtual/nvme-subsystem/nvme-subsys{subsystem}"),
            &self
                .root
                .join(format!("class/nvme-subsystem/nvme-subsys{subsystem}")),
        );
    }

    /// A controller linked into `subsystem`; `address` as the kernel prints it
    /// (`traddr=…,trsvcid=…`).
    pub fn add_controller(
        &self,
        controller: u32,
        subsystem: u32,
        nqn: &str,
        state: &str,
        address: &str,
    ) {
        let dir = self.controller_dir(controller);
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir.join("subsysnqn"), &format!("{nqn}\n"));
        write(&dir.join("state"), &format!("{state}\n"));
        write(&dir.join("transport"), "tcp\n");
        write(&dir.join("address"), &format!("{address}\n"));
        write(&dir.join("cntlid"), &format!("{}\n", controller + 1));
        write(&dir.join("delete_controller"), "");
        write(&dir.join("rescan_controller"), "");
        link(
            &format!("../../devices/virtual/nvme-fabrics/ctl/nvme{controller}"),
            &self.root.join(format!("class/nvme/nvme{controller}")),
        );
        if self.subsystem_dir(subsystem).exists() {
            link(
                &format!("../../nvme-fabrics/ctl/nvme{controller}"),
                &self
                    .subsystem_dir(subsystem)
                    .join(format!("nvme{controller}")),
            );
        }
    }

    fn add_disk(dir: &Path, nsid: u32, device: Option<DeviceNumber>, size_bytes: u64) {
        std::fs::create_dir_all(dir.join("holders")).unwrap();
        if let Some(device) = device {
            write(&dir.join("dev"), &format!("{device}\n"));
        }
        write(&dir.join("size"), &format!("{}\n", size_bytes / 512));
        write(&dir.join("nsid"), &format!("{nsid}\n"));
    }

    /// A multipath namespace head `nvme{subsystem}n{head}` (the visible block device).
    pub fn add_head(
        &self,
        subsystem: u32,
        head: u32,
        nsid: u32,
        device: DeviceNumber,
        size_bytes: u64,
    ) {
        let name = format!("nvme{subsystem}n{head}");
        Self::add_disk(
            &self.subsystem_dir(subsystem).join(&name),
            nsid,
            Some(device),
            size_bytes,
        );
        link(
            &format!("../devices/virtual/nvme-subsystem/nvme-subsys{subsystem}/{name}"),
            &self.root.join("block").join(&name),
        );
    }

    /// A hidden multipath path `nvme{subsystem}c{controller}n{head}` under the controller.
    pub fn add_path(&self, subsystem: u32, controller: u32, head: u32, nsid: u32, size_bytes: u64) {
        let name = format!("nvme{subsystem}c{controller}n{head}");
        Self::add_disk(
            &self.controller_dir(controller).join(name),
            nsid,
            None,
            size_bytes,
        );
    }

    /// A namespace owned by the controller itself (no native multipath): `nvme{controller}n{head}`.
    pub fn add_private_namespace(
        &self,
        controller: u32,
        head: u32,
        nsid: u32,
        device: DeviceNumber,
        size_bytes: u64,
    ) {
        let name = format!("nvme{controller}n{head}");
        Self::add_disk(
            &self.controller_dir(controller).join(&name),
            nsid,
            Some(device),
            size_bytes,
        );
        link(
            &format!("../devices/virtual/nvme-fabrics/ctl/nvme{controller}/{name}"),
            &self.root.join("block").join(&name),
        );
    }

    pub fn set_state(&self, controller: u32, state: &str) {
        write(
            &self.controller_dir(controller).join("state"),
            &format!("{state}\n"),
        );
    }

    /// Sets the identifiers a namespace head shows (`uuid`, `nguid`), as a target gives them.
    pub fn set_head_ids(&self, subsystem: u32, head: u32, uuid: &str, nguid: &str) {
        let dir = self
            .subsystem_dir(subsystem)
            .join(format!("nvme{subsystem}n{head}"));
        write(&dir.join("uuid"), &format!("{uuid}\n"));
        write(&dir.join("nguid"), &format!("{nguid}\n"));
        write(&dir.join("wwid"), &format!("uuid.{uuid}\n"));
    }

    /// Marks a namespace head as held by a stacked device (device-mapper and the like).
    pub fn add_holder(&self, subsystem: u32, head: u32, holder: &str) {
        let dir = self
            .subsystem_dir(subsystem)
            .join(format!("nvme{subsystem}n{head}/holders"));
        std::fs::create_dir_all(dir.join(holder)).unwrap();
    }

    /// Reads an attribute of a controller (for example what was written to `delete_controller`).
    pub fn controller_attribute(&self, controller: u32, attribute: &str) -> Option<String> {
        std::fs::read_to_string(self.controller_dir(controller).join(attribute)).ok()
    }

    pub fn has_controller(&self, controller: u32) -> bool {
        self.root
            .join(format!("class/nvme/nvme{controller}"))
            .exists()
    }

    /// Removes a controller the way the kernel does when it is deleted.
    pub fn remove_controller(&self, controller: u32) {
        let name = format!("nvme{controller}");
        for entry in std::fs::read_dir(self.root.join("devices/virtual/nvme-subsystem")).unwrap() {
            let _ = std::fs::remove_file(entry.unwrap().path().join(&name));
        }
        let _ = std::fs::remove_file(self.root.join("class/nvme").join(&name));
        let dir = self.controller_dir(controller);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if parse_node_name(&entry.file_name().to_string_lossy()).is_some() {
                let _ = std::fs::remove_file(self.root.join("block").join(entry.file_name()));
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Removes one namespace head (and its hidden paths) the way the kernel does when the
    /// target's namespace went away, leaving the controllers.
    pub fn remove_head(&self, subsystem: u32, head: u32) {
        let name = format!("nvme{subsystem}n{head}");
        let _ = std::fs::remove_file(self.root.join("block").join(&name));
        let _ = std::fs::remove_dir_all(self.subsystem_dir(subsystem).join(&name));
        let ctl = self.root.join("devices/virtual/nvme-fabrics/ctl");
        for controller in std::fs::read_dir(ctl).into_iter().flatten().flatten() {
            for entry in std::fs::read_dir(controller.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path_name = entry.file_name().to_string_lossy().into_owned();
                let is_path_of_head = path_name
                    .strip_prefix(&format!("nvme{subsystem}c"))
                    .and_then(|rest| rest.split_once('n'))
                    .is_some_and(|(c, h)| c.parse::<u32>().is_ok() && h == head.to_string());
                if is_path_of_head {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    /// Removes a subsystem with its heads; returns the heads' names.
    pub fn remove_subsystem(&self, subsystem: u32) -> Vec<String> {
        let dir = self.subsystem_dir(subsystem);
        let mut heads = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if matches!(parse_node_name(&name), Some(NodeName::Namespace { .. })) {
                let _ = std::fs::remove_file(self.root.join("block").join(&name));
                heads.push(name);
            }
        }
        let _ = std::fs::remove_file(
            self.root
                .join(format!("class/nvme-subsystem/nvme-subsys{subsystem}")),
        );
        let _ = std::fs::remove_dir_all(dir);
        heads
    }

    /// Sets the size of every namespace disk (heads and paths) of `subsystem`.
    fn set_subsystem_size(&self, subsystem: u32, size_bytes: u64) {
        let sectors = format!("{}\n", size_bytes / 512);
        let mut disks = vec![];
        for parent in [
            self.subsystem_dir(subsystem),
            self.root.join("devices/virtual/nvme-fabrics/ctl"),
        ] {
            for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                disks.push(entry.path());
                for inner in std::fs::read_dir(entry.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    disks.push(inner.path());
                }
            }
        }
        for disk in disks {
            let name = disk.file_name().unwrap().to_string_lossy().into_owned();
            let belongs = match parse_node_name(&name) {
                Some(NodeName::Namespace { instance, .. }) => {
                    instance == subsystem && disk.starts_with(self.subsystem_dir(subsystem))
                }
                Some(NodeName::Path { subsystem: s, .. }) => s == subsystem,
                _ => false,
            };
            if belongs {
                write(&disk.join("size"), &sectors);
            }
        }
    }

    fn subsystem_of(&self, nqn: &str) -> Option<u32> {
        let topology = self.sysfs().scan_nqn(nqn).ok()?;
        let name = &topology.subsystems.first()?.name;
        name.strip_prefix("nvme-subsys")?.parse().ok()
    }
}

/// How a fake target answers a connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetBehavior {
    /// Accept, exporting one namespace; it shows up in sysfs after `namespace_delay`.
    Export {
        nsid: u32,
        size_bytes: u64,
        namespace_delay: Duration,
    },
    /// Fail the connect with this errno.
    Refuse(rustix::io::Errno),
}

#[derive(Debug, Default)]
struct State {
    targets: HashMap<(String, Target), TargetBehavior>,
    next_controller: u32,
    next_subsystem: u32,
    next_minor: u32,
    connects: Vec<String>,
    deletes: Vec<String>,
    pending_sizes: HashMap<String, u64>,
}

/// A [`Kernel`] over a [`FakeSysfs`] and a scratch `/dev`.
#[derive(Debug)]
pub struct FakeKernel {
    sysfs: FakeSysfs,
    dev_root: PathBuf,
    state: Mutex<State>,
}

impl FakeKernel {
    /// Lays out `<root>/sys` and `<root>/dev`. Controller numbers start at 1 and subsystem
    /// numbers at 3 so that names never line up by accident.
    pub fn new(root: &Path) -> Self {
        let dev_root = root.join("dev");
        std::fs::create_dir_all(&dev_root).unwrap();
        Self {
            sysfs: FakeSysfs::new(root.join("sys")),
            dev_root,
            state: Mutex::new(State {
                next_controller: 1,
                next_subsystem: 3,
                next_minor: 100,
                ..State::default()
            }),
        }
    }

    pub fn fake_sysfs(&self) -> &FakeSysfs {
        &self.sysfs
    }

    pub fn sysfs(&self) -> Sysfs {
        self.sysfs.sysfs()
    }

    pub fn dev_root(&self) -> &Path {
        &self.dev_root
    }

    pub fn set_target(&self, nqn: &str, target: Target, behavior: TargetBehavior) {
        self.lock()
            .targets
            .insert((nqn.to_owned(), target), behavior);
    }

    /// Exports `nqn` at `target` with namespace 1 of `size_bytes`, visible at once.
    pub fn export(&self, nqn: &str, target: Target, size_bytes: u64) {
        self.set_target(
            nqn,
            target,
            TargetBehavior::Export {
                nsid: 1,
                size_bytes,
                namespace_delay: Duration::ZERO,
            },
        );
    }

    /// The options strings received, in order.
    pub fn connects(&self) -> Vec<String> {
        self.lock().connects.clone()
    }

    /// The controllers deleted, in order.
    pub fn deletes(&self) -> Vec<String> {
        self.lock().deletes.clone()
    }

    /// The target grows the namespace of `nqn`; the host sees it after a rescan.
    pub fn grow(&self, nqn: &str, size_bytes: u64) {
        self.lock().pending_sizes.insert(nqn.to_owned(), size_bytes);
    }

    /// Makes a device node the way devtmpfs would.
    pub fn make_device_node(&self, name: &str, device: DeviceNumber) -> io::Result<()> {
        make_block_node(&self.dev_root, name, device)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Makes block device node `dev_root/name` for `device` (needs root).
pub fn make_block_node(dev_root: &Path, name: &str, device: DeviceNumber) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dev_root.join(name),
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        device.to_raw(),
    )
    .map_err(Into::into)
}

fn errno(code: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(code.raw_os_error())
}

impl Kernel for FakeKernel {
    fn connect(&self, options: &FabricsOptions) -> io::Result<String> {
        use rustix::io::Errno;
        let mut state = self.lock();
        state.connects.push(options.as_str().to_owned());
        let fields: HashMap<&str, &str> = options
            .as_str()
            .split(',')
            .map(|pair| pair.split_once('=').ok_or_else(|| errno(Errno::INVAL)))
            .collect::<io::Result<_>>()?;
        let field = |key: &str| fields.get(key).copied().ok_or_else(|| errno(Errno::INVAL));
        let (nqn, traddr, trsvcid) = (field("nqn")?, field("traddr")?, field("trsvcid")?);
        field("hostnqn")?;
        let target = Target::new(
            traddr.parse().map_err(|_| errno(Errno::INVAL))?,
            trsvcid.parse().map_err(|_| errno(Errno::INVAL))?,
        );
        let behavior = match state.targets.get(&(nqn.to_owned(), target)) {
            Some(behavior) => behavior.clone(),
            None if state.targets.keys().any(|(_, t)| *t == target) => {
                return Err(errno(Errno::IO));
            }
            None => return Err(errno(Errno::CONNREFUSED)),
        };
        let (nsid, size_bytes, namespace_delay) = match behavior {
            TargetBehavior::Refuse(code) => return Err(errno(code)),
            TargetBehavior::Export {
                nsid,
                size_bytes,
                namespace_delay,
            } => (nsid, size_bytes, namespace_delay),
        };
        let existing = self.sysfs.sysfs().scan_nqn(nqn).map_err(io::Error::other)?;
        if existing
            .view(nqn)
            .controllers_at(&target)
            .any(|c| !c.state.is_going_away())
        {
            return Err(errno(Errno::ALREADY));
        }
        let subsystem = match self.sysfs.subsystem_of(nqn) {
            Some(subsystem) => subsystem,
            None => {
                let subsystem = state.next_subsystem;
                state.next_subsystem += 1;
                self.sysfs.add_subsystem(subsystem, nqn);
                subsystem
            }
        };
        let controller = state.next_controller;
        state.next_controller += 1;
        self.sysfs.add_controller(
            controller,
            subsystem,
            nqn,
            "live",
            &format!("traddr={traddr},trsvcid={trsvcid},src_addr=192.0.2.1"),
        );
        let head =
            existing
                .view(nqn)
                .namespace(nsid)
                .and_then(|ns| match parse_node_name(&ns.name) {
                    Some(NodeName::Namespace { head, .. }) => Some(head),
                    _ => None,
                });
        let (head, new_device) = match head {
            Some(head) => (head, None),
            None => {
                let minor = state.next_minor;
                state.next_minor += 1;
                (1, Some(DeviceNumber::new(NVME_MAJOR, minor)))
            }
        };
        let sysfs = self.sysfs.clone();
        let dev_root = self.dev_root.clone();
        let appear = move || -> io::Result<()> {
            sysfs.add_path(subsystem, controller, head, nsid, size_bytes);
            if let Some(device) = new_device {
                // Like the kernel's device_add: the sysfs object first, then the node.
                sysfs.add_head(subsystem, head, nsid, device, size_bytes);
                make_block_node(&dev_root, &format!("nvme{subsystem}n{head}"), device)?;
            }
            Ok(())
        };
        if namespace_delay.is_zero() {
            appear()?;
        } else {
            std::thread::spawn(move || {
                std::thread::sleep(namespace_delay);
                // The test may be over and its directory gone; nothing to report then.
                let _ = appear();
            });
        }
        Ok(format!("instance={controller},cntlid={}\n", controller + 1))
    }

    fn delete_controller(&self, controller: &ManagedController) -> io::Result<()> {
        let mut state = self.lock();
        let instance = match parse_node_name(controller.name()) {
            Some(NodeName::Controller { instance }) => instance,
            _ => return Err(errno(rustix::io::Errno::INVAL)),
        };
        if !self.sysfs.has_controller(instance) {
            return Err(errno(rustix::io::Errno::NOENT));
        }
        state.deletes.push(controller.name().to_owned());
        std::fs::write(controller.dir().join("delete_controller"), "1")?;
        let subsystem = self.sysfs.subsystem_of(controller.nqn().as_str());
        self.sysfs.remove_controller(instance);
        // Like the kernel: a subsystem goes with its last controller.
        if let Some(subsystem) = subsystem {
            let topology = self
                .sysfs
                .sysfs()
                .scan_nqn(controller.nqn().as_str())
                .map_err(io::Error::other)?;
            if topology
                .subsystems
                .iter()
                .all(|s| s.controller_names.is_empty())
            {
                for head in self.sysfs.remove_subsystem(subsystem) {
                    let _ = std::fs::remove_file(self.dev_root.join(head));
                }
            }
        }
        Ok(())
    }

    fn rescan_controller(&self, controller: &ManagedController) -> io::Result<()> {
        std::fs::write(controller.dir().join("rescan_controller"), "1")?;
        let nqn = controller.nqn().as_str();
        if let Some(size) = self.lock().pending_sizes.remove(nqn)
            && let Some(subsystem) = self.sysfs.subsystem_of(nqn)
        {
            self.sysfs.set_subsystem_size(subsystem, size);
        }
        Ok(())
    }
}
