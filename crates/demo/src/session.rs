//! The state of one run: its work directory and everything started or made so far, which
//! is what the teardown works from whenever the run ends.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use driver::config::DEFAULT_NQN_PREFIX;
use driver::server::Endpoint;
use e2e::{Csi, PathLayout, StageBreakdown};
use routeros::{Client, ClientConfig, HostKeyPolicy, Secret, SshAuth};

use crate::error::{DemoError, Result, io_context};
use crate::ledger::Ledger;
use crate::plan::{FsKind, Sizes};
use crate::preflight::HostFacts;
use crate::procs::{Child, SimFacts};
use crate::render::{Fabric, KeepInfo};

/// The simulator's login name.
pub const RDS_USER: &str = "admin";

/// The processes, by the names the output uses.
pub const SIMULATOR: &str = "RDS simulator";
pub const CONTROLLER: &str = "controller";
pub const NODE: &str = "node plugin";

/// The temporary directory holding everything of a run: simulator data, sockets, kubelet's
/// paths, logs.
#[derive(Debug, Clone)]
pub struct WorkDir {
    /// Canonical, as the kernel shows mount points and loop backing files.
    pub root: PathBuf,
}

impl WorkDir {
    /// A new private (0700) directory under `$TMPDIR` (or `/tmp`), which outlives this value:
    /// it is removed by the teardown, and only when nothing is mounted below it.
    pub fn create() -> Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new()
            .prefix("rds-csi-demo-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(io_context("creating the work directory"))?;
        let root = dir
            .keep()
            .canonicalize()
            .map_err(io_context("resolving the work directory"))?;
        Ok(Self { root })
    }

    pub fn sim_data(&self) -> PathBuf {
        self.root.join("sim")
    }

    pub fn password_file(&self) -> PathBuf {
        self.root.join("rds-password")
    }

    /// For `ssh` into the simulator without touching the user's own known_hosts.
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }

    pub fn controller_endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.root.join("controller.sock"))
    }

    pub fn node_endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.root.join("node.sock"))
    }

    /// What kubelet's directory is in a cluster: staging paths, pods' targets, block devices.
    pub fn kubelet(&self) -> PathBuf {
        self.root.join("kubelet")
    }

    /// The node's records of staged volumes (its `--state-dir`).
    pub fn node_state(&self) -> PathBuf {
        self.root.join("node-state")
    }

    pub fn sim_log(&self) -> PathBuf {
        self.root.join("sim.log")
    }

    pub fn controller_log(&self) -> PathBuf {
        self.root.join("controller.log")
    }

    pub fn node_log(&self) -> PathBuf {
        self.root.join("node.log")
    }

    pub fn logs(&self) -> Vec<PathBuf> {
        vec![self.sim_log(), self.controller_log(), self.node_log()]
    }
}

/// Everything of one run.
#[derive(Debug)]
pub struct Session {
    /// This binary, which runs the simulator, the controller and the node too.
    pub exe: PathBuf,
    pub fs: FsKind,
    pub sizes: Sizes,
    pub keep: bool,
    pub facts: HostFacts,
    pub work: WorkDir,
    pub layout: PathLayout,
    /// In start order: simulator, controller, node.
    pub children: Vec<Child>,
    pub sim: Option<SimFacts>,
    pub password: Option<Secret>,
    pub fabric: Option<Fabric>,
    pub csi: Option<Csi>,
    pub ledger: Ledger,
    pub breakdown: Option<StageBreakdown>,
    pub kept: Option<KeepInfo>,
    /// Where the controller and the node serve their Prometheus metrics.
    pub metrics: Vec<(&'static str, std::net::SocketAddr)>,
    /// File I/O on a volume that a dropped step left running (see `flow::blocking`).
    pub io_in_flight: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    pub fn new(
        exe: PathBuf,
        fs: FsKind,
        sizes: Sizes,
        keep: bool,
        facts: HostFacts,
        work: WorkDir,
    ) -> Self {
        Self {
            exe,
            fs,
            sizes,
            keep,
            facts,
            layout: PathLayout::new(work.kubelet()),
            work,
            children: Vec::new(),
            sim: None,
            password: None,
            fabric: None,
            csi: None,
            ledger: Ledger::default(),
            breakdown: None,
            kept: None,
            metrics: Vec::new(),
            io_in_flight: None,
        }
    }

    /// Whether the process of that name was started and still runs.
    pub fn running(&mut self, name: &str) -> bool {
        self.children
            .iter_mut()
            .find(|c| c.name == name)
            .is_some_and(|c| c.exited().is_none())
    }

    /// The CSI clients (after the node step).
    pub fn csi(&self) -> Result<Csi> {
        self.csi
            .clone()
            .ok_or_else(|| DemoError::Check("the plugins are not connected".into()))
    }

    /// A RouterOS client for the simulator, over SSH with its host key pinned, as the
    /// controller connects.
    pub async fn rds_client(&self, timeout: Duration) -> Result<Client> {
        let (Some(sim), Some(password)) = (&self.sim, &self.password) else {
            return Err(DemoError::Check("the simulator is not running".into()));
        };
        let mut config = ClientConfig::ssh(
            sim.ssh.ip().to_string(),
            RDS_USER,
            SshAuth::Password(password.clone()),
            HostKeyPolicy::Fingerprints(vec![sim.host_key.clone()]),
        );
        config.port = Some(sim.ssh.port());
        config.command_timeout = timeout;
        config.connect_timeout = timeout;
        Ok(Client::connect(config).await?)
    }

    /// NQNs of every volume this run has made (or may have).
    pub fn nqns(&self) -> BTreeSet<String> {
        self.ledger
            .ids()
            .map(|id| driver::naming::nqn_for_volume(DEFAULT_NQN_PREFIX, id))
            .collect()
    }
}
