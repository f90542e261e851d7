//! A model of the NVMe objects the kernel shows in sysfs, read from an injectable root.
//!
//! Layout (root = `/sys` on a real node):
//! - `class/nvme-subsystem/nvme-subsysS/`: `subsysnqn`, one symlink `nvmeC` per controller, and,
//!   with native multipath, the namespace heads `nvmeSnH/` (the visible block devices).
//! - `class/nvme/nvmeC/`: `subsysnqn`, `state`, `transport`, `address`, `cntlid`,
//!   `delete_controller`, `rescan_controller`; with multipath the hidden per-path disks
//!   `nvmeScCnH/`, without it the namespaces `nvmeCnH/` themselves.
//! - each namespace directory: `dev` (`major:minor`), `size` (512-byte sectors), `nsid`,
//!   `holders/`, and the identifiers `uuid`, `nguid`, `eui`, `wwid` where the target set them.
//!
//! The numbers in these names are independent instance counters: controller `nvme1` can serve
//! namespace `nvme2n2` through hidden path `nvme2c1n2`. Nothing here derives one name from
//! another; namespaces are found through the subsystem that owns them, by NQN and NSID.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use mounts::DeviceNumber;

use crate::namespace_ids::{ID_ATTRIBUTES, NamespaceIds};
use crate::options::Target;
use crate::{Error, Result};

/// Kernel objects' names under `nvme…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeName {
    /// `nvmeC`
    Controller { instance: u32 },
    /// `nvmeXnH`: a namespace head (X = subsystem) or, without multipath, a namespace of
    /// controller X.
    Namespace { instance: u32, head: u32 },
    /// `nvmeScCnH`: a hidden path of head `nvmeSnH` through controller `nvmeC`.
    Path {
        subsystem: u32,
        controller: u32,
        head: u32,
    },
}

/// Reads a name like `nvme2c1n3`; partitions (`nvme0n1p1`) and anything else give `None`.
pub fn parse_node_name(name: &str) -> Option<NodeName> {
    fn number(text: &str) -> Option<(u32, &str)> {
        let end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        if end == 0 || (end > 1 && text.starts_with('0')) {
            return None;
        }
        Some((text[..end].parse().ok()?, &text[end..]))
    }
    let (first, rest) = number(name.strip_prefix("nvme")?)?;
    if rest.is_empty() {
        return Some(NodeName::Controller { instance: first });
    }
    if let Some(rest) = rest.strip_prefix('n') {
        let (head, tail) = number(rest)?;
        return tail.is_empty().then_some(NodeName::Namespace {
            instance: first,
            head,
        });
    }
    let (controller, rest) = number(rest.strip_prefix('c')?)?;
    let (head, tail) = number(rest.strip_prefix('n')?)?;
    tail.is_empty().then_some(NodeName::Path {
        subsystem: first,
        controller,
        head,
    })
}

/// A controller's state as the kernel names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerState {
    New,
    Live,
    Resetting,
    Connecting,
    Deleting,
    DeletingNoIo,
    Dead,
    Other(String),
}

impl ControllerState {
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "new" => Self::New,
            "live" => Self::Live,
            "resetting" => Self::Resetting,
            "connecting" => Self::Connecting,
            "deleting" => Self::Deleting,
            "deleting (no IO)" => Self::DeletingNoIo,
            "dead" => Self::Dead,
            other => Self::Other(other.to_owned()),
        }
    }

    /// A short name for metrics: the kernel's word (`deleting-no-io` for `deleting (no IO)`),
    /// `other` for any state this crate does not know.
    pub fn label(&self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Live => "live",
            Self::Resetting => "resetting",
            Self::Connecting => "connecting",
            Self::Deleting => "deleting",
            Self::DeletingNoIo => "deleting-no-io",
            Self::Dead => "dead",
            Self::Other(_) => "other",
        }
    }

    /// Every [`label`](Self::label), so that a metric can show each, zeros included.
    pub const LABELS: [&'static str; 8] = [
        "new",
        "live",
        "resetting",
        "connecting",
        "deleting",
        "deleting-no-io",
        "dead",
        "other",
    ];

    /// On its way to live by itself (a reconnect or reset in progress).
    pub fn is_settling(&self) -> bool {
        matches!(self, Self::New | Self::Resetting | Self::Connecting)
    }

    /// On its way out; the kernel will remove it.
    pub fn is_going_away(&self) -> bool {
        matches!(self, Self::Deleting | Self::DeletingNoIo)
    }
}

