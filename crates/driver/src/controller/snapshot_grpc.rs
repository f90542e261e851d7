//! The snapshot RPCs over gRPC: thin handlers that check the request, take the snapshot's
//! lock and call one [`super::service::ControllerService`] function (see [`super::snapshots`]).

use csi::v1::{
    CreateSnapshotRequest, CreateSnapshotResponse, DeleteSnapshotRequest, DeleteSnapshotResponse,
    ListSnapshotsRequest, ListSnapshotsResponse, Snapshot, list_snapshots_response,
};
use routeros::SubvolumeName;
use tonic::{Response, Status};

use super::grpc::CsiController;
use super::snapshots::{SnapshotInfo, SnapshotPlan, page_snapshots};
use crate::error::DriverError;
use crate::naming;
use crate::traced::{Verbosity, traced};

fn snapshot_of(info: &SnapshotInfo) -> Snapshot {
    Snapshot {
        size_bytes: i64::try_from(info.size).unwrap_or(i64::MAX),
        snapshot_id: info.id.clone(),
        source_volume_id: info.source.clone(),
        creation_time: info
            .created
            .map(|seconds| csi::prost_types::Timestamp { seconds, nanos: 0 }),
        ready_to_use: info.ready,
        group_snapshot_id: String::new(),
    }
}

/// CreateSnapshot. MUST be idempotent: the same name and source again is the same snapshot
/// (OK); the same name for another source is ALREADY_EXISTS. A missing name or source is
/// INVALID_ARGUMENT, a source the device does not have NOT_FOUND, a source that cannot be
/// snapshotted (its image is not in a subvolume of its own) FAILED_PRECONDITION; another
/// call in flight for the snapshot is ABORTED.
pub(super) async fn create(
    controller: &CsiController,
    req: CreateSnapshotRequest,
) -> Result<Response<CreateSnapshotResponse>, Status> {
    let span = tracing::info_span!(
        "csi",
        rpc = "CreateSnapshot",
        name = ?req.name,
        source = req.source_volume_id
    );
    traced("CreateSnapshot", span, Verbosity::Change, async {
        let plan = SnapshotPlan::new(&req.name, &req.source_volume_id, &req.parameters)?;
        let id = plan.id.to_string();
        let info = controller
            .exclusive(&id, |service| async move {
                service.create_snapshot(&plan).await
            })
            .await?;
        Ok(CreateSnapshotResponse {
            snapshot: Some(snapshot_of(&info)),
        })
    })
    .await
}

/// DeleteSnapshot. MUST be idempotent: a snapshot that does not exist, or an id this driver
/// never issues, is OK. A snapshot a disk uses is FAILED_PRECONDITION. The Go driver's
/// snapshots go with their images.
pub(super) async fn delete(
    controller: &CsiController,
    req: DeleteSnapshotRequest,
) -> Result<Response<DeleteSnapshotResponse>, Status> {
    let span = tracing::info_span!("csi", rpc = "DeleteSnapshot", snapshot = req.snapshot_id);
    traced("DeleteSnapshot", span, Verbosity::Change, async {
        if req.snapshot_id.is_empty() {
            return Err(DriverError::MissingField("snapshot_id"));
        }
        if naming::go_snapshot_source(&req.snapshot_id).is_some() {
            let id = req.snapshot_id.clone();
            controller
                .exclusive(&req.snapshot_id, |service| async move {
                    service.delete_go_snapshot(&id).await
                })
                .await?;
            return Ok(DeleteSnapshotResponse {});
        }
        let id = match SubvolumeName::try_from(req.snapshot_id.as_str()) {
            Ok(id) if naming::is_managed_snapshot_id(id.as_str()) => id,
            _ => {
                tracing::info!("not an id this driver issues; nothing to delete");
                return Ok(DeleteSnapshotResponse {});
            }
        };
        let key = id.to_string();
        controller
            .exclusive(
                &key,
                |service| async move { service.delete_snapshot(&id).await },
            )
            .await?;
        Ok(DeleteSnapshotResponse {})
    })
    .await
}

/// ListSnapshots: the driver's snapshots by id, filtered by snapshot id or source volume (an
/// id that names nothing gives an empty list), in pages; a token this driver did not issue
/// is ABORTED.
pub(super) async fn list(
    controller: &CsiController,
    req: ListSnapshotsRequest,
) -> Result<Response<ListSnapshotsResponse>, Status> {
    let span = tracing::info_span!("csi", rpc = "ListSnapshots", token = req.starting_token);
    traced("ListSnapshots", span, Verbosity::Query, async {
        let max_entries = super::grpc::max_entries(req.max_entries)?;
        let service = &controller.service;
        let mut infos = if req.snapshot_id.is_empty() {
            service.list_snapshots().await?
        } else {
            service
                .any_snapshot(&req.snapshot_id)
                .await?
                .into_iter()
                .collect()
        };
        if !req.source_volume_id.is_empty() {
            infos.retain(|s| s.source == req.source_volume_id);
        }
        let (page, next) = page_snapshots(infos, &req.starting_token, max_entries)?;
        Ok(ListSnapshotsResponse {
            entries: page
                .iter()
                .map(|info| list_snapshots_response::Entry {
                    snapshot: Some(snapshot_of(info)),
                })
                .collect(),
            next_token: next.unwrap_or_default(),
        })
    })
    .await
}
