//! Serving the node plugin on the CSI endpoint (a Unix socket), with a minimal Identity
//! service beside the Node service.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use csi::v1::identity_server::{Identity, IdentityServer};
use csi::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, ProbeRequest, ProbeResponse,
};
use tokio::net::UnixListener;
use tonic::{Request, Response, Status};

use super::NodeService;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("endpoint {0:?}: only unix:// sockets are supported")]
    Endpoint(String),
    #[error("{}: {source}", path.display())]
    Socket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The socket path of a CSI endpoint: `unix:///csi/csi.sock`, `unix:/csi/csi.sock` or a
/// bare absolute path.
pub fn unix_socket_path(endpoint: &str) -> Result<PathBuf, ServeError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(ServeError::Endpoint(endpoint.to_owned()))
    }
}

/// Identity of a node-only plugin: name, version, and readiness.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub driver_name: String,
    pub vendor_version: String,
}

#[tonic::async_trait]
impl Identity for NodeIdentity {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.driver_name.clone(),
            vendor_version: self.vendor_version.clone(),
            manifest: HashMap::new(),
        }))
    }

    /// A node plugin offers no controller service and no topology.
    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}

/// Removes a socket left by a previous run; anything else at the path is left alone.
fn remove_stale_socket(path: &Path) -> Result<(), ServeError> {
    let failed = |source| ServeError::Socket {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(failed),
        Ok(_) => Err(failed(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a socket",
        ))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(failed(error)),
    }
}

/// Binds the CSI socket at `path`, replacing a socket left by a previous run.
pub fn bind_socket(path: &Path) -> Result<UnixListener, ServeError> {
    remove_stale_socket(path)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ServeError::Socket {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    UnixListener::bind(path).map_err(|source| ServeError::Socket {
        path: path.to_path_buf(),
        source,
    })
}

/// Serves Identity and Node on `listener` until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    identity: NodeIdentity,
    node: NodeService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    tonic::transport::Server::builder()
        .add_service(IdentityServer::new(identity))
        .add_service(node.into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// Serves Identity and Node on the Unix socket at `path` until `shutdown` completes.
pub async fn serve_unix(
    path: &Path,
    identity: NodeIdentity,
    node: NodeService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let listener = bind_socket(path)?;
    tracing::info!(socket = %path.display(), "serving CSI Identity and Node");
    serve(listener, identity, node, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_unix_sockets() {
        for endpoint in [
            "unix:///csi/csi.sock",
            "unix:/csi/csi.sock",
            "/csi/csi.sock",
        ] {
            assert_eq!(
                unix_socket_path(endpoint).unwrap(),
                PathBuf::from("/csi/csi.sock")
            );
        }
        for bad in [
            "tcp://0.0.0.0:10000",
            "unix://relative.sock",
            "csi.sock",
            "",
        ] {
            assert!(unix_socket_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_sockets_are_removed_before_binding() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("csi.sock");
        std::fs::write(&file, b"not a socket").unwrap();
        assert!(remove_stale_socket(&file).is_err());
        assert!(file.exists());
        std::fs::remove_file(&file).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(&file).unwrap();
        drop(listener);
        remove_stale_socket(&file).unwrap();
        assert!(!file.exists());
        remove_stale_socket(&file).unwrap();
    }
}
