//! Root tests on real loop devices: the whole stage/publish/teardown path of a volume, growth,
//! UUID regeneration, block publish by mknod, and the failure paths.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use mounts::Error;
use mounts::devnode::{
    Created, NodeState, Removed, create_block_node, inspect_block_node, remove_device_node,
    remove_empty_dir,
};
use mounts::fixtures::{LoopDevice, MountGuard, require_tool, root_or_skip, soon};
use mounts::format::{FormatOutcome, FsTools, FsType, MkfsOptions, Probe};
use mounts::mount::{
    MountOptions, RemountScope, UnmountMode, Unmounted, bind_mount, mount_filesystem, remount,
    unmount,
};
use mounts::mountinfo::read_self_mount_table;
use mounts::mountpoint::{MountState, mount_state};
use mounts::stats::{
    block_device_size, device_number_of_node, filesystem_stats, is_claimed_exclusively,
};
use mounts::tools::ToolPaths;

const MIB: u64 = 1 << 20;
const CAP_SYS_RESOURCE: u32 = 24;

fn has_capability(bit: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(effective.trim(), 16).unwrap() & (1 << bit) != 0
}

async fn state(path: &Path) -> MountState {
    let table = read_self_mount_table(soon()).await.unwrap();
    mount_state(path, &table, soon()).await.unwrap()
}

