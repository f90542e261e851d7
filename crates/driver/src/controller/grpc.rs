//! The CSI Controller service over gRPC: thin handlers that check the request, take the
//! per-volume lock and call one [`ControllerService`] function.
//!
//! Snapshots are in `snapshot_grpc`. Not offered (the generated stubs answer UNIMPLEMENTED,
//! and the capabilities do not advertise it): ControllerModifyVolume.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use csi::v1::controller_server::{Controller, ControllerServer};
use csi::v1::controller_service_capability::rpc::Type as Rpc;
use csi::v1::controller_service_capability::{self, Type as CapabilityType};
use csi::v1::{
    ControllerExpandVolumeRequest, ControllerExpandVolumeResponse,
    ControllerGetCapabilitiesRequest, ControllerGetCapabilitiesResponse,
    ControllerGetVolumeRequest, ControllerGetVolumeResponse, ControllerPublishVolumeRequest,
    ControllerPublishVolumeResponse, ControllerServiceCapability, ControllerUnpublishVolumeRequest,
    ControllerUnpublishVolumeResponse, CreateVolumeRequest, CreateVolumeResponse,
    DeleteVolumeRequest, DeleteVolumeResponse, GetCapacityRequest, GetCapacityResponse,
    ListVolumesRequest, ListVolumesResponse, ValidateVolumeCapabilitiesRequest,
    ValidateVolumeCapabilitiesResponse, Volume, VolumeCondition, controller_get_volume_response,
    list_volumes_response, validate_volume_capabilities_response,
};
use routeros::FileDisk;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::fence::MigrationWindow;
use super::rules::{ContentSource, VolumeId, VolumePlan, volume_condition, volume_path};
use super::service::ControllerService;
use crate::capabilities;
use crate::error::{DriverError, Result};
use crate::naming;
use crate::node_id::NodeRef;
use crate::params::{self, VolumeParams};
use crate::traced::{Verbosity, traced};

/// The capabilities advertised by ControllerGetCapabilities.
pub const CONTROLLER_CAPABILITIES: [Rpc; 11] = [
    Rpc::CreateDeleteVolume,
    Rpc::CreateDeleteSnapshot,
    Rpc::ListSnapshots,
    Rpc::CloneVolume,
    Rpc::PublishUnpublishVolume,
    Rpc::ListVolumes,
    Rpc::GetCapacity,
    Rpc::ExpandVolume,
    Rpc::GetVolume,
    Rpc::VolumeCondition,
    Rpc::SingleNodeMultiWriter,
];

/// The Controller service.
#[derive(Debug, Clone)]
pub struct CsiController {
    pub(super) service: Arc<ControllerService>,
}

impl CsiController {
    pub fn new(service: Arc<ControllerService>) -> Self {
        Self { service }
    }

    pub fn into_server(self) -> ControllerServer<Self> {
        ControllerServer::new(self)
    }

    /// Runs a mutating operation while holding the volume's lock (ABORTED if it is held).
    ///
    /// The work runs as its own task, so a caller that gives up (deadline, disconnect) does
    /// not cut a device change in half; the lock travels with the task, so the caller's
    /// retry gets ABORTED until the first attempt has finished, then finds its result.
    pub(super) async fn exclusive<T, F>(
        &self,
        id: &str,
        operation: impl FnOnce(Arc<ControllerService>) -> F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let work = operation(self.service.clone()).in_current_span();
        let task = self
            .service
            .locks()
            .spawn_exclusive(id, work)
            .ok_or_else(|| DriverError::OperationPending(id.to_owned()))?;
        task.await
            .map_err(|e| DriverError::Internal(format!("volume operation failed: {e}")))?
    }

    fn nqn_prefix(&self) -> &str {
        &self.service.config().nqn_prefix
    }
}

fn required<'a>(value: &'a str, field: &'static str) -> Result<&'a str> {
    if value.is_empty() {
        Err(DriverError::MissingField(field))
    } else {
        Ok(value)
    }
}

