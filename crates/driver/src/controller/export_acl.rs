//! Storage-level fencing (`--export-acl`): which hosts a volume's export admits, decided from
//! the nodes that hold the volume. Pure; the controller reads the device's value, asks
//! [`plan_export_hosts`], and writes only when the answer differs.
//!
//! The export admits exactly the host NQNs of the nodes the volume is published to (two
//! during a live migration). With no node left it admits only [`NO_HOST`], a host NQN no
//! initiator uses: an empty list would admit every host. A value set by someone else (not a
//! list of host NQNs) is never overwritten.

use routeros::{AllowedHosts, Nqn};

use crate::node_id::NodeRef;

/// The one host an export of a volume published nowhere admits. RouterOS reads an empty
/// list as "anyone", so "no one" must be spelled as someone who does not exist.
pub const NO_HOST: &str = "nqn.2025-01.io.srvlab.rds-csi:no-host-admitted";

/// What the export's host list should become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportHostsPlan {
    /// Already right: nothing to write.
    Keep,
    /// Write this list.
    Set(AllowedHosts),
    /// The export cannot be fenced as asked; nothing is written.
    Refuse(String),
}

/// The plan for `volume`'s export when `holders` (after the change being made) hold it and
/// the device shows `current`. `publishing` is the node being given the volume, if any: it
/// must bring a host NQN, since without one it could never connect once the list is set.
pub fn plan_export_hosts(
    volume: &str,
    current: &AllowedHosts,
    holders: &[NodeRef],
    publishing: Option<&NodeRef>,
) -> ExportHostsPlan {
    if let AllowedHosts::Unrecognized(value) = current {
        return ExportHostsPlan::Refuse(format!(
            "the export of volume {volume} admits {value:?}, which is not a list of host NQNs \
             (set outside the driver?); it is left alone: clear it or set it to host NQNs \
             separated by commas"
        ));
    }
    if let Some(node) = publishing.filter(|n| n.host_nqn.is_none()) {
        return ExportHostsPlan::Refuse(format!(
            "node {node} does not report its NVMe host NQN in its node id (an older node \
             plugin?), so volume {volume}'s export cannot admit it with --export-acl"
        ));
    }
    let mut hosts = Vec::with_capacity(holders.len());
    for node in holders {
        match node.host_nqn.as_deref().map(Nqn::try_from) {
            Some(Ok(host)) => hosts.push(host),
            Some(Err(error)) => {
                return ExportHostsPlan::Refuse(format!(
                    "node {node} reports a host NQN that is not valid: {error}"
                ));
            }
            // A holder from before it reported one: restricting would lock it out.
            None => {
                return if *current == AllowedHosts::Any {
                    ExportHostsPlan::Keep
                } else {
                    ExportHostsPlan::Set(AllowedHosts::Any)
                };
            }
        }
    }
    if hosts.is_empty() {
        hosts.push(Nqn::try_from(NO_HOST).expect("a valid NQN"));
    }
    let wanted = AllowedHosts::only(hosts).expect("never empty");
    if same_hosts(current, &wanted) {
        ExportHostsPlan::Keep
    } else {
        ExportHostsPlan::Set(wanted)
    }
}

/// The same hosts, in any order.
fn same_hosts(a: &AllowedHosts, b: &AllowedHosts) -> bool {
    match (a, b) {
        (AllowedHosts::Only(x), AllowedHosts::Only(y)) => {
            x.len() == y.len() && x.iter().all(|h| y.contains(h))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211";
    const B: &str = "nqn.2014-08.org.nvmexpress:uuid:0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";

    fn node(name: &str, host: Option<&str>) -> NodeRef {
        NodeRef {
            name: name.into(),
            host_nqn: host.map(str::to_owned),
        }
    }

    fn only(hosts: &[&str]) -> AllowedHosts {
        AllowedHosts::only(hosts.iter().map(|h| Nqn::try_from(*h).unwrap())).unwrap()
    }

    #[test]
    fn an_open_export_is_closed_to_all_but_the_node_it_is_published_to() {
        let a = node("a", Some(A));
        let plan = plan_export_hosts("v", &AllowedHosts::Any, std::slice::from_ref(&a), Some(&a));
        assert_eq!(plan, ExportHostsPlan::Set(only(&[A])));
    }

    #[test]
    fn a_migration_admits_both_nodes_and_its_end_only_the_one_left() {
        let (a, b) = (node("a", Some(A)), node("b", Some(B)));
        let both = plan_export_hosts("v", &only(&[A]), &[a.clone(), b.clone()], Some(&b));
        assert_eq!(both, ExportHostsPlan::Set(only(&[A, B])));
        let done = plan_export_hosts("v", &only(&[A, B]), std::slice::from_ref(&b), None);
        assert_eq!(done, ExportHostsPlan::Set(only(&[B])));
        // The same hosts in another order need no write.
        let again = plan_export_hosts("v", &only(&[B, A]), &[a, b], None);
        assert_eq!(again, ExportHostsPlan::Keep);
    }

    #[test]
    fn the_last_unpublish_admits_no_one_never_everyone() {
        let plan = plan_export_hosts("v", &only(&[A]), &[], None);
        assert_eq!(plan, ExportHostsPlan::Set(only(&[NO_HOST])));
        let again = plan_export_hosts("v", &only(&[NO_HOST]), &[], None);
        assert_eq!(again, ExportHostsPlan::Keep);
    }

    #[test]
    fn a_node_without_a_host_nqn_is_refused_and_an_old_holder_keeps_the_export_open() {
        let plain = node("old", None);
        let refused = plan_export_hosts(
            "v",
            &AllowedHosts::Any,
            std::slice::from_ref(&plain),
            Some(&plain),
        );
        assert!(matches!(refused, ExportHostsPlan::Refuse(m) if m.contains("node old")));
        // A holder attached before it reported its host: restricting would cut it off.
        let b = node("b", Some(B));
        let open = plan_export_hosts(
            "v",
            &AllowedHosts::Any,
            &[plain.clone(), b.clone()],
            Some(&b),
        );
        assert_eq!(open, ExportHostsPlan::Keep);
        let reopened = plan_export_hosts("v", &only(&[B]), &[plain, b.clone()], Some(&b));
        assert_eq!(reopened, ExportHostsPlan::Set(AllowedHosts::Any));
    }

    #[test]
    fn a_value_set_outside_the_driver_or_a_bad_host_is_never_overwritten() {
        let a = node("a", Some(A));
        let odd = AllowedHosts::Unrecognized("worker-1".into());
        let plan = plan_export_hosts("v", &odd, std::slice::from_ref(&a), Some(&a));
        assert!(matches!(plan, ExportHostsPlan::Refuse(m) if m.contains("\"worker-1\"")));
        let bad = node("bad", Some("not-an-nqn"));
        let plan = plan_export_hosts(
            "v",
            &AllowedHosts::Any,
            std::slice::from_ref(&bad),
            Some(&bad),
        );
        assert!(matches!(plan, ExportHostsPlan::Refuse(m) if m.contains("node bad")));
    }
}
