//! The snapshot RPCs and content sources as a CO calls them, for the snapshot suites.

use std::io::{Read, Seek, SeekFrom, Write};

use csi::v1::{
    CreateSnapshotRequest, DeleteSnapshotRequest, ListSnapshotsRequest, ListSnapshotsResponse,
    Snapshot,
};

use super::*;

pub fn snapshot_request(name: &str, source: &str) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        name: name.into(),
        source_volume_id: source.into(),
        ..Default::default()
    }
}

pub async fn snapshot(h: &Harness, name: &str, source: &str) -> Result<Snapshot, tonic::Status> {
    h.controller
        .clone()
        .create_snapshot(timed(snapshot_request(name, source)))
        .await
        .map(|r| r.into_inner().snapshot.expect("a snapshot"))
}

pub async fn delete_snapshot(h: &Harness, id: &str) -> Result<(), tonic::Status> {
    h.controller
        .clone()
        .delete_snapshot(timed(DeleteSnapshotRequest {
            snapshot_id: id.into(),
            ..Default::default()
        }))
        .await
        .map(drop)
}

pub async fn list(
    h: &Harness,
    request: ListSnapshotsRequest,
) -> Result<ListSnapshotsResponse, tonic::Status> {
    h.controller
        .clone()
        .list_snapshots(timed(request))
        .await
        .map(|r| r.into_inner())
}

pub fn write_byte(path: &std::path::Path, byte: u8) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(MIB)).unwrap();
    file.write_all(&[byte; 4096]).unwrap();
}

pub fn read_byte(path: &std::path::Path) -> u8 {
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(MIB)).unwrap();
    let mut buf = [0];
    file.read_exact(&mut buf).unwrap();
    buf[0]
}

pub fn from_source(
    name: &str,
    size: u64,
    source: csi::v1::volume_content_source::Type,
) -> csi::v1::CreateVolumeRequest {
    csi::v1::CreateVolumeRequest {
        volume_content_source: Some(csi::v1::VolumeContentSource {
            r#type: Some(source),
        }),
        ..create_request(name, size)
    }
}

pub fn of_snapshot(id: &str) -> csi::v1::volume_content_source::Type {
    csi::v1::volume_content_source::Type::Snapshot(csi::v1::volume_content_source::SnapshotSource {
        snapshot_id: id.into(),
    })
}

pub fn of_volume(id: &str) -> csi::v1::volume_content_source::Type {
    csi::v1::volume_content_source::Type::Volume(csi::v1::volume_content_source::VolumeSource {
        volume_id: id.into(),
    })
}
