//! What to do to get a usable namespace for an NQN, decided from a sysfs snapshot alone.

use crate::options::Target;
use crate::sysfs::{ControllerState, Namespace, NqnView};

/// The next step towards an attached namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachStep {
    /// A live controller at the target already serves the namespace.
    Reuse {
        controller: String,
        namespace: Namespace,
    },
    /// A controller at the target is reconnecting, resetting or being deleted; wait for it to
    /// settle rather than disturb it (a reconnecting controller may carry a mounted volume).
    Await {
        controller: String,
        state: ControllerState,
    },
    /// Controllers at the target that cannot serve the namespace (dead, or live without the
    /// namespace): delete them, then connect anew.
    Recycle {
        controllers: Vec<String>,
        reason: String,
    },
    /// Nothing at the target: connect. A subsystem left without controllers (its namespace
    /// still held open) gets its path back this way.
    Connect,
}

pub fn plan_attach(view: &NqnView<'_>, target: &Target, nsid: u32) -> AttachStep {
    let at_target: Vec<_> = view.controllers_at(target).collect();
    if let Some(live) = at_target.iter().find(|c| c.state == ControllerState::Live) {
        return match view.namespace(nsid) {
            Some(namespace) => AttachStep::Reuse {
                controller: live.name.clone(),
                namespace: namespace.clone(),
            },
            None => AttachStep::Recycle {
                controllers: at_target
                    .iter()
                    .filter(|c| !c.state.is_going_away())
                    .map(|c| c.name.clone())
                    .collect(),
                reason: format!("{} is live but shows no namespace {nsid}", live.name),
            },
        };
    }
    if let Some(moving) = at_target
        .iter()
        .find(|c| c.state.is_settling() || c.state.is_going_away())
    {
        return AttachStep::Await {
            controller: moving.name.clone(),
            state: moving.state.clone(),
        };
    }
    if !at_target.is_empty() {
        let states: Vec<String> = at_target
            .iter()
            .map(|c| format!("{} {:?}", c.name, c.state))
            .collect();
        return AttachStep::Recycle {
            controllers: at_target.iter().map(|c| c.name.clone()).collect(),
            reason: format!("no usable controller: {}", states.join(", ")),
        };
    }
    AttachStep::Connect
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::{Controller, ControllerAddress, Subsystem, Topology};
    use mounts::DeviceNumber;

    const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-1";

    fn target() -> Target {
        Target::new("10.0.0.1".parse().unwrap(), 4420)
    }

    fn controller(name: &str, state: &str, traddr: &str) -> Controller {
        Controller {
            name: name.into(),
            subsystem_nqn: NQN.into(),
            state: ControllerState::parse(state),
            transport: Some("tcp".into()),
            address: Some(ControllerAddress::parse(&format!(
                "traddr={traddr},trsvcid=4420"
            ))),
            cntlid: Some(1),
            namespaces: vec![],
            paths: vec![],
        }
    }

    fn namespace(name: &str, nsid: u32) -> Namespace {
        Namespace {
            name: name.into(),
            nsid: Some(nsid),
            device: DeviceNumber::new(259, 7),
            size_bytes: 1 << 30,
            holders: vec![],
            ids: Default::default(),
        }
    }

    fn topology(controllers: Vec<Controller>, heads: Vec<Namespace>) -> Topology {
        Topology {
            subsystems: vec![Subsystem {
                name: "nvme-subsys2".into(),
                nqn: NQN.into(),
                controller_names: controllers.iter().map(|c| c.name.clone()).collect(),
                heads,
            }],
            controllers,
        }
    }

    fn plan(topology: &Topology) -> AttachStep {
        plan_attach(&topology.view(NQN), &target(), 1)
    }

    #[test]
    fn nothing_there_means_connect() {
        assert_eq!(plan(&Topology::default()), AttachStep::Connect);
    }

    #[test]
    fn live_controller_with_the_namespace_is_reused_whatever_the_numbering() {
        // Controller nvme1 serves head nvme2n2: the names share no number on purpose.
        let topology = topology(
            vec![controller("nvme1", "live", "10.0.0.1")],
            vec![namespace("nvme2n2", 1)],
        );
        assert_eq!(
            plan(&topology),
            AttachStep::Reuse {
                controller: "nvme1".into(),
                namespace: namespace("nvme2n2", 1)
            }
        );
    }

    #[test]
    fn a_namespace_with_another_nsid_does_not_count() {
        let topology = topology(
            vec![controller("nvme1", "live", "10.0.0.1")],
            vec![namespace("nvme2n1", 2)],
        );
        assert!(matches!(plan(&topology), AttachStep::Recycle { .. }));
    }

    #[test]
    fn without_multipath_the_controllers_own_namespace_counts() {
        let mut own = controller("nvme3", "live", "10.0.0.1");
        own.namespaces.push(namespace("nvme3n1", 1));
        let topology = topology(vec![own], vec![]);
        assert!(
            matches!(plan(&topology), AttachStep::Reuse { namespace, .. } if namespace.name == "nvme3n1")
        );
    }

    #[test]
    fn live_without_namespace_is_an_orphan_to_recycle() {
        let topology = topology(
            vec![
                controller("nvme1", "live", "10.0.0.1"),
                controller("nvme4", "deleting", "10.0.0.1"),
            ],
            vec![],
        );
        match plan(&topology) {
            AttachStep::Recycle {
                controllers,
                reason,
            } => {
                assert_eq!(controllers, vec!["nvme1"]);
                assert!(reason.contains("no namespace"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settling_or_leaving_controllers_are_awaited_not_disturbed() {
        for state in [
            "connecting",
            "resetting",
            "new",
            "deleting",
            "deleting (no IO)",
        ] {
            let topology = topology(
                vec![controller("nvme1", state, "10.0.0.1")],
                vec![namespace("nvme2n2", 1)],
            );
            assert!(
                matches!(plan(&topology), AttachStep::Await { ref controller, .. } if controller == "nvme1"),
                "{state}"
            );
        }
    }

    #[test]
    fn dead_controllers_are_recycled() {
        let topology = topology(
            vec![controller("nvme1", "dead", "10.0.0.1")],
            vec![namespace("nvme2n2", 1)],
        );
        assert_eq!(
            plan(&topology),
            AttachStep::Recycle {
                controllers: vec!["nvme1".into()],
                reason: "no usable controller: nvme1 Dead".into()
            }
        );
    }

    #[test]
    fn controllers_at_other_addresses_are_left_alone() {
        let topology = topology(
            vec![controller("nvme1", "dead", "10.9.9.9")],
            vec![namespace("nvme2n2", 1)],
        );
        assert_eq!(plan(&topology), AttachStep::Connect);
    }

    #[test]
    fn a_subsystem_without_controllers_is_reconnected() {
        let topology = topology(vec![], vec![namespace("nvme2n2", 1)]);
        assert_eq!(plan(&topology), AttachStep::Connect);
    }
}