/// Stage, publish read-only, check, tear down, grow, and re-identify one filesystem type.
async fn full_lifecycle(fs: FsType, size: u64, grown: u64) {
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopDevice::attach(dir.path(), size).await;
    let mut mounts = MountGuard::default();
    let tools = FsTools::default();
    let device = disk.device.as_path();

    // Empty device: blkid says so, and the format happens exactly once.
    assert_eq!(tools.probe(device, soon()).await.unwrap(), Probe::Empty);
    assert_eq!(
        tools
            .format_if_empty(device, fs, &MkfsOptions::parse("-L data").unwrap(), soon())
            .await
            .unwrap(),
        FormatOutcome::Formatted
    );
    let uuid = match tools.probe(device, soon()).await.unwrap() {
        Probe::Found(signature) => {
            assert_eq!(signature.fs_type.as_deref(), Some(fs.as_str()));
            assert_eq!(signature.label.as_deref(), Some("data"));
            signature.uuid.expect("new filesystem has a UUID")
        }
        Probe::Empty => panic!("no filesystem after the format"),
    };
    assert_eq!(
        tools
            .format_if_empty(device, fs, &MkfsOptions::default(), soon())
            .await
            .unwrap(),
        FormatOutcome::AlreadyFormatted {
            fs_type: fs.to_string(),
            uuid: Some(uuid.clone())
        }
    );

    // Stage: mount the filesystem, write and read through it.
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    assert_eq!(state(&staging).await, MountState::NotMounted);
    mounts.push(&staging);
    mount_filesystem(
        device,
        &staging,
        fs.as_str(),
        &MountOptions::parse(["noatime"]).unwrap(),
        soon(),
    )
    .await
    .unwrap();
    assert_eq!(state(&staging).await, MountState::Mounted);
    std::fs::write(staging.join("hello"), b"persisted").unwrap();
    assert_eq!(std::fs::read(staging.join("hello")).unwrap(), b"persisted");
    assert!(is_claimed_exclusively(device, soon()).await.unwrap());

    let stats = filesystem_stats(&staging, soon()).await.unwrap();
    assert!(
        stats.total_bytes > size / 2 && stats.total_bytes <= size,
        "{stats:?}"
    );
    assert!(stats.used_bytes > 0 && stats.available_bytes < stats.total_bytes);
    assert!(stats.total_inodes > 0 && stats.used_inodes > 0);

    // Publish: a read-only bind mount that the table sees, on the same device.
    let publish = dir.path().join("publish");
    std::fs::create_dir(&publish).unwrap();
    mounts.push(&publish);
    bind_mount(
        &staging,
        &publish,
        &MountOptions::default().read_only(),
        soon(),
    )
    .await
    .unwrap();
    let devnum = device_number_of_node(device).unwrap();
    let table = read_self_mount_table(soon()).await.unwrap();
    let published = table.top_at(&publish).expect("bind mount in mountinfo");
    assert!(published.is_read_only());
    assert_eq!(published.device, devnum);
    assert_eq!(published.fs_type, fs.as_str());
    assert!(!table.top_at(&staging).unwrap().is_read_only());
    assert_eq!(table.mount_count(devnum), 2);
    assert_eq!(std::fs::read(publish.join("hello")).unwrap(), b"persisted");
    let denied = std::fs::write(publish.join("new"), b"x").unwrap_err();
    assert_eq!(
        denied.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );

    // Remount the publish read-write, then back: per-mount flags only.
    remount(
        &publish,
        &MountOptions::parse(["rw"]).unwrap(),
        RemountScope::MountPoint,
        soon(),
    )
    .await
    .unwrap();
    std::fs::write(publish.join("via-publish"), b"rw now").unwrap();
    remount(
        &publish,
        &MountOptions::default().read_only(),
        RemountScope::MountPoint,
        soon(),
    )
    .await
    .unwrap();
    assert!(std::fs::write(publish.join("again"), b"x").is_err());

    // A busy mount refuses a normal unmount, and nothing is removed while mounted.
    let held = std::fs::File::open(publish.join("hello")).unwrap();
    let busy = unmount(&publish, UnmountMode::Normal, soon()).await;
    assert!(matches!(busy, Err(Error::Busy { .. })), "{busy:?}");
    let table = read_self_mount_table(soon()).await.unwrap();
    assert!(matches!(
        remove_empty_dir(&publish, &table, soon()).await,
        Err(Error::IsMountPoint { .. })
    ));
    drop(held);

    // Teardown mirrors setup. The kernel may still count the closed file for a moment on a
    // busy machine (seen once in CI): a bounded wait, as a CO's retry would give it.
    let mut tries = 0;
    let unmounted = loop {
        match unmount(&publish, UnmountMode::Normal, soon()).await {
            Err(Error::Busy { .. }) if tries < 20 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(unmounted, Unmounted::Done);
    assert_eq!(
        unmount(&publish, UnmountMode::Normal, soon())
            .await
            .unwrap(),
        Unmounted::NotMounted
    );
    let table = read_self_mount_table(soon()).await.unwrap();
    assert_eq!(
        remove_empty_dir(&publish, &table, soon()).await.unwrap(),
        Removed::Removed
    );

    // Growth: a bigger backing file, the loop told, the filesystem grown (online where the
    // kernel lets us: ext4's online resize needs CAP_SYS_RESOURCE, which some sandboxes drop).
    disk.grow(grown).await;
    assert_eq!(block_device_size(device, soon()).await.unwrap(), grown);
    if fs == FsType::Ext4 && !has_capability(CAP_SYS_RESOURCE) {
        eprintln!("note: no CAP_SYS_RESOURCE here; growing ext4 offline");
        unmount(&staging, UnmountMode::Normal, soon())
            .await
            .unwrap();
        tools.grow(fs, device, None, soon()).await.unwrap();
        let defaults = MountOptions::default();
        mount_filesystem(device, &staging, fs.as_str(), &defaults, soon())
            .await
            .unwrap();
    } else {
        tools
            .grow(fs, device, Some(&staging), soon())
            .await
            .unwrap();
    }
    let after = filesystem_stats(&staging, soon()).await.unwrap();
    assert!(
        after.total_bytes > stats.total_bytes + (grown - size) / 2,
        "{stats:?} -> {after:?}"
    );
    assert_eq!(std::fs::read(staging.join("hello")).unwrap(), b"persisted");

    assert_eq!(
        unmount(&staging, UnmountMode::Normal, soon())
            .await
            .unwrap(),
        Unmounted::Done
    );
    assert!(!is_claimed_exclusively(device, soon()).await.unwrap());

    // A clone needs a new identity before it may be mounted beside its source.
    let fresh = tools
        .regenerate_uuid(fs, device, &staging, soon())
        .await
        .unwrap();
    assert_ne!(fresh, uuid);
    match tools.probe(device, soon()).await.unwrap() {
        Probe::Found(signature) => assert_eq!(signature.uuid.as_deref(), Some(fresh.as_str())),
        Probe::Empty => panic!("filesystem vanished"),
    }
    mount_filesystem(
        device,
        &staging,
        fs.as_str(),
        &MountOptions::default(),
        soon(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(staging.join("hello")).unwrap(), b"persisted");
    unmount(&staging, UnmountMode::Normal, soon())
        .await
        .unwrap();
    drop(mounts);
}

#[tokio::test]
async fn ext4_volume_lifecycle() {
    if !root_or_skip("ext4_volume_lifecycle") {
        return;
    }
    for tool in [
        "losetup",
        "mkfs.ext4",
        "blkid",
        "resize2fs",
        "e2fsck",
        "tune2fs",
    ] {
        require_tool(tool);
    }
    full_lifecycle(FsType::Ext4, 64 * MIB, 96 * MIB).await;
}

#[tokio::test]
async fn xfs_volume_lifecycle() {
    if !root_or_skip("xfs_volume_lifecycle") {
        return;
    }
    for tool in ["losetup", "mkfs.xfs", "blkid", "xfs_growfs", "xfs_admin"] {
        require_tool(tool);
    }
    // XFS refuses filesystems below 300 MiB; the backing file is sparse.
    full_lifecycle(FsType::Xfs, 320 * MIB, 400 * MIB).await;
}

#[tokio::test]
async fn blkid_failure_on_a_real_device_never_formats() {
    if !root_or_skip("blkid_failure_on_a_real_device_never_formats") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopDevice::attach(dir.path(), 16 * MIB).await;
    // A blkid that fails the way a device that is not ready makes it fail.
    let fake_blkid = dir.path().join("blkid");
    std::fs::write(
        &fake_blkid,
        "#!/bin/sh\necho 'probing failed' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &fake_blkid,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let tools = FsTools::new(ToolPaths {
        blkid: fake_blkid,
        ..ToolPaths::default()
    });
    let result = tools
        .format_if_empty(&disk.device, FsType::Ext4, &MkfsOptions::default(), soon())
        .await;
    assert!(
        matches!(result, Err(Error::ToolFailed { .. })),
        "{result:?}"
    );
    // The real blkid still finds nothing: mkfs never ran.
    assert_eq!(
        FsTools::default()
            .probe(&disk.device, soon())
            .await
            .unwrap(),
        Probe::Empty
    );
}

#[tokio::test]
async fn block_publish_by_device_node() {
    if !root_or_skip("block_publish_by_device_node") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopDevice::attach(dir.path(), 8 * MIB).await;
    let devnum = device_number_of_node(&disk.device).unwrap();
    let node = dir.path().join("publish-node");

    assert_eq!(
        create_block_node(&node, devnum, soon()).await.unwrap(),
        Created::Created
    );
    assert_eq!(
        create_block_node(&node, devnum, soon()).await.unwrap(),
        Created::AlreadyPresent
    );
    assert_eq!(
        inspect_block_node(&node, devnum).unwrap(),
        NodeState::Matches
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&node).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660);

    // Raw I/O through the new node reaches the same device.
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let mut through_node = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&node)
        .unwrap();
    through_node.seek(SeekFrom::Start(MIB)).unwrap();
    through_node.write_all(&pattern).unwrap();
    through_node.sync_all().unwrap();
    drop(through_node);
    let mut read_back = vec![0u8; pattern.len()];
    let mut direct = std::fs::File::open(&disk.device).unwrap();
    direct.seek(SeekFrom::Start(MIB)).unwrap();
    direct.read_exact(&mut read_back).unwrap();
    assert_eq!(read_back, pattern);
    // The device size seen through the node is the loop's.
    assert_eq!(block_device_size(&node, soon()).await.unwrap(), 8 * MIB);

    // A node for another device, or a file, at the path is never accepted or overwritten.
    let other = mounts::DeviceNumber::new(devnum.major, devnum.minor + 1000);
    assert!(matches!(
        create_block_node(&node, other, soon()).await,
        Err(Error::UnexpectedNode { .. })
    ));
    let file = dir.path().join("file");
    std::fs::write(&file, b"keep").unwrap();
    assert!(matches!(
        create_block_node(&file, devnum, soon()).await,
        Err(Error::UnexpectedNode { .. })
    ));
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");

    let table = read_self_mount_table(soon()).await.unwrap();
    assert_eq!(
        remove_device_node(&node, &table, soon()).await.unwrap(),
        Removed::Removed
    );
    assert_eq!(
        remove_device_node(&node, &table, soon()).await.unwrap(),
        Removed::AlreadyAbsent
    );
    // The device itself is untouched.
    let mut check = vec![0u8; pattern.len()];
    std::fs::File::open(&disk.device)
        .unwrap()
        .read_exact_at(&mut check, MIB)
        .unwrap();
    assert_eq!(check, pattern);
}

