//! A volume whose namespace the RDS replaced (as after a reboot of a device that does not keep
//! namespace identifiers), on this host as root with real loop devices and mounts: the loop
//! fabric reads the simulator's export record, so a record that now names another backing
//! file under a new namespace uuid, with a loop device attached over it, is what a host sees
//! when the kernel reconnects to a new namespace for the same disk.
//!
//! The node must say so in VolumeCondition, re-stage onto the new device only when it holds
//! the very filesystem staged (never formatting anything), point published paths at it, and
//! tear down cleanly.

mod node_common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mounts::DeviceNumber;
use mounts::fixtures::root_or_skip;
use node_common::loop_lab::*;
use node_common::*;
use tonic::Code;

const NEW_UUID: &str = "00000000-0000-4000-8000-0000000000bb";

/// Attaches a loop device over `file`, as the kernel makes a block device for a namespace.
fn attach_loop(file: &Path) -> (PathBuf, DeviceNumber) {
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "losetup: {out:?}");
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let device = DeviceNumber::from_raw(std::fs::metadata(&path).unwrap().rdev());
    (path, device)
}

/// `blkid -p -s UUID -o value`, or None when blkid finds nothing (exit 2).
fn fs_uuid(device: &Path) -> Option<String> {
    let out = Command::new("blkid")
        .args(["-p", "-s", "UUID", "-o", "value"])
        .arg(device)
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => Some(String::from_utf8(out.stdout).unwrap().trim().to_owned()),
        Some(2) => None,
        other => panic!("blkid exited {other:?}"),
    }
}

async fn device_at(path: &Path) -> Option<DeviceNumber> {
    let path = std::fs::canonicalize(path).unwrap();
    table().await.top_at(&path).map(|entry| entry.device)
}

async fn condition(
    client: &mut csi::v1::node_client::NodeClient<tonic::transport::Channel>,
    id: &str,
    path: &Path,
) -> (bool, String) {
    let stats = client
        .node_get_volume_stats(stats_request(id, path))
        .await
        .unwrap()
        .into_inner();
    let condition = stats.volume_condition.unwrap();
    (condition.abnormal, condition.message)
}

