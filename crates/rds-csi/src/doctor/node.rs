//! Node checks: kernel NVMe/TCP support, host identity, filesystem tools, the kubelet directory
//! and its mount propagation, and the NVMe controllers already connected.
//!
//! [`gather`] reads [`NodeFacts`] below an injectable root (`/` on a node) with a deadline per
//! piece; [`checks`] and the `judge_*` functions turn facts into verdicts without touching the
//! machine.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mounts::blocking::run_blocking;
use mounts::mountinfo::{MountEntry, Propagation, read_mount_table};
use mounts::tools::{Exit, ToolPaths};
use nvme::identity::{
    HostIdentity, IdentityOverride, IdentityPaths, IdentityWarning, resolve_host_identity,
};
use nvme::sysfs::{Controller, ControllerState};
use nvme::{ManagedPrefix, Sysfs};
use tokio::time::Instant;

use super::report::Check;

/// The device through which the kernel creates NVMe-oF controllers.
pub const FABRICS_DEVICE: &str = "/dev/nvme-fabrics";
/// Modules the NVMe/TCP initiator needs, in the kernel's spelling.
pub const NVME_MODULES: [&str; 3] = ["nvme_tcp", "nvme_fabrics", "nvme_core"];
/// kubelet's default root directory.
pub const DEFAULT_KUBELET_DIR: &str = "/var/lib/kubelet";

const MODPROBE_FIX: &str = "modprobe nvme-tcp   (loads nvme-fabrics and nvme-core too)\n\
     and at every boot: echo nvme-tcp > /etc/modules-load.d/nvme-tcp.conf";
const NEW_HOST_NQN_FIX: &str = "write a unique host NQN on every node: nvme gen-hostnqn > \
     /etc/nvme/hostnqn\nor: echo \"nqn.2014-08.org.nvmexpress:uuid:$(cat \
     /proc/sys/kernel/random/uuid)\" > /etc/nvme/hostnqn";

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
}

/// Runs `work` on the blocking pool, giving up at `deadline` (a stuck sysfs or NFS read must
/// not hang the run).
async fn blocking<T: Send + 'static>(
    what: &str,
    deadline: Instant,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    run_blocking::<T, mounts::Error, _>(what, deadline, move || Ok(work()))
        .await
        .map_err(|e| e.to_string())
}

/// Reads every node fact, each piece under `inputs.deadline`.
pub async fn gather(inputs: &NodeInputs) -> NodeFacts {
    let deadline = Instant::now() + inputs.deadline;
    let root = inputs.root.clone();
    let kernel = blocking("reading kernel facts", deadline, move || read_kernel(&root));
    let paths = identity_paths(&inputs.root);
    let identity = blocking("resolving the host identity", deadline, move || {
        let resolved =
            resolve_host_identity(&paths, &IdentityOverride::default()).map_err(|e| e.to_string());
        IdentityFacts { paths, resolved }
    });
    let tools = query_tools(&inputs.tools, deadline);
    let kubelet = read_kubelet(&inputs.root, &inputs.kubelet_dir, deadline);
    let sysfs = Sysfs::new(inputs.root.join("/sys"));
    let controllers = blocking("reading NVMe controllers from sysfs", deadline, move || {
        sysfs
            .scan()
            .map(|topology| topology.controllers)
            .map_err(|e| e.to_string())
    });
    let (kernel, identity, tools, kubelet, controllers) =
        tokio::join!(kernel, identity, tools, kubelet, controllers);
    NodeFacts {
        kernel,
        identity,
        tools,
        kubelet,
        // The node plugin builds its prefix the same way.
        prefix: ManagedPrefix::new(format!("{}:", inputs.nqn_prefix)).map_err(|e| e.to_string()),
        controllers: controllers.and_then(|c| c),
    }
}

fn identity_paths(root: &NodeRoot) -> IdentityPaths {
    let IdentityPaths {
        hostnqn,
        hostid,
        machine_id,
        product_uuid,
    } = IdentityPaths::default();
    IdentityPaths {
        hostnqn: root.join(hostnqn),
        hostid: root.join(hostid),
        machine_id: root.join(machine_id),
        product_uuid: root.join(product_uuid),
    }
}

fn read_kernel(root: &NodeRoot) -> KernelFacts {
    let fabrics_device = match std::fs::metadata(root.join(FABRICS_DEVICE)) {
        Ok(meta) if meta.file_type().is_char_device() => Presence::Present,
        Ok(_) => Presence::Wrong("not a character device".into()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Presence::Missing,
        Err(error) => Presence::Wrong(error.to_string()),
    };
    let release = std::fs::read_to_string(root.join("/proc/sys/kernel/osrelease"))
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let modules_dir = release
        .as_ref()
        .map(|release| Path::new("/lib/modules").join(release));
    let listed = |file: &str| -> HashSet<String> {
        modules_dir
            .as_ref()
            .and_then(|dir| std::fs::read_to_string(root.join(dir.join(file))).ok())
            .map(|text| listed_modules(&text))
            .unwrap_or_default()
    };
    let (builtin, installed) = (listed("modules.builtin"), listed("modules.dep"));
    let modules = NVME_MODULES
        .iter()
        .map(|&name| {
            let sys = root.join("/sys/module").join(name);
            // Loadable modules have an initstate; built-in ones with parameters still show up
            // in /sys/module, without it.
            let state = if sys.join("initstate").exists() {
                ModuleState::Loaded
            } else if builtin.contains(name) || sys.exists() {
                ModuleState::BuiltIn
            } else if installed.contains(name) {
                ModuleState::Available
            } else {
                ModuleState::Missing
            };
            (name, state)
        })
        .collect();
    KernelFacts {
        fabrics_device,
        release,
        modules_dir: modules_dir.map(|dir| {
            let exists = root.join(&dir).is_dir();
            (dir, exists)
        }),
        modules,
    }
}

/// Module names in `modules.dep` or `modules.builtin`: each entry's file name without `.ko`
/// and a compression suffix, with `-` spelled `_` as the kernel does.
pub fn listed_modules(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|line| line.split(':').next())
        .filter_map(|path| path.trim().rsplit('/').next())
        .filter_map(|file| file.split_once(".ko").map(|(stem, _)| stem))
        .filter(|stem| !stem.is_empty())
        .map(|stem| stem.replace('-', "_"))
        .collect()
}

