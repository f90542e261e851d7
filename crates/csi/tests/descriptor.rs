//! Checks the compiled interface definition against the CSI specification:
//! field numbers and types, secret and alpha markers, services and methods.
//! Any drift in `proto/csi.proto` from the spec fails here.

use csi::{FILE_DESCRIPTOR_SET, SPEC_VERSION};
use prost_reflect::{
    Cardinality, DescriptorPool, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
};

fn pool() -> DescriptorPool {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("exported descriptor set decodes")
}

fn message(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
    pool.get_message_by_name(&format!("csi.v1.{name}"))
        .unwrap_or_else(|| panic!("message csi.v1.{name} missing"))
}

fn field(pool: &DescriptorPool, message_name: &str, field_name: &str) -> FieldDescriptor {
    message(pool, message_name)
        .get_field_by_name(field_name)
        .unwrap_or_else(|| panic!("field {message_name}.{field_name} missing"))
}

fn extension(pool: &DescriptorPool, name: &str) -> ExtensionDescriptor {
    pool.get_extension_by_name(&format!("csi.v1.{name}"))
        .unwrap_or_else(|| panic!("extension csi.v1.{name} missing"))
}

/// Shape of a field as the spec declares it, in a form easy to compare.
fn shape(field: &FieldDescriptor) -> String {
    if field.is_map() {
        return "map".to_owned();
    }
    let kind = match field.kind() {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        Kind::String => "string".to_owned(),
        Kind::Bool => "bool".to_owned(),
        Kind::Int32 => "int32".to_owned(),
        Kind::Int64 => "int64".to_owned(),
        other => format!("{other:?}"),
    };
    if field.cardinality() == Cardinality::Repeated {
        format!("repeated {kind}")
    } else {
        kind
    }
}