/// The `address` attribute: `traddr=10.0.0.1,trsvcid=4420,src_addr=10.0.0.2`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControllerAddress {
    pairs: Vec<(String, String)>,
}

impl ControllerAddress {
    pub fn parse(text: &str) -> Self {
        let pairs = text
            .trim()
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
            .collect();
        Self { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The target address, with an IPv6 scope (`%eth0`) removed.
    pub fn traddr(&self) -> Option<IpAddr> {
        let text = self.get("traddr")?;
        text.split('%').next()?.parse().ok()
    }

    pub fn trsvcid(&self) -> Option<u16> {
        self.get("trsvcid")?.parse().ok()
    }

    /// Compares addresses as addresses (so `fd00::1` equals `fd00:0::1`), not as text.
    pub fn matches(&self, target: &Target) -> bool {
        self.traddr() == Some(target.address) && self.trsvcid() == Some(target.port)
    }
}

/// A namespace block device (a multipath head, or a plain namespace without multipath).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Kernel name, also the name under `/dev`.
    pub name: String,
    pub nsid: Option<u32>,
    pub device: DeviceNumber,
    pub size_bytes: u64,
    /// Block devices stacked on this one (device-mapper, md): a sign it is in use.
    pub holders: Vec<String>,
    /// What tells this namespace from a new one for the same disk (see [`NamespaceIds`]).
    pub ids: NamespaceIds,
}

impl Namespace {
    pub fn device_path(&self, dev_root: &Path) -> PathBuf {
        dev_root.join(&self.name)
    }
}

/// An NVMe controller (one connection to a target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub name: String,
    pub subsystem_nqn: String,
    pub state: ControllerState,
    pub transport: Option<String>,
    pub address: Option<ControllerAddress>,
    pub cntlid: Option<u16>,
    /// Namespaces this controller owns directly (only without native multipath).
    pub namespaces: Vec<Namespace>,
    /// Hidden multipath paths (`nvmeScCnH`) through this controller.
    pub paths: Vec<String>,
}

impl Controller {
    pub fn is_at(&self, target: &Target) -> bool {
        self.address
            .as_ref()
            .is_some_and(|address| address.matches(target))
    }
}

/// An NVMe subsystem as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsystem {
    pub name: String,
    pub nqn: String,
    /// Names of the controllers linked into the subsystem.
    pub controller_names: Vec<String>,
    /// Multipath namespace heads.
    pub heads: Vec<Namespace>,
}

/// Everything about NVMe-oF the host shows (or the part of it a filter selected).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub subsystems: Vec<Subsystem>,
    pub controllers: Vec<Controller>,
}

/// The objects belonging to one NQN.
#[derive(Debug, Clone)]
pub struct NqnView<'a> {
    pub nqn: &'a str,
    pub subsystems: Vec<&'a Subsystem>,
    pub controllers: Vec<&'a Controller>,
}

impl<'a> Topology {
    pub fn view(&'a self, nqn: &'a str) -> NqnView<'a> {
        NqnView {
            nqn,
            subsystems: self.subsystems.iter().filter(|s| s.nqn == nqn).collect(),
            controllers: self
                .controllers
                .iter()
                .filter(|c| c.subsystem_nqn == nqn)
                .collect(),
        }
    }
}

impl<'a> NqnView<'a> {
    /// Every namespace of the NQN: multipath heads and controllers' own namespaces.
    pub fn namespaces(&self) -> impl Iterator<Item = &'a Namespace> + '_ {
        self.subsystems
            .iter()
            .flat_map(|s| s.heads.iter())
            .chain(self.controllers.iter().flat_map(|c| c.namespaces.iter()))
    }