/// One tool of the mount layer: what it is for and how to ask its version.
struct ToolSpec<'a> {
    path: &'a Path,
    need: Need,
    without: &'static str,
    package: &'static str,
    query: VersionQuery,
}

/// How a tool tells its version.
#[derive(Debug, Clone, Copy)]
enum VersionQuery {
    /// `-V`, exit 0.
    Flag,
    /// No version flag: without arguments it prints its version with its usage and exits 1.
    Bare,
}

/// Every tool of [`ToolPaths`] (destructured, so a tool added there cannot be forgotten here).
fn tool_specs(paths: &ToolPaths) -> Vec<ToolSpec<'_>> {
    let ToolPaths {
        blkid,
        mkfs_ext4,
        mkfs_xfs,
        resize2fs,
        xfs_growfs,
        e2fsck,
        tune2fs,
        xfs_admin,
    } = paths;
    use Need::{Optional, Required};
    use VersionQuery::{Bare, Flag};
    [
        (
            blkid,
            Required,
            "nothing can be staged: a device is formatted only after blkid finds it empty",
            "util-linux",
            Flag,
        ),
        (
            mkfs_ext4,
            Required,
            "ext4 volumes (the default) cannot be formatted",
            "e2fsprogs",
            Flag,
        ),
        (
            resize2fs,
            Required,
            "ext4 volumes cannot be expanded",
            "e2fsprogs",
            Bare,
        ),
        (
            e2fsck,
            Required,
            "ext4 volumes cannot be checked before an offline resize",
            "e2fsprogs",
            Flag,
        ),
        (
            tune2fs,
            Optional,
            "a cloned ext4 volume cannot get a new UUID",
            "e2fsprogs",
            Bare,
        ),
        (
            mkfs_xfs,
            Optional,
            "xfs volumes cannot be formatted",
            "xfsprogs",
            Flag,
        ),
        (
            xfs_growfs,
            Optional,
            "xfs volumes cannot be expanded",
            "xfsprogs",
            Flag,
        ),
        (
            xfs_admin,
            Optional,
            "a cloned xfs volume cannot get a new UUID",
            "xfsprogs",
            Flag,
        ),
    ]
    .into_iter()
    .map(|(path, need, without, package, query)| ToolSpec {
        path: path.as_path(),
        need,
        without,
        package,
        query,
    })
    .collect()
}

async fn query_tools(paths: &ToolPaths, deadline: Instant) -> Vec<ToolFact> {
    let started = Instant::now();
    let queries = tool_specs(paths).into_iter().map(|spec| async move {
        let (args, success): (Vec<OsString>, &[i32]) = match spec.query {
            VersionQuery::Flag => (vec!["-V".into()], &[0]),
            VersionQuery::Bare => (Vec::new(), &[1]),
        };
        let outcome = match mounts::tools::run(spec.path, &args, deadline).await {
            Ok(output) => match output.exit {
                Exit::Code(code) if success.contains(&code) => ToolOutcome::Version(
                    version_line(&output.stdout, &output.stderr)
                        .unwrap_or_else(|| "runs (no version printed)".into()),
                ),
                exit => ToolOutcome::Broken(format!(
                    "version query ended with {exit}: {}",
                    output.stderr.trim()
                )),
            },
            Err(mounts::Error::ToolSpawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ToolOutcome::NotFound
            }
            Err(mounts::Error::TimedOut { .. }) => ToolOutcome::TimedOut(started.elapsed()),
            Err(error) => ToolOutcome::Broken(error.to_string()),
        };
        let path = spec.path;
        ToolFact {
            name: path
                .file_name()
                .unwrap_or(path.as_os_str())
                .to_string_lossy()
                .into_owned(),
            need: spec.need,
            without: spec.without,
            package: spec.package,
            outcome,
        }
    });
    futures::future::join_all(queries).await
}

/// The first output line that carries a version number (`mke2fs 1.47.0 (5-Feb-2023)`).
pub fn version_line(stdout: &str, stderr: &str) -> Option<String> {
    let has_version = |line: &str| {
        line.as_bytes()
            .windows(3)
            .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit())
    };
    stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .find(|line| has_version(line))
        .map(str::to_owned)
}

async fn read_kubelet(
    root: &NodeRoot,
    dir: &Path,
    deadline: Instant,
) -> Result<KubeletFacts, String> {
    let rooted = root.join(dir);
    // Whether it is a directory, and its real path (the mount table holds real paths).
    let look = blocking("looking at the kubelet directory", deadline, move || {
        let is_dir = std::fs::metadata(&rooted)?.is_dir();
        Ok::<_, std::io::Error>((is_dir, std::fs::canonicalize(&rooted)?))
    });
    let found = match look.await? {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => KubeletDir::Missing,
        Err(error) => KubeletDir::Unreadable(error.to_string()),
        Ok((false, _)) => KubeletDir::NotADirectory,
        Ok((true, real)) => {
            let real = root.unroot(&real);
            let mount = read_mount_table(&root.join("/proc/self/mountinfo"), deadline)
                .await
                .map(|table| table.containing(&real).cloned())
                .map_err(|e| e.to_string());
            KubeletDir::Directory { real, mount }
        }
    };
    Ok(KubeletFacts {
        dir: dir.to_owned(),
        found,
    })
}

