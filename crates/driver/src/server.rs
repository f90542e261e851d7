//! Serving CSI over gRPC on a Unix socket (what kubelet and the sidecars use) or TCP (tests),
//! until a shutdown signal.
//!
//! The caller's deadline is honoured by tonic itself: a request carrying `grpc-timeout` is
//! abandoned when it expires (the controller lets device changes already under way finish
//! in the background, holding the volume's lock).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};

/// Where to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:///path/to/csi.sock` (also `unix:/path`).
    Unix(PathBuf),
    /// `tcp://127.0.0.1:10000`.
    Tcp(SocketAddr),
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("endpoint {0:?}: expected unix:///absolute/path/to.sock or tcp://address:port")]
    BadEndpoint(String),
    #[error("{0}: exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("{0}: another process is serving on this socket")]
    SocketInUse(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

impl FromStr for Endpoint {
    type Err = ServerError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ServerError::BadEndpoint(text.to_owned());
        if let Some(rest) = text.strip_prefix("unix:") {
            // `unix:///abs`, `unix://abs` is ambiguous (host part) and refused.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if !path.starts_with('/') || path.len() < 2 {
                return Err(bad());
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("tcp://") {
            return rest.parse().map(Endpoint::Tcp).map_err(|_| bad());
        }
        Err(bad())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// A bound endpoint, ready to serve.
#[derive(Debug)]
pub enum Listener {
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
    Tcp(TcpListener),
}

/// Binds the endpoint. A socket file left by a previous run is removed, but only when it is
/// a socket and nothing answers on it; any other file at the path is an error.
pub async fn bind(endpoint: &Endpoint) -> Result<Listener, ServerError> {
    match endpoint {
        Endpoint::Tcp(addr) => TcpListener::bind(addr)
            .await
            .map(Listener::Tcp)
            .map_err(io_error(format!("binding {addr}"))),
        Endpoint::Unix(path) => {
            remove_stale_socket(path).await?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(io_error(format!("creating {}", dir.display())))?;
            }
            let listener = UnixListener::bind(path)
                .map_err(io_error(format!("binding {}", path.display())))?;
            Ok(Listener::Unix {
                listener,
                path: path.clone(),
            })
        }
    }
}

async fn remove_stale_socket(path: &Path) -> Result<(), ServerError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(format!("inspecting {}", path.display()))(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket(path.to_owned()));
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(ServerError::SocketInUse(path.to_owned()));
    }
    tracing::info!(path = %path.display(), "removing a stale socket");
    std::fs::remove_file(path).map_err(io_error(format!("removing {}", path.display())))
}

impl Listener {
    /// The bound address (`unix:///...` or `tcp://ip:port`), e.g. to learn a picked port.
    pub fn endpoint(&self) -> Result<Endpoint, ServerError> {
        match self {
            Listener::Unix { path, .. } => Ok(Endpoint::Unix(path.clone())),
            Listener::Tcp(listener) => listener
                .local_addr()
                .map(Endpoint::Tcp)
                .map_err(io_error("reading the bound address")),
        }
    }

    /// Serves `routes` until `shutdown` completes, then lets calls in flight finish. The
    /// socket file is removed afterwards.
    pub async fn serve(
        self,
        routes: Routes,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let router = Server::builder().add_routes(routes);
        match self {
            Listener::Tcp(listener) => {
                router
                    .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
                    .await?;
            }
            Listener::Unix { listener, path } => {
                let incoming = futures::stream::unfold(listener, |listener| async move {
                    let accepted = listener.accept().await.map(|(stream, _)| stream);
                    Some((accepted, listener))
                });
                let served = router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await;
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove the socket");
                }
                served?;
            }
        }
        Ok(())
    }
}

/// A gRPC channel to a CSI endpoint, as a CO (or a tool checking a plugin) would open it.
pub async fn connect(endpoint: &Endpoint) -> Result<Channel, ServerError> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let uri = format!("http://{addr}");
            Ok(tonic::transport::Endpoint::from_shared(uri)?
                .connect()
                .await?)
        }
        // tonic wants a URI; the connector ignores it and dials the socket.
        Endpoint::Unix(path) => Ok(
            tonic::transport::Endpoint::from_static("http://csi.invalid")
                .connect_with_connector(UnixDialer(path.clone()))
                .await?,
        ),
    }
}

/// Opens a connection to a Unix socket for tonic.
#[derive(Clone)]
struct UnixDialer(PathBuf);

impl tonic::codegen::Service<tonic::codegen::http::Uri> for UnixDialer {
    type Response = TokioIo<UnixStream>;
    type Error = io::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::codegen::http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { UnixStream::connect(path).await.map(TokioIo::new) })
    }
}

/// Completes on SIGTERM (how Kubernetes stops a container) or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "unix:///csi/csi.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/csi/csi.sock".into())
        );
        assert_eq!(
            "unix:/tmp/x.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            "tcp://127.0.0.1:10000".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("127.0.0.1:10000".parse().unwrap())
        );
        for bad in [
            "",
            "/csi.sock",
            "unix://csi.sock",
            "unix://",
            "tcp://x",
            "http://a:1",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?}");
        }
        let e: Endpoint = "unix:///csi/csi.sock".parse().unwrap();
        assert_eq!(e.to_string(), "unix:///csi/csi.sock");
    }

    #[tokio::test]
    async fn stale_sockets_are_replaced_but_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csi.sock");
        let endpoint = Endpoint::Unix(path.clone());

        // A live socket is left alone.
        let live = bind(&endpoint).await.unwrap();
        assert!(matches!(
            bind(&endpoint).await,
            Err(ServerError::SocketInUse(_))
        ));
        // Once its listener is gone the socket file is stale and is replaced.
        drop(live);
        assert!(path.exists());
        let again = bind(&endpoint).await.unwrap();
        drop(again);

        // A regular file is never removed.
        let file = dir.path().join("file.sock");
        std::fs::write(&file, b"keep me").unwrap();
        assert!(matches!(
            bind(&Endpoint::Unix(file.clone())).await,
            Err(ServerError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    }
}
