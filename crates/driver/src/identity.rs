//! The CSI Identity service: who the plugin is, what it offers, and whether it is ready.

use std::sync::Arc;

use csi::v1::identity_server::{Identity, IdentityServer};
use csi::v1::plugin_capability::{self, service, volume_expansion};
use csi::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
};
use tonic::{Request, Response, Status};

use crate::error::DriverError;
use crate::traced::{Verbosity, traced};

/// What Probe asks: is the plugin able to serve? `Ok(false)` = healthy but not ready now.
#[tonic::async_trait]
pub trait Readiness: Send + Sync + 'static {
    async fn ready(&self) -> Result<bool, DriverError>;
}

#[tonic::async_trait]
impl Readiness for crate::controller::ControllerService {
    async fn ready(&self) -> Result<bool, DriverError> {
        self.probe().await
    }
}

/// A node is ready as soon as it serves: each operation checks what it needs (the fabric,
/// the tools) and says what is missing in its own error.
#[tonic::async_trait]
impl Readiness for crate::node::NodeService {
    async fn ready(&self) -> Result<bool, DriverError> {
        Ok(true)
    }
}

/// The Identity service.
#[derive(Clone)]
pub struct CsiIdentity {
    name: String,
    vendor_version: String,
    readiness: Arc<dyn Readiness>,
}

impl std::fmt::Debug for CsiIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsiIdentity")
            .field("name", &self.name)
            .field("vendor_version", &self.vendor_version)
            .finish_non_exhaustive()
    }
}

impl CsiIdentity {
    pub fn new(
        name: impl Into<String>,
        vendor_version: impl Into<String>,
        readiness: Arc<dyn Readiness>,
    ) -> Self {
        Self {
            name: name.into(),
            vendor_version: vendor_version.into(),
            readiness,
        }
    }

    pub fn into_server(self) -> IdentityServer<Self> {
        IdentityServer::new(self)
    }
}

/// The plugin's capabilities. The spec requires every instance of one version to report the
/// same set, whichever services it runs, so this is a constant.
pub fn plugin_capabilities() -> Vec<PluginCapability> {
    vec![
        PluginCapability {
            r#type: Some(plugin_capability::Type::Service(
                plugin_capability::Service {
                    r#type: service::Type::ControllerService as i32,
                },
            )),
        },
        PluginCapability {
            r#type: Some(plugin_capability::Type::VolumeExpansion(
                plugin_capability::VolumeExpansion {
                    r#type: volume_expansion::Type::Online as i32,
                },
            )),
        },
    ]
}

#[tonic::async_trait]
impl Identity for CsiIdentity {
    /// GetPluginInfo: the configured driver name (domain-name notation, at most 63
    /// characters; checked at start-up) and the version.
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.name.clone(),
            vendor_version: self.vendor_version.clone(),
            manifest: Default::default(),
        }))
    }

    /// GetPluginCapabilities: CONTROLLER_SERVICE and ONLINE volume expansion. No topology:
    /// every node reaches the RDS over the network.
    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: plugin_capabilities(),
        }))
    }

    /// Probe: `ready` while the plugin's dependencies answer; an error (non-OK code) when the
    /// plugin is unhealthy in a way that waiting will not cure. The answer comes from a
    /// reading a few seconds old at most, shared by concurrent probes, so probing cannot
    /// flood the device with sessions.
    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        let span = tracing::debug_span!("csi", rpc = "Probe");
        traced("Probe", span, Verbosity::Query, async {
            let ready = self.readiness.ready().await?;
            Ok(ProbeResponse { ready: Some(ready) })
        })
        .await
    }
}