/// Every node verdict, in display order.
pub fn checks(facts: &NodeFacts) -> Vec<Check> {
    let mut checks = vec![
        judge_fabrics_device(&facts.kernel),
        judge_modules(&facts.kernel),
        judge_host_nqn(&facts.identity),
        judge_host_id(&facts.identity),
    ];
    checks.extend(facts.tools.iter().map(judge_tool));
    checks.push(judge_kubelet_dir(&facts.kubelet));
    checks.push(judge_propagation(&facts.kubelet));
    checks.push(judge_controllers(&facts.prefix, &facts.controllers));
    checks
}

const FABRICS: (&str, &str) = ("node.nvme-fabrics", "NVMe fabrics device");

pub fn judge_fabrics_device(kernel: &Result<KernelFacts, String>) -> Check {
    let (id, name) = FABRICS;
    let kernel = match kernel {
        Ok(kernel) => kernel,
        Err(error) => return Check::fail(id, name, format!("could not look: {error}")),
    };
    match &kernel.fabrics_device {
        Presence::Present => Check::ok(id, name, format!("{FABRICS_DEVICE} is present")),
        Presence::Missing => Check::fail(
            id,
            name,
            format!(
                "{FABRICS_DEVICE} is missing: the nvme-fabrics module is not loaded, so no \
                 volume can be attached"
            ),
        )
        .fix(MODPROBE_FIX),
        Presence::Wrong(what) => Check::fail(id, name, format!("{FABRICS_DEVICE}: {what}")).fix(
            "it must be the character device the nvme-fabrics module creates; remove \
                  whatever is there and load the module",
        ),
    }
}

pub fn judge_modules(kernel: &Result<KernelFacts, String>) -> Check {
    let (id, name) = ("node.kernel-modules", "NVMe/TCP modules");
    let kernel = match kernel {
        Ok(kernel) => kernel,
        Err(error) => return Check::fail(id, name, format!("could not look: {error}")),
    };
    let release = kernel.release.as_deref().unwrap_or("(unknown release)");
    let describe = |state: ModuleState| match state {
        ModuleState::Loaded => "loaded",
        ModuleState::BuiltIn => "built in",
        ModuleState::Available => "installed, not loaded",
        ModuleState::Missing => "not found",
    };
    let detail = kernel
        .modules
        .iter()
        .map(|(module, state)| format!("{module}: {}", describe(*state)))
        .collect::<Vec<_>>()
        .join(", ");
    let any = |wanted: ModuleState| kernel.modules.iter().any(|(_, state)| *state == wanted);
    if any(ModuleState::Missing) {
        let (where_looked, fix) = match &kernel.modules_dir {
            Some((dir, true)) => (
                format!("neither loaded nor listed in {}", dir.display()),
                format!(
                    "the modules of kernel {release} lack NVMe/TCP: install the distribution's \
                     extra modules (Ubuntu: linux-modules-extra-{release}) or boot a kernel \
                     built with CONFIG_NVME_TCP"
                ),
            ),
            Some((dir, false)) => (
                format!("not loaded, and {} does not exist", dir.display()),
                format!(
                    "install the modules of the running kernel {release} (in a container, mount \
                     /lib/modules from the host)\nthen: {MODPROBE_FIX}"
                ),
            ),
            None => (
                "not loaded; the kernel release is unknown".to_owned(),
                MODPROBE_FIX.to_owned(),
            ),
        };
        return Check::fail(id, name, format!("{detail}\n{where_looked}")).fix(fix);
    }
    if any(ModuleState::Available) {
        return Check::warn(
            id,
            name,
            format!(
                "{detail}\nthe kernel may load nvme-tcp on the first connect; do not rely on it"
            ),
        )
        .fix(MODPROBE_FIX);
    }
    Check::ok(id, name, format!("{detail} (kernel {release})"))
}

pub fn judge_host_nqn(identity: &Result<IdentityFacts, String>) -> Check {
    let (id, name) = ("node.host-nqn", "NVMe host NQN");
    let facts = match identity {
        Ok(facts) => facts,
        Err(error) => return Check::fail(id, name, format!("could not look: {error}")),
    };
    let resolved = match &facts.resolved {
        Ok(resolved) => resolved,
        Err(error) => {
            return Check::fail(
                id,
                name,
                format!("no usable host identity, so the node plugin cannot start: {error}"),
            )
            .fix(NEW_HOST_NQN_FIX);
        }
    };
    let file = &facts.paths.hostnqn;
    let (nqn, source) = (&resolved.nqn, &resolved.source);
    let about_file = resolved.warnings.iter().find(|warning| match warning {
        IdentityWarning::NoHostNqnFile(path)
        | IdentityWarning::Placeholder { path, .. }
        | IdentityWarning::Unusable { path, .. } => path == file,
        IdentityWarning::HostIdDerived => false,
    });
    match about_file {
        None => Check::ok(id, name, format!("{nqn} (from {source})")),
        Some(IdentityWarning::NoHostNqnFile(_)) => Check::warn(
            id,
            name,
            format!(
                "{} is missing; the driver presents {nqn} ({source}), other NVMe tools on this \
                 node would present none or another",
                file.display()
            ),
        )
        .fix(format!(
            "mkdir -p {dir} && echo {nqn} > {file}   (so every tool presents the same identity)",
            dir = file.parent().unwrap_or(Path::new("/")).display(),
            file = file.display()
        )),
        Some(IdentityWarning::Placeholder { value, .. }) => Check::fail(
            id,
            name,
            format!(
                "{} holds {value}, a placeholder shared by many machines (a cloned image?)\nthe \
                 driver ignores it and presents {nqn} ({source}), but other NVMe tools here \
                 would present the duplicate, and targets confuse nodes that share one",
                file.display()
            ),
        )
        .fix(NEW_HOST_NQN_FIX),
        Some(warning) => Check::fail(
            id,
            name,
            format!("{warning}\nthe driver presents {nqn} ({source}) instead"),
        )
        .fix(NEW_HOST_NQN_FIX),
    }
}

