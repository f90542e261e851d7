//! The CO's calls: one method per CSI call, each under a deadline (sent to the plugin as the
//! gRPC timeout and enforced here too, so a plugin that never answers fails the run).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use csi::v1::controller_client::ControllerClient;
use csi::v1::controller_service_capability::Type as CapabilityType;
use csi::v1::controller_service_capability::rpc::Type as Rpc;
use csi::v1::node_client::NodeClient;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use csi::v1::{
    CapacityRange, ControllerExpandVolumeRequest, ControllerGetCapabilitiesRequest,
    ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest, CreateSnapshotRequest,
    CreateVolumeRequest, DeleteSnapshotRequest, DeleteVolumeRequest, NodeExpandVolumeRequest,
    NodeGetInfoRequest, NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse,
    NodePublishVolumeRequest, NodeStageVolumeRequest, NodeUnpublishVolumeRequest,
    NodeUnstageVolumeRequest, Snapshot, Volume, VolumeCapability, VolumeContentSource,
};
use driver::server::{Endpoint, connect};
use tonic::transport::Channel;

use crate::error::{E2eError, Result};

/// How a volume is consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeMode {
    Filesystem { fs_type: String },
    Block,
}

impl VolumeMode {
    /// The capability of a single-node writer.
    pub fn capability(&self) -> VolumeCapability {
        self.capability_as(Mode::SingleNodeWriter)
    }

    /// The capability with access mode `access`.
    pub fn capability_as(&self, access: Mode) -> VolumeCapability {
        let access_type = match self {
            VolumeMode::Filesystem { fs_type } => AccessType::Mount(MountVolume {
                fs_type: fs_type.clone(),
                mount_flags: Vec::new(),
                volume_mount_group: String::new(),
            }),
            VolumeMode::Block => AccessType::Block(BlockVolume {}),
        };
        VolumeCapability {
            access_type: Some(access_type),
            access_mode: Some(AccessMode {
                mode: access.into(),
            }),
        }
    }
}

/// Where kubelet would put a volume's paths, under one work directory. Block targets live
/// under `volumeDevices/` so the node's `--block-publish-dir` can point there.
#[derive(Debug, Clone)]
pub struct PathLayout {
    pub root: PathBuf,
}

impl PathLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn staging(&self, volume_id: &str) -> PathBuf {
        self.root.join("staging").join(volume_id)
    }

    pub fn target(&self, volume_id: &str, mode: &VolumeMode) -> PathBuf {
        match mode {
            VolumeMode::Filesystem { .. } => self.root.join("pods").join(volume_id).join("mount"),
            VolumeMode::Block => self.block_publish_dir().join(volume_id),
        }
    }

    /// What the node's `--block-publish-dir` must be.
    pub fn block_publish_dir(&self) -> PathBuf {
        self.root.join("volumeDevices")
    }
}

/// How long a call answered ABORTED is retried.
const ABORTED_PATIENCE: Duration = Duration::from_secs(30);

/// Controller and node clients, as a CO holds them.
#[derive(Debug, Clone)]
pub struct Csi {
    controller: ControllerClient<Channel>,
    node: NodeClient<Channel>,
    call_timeout: Duration,
    /// The node id (from NodeGetInfo) to ControllerPublish to, when the controller has the
    /// PUBLISH_UNPUBLISH_VOLUME capability; otherwise the CO attaches nothing.
    publish_to: Option<String>,
    /// The access mode every capability is asked with.
    access: Mode,
}

async fn open(endpoint: &Endpoint) -> Result<Channel> {
    connect(endpoint).await.map_err(|source| E2eError::Connect {
        endpoint: endpoint.to_string(),
        source,
    })
}

impl Csi {
    pub async fn connect(
        controller: &Endpoint,
        node: &Endpoint,
        call_timeout: Duration,
    ) -> Result<Self> {
        let mut csi = Self {
            controller: ControllerClient::new(open(controller).await?),
            node: NodeClient::new(open(node).await?),
            call_timeout,
            publish_to: None,
            access: Mode::SingleNodeWriter,
        };
        csi.publish_to = csi.attach_node().await?;
        Ok(csi)
    }

