//! Attach, detach and rescan of managed NVMe/TCP volumes: the sysfs model, the pure plan and
//! the kernel writes put together, every wait bounded by the caller's deadline.
//!
//! Sysfs and `/dev` are read on blocking threads ([`run_blocking`]), never on the async
//! runtime: a scan walks many directories, and a lookup below a dying device can stall.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mounts::blocking::run_blocking;
use mounts::devnode::{NodeState, inspect_block_node};
use mounts::phase;
use tokio::time::Instant;

use crate::identity::HostIdentity;
use crate::kernel::{Kernel, LinuxKernel};
use crate::options::{ConnectReply, ConnectRequest, FabricsOptions};
use crate::plan::{AttachStep, plan_attach};
use crate::poll::{Check, DirChanges, DirEvents, wait_for};
use crate::prefix::ManagedPrefix;
use crate::sysfs::{ControllerState, Namespace, Sysfs, Topology};
use crate::{ConnectFailure, Error, Result};
use mounts::DeviceNumber;

/// How an attachment came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachKind {
    Connected,
    /// An existing live controller already served the namespace.
    Reused,
}

/// A namespace ready for use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub nqn: String,
    /// The live controller serving it.
    pub controller: String,
    pub namespace: Namespace,
    /// The device node, verified to carry the namespace's device number.
    pub device_path: PathBuf,
    pub kind: AttachKind,
}

/// Plans executed per attach before giving up: enough for "wait for a reconnect, then recycle,
/// then connect", small enough that a flapping state cannot spin.
const MAX_STEPS: usize = 6;

/// The NVMe-oF host of this node.
pub struct NvmeHost<K: Kernel = LinuxKernel> {
    sysfs: Sysfs,
    dev_root: PathBuf,
    /// Device nodes appearing and going under `dev_root`, to end waits promptly.
    dev_events: DirEvents,
    kernel: Arc<K>,
    identity: HostIdentity,
    prefix: ManagedPrefix,
}

