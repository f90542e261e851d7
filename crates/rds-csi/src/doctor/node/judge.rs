//! Verdicts on the node's facts, without touching the machine.

use std::path::Path;

use mounts::mountinfo::Propagation;
use nvme::ManagedPrefix;
use nvme::identity::IdentityWarning;
use nvme::sysfs::{Controller, ControllerState};

use super::{
    FABRICS_DEVICE, IdentityFacts, KernelFacts, KubeletDir, KubeletFacts, ModuleState, Need,
    NodeFacts, Presence, ToolFact, ToolOutcome,
};
use crate::doctor::report::Check;

const MODPROBE_FIX: &str = "modprobe nvme-tcp   (loads nvme-fabrics and nvme-core too)\n\
     and at every boot: echo nvme-tcp > /etc/modules-load.d/nvme-tcp.conf";
const NEW_HOST_NQN_FIX: &str = "write a unique host NQN on every node: nvme gen-hostnqn > \
     /etc/nvme/hostnqn\nor: echo \"nqn.2014-08.org.nvmexpress:uuid:$(cat \
     /proc/sys/kernel/random/uuid)\" > /etc/nvme/hostnqn";

/// Every node verdict, in display order.
pub fn checks(facts: &NodeFacts) -> Vec<Check> {
    let mut checks = vec![
        judge_fabrics_device(&facts.kernel),
        judge_modules(&facts.kernel),
        judge_host_nqn(&facts.identity),
        judge_host_id(&facts.identity),
    ];
    checks.extend(facts.tools.iter().map(judge_tool));
    checks.push(judge_kubelet_dir(&facts.kubelet));
    checks.push(judge_propagation(&facts.kubelet));
    checks.push(judge_controllers(&facts.prefix, &facts.controllers));
    checks
}

const FABRICS: (&str, &str) = ("node.nvme-fabrics", "NVMe fabrics device");

pub fn judge_fabrics_device(kernel: &Result<KernelFacts, String>) -> Check {
    let (id, name) = FABRICS;
    let kernel = match kernel {
        Ok(kernel) => kernel,
        Err(error) => return Check::fail(id, name, format!("could not look: {error}")),
    };
    match &kernel.fabrics_device {
        Presence::Present => Check::ok(id, name, format!("{FABRICS_DEVICE} is present")),
        Presence::Missing => Check::fail(
            id,
            name,
            format!(
                "{FABRICS_DEVICE} is missing: the nvme-fabrics module is not loaded, so no \
                 volume can be attached"
            ),
        )
        .fix(MODPROBE_FIX),
        Presence::Wrong(what) => Check::fail(id, name, format!("{FABRICS_DEVICE}: {what}")).fix(
            "it must be the character device the nvme-fabrics module creates; remove \
                  whatever is there and load the module",
        ),
    }
}

pub fn judge_modules(kernel: &Result<KernelFacts, String>) -> Check {
    let (id, name) = ("node.kernel-modules", "NVMe/TCP modules");
    let kernel = match kernel {
        Ok(kernel) => kernel,
        Err(error) => return Check::fail(id, name, format!("could not look: {error}")),
    };
    let release = kernel.release.as_deref().unwrap_or("(unknown release)");
    let describe = |state: ModuleState| match state {
        ModuleState::Loaded => "loaded",
        ModuleState::BuiltIn => "built in",
        ModuleState::Available => "installed, not loaded",
        ModuleState::Missing => "not found",
    };
    let detail = kernel
        .modules
        .iter()
        .map(|(module, state)| format!("{module}: {}", describe(*state)))
        .collect::<Vec<_>>()
        .join(", ");
    let any = |wanted: ModuleState| kernel.modules.iter().any(|(_, state)| *state == wanted);
    if any(ModuleState::Missing) {
        let (where_looked, fix) = match &kernel.modules_dir {
            Some((dir, true)) => (
                format!("neither loaded nor listed in {}", dir.display()),
                format!(
                    "the modules of kernel {release} lack NVMe/TCP: install the distribution's \
                     extra modules (Ubuntu: linux-modules-extra-{release}) or boot a kernel \
                     built with CONFIG_NVME_TCP"
                ),
            ),
            Some((dir, false)) => (
                format!("not loaded, and {} does not exist", dir.display()),
                format!(
                    "install the modules of the running kernel {release} (in a container, mount \
                     /lib/modules from the host)\nthen: {MODPROBE_FIX}"
                ),
            ),
            None => (
                "not loaded; the kernel release is unknown".to_owned(),
                MODPROBE_FIX.to_owned(),
            ),
        };
        return Check::fail(id, name, format!("{detail}\n{where_looked}")).fix(fix);
    }
    if any(ModuleState::Available) {
        return Check::warn(
            id,
            name,
            format!(
                "{detail}\nthe kernel may load nvme-tcp on the first connect; do not rely on it"
            ),
        )
        .fix(MODPROBE_FIX);
    }
    Check::ok(id, name, format!("{detail} (kernel {release})"))
}

