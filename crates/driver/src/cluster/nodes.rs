//! Whether a node a volume is published to exists (the spec's "node does not exist" row of
//! ControllerPublishVolume, NOT_FOUND). Only a clear answer counts: a Node the API server says
//! is not there. When it cannot tell (no answer in time, an error), the publish goes ahead and
//! the rules decide as without a cluster.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;

/// Time the lookup may take.
const LOOKUP_TIME: Duration = Duration::from_secs(5);

/// Looks Nodes up by name.
#[derive(Clone)]
pub struct NodeDirectory {
    nodes: Api<Node>,
}

impl std::fmt::Debug for NodeDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDirectory").finish_non_exhaustive()
    }
}

impl NodeDirectory {
    pub fn new(client: kube::Client) -> Self {
        Self {
            nodes: Api::all(client),
        }
    }

    /// `Some(false)` when the cluster has no Node `name`; `Some(true)` when it has; `None` when
    /// it could not be told (logged).
    pub async fn exists(&self, name: &str) -> Option<bool> {
        match tokio::time::timeout(LOOKUP_TIME, self.nodes.get_metadata_opt(name)).await {
            Ok(Ok(node)) => Some(node.is_some()),
            Ok(Err(error)) => {
                tracing::warn!(node = name, %error, "cannot tell whether the node exists");
                None
            }
            Err(_) => {
                tracing::warn!(
                    node = name,
                    "cannot tell whether the node exists: no answer in time"
                );
                None
            }
        }
    }
}