impl<K: Kernel> std::fmt::Debug for NvmeHost<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmeHost")
            .field("sysfs", &self.sysfs)
            .field("dev_root", &self.dev_root)
            .field("host_nqn", &self.identity.nqn)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl<K: Kernel> NvmeHost<K> {
    pub fn new(
        sysfs: Sysfs,
        dev_root: impl Into<PathBuf>,
        kernel: K,
        identity: HostIdentity,
        prefix: ManagedPrefix,
    ) -> Self {
        let dev_root = dev_root.into();
        Self {
            sysfs,
            dev_events: DirEvents::new(&dev_root),
            dev_root,
            kernel: Arc::new(kernel),
            identity,
            prefix,
        }
    }

    pub fn identity(&self) -> &HostIdentity {
        &self.identity
    }

    pub fn prefix(&self) -> &ManagedPrefix {
        &self.prefix
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    pub fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    pub fn dev_root(&self) -> &Path {
        &self.dev_root
    }

    /// Subsystems and controllers of the driver's own volumes (see [`ManagedPrefix::covers`]),
    /// for reconcilers and metrics.
    pub async fn managed_topology(&self, deadline: Instant) -> Result<Topology> {
        let sysfs = self.sysfs.clone();
        let prefix = self.prefix.clone();
        run_blocking(
            "scanning sysfs for managed NVMe objects",
            deadline,
            move || {
                let mut topology = sysfs.scan_where(|nqn| prefix.covers(nqn))?;
                topology.subsystems.retain(|s| prefix.covers(&s.nqn));
                topology
                    .controllers
                    .retain(|c| prefix.covers(&c.subsystem_nqn));
                Ok(topology)
            },
        )
        .await
    }

    /// The objects of `nqn` as sysfs shows them now, read on a blocking thread.
    pub async fn scan_nqn(&self, nqn: &str, deadline: Instant) -> Result<Topology> {
        let sysfs = self.sysfs.clone();
        let wanted = nqn.to_owned();
        let op = format!("scanning sysfs for {nqn}");
        run_blocking(&op, deadline, move || sysfs.scan_nqn(&wanted)).await
    }

    /// The namespace `nsid` of `nqn` if the kernel shows it, without connecting anything.
    pub async fn find_namespace(
        &self,
        nqn: &str,
        nsid: u32,
        deadline: Instant,
    ) -> Result<Option<Namespace>> {
        let topology = self.scan_nqn(nqn, deadline).await?;
        Ok(topology.view(nqn).namespace(nsid).cloned())
    }

    /// What is at the device node `path`, read on a blocking thread.
    async fn inspect_node(
        &self,
        path: &Path,
        device: DeviceNumber,
        deadline: Instant,
    ) -> Result<NodeState> {
        let path = path.to_path_buf();
        let op = format!("inspecting {}", path.display());
        run_blocking(&op, deadline, move || {
            Ok::<_, Error>(inspect_block_node(&path, device)?)
        })
        .await
    }

    /// Makes namespace `nsid` of `request.nqn` available through a live controller at
    /// `request.target`, reusing what is already there when it works, waiting for a controller
    /// that is reconnecting, and replacing controllers that are dead or lost their namespace.
    /// Idempotent: a repeated call returns the same device.
    pub async fn attach(
        &self,
        request: &ConnectRequest,
        nsid: u32,
        deadline: Instant,
    ) -> Result<Attachment> {
        self.prefix.authorize(&request.nqn)?;
        let options = FabricsOptions::build(request, &self.identity)?;
        let nqn = request.nqn.as_str();
        // Before anything is connected, so that no device node appears unnoticed.
        let mut dev_changes = self.dev_events.subscribe();
        let mut recycled = false;
        // Each step is a phase of NodeStageVolume's breakdown (see `mounts::phase`).
        for _ in 0..MAX_STEPS {
            let step = phase::timed("sysfs scan", async {
                let topology = self.scan_nqn(nqn, deadline).await?;
                Ok::<_, Error>(plan_attach(&topology.view(nqn), &request.target, nsid))
            })
            .await?;
            tracing::debug!(nqn, ?step, "attach step");
            match step {
                AttachStep::Reuse { controller, .. } => {
                    return phase::timed(
                        "device",
                        self.await_namespace(
                            request,
                            nsid,
                            Some(controller),
                            AttachKind::Reused,
                            dev_changes.as_mut(),
                            deadline,
                        ),
                    )
                    .await;
                }
                AttachStep::Await { controller, state } => {
                    tracing::info!(nqn, %controller, ?state, "waiting for a controller to settle");
                    phase::timed("settle", self.await_settled(nqn, &controller, deadline)).await?;
                }
                AttachStep::Recycle {
                    controllers,
                    reason,
                } => {
                    if recycled {
                        return Err(Error::Stuck {
                            nqn: nqn.to_owned(),
                            reason: format!("still unusable after reconnecting: {reason}"),
                        });
                    }
                    recycled = true;
                    tracing::warn!(nqn, ?controllers, %reason, "replacing unusable controllers");
                    phase::timed("recycle", self.delete_controllers(&controllers, deadline))
                        .await?;
                }
                AttachStep::Connect => {
                    let connected =
                        phase::timed("connect", self.connect(&options, request, deadline)).await;
                    let created = match connected {
                        Ok(reply) => Some(reply.controller_name()),
                        // Someone else connected the same controller meanwhile: use it.
                        Err(Error::Connect {
                            failure: ConnectFailure::AlreadyConnected,
                            ..
                        }) => None,
                        Err(error) => return Err(error),
                    };
                    return phase::timed(
                        "device",
                        self.await_namespace(
                            request,
                            nsid,
                            created,
                            AttachKind::Connected,
                            dev_changes.as_mut(),
                            deadline,
                        ),
                    )
                    .await;
                }
            }
        }
        Err(Error::Stuck {
            nqn: nqn.to_owned(),
            reason: "controller state kept changing".into(),
        })
    }

    async fn connect(
        &self,
        options: &FabricsOptions,
        request: &ConnectRequest,
        deadline: Instant,
    ) -> Result<ConnectReply> {
        let kernel = Arc::clone(&self.kernel);
        let submitted = options.clone();
        let op = format!("connecting {} at {}", request.nqn, request.target);
        let reply = run_blocking(&op, deadline, move || {
            Ok::<_, Error>(kernel.connect(&submitted))
        })
        .await?;
        let reply = reply.map_err(|source| Error::Connect {
            nqn: request.nqn.clone(),
            target: request.target.to_string(),
            failure: ConnectFailure::from_io(&source),
            source,
        })?;
        let reply = ConnectReply::parse(&reply)?;
        tracing::info!(nqn = %request.nqn, target = %request.target, controller = %reply.controller_name(), "connected");
        Ok(reply)
    }

    /// Waits until a live controller at the target serves `nsid` and its device node exists
    /// with the right device number (checked again at each of `dev_changes`).
    /// `controller`, when known, must stay alive meanwhile.
    async fn await_namespace(
        &self,
        request: &ConnectRequest,
        nsid: u32,
        controller: Option<String>,
        kind: AttachKind,
        dev_changes: Option<&mut DirChanges>,
        deadline: Instant,
    ) -> Result<Attachment> {
        let nqn = request.nqn.as_str();
        let waiting_for = format!("namespace {nsid} of {nqn} at {}", request.target);
        let controller = &controller;
        wait_for(&waiting_for, deadline, dev_changes, move || async move {
            let topology = self.scan_nqn(nqn, deadline).await?;
            let view = topology.view(nqn);
            if let Some(name) = controller {
                match view.controllers.iter().find(|c| &c.name == name) {
                    None => {
                        return Err(Error::Stuck {
                            nqn: nqn.to_owned(),
                            reason: format!("controller {name} disappeared"),
                        });
                    }
                    Some(c) if c.state == ControllerState::Dead || c.state.is_going_away() => {
                        return Err(Error::Stuck {
                            nqn: nqn.to_owned(),
                            reason: format!("controller {name} went {:?}", c.state),
                        });
                    }
                    Some(_) => {}
                }
            }
            let Some(live) = view
                .controllers_at(&request.target)
                .find(|c| c.state == ControllerState::Live)
            else {
                return Ok(Check::Pending(view.describe()));
            };
            let Some(namespace) = view.namespace(nsid) else {
                return Ok(Check::Pending(view.describe()));
            };
            let device_path = namespace.device_path(&self.dev_root);
            match self
                .inspect_node(&device_path, namespace.device, deadline)
                .await?
            {
                NodeState::Matches => Ok(Check::Ready(Attachment {
                    nqn: nqn.to_owned(),
                    controller: live.name.clone(),
                    namespace: namespace.clone(),
                    device_path,
                    kind,
                })),
                other => Ok(Check::Pending(format!(
                    "{} is {other:?}, expected block device {}",
                    device_path.display(),
                    namespace.device
                ))),
            }
        })
        .await
    }

    /// Waits until `controller` is neither settling nor going away (or is gone).
    async fn await_settled(&self, nqn: &str, controller: &str, deadline: Instant) -> Result<()> {
        let waiting_for = format!("controller {controller} of {nqn} to settle");
        // A controller's state changes nothing under /dev: polling alone.
        wait_for(&waiting_for, deadline, None, move || async move {
            let topology = self.scan_nqn(nqn, deadline).await?;
            Ok(
                match topology.controllers.iter().find(|c| c.name == controller) {
                    Some(c) if c.state.is_settling() || c.state.is_going_away() => {
                        Check::Pending(format!("{controller} is {:?}", c.state))
                    }
                    _ => Check::Ready(()),
                },
            )
        })
        .await
    }

    /// Deletes the named controllers (each re-authorized from sysfs) and waits until they are
    /// gone (checked again whenever their `/dev/nvmeN` nodes go).
    async fn delete_controllers(&self, names: &[String], deadline: Instant) -> Result<()> {
        let mut dev_changes = self.dev_events.subscribe();
        for name in names {
            let kernel = Arc::clone(&self.kernel);
            let (prefix, sysfs, owned) = (self.prefix.clone(), self.sysfs.clone(), name.clone());
            let op = format!("deleting controller {name}");
            // Authorized from what sysfs says right before the write, on the same thread.
            let written = run_blocking(&op, deadline, move || {
                Ok::<_, Error>(
                    prefix
                        .authorize_controller(&sysfs, &owned)?
                        .map(|managed| kernel.delete_controller(&managed)),
                )
            })
            .await?;
            match written {
                None => {} // already gone
                Some(Ok(())) => tracing::info!(controller = %name, "controller deleted"),
                // Vanished meanwhile, or already being deleted by the kernel.
                Some(Err(error))
                    if error.kind() == std::io::ErrorKind::NotFound
                        || error.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                }
                Some(Err(error)) => {
                    return Err(Error::sysfs(
                        "delete",
                        self.sysfs.controller_dir(name),
                        error,
                    ));
                }
            }
        }
        let waiting_for = format!("controllers {} to go away", names.join(", "));
        let op = waiting_for.as_str();
        wait_for(op, deadline, dev_changes.as_mut(), move || async move {
            let dirs: Vec<(String, PathBuf)> = names
                .iter()
                .map(|name| (name.clone(), self.sysfs.controller_dir(name)))
                .collect();
            let remaining = run_blocking(op, deadline, move || {
                Ok::<_, Error>(
                    dirs.into_iter()
                        .filter(|(_, dir)| dir.exists())
                        .map(|(name, _)| name)
                        .collect::<Vec<String>>(),
                )
            })
            .await?;
            Ok(if remaining.is_empty() {
                Check::Ready(())
            } else {
                Check::Pending(format!("still present: {remaining:?}"))
            })
        })
        .await
    }

    /// Disconnects every controller of `nqn`, after checking the NQN is managed and that no
    /// namespace of it is in use (holders in sysfs, or an exclusive claim such as a mounted
    /// filesystem). Returns the controllers deleted; none when nothing was connected.
    pub async fn detach(&self, nqn: &str, deadline: Instant) -> Result<Vec<String>> {
        self.prefix.authorize(nqn)?;
        let topology = self.scan_nqn(nqn, deadline).await?;
        let view = topology.view(nqn);
        for namespace in view.namespaces() {
            if !namespace.holders.is_empty() {
                return Err(Error::InUse {
                    nqn: nqn.to_owned(),
                    reason: format!("{} is held by {:?}", namespace.name, namespace.holders),
                });
            }
            let device_path = namespace.device_path(&self.dev_root);
            if self
                .inspect_node(&device_path, namespace.device, deadline)
                .await?
                == NodeState::Matches
                && mounts::stats::is_claimed_exclusively(&device_path, deadline).await?
            {
                return Err(Error::InUse {
                    nqn: nqn.to_owned(),
                    reason: format!(
                        "{} is claimed (mounted or opened exclusively)",
                        device_path.display()
                    ),
                });
            }
        }
        let names: Vec<String> = view.controllers.iter().map(|c| c.name.clone()).collect();
        if !names.is_empty() {
            self.delete_controllers(&names, deadline).await?;
        }
        Ok(names)
    }

    /// Asks every live controller of `nqn` to rescan, then waits until namespace `nsid` reports
    /// at least `min_size_bytes`; returns the size seen.
    pub async fn rescan(
        &self,
        nqn: &str,
        nsid: u32,
        min_size_bytes: u64,
        deadline: Instant,
    ) -> Result<u64> {
        self.prefix.authorize(nqn)?;
        let topology = self.scan_nqn(nqn, deadline).await?;
        let live: Vec<String> = topology
            .view(nqn)
            .controllers
            .iter()
            .filter(|c| c.state == ControllerState::Live)
            .map(|c| c.name.clone())
            .collect();
        if live.is_empty() {
            return Err(Error::Stuck {
                nqn: nqn.to_owned(),
                reason: "no live controller to rescan".into(),
            });
        }
        for name in live {
            let kernel = Arc::clone(&self.kernel);
            let (prefix, sysfs, owned) = (self.prefix.clone(), self.sysfs.clone(), name.clone());
            let op = format!("rescanning controller {name}");
            // Authorized from sysfs right before the write, as for a deletion.
            let written = run_blocking(&op, deadline, move || {
                Ok::<_, Error>(
                    prefix
                        .authorize_controller(&sysfs, &owned)?
                        .map(|managed| kernel.rescan_controller(&managed)),
                )
            })
            .await?;
            if let Some(Err(error)) = written {
                return Err(Error::sysfs(
                    "rescan",
                    self.sysfs.controller_dir(&name),
                    error,
                ));
            }
        }
        let waiting_for = format!("namespace {nsid} of {nqn} to reach {min_size_bytes} bytes");
        // A new size changes nothing under /dev: polling alone.
        wait_for(&waiting_for, deadline, None, move || async move {
            Ok(match self.find_namespace(nqn, nsid, deadline).await? {
                Some(ns) if ns.size_bytes >= min_size_bytes => Check::Ready(ns.size_bytes),
                Some(ns) => Check::Pending(format!("{} has {} bytes", ns.name, ns.size_bytes)),
                None => Check::Pending("namespace not visible".into()),
            })
        })
        .await
    }
}
