//! Shared by the node tests: the node service behind a real tonic server on a Unix socket
//! in a scratch directory, a client for it, and request builders.

#![allow(dead_code)]

pub mod loop_lab;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi::v1::node_client::NodeClient;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use csi::v1::{
    NodePublishVolumeRequest, NodeStageVolumeRequest, NodeUnpublishVolumeRequest,
    NodeUnstageVolumeRequest, VolumeCapability,
};
use driver::node::{ClusterPods, Fabric, NodeConfig, NodeService, Records, routes};
use driver::server::{self, Endpoint};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub const PREFIX: &str = "nqn.2000-02.com.mikrotik";
pub const MIB: u64 = 1 << 20;

/// A volume id of the form the controller creates.
pub fn volume_id(n: u32) -> String {
    format!("pvc-00000000-0000-4000-8000-{n:012}")
}

pub fn nqn_of(id: &str) -> String {
    format!("{PREFIX}:{id}")
}

pub fn mount_capability(fs: &str, flags: &[&str]) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: flags.iter().map(|f| f.to_string()).collect(),
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter.into(),
        }),
    }
}

pub fn block_capability() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter.into(),
        }),
    }
}

/// The node service on a Unix socket, and a client connected to it.
pub struct Plugin {
    pub client: NodeClient<Channel>,
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Plugin {
    pub async fn start(dir: &Path, config: NodeConfig, fabric: Arc<dyn Fabric>) -> Self {
        Self::start_with_pods(dir, config, fabric, None).await
    }

    /// With the node's access to the cluster's pods (a client of the API server's double).
    pub async fn start_with_pods(
        dir: &Path,
        mut config: NodeConfig,
        fabric: Arc<dyn Fabric>,
        pods: Option<ClusterPods>,
    ) -> Self {
        let socket = dir.join("csi.sock");
        let (stop, stopped) = oneshot::channel::<()>();
        config.driver_name = "rds.csi.test".into();
        config.vendor_version = "test".into();
        // Records in the scratch directory, as a node keeps them in its state directory.
        let records = Records::open(&dir.join("state")).expect("state directory opens");
        let mut service = NodeService::new(config, fabric, records);
        if let Some(pods) = pods {
            service = service.with_cluster_pods(pods);
        }
        service.forget_unstaged().await;
        let health_check = service.spawn_health_check();
        let listener = server::bind(&Endpoint::Unix(socket.clone()))
            .await
            .expect("socket binds");
        let server = tokio::spawn(async move {
            listener
                .serve(routes(service), async {
                    let _ = stopped.await;
                })
                .await
                .expect("node server runs");
            if let Some(check) = health_check {
                check.stop(Duration::from_secs(10)).await;
            }
        });
        let client = connect(&socket).await;
        Self {
            client,
            socket,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server stops")
                .unwrap();
        }
    }
}

/// Connects to a bound socket.
pub async fn connect(socket: &Path) -> NodeClient<Channel> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("unix://{}", socket.display())).unwrap();
    NodeClient::new(
        endpoint
            .connect()
            .await
            .expect("connects to the node socket"),
    )
}

pub fn context(nqn: &str, port: u16) -> HashMap<String, String> {
    [
        ("nqn", nqn.to_owned()),
        ("nvmeAddress", "127.0.0.1".to_owned()),
        ("nvmePort", port.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn stage_request(
    id: &str,
    staging: &Path,
    capability: VolumeCapability,
    context: HashMap<String, String>,
) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(capability),
        volume_context: context,
        ..Default::default()
    }
}

pub fn publish_request(
    id: &str,
    staging: &Path,
    target: &Path,
    capability: VolumeCapability,
    readonly: bool,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(capability),
        readonly,
        ..Default::default()
    }
}

pub fn unpublish_request(id: &str, target: &Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: id.into(),
        target_path: target.display().to_string(),
    }
}

pub fn unstage_request(id: &str, staging: &Path) -> NodeUnstageVolumeRequest {
    NodeUnstageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
    }
}

/// The status code of a call's outcome (`Ok` for success).
pub fn code<T>(result: &Result<T, Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, expected: Code) -> Option<T> {
    match result {
        Ok(value) if expected == Code::Ok => Some(value),
        Err(status) if status.code() == expected => None,
        other => panic!("expected {expected:?}, got {other:?}"),
    }
}

/// Repeats a call answered ABORTED (another operation on the volume) a bounded number of
/// times, as a CO retries it.
pub async fn as_a_co_retries<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    for _ in 0..200 {
        match call().await {
            Err(status) if status.code() == Code::Aborted => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
    call().await
}
