//! Upgrade from the Go driver, node side, as root with the loop fabric: a volume the Go driver
//! formatted and filled is staged from its PV's volume attributes and its VolumeAttachment's
//! publish context without being formatted again; and a volume the Go node plugin staged and
//! published (so without a record of ours) is taken over and torn down by this one.

mod node_common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use csi::v1::{NodeStageVolumeRequest, VolumeCapability};
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use mounts::fixtures::{require_tool, root_or_skip};
use node_common::loop_lab::{LoopLab, loops_over, stats_request, table};
use node_common::{MIB, expect_code, publish_request, unpublish_request, unstage_request};
use tonic::Code;

/// The filesystem UUID the "Go driver" gave the volume: a reformat would change it.
const GO_FS_UUID: &str = "0f5e2d4c-3b1a-4987-a6c5-d4e3f2a1b0c9";
const GO_FILE: &str = "written-by-the-go-driver.txt";
const GO_DATA: &str = "data that must survive the upgrade\n";

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!(
        "{}/tests/fixtures/go-driver/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect(name)
}

/// The Go PV's volume handle and attributes, and the publish context its attacher recorded.
fn go_volume() -> (String, HashMap<String, String>, HashMap<String, String>) {
    let pv: PersistentVolume = fixture("pv-filesystem.json");
    let csi = pv.spec.unwrap().csi.unwrap();
    let va: VolumeAttachment = fixture("volumeattachment.json");
    assert_eq!(
        va.spec.source.persistent_volume_name.as_ref(),
        Some(&csi.volume_handle)
    );
    let publish = va.status.unwrap().attachment_metadata.unwrap();
    (
        csi.volume_handle,
        csi.volume_attributes.unwrap().into_iter().collect(),
        publish.into_iter().collect(),
    )
}

fn ext4_rwo() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter.into(),
        }),
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The backing image as the Go node left it after its first stage: ext4 holding a file
/// (`mkfs -d` fills it without mounting), in the exported image of the volume.
fn exported_go_volume(lab: &LoopLab, id: &str) -> std::path::PathBuf {
    let backing = lab.export(id, 64 * MIB);
    let seed = lab.path("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join(GO_FILE), GO_DATA).unwrap();
    let (backing_s, seed_s) = (backing.display().to_string(), seed.display().to_string());
    run(
        "mkfs.ext4",
        &["-q", "-F", "-U", GO_FS_UUID, "-d", &seed_s, &backing_s],
    );
    backing
}

fn fs_uuid(image: &Path) -> String {
    run(
        "blkid",
        &[
            "-p",
            "-o",
            "value",
            "-s",
            "UUID",
            &image.display().to_string(),
        ],
    )
    .trim()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_driver_ext4_volume_is_staged_from_its_pv_without_formatting() {
    if !root_or_skip("a_go_driver_ext4_volume_is_staged_from_its_pv_without_formatting") {
        return;
    }
    require_tool("mkfs.ext4");
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let (id, attributes, publish_context) = go_volume();
    let backing = exported_go_volume(&lab, &id);
    let staging = lab.staging(&id);

    // Exactly what kubelet sends after the switch: the PV's attributes as they are, the Go
    // attacher's publish context (keys this driver does not use).
    let stage = NodeStageVolumeRequest {
        volume_id: id.clone(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(ext4_rwo()),
        volume_context: attributes,
        publish_context,
        ..Default::default()
    };
    expect_code(client.node_stage_volume(stage).await, Code::Ok);
    assert!(lab.staged_record(&id).is_some(), "a record of ours is kept");
    let target = lab.fs_target(&id, "pod-a");
    let publish = publish_request(&id, &staging, &target, ext4_rwo(), false);
    expect_code(client.node_publish_volume(publish).await, Code::Ok);

    // The Go driver's filesystem and file, untouched.
    assert_eq!(
        std::fs::read_to_string(target.join(GO_FILE)).unwrap(),
        GO_DATA
    );
    std::fs::write(target.join("after-upgrade"), "ok").unwrap();

    expect_code(
        client
            .node_unpublish_volume(unpublish_request(&id, &target))
            .await,
        Code::Ok,
    );
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
    assert!(loops_over(&backing).is_empty(), "detached");
    assert_eq!(fs_uuid(&backing), GO_FS_UUID, "never reformatted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_the_go_node_staged_is_taken_over_and_torn_down() {
    if !root_or_skip("a_volume_the_go_node_staged_is_taken_over_and_torn_down") {
        return;
    }
    require_tool("mkfs.ext4");
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let (id, attributes, publish_context) = go_volume();
    let backing = exported_go_volume(&lab, &id);
    let staging = lab.staging(&id);
    let target = lab.fs_target(&id, "pod-a");

    // What the Go node plugin left behind when it was replaced: the device attached (in the
    // kernel, not in the plugin), mounted at the staging path, bind-mounted into the pod.
    let device = run(
        "losetup",
        &["--find", "--show", &backing.display().to_string()],
    );
    let device = device.trim();
    let (staging_s, target_s) = (staging.display().to_string(), target.display().to_string());
    run("mount", &["-t", "ext4", device, &staging_s]);
    std::fs::create_dir_all(&target).unwrap();
    run("mount", &["--bind", &staging_s, &target_s]);
    assert!(lab.staged_record(&id).is_none(), "nothing of ours yet");

    // kubelet asks the new plugin for the pod's volume statistics...
    let stats = client
        .node_get_volume_stats(stats_request(&id, &target))
        .await
        .unwrap()
        .into_inner();
    assert!(stats.usage.iter().any(|u| u.total > 0), "{stats:?}");
    // ...and, after its own restart, stages it again: adopted as it is, not mounted twice.
    let stage = NodeStageVolumeRequest {
        volume_id: id.clone(),
        staging_target_path: staging_s.clone(),
        volume_capability: Some(ext4_rwo()),
        volume_context: attributes,
        publish_context,
        ..Default::default()
    };
    expect_code(client.node_stage_volume(stage).await, Code::Ok);
    assert!(lab.staged_record(&id).is_some(), "adopted");
    let table = table().await;
    assert_eq!(
        table
            .entries()
            .iter()
            .filter(|e| e.mount_point == staging)
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_to_string(target.join(GO_FILE)).unwrap(),
        GO_DATA
    );

    // The pod goes away: this plugin unpublishes and unstages what the Go one set up.
    expect_code(
        client
            .node_unpublish_volume(unpublish_request(&id, &target))
            .await,
        Code::Ok,
    );
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
    let table = node_common::loop_lab::table().await;
    assert!(table.top_at(&staging).is_none() && table.top_at(&target).is_none());
    assert!(loops_over(&backing).is_empty(), "detached");
    assert_eq!(fs_uuid(&backing), GO_FS_UUID);
}
