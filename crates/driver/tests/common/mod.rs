//! The test CO: the simulator in-process (real SSH or HTTPS), the controller served on a
//! real Unix socket in a temp dir, and tonic clients talking CSI to it. Every test ends with
//! [`Harness::finish`], which lists the simulator's disks and files and fails on any leak.

#![allow(dead_code)] // each test binary uses a different part

pub mod snapshot_rpcs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi::v1::controller_client::ControllerClient;
use csi::v1::identity_client::IdentityClient;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use csi::v1::{
    CapacityRange, CreateVolumeRequest, CreateVolumeResponse, DeleteVolumeRequest, VolumeCapability,
};
use driver::config::ControllerConfig;
use driver::controller::{self, ControllerService};
use driver::server::{self, Endpoint, ServerError};
use rds_sim::{Faults, SimConfig, SimHandle, Simulator};
use routeros::{Backoff, ClientConfig, HostKeyPolicy, Secret, SshAuth, TlsPolicy};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request};

pub const PASSWORD: &str = "sim-secret";
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
/// A name as external-provisioner sends it.
pub const PVC: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
/// Deadline of every CSI call a test makes, so a hang fails instead of blocking.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ssh,
    Rest,
}

/// How to set up one test.
#[derive(Debug, Clone)]
pub struct Options {
    pub transport: Transport,
    /// Pool size of the simulator.
    pub capacity: u64,
    pub faults: Faults,
    /// The controller's RouterOS sessions at once.
    pub client_sessions: usize,
    pub command_timeout: Duration,
    pub routeros_version: Option<&'static str>,
    /// Adjusts the controller configuration (base path, cache lifetime...).
    pub configure: fn(&mut ControllerConfig),
}

/// Faults with the quirks named in `RDS_CSI_TEST_QUIRKS` (comma-separated), so that the whole
/// controller suite can be run against each device personality (`scripts/test.sh` does).
pub fn quirks_from_env() -> Faults {
    let mut faults = Faults::default();
    if let Ok(names) = std::env::var("RDS_CSI_TEST_QUIRKS") {
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let quirk = <rds_sim::Quirk as clap::ValueEnum>::from_str(name, true)
                .unwrap_or_else(|e| panic!("RDS_CSI_TEST_QUIRKS: {name}: {e}"));
            faults.quirks.insert(quirk);
        }
    }
    faults
}

impl Default for Options {
    fn default() -> Self {
        Self {
            transport: Transport::Ssh,
            capacity: 64 * GIB,
            faults: quirks_from_env(),
            client_sessions: 8,
            command_timeout: Duration::from_secs(10),
            routeros_version: None,
            configure: |_| {},
        }
    }
}

pub struct Harness {
    pub sim: SimHandle,
    pub identity: IdentityClient<Channel>,
    pub controller: ControllerClient<Channel>,
    /// A separate RouterOS client for arranging the device the way a test needs it.
    pub rds: routeros::Client,
    pub config: ControllerConfig,
    pub service: Arc<ControllerService>,
    pub socket: PathBuf,
    /// The controller's RouterOS client settings, for a restart.
    rds_config: ClientConfig,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), ServerError>>,
    _dir: tempfile::TempDir,
}

/// A controller serving on a socket.
struct Running {
    identity: IdentityClient<Channel>,
    controller: ControllerClient<Channel>,
    service: Arc<ControllerService>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    async fn start(rds_config: &ClientConfig, config: &ControllerConfig, socket: &Path) -> Self {
        let client = routeros::Client::new(rds_config.clone()).expect("client");
        let service = Arc::new(ControllerService::new(client, config.clone()));
        let listener = server::bind(&Endpoint::Unix(socket.to_owned()))
            .await
            .expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(listener.serve(controller::routes(service.clone()), async {
            let _ = stopped.await;
        }));
        let channel = unix_channel(socket).await;
        Self {
            identity: IdentityClient::new(channel.clone()),
            controller: ControllerClient::new(channel),
            service,
            stop,
            server,
        }
    }
}