    /// What a CO learns before its first attach: whether the controller wants
    /// ControllerPublish/Unpublish around the node's calls, and to which node id.
    async fn attach_node(&self) -> Result<Option<String>> {
        let capabilities = self
            .call(
                "ControllerGetCapabilities",
                ControllerGetCapabilitiesRequest {},
                |r| {
                    let mut client = self.controller.clone();
                    async move { client.controller_get_capabilities(r).await }
                },
            )
            .await?
            .capabilities;
        let publishes = capabilities.iter().any(|c| {
            matches!(&c.r#type, Some(CapabilityType::Rpc(rpc))
                if rpc.r#type == Rpc::PublishUnpublishVolume as i32)
        });
        if !publishes {
            return Ok(None);
        }
        let info = self
            .call("NodeGetInfo", NodeGetInfoRequest {}, |r| {
                let mut client = self.node.clone();
                async move { client.node_get_info(r).await }
            })
            .await?;
        Ok(Some(info.node_id))
    }

    /// The same CO, but one that skips ControllerPublishVolume (a node that stages on its
    /// own, as a partitioned node the cluster moved away from might): for proving that the
    /// storage refuses it.
    pub fn without_controller_publish(mut self) -> Self {
        self.publish_to = None;
        self
    }

    /// The same CO, asking for every volume with access mode `access` (MULTI_NODE_MULTI_WRITER
    /// for a raw block volume two nodes hold during a live migration).
    pub fn with_access_mode(mut self, access: Mode) -> Self {
        self.access = access;
        self
    }

    /// The node id volumes are ControllerPublished to, if the controller publishes.
    pub fn publish_node(&self) -> Option<&str> {
        self.publish_to.as_deref()
    }

    /// ControllerPublishVolume to the node, as the CO does before NodeStageVolume; returns the
    /// publish_context for the node's calls (empty, and no call, when the controller does not
    /// publish).
    pub async fn controller_publish(
        &self,
        volume: &Volume,
        mode: &VolumeMode,
    ) -> Result<HashMap<String, String>> {
        let Some(node_id) = &self.publish_to else {
            return Ok(HashMap::new());
        };
        self.controller_publish_to(volume, mode, node_id).await
    }

    /// ControllerPublishVolume to the node `node_id`, which need not be this CO's node (to show
    /// what the controller answers a second node).
    pub async fn controller_publish_to(
        &self,
        volume: &Volume,
        mode: &VolumeMode,
        node_id: &str,
    ) -> Result<HashMap<String, String>> {
        let request = ControllerPublishVolumeRequest {
            volume_id: volume.volume_id.clone(),
            node_id: node_id.to_owned(),
            volume_capability: Some(mode.capability_as(self.access)),
            readonly: false,
            volume_context: volume.volume_context.clone(),
            ..Default::default()
        };
        let reply = self
            .call("ControllerPublishVolume", request, |r| {
                let mut client = self.controller.clone();
                async move { client.controller_publish_volume(r).await }
            })
            .await?;
        Ok(reply.publish_context)
    }

    /// ControllerUnpublishVolume from the node, as the CO does after NodeUnstageVolume (no call
    /// when the controller does not publish).
    pub async fn controller_unpublish(&self, volume_id: &str) -> Result<()> {
        let Some(node_id) = &self.publish_to else {
            return Ok(());
        };
        let request = ControllerUnpublishVolumeRequest {
            volume_id: volume_id.to_owned(),
            node_id: node_id.clone(),
            ..Default::default()
        };
        self.call("ControllerUnpublishVolume", request, |r| {
            let mut client = self.controller.clone();
            async move { client.controller_unpublish_volume(r).await }
        })
        .await
        .map(drop)
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.call_timeout);
        request
    }

