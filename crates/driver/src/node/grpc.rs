//! The CSI Node service over gRPC: thin handlers that check the request, take the volume's
//! lock and run one operation of [`NodeCore`].

use std::future::Future;
use std::sync::Arc;
use std::time::Instant as WallClock;

use csi::v1::node_server::Node;
use csi::v1::node_service_capability::rpc::Type as Rpc;
use csi::v1::node_service_capability::{self, Type as CapabilityType};
use csi::v1::{
    NodeExpandVolumeRequest, NodeExpandVolumeResponse, NodeGetCapabilitiesRequest,
    NodeGetCapabilitiesResponse, NodeGetInfoRequest, NodeGetInfoResponse,
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, NodePublishVolumeRequest,
    NodePublishVolumeResponse, NodeServiceCapability, NodeStageVolumeRequest,
    NodeStageVolumeResponse, NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse,
    NodeUnstageVolumeRequest, NodeUnstageVolumeResponse,
};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::error::{NodeError, Result};
use super::expand::{ExpandRequest, required_bytes};
use super::pod_events::PodRef;
use super::publish::PublishRequest;
use super::request::{
    Capability, Volume, absolute_path, grpc_timeout, operation_time, volume_path,
};
use super::stage::StageRequest;
use super::stats::stats_response;
use super::{NodeCore, NodeService};
use crate::status::code_of;

/// What NodeGetCapabilities reports. SINGLE_NODE_MULTI_WRITER goes with the controller's
/// offer of the single-node writer modes, which the CO only passes on when both agree.
pub const NODE_CAPABILITIES: [Rpc; 5] = [
    Rpc::StageUnstageVolume,
    Rpc::GetVolumeStats,
    Rpc::VolumeCondition,
    Rpc::ExpandVolume,
    Rpc::SingleNodeMultiWriter,
];

impl NodeService {
    /// When the operation must be done: the caller's `grpc-timeout`, else the default.
    fn deadline_of<T>(&self, request: &Request<T>) -> Instant {
        let caller = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(grpc_timeout);
        Instant::now() + operation_time(caller, self.core.config.default_operation_time)
    }

    fn volume(&self, id: &str) -> Result<Volume> {
        Volume::parse(id, &self.core.config.nqn_prefix)
    }

    /// NodeStageVolume after its timing starts (see `node_stage_volume`).
    async fn stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let deadline = self.deadline_of(&request);
        let request = request.into_inner();
        let volume = self.volume(&request.volume_id)?;
        let staging = absolute_path("staging_target_path", &request.staging_target_path)?;
        let capability = Capability::parse(request.volume_capability.as_ref())?;
        let context = volume.context(&request.volume_context)?;
        let stage = StageRequest {
            volume_id: volume.id.clone(),
            staging,
            capability,
            context,
        };
        self.exclusive("NodeStageVolume", &volume, move |core| async move {
            core.stage(stage, deadline).await
        })
        .await?;
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    /// Runs `operation` while holding the volume's lock (ABORTED when it is held), as a task
    /// of its own (see [`crate::locks::VolumeLocks::spawn_exclusive`]).
    async fn exclusive<T, F>(
        &self,
        rpc: &'static str,
        volume: &Volume,
        operation: impl FnOnce(Arc<NodeCore>) -> F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let span = tracing::info_span!("node", rpc, volume_id = %volume.id);
        let work = logged(operation(Arc::clone(&self.core))).instrument(span);
        let task = self
            .locks
            .spawn_exclusive(&volume.id, work)
            .ok_or_else(|| NodeError::OperationPending(volume.id.clone()))?;
        match task.await {
            Ok(result) => result,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(_) => Err(NodeError::Internal("the operation was cancelled".into())),
        }
    }
}

/// Counts a CSI call by method and code, with its latency (when the process has RPC metrics).
async fn counted<T>(
    method: &'static str,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<Response<T>, Status> {
    let started = WallClock::now();
    let result = call.await;
    if let Some(metrics) = crate::metrics::rpc() {
        let code = result.as_ref().err().map_or(tonic::Code::Ok, Status::code);
        metrics.observe(method, code, started.elapsed());
    }
    result
}