/// RouterOS client settings for the simulator.
pub fn client_config(sim: &SimHandle, transport: Transport, password: &str) -> ClientConfig {
    let mut config = match transport {
        Transport::Ssh => {
            let mut c = ClientConfig::ssh(
                "127.0.0.1",
                "admin",
                SshAuth::Password(Secret::new(password)),
                HostKeyPolicy::Fingerprints(vec![sim.host_key_fingerprint()]),
            );
            c.port = Some(sim.ssh_addr().port());
            c
        }
        Transport::Rest => {
            let mut c = ClientConfig::rest(
                "127.0.0.1",
                "admin",
                Secret::new(password),
                TlsPolicy::CaPem(sim.certificate_pem().to_owned()),
            );
            c.port = Some(sim.rest_addr().port());
            c
        }
    };
    config.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    config.connect_timeout = Duration::from_secs(5);
    config
}

pub async fn unix_channel(socket: &Path) -> Channel {
    server::connect(&Endpoint::Unix(socket.to_owned()))
        .await
        .expect("connect to the CSI socket")
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    /// A harness whose controller has read the pool, the capacity budget (kept for ten
    /// minutes; this replaces `options.configure`) and the version, so that the next device
    /// command of a CreateVolume is its add: faults injected for "the next command" land there.
    pub async fn warmed_up(options: Options) -> Self {
        let h = Self::with(Options {
            configure: |c| c.cache_ttl = Duration::from_secs(600),
            ..options
        })
        .await;
        let probe = h
            .identity
            .clone()
            .probe(timed(csi::v1::ProbeRequest {}))
            .await
            .expect("probe");
        assert_eq!(probe.into_inner().ready, Some(true));
        h.controller
            .clone()
            .get_capacity(timed(csi::v1::GetCapacityRequest::default()))
            .await
            .expect("capacity reading");
        h
    }

    pub async fn with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sim_config = SimConfig::new(dir.path().join("rds")).with_password(PASSWORD);
        sim_config.capacity = options.capacity;
        sim_config.faults = options.faults.clone();
        if let Some(version) = options.routeros_version {
            sim_config.routeros_version = version.parse().expect("version");
        }
        let sim = Simulator::start(sim_config)
            .await
            .expect("simulator starts");

        let mut rds_config = client_config(&sim, options.transport, PASSWORD);
        rds_config.max_concurrency = options.client_sessions;
        rds_config.command_timeout = options.command_timeout;
        let rds = routeros::Client::new(rds_config.clone()).expect("client");

        let mut config = ControllerConfig::new("192.0.2.10");
        (options.configure)(&mut config);
        let config = config.validate().expect("valid controller config");
        let socket = dir.path().join("csi").join("csi.sock");
        let running = Running::start(&rds_config, &config, &socket).await;
        Self {
            sim,
            identity: running.identity,
            controller: running.controller,
            rds,
            config,
            service: running.service,
            socket,
            rds_config,
            stop: running.stop,
            server: running.server,
            _dir: dir,
        }
    }

    /// Stops the controller (its server, its connection to the device, everything it held in
    /// memory) and starts a new one on the same socket and device, as a pod restart would.
    pub async fn restart_controller(&mut self) {
        let (stop, _) = oneshot::channel();
        let _ = std::mem::replace(&mut self.stop, stop).send(());
        let finished = tokio::spawn(async { Ok(()) });
        std::mem::replace(&mut self.server, finished)
            .await
            .expect("server task")
            .expect("server stops cleanly");
        let running = Running::start(&self.rds_config, &self.config, &self.socket).await;
        self.identity = running.identity;
        self.controller = running.controller;
        self.service = running.service;
        self.stop = running.stop;
        self.server = running.server;
    }

    /// What the device holds that no test should leave behind: file disks other than
    /// `keep`, and images no disk uses.
    pub fn leaks(&self, keep: &[&str]) -> Vec<String> {
        let state = self.sim.snapshot();
        let mut leaks = Vec::new();
        let mut disk_files = Vec::new();
        for disk in state.file_disks() {
            if let rds_sim::DiskKind::File { path, .. } = &disk.kind {
                disk_files.push(path.clone());
            }
            if !keep.contains(&disk.slot.as_str()) {
                leaks.push(format!("disk {}", disk.slot));
            }
        }
        for file in state.plain_files() {
            if !disk_files.contains(&file.name) {
                leaks.push(format!("file {} (no disk uses it)", file.name));
            }
        }
        for subvolume in &state.subvolumes {
            let root = format!("{}/{}/", state.pool.name, subvolume.name);
            if !disk_files.iter().any(|f| f.starts_with(&root)) {
                leaks.push(format!("subvolume {} (no disk uses it)", subvolume.name));
            }
        }
        leaks
    }

    /// Ends a test: nothing may be left on the device, the server stops cleanly and removes
    /// its socket.
    pub async fn finish(self) {
        self.finish_keeping(&[]).await
    }

    /// Like [`Harness::finish`], for tests that put disks on the device that are not the
    /// driver's (which it must leave alone).
    pub async fn finish_keeping(self, keep: &[&str]) {
        let leaks = self.leaks(keep);
        assert!(leaks.is_empty(), "left on the device: {leaks:?}");
        assert_eq!(
            self.service.locks().held(),
            0,
            "a volume lock outlived its call"
        );
        let _ = self.stop.send(());
        self.server
            .await
            .expect("server task")
            .expect("server stops cleanly");
        assert!(!self.socket.exists(), "socket removed at shutdown");
        self.sim.shutdown().await;
    }

    pub async fn create(
        &self,
        request: CreateVolumeRequest,
    ) -> Result<CreateVolumeResponse, tonic::Status> {
        self.controller
            .clone()
            .create_volume(timed(request))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn delete(&self, volume_id: &str) -> Result<(), tonic::Status> {
        self.controller
            .clone()
            .delete_volume(timed(DeleteVolumeRequest {
                volume_id: volume_id.to_owned(),
                ..Default::default()
            }))
            .await
            .map(|_| ())
    }

    /// Runs a raw RouterOS script over SSH, for arranging states the client API cannot make.
    pub async fn device_exec(&self, script: &str) {
        let transport = routeros::ssh::SshTransport::new(routeros::ssh::SshSettings {
            host: "127.0.0.1".into(),
            port: self.sim.ssh_addr().port(),
            user: "admin".into(),
            auth: SshAuth::Password(Secret::new(PASSWORD)),
            host_key: HostKeyPolicy::Fingerprints(vec![self.sim.host_key_fingerprint()]),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
        })
        .expect("transport");
        let output = transport.exec(script).await.expect("exec");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.trim().is_empty(), "{script}: {stdout}");
    }
}

