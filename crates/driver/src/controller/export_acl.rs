//! Storage-level fencing (`--export-acl`): which hosts a volume's export admits. Pure; the
//! controller reads the device's list, asks for a plan, and writes only when it changes.
//!
//! A publish adds the node's host NQN (from its node id) to the list; an unpublish takes it
//! off. The device's list is the truth of who is admitted, so no other record is needed. With
//! no node left the export admits only [`NO_HOST`], a host NQN no initiator uses: an empty list
//! would admit every host. A value set by someone else (not a list of host NQNs) is never
//! overwritten, and an open export (empty) that other nodes already use is left open: their
//! host NQNs are unknown, and closing it would lock them out.

use routeros::{AllowedHosts, Nqn};

use crate::node_id::NodeRef;

/// The one host an export of a volume published nowhere admits. RouterOS reads an empty
/// list as "anyone", so "no one" must be spelled as someone who does not exist.
pub const NO_HOST: &str = "nqn.2025-01.io.srvlab.rds-csi:no-host-admitted";

/// What to do with the export's host list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportHostsPlan {
    /// Already right: nothing to write.
    Keep,
    /// Write this list.
    Set(AllowedHosts),
    /// Nothing is written, for this reason (a warning: the export is not fenced as asked).
    Leave(String),
    /// The publish must fail: the node could never connect, or the list is not ours to edit.
    Refuse(String),
}

