use std::path::{Path, PathBuf};
use std::time::Duration;

use mounts::tools::ToolPaths;
use nvme::ManagedPrefix;
use nvme::fixtures::FakeSysfs;
use nvme::identity::{IdentityOverride, IdentitySource, resolve_host_identity};
use tokio::time::Instant;

use super::gather::{
    identity_paths, listed_modules, query_tools, read_kernel, read_kubelet, version_line,
};
use super::*;
use crate::doctor::report::Status;

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
    sysfs.add_controller(0, 0, "nqn.2014-08.org.example:boot-disk", "live", address);
    // Managed means `<prefix>:<volume id>` with an id of the driver's own shape.
    const PVC_1: &str = "pvc-00000000-0000-4000-8000-000000000001";
    const PVC_2: &str = "pvc-00000000-0000-4000-8000-000000000002";
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
