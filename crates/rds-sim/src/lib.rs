//! A simulator of the MikroTik ROSE Data Server (RouterOS 7 + rose-storage):
//! the `/disk` and `/file` menus over an SSH CLI and REST, one state model
//! persisted in a data directory, sparse backing files, real nvmet exports
//! where configfs has nvmet, and fault injection.
//!
//! Start it in-process with [`Simulator::start`], or run `rds-csi sim`
//! ([`run`]). Module map: [`state`] (model and operations, pure),
//! [`records`] and [`format`] (how items print, pure), [`script`] (lexer,
//! parser, evaluator, pure over [`device::Device`]), [`device`] (effects
//! with rollback), [`usage`] (the pool's allocated bytes), [`storage`] and
//! [`nvmet`] (the side effects), [`ssh`] and [`rest`] (the servers),
//! [`faults`] and [`quirks`]; [`health`] the readings of `/system health`.

pub mod args;
pub mod config;
pub mod copy;
pub mod device;
pub mod engine;
pub mod error;
pub mod faults;
pub mod format;
pub mod health;
pub mod journal;
pub mod keys;
pub mod kill;
pub mod nvmet;
pub mod quirks;
pub mod records;
pub mod rest;
pub mod script;
pub mod ssh;
pub mod state;
pub mod storage;
pub mod units;
pub mod usage;
pub mod version;

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::PublicKey;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::config::{NvmetMode, Secret, SimArgs, SimConfig};
pub use crate::faults::{FaultControl, Faults};
pub use crate::quirks::{Quirk, Quirks};
pub use crate::state::{
    Disk, DiskKind, ExportSpec, FILE_METADATA_BYTES, FileEntry, FileKind, Id128, NamespaceIds,
    PoolSettings, Subvolume,
};
pub use crate::storage::{EXPORTS_DIR, ExportRecord, export_record_name, read_export_records};
pub use crate::version::RouterOsVersion;

use crate::device::{Device, Persist};
use crate::engine::Engine;
use crate::keys::TlsIdentity;
use crate::nvmet::NvmetExporter;
use crate::state::{Env, State};
use crate::storage::{FileStore, StateFiles};

const LOCK_FILE: &str = "lock";

