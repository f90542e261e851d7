//! What the controller needs to know besides how to reach the RDS: names, paths, defaults.

use std::time::Duration;

use crate::capacity::SizePolicy;
use crate::controller::budget::OvercommitRatio;
use crate::naming;
use crate::params::{self, ParamError};

/// Driver name used by the existing Go driver; keeping it lets its volumes be adopted.
pub const DEFAULT_DRIVER_NAME: &str = "rds.csi.srvlab.io";
/// Mount point of the RDS storage pool (and first component of every image path).
pub const DEFAULT_POOL: &str = "storage-pool";
/// NQN prefix used by the existing Go driver.
pub const DEFAULT_NQN_PREFIX: &str = "nqn.2000-02.com.mikrotik";
/// How long a pool reading (free space, reachability) is reused.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);
/// Sector size of RDS file disks; sizes must be whole sectors.
const SECTOR_BYTES: u64 = 512;

/// Controller settings. Build one, then [`ControllerConfig::validate`] it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// CSI driver name reported by GetPluginInfo.
    pub driver_name: String,
    /// Version reported by GetPluginInfo.
    pub vendor_version: String,
    /// Mount point of the pool on the RDS (`/disk` entry with that `mount-point`).
    pub pool: String,
    /// Directory under which every image lives; StorageClass `volumePath`s must lie within it.
    /// Normalised: no leading or trailing `/`.
    pub volume_base_path: String,
    pub nqn_prefix: String,
    /// Address nodes connect to for NVMe/TCP unless a StorageClass says otherwise.
    pub nvme_address: String,
    /// NVMe/TCP port of new exports unless a StorageClass says otherwise.
    pub nvme_port: u16,
    pub sizes: SizePolicy,
    /// Lifetime of the cached pool reading used by Probe, GetCapacity and the capacity check.
    pub cache_ttl: Duration,
    /// How much the driver may promise per byte of pool (thin provisioning).
    pub overcommit_ratio: OvercommitRatio,
    /// Storage-level fencing: each export admits only the host NQNs of the nodes the volume
    /// is published to (`nvme-tcp-server-allow-host-name`).
    pub export_acl: bool,
    /// Label of the pool's btrfs filesystem (`fs=` of `/disk btrfs subvolume`); `None`: the
    /// pool's name.
    pub btrfs_filesystem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "driver name {0:?} must be at most 63 characters of [A-Za-z0-9.-], starting and ending \
         alphanumeric"
    )]
    DriverName(String),
    #[error("pool {0:?} must be 1-64 characters of [A-Za-z0-9._-], not starting with '.' or '-'")]
    Pool(String),
    #[error(
        "btrfs filesystem label {0:?} must be 1-64 characters of [A-Za-z0-9._-], not starting \
         with '.' or '-'"
    )]
    BtrfsFilesystem(String),
    #[error("volume base path: {0}")]
    BasePath(ParamError),
    #[error("volume base path {base:?} is not inside the pool {pool:?}")]
    BaseOutsidePool { base: String, pool: String },
    #[error("NQN prefix {prefix:?} does not form valid NQNs: {reason}")]
    NqnPrefix { prefix: String, reason: String },
    #[error("NVMe address: {0}")]
    NvmeAddress(ParamError),
    #[error("NVMe port must be 1-65535")]
    NvmePort,
    #[error(
        "size granularity {0} must be a positive multiple of {SECTOR_BYTES} bytes (one sector)"
    )]
    Granularity(u64),
    #[error(
        "default volume size {size} must be a positive multiple of the granularity {granularity}"
    )]
    DefaultSize { size: u64, granularity: u64 },
}

impl ControllerConfig {
    /// The label of the pool's btrfs filesystem, for `/disk btrfs subvolume add fs=`.
    pub fn btrfs_filesystem(&self) -> &str {
        self.btrfs_filesystem.as_deref().unwrap_or(&self.pool)
    }

