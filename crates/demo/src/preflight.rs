//! Before anything starts: is this host able to run the demo, and which fabric will carry
//! the volumes. Facts are gathered in one place; the judgements on them are pure.

use std::ffi::OsStr;
use std::path::Path;

use crate::plan::FsKind;
use crate::render::{Fabric, LoopReason};

/// Where the kernel shows nvmet (what the simulator needs to be a real NVMe/TCP target).
pub const NVMET_ROOT: &str = "/sys/kernel/config/nvmet";
/// The NVMe-oF initiator's control device (what the node needs to connect).
pub const NVME_FABRICS: &str = "/dev/nvme-fabrics";

/// The capability ext4 needs to grow while mounted (EXT4_IOC_RESIZE_FS).
const CAP_SYS_RESOURCE: u32 = 24;

/// What was found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub root: bool,
    pub missing_tools: Vec<&'static str>,
    pub nvmet_target: bool,
    pub nvme_initiator: bool,
    /// CAP_SYS_RESOURCE is effective (containers may drop it even for root).
    pub sys_resource: bool,
}

impl HostFacts {
    /// Both ends of NVMe/TCP are in the kernel, so the simulator may try nvmet.
    pub fn nvme_tcp_possible(&self) -> bool {
        self.nvmet_target && self.nvme_initiator
    }

    /// `--nvmet` for the simulator: `auto` where the node could connect to what it exports;
    /// otherwise `off`, since an export nobody can reach only adds kernel state to clean up.
    pub fn sim_nvmet_mode(&self) -> &'static str {
        if self.nvme_tcp_possible() {
            "auto"
        } else {
            "off"
        }
    }

    /// Why the node cannot grow this filesystem here, if it cannot: ext4 grows online only
    /// with CAP_SYS_RESOURCE, and the node (a child of this process) has what this has.
    pub fn growth_blocked(&self, fs: FsKind) -> Option<&'static str> {
        (fs == FsKind::Ext4 && !self.sys_resource).then_some(
            "ext4 grows online only with CAP_SYS_RESOURCE, which this process lacks (a \
             container that drops it?); --fs xfs grows without it",
        )
    }

    /// The fabric, once the simulator has said whether nvmet is on.
    pub fn fabric(&self, sim_nvmet_on: bool, port: u16) -> Fabric {
        match (self.nvmet_target, self.nvme_initiator) {
            (true, true) if sim_nvmet_on => Fabric::NvmeTcp { port },
            (true, true) => Fabric::Loop(LoopReason::SimulatorDeclined),
            (false, true) => Fabric::Loop(LoopReason::NoTarget),
            (true, false) => Fabric::Loop(LoopReason::NoInitiator),
            (false, false) => Fabric::Loop(LoopReason::NoTargetNoInitiator),
        }
    }
}

/// The programs the node runs in this demo. `losetup` only matters for the loop fabric, but
/// whether that is used is known only once the simulator runs, so it is always asked for
/// when NVMe/TCP is not certain.
pub fn tools_needed(fs: FsKind, nvme_tcp_possible: bool) -> Vec<&'static str> {
    let mut tools = vec!["blkid"];
    tools.extend(fs.tools());
    if !nvme_tcp_possible {
        tools.push("losetup");
    }
    tools
}

fn package_of(tool: &str) -> &'static str {
    match tool {
        "mkfs.ext4" | "resize2fs" => "e2fsprogs",
        "mkfs.xfs" | "xfs_growfs" => "xfsprogs",
        _ => "util-linux",
    }
}

/// Why the demo cannot run here, as the user should read it; `None` when it can.
pub fn refusal(facts: &HostFacts) -> Option<String> {
    if !facts.root {
        return Some(
            "rds-csi demo needs root. Like the node plugin on a Kubernetes node, it mounts \
             filesystems, attaches volumes as loop devices or NVMe/TCP connections, and makes \
             device nodes, all of which the kernel allows only to root.\n\
             Run it as root, for example: sudo rds-csi demo\n\
             (from a checkout: cargo build --release && sudo target/release/rds-csi demo)"
                .to_owned(),
        );
    }
    if facts.missing_tools.is_empty() {
        return None;
    }
    let mut packages: Vec<&str> = Vec::new();
    for package in facts.missing_tools.iter().map(|t| package_of(t)) {
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    Some(format!(
        "rds-csi demo needs programs the node plugin runs, and these are not in PATH: {}.\n\
         Install {} (the package names on Debian, Ubuntu and Fedora), or put them in PATH.",
        facts.missing_tools.join(", "),
        packages.join(" and ")
    ))
}

/// Whether capability `bit` is in the `CapEff:` line of `/proc/<pid>/status` text.
fn has_effective_capability(status: &str, bit: u32) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << bit) != 0)
}

