//! The CSI node id: the Kubernetes node name, and the node's NVMe host NQN after a `/`.
//!
//! The controller needs each node's host NQN to admit it to a volume's export
//! (`--export-acl`), and the node id is the one thing the CO hands from a node to the
//! controller (ControllerPublishVolume), with or without Kubernetes. Node names never contain
//! `/` (they are DNS subdomains), so the name is everything before the first one, and ids
//! without one (the existing Go driver's, or a node without NVMe) are plain node names: the
//! volumes they attached stay attachable. Kubernetes keeps a node id of at most
//! [`MAX_NODE_ID_BYTES`]; a longer one is not composed.

use std::fmt;

/// The longest node id Kubernetes stores in a CSINode.
pub const MAX_NODE_ID_BYTES: usize = 192;

const SEPARATOR: char = '/';

/// A node as its CSI node id names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeRef {
    /// The Kubernetes node name: what attachments are compared by.
    pub name: String,
    /// The node's NVMe host NQN, when its id carries it.
    pub host_nqn: Option<String>,
}

impl NodeRef {
    /// Reads a node id. Anything after the first `/` is the host NQN (empty = none).
    pub fn parse(node_id: &str) -> Self {
        match node_id.split_once(SEPARATOR) {
            Some((name, host)) => Self {
                name: name.to_owned(),
                host_nqn: Some(host.to_owned()).filter(|h| !h.is_empty()),
            },
            None => Self {
                name: node_id.to_owned(),
                host_nqn: None,
            },
        }
    }

    /// The id a node reports: `name/host-nqn`, or the plain name when there is no host NQN
    /// or the two would not fit in a CSINode (then export access cannot be given to it).
    pub fn compose(name: &str, host_nqn: Option<&str>) -> String {
        match host_nqn {
            Some(host) if name.len() + 1 + host.len() <= MAX_NODE_ID_BYTES => {
                format!("{name}{SEPARATOR}{host}")
            }
            _ => name.to_owned(),
        }
    }
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211";

    #[test]
    fn a_composed_id_reads_back_as_its_name_and_host() {
        let id = NodeRef::compose("worker-1.example", Some(HOST));
        assert_eq!(id, format!("worker-1.example/{HOST}"));
        assert_eq!(
            NodeRef::parse(&id),
            NodeRef {
                name: "worker-1.example".into(),
                host_nqn: Some(HOST.into())
            }
        );
        assert_eq!(NodeRef::parse(&id).to_string(), "worker-1.example");
    }

    #[test]
    fn plain_names_are_nodes_without_a_known_host() {
        for id in ["worker-1", "worker-1/"] {
            let node = NodeRef::parse(id);
            assert_eq!(node.name, "worker-1");
            assert_eq!(node.host_nqn, None);
        }
        assert_eq!(NodeRef::compose("worker-1", None), "worker-1");
    }

    #[test]
    fn an_id_that_would_not_fit_a_csinode_stays_the_plain_name() {
        let name = "n".repeat(MAX_NODE_ID_BYTES - HOST.len() - 1);
        assert_eq!(NodeRef::compose(&name, Some(HOST)).len(), MAX_NODE_ID_BYTES);
        let longer = format!("{name}x");
        assert_eq!(NodeRef::compose(&longer, Some(HOST)), longer);
    }
}