pub fn judge_host_id(identity: &Result<IdentityFacts, String>) -> Check {
    let (id, name) = ("node.host-id", "NVMe host ID");
    let Ok(IdentityFacts {
        paths,
        resolved: Ok(resolved),
    }) = identity
    else {
        return Check::skip(id, name, "no host identity (see the host NQN)");
    };
    let file = &paths.hostid;
    let write_it = format!("echo {} > {}", resolved.id, file.display());
    let placeholder = resolved.warnings.iter().find_map(|warning| match warning {
        IdentityWarning::Placeholder { path, value } if path == file => Some(value),
        _ => None,
    });
    if let Some(value) = placeholder {
        return Check::fail(
            id,
            name,
            format!(
                "{} holds {value}, a placeholder shared by many machines; the driver presents \
                 {} instead",
                file.display(),
                resolved.id
            ),
        )
        .fix(write_it);
    }
    if resolved.warnings.contains(&IdentityWarning::HostIdDerived) {
        return Check::warn(
            id,
            name,
            format!(
                "{} is missing or not a UUID; the driver presents {}, derived from the host NQN",
                file.display(),
                resolved.id
            ),
        )
        .fix(write_it);
    }
    Check::ok(
        id,
        name,
        format!("{} (from {})", resolved.id, file.display()),
    )
}

pub fn judge_tool(tool: &ToolFact) -> Check {
    let id = format!("node.tool.{}", tool.name);
    let name = format!("tool {}", tool.name);
    let install = format!(
        "install {} (same package name on Debian, Ubuntu, Fedora, RHEL)",
        tool.package
    );
    match &tool.outcome {
        ToolOutcome::Version(version) => Check::ok(id, name, version),
        ToolOutcome::NotFound => {
            let detail = format!("not found on PATH: {}", tool.without);
            match tool.need {
                Need::Required => Check::fail(id, name, detail),
                Need::Optional => Check::warn(id, name, detail),
            }
            .fix(install)
        }
        ToolOutcome::TimedOut(after) => Check::fail(
            id,
            name,
            format!(
                "its version query did not finish (gave up {} s in)",
                after.as_secs()
            ),
        )
        .fix(format!(
            "run `{} -V` by hand to see why it hangs",
            tool.name
        )),
        ToolOutcome::Broken(error) => {
            Check::fail(id, name, format!("does not run: {error}")).fix(install)
        }
    }
}

const KUBELET_DIR: (&str, &str) = ("node.kubelet-dir", "kubelet directory");

pub fn judge_kubelet_dir(kubelet: &Result<KubeletFacts, String>) -> Check {
    let (id, name) = KUBELET_DIR;
    let facts = match kubelet {
        Ok(facts) => facts,
        Err(error) => return Check::fail(id, name, format!("could not look: {error}")),
    };
    let dir = facts.dir.display();
    let elsewhere = "give --kubelet-dir with kubelet's --root-dir (k0s: /var/lib/k0s/kubelet, \
                     MicroK8s: /var/snap/microk8s/common/var/lib/kubelet); the node plugin's \
                     DaemonSet must mount that same path";
    match &facts.found {
        KubeletDir::Missing => Check::fail(
            id,
            name,
            format!(
                "{dir} does not exist: kubelet does not run here, or keeps its state elsewhere"
            ),
        )
        .fix(elsewhere),
        KubeletDir::NotADirectory => {
            Check::fail(id, name, format!("{dir} is not a directory")).fix(elsewhere)
        }
        KubeletDir::Unreadable(error) => Check::fail(id, name, format!("{dir}: {error}")),
        KubeletDir::Directory { real, .. } if real == &facts.dir => {
            Check::ok(id, name, format!("{dir} exists"))
        }
        KubeletDir::Directory { real, .. } => {
            Check::ok(id, name, format!("{dir} exists (it is {})", real.display()))
        }
    }
}

pub fn judge_propagation(kubelet: &Result<KubeletFacts, String>) -> Check {
    let (id, name) = ("node.kubelet-propagation", "mount propagation");
    let Ok(KubeletFacts {
        found: KubeletDir::Directory { real, mount },
        ..
    }) = kubelet
    else {
        return Check::skip(id, name, "no kubelet directory to look at");
    };
    let entry = match mount {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            return Check::fail(
                id,
                name,
                format!(
                    "no mount holds {}: the mount table is incomplete",
                    real.display()
                ),
            );
        }
        Err(error) => {
            return Check::fail(id, name, format!("cannot read the mount table: {error}"));
        }
    };
    let on = format!(
        "{} lies on the mount at {}",
        real.display(),
        entry.mount_point.display()
    );
    let reach = "volumes the node plugin mounts below it would stay invisible to kubelet and pods";
    let fix = |kind: &str| {
        format!(
            "make it shared on the host: mount --make-rshared {mount}\n(systemd does so for / \
             at boot; look for what made it {kind}), and give the node plugin's kubelet \
             directory volume mountPropagation: Bidirectional",
            mount = entry.mount_point.display()
        )
    };
    match entry.propagation() {
        Propagation::Shared { peer_group, .. } => Check::ok(
            id,
            name,
            format!("{on}, shared (peer group {peer_group}): Bidirectional propagation works"),
        ),
        Propagation::Slave { master } => Check::fail(
            id,
            name,
            format!("{on}, a slave of peer group {master}: mounts made here do not propagate back, so {reach}"),
        )
        .fix(fix("slave")),
        Propagation::Private => Check::fail(id, name, format!("{on}, private: {reach}"))
            .fix(fix("private")),
        Propagation::Unbindable => Check::fail(id, name, format!("{on}, unbindable: {reach}"))
            .fix(fix("unbindable")),
    }
}

