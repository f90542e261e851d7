//! The generated message types: wire encoding, round trips, and `Debug`
//! output that never shows secret values.

use std::collections::{BTreeSet, HashMap};

use csi::v1::{
    CapacityRange, CreateVolumeRequest, NodeGetInfoResponse, NodeStageVolumeRequest,
    VolumeCapability, volume_capability,
};
use prost::Message;

fn strings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn mount_capability() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume {
                fs_type: "ext4".into(),
                mount_flags: vec!["noatime".into()],
                volume_mount_group: String::new(),
            },
        )),
        access_mode: Some(volume_capability::AccessMode {
            mode: volume_capability::access_mode::Mode::SingleNodeWriter.into(),
        }),
    }
}

#[test]
fn create_volume_request_round_trips_through_the_wire_format() {
    let request = CreateVolumeRequest {
        name: "pvc-0b6f".into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 10 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_capability()],
        parameters: strings(&[("pool", "nvme0")]),
        secrets: strings(&[("password", "hunter2")]),
        mutable_parameters: strings(&[("qos", "gold")]),
        ..Default::default()
    };
    let bytes = request.encode_to_vec();
    let decoded = CreateVolumeRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(decoded, request);
}

#[test]
fn fields_encode_with_the_spec_numbers() {
    // node_id = 1 (string), max_volumes_per_node = 2 (int64).
    let response = NodeGetInfoResponse {
        node_id: "n1".into(),
        max_volumes_per_node: 3,
        accessible_topology: None,
    };
    assert_eq!(response.encode_to_vec(), [0x0a, 2, b'n', b'1', 0x10, 3]);

    // volume_context = 6 (map entry: key = 1, value = 2).
    let stage = NodeStageVolumeRequest {
        volume_context: strings(&[("k", "v")]),
        ..Default::default()
    };
    assert_eq!(
        stage.encode_to_vec(),
        [0x32, 6, 0x0a, 1, b'k', 0x12, 1, b'v']
    );
}

/// Formats a message of each listed type holding a secret and checks the
/// value never shows while the key and the other fields still do; returns the
/// type names covered.
macro_rules! check_redacted {
    ($($ty:ident),+ $(,)?) => {{
        let mut covered = BTreeSet::new();
        $(
            let mut message = csi::v1::$ty::default();
            message.secrets.insert("password".to_owned(), "s3cr3t-value".to_owned());
            let shown = format!("{message:?}");
            assert!(!shown.contains("s3cr3t-value"), "{} leaks a secret: {shown}", stringify!($ty));
            assert!(shown.contains("password"), "{} hides secret key names: {shown}", stringify!($ty));
            assert!(shown.starts_with(stringify!($ty)), "unexpected Debug output: {shown}");
            covered.insert(stringify!($ty).to_owned());
        )+
        covered
    }};
}

#[test]
fn debug_output_of_every_secret_bearing_message_hides_secret_values() {
    let covered = check_redacted!(
        ControllerExpandVolumeRequest,
        ControllerModifyVolumeRequest,
        ControllerPublishVolumeRequest,
        ControllerUnpublishVolumeRequest,
        CreateSnapshotRequest,
        CreateVolumeGroupSnapshotRequest,
        CreateVolumeRequest,
        DeleteSnapshotRequest,
        DeleteVolumeGroupSnapshotRequest,
        DeleteVolumeRequest,
        GetMetadataAllocatedRequest,
        GetMetadataDeltaRequest,
        GetSnapshotRequest,
        GetVolumeGroupSnapshotRequest,
        ListSnapshotsRequest,
        NodeExpandVolumeRequest,
        NodePublishVolumeRequest,
        NodeStageVolumeRequest,
        ValidateVolumeCapabilitiesRequest,
    );

    // The list above must be every message the descriptor marks as holding secrets.
    let pool = prost_reflect::DescriptorPool::decode(csi::FILE_DESCRIPTOR_SET).unwrap();
    let secret = pool.get_extension_by_name("csi.v1.csi_secret").unwrap();
    let with_secrets: BTreeSet<String> = pool
        .all_messages()
        .filter(|m| {
            m.fields()
                .any(|f| f.options().get_extension(&secret).as_bool() == Some(true))
        })
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(covered, with_secrets);
}

#[test]
fn redacted_debug_still_shows_ordinary_fields() {
    let request = NodeStageVolumeRequest {
        volume_id: "vol-7".into(),
        staging_target_path: "/var/lib/kubelet/staging/vol-7".into(),
        volume_capability: Some(mount_capability()),
        secrets: strings(&[("chap-secret", "do-not-print")]),
        volume_context: strings(&[("nqn", "nqn.2000-02.com.mikrotik:vol-7")]),
        ..Default::default()
    };
    let shown = format!("{request:?}");
    for visible in [
        "vol-7",
        "/var/lib/kubelet/staging/vol-7",
        "ext4",
        "chap-secret",
        "nqn.2000-02.com.mikrotik:vol-7",
    ] {
        assert!(shown.contains(visible), "missing {visible:?} in {shown}");
    }
    assert!(!shown.contains("do-not-print"), "secret leaked: {shown}");
}