pub fn judge_host_nqn(identity: &Result<IdentityFacts, String>) -> Check {
    let (id, name) = ("node.host-nqn", "NVMe host NQN");
    let facts = match identity {
        Ok(facts) => facts,
        Err(error) => return Check::fail(id, name, format!("could not look: {error}")),
    };
    let resolved = match &facts.resolved {
        Ok(resolved) => resolved,
        Err(error) => {
            return Check::fail(
                id,
                name,
                format!("no usable host identity, so the node plugin cannot start: {error}"),
            )
            .fix(NEW_HOST_NQN_FIX);
        }
    };
    let file = &facts.paths.hostnqn;
    let (nqn, source) = (&resolved.nqn, &resolved.source);
    let about_file = resolved.warnings.iter().find(|warning| match warning {
        IdentityWarning::NoHostNqnFile(path)
        | IdentityWarning::Placeholder { path, .. }
        | IdentityWarning::Unusable { path, .. } => path == file,
        IdentityWarning::HostIdDerived => false,
    });
    match about_file {
        None => Check::ok(id, name, format!("{nqn} (from {source})")),
        Some(IdentityWarning::NoHostNqnFile(_)) => Check::warn(
            id,
            name,
            format!(
                "{} is missing; the driver presents {nqn} ({source}), other NVMe tools on this \
                 node would present none or another",
                file.display()
            ),
        )
        .fix(format!(
            "mkdir -p {dir} && echo {nqn} > {file}   (so every tool presents the same identity)",
            dir = file.parent().unwrap_or(Path::new("/")).display(),
            file = file.display()
        )),
        Some(IdentityWarning::Placeholder { value, .. }) => Check::fail(
            id,
            name,
            format!(
                "{} holds {value}, a placeholder shared by many machines (a cloned image?)\nthe \
                 driver ignores it and presents {nqn} ({source}), but other NVMe tools here \
                 would present the duplicate, and targets confuse nodes that share one",
                file.display()
            ),
        )
        .fix(NEW_HOST_NQN_FIX),
        Some(warning) => Check::fail(
            id,
            name,
            format!("{warning}\nthe driver presents {nqn} ({source}) instead"),
        )
        .fix(NEW_HOST_NQN_FIX),
    }
}

pub fn judge_host_id(identity: &Result<IdentityFacts, String>) -> Check {
    let (id, name) = ("node.host-id", "NVMe host ID");
    let Ok(IdentityFacts {
        paths,
        resolved: Ok(resolved),
    }) = identity
    else {
        return Check::skip(id, name, "no host identity (see the host NQN)");
    };
    let file = &paths.hostid;
    let write_it = format!("echo {} > {}", resolved.id, file.display());
    let placeholder = resolved.warnings.iter().find_map(|warning| match warning {
        IdentityWarning::Placeholder { path, value } if path == file => Some(value),
        _ => None,
    });
    if let Some(value) = placeholder {
        return Check::fail(
            id,
            name,
            format!(
                "{} holds {value}, a placeholder shared by many machines; the driver presents \
                 {} instead",
                file.display(),
                resolved.id
            ),
        )
        .fix(write_it);
    }
    if resolved.warnings.contains(&IdentityWarning::HostIdDerived) {
        return Check::warn(
            id,
            name,
            format!(
                "{} is missing or not a UUID; the driver presents {}, derived from the host NQN",
                file.display(),
                resolved.id
            ),
        )
        .fix(write_it);
    }
    Check::ok(
        id,
        name,
        format!("{} (from {})", resolved.id, file.display()),
    )
}

