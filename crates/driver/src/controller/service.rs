//! The controller's work against the RDS, one function per RPC, in the fewest round trips
//! correctness allows. Inputs arrive validated (see [`super::rules`]); the gRPC layer holds
//! the per-volume lock around the mutating calls.

use routeros::{FileDisk, FilePath, Pool};

use super::rules::{Page, VolumeId, VolumePlan, check_token, image_path, owned_image, page};
use crate::cache::Cached;
use crate::capacity::Expansion;
use crate::config::ControllerConfig;
use crate::error::{DriverError, Result};
use crate::locks::VolumeLocks;

/// The controller service: the RDS client, the configuration, the pool reading shared by
/// Probe, GetCapacity and the free-space check, and the per-volume locks.
#[derive(Debug)]
pub struct ControllerService {
    rds: routeros::Client,
    config: ControllerConfig,
    pool_reading: Cached<Pool, routeros::Error>,
    locks: VolumeLocks,
}

impl ControllerService {
    /// `config` must have been validated.
    pub fn new(rds: routeros::Client, config: ControllerConfig) -> Self {
        Self {
            pool_reading: Cached::new(config.cache_ttl),
            rds,
            config,
            locks: VolumeLocks::default(),
        }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The volumes with a change in flight (held by the gRPC layer around mutating calls).
    pub fn locks(&self) -> &VolumeLocks {
        &self.locks
    }

    /// The pool, from a reading at most `cache_ttl` old (0 or 1 round trip).
    pub async fn pool(&self) -> Result<Pool> {
        let (reading, _) = self.pool_reading.get(|| self.read_pool()).await;
        self.usable(reading)
    }

    async fn read_pool(&self) -> routeros::Result<Pool> {
        self.rds.pool(&self.config.pool).await
    }

    /// A pool that is missing or unmounted is the operator's to fix, not a transient fault.
    fn usable(&self, reading: routeros::Result<Pool>) -> Result<Pool> {
        let unusable = |reason: &str| DriverError::PoolUnusable {
            pool: self.config.pool.clone(),
            reason: reason.to_owned(),
        };
        match reading {
            Err(routeros::Error::NotFound(_)) => {
                Err(unusable("no /disk entry has this mount point"))
            }
            Ok(pool) if !pool.mounted => Err(unusable("the pool is not mounted")),
            Ok(pool) => Ok(pool),
            Err(e) => Err(e.into()),
        }
    }

    /// Ready while the RDS answers: `Ok(false)` during an outage; errors for faults that
    /// waiting will not cure (credentials, missing pool, RouterOS too old).
    pub async fn probe(&self) -> Result<bool> {
        let outcome = async {
            self.pool().await?;
            self.rds.version().await?.require_file_disks()?;
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => Ok(true),
            Err(DriverError::Rds(e)) if e.is_retryable() => {
                tracing::warn!(error = %e, "RDS not answering; reporting not ready");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// CreateVolume: a new disk, or the existing one if it matches the plan.
    ///
    /// The add comes first, since a new volume is the common case: one round trip (the add
    /// with its read-back), plus a pool reading when the cached one is stale. Whenever the
    /// device refuses the add, the disk is read and judged (one more round trip), so
    /// idempotency does not hang on how RouterOS words a duplicate. A repeat cannot create a
    /// second disk: its image path is derived from the name, so the add finds that file.
    /// A leftover image at the volume's exact path costs three more (file and user
    /// look-ups, removal) and a second add, once.
    pub async fn create_volume(&self, plan: &VolumePlan) -> Result<FileDisk> {
        match self.check_free_space(plan.size).await {
            Ok(()) => {}
            // A repeat for an existing volume must succeed even on a full pool.
            Err(refusal @ DriverError::InsufficientSpace { .. }) => {
                return self.existing_or(plan, refusal).await;
            }
            Err(e) => return Err(e),
        }
        match self.add(plan).await {
            Err(DriverError::Rds(refusal)) if refusal.is_device_refusal() => {
                let leftover = matches!(refusal, routeros::Error::AlreadyExists(_));
                match self.existing_or(plan, refusal.into()).await {
                    Err(DriverError::Rds(routeros::Error::AlreadyExists(text))) if leftover => {
                        self.clear_leftover_and_add(plan, text).await
                    }
                    outcome => outcome,
                }
            }
            outcome => outcome,
        }
    }

    /// The volume's disk judged against the plan if it exists, else `refusal`.
    async fn existing_or(&self, plan: &VolumePlan, refusal: DriverError) -> Result<FileDisk> {
        match self.rds.get_disk(plan.id.slot()).await? {
            Some(disk) => self.existing(plan, disk),
            None => Err(refusal),
        }
    }

    fn existing(&self, plan: &VolumePlan, disk: FileDisk) -> Result<FileDisk> {
        match plan.check_existing(&disk) {
            Ok(()) => Ok(disk),
            Err(reason) => Err(DriverError::Incompatible {
                volume_id: plan.id.to_string(),
                reason,
            }),
        }
    }

    /// Refuses early when the pool clearly lacks the space. The device's own answer to the
    /// add stays the authority (and becomes RESOURCE_EXHAUSTED too); this check only spares
    /// a doomed add. A cached reading that says "too little" is confirmed with a newer one
    /// before refusing, since space may have been freed since it was taken.
    async fn check_free_space(&self, wanted: u64) -> Result<()> {
        let (reading, taken_at) = self.pool_reading.get(|| self.read_pool()).await;
        match self.usable(reading) {
            Ok(pool) if pool.free >= wanted => return Ok(()),
            Ok(_) => {}
            Err(DriverError::Rds(_)) => return Ok(()), // no reading: let the device decide
            Err(e) => return Err(e),
        }
        let (reading, _) = self
            .pool_reading
            .get_newer_than(Some(taken_at), || self.read_pool())
            .await;
        match self.usable(reading) {
            Ok(pool) if pool.free < wanted => Err(DriverError::InsufficientSpace {
                pool: self.config.pool.clone(),
                wanted,
                free: pool.free,
            }),
            Err(e @ DriverError::PoolUnusable { .. }) => Err(e),
            _ => Ok(()),
        }
    }

    /// `/disk add` with read-back. A read-back that differs from the request leaves a disk
    /// that is not what was asked for; it is removed again so that a retry starts clean.
    async fn add(&self, plan: &VolumePlan) -> Result<FileDisk> {
        match self.rds.create_file_disk(&plan.disk_spec()).await {
            Err(routeros::Error::Protocol(text)) => {
                self.roll_back(plan).await;
                Err(routeros::Error::Protocol(text).into())
            }
            outcome => outcome.map_err(Into::into),
        }
    }

    async fn roll_back(&self, plan: &VolumePlan) {
        let outcome = async {
            if let Some(disk) = self.rds.get_disk(plan.id.slot()).await?
                && disk.file_path == plan.file_path.as_str()
            {
                self.rds
                    .remove_disk_and_file(plan.id.slot(), &plan.file_path)
                    .await?;
                tracing::warn!("removed a disk whose read-back did not match the request");
            }
            Ok::<_, routeros::Error>(())
        }
        .await;
        if let Err(error) = outcome {
            tracing::warn!(%error, "could not roll back a mismatching disk; a retry will judge it");
        }
    }

    /// The add said "already exists" but the volume has no disk: the image exists without
    /// it (an interrupted delete, or a failed add). Such a leftover sits at this volume's own
    /// path and, unless some disk uses it, is removed and the add repeated.
    async fn clear_leftover_and_add(&self, plan: &VolumePlan, text: String) -> Result<FileDisk> {
        if self.rds.get_file(&plan.file_path).await?.is_none() {
            return Err(routeros::Error::AlreadyExists(text).into());
        }
        if let Some(user) = self.image_user(&plan.file_path).await? {
            return Err(DriverError::Incompatible {
                volume_id: plan.id.to_string(),
                reason: format!("its image {} is used by disk {user}", plan.file_path),
            });
        }
        self.rds.remove_file(&plan.file_path).await?;
        tracing::warn!(image = %plan.file_path, "removed a leftover image of this volume");
        self.add(plan).await
    }

    /// The slot of a disk backed by `image`, if any.
    async fn image_user(&self, image: &FilePath) -> Result<Option<String>> {
        let disks = self.rds.list_disks("").await?;
        Ok(disks
            .into_iter()
            .find(|d| d.file_path == image.as_str())
            .map(|d| d.slot))
    }

    /// DeleteVolume: removes the disk and then its image (RouterOS keeps the file otherwise).
    ///
    /// Round trips: `get_disk` (1), needed for the image path (a custom `volumePath` is
    /// recorded only on the disk) and to leave foreign disks alone, + one script removing
    /// both (1). With the disk already gone: `get_disk` + `get_file` (2), plus a user check
    /// and the removal when an image was left behind.
    pub async fn delete_volume(&self, id: &VolumeId) -> Result<()> {
        let Some(disk) = self.rds.get_disk(id.slot()).await? else {
            return self.remove_leftover_image(id).await;
        };
        let Some(image) = owned_image(&disk, &self.config.volume_base_path) else {
            tracing::warn!(
                file_path = %disk.file_path,
                "a disk with this id exists but is not the driver's (image outside the base \
                 path or differently named); leaving it alone"
            );
            return Ok(());
        };
        self.rds.remove_disk_and_file(id.slot(), &image).await?;
        tracing::info!(image = %image, "deleted the disk and its image");
        Ok(())
    }

    /// With the disk gone, the image can only be found at the default path: a volume's
    /// custom `volumePath` is known from its disk alone.
    async fn remove_leftover_image(&self, id: &VolumeId) -> Result<()> {
        let image = image_path(&self.config.volume_base_path, id);
        if self.rds.get_file(&image).await?.is_none() {
            return Ok(());
        }
        if let Some(user) = self.image_user(&image).await? {
            tracing::warn!(image = %image, disk = %user, "image is used by another disk; leaving it");
            return Ok(());
        }
        self.rds.remove_file(&image).await?;
        tracing::info!(image = %image, "removed the image an interrupted delete left behind");
        Ok(())
    }

    /// The driver's disk for a volume id; NOT_FOUND when absent or not the driver's.
    /// One round trip.
    pub async fn volume(&self, id: &VolumeId) -> Result<FileDisk> {
        self.rds
            .get_disk(id.slot())
            .await?
            .filter(|disk| owned_image(disk, &self.config.volume_base_path).is_some())
            .ok_or_else(|| DriverError::VolumeNotFound(id.to_string()))
    }

    /// ControllerExpandVolume: grows the image to the exact (rounded-up) size and verifies it;
    /// returns the size in bytes. Round trips: `get_disk` (1) + the set with its read-back (1);
    /// just the first when the volume is already large enough.
    pub async fn expand_volume(
        &self,
        id: &VolumeId,
        required_bytes: i64,
        limit_bytes: i64,
    ) -> Result<u64> {
        let disk = self.volume(id).await?;
        let plan = self
            .config
            .sizes
            .plan_expansion(disk.file_size, required_bytes, limit_bytes)?;
        match plan {
            Expansion::AlreadyLargeEnough => Ok(disk.file_size),
            Expansion::GrowTo(size) => match self.rds.grow_disk(id.slot(), size).await {
                Ok(grown) => {
                    tracing::info!(
                        from = disk.file_size,
                        to = grown.file_size,
                        "grew the volume"
                    );
                    Ok(grown.file_size)
                }
                Err(routeros::Error::NotFound(_)) => {
                    Err(DriverError::VolumeNotFound(id.to_string()))
                }
                Err(e) => Err(e.into()),
            },
        }
    }

    /// ListVolumes: one page of the driver's volumes. One round trip (every file disk, then
    /// filtered and paged here).
    pub async fn list_volumes(&self, starting_token: &str, max_entries: usize) -> Result<Page> {
        check_token(starting_token)?;
        let disks = self.rds.list_disks("").await?;
        page(
            disks,
            &self.config.volume_base_path,
            starting_token,
            max_entries,
        )
    }
}
