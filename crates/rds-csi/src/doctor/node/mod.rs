//! Node checks: kernel NVMe/TCP support, host identity, filesystem tools, the kubelet directory
//! and its mount propagation, and the NVMe controllers already connected.
//!
//! [`gather`] (in `gather.rs`) reads [`NodeFacts`] below an injectable root (`/` on a node) with
//! a deadline per piece; [`checks`] and the `judge_*` functions (in `judge.rs`) turn facts into
//! verdicts without touching the machine. `namespaces.rs` records and compares the namespace
//! identifiers of the driver's volumes (`--save`, `--compare`), `state_file.rs` keeps them on disk.

mod gather;
mod judge;
pub mod namespaces;
pub mod state_file;
#[cfg(test)]
mod tests;

pub use gather::gather;
pub use judge::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mounts::mountinfo::MountEntry;
use mounts::tools::ToolPaths;
use nvme::ManagedPrefix;
use nvme::identity::{HostIdentity, IdentityPaths};
use nvme::sysfs::Controller;

/// The device through which the kernel creates NVMe-oF controllers.
pub const FABRICS_DEVICE: &str = "/dev/nvme-fabrics";
/// Modules the NVMe/TCP initiator needs, in the kernel's spelling.
pub const NVME_MODULES: [&str; 3] = ["nvme_tcp", "nvme_fabrics", "nvme_core"];
/// kubelet's default root directory.
pub const DEFAULT_KUBELET_DIR: &str = "/var/lib/kubelet";

/// Where the node's files are read: `/` on a node, a prepared tree in tests.
#[derive(Debug, Clone)]
pub struct NodeRoot(PathBuf);

impl NodeRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }

    /// `absolute` (as the node names it) below the root.
    pub fn join(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let path = absolute.as_ref();
        self.0.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// A resolved path below the root as the node names it.
    fn unroot(&self, path: &Path) -> PathBuf {
        let root = std::fs::canonicalize(&self.0).unwrap_or_else(|_| self.0.clone());
        Path::new("/").join(path.strip_prefix(&root).unwrap_or(path))
    }
}

/// What the node checks look at.
#[derive(Debug, Clone)]
pub struct NodeInputs {
    pub root: NodeRoot,
    pub tools: ToolPaths,
    pub kubelet_dir: PathBuf,
    /// The controller's NQN prefix; volume subsystems are `<prefix>:<volume id>`.
    pub nqn_prefix: String,
    /// Deadline of each piece of gathering.
    pub deadline: Duration,
}

/// Whether a kernel module can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleState {
    Loaded,
    BuiltIn,
    /// Installed for the running kernel but not loaded.
    Available,
    Missing,
}

/// What a path holds, for paths that must be of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Present,
    Missing,
    /// Something else is there, or it cannot be looked at.
    Wrong(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFacts {
    pub fabrics_device: Presence,
    /// `uname -r`, from `/proc/sys/kernel/osrelease`.
    pub release: Option<String>,
    /// `/lib/modules/<release>` and whether it exists.
    pub modules_dir: Option<(PathBuf, bool)>,
    pub modules: Vec<(&'static str, ModuleState)>,
}

#[derive(Debug, Clone)]
pub struct IdentityFacts {
    pub paths: IdentityPaths,
    /// What the node plugin would present (it resolves the identity the same way).
    pub resolved: Result<HostIdentity, String>,
}

/// How important a tool is to the node plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (or the default filesystem) works without it.
    Required,
    /// Only some volumes or operations need it.
    Optional,
}

/// One external tool and what answered its version query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolFact {
    pub name: String,
    pub need: Need,
    /// What fails without it.
    pub without: &'static str,
    pub package: &'static str,
    pub outcome: ToolOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOutcome {
    /// It ran; its version line (or first line of output).
    Version(String),
    NotFound,
    TimedOut(Duration),
    Broken(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletFacts {
    /// The directory as given.
    pub dir: PathBuf,
    pub found: KubeletDir,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletDir {
    Missing,
    NotADirectory,
    Unreadable(String),
    Directory {
        /// With symlinks resolved, as the mount table spells it.
        real: PathBuf,
        /// The mount it lies on.
        mount: Result<Option<MountEntry>, String>,
    },
}

/// Everything the node checks judge.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub kernel: Result<KernelFacts, String>,
    pub identity: Result<IdentityFacts, String>,
    pub tools: Vec<ToolFact>,
    pub kubelet: Result<KubeletFacts, String>,
    pub prefix: Result<ManagedPrefix, String>,
    pub controllers: Result<Vec<Controller>, String>,
    /// The driver's volumes among them, with their namespaces (from the same sysfs scan).
    pub volumes: Result<namespaces::ManagedVolumes, String>,
}