/// Why the simulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "refusing to start an open device: give --password-file and/or --authorized-keys \
         (or --insecure-no-auth for a throwaway test)"
    )]
    NoCredentials,
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("data directory {0} is in use by another simulator")]
    Locked(PathBuf),
    #[error("--nvmet on, but {0} does not exist (load the nvmet module and mount configfs)")]
    NvmetMissing(PathBuf),
    #[error(transparent)]
    Load(#[from] storage::LoadError),
    #[error("data directory holds pool {stored:?}, but --pool is {configured:?}")]
    PoolMismatch { stored: String, configured: String },
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

fn io_context(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SimError {
    let context = context.into();
    move |source| SimError::Io { context, source }
}

/// Entry point for the in-process API.
#[derive(Debug)]
pub struct Simulator;

/// A read-only copy of the device's state (for assertions and leak checks).
#[derive(Debug, Clone, PartialEq)]
pub struct StateSnapshot {
    pub pool: PoolSettings,
    /// Free bytes as the pool reports them now.
    pub pool_free: u64,
    pub disks: Vec<Disk>,
    pub files: Vec<FileEntry>,
    /// `/disk btrfs subvolume` items.
    pub subvolumes: Vec<Subvolume>,
}

impl StateSnapshot {
    pub fn disk_by_slot(&self, slot: &str) -> Option<&Disk> {
        self.disks.iter().find(|d| d.slot == slot)
    }

    /// A `/file` item by name (with or without leading `/`).
    pub fn file_by_name(&self, name: &str) -> Option<&FileEntry> {
        let name = name.strip_prefix('/').unwrap_or(name);
        self.files.iter().find(|f| f.name == name)
    }

    /// The file-backed disks (everything but the pool).
    pub fn file_disks(&self) -> impl Iterator<Item = &Disk> {
        self.disks
            .iter()
            .filter(|d| matches!(d.kind, DiskKind::File { .. }))
    }

    /// The `.img`-style files (no directories or mount points).
    pub fn plain_files(&self) -> impl Iterator<Item = &FileEntry> {
        self.files.iter().filter(|f| f.kind == FileKind::File)
    }
}

/// A running simulator. Call [`SimHandle::shutdown`] to stop it.
#[derive(Debug)]
pub struct SimHandle {
    ssh_addr: SocketAddr,
    rest_addr: SocketAddr,
    rest_plain_http: bool,
    host_key: PublicKey,
    tls: TlsIdentity,
    data_dir: PathBuf,
    nvmet_enabled: bool,
    engine: Arc<Engine>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    /// Held for the lifetime of the simulator: one simulator per data dir.
    _lock: fs::File,
}

impl Simulator {
    /// Starts the device: loads (or creates) the state in the data
    /// directory, recreates backing files and exports, and serves SSH and
    /// REST on the configured addresses.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        if !config.insecure_no_auth
            && config.password.is_none()
            && config.authorized_keys.is_empty()
        {
            return Err(SimError::NoCredentials);
        }
        let data_dir = config.data_dir.clone();
        fs::create_dir_all(&data_dir)
            .map_err(io_context(format!("creating {}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io_context(format!("resolving {}", data_dir.display())))?;
        let lock = lock_data_dir(&data_dir)?;

        let nvmet = match config.nvmet {
            NvmetMode::Off => None,
            NvmetMode::Auto if !config.nvmet_root.is_dir() => None,
            NvmetMode::On if !config.nvmet_root.is_dir() => {
                return Err(SimError::NvmetMissing(config.nvmet_root));
            }
            NvmetMode::Auto | NvmetMode::On => Some(
                NvmetExporter::new(&config.nvmet_root, config.nvme_listen.ip()).map_err(
                    io_context(format!("inspecting {}", config.nvmet_root.display())),
                )?,
            ),
        };
        let nvmet_enabled = nvmet.is_some();

        let now = engine::unix_now();
        let mut state = match FileStore::load(&data_dir)? {
            Some(state) => state,
            None => State::new(
                PoolSettings {
                    name: config.pool.clone(),
                    capacity: config.capacity,
                },
                &config.identity,
                now,
            ),
        };
        if state.pool.name != config.pool {
            return Err(SimError::PoolMismatch {
                stored: state.pool.name,
                configured: config.pool,
            });
        }
        state.pool.capacity = config.capacity;

        let faults = Arc::new(FaultControl::new(
            config.faults.clone(),
            Some(data_dir.join(faults::FAULTS_FILE)),
        ));
        let quirks = faults.get().quirks;
        if quirks.has(Quirk::FreshNamespaceIds) {
            // A device that does not keep them: the exports made now get new ones.
            state.renew_namespace_ids();
        }
        let env = Env {
            version: config.routeros_version.clone(),
            now,
            pool_full: config.faults.pool_full,
            quirks,
            // Read off the backing files when the device is made.
            pool_used: 0,
        };
        let exports = state.exports(&env.version);
        let mut store = FileStore::new(&data_dir, nvmet);
        store
            .restore(&state, &exports)
            .map_err(io_context("restoring backing files and exports"))?;
        let mut state_files = StateFiles::new(&data_dir, config.nvme_listen.ip(), nvmet_enabled);
        state_files
            .persist(
                device::StateRef::Whole(&state),
                &device::ExportsSave::All(exports.clone()),
            )
            .map_err(io_context("saving state"))?;
        let mut device = Device::new(state, Box::new(store), env);
        device.exports_recorded();
        let engine = Arc::new(Engine::new(device, Box::new(state_files), faults));

        let host_key = keys::load_or_create_host_key(&data_dir)?;
        let host_public = host_key.public_key().clone();
        let tls = keys::load_or_create_certificate(
            &data_dir,
            &keys::certificate_names(config.rest_listen.ip()),
        )?;

        let ssh_listener = TcpListener::bind(config.ssh_listen)
            .await
            .map_err(io_context(format!("binding SSH to {}", config.ssh_listen)))?;
        let rest_listener = TcpListener::bind(config.rest_listen)
            .await
            .map_err(io_context(format!(
                "binding REST to {}",
                config.rest_listen
            )))?;
        let ssh_addr = ssh_listener
            .local_addr()
            .map_err(io_context("SSH listener address"))?;
        let rest_addr = rest_listener
            .local_addr()
            .map_err(io_context("REST listener address"))?;

        let policy = Arc::new(ssh::AuthPolicy {
            user: config.user.clone(),
            password: config.password.clone(),
            keys: config.authorized_keys.clone(),
            insecure_no_auth: config.insecure_no_auth,
        });
        let tls_acceptor = if config.rest_plain_http {
            None
        } else {
            Some(tls_acceptor(&tls)?)
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ssh_config = Arc::new(ssh::server_config(host_key, &policy));
        let servers = vec![
            tokio::spawn(ssh::serve(
                ssh_listener,
                ssh_config,
                Arc::clone(&policy),
                Arc::clone(&engine),
                shutdown_rx.clone(),
            )),
            tokio::spawn(rest::serve(
                rest_listener,
                tls_acceptor,
                Arc::new(rest::RestApp {
                    engine: Arc::clone(&engine),
                    policy,
                }),
                shutdown_rx,
            )),
        ];
        tracing::info!(%ssh_addr, %rest_addr, data_dir = %data_dir.display(), nvmet = nvmet_enabled, "simulator started");
        Ok(SimHandle {
            ssh_addr,
            rest_addr,
            rest_plain_http: config.rest_plain_http,
            host_key: host_public,
            tls,
            data_dir,
            nvmet_enabled,
            engine,
            shutdown,
            servers,
            _lock: lock,
        })
    }
}

fn lock_data_dir(data_dir: &Path) -> Result<fs::File, SimError> {
    let path = data_dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_context(format!("opening {}", path.display())))?;
    rustix::fs::flock(
        file.as_fd(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .map_err(|_| SimError::Locked(data_dir.to_path_buf()))?;
    Ok(file)
}

fn tls_acceptor(identity: &TlsIdentity) -> Result<tokio_rustls::TlsAcceptor, SimError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(identity.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.clone())),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl SimHandle {
    pub fn ssh_addr(&self) -> SocketAddr {
        self.ssh_addr
    }

    pub fn rest_addr(&self) -> SocketAddr {
        self.rest_addr
    }

    /// `https://127.0.0.1:PORT` (or `http://` with plain HTTP).
    pub fn rest_url(&self) -> String {
        let scheme = if self.rest_plain_http {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.rest_addr)
    }

    /// `SHA256:...` as `ssh-keygen -lf` prints it.
    pub fn host_key_fingerprint(&self) -> String {
        keys::ssh_fingerprint(&self.host_key)
    }

    pub fn host_public_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The host key as an OpenSSH public key line (`ssh-ed25519 AAAA...`).
    pub fn host_public_key_openssh(&self) -> String {
        self.host_key.to_openssh().expect("an ed25519 key encodes")
    }

    pub fn certificate_pem(&self) -> &str {
        &self.tls.cert_pem
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.tls.cert_der
    }

    /// SHA-256 of the certificate, upper-case hex pairs joined by `:`.
    pub fn certificate_fingerprint(&self) -> String {
        self.tls.fingerprint()
    }

    pub fn certificate_path(&self) -> &Path {
        &self.tls.cert_path
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the export records (`exports/<nqn>.json`).
    pub fn exports_dir(&self) -> PathBuf {
        self.data_dir.join(EXPORTS_DIR)
    }

    /// The export records as written now, by NQN.
    pub fn export_records(&self) -> Vec<ExportRecord> {
        read_export_records(&self.data_dir).expect("the export records read back")
    }

    /// Absolute path of the backing file for a file path such as
    /// `storage-pool/pvc-1.img` (leading `/` allowed).
    pub fn backing_file(&self, file_path: &str) -> PathBuf {
        let relative = file_path.strip_prefix('/').unwrap_or(file_path);
        self.data_dir.join(storage::FILES_DIR).join(relative)
    }

    pub fn nvmet_enabled(&self) -> bool {
        self.nvmet_enabled
    }

    /// The live fault set: `faults().get()`, `.set(..)`, `.update(|f| ..)`.
    pub fn faults(&self) -> &FaultControl {
        &self.engine.faults
    }

    /// Sessions in flight now.
    pub fn active_sessions(&self) -> usize {
        self.engine.active_sessions()
    }

    /// A copy of the state as it is now (the pool usage read off the files just now).
    pub fn snapshot(&self) -> StateSnapshot {
        let mut device = self.engine.lock();
        device.refresh_pool_usage();
        let state = device.state();
        StateSnapshot {
            pool: state.pool.clone(),
            pool_free: state.pool_free(device.env()),
            disks: state.disks.iter().cloned().collect(),
            files: state.files.iter().cloned().collect(),
            subvolumes: state.subvolumes.iter().cloned().collect(),
        }
    }

    /// Active exports.
    pub fn exports(&self) -> Vec<ExportSpec> {
        self.engine.lock().exports()
    }

    /// Stops serving, drops live connections and removes the nvmet exports
    /// (the device goes away; they come back at the next start). Every
    /// change was saved before it was answered.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        if self.nvmet_enabled {
            let engine = Arc::clone(&self.engine);
            let teardown = tokio::task::spawn_blocking(move || {
                let mut device = engine.lock();
                let effects: Vec<_> = device
                    .exports()
                    .into_iter()
                    .map(state::Effect::Unexport)
                    .collect();
                device.apply_all(&effects)
            })
            .await;
            if let Ok(Err(e)) = teardown {
                tracing::error!(error = %e, "removing nvmet exports at shutdown failed");
            }
        }
        let engine = Arc::clone(&self.engine);
        let _ = tokio::task::spawn_blocking(move || engine.checkpoint()).await;
        tracing::info!("simulator stopped");
    }
}

/// `rds-csi sim`: starts the simulator, prints its identity as `key: value`
/// lines followed by `ready`, and runs until SIGINT or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let version = config.routeros_version.clone();
    let handle = Simulator::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ssh-listen: {}", handle.ssh_addr())?;
        writeln!(out, "rest-listen: {}", handle.rest_addr())?;
        writeln!(out, "rest-url: {}/rest", handle.rest_url())?;
        writeln!(
            out,
            "ssh-host-key-fingerprint: {}",
            handle.host_key_fingerprint()
        )?;
        writeln!(
            out,
            "rest-certificate-sha256: {}",
            handle.certificate_fingerprint()
        )?;
        writeln!(
            out,
            "rest-certificate: {}",
            handle.certificate_path().display()
        )?;
        writeln!(out, "data-dir: {}", handle.data_dir().display())?;
        writeln!(out, "exports-dir: {}", handle.exports_dir().display())?;
        writeln!(
            out,
            "nvmet: {}",
            if handle.nvmet_enabled() { "on" } else { "off" }
        )?;
        writeln!(out, "routeros-version: {version}")?;
        writeln!(out, "ready")?;
        out.flush()?;
    }
    wait_for_stop_signal().await?;
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
    }
    Ok(())
}
