//! The generated tonic server and client talk real gRPC over loopback TCP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use csi::v1::identity_client::IdentityClient;
use csi::v1::identity_server::{Identity, IdentityServer};
use csi::v1::node_client::NodeClient;
use csi::v1::node_server::{Node, NodeServer};
use csi::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, NodeGetInfoRequest, NodeGetInfoResponse, NodePublishVolumeRequest,
    NodeStageVolumeRequest, NodeStageVolumeResponse, PluginCapability, ProbeRequest, ProbeResponse,
    plugin_capability,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

struct TestIdentity;

#[tonic::async_trait]
impl Identity for TestIdentity {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: "rds.csi.example.org".into(),
            vendor_version: "0.1.0".into(),
            manifest: HashMap::new(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let service = plugin_capability::Service {
            r#type: plugin_capability::service::Type::ControllerService.into(),
        };
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![PluginCapability {
                r#type: Some(plugin_capability::Type::Service(service)),
            }],
        }))
    }

    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}

/// A node service checking that requests arrive intact; every method it
/// leaves out falls back to the generated UNIMPLEMENTED stub.
struct EchoNode;

#[tonic::async_trait]
impl Node for EchoNode {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let request = request.into_inner();
        if request.volume_context.get("nqn").map(String::as_str) == Some("nqn.test:vol-1")
            && request.secrets.get("key").map(String::as_str) == Some("value")
        {
            Ok(Response::new(NodeStageVolumeResponse {}))
        } else {
            Err(Status::invalid_argument(format!(
                "unexpected request {request:?}"
            )))
        }
    }

    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: "worker-1".into(),
            max_volumes_per_node: 16,
            accessible_topology: None,
        }))
    }
}

/// Serves both services on an ephemeral loopback port until the sender is dropped or fired.
async fn start_server() -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        Server::builder()
            .add_service(IdentityServer::new(TestIdentity))
            .add_service(NodeServer::new(EchoNode))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
    });
    (addr, stop, server)
}

#[tokio::test]
async fn identity_and_node_calls_cross_a_real_grpc_connection() {
    let (addr, stop, server) = start_server().await;
    let endpoint = format!("http://{addr}");

    let calls = async {
        let mut identity = IdentityClient::connect(endpoint.clone())
            .await
            .expect("connect");
        let info = identity
            .get_plugin_info(GetPluginInfoRequest {})
            .await
            .expect("GetPluginInfo")
            .into_inner();
        assert_eq!(info.name, "rds.csi.example.org");
        assert_eq!(info.vendor_version, "0.1.0");

        let probe = identity
            .probe(ProbeRequest {})
            .await
            .expect("Probe")
            .into_inner();
        assert_eq!(probe.ready, Some(true));

        let caps = identity
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await
            .expect("GetPluginCapabilities")
            .into_inner();
        assert_eq!(caps.capabilities.len(), 1);

        let mut node = NodeClient::connect(endpoint.clone())
            .await
            .expect("connect");
        let staged = node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: "vol-1".into(),
                staging_target_path: "/staging/vol-1".into(),
                volume_context: HashMap::from([("nqn".into(), "nqn.test:vol-1".into())]),
                secrets: HashMap::from([("key".into(), "value".into())]),
                ..Default::default()
            })
            .await;
        assert!(staged.is_ok(), "NodeStageVolume: {staged:?}");

        let info = node
            .node_get_info(NodeGetInfoRequest {})
            .await
            .expect("NodeGetInfo")
            .into_inner();
        assert_eq!(
            (info.node_id.as_str(), info.max_volumes_per_node),
            ("worker-1", 16)
        );

        let unimplemented = node
            .node_publish_volume(NodePublishVolumeRequest::default())
            .await
            .expect_err("publish falls back to the default stub");
        assert_eq!(unimplemented.code(), tonic::Code::Unimplemented);
    };
    tokio::time::timeout(CALL_TIMEOUT, calls)
        .await
        .expect("gRPC calls finish in time");

    stop.send(()).expect("server still running");
    tokio::time::timeout(CALL_TIMEOUT, server)
        .await
        .expect("server stops in time")
        .expect("server task");
}
