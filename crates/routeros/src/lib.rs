//! RouterOS 7 (ROSE storage) management client for the MikroTik RDS: file-backed NVMe/TCP
//! disks, their backing files, the storage pool, version and identity, the device's sensors
//! (`/system health`), btrfs subvolumes and their snapshots, over SSH or REST.
//!
//! Pure logic (grammars, quoting, command text, reply parsing, error mapping, version rules,
//! host-key and certificate pinning) lives in modules without I/O; [`ssh`] and [`rest`] are
//! the transports and [`Client`] is the entry point.
//!
//! ```no_run
//! # async fn demo() -> routeros::Result<()> {
//! use routeros::{Client, ClientConfig, DiskSpec, HostKeyPolicy, SshAuth};
//! let config = ClientConfig::ssh(
//!     "rds.lan",
//!     "csi",
//!     SshAuth::KeyFile { path: "/etc/rds/id_ed25519".into(), passphrase: None },
//!     HostKeyPolicy::Fingerprints(vec!["SHA256:...".into()]),
//! );
//! let client = Client::connect(config).await?;
//! let outcome = client
//!     .create_file_disk(&DiskSpec {
//!         slot: "pvc-1".try_into()?,
//!         file_path: "storage-pool/pvc-1.img".try_into()?,
//!         size: 10 << 30,
//!         port: routeros::DEFAULT_NVME_TCP_PORT,
//!         nqn: "nqn.2000-02.com.mikrotik:pvc-1".try_into()?,
//!         comment: None,
//!     })
//!     .await?;
//! // The add ran only if neither the slot nor the image existed; the outcome says which.
//! if let routeros::CreateOutcome::Created(disk) = outcome {
//!     println!("{} exported as {}", disk.slot, disk.nqn);
//! }
//! # Ok(()) }
//! ```

pub mod access;
pub mod attach;
pub mod breaker;
pub mod client;
pub mod command;
pub mod config;
pub mod copies;
pub mod error;
pub mod health;
pub mod hostkey;
pub mod inventory;
mod judge;
pub mod model;
pub mod quote;
pub mod reply;
pub mod rest;
pub mod snapshots;
pub mod ssh;
pub mod tls;
pub mod transport;
pub mod validate;
pub mod version;

pub use access::{AllowedHosts, ExportAccess};
pub use attach::AttachOutcome;
pub use breaker::{BreakerConfig, BreakerState};
pub use client::{Client, Limits};
pub use config::{
    Backoff, ClientConfig, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONCURRENCY, DEFAULT_REST_PORT, DEFAULT_SSH_PORT, HostKeyPolicy, Secret, SshAuth,
    TlsPolicy, TransportConfig,
};
pub use copies::{BlockCopyOutcome, CopyProgress, UnexportedDisk, UnexportedOutcome};
pub use error::{Error, Result};
pub use health::{DeviceHealth, HealthEntry, HealthValue};
pub use hostkey::sha256_fingerprint;
pub use inventory::{DeviceTime, Inventory};
pub use model::{
    AddReport, CreateDisk, CreateOutcome, DEFAULT_NVME_TCP_PORT, DiskItem, DiskSpec, FileDisk,
    FileEntry, ImageRemoval, ImageUser, NqnSource, Pool, SystemInfo, VolumeFacts,
};
pub use snapshots::{CopyOutcome, Subvolume, SubvolumeOutcome, SubvolumeRemoval};
pub use tls::cert_fingerprint;
pub use transport::Transport;
pub use validate::{DirPath, FilePath, ItemId, Nqn, Slot, SubvolumeName};
pub use version::RouterOsVersion;