fn in_path(tool: &str, path: Option<&OsStr>) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(tool))
        .any(|file| {
            std::fs::metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Looks at this host.
pub fn gather(fs: FsKind) -> HostFacts {
    let nvmet_target = Path::new(NVMET_ROOT).is_dir();
    let nvme_initiator = Path::new(NVME_FABRICS).exists();
    let path = std::env::var_os("PATH");
    let missing_tools = tools_needed(fs, nvmet_target && nvme_initiator)
        .into_iter()
        .filter(|tool| !in_path(tool, path.as_deref()))
        .collect();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    HostFacts {
        root: rustix::process::geteuid().is_root(),
        missing_tools,
        nvmet_target,
        nvme_initiator,
        sys_resource: has_effective_capability(&status, CAP_SYS_RESOURCE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(root: bool, missing: &[&'static str], target: bool, initiator: bool) -> HostFacts {
        HostFacts {
            root,
            missing_tools: missing.to_vec(),
            nvmet_target: target,
            nvme_initiator: initiator,
            sys_resource: true,
        }
    }

    #[test]
    fn ext4_growth_needs_cap_sys_resource_and_xfs_does_not() {
        let mut host = facts(true, &[], false, false);
        assert_eq!(host.growth_blocked(FsKind::Ext4), None);
        host.sys_resource = false;
        assert!(
            host.growth_blocked(FsKind::Ext4)
                .unwrap()
                .contains("CAP_SYS_RESOURCE")
        );
        assert_eq!(host.growth_blocked(FsKind::Xfs), None);
    }

    #[test]
    fn capabilities_are_read_from_the_effective_set() {
        let status = "Name:\tx\nCapPrm:\t000001ffffffffff\nCapEff:\t000001fffeffffff\n";
        assert!(!has_effective_capability(status, CAP_SYS_RESOURCE));
        assert!(has_effective_capability(status, 21), "CAP_SYS_ADMIN");
        let full = "CapEff:\t000001ffffffffff\n";
        assert!(has_effective_capability(full, CAP_SYS_RESOURCE));
        assert!(!has_effective_capability("", CAP_SYS_RESOURCE));
    }

    #[test]
    fn non_root_is_refused_first_with_the_reasons() {
        let text = refusal(&facts(false, &["mkfs.xfs"], true, true)).unwrap();
        assert!(text.starts_with("rds-csi demo needs root"), "{text}");
        for why in ["mounts", "loop devices", "device nodes", "sudo"] {
            assert!(text.contains(why), "{why} missing: {text}");
        }
    }

    #[test]
    fn missing_tools_name_their_packages() {
        let text = refusal(&facts(
            true,
            &["mkfs.xfs", "xfs_growfs", "losetup"],
            false,
            false,
        ))
        .unwrap();
        assert!(text.contains("mkfs.xfs, xfs_growfs, losetup"), "{text}");
        assert!(text.contains("xfsprogs and util-linux"), "{text}");
        assert_eq!(refusal(&facts(true, &[], false, false)), None);
    }

    #[test]
    fn the_fabric_follows_the_kernel_and_the_simulator() {
        let both = facts(true, &[], true, true);
        assert_eq!(both.sim_nvmet_mode(), "auto");
        assert_eq!(both.fabric(true, 4430), Fabric::NvmeTcp { port: 4430 });
        assert_eq!(
            both.fabric(false, 4430),
            Fabric::Loop(LoopReason::SimulatorDeclined)
        );
        let target_only = facts(true, &[], true, false);
        assert_eq!(target_only.sim_nvmet_mode(), "off");
        assert_eq!(
            target_only.fabric(false, 1),
            Fabric::Loop(LoopReason::NoInitiator)
        );
        assert_eq!(
            facts(true, &[], false, true).fabric(false, 1),
            Fabric::Loop(LoopReason::NoTarget)
        );
        assert_eq!(
            facts(true, &[], false, false).fabric(false, 1),
            Fabric::Loop(LoopReason::NoTargetNoInitiator)
        );
    }

    #[test]
    fn tools_depend_on_the_filesystem_and_the_fabric() {
        assert_eq!(
            tools_needed(FsKind::Ext4, true),
            ["blkid", "mkfs.ext4", "resize2fs"]
        );
        assert_eq!(
            tools_needed(FsKind::Xfs, false),
            ["blkid", "mkfs.xfs", "xfs_growfs", "losetup"]
        );
    }

    #[test]
    fn tools_are_found_only_as_executables_in_path() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("mkfs.demo");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        assert!(!in_path("mkfs.demo", Some(&path)), "not executable yet");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(in_path("mkfs.demo", Some(&path)));
        assert!(!in_path("mkfs.other", Some(&path)));
        assert!(!in_path("mkfs.demo", None));
    }
}
