//! Upgrade from the Go driver: its objects, as its chart and controller made them
//! (`tests/fixtures/go-driver/`), served by this driver. StorageClass parameters and PV volume
//! contexts are parsed by our rules; the disks it left on the RDS (added with its own
//! `/disk add` arguments) are found, checked, grown and deleted by our controller over a real
//! socket against the simulator. The node side is in `go_upgrade_node.rs`.

mod common;

use std::collections::HashMap;

use common::{GIB, Harness, Options, expect_code, timed};
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use csi::v1::{
    CapacityRange, ControllerExpandVolumeRequest, ControllerGetVolumeRequest,
    DeleteSnapshotRequest, ListSnapshotsRequest, ListVolumesRequest,
    ValidateVolumeCapabilitiesRequest, VolumeCapability,
};
use driver::config::{DEFAULT_DRIVER_NAME, DEFAULT_NQN_PREFIX};
use driver::naming;
use driver::params::{ParamError, VolumeContext, VolumeParams};
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::StorageClass;
use routeros::quote::quote;
use serde_json::Value;
use tonic::Code;

/// The base path of the Go chart's default `rds.basePath`, as our chart's
/// `rds.volumeBasePath` names it for such an install.
const GO_BASE_PATH: &str = "storage-pool/metal-csi";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/go-driver/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn storage_classes() -> Vec<StorageClass> {
    serde_json::from_str(&fixture("storageclasses.json")).expect("StorageClass objects")
}

fn pv(name: &str) -> PersistentVolume {
    serde_json::from_str(&fixture(name)).expect("a PersistentVolume")
}

/// The PV's volume handle and volume attributes (the Go CreateVolume's VolumeContext).
fn csi_source(pv: &PersistentVolume) -> (String, HashMap<String, String>) {
    let csi = pv.spec.as_ref().unwrap().csi.as_ref().expect("a CSI PV");
    assert_eq!(csi.driver, DEFAULT_DRIVER_NAME);
    let attributes = csi.volume_attributes.clone().unwrap_or_default();
    (csi.volume_handle.clone(), attributes.into_iter().collect())
}