    /// The namespace with this NSID, if the kernel shows it.
    pub fn namespace(&self, nsid: u32) -> Option<&'a Namespace> {
        self.namespaces().find(|ns| ns.nsid == Some(nsid))
    }

    pub fn controllers_at(&self, target: &Target) -> impl Iterator<Item = &'a Controller> + '_ {
        let target = *target;
        self.controllers
            .iter()
            .copied()
            .filter(move |c| c.is_at(&target))
    }

    pub fn is_empty(&self) -> bool {
        self.subsystems.is_empty() && self.controllers.is_empty()
    }

    /// A one-line description for logs and timeout errors.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "no subsystem or controller".into();
        }
        let controllers: Vec<String> = self
            .controllers
            .iter()
            .map(|c| {
                let address = c
                    .address
                    .as_ref()
                    .and_then(|a| a.get("traddr"))
                    .unwrap_or("?");
                format!("{} {:?} at {address}", c.name, c.state)
            })
            .collect();
        let namespaces: Vec<String> = self
            .namespaces()
            .map(|ns| format!("{} nsid {:?}", ns.name, ns.nsid))
            .collect();
        format!(
            "subsystems [{}], controllers [{}], namespaces [{}]",
            self.subsystems
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            controllers.join(", "),
            namespaces.join(", ")
        )
    }
}

/// Whether a failed sysfs read means the object vanished (deleted while we looked).
fn vanished(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
        || error.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error())
}

/// Reads an attribute; `Ok(None)` when it (or its object) does not exist.
fn read_attribute(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim_end_matches('\n').to_owned())),
        Err(error) if vanished(&error) => Ok(None),
        Err(error) => Err(Error::sysfs("read", path, error)),
    }
}

/// Names in a directory; empty when the directory does not exist.
fn list(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if vanished(&error) => return Ok(Vec::new()),
        Err(error) => return Err(Error::sysfs("list", dir, error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.push(entry.file_name().to_string_lossy().into_owned()),
            Err(error) if vanished(&error) => {}
            Err(error) => return Err(Error::sysfs("list", dir, error)),
        }
    }
    names.sort();
    Ok(names)
}

