//! The VolumeContext: what the controller hands the node for each volume, and how the node
//! reads it (including the keys the existing Go driver wrote).

use std::collections::{BTreeMap, HashMap};

use super::*;

/// VolumeContext only: the snapshot or volume a volume started as a copy of. The node gives
/// an XFS copy a new filesystem UUID before mounting it, so it mounts beside its source.
pub const COPY_OF: &str = "copyOf";

/// What the node needs to attach a volume; carried in the VolumeContext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeContext {
    pub nqn: String,
    pub nvme_address: String,
    pub nvme_port: u16,
    pub connect: ConnectOptions,
    pub mkfs_options: Option<String>,
    pub volume_path: Option<String>,
    pub migration_timeout_seconds: Option<u32>,
    /// The id of the snapshot or volume this volume is a copy of.
    pub copy_of: Option<String>,
}

impl VolumeContext {
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut ctx = BTreeMap::new();
        ctx.insert(NQN.to_owned(), self.nqn.clone());
        ctx.insert(NVME_ADDRESS.to_owned(), self.nvme_address.clone());
        ctx.insert(NVME_PORT.to_owned(), self.nvme_port.to_string());
        self.connect.write(&mut ctx);
        if let Some(v) = &self.mkfs_options {
            ctx.insert(MKFS_OPTIONS.to_owned(), v.clone());
        }
        if let Some(v) = &self.volume_path {
            ctx.insert(VOLUME_PATH.to_owned(), v.clone());
        }
        if let Some(v) = self.migration_timeout_seconds {
            ctx.insert(MIGRATION_TIMEOUT_SECONDS.to_owned(), v.to_string());
        }
        if let Some(v) = &self.copy_of {
            ctx.insert(COPY_OF.to_owned(), v.clone());
        }
        ctx
    }

    /// Parses a VolumeContext written by this driver or by the Go driver (which may carry
    /// `rdsAddress` instead of `nvmeAddress`, and keys this driver does not use, which are
    /// ignored: the context is the CO's cached copy and must not make old volumes unusable).
    pub fn parse(ctx: &HashMap<String, String>) -> Result<Self, ParamError> {
        let nqn = ctx.get(NQN).ok_or(ParamError::Missing(NQN))?;
        if nqn.is_empty()
            || nqn.len() > 223
            || !nqn.bytes().all(|b| b.is_ascii_graphic())
            || nqn.contains(',')
        {
            return Err(invalid(NQN, nqn, "not a valid NQN"));
        }
        let address = ctx
            .get(NVME_ADDRESS)
            .or_else(|| ctx.get(RDS_ADDRESS))
            .ok_or(ParamError::Missing(NVME_ADDRESS))?;
        let mut connect = ConnectOptions::default();
        for key in [CTRL_LOSS_TMO, RECONNECT_DELAY, KEEP_ALIVE_TMO, NR_IO_QUEUES] {
            match ctx.get(key) {
                // The Go driver writes keepAliveTmo into every context, "0" meaning the
                // kernel's default. This driver never writes 0 (its StorageClass refuses it),
                // so the value is unambiguous: no option, as when the key is absent.
                Some(v) if key == KEEP_ALIVE_TMO && v.trim() == "0" => {}
                Some(v) => {
                    connect.set(key, v)?;
                }
                None => {}
            }
        }
        Ok(Self {
            nqn: nqn.clone(),
            nvme_address: parse_address(NVME_ADDRESS, address)?,
            nvme_port: match ctx.get(NVME_PORT) {
                Some(v) => parse_num(NVME_PORT, v, 1..=65535)?,
                None => 4420,
            },
            connect,
            mkfs_options: ctx
                .get(MKFS_OPTIONS)
                .map(|v| parse_mkfs_options(v))
                .transpose()?,
            volume_path: ctx
                .get(VOLUME_PATH)
                .map(|v| parse_dir_path(VOLUME_PATH, v))
                .transpose()?,
            migration_timeout_seconds: migration_timeout_seconds(ctx)?,
            // Only ever compared for presence; any non-empty text is kept as it is.
            copy_of: ctx.get(COPY_OF).filter(|v| !v.is_empty()).cloned(),
        })
    }
}

/// `migrationTimeoutSeconds` of a VolumeContext (ControllerPublishVolume reads only this key).
pub fn migration_timeout_seconds(ctx: &HashMap<String, String>) -> Result<Option<u32>, ParamError> {
    ctx.get(MIGRATION_TIMEOUT_SECONDS)
        .map(|v| parse_num(MIGRATION_TIMEOUT_SECONDS, v, 1..=86_400))
        .transpose()
}