/// The capability kubelet and the sidecars derive from the PV.
fn capability(pv: &PersistentVolume) -> VolumeCapability {
    let spec = pv.spec.as_ref().unwrap();
    let mode = match spec.access_modes.as_ref().unwrap()[0].as_str() {
        "ReadWriteOnce" => Mode::SingleNodeWriter,
        "ReadWriteMany" => Mode::MultiNodeMultiWriter,
        other => panic!("access mode {other}"),
    };
    let access_type = if spec.volume_mode.as_deref() == Some("Block") {
        AccessType::Block(BlockVolume {})
    } else {
        AccessType::Mount(MountVolume {
            fs_type: spec.csi.as_ref().unwrap().fs_type.clone().unwrap(),
            ..Default::default()
        })
    };
    VolumeCapability {
        access_type: Some(access_type),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

fn sc_parameters(sc: &StorageClass) -> HashMap<String, String> {
    sc.parameters.clone().unwrap().into_iter().collect()
}

#[test]
fn go_storage_classes_parse_as_this_drivers() {
    let classes = storage_classes();
    assert_eq!(classes.len(), 2);
    for sc in &classes {
        // Same provisioner name: the PVs and claims need no change.
        assert_eq!(sc.provisioner, DEFAULT_DRIVER_NAME);
        let p = VolumeParams::parse(&sc_parameters(sc)).expect("accepted as they are");
        assert_eq!(p.volume_path.as_deref(), Some(GO_BASE_PATH));
        assert_eq!(p.nvme_address.as_deref(), Some("10.42.68.1"));
        assert_eq!(p.nvme_port, Some(4420));
    }
}

#[test]
fn go_only_storage_class_keys_are_refused_by_name() {
    // The Go controller also read these from a StorageClass (its chart never wrote them):
    // here a StorageClass with one fails its claims with the key named, never silently.
    for key in ["rdsAddress", "sshPort", "fsType", "nqnPrefix"] {
        let params = HashMap::from([(key.to_owned(), "x".to_owned())]);
        let error = VolumeParams::parse(&params).unwrap_err();
        assert_eq!(error, ParamError::Unknown(key.to_owned()));
        assert!(error.to_string().contains(key), "{error}");
    }
}

#[test]
fn go_pv_contexts_parse_as_this_drivers() {
    for name in ["pv-filesystem.json", "pv-block-rwx.json"] {
        let pv = pv(name);
        let (id, attributes) = csi_source(&pv);
        // The volume id is the PV name, kept verbatim as the slot, image and NQN suffix.
        assert_eq!(Some(&id), pv.metadata.name.as_ref());
        assert!(naming::is_managed_volume_id(&id), "{id}");
        assert_eq!(naming::volume_id_for_name(&id), id);
        let context = VolumeContext::parse(&attributes).expect(name);
        assert_eq!(context.nqn, naming::nqn_for_volume(DEFAULT_NQN_PREFIX, &id));
        assert_eq!(context.nvme_address, "10.42.68.1");
        assert_eq!(context.nvme_port, 4420);
        // Its defaults, written into every context, are kept: reconnect forever, every 5 s,
        // the kernel's keep-alive ("0").
        assert_eq!(context.connect.ctrl_loss_tmo, Some(-1));
        assert_eq!(context.connect.reconnect_delay, Some(5));
        assert_eq!(context.connect.keep_alive_tmo, None);
        assert_eq!(context.migration_timeout_seconds, Some(300));
    }
}

/// Adds the disks the Go driver left on the RDS with its own arguments, in its order. It set no
/// `mount-filesystem`, so the device's default (yes) applies.
async fn add_go_disks(h: &Harness) -> (Vec<String>, String) {
    let disks: Value = serde_json::from_str(&fixture("rds-disks.json")).unwrap();
    let mut volumes = Vec::new();
    let mut sizes = HashMap::new();
    for v in disks["volumes"].as_array().unwrap() {
        let slot = v["slot"].as_str().unwrap();
        h.device_exec(&format!(
            "/disk add type=file file-path={} file-size={} slot={} nvme-tcp-export=yes \
             nvme-tcp-server-port={} nvme-tcp-server-nqn={}",
            quote(v["file-path"].as_str().unwrap()),
            v["file-size"],
            quote(slot),
            v["nvme-tcp-server-port"],
            quote(v["nvme-tcp-server-nqn"].as_str().unwrap()),
        ))
        .await;
        sizes.insert(slot.to_owned(), v["file-size"].as_u64().unwrap());
        volumes.push(slot.to_owned());
    }
    let snap = &disks["snapshots"][0];
    let slot = snap["slot"].as_str().unwrap();
    assert!(slot.starts_with("snap-"));
    // The Go driver used `copy-from=[find slot=<source>]`, which the simulator does not
    // know; the disk it asked for is this: unexported, the source's size.
    h.device_exec(&format!(
        "/disk add type=file file-path={} file-size={} slot={}",
        quote(snap["file-path"].as_str().unwrap()),
        sizes[snap["copy-from-slot"].as_str().unwrap()],
        quote(slot),
    ))
    .await;
    (volumes, slot.to_owned())
}

fn image_of(id: &str) -> String {
    format!("{GO_BASE_PATH}/{id}.img")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_controller_serves_the_go_drivers_volumes_and_lists_and_deletes_its_snapshots() {
    let h = Harness::with(Options {
        configure: |c| c.volume_base_path = GO_BASE_PATH.into(),
        ..Options::default()
    })
    .await;
    let (volumes, snap) = add_go_disks(&h).await;
    let mut controller = h.controller.clone();
    let fs_pv = pv("pv-filesystem.json");
    let (id, attributes) = csi_source(&fs_pv);
    assert_eq!(volumes[0], id);

    // Found; abnormal, and saying why: the Go driver left RouterOS's mount-filesystem on.
    let get = |controller: &mut csi::v1::controller_client::ControllerClient<_>| {
        let request = timed(ControllerGetVolumeRequest {
            volume_id: id.clone(),
        });
        let mut c = controller.clone();
        async move { c.controller_get_volume(request).await }
    };
    let got = get(&mut controller).await.unwrap().into_inner();
    assert_eq!(got.volume.as_ref().unwrap().capacity_bytes, GIB as i64);
    let condition = got.status.unwrap().volume_condition.unwrap();
    assert!(condition.abnormal);
    assert!(
        condition.message.contains("mount-filesystem"),
        "{}",
        condition.message
    );
    // The step docs/upgrade-from-go-driver.md gives makes it healthy.
    for slot in &volumes {
        h.device_exec(&format!(
            "/disk set [find where slot={}] mount-filesystem=no",
            quote(slot)
        ))
        .await;
    }
    let got = get(&mut controller).await.unwrap().into_inner();
    let condition = got.status.unwrap().volume_condition.unwrap();
    assert!(!condition.abnormal, "{}", condition.message);

    // What the sidecars send for the PVs: their capabilities, contexts and class parameters.
    let classes = storage_classes();
    for (name, class) in [("pv-filesystem.json", 0), ("pv-block-rwx.json", 1)] {
        let pv = pv(name);
        let (volume_id, volume_context) = csi_source(&pv);
        let answer = controller
            .validate_volume_capabilities(timed(ValidateVolumeCapabilitiesRequest {
                volume_id,
                volume_context,
                volume_capabilities: vec![capability(&pv)],
                parameters: sc_parameters(&classes[class]),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(answer.confirmed.is_some(), "{name}: {}", answer.message);
    }

    // external-provisioner retrying the claim's CreateVolume gets the same volume back.
    let retried = h
        .create(common::with_params(
            common::create_request(&id, GIB),
            &sc_parameters(&classes[0])
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        ))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(retried.volume_id, id);
    assert_eq!(retried.volume_context["nqn"], attributes["nqn"]);

    // Listed: the volumes, never the snapshot.
    let listed = controller
        .list_volumes(timed(ListVolumesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<_> = listed
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    ids.sort();
    let mut expected = volumes.clone();
    expected.sort();
    assert_eq!(ids, expected);

    // Grown in place.
    let grown = controller
        .controller_expand_volume(timed(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: (2 * GIB) as i64,
                limit_bytes: 0,
            }),
            volume_capability: Some(capability(&fs_pv)),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, (2 * GIB) as i64);
    assert!(grown.node_expansion_required);
    let state = h.sim.snapshot();
    assert_eq!(state.file_by_name(&image_of(&id)).unwrap().size, 2 * GIB);

    // A snapshot id is not a volume of this driver: a delete is a no-op that touches nothing.
    h.delete(&snap).await.unwrap();
    assert!(h.sim.snapshot().disk_by_slot(&snap).is_some());
    expect_code(
        controller
            .controller_get_volume(timed(ControllerGetVolumeRequest {
                volume_id: snap.clone(),
            }))
            .await,
        Code::NotFound,
    );

    // Deleted with their images; the snapshot and its image stay.
    for slot in &volumes {
        h.delete(slot).await.unwrap();
        let state = h.sim.snapshot();
        assert!(state.disk_by_slot(slot).is_none());
        assert!(state.file_by_name(&image_of(slot)).is_none());
    }
    assert!(h.sim.snapshot().disk_by_slot(&snap).is_some());

    // The Go driver's snapshot is listed, by its id too, with its source; restoring from it
    // is refused (copy-from copied no data); DeleteSnapshot removes its disk and image.
    let listed = controller
        .list_snapshots(timed(ListSnapshotsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let entry = listed.entries[0].snapshot.as_ref().unwrap();
    assert_eq!(listed.entries.len(), 1);
    assert_eq!(entry.snapshot_id, snap);
    assert_eq!(entry.source_volume_id, volumes[0]);
    assert!(entry.ready_to_use && entry.creation_time.is_some());
    let by_id = controller
        .list_snapshots(timed(ListSnapshotsRequest {
            snapshot_id: snap.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.entries.len(), 1);
    let restore = csi::v1::CreateVolumeRequest {
        volume_content_source: Some(csi::v1::VolumeContentSource {
            r#type: Some(csi::v1::volume_content_source::Type::Snapshot(
                csi::v1::volume_content_source::SnapshotSource {
                    snapshot_id: snap.clone(),
                },
            )),
        }),
        ..common::create_request("pvc-0e0e0e0e-0b7d-4e21-9a55-1d2c3b4a5f60", GIB)
    };
    let refused = expect_code(h.create(restore).await, Code::InvalidArgument);
    assert!(refused.contains("copy-from"), "{refused}");
    for _ in 0..2 {
        controller
            .delete_snapshot(timed(DeleteSnapshotRequest {
                snapshot_id: snap.clone(),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    let state = h.sim.snapshot();
    assert!(state.disk_by_slot(&snap).is_none());
    assert!(state.file_by_name(&image_of(&snap)).is_none());
    h.finish().await;
}
