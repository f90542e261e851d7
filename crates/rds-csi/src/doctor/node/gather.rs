//! Reading the node's facts: kernel files, the host identity, tool versions, the kubelet
//! directory and its mount, the sysfs controllers; each piece with a deadline.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;

use mounts::blocking::run_blocking;
use mounts::mountinfo::read_mount_table;
use mounts::tools::{Exit, ToolPaths};
use nvme::identity::{IdentityOverride, IdentityPaths, resolve_host_identity};
use nvme::{ManagedPrefix, Sysfs};
use tokio::time::Instant;

use super::namespaces::managed_volumes;
use super::{
    FABRICS_DEVICE, IdentityFacts, KernelFacts, KubeletDir, KubeletFacts, ModuleState,
    NVME_MODULES, Need, NodeFacts, NodeInputs, NodeRoot, Presence, ToolFact, ToolOutcome,
};

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
    let topology = blocking("reading NVMe subsystems from sysfs", deadline, move || {
        sysfs.scan().map_err(|e| e.to_string())
    });
    let (kernel, identity, tools, kubelet, topology) =
        tokio::join!(kernel, identity, tools, kubelet, topology);
    let topology = topology.and_then(|t| t);
    let prefix = managed_prefix(&inputs.nqn_prefix);
    let volumes = match (&prefix, &topology) {
        (Err(error), _) => Err(format!("--nqn-prefix is not usable: {error}")),
        (_, Err(error)) => Err(format!("cannot read sysfs: {error}")),
        (Ok(prefix), Ok(topology)) => Ok(managed_volumes(prefix, topology)),
    };
    NodeFacts {
        kernel,
        identity,
        tools,
        kubelet,
        prefix,
        controllers: topology.map(|t| t.controllers),
        volumes,
    }
}

/// What counts as the driver's: `<--nqn-prefix>:<volume id>`, built as the node plugin builds it.
fn managed_prefix(nqn_prefix: &str) -> Result<ManagedPrefix, String> {
    ManagedPrefix::new(format!("{nqn_prefix}:")).map_err(|e| e.to_string())
}

pub(super) fn identity_paths(root: &NodeRoot) -> IdentityPaths {
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

pub(super) fn read_kernel(root: &NodeRoot) -> KernelFacts {
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

pub(super) async fn query_tools(paths: &ToolPaths, deadline: Instant) -> Vec<ToolFact> {
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

pub(super) async fn read_kubelet(
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
