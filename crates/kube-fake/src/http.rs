//! The fake over real HTTP on 127.0.0.1, for a test that runs a real binary against it.
//! Plain HTTP: the double needs no TLS, and a kubeconfig then needs no certificates.

use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// A running HTTP listener; dropping it stops the listener and closes every connection
/// (open watches included).
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub(crate) async fn start(router: Router) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Connections live in this set so that aborting the task closes them all.
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(HttpServer { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context points at this server (namespace `default`, no
    /// credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: kube-fake\n  context:\n    cluster: kube-fake\n    user: kube-fake\n    namespace: default\n\
             current-context: kube-fake\nusers:\n- name: kube-fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// Writes [`Self::kubeconfig`] to `path` (for `KUBECONFIG`).
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