/// The id of an existing volume; an id the driver never issues cannot name one.
fn existing_volume_id(value: &str) -> Result<VolumeId> {
    VolumeId::parse(required(value, "volume_id")?)
        .ok_or_else(|| DriverError::VolumeNotFound(value.to_owned()))
}

/// A listing's `max_entries`: 0 is "as many as the plugin likes", negative is invalid.
pub(super) fn max_entries(value: i32) -> Result<usize> {
    usize::try_from(value).map_err(|_| DriverError::InvalidField {
        field: "max_entries",
        reason: "must not be negative".into(),
    })
}

fn bytes(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn volume_of(disk: &FileDisk) -> Volume {
    Volume {
        capacity_bytes: bytes(disk.file_size),
        volume_id: disk.slot.clone(),
        ..Default::default()
    }
}

fn condition_of(disk: &FileDisk, nqn_prefix: &str) -> VolumeCondition {
    let condition = volume_condition(disk, nqn_prefix);
    VolumeCondition {
        abnormal: condition.abnormal,
        message: condition.message,
    }
}

#[tonic::async_trait]
impl Controller for CsiController {
    /// CreateVolume. MUST be idempotent: a volume of the same name that matches the
    /// capacity range, capabilities and parameters is returned as it is (OK); one that does
    /// not is ALREADY_EXISTS. Every capability listed MUST be supported (else
    /// INVALID_ARGUMENT); the capacity range MUST be honoured (OUT_OF_RANGE); no space is
    /// RESOURCE_EXHAUSTED; another call in flight for the name is ABORTED. Content sources
    /// (snapshots, clones) are not supported: INVALID_ARGUMENT.
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> std::result::Result<Response<CreateVolumeResponse>, Status> {
        let req = request.into_inner();
        let volume_id = naming::volume_id_for_name(&req.name);
        let span = tracing::info_span!("csi", rpc = "CreateVolume", volume_id, name = ?req.name);
        traced("CreateVolume", span, Verbosity::Change, async {
            capabilities::check_all(&req.volume_capabilities)?;
            if !req.mutable_parameters.is_empty() {
                return Err(DriverError::NotSupported(
                    "mutable_parameters: volume modification is not supported".into(),
                ));
            }
            let config = self.service.config();
            let mut plan = VolumePlan::new(
                config,
                &req.name,
                req.capacity_range.as_ref(),
                &req.parameters,
            )?;
            if let Some(source) = &req.volume_content_source {
                plan = plan.with_source(ContentSource::parse(source)?);
            }
            let plan = self.service.decide_layout(plan).await?;
            let id = plan.id.clone();
            let (disk, plan) = self
                .exclusive(id.as_str(), |service| async move {
                    let disk = service.create_volume(&plan).await?;
                    Ok((disk, plan))
                })
                .await?;
            let context = plan.context(config, &disk).to_map();
            Ok(CreateVolumeResponse {
                volume: Some(Volume {
                    volume_context: context.into_iter().collect(),
                    content_source: plan.source.as_ref().map(ContentSource::to_csi),
                    ..volume_of(&disk)
                }),
            })
        })
        .await
    }

    /// DeleteVolume. MUST be idempotent: a volume that does not exist, or an id this driver
    /// never issues, is OK. Removes the disk and its image file; never touches a disk or file
    /// outside the driver's slot prefixes and base path.
    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> std::result::Result<Response<DeleteVolumeResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!("csi", rpc = "DeleteVolume", volume_id = req.volume_id);
        traced("DeleteVolume", span, Verbosity::Change, async {
            let Some(id) = VolumeId::parse(required(&req.volume_id, "volume_id")?) else {
                tracing::info!("not an id this driver issues; nothing to delete");
                return Ok(DeleteVolumeResponse {});
            };
            self.exclusive(&id.to_string(), |service| async move {
                service.delete_volume(&id).await
            })
            .await?;
            Ok(DeleteVolumeResponse {})
        })
        .await
    }

    /// ControllerPublishVolume: attach fencing (see `fence`). MUST be idempotent: the same
    /// node again is OK with the same (empty) publish_context, or ALREADY_EXISTS when it asks
    /// with another capability. Another node of a single-node volume is FAILED_PRECONDITION
    /// naming the holder; a second node of a raw block MULTI_NODE_MULTI_WRITER volume starts a
    /// live migration, a third is FAILED_PRECONDITION. Missing fields and unsupported
    /// capabilities are INVALID_ARGUMENT; a volume the RDS does not have is NOT_FOUND. Any
    /// node id is accepted (the driver has no list of nodes). `readonly` is not enforced here:
    /// PUBLISH_READONLY is not advertised, and the node mounts read-only when asked to.
    /// With `--serialize-vmi-attach`, publishes of one KubeVirt VMI's volumes take turns.
    async fn controller_publish_volume(
        &self,
        request: Request<ControllerPublishVolumeRequest>,
    ) -> std::result::Result<Response<ControllerPublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!(
            "csi",
            rpc = "ControllerPublishVolume",
            volume_id = req.volume_id,
            node_id = req.node_id
        );
        traced("ControllerPublishVolume", span, Verbosity::Change, async {
            let id = existing_volume_id(&req.volume_id)?;
            // Attachments are by node name: a node id also carries the host NQN (node_id.rs).
            let node = NodeRef::parse(required(&req.node_id, "node_id")?);
            let capability = req
                .volume_capability
                .as_ref()
                .ok_or(DriverError::MissingField("volume_capability"))?;
            let access = capabilities::inspect(capability)?;
            let asked = params::migration_timeout_seconds(&req.volume_context)?;
            let window = MigrationWindow::from_seconds(asked);
            if asked.is_some_and(|s| u64::from(s) != window.duration().as_secs()) {
                tracing::warn!(
                    asked,
                    window_s = window.duration().as_secs(),
                    "migrationTimeoutSeconds is outside 30..=3600; clamped"
                );
            }
            // Before the volume's lock: a publish waiting for its VMI's turn holds nothing.
            let turn = self.service.publish_turn(id.as_str()).await;
            self.exclusive(&id.to_string(), move |service| async move {
                // Held until the publish is done, also when the caller gives up first.
                let _turn = turn;
                service
                    .publish_volume(&id, &node, access, window, SystemTime::now())
                    .await
            })
            .await?;
            // The node needs nothing beyond the volume context (NQN, address), so the context
            // is empty, hence the same for every repeat.
            Ok(ControllerPublishVolumeResponse {
                publish_context: HashMap::new(),
            })
        })
        .await
    }

    /// ControllerUnpublishVolume. MUST be idempotent: a node that does not hold the volume, a
    /// volume that does not exist and an id this driver never issues are OK. An empty
    /// `node_id` unpublishes from every node. Unpublishing a migration's source completes it,
    /// its target rolls it back.
    async fn controller_unpublish_volume(
        &self,
        request: Request<ControllerUnpublishVolumeRequest>,
    ) -> std::result::Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!(
            "csi",
            rpc = "ControllerUnpublishVolume",
            volume_id = req.volume_id,
            node_id = req.node_id
        );
        traced(
            "ControllerUnpublishVolume",
            span,
            Verbosity::Change,
            async {
                let Some(id) = VolumeId::parse(required(&req.volume_id, "volume_id")?) else {
                    tracing::info!("not an id this driver issues; nothing to unpublish");
                    return Ok(ControllerUnpublishVolumeResponse {});
                };
                let node = Some(req.node_id)
                    .filter(|n| !n.is_empty())
                    .map(|id| NodeRef::parse(&id));
                self.exclusive(&id.to_string(), move |service| async move {
                    service
                        .unpublish_volume(&id, node.as_ref(), SystemTime::now())
                        .await
                })
                .await?;
                Ok(ControllerUnpublishVolumeResponse {})
            },
        )
        .await
    }

    /// ValidateVolumeCapabilities. Confirms only if every capability (and the parameters and
    /// volume context, when given) is supported; otherwise answers OK without `confirmed`,
    /// saying why. NOT_FOUND only when the volume really does not exist: a device outage is
    /// UNAVAILABLE.
    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> std::result::Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!(
            "csi",
            rpc = "ValidateVolumeCapabilities",
            volume_id = req.volume_id
        );
        traced(
            "ValidateVolumeCapabilities",
            span,
            Verbosity::Query,
            async {
                let id = existing_volume_id(&req.volume_id)?;
                if req.volume_capabilities.is_empty() {
                    return Err(DriverError::MissingField("volume_capabilities"));
                }
                let disk = self.service.volume(&id).await?;
                let verdict = capabilities::check_all(&req.volume_capabilities)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        VolumeParams::parse(&req.parameters)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                    .and_then(|()| match req.volume_context.get(params::NQN) {
                        Some(nqn) if *nqn != disk.nqn => Err(format!(
                            "volume_context names NQN {nqn}, the volume is exported as {}",
                            disk.nqn
                        )),
                        _ => Ok(()),
                    })
                    .and_then(|()| {
                        if req.mutable_parameters.is_empty() {
                            Ok(())
                        } else {
                            Err("mutable_parameters are not supported".to_owned())
                        }
                    });
                Ok(match verdict {
                    Ok(()) => ValidateVolumeCapabilitiesResponse {
                        confirmed: Some(validate_volume_capabilities_response::Confirmed {
                            volume_context: req.volume_context,
                            volume_capabilities: req.volume_capabilities,
                            parameters: req.parameters,
                            mutable_parameters: Default::default(),
                        }),
                        message: String::new(),
                    },
                    Err(message) => ValidateVolumeCapabilitiesResponse {
                        confirmed: None,
                        message,
                    },
                })
            },
        )
        .await
    }

    /// ListVolumes. Only the driver's volumes. MUST NOT return more than `max_entries`
    /// (when non-zero) and MUST then set `next_token`; an invalid `starting_token` is
    /// ABORTED. Every entry carries its VolumeCondition (VOLUME_CONDITION capability).
    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> std::result::Result<Response<ListVolumesResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!("csi", rpc = "ListVolumes", token = req.starting_token);
        traced("ListVolumes", span, Verbosity::Query, async {
            let max_entries = max_entries(req.max_entries)?;
            let page = self
                .service
                .list_volumes(&req.starting_token, max_entries)
                .await?;
            let entries = page
                .disks
                .iter()
                .map(|disk| list_volumes_response::Entry {
                    volume: Some(volume_of(disk)),
                    status: Some(list_volumes_response::VolumeStatus {
                        published_node_ids: Vec::new(),
                        volume_condition: Some(condition_of(disk, self.nqn_prefix())),
                    }),
                })
                .collect();
            Ok(ListVolumesResponse {
                entries,
                next_token: page.next_token.unwrap_or_default(),
            })
        })
        .await
    }

    /// GetCapacity. What the thin-provisioning budget still allows (see `budget`), from a
    /// reading at most a few seconds old, and the largest volume that fits. Capabilities the driver cannot provision have no capacity
    /// (0); invalid parameters are INVALID_ARGUMENT.
    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> std::result::Result<Response<GetCapacityResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!("csi", rpc = "GetCapacity");
        traced("GetCapacity", span, Verbosity::Query, async {
            let config = self.service.config();
            volume_path(config, &VolumeParams::parse(&req.parameters)?)?;
            let sizes = config.sizes;
            if let Err(reason) = req
                .volume_capabilities
                .iter()
                .try_for_each(|c| capabilities::check(c).map(|_| ()))
            {
                tracing::debug!(%reason, "no capacity for unsupported capabilities");
                return Ok(GetCapacityResponse {
                    available_capacity: 0,
                    maximum_volume_size: Some(0),
                    minimum_volume_size: Some(bytes(sizes.granularity)),
                });
            }
            let available = self.service.available_capacity().await?;
            Ok(GetCapacityResponse {
                available_capacity: bytes(available),
                maximum_volume_size: Some(bytes(sizes.largest_within(available))),
                minimum_volume_size: Some(bytes(sizes.granularity)),
            })
        })
        .await
    }

    /// ControllerGetCapabilities: volume lifecycle, publish/unpublish (attach fencing),
    /// listing, capacity, expansion, volume condition and the single-node multi-writer modes.
    /// Snapshots are not advertised until they exist.
    async fn controller_get_capabilities(
        &self,
        _request: Request<ControllerGetCapabilitiesRequest>,
    ) -> std::result::Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        let capabilities = CONTROLLER_CAPABILITIES
            .iter()
            .map(|&rpc| ControllerServiceCapability {
                r#type: Some(CapabilityType::Rpc(controller_service_capability::Rpc {
                    r#type: rpc as i32,
                })),
            })
            .collect();
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    /// ControllerExpandVolume. Grows the volume to at least `required_bytes` (rounded up to
    /// the granularity, exact bytes, verified by read-back); a volume already that large is
    /// OK as it is. A range the volume cannot meet without shrinking is OUT_OF_RANGE; an
    /// unknown volume NOT_FOUND; an unsupported capability INVALID_ARGUMENT.
    /// `node_expansion_required` is true for filesystems (and when the CO does not say),
    /// false for raw block.
    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> std::result::Result<Response<ControllerExpandVolumeResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!(
            "csi",
            rpc = "ControllerExpandVolume",
            volume_id = req.volume_id
        );
        traced("ControllerExpandVolume", span, Verbosity::Change, async {
            let id = existing_volume_id(&req.volume_id)?;
            let range = req
                .capacity_range
                .ok_or(DriverError::MissingField("capacity_range"))?;
            if let Some(capability) = &req.volume_capability {
                capabilities::check(capability)?;
            }
            let size = self
                .exclusive(&id.to_string(), |service| async move {
                    service
                        .expand_volume(&id, range.required_bytes, range.limit_bytes)
                        .await
                })
                .await?;
            Ok(ControllerExpandVolumeResponse {
                capacity_bytes: bytes(size),
                node_expansion_required: capabilities::node_expansion_required(
                    req.volume_capability.as_ref(),
                ),
            })
        })
        .await
    }

    /// ControllerGetVolume. The volume and its condition (MUST be present with the
    /// VOLUME_CONDITION capability): abnormal when not exported, exported under another NQN,
    /// or set to be mounted by RouterOS. A volume that does not exist is NOT_FOUND.
    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> std::result::Result<Response<ControllerGetVolumeResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!(
            "csi",
            rpc = "ControllerGetVolume",
            volume_id = req.volume_id
        );
        traced("ControllerGetVolume", span, Verbosity::Query, async {
            let id = existing_volume_id(&req.volume_id)?;
            let disk = self.service.volume(&id).await?;
            Ok(ControllerGetVolumeResponse {
                volume: Some(volume_of(&disk)),
                status: Some(controller_get_volume_response::VolumeStatus {
                    published_node_ids: Vec::new(),
                    volume_condition: Some(condition_of(&disk, self.nqn_prefix())),
                }),
            })
        })
        .await
    }

    async fn create_snapshot(
        &self,
        request: Request<csi::v1::CreateSnapshotRequest>,
    ) -> std::result::Result<Response<csi::v1::CreateSnapshotResponse>, Status> {
        super::snapshot_grpc::create(self, request.into_inner()).await
    }

    async fn delete_snapshot(
        &self,
        request: Request<csi::v1::DeleteSnapshotRequest>,
    ) -> std::result::Result<Response<csi::v1::DeleteSnapshotResponse>, Status> {
        super::snapshot_grpc::delete(self, request.into_inner()).await
    }

    async fn list_snapshots(
        &self,
        request: Request<csi::v1::ListSnapshotsRequest>,
    ) -> std::result::Result<Response<csi::v1::ListSnapshotsResponse>, Status> {
        super::snapshot_grpc::list(self, request.into_inner()).await
    }
}