fn state_text(state: &ControllerState) -> &str {
    match state {
        ControllerState::New => "new",
        ControllerState::Live => "live",
        ControllerState::Resetting => "resetting",
        ControllerState::Connecting => "connecting",
        ControllerState::Deleting => "deleting",
        ControllerState::DeletingNoIo => "deleting (no IO)",
        ControllerState::Dead => "dead",
        ControllerState::Other(text) => text,
    }
}

fn address_text(controller: &Controller) -> String {
    let address = controller.address.as_ref();
    match (
        address.and_then(|a| a.get("traddr")),
        address.and_then(|a| a.get("trsvcid")),
    ) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "-".to_owned(),
    }
}

pub fn judge_controllers(
    prefix: &Result<ManagedPrefix, String>,
    controllers: &Result<Vec<Controller>, String>,
) -> Check {
    let (id, name) = ("node.nvme-controllers", "NVMe controllers");
    let prefix = match prefix {
        Ok(prefix) => prefix,
        Err(error) => {
            return Check::fail(id, name, format!("--nqn-prefix is not usable: {error}"))
                .fix("give the controller's --nqn-prefix (the node plugin refuses this one too)");
        }
    };
    let controllers = match controllers {
        Ok(controllers) => controllers,
        Err(error) => return Check::fail(id, name, format!("cannot read sysfs: {error}")),
    };
    if controllers.is_empty() {
        return Check::ok(id, name, "none connected");
    }
    let managed = |c: &Controller| prefix.covers(&c.subsystem_nqn);
    let troubled: Vec<&Controller> = controllers
        .iter()
        .filter(|c| managed(c) && c.state != ControllerState::Live)
        .collect();
    let managed_count = controllers.iter().filter(|c| managed(c)).count();
    let mut detail = format!(
        "{} connected: {managed_count} managed by this driver (under {}), {} foreign (never \
         touched)",
        controllers.len(),
        prefix.as_str(),
        controllers.len() - managed_count
    );
    for c in controllers {
        detail.push_str(&format!(
            "\n{}  {}  {} {}  {}  {}",
            c.name,
            state_text(&c.state),
            c.transport.as_deref().unwrap_or("?"),
            address_text(c),
            c.subsystem_nqn,
            if managed(c) { "managed" } else { "foreign" }
        ));
    }
    if troubled.is_empty() {
        return Check::ok(id, name, detail);
    }
    let names: Vec<String> = troubled
        .iter()
        .map(|c| format!("{} ({})", c.name, state_text(&c.state)))
        .collect();
    Check::warn(
        id,
        name,
        format!("{detail}\nnot live: {}", names.join(", ")),
    )
    .fix(
        "the kernel retries a lost connection until ctrl_loss_tmo, then removes the controller; \
         check the network path to the RDS and that it still exports those NQNs (run doctor \
         with --rds-address)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme::fixtures::FakeSysfs;
    use nvme::identity::IdentitySource;

    const PREFIX: &str = "nqn.2000-02.com.mikrotik";

    fn kernel(device: Presence, modules: [ModuleState; 3], dir_exists: bool) -> KernelFacts {
        KernelFacts {
            fabrics_device: device,
            release: Some("6.1.0-18-amd64".into()),
            modules_dir: Some(("/lib/modules/6.1.0-18-amd64".into(), dir_exists)),
            modules: NVME_MODULES.into_iter().zip(modules).collect(),
        }
    }

    #[test]
    fn a_missing_fabrics_device_fails_with_the_modprobe_hint() {
        use ModuleState::*;
        let check = judge_fabrics_device(&Ok(kernel(Presence::Missing, [Loaded; 3], true)));
        assert_eq!(check.status, Status::Fail);
        assert!(check.fix.as_deref().unwrap().contains("modprobe nvme-tcp"));
        assert!(
            check
                .fix
                .as_deref()
                .unwrap()
                .contains("/etc/modules-load.d/")
        );
        let check = judge_fabrics_device(&Ok(kernel(Presence::Present, [Loaded; 3], true)));
        assert_eq!(check.status, Status::Ok);
        let check = judge_fabrics_device(&Ok(kernel(
            Presence::Wrong("not a character device".into()),
            [Loaded; 3],
            true,
        )));
        assert_eq!(check.status, Status::Fail);
    }

    #[test]
    fn modules_judged_loaded_available_or_missing() {
        use ModuleState::*;
        let ok = judge_modules(&Ok(kernel(
            Presence::Present,
            [Loaded, Loaded, BuiltIn],
            true,
        )));
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert!(ok.detail.contains("nvme_core: built in"));

        let available = judge_modules(&Ok(kernel(
            Presence::Present,
            [Available, Loaded, Loaded],
            true,
        )));
        assert_eq!(available.status, Status::Warn);
        assert!(available.fix.unwrap().contains("modprobe nvme-tcp"));

        let missing = judge_modules(&Ok(kernel(
            Presence::Missing,
            [Missing, Available, Loaded],
            true,
        )));
        assert_eq!(missing.status, Status::Fail);
        assert!(
            missing.detail.contains("nvme_tcp: not found"),
            "{}",
            missing.detail
        );
        assert!(
            missing
                .fix
                .unwrap()
                .contains("linux-modules-extra-6.1.0-18-amd64"),
            "the hint names the package for this kernel"
        );

        let no_dir = judge_modules(&Ok(kernel(Presence::Missing, [Missing; 3], false)));
        assert_eq!(no_dir.status, Status::Fail);
        assert!(
            no_dir
                .detail
                .contains("/lib/modules/6.1.0-18-amd64 does not exist")
        );
        assert!(
            no_dir
                .fix
                .unwrap()
                .contains("mount /lib/modules from the host")
        );
    }

    #[test]
    fn module_lists_are_read_in_the_kernels_spelling() {
        let dep = "kernel/drivers/nvme/host/nvme-tcp.ko.zst: kernel/drivers/nvme/host/nvme-fabrics.ko.zst\n\
                   kernel/drivers/nvme/host/nvme-fabrics.ko.zst: kernel/drivers/nvme/host/nvme-core.ko.zst\n\
                   kernel/fs/xfs/xfs.ko:\n";
        let names = listed_modules(dep);
        assert!(names.contains("nvme_tcp") && names.contains("nvme_fabrics"));
        assert!(names.contains("xfs"));
        assert!(
            !names.contains("nvme_core"),
            "only entries, not their dependencies"
        );
        assert!(listed_modules("kernel/drivers/nvme/host/nvme-core.ko\n").contains("nvme_core"));
    }

    #[test]
    fn kernel_facts_come_from_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(dir.path());
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        write(
            "/lib/modules/6.1.0-18-amd64/modules.dep",
            "kernel/drivers/nvme/host/nvme-tcp.ko.xz: x\n",
        );
        write(
            "/lib/modules/6.1.0-18-amd64/modules.builtin",
            "kernel/drivers/nvme/host/nvme-core.ko\n",
        );
        write("/sys/module/nvme_fabrics/initstate", "live\n");
        // A regular file is not the fabrics device.
        write(FABRICS_DEVICE, "");
        let facts = read_kernel(&root);
        assert_eq!(
            facts.modules,
            vec![
                ("nvme_tcp", ModuleState::Available),
                ("nvme_fabrics", ModuleState::Loaded),
                ("nvme_core", ModuleState::BuiltIn),
            ]
        );
        assert_eq!(
            facts.fabrics_device,
            Presence::Wrong("not a character device".into())
        );
        assert_eq!(facts.release.as_deref(), Some("6.1.0-18-amd64"));
        assert_eq!(
            facts.modules_dir,
            Some(("/lib/modules/6.1.0-18-amd64".into(), true))
        );

        let empty = tempfile::tempdir().unwrap();
        let facts = read_kernel(&NodeRoot::new(empty.path()));
        assert_eq!(facts.fabrics_device, Presence::Missing);
        assert!(
            facts
                .modules
                .iter()
                .all(|(_, s)| *s == ModuleState::Missing)
        );
    }

    /// Identity files below a temporary root, resolved as the node plugin would.
    fn identity(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<IdentityFacts, String>) {
        let dir = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(dir.path());
        for (path, text) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let paths = identity_paths(&root);
        let resolved =
            resolve_host_identity(&paths, &IdentityOverride::default()).map_err(|e| e.to_string());
        (dir, Ok(IdentityFacts { paths, resolved }))
    }

    const MACHINE_ID: (&str, &str) = ("/etc/machine-id", "4c4c4544004d3510804fb2c04f4a4d32\n");
    const GOOD_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f";

    #[test]
    fn a_duplicate_host_nqn_fails_and_says_what_the_driver_presents() {
        for placeholder in [
            "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000000",
            "nqn.2014-08.org.nvmexpress:uuid:03000200-0400-0500-0006-000700080009",
            "nqn.2014-08.org.nvmexpress:uuid:FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        ] {
            let (_dir, facts) = identity(&[("/etc/nvme/hostnqn", placeholder), MACHINE_ID]);
            let check = judge_host_nqn(&facts);
            assert_eq!(check.status, Status::Fail, "{placeholder}");
            assert!(check.detail.contains("placeholder"), "{}", check.detail);
            let derived = &facts.as_ref().unwrap().resolved.as_ref().unwrap().nqn;
            assert!(check.detail.contains(derived.as_str()), "{}", check.detail);
            assert!(check.fix.unwrap().contains("gen-hostnqn"));
        }
    }

    #[test]
    fn a_missing_host_nqn_warns_with_the_derived_value_to_write() {
        let (_dir, facts) = identity(&[MACHINE_ID]);
        let check = judge_host_nqn(&facts);
        assert_eq!(check.status, Status::Warn);
        let resolved = facts.as_ref().unwrap().resolved.as_ref().unwrap();
        assert!(matches!(
            resolved.source,
            IdentitySource::DerivedFromMachineId(_)
        ));
        assert!(
            check
                .fix
                .unwrap()
                .contains(&format!("echo {}", resolved.nqn))
        );
        let id = judge_host_id(&facts);
        assert_eq!(id.status, Status::Warn);
        assert!(id.detail.contains(&resolved.id));
    }

    #[test]
    fn a_malformed_host_nqn_fails_and_nothing_usable_fails() {
        let (_dir, facts) = identity(&[("/etc/nvme/hostnqn", "nqn with spaces"), MACHINE_ID]);
        assert_eq!(judge_host_nqn(&facts).status, Status::Fail);

        let (_dir, facts) = identity(&[]);
        let check = judge_host_nqn(&facts);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("cannot start"), "{}", check.detail);
        assert_eq!(judge_host_id(&facts).status, Status::Skip);
    }

    #[test]
    fn configured_identity_files_pass() {
        let (_dir, facts) = identity(&[
            ("/etc/nvme/hostnqn", GOOD_NQN),
            ("/etc/nvme/hostid", "2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f\n"),
        ]);
        let check = judge_host_nqn(&facts);
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(check.detail.starts_with(GOOD_NQN));
        assert_eq!(judge_host_id(&facts).status, Status::Ok);

        let (_dir, facts) = identity(&[
            ("/etc/nvme/hostnqn", GOOD_NQN),
            ("/etc/nvme/hostid", "03000200-0400-0500-0006-000700080009"),
        ]);
        let check = judge_host_id(&facts);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(
            check
                .fix
                .unwrap()
                .contains("2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f")
        );
    }

    fn tool(need: Need, outcome: ToolOutcome) -> ToolFact {
        ToolFact {
            name: "mkfs.xfs".into(),
            need,
            without: "xfs volumes cannot be formatted",
            package: "xfsprogs",
            outcome,
        }
    }

    #[test]
    fn tools_missing_fail_or_warn_by_need() {
        let required = judge_tool(&tool(Need::Required, ToolOutcome::NotFound));
        assert_eq!(required.status, Status::Fail);
        assert!(required.fix.unwrap().contains("xfsprogs"));
        assert_eq!(
            judge_tool(&tool(Need::Optional, ToolOutcome::NotFound)).status,
            Status::Warn
        );
        assert_eq!(
            judge_tool(&tool(
                Need::Optional,
                ToolOutcome::TimedOut(Duration::from_secs(5))
            ))
            .status,
            Status::Fail,
            "a tool that hangs is worse than a missing one"
        );
        let ok = judge_tool(&tool(
            Need::Optional,
            ToolOutcome::Version("mkfs.xfs version 6.1.0".into()),
        ));
        assert_eq!(
            (ok.status, ok.detail.as_str()),
            (Status::Ok, "mkfs.xfs version 6.1.0")
        );
    }

    #[test]
    fn version_lines_are_found_in_either_stream() {
        assert_eq!(
            version_line(
                "",
                "Usage: tune2fs [-c max_mounts_count]\n\t[-l]\ntune2fs 1.47.0 (5-Feb-2023)\n"
            ),
            Some("tune2fs 1.47.0 (5-Feb-2023)".into())
        );
        assert_eq!(
            version_line(
                "blkid from util-linux 2.38.1  (libblkid 2.38.1, 04-Aug-2022)\n",
                ""
            ),
            Some("blkid from util-linux 2.38.1  (libblkid 2.38.1, 04-Aug-2022)".into())
        );
        assert_eq!(version_line("no numbers", "here either"), None);
    }

    #[tokio::test]
    async fn tools_are_queried_with_a_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt as _;
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let paths = ToolPaths {
            blkid: script("blkid", "echo 'blkid from util-linux 2.38.1'"),
            resize2fs: script(
                "resize2fs",
                "echo 'resize2fs 1.47.0 (5-Feb-2023)' >&2; exit 1",
            ),
            mkfs_xfs: script("mkfs.xfs", "exec sleep 30"),
            e2fsck: script("e2fsck", "exit 8"),
            mkfs_ext4: dir.path().join("absent"),
            ..ToolPaths::default()
        };
        let started = Instant::now();
        let facts = query_tools(&paths, started + Duration::from_millis(500)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let outcome = |name: &str| {
            facts
                .iter()
                .find(|t| t.name == name)
                .unwrap()
                .outcome
                .clone()
        };
        assert_eq!(
            outcome("blkid"),
            ToolOutcome::Version("blkid from util-linux 2.38.1".into())
        );
        assert_eq!(
            outcome("resize2fs"),
            ToolOutcome::Version("resize2fs 1.47.0 (5-Feb-2023)".into())
        );
        assert!(matches!(outcome("mkfs.xfs"), ToolOutcome::TimedOut(_)));
        assert!(matches!(outcome("e2fsck"), ToolOutcome::Broken(_)));
        assert_eq!(outcome("absent"), ToolOutcome::NotFound);
        assert_eq!(facts.len(), 8, "every tool of the mount layer is checked");
    }

    fn kubelet(optional: &str) -> Result<KubeletFacts, String> {
        let line = format!("27 1 254:0 / / rw,relatime {optional} - ext4 /dev/vda rw\n");
        let table = mounts::mountinfo::MountTable::parse(line.as_bytes()).unwrap();
        let real = PathBuf::from(DEFAULT_KUBELET_DIR);
        Ok(KubeletFacts {
            dir: real.clone(),
            found: KubeletDir::Directory {
                mount: Ok(table.containing(&real).cloned()),
                real,
            },
        })
    }

    #[test]
    fn propagation_must_be_shared() {
        let shared = judge_propagation(&kubelet("shared:1"));
        assert_eq!(shared.status, Status::Ok, "{shared:?}");
        assert!(shared.detail.contains("peer group 1"));
        assert_eq!(
            judge_propagation(&kubelet("shared:5 master:1")).status,
            Status::Ok
        );

        let private = judge_propagation(&kubelet(""));
        assert_eq!(private.status, Status::Fail);
        assert!(private.detail.contains("private"), "{}", private.detail);
        assert!(
            private
                .fix
                .as_deref()
                .unwrap()
                .contains("mount --make-rshared /")
        );
        assert!(private.fix.unwrap().contains("made it private"));

        let slave = judge_propagation(&kubelet("master:1"));
        assert_eq!(slave.status, Status::Fail);
        assert!(slave.detail.contains("slave"), "{}", slave.detail);

        let missing = Ok(KubeletFacts {
            dir: DEFAULT_KUBELET_DIR.into(),
            found: KubeletDir::Missing,
        });
        assert_eq!(judge_propagation(&missing).status, Status::Skip);
        let dir = judge_kubelet_dir(&missing);
        assert_eq!(dir.status, Status::Fail);
        assert!(dir.fix.unwrap().contains("--kubelet-dir"));
    }

    #[tokio::test]
    async fn the_kubelet_directory_is_found_through_symlinks_on_its_mount() {
        let dir = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(dir.path());
        std::fs::create_dir_all(root.join("/data/kubelet")).unwrap();
        std::fs::create_dir_all(root.join("/var/lib")).unwrap();
        // Relative, so that it resolves within the tree (an absolute one would leave it).
        std::os::unix::fs::symlink("../../data/kubelet", root.join("/var/lib/kubelet")).unwrap();
        std::fs::create_dir_all(root.join("/proc/self")).unwrap();
        std::fs::write(
            root.join("/proc/self/mountinfo"),
            "27 1 254:0 / / rw shared:1 - ext4 /dev/vda rw\n\
             30 27 254:1 / /data rw master:9 - xfs /dev/vdb rw\n",
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let facts = read_kubelet(&root, Path::new(DEFAULT_KUBELET_DIR), deadline)
            .await
            .unwrap();
        let KubeletDir::Directory { real, mount } = &facts.found else {
            panic!("{facts:?}")
        };
        assert_eq!(real, Path::new("/data/kubelet"));
        assert_eq!(mount.as_ref().unwrap().as_ref().unwrap().mount_id, 30);
        assert!(
            judge_kubelet_dir(&Ok(facts.clone()))
                .detail
                .contains("/data/kubelet")
        );
        assert_eq!(
            judge_propagation(&Ok(facts)).status,
            Status::Fail,
            "a slave mount"
        );

        let absent = read_kubelet(&root, Path::new("/nowhere"), deadline)
            .await
            .unwrap();
        assert_eq!(absent.found, KubeletDir::Missing);
    }

    #[test]
    fn controllers_are_told_managed_from_foreign_and_non_live_managed_ones_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = FakeSysfs::new(dir.path());
        let address = "traddr=10.0.0.5,trsvcid=4420";
        // Managed means `<prefix>:<volume id>` with an id of the driver's own shape.
        const PVC_1: &str = "pvc-00000000-0000-4000-8000-000000000001";
        const PVC_2: &str = "pvc-00000000-0000-4000-8000-000000000002";
        sysfs.add_controller(0, 0, "nqn.2014-08.org.example:boot-disk", "live", address);
        sysfs.add_controller(1, 1, &format!("{PREFIX}:{PVC_1}"), "live", address);
        sysfs.add_controller(2, 2, &format!("{PREFIX}:{PVC_2}"), "live", address);
        let prefix = ManagedPrefix::new(format!("{PREFIX}:")).map_err(|e| e.to_string());
        let scan = || {
            sysfs
                .sysfs()
                .scan()
                .map(|t| t.controllers)
                .map_err(|e| e.to_string())
        };

        let all_live = judge_controllers(&prefix, &scan());
        assert_eq!(all_live.status, Status::Ok, "{all_live:?}");
        assert!(
            all_live.detail.contains("3 connected: 2 managed"),
            "{}",
            all_live.detail
        );
        let foreign_line = all_live
            .detail
            .lines()
            .find(|l| l.starts_with("nvme0 "))
            .unwrap();
        assert!(foreign_line.ends_with("foreign"), "{foreign_line}");
        assert!(foreign_line.contains("10.0.0.5:4420"), "{foreign_line}");

        sysfs.set_state(0, "connecting");
        assert_eq!(
            judge_controllers(&prefix, &scan()).status,
            Status::Ok,
            "a foreign controller's state is not the driver's business"
        );
        sysfs.set_state(2, "connecting");
        let troubled = judge_controllers(&prefix, &scan());
        assert_eq!(troubled.status, Status::Warn);
        assert!(
            troubled.detail.contains("not live: nvme2 (connecting)"),
            "{}",
            troubled.detail
        );

        assert_eq!(
            judge_controllers(&prefix, &Ok(Vec::new())).detail,
            "none connected"
        );
        let broad = ManagedPrefix::new("nqn.2014-08.org.nvmexpress:").map_err(|e| e.to_string());
        assert_eq!(judge_controllers(&broad, &scan()).status, Status::Fail);
    }

    #[tokio::test]
    async fn gathering_an_empty_root_reports_the_truth_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = NodeInputs {
            root: NodeRoot::new(dir.path()),
            tools: ToolPaths {
                blkid: dir.path().join("no-blkid"),
                ..ToolPaths::default()
            },
            kubelet_dir: DEFAULT_KUBELET_DIR.into(),
            nqn_prefix: PREFIX.into(),
            deadline: Duration::from_secs(5),
        };
        let facts = gather(&inputs).await;
        let checks = checks(&facts);
        let status = |id: &str| checks.iter().find(|c| c.id == id).unwrap().status;
        assert_eq!(status("node.nvme-fabrics"), Status::Fail);
        assert_eq!(status("node.kernel-modules"), Status::Fail);
        assert_eq!(
            status("node.host-nqn"),
            Status::Fail,
            "no identity source at all"
        );
        assert_eq!(status("node.tool.no-blkid"), Status::Fail);
        assert_eq!(status("node.kubelet-dir"), Status::Fail);
        assert_eq!(status("node.kubelet-propagation"), Status::Skip);
        assert_eq!(
            status("node.nvme-controllers"),
            Status::Ok,
            "no sysfs, no controllers"
        );
    }

    use super::super::report::Status;
}