/// Reads sysfs below an injectable root.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::new("/sys")
    }
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `class/nvme/<name>`: a controller's directory.
    pub fn controller_dir(&self, name: &str) -> PathBuf {
        self.root.join("class/nvme").join(name)
    }

    fn subsystem_dir(&self, name: &str) -> PathBuf {
        self.root.join("class/nvme-subsystem").join(name)
    }

    /// The whole NVMe topology.
    pub fn scan(&self) -> Result<Topology> {
        self.scan_where(|_| true)
    }

    /// The objects of one NQN only (the others are skipped after reading their NQN).
    pub fn scan_nqn(&self, nqn: &str) -> Result<Topology> {
        self.scan_where(|candidate| candidate == nqn)
    }

    /// The objects whose NQN `wanted` accepts (the others are skipped after reading their NQN).
    pub fn scan_where(&self, wanted: impl Fn(&str) -> bool) -> Result<Topology> {
        let mut topology = Topology::default();
        for name in list(&self.root.join("class/nvme-subsystem"))? {
            if !name.starts_with("nvme-subsys") {
                continue;
            }
            let dir = self.subsystem_dir(&name);
            let Some(nqn) = read_attribute(&dir.join("subsysnqn"))? else {
                continue; // removed while we looked
            };
            if wanted(&nqn) {
                topology
                    .subsystems
                    .push(self.read_subsystem(name, nqn, &dir)?);
            }
        }
        for name in list(&self.root.join("class/nvme"))? {
            if !matches!(parse_node_name(&name), Some(NodeName::Controller { .. })) {
                continue;
            }
            let dir = self.controller_dir(&name);
            let Some(nqn) = read_attribute(&dir.join("subsysnqn"))? else {
                continue;
            };
            if wanted(&nqn)
                && let Some(controller) = self.read_controller(name, nqn, &dir)?
            {
                topology.controllers.push(controller);
            }
        }
        Ok(topology)
    }

    fn read_subsystem(&self, name: String, nqn: String, dir: &Path) -> Result<Subsystem> {
        let mut subsystem = Subsystem {
            name,
            nqn,
            controller_names: Vec::new(),
            heads: Vec::new(),
        };
        for entry in list(dir)? {
            match parse_node_name(&entry) {
                Some(NodeName::Controller { .. }) => subsystem.controller_names.push(entry),
                Some(NodeName::Namespace { .. }) => {
                    if let Some(namespace) = read_namespace(&dir.join(&entry), entry)? {
                        subsystem.heads.push(namespace);
                    }
                }
                _ => {}
            }
        }
        Ok(subsystem)
    }

    fn read_controller(&self, name: String, nqn: String, dir: &Path) -> Result<Option<Controller>> {
        let Some(state) = read_attribute(&dir.join("state"))? else {
            return Ok(None);
        };
        let cntlid = match read_attribute(&dir.join("cntlid"))? {
            Some(text) => Some(text.trim().parse().map_err(|_| Error::SysfsFormat {
                path: dir.join("cntlid"),
                reason: format!("not a controller ID: {text:?}"),
            })?),
            None => None,
        };
        let mut controller = Controller {
            name,
            subsystem_nqn: nqn,
            state: ControllerState::parse(&state),
            transport: read_attribute(&dir.join("transport"))?,
            address: read_attribute(&dir.join("address"))?
                .map(|text| ControllerAddress::parse(&text)),
            cntlid,
            namespaces: Vec::new(),
            paths: Vec::new(),
        };
        for entry in list(dir)? {
            match parse_node_name(&entry) {
                Some(NodeName::Path { .. }) => controller.paths.push(entry),
                Some(NodeName::Namespace { .. }) => {
                    if let Some(namespace) = read_namespace(&dir.join(&entry), entry)? {
                        controller.namespaces.push(namespace);
                    }
                }
                _ => {}
            }
        }
        Ok(Some(controller))
    }
}