#[test]
fn field_numbers_and_types_match_the_spec() {
    let pool = pool();
    // (message, field, number, shape) for the messages this driver exchanges.
    let expected: &[(&str, &str, u32, &str)] = &[
        ("CreateVolumeRequest", "name", 1, "string"),
        (
            "CreateVolumeRequest",
            "capacity_range",
            2,
            "csi.v1.CapacityRange",
        ),
        (
            "CreateVolumeRequest",
            "volume_capabilities",
            3,
            "repeated csi.v1.VolumeCapability",
        ),
        ("CreateVolumeRequest", "parameters", 4, "map"),
        ("CreateVolumeRequest", "secrets", 5, "map"),
        (
            "CreateVolumeRequest",
            "volume_content_source",
            6,
            "csi.v1.VolumeContentSource",
        ),
        (
            "CreateVolumeRequest",
            "accessibility_requirements",
            7,
            "csi.v1.TopologyRequirement",
        ),
        ("CreateVolumeRequest", "mutable_parameters", 8, "map"),
        ("CreateVolumeResponse", "volume", 1, "csi.v1.Volume"),
        ("Volume", "capacity_bytes", 1, "int64"),
        ("Volume", "volume_id", 2, "string"),
        ("Volume", "volume_context", 3, "map"),
        ("Volume", "content_source", 4, "csi.v1.VolumeContentSource"),
        (
            "Volume",
            "accessible_topology",
            5,
            "repeated csi.v1.Topology",
        ),
        ("CapacityRange", "required_bytes", 1, "int64"),
        ("CapacityRange", "limit_bytes", 2, "int64"),
        (
            "VolumeCapability",
            "block",
            1,
            "csi.v1.VolumeCapability.BlockVolume",
        ),
        (
            "VolumeCapability",
            "mount",
            2,
            "csi.v1.VolumeCapability.MountVolume",
        ),
        (
            "VolumeCapability",
            "access_mode",
            3,
            "csi.v1.VolumeCapability.AccessMode",
        ),
        ("VolumeCapability.MountVolume", "fs_type", 1, "string"),
        (
            "VolumeCapability.MountVolume",
            "mount_flags",
            2,
            "repeated string",
        ),
        (
            "VolumeCapability.MountVolume",
            "volume_mount_group",
            3,
            "string",
        ),
        (
            "VolumeCapability.AccessMode",
            "mode",
            1,
            "csi.v1.VolumeCapability.AccessMode.Mode",
        ),
        (
            "VolumeContentSource",
            "snapshot",
            1,
            "csi.v1.VolumeContentSource.SnapshotSource",
        ),
        (
            "VolumeContentSource",
            "volume",
            2,
            "csi.v1.VolumeContentSource.VolumeSource",
        ),
        ("DeleteVolumeRequest", "volume_id", 1, "string"),
        ("DeleteVolumeRequest", "secrets", 2, "map"),
        ("ControllerPublishVolumeRequest", "volume_id", 1, "string"),
        ("ControllerPublishVolumeRequest", "node_id", 2, "string"),
        (
            "ControllerPublishVolumeRequest",
            "volume_capability",
            3,
            "csi.v1.VolumeCapability",
        ),
        ("ControllerPublishVolumeRequest", "readonly", 4, "bool"),
        ("ControllerPublishVolumeRequest", "secrets", 5, "map"),
        ("ControllerPublishVolumeRequest", "volume_context", 6, "map"),
        (
            "ControllerPublishVolumeResponse",
            "publish_context",
            1,
            "map",
        ),
        ("ControllerUnpublishVolumeRequest", "volume_id", 1, "string"),
        ("ControllerUnpublishVolumeRequest", "node_id", 2, "string"),
        ("ControllerUnpublishVolumeRequest", "secrets", 3, "map"),
        (
            "ValidateVolumeCapabilitiesRequest",
            "volume_id",
            1,
            "string",
        ),
        (
            "ValidateVolumeCapabilitiesRequest",
            "volume_context",
            2,
            "map",
        ),
        (
            "ValidateVolumeCapabilitiesRequest",
            "volume_capabilities",
            3,
            "repeated csi.v1.VolumeCapability",
        ),
        ("ValidateVolumeCapabilitiesRequest", "parameters", 4, "map"),
        ("ValidateVolumeCapabilitiesRequest", "secrets", 5, "map"),
        (
            "ValidateVolumeCapabilitiesRequest",
            "mutable_parameters",
            6,
            "map",
        ),
        (
            "ValidateVolumeCapabilitiesResponse",
            "confirmed",
            1,
            "csi.v1.ValidateVolumeCapabilitiesResponse.Confirmed",
        ),
        ("ValidateVolumeCapabilitiesResponse", "message", 2, "string"),
        ("ListVolumesRequest", "max_entries", 1, "int32"),
        ("ListVolumesRequest", "starting_token", 2, "string"),
        (
            "ListVolumesResponse",
            "entries",
            1,
            "repeated csi.v1.ListVolumesResponse.Entry",
        ),
        ("ListVolumesResponse", "next_token", 2, "string"),
        (
            "GetCapacityRequest",
            "volume_capabilities",
            1,
            "repeated csi.v1.VolumeCapability",
        ),
        ("GetCapacityRequest", "parameters", 2, "map"),
        (
            "GetCapacityRequest",
            "accessible_topology",
            3,
            "csi.v1.Topology",
        ),
        ("GetCapacityResponse", "available_capacity", 1, "int64"),
        (
            "GetCapacityResponse",
            "maximum_volume_size",
            2,
            "google.protobuf.Int64Value",
        ),
        (
            "GetCapacityResponse",
            "minimum_volume_size",
            3,
            "google.protobuf.Int64Value",
        ),
        ("ControllerExpandVolumeRequest", "volume_id", 1, "string"),
        (
            "ControllerExpandVolumeRequest",
            "capacity_range",
            2,
            "csi.v1.CapacityRange",
        ),
        ("ControllerExpandVolumeRequest", "secrets", 3, "map"),
        (
            "ControllerExpandVolumeRequest",
            "volume_capability",
            4,
            "csi.v1.VolumeCapability",
        ),
        (
            "ControllerExpandVolumeResponse",
            "capacity_bytes",
            1,
            "int64",
        ),
        (
            "ControllerExpandVolumeResponse",
            "node_expansion_required",
            2,
            "bool",
        ),
        ("ControllerModifyVolumeRequest", "volume_id", 1, "string"),
        ("ControllerModifyVolumeRequest", "secrets", 2, "map"),
        (
            "ControllerModifyVolumeRequest",
            "mutable_parameters",
            3,
            "map",
        ),
        ("CreateSnapshotRequest", "source_volume_id", 1, "string"),
        ("CreateSnapshotRequest", "name", 2, "string"),
        ("CreateSnapshotRequest", "secrets", 3, "map"),
        ("CreateSnapshotRequest", "parameters", 4, "map"),
        ("Snapshot", "size_bytes", 1, "int64"),
        ("Snapshot", "snapshot_id", 2, "string"),
        ("Snapshot", "source_volume_id", 3, "string"),
        ("Snapshot", "creation_time", 4, "google.protobuf.Timestamp"),
        ("Snapshot", "ready_to_use", 5, "bool"),
        ("Snapshot", "group_snapshot_id", 6, "string"),
        ("NodeStageVolumeRequest", "volume_id", 1, "string"),
        ("NodeStageVolumeRequest", "publish_context", 2, "map"),
        ("NodeStageVolumeRequest", "staging_target_path", 3, "string"),
        (
            "NodeStageVolumeRequest",
            "volume_capability",
            4,
            "csi.v1.VolumeCapability",
        ),
        ("NodeStageVolumeRequest", "secrets", 5, "map"),
        ("NodeStageVolumeRequest", "volume_context", 6, "map"),
        ("NodeUnstageVolumeRequest", "volume_id", 1, "string"),
        (
            "NodeUnstageVolumeRequest",
            "staging_target_path",
            2,
            "string",
        ),
        ("NodePublishVolumeRequest", "volume_id", 1, "string"),
        ("NodePublishVolumeRequest", "publish_context", 2, "map"),
        (
            "NodePublishVolumeRequest",
            "staging_target_path",
            3,
            "string",
        ),
        ("NodePublishVolumeRequest", "target_path", 4, "string"),
        (
            "NodePublishVolumeRequest",
            "volume_capability",
            5,
            "csi.v1.VolumeCapability",
        ),
        ("NodePublishVolumeRequest", "readonly", 6, "bool"),
        ("NodePublishVolumeRequest", "secrets", 7, "map"),
        ("NodePublishVolumeRequest", "volume_context", 8, "map"),
        ("NodeUnpublishVolumeRequest", "volume_id", 1, "string"),
        ("NodeUnpublishVolumeRequest", "target_path", 2, "string"),
        ("NodeGetVolumeStatsRequest", "volume_id", 1, "string"),
        ("NodeGetVolumeStatsRequest", "volume_path", 2, "string"),
        (
            "NodeGetVolumeStatsRequest",
            "staging_target_path",
            3,
            "string",
        ),
        (
            "NodeGetVolumeStatsResponse",
            "usage",
            1,
            "repeated csi.v1.VolumeUsage",
        ),
        (
            "NodeGetVolumeStatsResponse",
            "volume_condition",
            2,
            "csi.v1.VolumeCondition",
        ),
        ("VolumeUsage", "available", 1, "int64"),
        ("VolumeUsage", "total", 2, "int64"),
        ("VolumeUsage", "used", 3, "int64"),
        ("VolumeUsage", "unit", 4, "csi.v1.VolumeUsage.Unit"),
        ("VolumeCondition", "abnormal", 1, "bool"),
        ("VolumeCondition", "message", 2, "string"),
        ("NodeGetInfoResponse", "node_id", 1, "string"),
        ("NodeGetInfoResponse", "max_volumes_per_node", 2, "int64"),
        (
            "NodeGetInfoResponse",
            "accessible_topology",
            3,
            "csi.v1.Topology",
        ),
        ("NodeExpandVolumeRequest", "volume_id", 1, "string"),
        ("NodeExpandVolumeRequest", "volume_path", 2, "string"),
        (
            "NodeExpandVolumeRequest",
            "capacity_range",
            3,
            "csi.v1.CapacityRange",
        ),
        (
            "NodeExpandVolumeRequest",
            "staging_target_path",
            4,
            "string",
        ),
        (
            "NodeExpandVolumeRequest",
            "volume_capability",
            5,
            "csi.v1.VolumeCapability",
        ),
        ("NodeExpandVolumeRequest", "secrets", 6, "map"),
        ("NodeExpandVolumeResponse", "capacity_bytes", 1, "int64"),
        ("GetPluginInfoResponse", "name", 1, "string"),
        ("GetPluginInfoResponse", "vendor_version", 2, "string"),
        ("GetPluginInfoResponse", "manifest", 3, "map"),
        ("ProbeResponse", "ready", 1, "google.protobuf.BoolValue"),
        ("Topology", "segments", 1, "map"),
        (
            "TopologyRequirement",
            "requisite",
            1,
            "repeated csi.v1.Topology",
        ),
        (
            "TopologyRequirement",
            "preferred",
            2,
            "repeated csi.v1.Topology",
        ),
    ];
    let mismatches: Vec<String> = expected
        .iter()
        .filter_map(|&(msg, name, number, want_shape)| {
            let f = field(&pool, msg, name);
            let got = (f.number(), shape(&f));
            (got != (number, want_shape.to_owned()))
                .then(|| format!("{msg}.{name}: want {number} {want_shape}, got {got:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[test]
fn capability_and_access_mode_enum_values_match_the_spec() {
    let pool = pool();
    let enum_values = |name: &str| -> Vec<(String, i32)> {
        pool.get_enum_by_name(&format!("csi.v1.{name}"))
            .unwrap_or_else(|| panic!("enum {name} missing"))
            .values()
            .map(|v| (v.name().to_owned(), v.number()))
            .collect()
    };
    let named = |pairs: &[(&str, i32)]| -> Vec<(String, i32)> {
        pairs.iter().map(|&(n, v)| (n.to_owned(), v)).collect()
    };
    assert_eq!(
        enum_values("VolumeCapability.AccessMode.Mode"),
        named(&[
            ("UNKNOWN", 0),
            ("SINGLE_NODE_WRITER", 1),
            ("SINGLE_NODE_READER_ONLY", 2),
            ("MULTI_NODE_READER_ONLY", 3),
            ("MULTI_NODE_SINGLE_WRITER", 4),
            ("MULTI_NODE_MULTI_WRITER", 5),
            ("SINGLE_NODE_SINGLE_WRITER", 6),
            ("SINGLE_NODE_MULTI_WRITER", 7),
        ])
    );
    assert_eq!(
        enum_values("ControllerServiceCapability.RPC.Type"),
        named(&[
            ("UNKNOWN", 0),
            ("CREATE_DELETE_VOLUME", 1),
            ("PUBLISH_UNPUBLISH_VOLUME", 2),
            ("LIST_VOLUMES", 3),
            ("GET_CAPACITY", 4),
            ("CREATE_DELETE_SNAPSHOT", 5),
            ("LIST_SNAPSHOTS", 6),
            ("CLONE_VOLUME", 7),
            ("PUBLISH_READONLY", 8),
            ("EXPAND_VOLUME", 9),
            ("LIST_VOLUMES_PUBLISHED_NODES", 10),
            ("VOLUME_CONDITION", 11),
            ("GET_VOLUME", 12),
            ("SINGLE_NODE_MULTI_WRITER", 13),
            ("MODIFY_VOLUME", 14),
            ("GET_SNAPSHOT", 15),
        ])
    );
    assert_eq!(
        enum_values("NodeServiceCapability.RPC.Type"),
        named(&[
            ("UNKNOWN", 0),
            ("STAGE_UNSTAGE_VOLUME", 1),
            ("GET_VOLUME_STATS", 2),
            ("EXPAND_VOLUME", 3),
            ("VOLUME_CONDITION", 4),
            ("SINGLE_NODE_MULTI_WRITER", 5),
            ("VOLUME_MOUNT_GROUP", 6),
        ])
    );
    assert_eq!(
        enum_values("PluginCapability.Service.Type"),
        named(&[
            ("UNKNOWN", 0),
            ("CONTROLLER_SERVICE", 1),
            ("VOLUME_ACCESSIBILITY_CONSTRAINTS", 2),
            ("GROUP_CONTROLLER_SERVICE", 3),
            ("SNAPSHOT_METADATA_SERVICE", 4),
        ])
    );
    assert_eq!(
        enum_values("PluginCapability.VolumeExpansion.Type"),
        named(&[("UNKNOWN", 0), ("ONLINE", 1), ("OFFLINE", 2)])
    );
}

#[test]
fn exactly_the_spec_secret_fields_are_marked_csi_secret() {
    let pool = pool();
    let secret = extension(&pool, "csi_secret");
    assert_eq!(secret.number(), 1059);
    let mut marked: Vec<String> = pool
        .all_messages()
        .flat_map(|m| m.fields().collect::<Vec<_>>())
        .filter(|f| f.options().get_extension(&secret).as_bool() == Some(true))
        .map(|f| f.full_name().trim_start_matches("csi.v1.").to_owned())
        .collect();
    marked.sort();
    let mut expected = vec![
        "ControllerExpandVolumeRequest.secrets",
        "ControllerModifyVolumeRequest.secrets",
        "ControllerPublishVolumeRequest.secrets",
        "ControllerUnpublishVolumeRequest.secrets",
        "CreateSnapshotRequest.secrets",
        "CreateVolumeGroupSnapshotRequest.secrets",
        "CreateVolumeRequest.secrets",
        "DeleteSnapshotRequest.secrets",
        "DeleteVolumeGroupSnapshotRequest.secrets",
        "DeleteVolumeRequest.secrets",
        "GetMetadataAllocatedRequest.secrets",
        "GetMetadataDeltaRequest.secrets",
        "GetSnapshotRequest.secrets",
        "GetVolumeGroupSnapshotRequest.secrets",
        "ListSnapshotsRequest.secrets",
        "NodeExpandVolumeRequest.secrets",
        "NodePublishVolumeRequest.secrets",
        "NodeStageVolumeRequest.secrets",
        "ValidateVolumeCapabilitiesRequest.secrets",
    ];
    expected.sort();
    assert_eq!(marked, expected);
}

#[test]
fn alpha_markers_follow_spec_version() {
    let pool = pool();
    let alpha_method = extension(&pool, "alpha_method");
    let alpha_service = extension(&pool, "alpha_service");
    let alpha_message = extension(&pool, "alpha_message");
    let alpha_field = extension(&pool, "alpha_field");
    let controller = pool.get_service_by_name("csi.v1.Controller").unwrap();
    let is_alpha_method = |name: &str| {
        let method = controller.methods().find(|m| m.name() == name).unwrap();
        method.options().get_extension(&alpha_method).as_bool() == Some(true)
    };
    // 1.12.0 made ControllerModifyVolume GA and added GetSnapshot as alpha.
    assert!(!is_alpha_method("ControllerModifyVolume"));
    assert!(is_alpha_method("GetSnapshot"));
    assert!(is_alpha_method("ControllerGetVolume"));
    assert!(!is_alpha_method("CreateVolume"));

    let is_alpha_message = |name: &str| {
        message(&pool, name)
            .options()
            .get_extension(&alpha_message)
            .as_bool()
            == Some(true)
    };
    assert!(!is_alpha_message("ControllerModifyVolumeRequest"));
    assert!(is_alpha_message("GetSnapshotRequest"));
    assert!(is_alpha_message("VolumeCondition"));

    let node_expand_secrets = field(&pool, "NodeExpandVolumeRequest", "secrets");
    assert_eq!(
        node_expand_secrets
            .options()
            .get_extension(&alpha_field)
            .as_bool(),
        Some(true)
    );

    let snapshot_metadata = pool.get_service_by_name("csi.v1.SnapshotMetadata").unwrap();
    assert_eq!(
        snapshot_metadata
            .options()
            .get_extension(&alpha_service)
            .as_bool(),
        Some(true)
    );
    assert!(snapshot_metadata.methods().all(|m| m.is_server_streaming()));
}

#[test]
fn services_declare_the_spec_methods_in_order() {
    let pool = pool();
    let methods = |service: &str| -> Vec<String> {
        pool.get_service_by_name(&format!("csi.v1.{service}"))
            .unwrap_or_else(|| panic!("service {service} missing"))
            .methods()
            .map(|m| m.name().to_owned())
            .collect()
    };
    assert_eq!(
        methods("Identity"),
        ["GetPluginInfo", "GetPluginCapabilities", "Probe"]
    );
    assert_eq!(
        methods("Controller"),
        [
            "CreateVolume",
            "DeleteVolume",
            "ControllerPublishVolume",
            "ControllerUnpublishVolume",
            "ValidateVolumeCapabilities",
            "ListVolumes",
            "GetCapacity",
            "ControllerGetCapabilities",
            "CreateSnapshot",
            "DeleteSnapshot",
            "ListSnapshots",
            "GetSnapshot",
            "ControllerExpandVolume",
            "ControllerGetVolume",
            "ControllerModifyVolume",
        ]
    );
    assert_eq!(
        methods("Node"),
        [
            "NodeStageVolume",
            "NodeUnstageVolume",
            "NodePublishVolume",
            "NodeUnpublishVolume",
            "NodeGetVolumeStats",
            "NodeExpandVolume",
            "NodeGetCapabilities",
            "NodeGetInfo",
        ]
    );
    assert_eq!(
        methods("GroupController"),
        [
            "GroupControllerGetCapabilities",
            "CreateVolumeGroupSnapshot",
            "DeleteVolumeGroupSnapshot",
            "GetVolumeGroupSnapshot",
        ]
    );
    assert_eq!(
        methods("SnapshotMetadata"),
        ["GetMetadataAllocated", "GetMetadataDelta"]
    );
}

#[test]
fn spec_version_matches_the_vendored_proto_header() {
    let proto = include_str!("../proto/csi.proto");
    let header: String = proto.lines().take_while(|l| l.starts_with("//")).collect();
    assert!(
        header.contains(&format!("version {SPEC_VERSION}")),
        "proto header does not name spec version {SPEC_VERSION}"
    );
}