/// The hosts a list admits, as a person reads it: [`NO_HOST`] alone is "no host".
pub fn admitted(hosts: &AllowedHosts) -> String {
    match hosts {
        AllowedHosts::Only(listed) if listed.iter().all(|h| h.as_str() == NO_HOST) => {
            "no host".to_owned()
        }
        AllowedHosts::Only(listed) => listed
            .iter()
            .filter(|h| h.as_str() != NO_HOST)
            .map(Nqn::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn no_host() -> Nqn {
    Nqn::try_from(NO_HOST).expect("a valid NQN")
}

fn host_of(node: &NodeRef) -> Result<Nqn, String> {
    let host = node.host_nqn.as_deref().ok_or_else(|| {
        format!(
            "node {node} does not report its NVMe host NQN in its node id (an older node \
             plugin?), so the export cannot admit it with --export-acl"
        )
    })?;
    Nqn::try_from(host).map_err(|error| format!("node {node} reports a bad host NQN: {error}"))
}

/// The list after `node` is given the volume; `others_hold` says whether other nodes hold it.
pub fn plan_publish(
    volume: &str,
    current: &AllowedHosts,
    node: &NodeRef,
    others_hold: bool,
) -> ExportHostsPlan {
    let host = match host_of(node) {
        Ok(host) => host,
        Err(why) => return ExportHostsPlan::Refuse(why),
    };
    match current {
        AllowedHosts::Unrecognized(value) => ExportHostsPlan::Refuse(format!(
            "the export of volume {volume} admits {value:?}, which is not a list of host NQNs \
             (set outside the driver?); it is left alone: clear it or set it to host NQNs \
             separated by commas"
        )),
        AllowedHosts::Any if others_hold => ExportHostsPlan::Leave(format!(
            "the export of volume {volume} admits any host and other nodes hold the volume \
             (published before --export-acl); it stays open until they let go"
        )),
        AllowedHosts::Any => ExportHostsPlan::Set(AllowedHosts::Only(vec![host])),
        AllowedHosts::Only(hosts) if hosts.contains(&host) => ExportHostsPlan::Keep,
        AllowedHosts::Only(hosts) => {
            let kept = hosts.iter().filter(|h| h.as_str() != NO_HOST).cloned();
            ExportHostsPlan::Set(
                AllowedHosts::only(kept.chain([host])).expect("at least the new host"),
            )
        }
    }
}

/// The list after `leaving` let go of the volume (every node when `None`), with `remaining`
/// nodes still holding it. An unpublish never fails on the list: Kubernetes must be able to
/// detach whatever the device shows.
pub fn plan_unpublish(
    volume: &str,
    current: &AllowedHosts,
    leaving: Option<&NodeRef>,
    remaining: usize,
) -> ExportHostsPlan {
    let closed = AllowedHosts::Only(vec![no_host()]);
    let wanted = match (current, leaving) {
        (AllowedHosts::Unrecognized(value), _) => {
            return ExportHostsPlan::Leave(format!(
                "the export of volume {volume} admits {value:?}, which is not a list of host \
                 NQNs; left alone"
            ));
        }
        (_, None) => closed,
        _ if remaining == 0 => closed,
        (AllowedHosts::Any, _) => return ExportHostsPlan::Keep,
        (AllowedHosts::Only(hosts), Some(node)) => {
            let gone = node.host_nqn.as_deref();
            let kept: Vec<Nqn> = hosts
                .iter()
                .filter(|h| Some(h.as_str()) != gone)
                .cloned()
                .collect();
            AllowedHosts::only(kept).unwrap_or(closed)
        }
    };
    if *current == wanted {
        ExportHostsPlan::Keep
    } else {
        ExportHostsPlan::Set(wanted)
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
    fn an_open_or_closed_export_admits_just_the_node_it_is_published_to() {
        let a = node("a", Some(A));
        let set = ExportHostsPlan::Set(only(&[A]));
        assert_eq!(plan_publish("v", &AllowedHosts::Any, &a, false), set);
        assert_eq!(plan_publish("v", &only(&[NO_HOST]), &a, false), set);
        assert_eq!(
            plan_publish("v", &only(&[A]), &a, false),
            ExportHostsPlan::Keep
        );
    }

    #[test]
    fn a_migration_admits_both_and_its_end_only_the_one_left() {
        let (a, b) = (node("a", Some(A)), node("b", Some(B)));
        let both = plan_publish("v", &only(&[A]), &b, true);
        assert_eq!(both, ExportHostsPlan::Set(only(&[A, B])));
        let done = plan_unpublish("v", &only(&[A, B]), Some(&a), 1);
        assert_eq!(done, ExportHostsPlan::Set(only(&[B])));
    }

    #[test]
    fn the_last_unpublish_admits_no_one_never_everyone() {
        let a = node("a", Some(A));
        let closed = ExportHostsPlan::Set(only(&[NO_HOST]));
        assert_eq!(plan_unpublish("v", &only(&[A]), Some(&a), 0), closed);
        // Every node at once (no node id), or an export that was open: closed too.
        assert_eq!(plan_unpublish("v", &only(&[A]), None, 0), closed);
        assert_eq!(plan_unpublish("v", &AllowedHosts::Any, Some(&a), 0), closed);
        assert_eq!(
            plan_unpublish("v", &only(&[NO_HOST]), Some(&a), 0),
            ExportHostsPlan::Keep
        );
    }

    #[test]
    fn a_node_without_a_host_nqn_is_refused_and_an_open_export_others_use_stays_open() {
        let plain = node("old", None);
        let refused = plan_publish("v", &AllowedHosts::Any, &plain, false);
        assert!(matches!(refused, ExportHostsPlan::Refuse(m) if m.contains("node old")));
        let bad = node("bad", Some("not-an-nqn"));
        let refused = plan_publish("v", &AllowedHosts::Any, &bad, false);
        assert!(matches!(refused, ExportHostsPlan::Refuse(m) if m.contains("node bad")));
        let b = node("b", Some(B));
        let open = plan_publish("v", &AllowedHosts::Any, &b, true);
        assert!(matches!(open, ExportHostsPlan::Leave(m) if m.contains("stays open")));
        // An open export with holders left: still open after one leaves.
        assert_eq!(
            plan_unpublish("v", &AllowedHosts::Any, Some(&b), 1),
            ExportHostsPlan::Keep
        );
    }

    #[test]
    fn a_value_set_outside_the_driver_is_never_overwritten() {
        let a = node("a", Some(A));
        let odd = AllowedHosts::Unrecognized("worker-1".into());
        let plan = plan_publish("v", &odd, &a, false);
        assert!(matches!(plan, ExportHostsPlan::Refuse(m) if m.contains("\"worker-1\"")));
        let plan = plan_unpublish("v", &odd, Some(&a), 0);
        assert!(matches!(plan, ExportHostsPlan::Leave(m) if m.contains("\"worker-1\"")));
    }

    #[test]
    fn what_an_export_admits_reads_plainly() {
        let hosts = |list: &[&str]| {
            AllowedHosts::only(list.iter().map(|h| Nqn::try_from(*h).unwrap())).unwrap()
        };
        assert_eq!(admitted(&hosts(&[NO_HOST])), "no host");
        assert_eq!(admitted(&hosts(&[A])), A);
        assert_eq!(admitted(&hosts(&[A, B])), format!("{A}, {B}"));
        assert_eq!(admitted(&AllowedHosts::Any), "any host");
    }
}