/// A copy of the disk's image behind a new file: the same data under a new namespace.
fn same_disk_new_namespace(lab: &LoopLab, id: &str, backing: &Path) -> (PathBuf, DeviceNumber) {
    let copy = lab.path(&format!("sim/files/storage-pool/{id}.renewed.img"));
    std::fs::copy(backing, &copy).unwrap();
    let attached = attach_loop(&copy);
    lab.replace_export(id, &copy, NEW_UUID);
    attached
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filesystem_volume_is_restaged_on_the_namespace_that_replaced_it() {
    if !root_or_skip("a_filesystem_volume_is_restaged_on_the_namespace_that_replaced_it") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(41);
    let backing = lab.export(&id, 64 * MIB);
    let staging = lab.staging(&id);
    let capability = mount_capability("ext4", &["noatime"]);
    let stage = stage_request(&id, &staging, capability.clone(), lab.context(&id));
    expect_code(client.node_stage_volume(stage.clone()).await, Code::Ok);
    let (old_loop, old_device) = loops_over(&backing)[0].clone();
    let staged_uuid = fs_uuid(&old_loop).expect("staged filesystem");
    let record = lab.staged_record(&id).expect("the stage is recorded");
    assert_eq!(record["device"], old_device.to_string());
    assert_eq!(record["layout"]["fs_uuid"], staged_uuid.as_str());
    assert_eq!(
        record["ids"]["uuid"],
        "00000000-0000-4000-8000-00000000000a"
    );

    let pod_a = lab.fs_target(&id, "pod-a");
    let publish = |target: &Path| publish_request(&id, &staging, target, capability.clone(), false);
    expect_code(client.node_publish_volume(publish(&pod_a)).await, Code::Ok);
    let data = pattern(2 * MIB as usize, 5);
    std::fs::write(pod_a.join("data"), &data).unwrap();
    Command::new("sync").status().unwrap();
    assert!(!condition(&mut client, &id, &pod_a).await.0);

    // The RDS comes back with a new namespace for the disk.
    let (new_loop, new_device) = same_disk_new_namespace(&lab, &id, &backing);
    let (abnormal, message) = condition(&mut client, &id, &pod_a).await;
    assert!(abnormal, "{message}");
    assert!(message.contains("new namespace"), "{message}");
    assert!(
        message.contains(&new_loop.display().to_string()),
        "{message}"
    );

    // A new pod's publish re-stages first, and reads the data written before.
    let pod_b = lab.fs_target(&id, "pod-b");
    expect_code(client.node_publish_volume(publish(&pod_b)).await, Code::Ok);
    assert_eq!(std::fs::read(pod_b.join("data")).unwrap(), data);
    assert_eq!(device_at(&staging).await, Some(new_device));
    assert_eq!(device_at(&pod_b).await, Some(new_device));
    // The older pod's path points at the new namespace too (for its restarted containers),
    // and its condition says that running containers must be restarted.
    assert_eq!(device_at(&pod_a).await, Some(new_device));
    let (abnormal, message) = condition(&mut client, &id, &pod_a).await;
    assert!(
        abnormal && message.contains("must be restarted"),
        "{message}"
    );
    let (abnormal, message) = condition(&mut client, &id, &pod_b).await;
    assert!(!abnormal, "{message}");
    // Nothing was formatted: the new device carries the staged filesystem.
    assert_eq!(fs_uuid(&new_loop).as_deref(), Some(staged_uuid.as_str()));
    // The dead filesystem stays under the new mounts (staging and pod-a's path), never
    // without a mount on top, until the volume is unpublished and unstaged.
    assert_eq!(table().await.mount_count(old_device), 2);
    let record = lab.staged_record(&id).unwrap();
    assert_eq!(record["device"], new_device.to_string());
    assert_eq!(record["recoveries"], 1);
    assert_eq!(record["ids"]["uuid"], NEW_UUID);

    // A path left on the dead filesystem (here: its new mount removed) is pointed at the
    // volume again by the next check, which another pod's publish runs.
    assert!(
        Command::new("umount")
            .arg(&pod_a)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(device_at(&pod_a).await, Some(old_device));
    let pod_c = lab.fs_target(&id, "pod-c");
    expect_code(client.node_publish_volume(publish(&pod_c)).await, Code::Ok);
    assert_eq!(device_at(&pod_a).await, Some(new_device));
    assert_eq!(std::fs::read(pod_a.join("data")).unwrap(), data);

    // A stage retried now is already done; teardown is clean.
    expect_code(client.node_stage_volume(stage).await, Code::Ok);
    for target in [&pod_a, &pod_b, &pod_c] {
        expect_code(
            client
                .node_unpublish_volume(unpublish_request(&id, target))
                .await,
            Code::Ok,
        );
    }
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
    assert!(
        lab.staged_record(&id).is_none(),
        "the record goes with the stage"
    );
    assert!(!table().await.is_mount_point(&staging));
    let after = table().await;
    assert_eq!(
        after.mount_count(old_device) + after.mount_count(new_device),
        0
    );
    assert!(loops_over(&new_loop_backing(&lab, &id)).is_empty());
}

fn new_loop_backing(lab: &LoopLab, id: &str) -> PathBuf {
    lab.path(&format!("sim/files/storage-pool/{id}.renewed.img"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_without_the_staged_filesystem_is_never_formatted_or_mounted() {
    if !root_or_skip("a_replacement_without_the_staged_filesystem_is_never_formatted_or_mounted") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(42);
    lab.export(&id, 32 * MIB);
    let staging = lab.staging(&id);
    let capability = mount_capability("ext4", &[]);
    let stage = stage_request(&id, &staging, capability.clone(), lab.context(&id));
    expect_code(client.node_stage_volume(stage).await, Code::Ok);
    let old_device = device_at(&staging).await.unwrap();
    let pod_a = lab.fs_target(&id, "pod-a");
    let publish = |target: &Path| publish_request(&id, &staging, target, capability.clone(), false);
    expect_code(client.node_publish_volume(publish(&pod_a)).await, Code::Ok);

    // An empty disk comes back under the volume's NQN.
    let empty = lab.path("sim/files/storage-pool/empty.img");
    std::fs::File::create(&empty)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    let (empty_loop, _) = attach_loop(&empty);
    lab.replace_export(&id, &empty, NEW_UUID);
    let pod_b = lab.fs_target(&id, "pod-b");
    let refused = client
        .node_publish_volume(publish(&pod_b))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("reads as empty"),
        "{}",
        refused.message()
    );
    assert_eq!(fs_uuid(&empty_loop), None, "never formatted");
    assert_eq!(
        device_at(&staging).await,
        Some(old_device),
        "left as it was"
    );
    let (abnormal, message) = condition(&mut client, &id, &pod_a).await;
    assert!(
        abnormal && message.contains("the last attempt failed"),
        "{message}"
    );

    // Another ext4 filesystem (another UUID): not the volume's, left alone.
    let other = lab.path("sim/files/storage-pool/other.img");
    std::fs::File::create(&other)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    assert!(
        Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&other)
            .status()
            .unwrap()
            .success()
    );
    let (other_loop, _) = attach_loop(&other);
    let other_uuid = fs_uuid(&other_loop);
    lab.replace_export(&id, &other, "00000000-0000-4000-8000-0000000000cc");
    let refused = client
        .node_publish_volume(publish(&pod_b))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("UUID"), "{}", refused.message());
    assert_eq!(fs_uuid(&other_loop), other_uuid);
    assert_eq!(device_at(&staging).await, Some(old_device));

    // The dead staging mount still unstages once the pod is gone.
    expect_code(
        client
            .node_unpublish_volume(unpublish_request(&id, &pod_a))
            .await,
        Code::Ok,
    );
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
    assert!(!table().await.is_mount_point(&staging));
    assert!(lab.staged_record(&id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_check_renumbers_a_published_block_volume() {
    if !root_or_skip("the_background_check_renumbers_a_published_block_volume") {
        return;
    }
    let lab = LoopLab::with_health_check(Duration::from_millis(100)).await;
    let mut client = lab.client();
    let id = volume_id(43);
    let backing = lab.export(&id, 16 * MIB);
    let staging = lab.staging(&id);
    let capability = block_capability();
    let stage = stage_request(&id, &staging, capability.clone(), lab.context(&id));
    expect_code(client.node_stage_volume(stage).await, Code::Ok);
    let vm = lab.block_target(&id, "vm-pod");
    let publish = publish_request(&id, &staging, &vm, capability.clone(), false);
    // The background check holds the volume's lock while it looks: a call meeting it is
    // answered ABORTED and retried, as a CO does.
    let publish = as_a_co_retries(|| {
        let (mut client, publish) = (client.clone(), publish.clone());
        async move { client.node_publish_volume(publish).await }
    });
    expect_code(publish.await, Code::Ok);
    let data = pattern(MIB as usize, 9);
    {
        let mut node = std::fs::OpenOptions::new().write(true).open(&vm).unwrap();
        node.seek(SeekFrom::Start(MIB)).unwrap();
        node.write_all(&data).unwrap();
        node.sync_all().unwrap();
    }
    let old_device = loops_over(&backing)[0].1;
    let rdev = |path: &Path| {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert!(meta.file_type().is_block_device());
        (DeviceNumber::from_raw(meta.rdev()), meta.mode() & 0o777)
    };
    assert_eq!(rdev(&vm), (old_device, 0o660));

    let (_, new_device) = same_disk_new_namespace(&lab, &id, &backing);
    // No call is made: the background check finds and fixes it.
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while rdev(&vm).0 != new_device {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the device node was not renumbered");
    assert_eq!(rdev(&vm), (new_device, 0o660), "same mode");
    // The check saves what it re-pointed after the device node changed: wait for the record,
    // the fact the volume's condition is judged from.
    let republished = |record: Option<serde_json::Value>| {
        record.is_some_and(|r| {
            r["republished"]
                .as_array()
                .is_some_and(|paths| paths.iter().any(|p| p.as_str() == vm.to_str()))
        })
    };
    let recorded = tokio::time::timeout(Duration::from_secs(20), async {
        while !republished(lab.staged_record(&id)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        recorded.is_ok(),
        "the record does not say the device node was re-pointed"
    );
    let mut back = vec![0u8; data.len()];
    let mut node = std::fs::File::open(&vm).unwrap();
    node.seek(SeekFrom::Start(MIB)).unwrap();
    node.read_exact(&mut back).unwrap();
    assert_eq!(back, data, "the new namespace carries the data");
    drop(node);
    let (abnormal, message) = condition(&mut client, &id, &vm).await;
    assert!(
        abnormal && message.contains("must be restarted"),
        "{message}"
    );

    let unpublish = as_a_co_retries(|| {
        let (mut client, request) = (client.clone(), unpublish_request(&id, &vm));
        async move { client.node_unpublish_volume(request).await }
    });
    expect_code(unpublish.await, Code::Ok);
    let unstage = as_a_co_retries(|| {
        let (mut client, request) = (client.clone(), unstage_request(&id, &staging));
        async move { client.node_unstage_volume(request).await }
    });
    expect_code(unstage.await, Code::Ok);
    assert!(lab.staged_record(&id).is_none());
}

#[tokio::test]
async fn records_of_volumes_no_longer_staged_are_forgotten_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let record = |id: &str, staging: &str, layout: serde_json::Value| {
        let record = serde_json::json!({
            "format": 1,
            "volume_id": id,
            "nqn": nqn_of(id),
            "staging": staging,
            "layout": layout,
            "device": "259:1",
            "device_path": "/dev/nvme0n1",
            "ids": {"uuid": "00000000-0000-4000-8000-00000000000a"},
            "context": {},
            "staged_at": 1,
        });
        std::fs::write(
            state.join(format!("{id}.json")),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
    };
    let ext4 = serde_json::json!({"kind": "filesystem", "fs_type": "ext4", "fs_uuid": null,
        "mount_flags": [], "read_only": false});
    // "/" is always a mount point: still staged. The others are not (a node reboot).
    record(&volume_id(51), "/", ext4.clone());
    let gone = dir.path().join("unmounted");
    std::fs::create_dir_all(&gone).unwrap();
    record(&volume_id(52), gone.to_str().unwrap(), ext4);
    record(
        &volume_id(53),
        "/nowhere",
        serde_json::json!({"kind": "block"}),
    );
    let sim = dir.path().join("sim");
    std::fs::create_dir_all(&sim).unwrap();
    let records = driver::node::Records::open(&state).unwrap();
    let service = driver::node::NodeService::new(
        driver::node::NodeConfig::new("node-1", PREFIX),
        std::sync::Arc::new(driver::node::LoopFabric::new(&sim)),
        records,
    );
    service.forget_unstaged().await;
    let left: Vec<String> = service
        .records()
        .all()
        .into_iter()
        .map(|r| r.volume_id)
        .collect();
    assert_eq!(left, vec![volume_id(51)]);
    let files: Vec<_> = std::fs::read_dir(&state).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "the forgotten records' files are gone");
}

fn pod(name: &str, node: &str, owned: bool) -> k8s_openapi::api::core::v1::Pod {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let mut pod = k8s_openapi::api::core::v1::Pod::default();
    pod.metadata.name = Some(name.into());
    pod.metadata.namespace = Some("apps".into());
    if owned {
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-5d8f".into(),
            uid: "3f0e6a52-7c1b-4d2e-9a8f-0b1c2d3e4f50".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
    }
    pod.spec = Some(k8s_openapi::api::core::v1::PodSpec {
        node_name: Some(node.into()),
        ..Default::default()
    });
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_left_on_a_replaced_namespace_get_an_event_and_owned_ones_are_deleted_on_request() {
    if !root_or_skip(
        "pods_left_on_a_replaced_namespace_get_an_event_and_owned_ones_are_deleted_on_request",
    ) {
        return;
    }
    use k8s_openapi::api::core::v1::Pod;
    let cluster = kube_fake::FakeApiServer::new();
    let owned = cluster.insert(&pod("web-0", "node-1", true)).unwrap();
    let bare = cluster.insert(&pod("debug", "node-1", false)).unwrap();
    // Same UID shape, another node: never looked at, whatever its paths say.
    let elsewhere = cluster.insert(&pod("web-1", "node-2", true)).unwrap();
    let uid = |pod: &Pod| pod.metadata.uid.clone().unwrap();
    let pods = driver::node::ClusterPods::new(
        cluster.client(),
        "node-1",
        driver::node::PodRecovery::Delete,
    );
    let lab = LoopLab::with_cluster_pods(pods).await;
    let mut client = lab.client();
    let id = volume_id(44);
    let backing = lab.export(&id, 32 * MIB);
    let staging = lab.staging(&id);
    let capability = mount_capability("ext4", &[]);
    let stage = stage_request(&id, &staging, capability.clone(), lab.context(&id));
    expect_code(client.node_stage_volume(stage).await, Code::Ok);
    let publish = |target: &Path| publish_request(&id, &staging, target, capability.clone(), false);
    for running in [&owned, &bare, &elsewhere] {
        let target = lab.kubelet_fs_target(&id, &uid(running));
        expect_code(client.node_publish_volume(publish(&target)).await, Code::Ok);
    }
    same_disk_new_namespace(&lab, &id, &backing);
    let newcomer = lab.kubelet_fs_target(&id, "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f");
    expect_code(
        client.node_publish_volume(publish(&newcomer)).await,
        Code::Ok,
    );

    // The owned pod is gone (its controller makes it again); the bare one stays, told why;
    // the other node's pod is untouched.
    assert!(cluster.get::<Pod>(Some("apps"), "web-0").is_none());
    assert!(cluster.get::<Pod>(Some("apps"), "debug").is_some());
    assert!(cluster.get::<Pod>(Some("apps"), "web-1").is_some());
    let events = cluster.list::<k8s_openapi::api::events::v1::Event>(Some("apps"));
    let about: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let regarding = e.regarding.clone().unwrap_or_default();
            (
                regarding.name.unwrap_or_default(),
                e.note.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(about.len(), 2, "{about:?}");
    for (name, note) in &about {
        assert!(note.contains(&id), "{note}");
        match name.as_str() {
            "web-0" => assert!(note.contains("deleting the pod"), "{note}"),
            "debug" => assert!(note.contains("restart the pod"), "{note}"),
            other => panic!("event about {other}"),
        }
    }
    assert!(
        events
            .iter()
            .all(|e| e.reason.as_deref() == Some("VolumeNamespaceReplaced")
                && e.type_.as_deref() == Some("Warning"))
    );
    // Only this node's pods were asked for.
    assert!(
        cluster
            .requests()
            .iter()
            .any(|r| r.query.contains("spec.nodeName"))
    );
}