pub fn judge_tool(tool: &ToolFact) -> Check {
    let id = format!("node.tool.{}", tool.name);
    let name = format!("tool {}", tool.name);
    let install = format!(
        "install {} (same package name on Debian, Ubuntu, Fedora, RHEL)",
        tool.package
    );
    match &tool.outcome {
        ToolOutcome::Version(version) => Check::ok(id, name, version),
        ToolOutcome::NotFound => {
            let detail = format!("not found on PATH: {}", tool.without);
            match tool.need {
                Need::Required => Check::fail(id, name, detail),
                Need::Optional => Check::warn(id, name, detail),
            }
            .fix(install)
        }
        ToolOutcome::TimedOut(after) => Check::fail(
            id,
            name,
            format!(
                "its version query did not finish (gave up {} s in)",
                after.as_secs()
            ),
        )
        .fix(format!(
            "run `{} -V` by hand to see why it hangs",
            tool.name
        )),
        ToolOutcome::Broken(error) => {
            Check::fail(id, name, format!("does not run: {error}")).fix(install)
        }
    }
}

const KUBELET_DIR: (&str, &str) = ("node.kubelet-dir", "kubelet directory");

pub fn judge_kubelet_dir(kubelet: &Result<KubeletFacts, String>) -> Check {
    let (id, name) = KUBELET_DIR;
    let facts = match kubelet {
        Ok(facts) => facts,
        Err(error) => return Check::fail(id, name, format!("could not look: {error}")),
    };
    let dir = facts.dir.display();
    let elsewhere = "give --kubelet-dir with kubelet's --root-dir (k0s: /var/lib/k0s/kubelet, \
                     MicroK8s: /var/snap/microk8s/common/var/lib/kubelet); the node plugin's \
                     DaemonSet must mount that same path";
    match &facts.found {
        KubeletDir::Missing => Check::fail(
            id,
            name,
            format!(
                "{dir} does not exist: kubelet does not run here, or keeps its state elsewhere"
            ),
        )
        .fix(elsewhere),
        KubeletDir::NotADirectory => {
            Check::fail(id, name, format!("{dir} is not a directory")).fix(elsewhere)
        }
        KubeletDir::Unreadable(error) => Check::fail(id, name, format!("{dir}: {error}")),
        KubeletDir::Directory { real, .. } if real == &facts.dir => {
            Check::ok(id, name, format!("{dir} exists"))
        }
        KubeletDir::Directory { real, .. } => {
            Check::ok(id, name, format!("{dir} exists (it is {})", real.display()))
        }
    }
}