    /// Sends `message` with `send`, as a CO does: an ABORTED answer (another operation on
    /// the volume is running, such as the node's background check) is retried with a growing
    /// wait for up to [`ABORTED_PATIENCE`]; any other answer is the result.
    async fn call<M, T, F>(
        &self,
        call: &'static str,
        message: M,
        send: impl Fn(tonic::Request<M>) -> F,
    ) -> Result<T>
    where
        M: Clone,
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        // A little beyond the gRPC timeout, so the plugin's own DEADLINE_EXCEEDED wins.
        let limit = self.call_timeout + Duration::from_secs(5);
        let give_up = tokio::time::Instant::now() + ABORTED_PATIENCE;
        let mut wait = Duration::from_millis(20);
        loop {
            match tokio::time::timeout(limit, send(self.request(message.clone()))).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status))
                    if status.code() == tonic::Code::Aborted
                        && tokio::time::Instant::now() + wait < give_up =>
                {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                Ok(Err(status)) => {
                    return Err(E2eError::Call {
                        call,
                        status: Box::new(status),
                    });
                }
                Err(_) => {
                    return Err(E2eError::Timeout {
                        call,
                        seconds: limit.as_secs(),
                    });
                }
            }
        }
    }

    pub async fn create_volume(
        &self,
        name: &str,
        bytes: u64,
        mode: &VolumeMode,
        parameters: &HashMap<String, String>,
    ) -> Result<Volume> {
        self.create_volume_from(name, bytes, mode, parameters, None)
            .await
    }

    /// CreateVolume as a copy of `source` (a snapshot to restore, a volume to clone).
    pub async fn create_volume_from(
        &self,
        name: &str,
        bytes: u64,
        mode: &VolumeMode,
        parameters: &HashMap<String, String>,
        source: Option<VolumeContentSource>,
    ) -> Result<Volume> {
        let request = CreateVolumeRequest {
            name: name.to_owned(),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes as i64,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![mode.capability_as(self.access)],
            parameters: parameters.clone(),
            volume_content_source: source,
            ..Default::default()
        };
        let reply = self
            .call("CreateVolume", request, |r| {
                let mut client = self.controller.clone();
                async move { client.create_volume(r).await }
            })
            .await?;
        reply
            .volume
            .ok_or_else(|| E2eError::Check("CreateVolume returned no volume".into()))
    }

    /// CreateSnapshot of volume `source` under the CSI name `name`.
    pub async fn create_snapshot(&self, name: &str, source: &str) -> Result<Snapshot> {
        let request = CreateSnapshotRequest {
            name: name.to_owned(),
            source_volume_id: source.to_owned(),
            ..Default::default()
        };
        let reply = self
            .call("CreateSnapshot", request, |r| {
                let mut client = self.controller.clone();
                async move { client.create_snapshot(r).await }
            })
            .await?;
        reply
            .snapshot
            .ok_or_else(|| E2eError::Check("CreateSnapshot returned no snapshot".into()))
    }

    pub async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        let request = DeleteSnapshotRequest {
            snapshot_id: snapshot_id.to_owned(),
            ..Default::default()
        };
        self.call("DeleteSnapshot", request, |r| {
            let mut client = self.controller.clone();
            async move { client.delete_snapshot(r).await }
        })
        .await
        .map(drop)
    }

    pub async fn delete_volume(&self, volume_id: &str) -> Result<()> {
        let request = DeleteVolumeRequest {
            volume_id: volume_id.to_owned(),
            ..Default::default()
        };
        self.call("DeleteVolume", request, |r| {
            let mut client = self.controller.clone();
            async move { client.delete_volume(r).await }
        })
        .await
        .map(drop)
    }

    /// Grows the volume on the storage; returns the new size and whether the node must act.
    pub async fn controller_expand(
        &self,
        volume_id: &str,
        bytes: u64,
        mode: &VolumeMode,
    ) -> Result<(u64, bool)> {
        let request = ControllerExpandVolumeRequest {
            volume_id: volume_id.to_owned(),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes as i64,
                limit_bytes: 0,
            }),
            volume_capability: Some(mode.capability_as(self.access)),
            ..Default::default()
        };
        let reply = self
            .call("ControllerExpandVolume", request, |r| {
                let mut client = self.controller.clone();
                async move { client.controller_expand_volume(r).await }
            })
            .await?;
        Ok((
            reply.capacity_bytes.max(0) as u64,
            reply.node_expansion_required,
        ))
    }

    pub async fn node_stage(
        &self,
        volume: &Volume,
        publish_context: &HashMap<String, String>,
        staging: &Path,
        mode: &VolumeMode,
    ) -> Result<()> {
        let request = NodeStageVolumeRequest {
            volume_id: volume.volume_id.clone(),
            publish_context: publish_context.clone(),
            staging_target_path: path_text(staging),
            volume_capability: Some(mode.capability_as(self.access)),
            volume_context: volume.volume_context.clone(),
            ..Default::default()
        };
        self.call("NodeStageVolume", request, |r| {
            let mut client = self.node.clone();
            async move { client.node_stage_volume(r).await }
        })
        .await
        .map(drop)
    }

    pub async fn node_unstage(&self, volume_id: &str, staging: &Path) -> Result<()> {
        let request = NodeUnstageVolumeRequest {
            volume_id: volume_id.to_owned(),
            staging_target_path: path_text(staging),
        };
        self.call("NodeUnstageVolume", request, |r| {
            let mut client = self.node.clone();
            async move { client.node_unstage_volume(r).await }
        })
        .await
        .map(drop)
    }

    pub async fn node_publish(
        &self,
        volume: &Volume,
        staging: &Path,
        target: &Path,
        mode: &VolumeMode,
    ) -> Result<()> {
        let request = NodePublishVolumeRequest {
            volume_id: volume.volume_id.clone(),
            staging_target_path: path_text(staging),
            target_path: path_text(target),
            volume_capability: Some(mode.capability_as(self.access)),
            readonly: false,
            volume_context: volume.volume_context.clone(),
            ..Default::default()
        };
        self.call("NodePublishVolume", request, |r| {
            let mut client = self.node.clone();
            async move { client.node_publish_volume(r).await }
        })
        .await
        .map(drop)
    }

    pub async fn node_unpublish(&self, volume_id: &str, target: &Path) -> Result<()> {
        let request = NodeUnpublishVolumeRequest {
            volume_id: volume_id.to_owned(),
            target_path: path_text(target),
        };
        self.call("NodeUnpublishVolume", request, |r| {
            let mut client = self.node.clone();
            async move { client.node_unpublish_volume(r).await }
        })
        .await
        .map(drop)
    }

    /// Usage and condition of a published volume, as kubelet asks for them.
    pub async fn node_volume_stats(
        &self,
        volume_id: &str,
        volume_path: &Path,
        staging: &Path,
    ) -> Result<NodeGetVolumeStatsResponse> {
        let request = NodeGetVolumeStatsRequest {
            volume_id: volume_id.to_owned(),
            volume_path: path_text(volume_path),
            staging_target_path: path_text(staging),
        };
        self.call("NodeGetVolumeStats", request, |r| {
            let mut client = self.node.clone();
            async move { client.node_get_volume_stats(r).await }
        })
        .await
    }

    /// Grows what the node holds (filesystem or block size check); returns the size the
    /// node reports.
    pub async fn node_expand(
        &self,
        volume_id: &str,
        volume_path: &Path,
        staging: &Path,
        bytes: u64,
        mode: &VolumeMode,
    ) -> Result<u64> {
        let request = NodeExpandVolumeRequest {
            volume_id: volume_id.to_owned(),
            volume_path: path_text(volume_path),
            staging_target_path: path_text(staging),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes as i64,
                limit_bytes: 0,
            }),
            volume_capability: Some(mode.capability_as(self.access)),
            ..Default::default()
        };
        let reply = self
            .call("NodeExpandVolume", request, |r| {
                let mut client = self.node.clone();
                async move { client.node_expand_volume(r).await }
            })
            .await?;
        Ok(reply.capacity_bytes.max(0) as u64)
    }
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_match_the_mode() {
        let fs = VolumeMode::Filesystem {
            fs_type: "xfs".into(),
        }
        .capability();
        match fs.access_type {
            Some(AccessType::Mount(m)) => assert_eq!(m.fs_type, "xfs"),
            other => panic!("{other:?}"),
        }
        let block = VolumeMode::Block.capability();
        assert!(matches!(block.access_type, Some(AccessType::Block(_))));
        assert_eq!(
            block.access_mode.unwrap().mode,
            i32::from(Mode::SingleNodeWriter)
        );
        let shared = VolumeMode::Block.capability_as(Mode::MultiNodeMultiWriter);
        assert!(matches!(shared.access_type, Some(AccessType::Block(_))));
        assert_eq!(
            shared.access_mode.unwrap().mode,
            i32::from(Mode::MultiNodeMultiWriter)
        );
    }

    #[test]
    fn block_targets_live_under_the_block_publish_dir() {
        let layout = PathLayout::new("/w");
        let fs = VolumeMode::Filesystem {
            fs_type: "ext4".into(),
        };
        assert_eq!(layout.staging("v"), Path::new("/w/staging/v"));
        assert_eq!(layout.target("v", &fs), Path::new("/w/pods/v/mount"));
        let block = layout.target("v", &VolumeMode::Block);
        assert!(block.starts_with(layout.block_publish_dir()));
    }
}