#[tokio::test]
async fn hidden_and_odd_mount_points_are_reported_not_guessed() {
    if !root_or_skip("hidden_and_odd_mount_points_are_reported_not_guessed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let outer = dir.path().join("outer");
    let inner = outer.join("inner");
    std::fs::create_dir_all(&inner).unwrap();
    let mut mounts = MountGuard::default();
    let tmpfs = |target: &Path| {
        let target = target.to_path_buf();
        async move {
            mount_filesystem(
                Path::new("/none"),
                &target,
                "tmpfs",
                &MountOptions::parse(["size=1m"]).unwrap(),
                soon(),
            )
            .await
        }
    };
    mounts.push(&inner);
    tmpfs(&inner).await.unwrap();
    // Overmount the parent: the table still lists `inner`, but the path no longer leads to it.
    mounts.push(&outer);
    tmpfs(&outer).await.unwrap();
    assert!(matches!(state(&inner).await, MountState::Stale { .. }));
    let table = read_self_mount_table(soon()).await.unwrap();
    assert!(remove_empty_dir(&inner, &table, soon()).await.is_err());

    // A path below a regular file is an error, not "not mounted".
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let table = read_self_mount_table(soon()).await.unwrap();
    assert!(matches!(
        mount_state(&file.join("below"), &table, soon()).await,
        Err(Error::Io { .. })
    ));

    // A mount reached through a symlinked parent is still recognised.
    std::os::unix::fs::symlink(dir.path(), dir.path().join("alias")).unwrap();
    assert_eq!(
        state(&dir.path().join("alias").join("outer")).await,
        MountState::Mounted
    );
    drop(mounts);
}

#[tokio::test]
async fn repeated_bind_mounts_show_up_as_a_crowd() {
    if !root_or_skip("repeated_bind_mounts_show_up_as_a_crowd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    let mut mounts = MountGuard::default();
    for index in 0..5 {
        let target = dir.path().join(format!("t{index}"));
        std::fs::create_dir(&target).unwrap();
        mounts.push(&target);
        bind_mount(&source, &target, &MountOptions::default(), soon())
            .await
            .unwrap();
    }
    let table = read_self_mount_table(soon()).await.unwrap();
    let device = mounts::stats::filesystem_device_of(&source).unwrap();
    let root_of_source = table.top_at(&dir.path().join("t0")).unwrap().root.clone();
    let crowd = table.crowded(5);
    assert!(
        crowd.iter().any(|group| group.device == device
            && group.root == root_of_source
            && group.count == 5),
        "{crowd:?}"
    );
    for index in 0..5 {
        unmount(
            &dir.path().join(format!("t{index}")),
            UnmountMode::Lazy,
            soon(),
        )
        .await
        .unwrap();
    }
    drop(mounts);
}