impl Harness {
    /// Adds a disk without the client's guard, as a person at the console would: for
    /// arranging states (a disk over an existing image) the client refuses to make.
    pub async fn add_disk_raw(&self, spec: &routeros::DiskSpec) {
        use routeros::quote::quote;
        self.device_exec(&format!(
            "/disk add type=file slot={} file-path={} file-size={} mount-filesystem=no \
             nvme-tcp-export=yes nvme-tcp-server-port={} nvme-tcp-server-nqn={}",
            quote(spec.slot.as_str()),
            quote(spec.file_path.as_str()),
            spec.size,
            spec.port,
            quote(spec.nqn.as_str())
        ))
        .await;
    }

    /// Removes the disks in a slot but not their images: an interrupted delete.
    pub async fn remove_disk_entry(&self, slot: &str) {
        self.device_exec(&format!(
            "/disk remove [find where slot={}]",
            routeros::quote::quote(slot)
        ))
        .await;
    }
}

/// A request with the test deadline (sent as `grpc-timeout`).
pub fn timed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

pub fn mount_capability(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

pub fn block_capability(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

/// A CreateVolume for a single-node filesystem volume of at least `required` bytes.
pub fn create_request(name: &str, required: u64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.to_owned(),
        capacity_range: Some(CapacityRange {
            required_bytes: required as i64,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_capability(Mode::SingleNodeWriter)],
        ..Default::default()
    }
}

pub fn with_params(
    mut request: CreateVolumeRequest,
    params: &[(&str, &str)],
) -> CreateVolumeRequest {
    request.parameters = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<HashMap<_, _>>();
    request
}

/// Asserts a call failed with `code`; returns the message for further checks.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code) -> String {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "{}", status.message());
            status.message().to_owned()
        }
        Ok(value) => panic!("expected {code:?}, got {value:?}"),
    }
}