/// Logs how an operation ended, with its status code when it failed.
async fn logged<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    let started = WallClock::now();
    let result = work.await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(_) => tracing::info!(elapsed_ms, "done"),
        Err(error) => {
            tracing::warn!(elapsed_ms, code = ?code_of(error), %error, "failed")
        }
    }
    result
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        counted("NodeStageVolume", async move {
            // The whole call as the node sees it: its phases and the driver's own work between
            // them add up to this; what the CO measures beyond it is gRPC and the transport.
            let started = WallClock::now();
            let result = self.stage_volume(request).await;
            mounts::phase::record_total(started.elapsed());
            result
        })
        .await
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        counted("NodeUnstageVolume", async move {
            let deadline = self.deadline_of(&request);
            let request = request.into_inner();
            let volume = self.volume(&request.volume_id)?;
            let staging = absolute_path("staging_target_path", &request.staging_target_path)?;
            // An id this driver never creates was never staged here: the spec's "volume does not
            // exist", and nothing on the node is looked at for it.
            let nqn = volume.require_nqn()?.to_owned();
            let volume_id = volume.id.clone();
            self.exclusive("NodeUnstageVolume", &volume, move |core| async move {
                core.unstage(&volume_id, &nqn, &staging, deadline).await
            })
            .await?;
            Ok(Response::new(NodeUnstageVolumeResponse {}))
        })
        .await
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        counted("NodePublishVolume", async move {
            let deadline = self.deadline_of(&request);
            let request = request.into_inner();
            let volume = self.volume(&request.volume_id)?;
            let target = absolute_path("target_path", &request.target_path)?;
            let capability = Capability::parse(request.volume_capability.as_ref())?;
            // This plugin stages every volume, so publishing needs the staging path (the spec's
            // "staging target path not set" case).
            if request.staging_target_path.is_empty() {
                return Err(NodeError::precondition(
                    "staging_target_path is required: this plugin stages volumes",
                )
                .into());
            }
            let staging = absolute_path("staging_target_path", &request.staging_target_path)?;
            let publish = PublishRequest {
                volume: volume.clone(),
                staging,
                target,
                capability,
                readonly: request.readonly,
            };
            let published = self
                .exclusive("NodePublishVolume", &volume, move |core| async move {
                    core.publish(publish, deadline).await
                })
                .await;
            if let Err(error) = &published {
                // The pod that asked hears why (podInfoOnMount), when the node talks to the cluster.
                if let (Some(pods), Some(pod)) = (
                    &self.core.pods,
                    PodRef::from_context(&request.volume_context),
                ) {
                    pods.publish_failed(pod, &volume.id, code_of(error), &error.to_string());
                }
            }
            published?;
            Ok(Response::new(NodePublishVolumeResponse {}))
        })
        .await
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        counted("NodeUnpublishVolume", async move {
            let deadline = self.deadline_of(&request);
            let request = request.into_inner();
            let volume = self.volume(&request.volume_id)?;
            let target = absolute_path("target_path", &request.target_path)?;
            // As for unstage: never published here, so nothing is looked at or removed for it.
            volume.require_nqn()?;
            let volume_id = volume.id.clone();
            self.exclusive("NodeUnpublishVolume", &volume, move |core| async move {
                core.unpublish(&volume_id, &target, deadline).await
            })
            .await?;
            Ok(Response::new(NodeUnpublishVolumeResponse {}))
        })
        .await
    }

    /// Read-only, so it takes no lock: kubelet asks periodically and must not see ABORTED
    /// while a publish runs.
    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        counted("NodeGetVolumeStats", async move {
            let deadline = self.deadline_of(&request);
            let request = request.into_inner();
            let volume = self.volume(&request.volume_id)?;
            let path = volume_path(&volume, &request.volume_path)?;
            let (usage, condition) = self.core.stats(&volume, &path, deadline).await?;
            Ok(Response::new(stats_response(&usage, &condition)))
        })
        .await
    }

    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        counted("NodeExpandVolume", async move {
            let deadline = self.deadline_of(&request);
            let request = request.into_inner();
            let volume = self.volume(&request.volume_id)?;
            let path = volume_path(&volume, &request.volume_path)?;
            let staging = match request.staging_target_path.as_str() {
                "" => None,
                staging => Some(absolute_path("staging_target_path", staging)?),
            };
            let access = match &request.volume_capability {
                Some(capability) => Some(Capability::parse(Some(capability))?.access),
                None => None,
            };
            let expand = ExpandRequest {
                volume: volume.clone(),
                path,
                staging,
                required_bytes: required_bytes(request.capacity_range.as_ref())?,
                access,
            };
            let size = self
                .exclusive("NodeExpandVolume", &volume, move |core| async move {
                    core.expand(expand, deadline).await
                })
                .await?;
            Ok(Response::new(NodeExpandVolumeResponse {
                capacity_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            }))
        })
        .await
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        counted("NodeGetCapabilities", async move {
            let capabilities = NODE_CAPABILITIES
                .iter()
                .map(|rpc| NodeServiceCapability {
                    r#type: Some(CapabilityType::Rpc(node_service_capability::Rpc {
                        r#type: (*rpc).into(),
                    })),
                })
                .collect();
            Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
        })
        .await
    }

    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        counted("NodeGetInfo", async move {
            Ok(Response::new(NodeGetInfoResponse {
                node_id: crate::node_id::NodeRef::compose(
                    &self.core.config.node_id,
                    self.core.fabric.host_nqn(),
                ),
                max_volumes_per_node: self.core.config.max_volumes_per_node,
                accessible_topology: None,
            }))
        })
        .await
    }
}