pub fn judge_propagation(kubelet: &Result<KubeletFacts, String>) -> Check {
    let (id, name) = ("node.kubelet-propagation", "mount propagation");
    let Ok(KubeletFacts {
        found: KubeletDir::Directory { real, mount },
        ..
    }) = kubelet
    else {
        return Check::skip(id, name, "no kubelet directory to look at");
    };
    let entry = match mount {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            return Check::fail(
                id,
                name,
                format!(
                    "no mount holds {}: the mount table is incomplete",
                    real.display()
                ),
            );
        }
        Err(error) => {
            return Check::fail(id, name, format!("cannot read the mount table: {error}"));
        }
    };
    let on = format!(
        "{} lies on the mount at {}",
        real.display(),
        entry.mount_point.display()
    );
    let reach = "volumes the node plugin mounts below it would stay invisible to kubelet and pods";
    let fix = |kind: &str| {
        format!(
            "make it shared on the host: mount --make-rshared {mount}\n(systemd does so for / \
             at boot; look for what made it {kind}), and give the node plugin's kubelet \
             directory volume mountPropagation: Bidirectional",
            mount = entry.mount_point.display()
        )
    };
    match entry.propagation() {
        Propagation::Shared { peer_group, .. } => Check::ok(
            id,
            name,
            format!("{on}, shared (peer group {peer_group}): Bidirectional propagation works"),
        ),
        Propagation::Slave { master } => Check::fail(
            id,
            name,
            format!("{on}, a slave of peer group {master}: mounts made here do not propagate back, so {reach}"),
        )
        .fix(fix("slave")),
        Propagation::Private => Check::fail(id, name, format!("{on}, private: {reach}"))
            .fix(fix("private")),
        Propagation::Unbindable => Check::fail(id, name, format!("{on}, unbindable: {reach}"))
            .fix(fix("unbindable")),
    }
}

pub(super) fn state_text(state: &ControllerState) -> &str {
    match state {
        ControllerState::New => "new",
        ControllerState::Live => "live",
        ControllerState::Resetting => "resetting",
        ControllerState::Connecting => "connecting",
        ControllerState::Deleting => "deleting",
        ControllerState::DeletingNoIo => "deleting (no IO)",
        ControllerState::Dead => "dead",
        ControllerState::Other(text) => text,
    }
}

fn address_text(controller: &Controller) -> String {
    let address = controller.address.as_ref();
    match (
        address.and_then(|a| a.get("traddr")),
        address.and_then(|a| a.get("trsvcid")),
    ) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "-".to_owned(),
    }
}

pub fn judge_controllers(
    prefix: &Result<ManagedPrefix, String>,
    controllers: &Result<Vec<Controller>, String>,
) -> Check {
    let (id, name) = ("node.nvme-controllers", "NVMe controllers");
    let prefix = match prefix {
        Ok(prefix) => prefix,
        Err(error) => {
            return Check::fail(id, name, format!("--nqn-prefix is not usable: {error}"))
                .fix("give the controller's --nqn-prefix (the node plugin refuses this one too)");
        }
    };
    let controllers = match controllers {
        Ok(controllers) => controllers,
        Err(error) => return Check::fail(id, name, format!("cannot read sysfs: {error}")),
    };
    if controllers.is_empty() {
        return Check::ok(id, name, "none connected");
    }
    let managed = |c: &Controller| prefix.covers(&c.subsystem_nqn);
    let troubled: Vec<&Controller> = controllers
        .iter()
        .filter(|c| managed(c) && c.state != ControllerState::Live)
        .collect();
    let managed_count = controllers.iter().filter(|c| managed(c)).count();
    let mut detail = format!(
        "{} connected: {managed_count} managed by this driver (under {}), {} foreign (never \
         touched)",
        controllers.len(),
        prefix.as_str(),
        controllers.len() - managed_count
    );
    for c in controllers {
        detail.push_str(&format!(
            "\n{}  {}  {} {}  {}  {}",
            c.name,
            state_text(&c.state),
            c.transport.as_deref().unwrap_or("?"),
            address_text(c),
            c.subsystem_nqn,
            if managed(c) { "managed" } else { "foreign" }
        ));
    }
    if troubled.is_empty() {
        return Check::ok(id, name, detail);
    }
    let names: Vec<String> = troubled
        .iter()
        .map(|c| format!("{} ({})", c.name, state_text(&c.state)))
        .collect();
    Check::warn(
        id,
        name,
        format!("{detail}\nnot live: {}", names.join(", ")),
    )
    .fix(
        "the kernel retries a lost connection until ctrl_loss_tmo, then removes the controller; \
         check the network path to the RDS and that it still exports those NQNs (run doctor \
         with --rds-address)",
    )
}