fn read_namespace(dir: &Path, name: String) -> Result<Option<Namespace>> {
    let format_error = |file: &str, reason: String| Error::SysfsFormat {
        path: dir.join(file),
        reason,
    };
    let (Some(dev), Some(size)) = (
        read_attribute(&dir.join("dev"))?,
        read_attribute(&dir.join("size"))?,
    ) else {
        return Ok(None);
    };
    let device = dev
        .parse()
        .map_err(|e: mounts::ParseDeviceNumberError| format_error("dev", e.to_string()))?;
    let sectors: u64 = size
        .trim()
        .parse()
        .map_err(|_| format_error("size", format!("not a sector count: {size:?}")))?;
    let nsid = match read_attribute(&dir.join("nsid"))? {
        Some(text) => Some(
            text.trim()
                .parse()
                .map_err(|_| format_error("nsid", format!("not a number: {text:?}")))?,
        ),
        None => None,
    };
    let mut texts = Vec::with_capacity(ID_ATTRIBUTES.len());
    for attribute in ID_ATTRIBUTES {
        texts.push((attribute, read_attribute(&dir.join(attribute))?));
    }
    let ids = NamespaceIds::from_attributes(|wanted| {
        texts
            .iter()
            .find(|(attribute, _)| *attribute == wanted)
            .and_then(|(_, text)| text.as_deref())
    });
    Ok(Some(Namespace {
        name,
        nsid,
        device,
        size_bytes: sectors.saturating_mul(512),
        holders: list(&dir.join("holders"))?,
        ids,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_listed_label() {
        for text in [
            "new",
            "live",
            "resetting",
            "connecting",
            "deleting",
            "deleting (no IO)",
            "dead",
            "sleeping",
        ] {
            let label = ControllerState::parse(text).label();
            assert!(
                ControllerState::LABELS.contains(&label),
                "{text} -> {label}"
            );
        }
        assert_eq!(
            ControllerState::parse("deleting (no IO)").label(),
            "deleting-no-io"
        );
        assert_eq!(ControllerState::parse("sleeping").label(), "other");
    }

    #[test]
    fn node_names_are_told_apart_without_arithmetic() {
        assert_eq!(
            parse_node_name("nvme1"),
            Some(NodeName::Controller { instance: 1 })
        );
        assert_eq!(
            parse_node_name("nvme2n2"),
            Some(NodeName::Namespace {
                instance: 2,
                head: 2
            })
        );
        assert_eq!(
            parse_node_name("nvme2c1n2"),
            Some(NodeName::Path {
                subsystem: 2,
                controller: 1,
                head: 2
            })
        );
        for other in [
            "nvme",
            "nvme0n1p1",
            "nvme-subsys0",
            "nvme-fabrics",
            "nvmex",
            "nvme1n",
            "nvme01",
            "nvme1c2",
            "sda",
        ] {
            assert_eq!(parse_node_name(other), None, "{other}");
        }
    }

    #[test]
    fn namespace_identifiers_are_read_where_the_kernel_shows_them() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = crate::fixtures::FakeSysfs::new(dir.path());
        let nqn = "nqn.2000-02.com.mikrotik:pvc-1";
        sysfs.add_subsystem(3, nqn);
        sysfs.add_controller(1, 3, nqn, "live", "traddr=10.0.0.1,trsvcid=4420");
        sysfs.add_head(3, 1, 1, DeviceNumber::new(259, 4), 1 << 30);
        let head = |topology: &Topology| topology.subsystems[0].heads[0].ids.clone();
        // Identifiers the target left zero are hidden by the kernel: none here.
        assert!(head(&sysfs.sysfs().scan_nqn(nqn).unwrap()).is_empty());
        sysfs.set_head_ids(3, 1, "8F0C44E5-0B61-4F3A-9C1D-2A7B3E4D5F60", "0a1b-nguid");
        let ids = head(&sysfs.sysfs().scan_nqn(nqn).unwrap());
        assert_eq!(
            ids.uuid.as_deref(),
            Some("8f0c44e5-0b61-4f3a-9c1d-2a7b3e4d5f60")
        );
        assert_eq!(ids.nguid.as_deref(), Some("0a1b-nguid"));
        assert_eq!(
            ids.wwid.as_deref(),
            Some("uuid.8f0c44e5-0b61-4f3a-9c1d-2a7b3e4d5f60")
        );
        assert_eq!(ids.eui64, None);
    }

    #[test]
    fn states_parse_including_the_spaced_one() {
        assert_eq!(ControllerState::parse("live\n"), ControllerState::Live);
        assert_eq!(
            ControllerState::parse("deleting (no IO)"),
            ControllerState::DeletingNoIo
        );
        assert!(ControllerState::parse("connecting").is_settling());
        assert!(ControllerState::parse("resetting").is_settling());
        assert!(ControllerState::parse("deleting").is_going_away());
        assert!(!ControllerState::parse("dead").is_settling());
        assert_eq!(
            ControllerState::parse("weird"),
            ControllerState::Other("weird".into())
        );
    }

    #[test]
    fn addresses_parse_and_match_as_addresses() {
        let address = ControllerAddress::parse("traddr=10.0.0.1,trsvcid=4420,src_addr=10.0.0.9\n");
        assert_eq!(address.get("src_addr"), Some("10.0.0.9"));
        assert!(address.matches(&Target::new("10.0.0.1".parse().unwrap(), 4420)));
        assert!(!address.matches(&Target::new("10.0.0.1".parse().unwrap(), 4421)));
        assert!(!address.matches(&Target::new("10.0.0.2".parse().unwrap(), 4420)));

        let v6 = ControllerAddress::parse("traddr=fd00:0:0::1%eth0,trsvcid=4420");
        assert!(v6.matches(&Target::new("fd00::1".parse().unwrap(), 4420)));

        let broken = ControllerAddress::parse("garbage");
        assert_eq!(broken.traddr(), None);
        assert!(!broken.matches(&Target::new("10.0.0.1".parse().unwrap(), 4420)));
    }
}