    /// A configuration with every default, for the RDS at `rds_address`.
    pub fn new(rds_address: impl Into<String>) -> Self {
        Self {
            driver_name: DEFAULT_DRIVER_NAME.into(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            pool: DEFAULT_POOL.into(),
            volume_base_path: DEFAULT_POOL.into(),
            nqn_prefix: DEFAULT_NQN_PREFIX.into(),
            nvme_address: rds_address.into(),
            nvme_port: routeros::DEFAULT_NVME_TCP_PORT,
            sizes: SizePolicy::default(),
            cache_ttl: DEFAULT_CACHE_TTL,
            overcommit_ratio: OvercommitRatio::ONE,
            export_acl: false,
            btrfs_filesystem: None,
        }
    }

    /// Checks every setting and normalises the base path.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        if !is_driver_name(&self.driver_name) {
            return Err(ConfigError::DriverName(self.driver_name));
        }
        if routeros::Slot::try_from(self.pool.as_str()).is_err() {
            return Err(ConfigError::Pool(self.pool));
        }
        if let Some(label) = &self.btrfs_filesystem
            && routeros::SubvolumeName::try_from(label.as_str()).is_err()
        {
            return Err(ConfigError::BtrfsFilesystem(label.clone()));
        }
        self.volume_base_path = params::parse_dir_path("volume base path", &self.volume_base_path)
            .map_err(ConfigError::BasePath)?;
        if !params::is_within(&self.volume_base_path, &self.pool) {
            return Err(ConfigError::BaseOutsidePool {
                base: self.volume_base_path,
                pool: self.pool,
            });
        }
        // The longest volume id the driver makes must give a valid NQN.
        let sample_id = naming::volume_id_for_name("x");
        let sample = naming::nqn_for_volume(&self.nqn_prefix, &sample_id);
        let pvc_sample =
            naming::nqn_for_volume(&self.nqn_prefix, "pvc-00000000-0000-0000-0000-000000000000");
        for nqn in [sample, pvc_sample] {
            if let Err(e) = routeros::Nqn::try_from(nqn) {
                return Err(ConfigError::NqnPrefix {
                    prefix: self.nqn_prefix,
                    reason: e.message().to_owned(),
                });
            }
        }
        self.nvme_address = params::parse_address("NVMe address", &self.nvme_address)
            .map_err(ConfigError::NvmeAddress)?;
        if self.nvme_port == 0 {
            return Err(ConfigError::NvmePort);
        }
        let granularity = self.sizes.granularity;
        if granularity == 0 || !granularity.is_multiple_of(SECTOR_BYTES) {
            return Err(ConfigError::Granularity(granularity));
        }
        let size = self.sizes.default_size;
        if size == 0 || !size.is_multiple_of(granularity) {
            return Err(ConfigError::DefaultSize { size, granularity });
        }
        Ok(self)
    }
}

/// CSI's rule for plugin names: domain-name notation, at most 63 characters.
fn is_driver_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ControllerConfig {
        ControllerConfig::new("10.0.0.1")
    }

    #[test]
    fn defaults_are_valid_and_base_path_is_normalised() {
        let c = ControllerConfig {
            volume_base_path: "/storage-pool/k8s/".into(),
            ..base()
        }
        .validate()
        .unwrap();
        assert_eq!(c.volume_base_path, "storage-pool/k8s");
        assert_eq!(c.driver_name, "rds.csi.srvlab.io");
        assert_eq!(c.nvme_port, 4420);
    }

    #[test]
    fn every_bad_setting_is_named() {
        let cases: Vec<(ControllerConfig, &str)> = vec![
            (
                ControllerConfig {
                    driver_name: "-bad".into(),
                    ..base()
                },
                "driver name",
            ),
            (
                ControllerConfig {
                    driver_name: "a".repeat(64),
                    ..base()
                },
                "driver name",
            ),
            (
                ControllerConfig {
                    pool: "bad pool".into(),
                    ..base()
                },
                "pool",
            ),
            (
                ControllerConfig {
                    volume_base_path: "storage-pool/../etc".into(),
                    ..base()
                },
                "base path",
            ),
            (
                ControllerConfig {
                    btrfs_filesystem: Some("fs\" name".into()),
                    ..base()
                },
                "btrfs filesystem label",
            ),
            (
                ControllerConfig {
                    volume_base_path: "other-pool/k8s".into(),
                    ..base()
                },
                "not inside the pool",
            ),
            (
                ControllerConfig {
                    nqn_prefix: "not-an-nqn".into(),
                    ..base()
                },
                "NQN prefix",
            ),
            (
                ControllerConfig {
                    nvme_address: "10.0.0.1,x".into(),
                    ..base()
                },
                "NVMe address",
            ),
            (
                ControllerConfig {
                    nvme_port: 0,
                    ..base()
                },
                "NVMe port",
            ),
            (
                ControllerConfig {
                    sizes: SizePolicy {
                        granularity: 1000,
                        default_size: 1000,
                    },
                    ..base()
                },
                "granularity",
            ),
            (
                ControllerConfig {
                    sizes: SizePolicy {
                        granularity: 4096,
                        default_size: 4097,
                    },
                    ..base()
                },
                "default volume size",
            ),
        ];
        for (config, needle) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
