//! The controller's work against the RDS, one function per RPC, in the fewest round trips
//! correctness allows. Inputs arrive validated (see [`super::rules`]); the gRPC layer holds
//! the per-volume lock around the mutating calls.

use std::sync::Arc;

use routeros::{CreateOutcome, DirPath, DiskItem, FileDisk, ImageRemoval, ItemId, Pool};

use super::budget::{CapacityReading, Ledger, Reservation, available};
use super::fence::{AttachmentState, MemoryAttachments};
use super::judge::{DeletePlan, SlotVerdict, judge_slot, plan_delete};
use super::rules::{VolumeId, VolumePlan, owned_image};
use crate::cache::Cached;
use crate::capacity::Expansion;
use crate::config::ControllerConfig;
use crate::error::{DriverError, Result};
use crate::locks::VolumeLocks;

fn warn_in_use(in_use: &[(String, String)]) {
    for (image, user) in in_use {
        tracing::warn!(%image, disk = %user, "an image named like this volume's is used by another disk; leaving it");
    }
}

/// The controller service: the RDS client, the configuration, the pool and capacity readings,
/// the thin-provisioning ledger, the per-volume locks and who holds which volume.
#[derive(Debug)]
pub struct ControllerService {
    rds: routeros::Client,
    config: ControllerConfig,
    /// The base path as the device-side directory type (validated with the configuration).
    base_dir: DirPath,
    pool_reading: Cached<Pool, routeros::Error>,
    capacity_reading: Cached<CapacityReading, routeros::Error>,
    /// What this controller promised that the capacity reading may not show yet.
    ledger: Ledger,
    /// The pages after those ListVolumes has served, by the token it issued for them.
    pub(super) listings: std::sync::Mutex<Vec<super::listing::ListingRest>>,
    locks: VolumeLocks,
    attachments: Arc<dyn AttachmentState>,
    /// Events on claims (with Kubernetes).
    events: Option<crate::cluster::VolumeEvents>,
    /// Turns of KubeVirt VMIs' publishes (`--serialize-vmi-attach`).
    vmi_turns: Option<crate::cluster::VmiTurns>,
    /// The cluster's Nodes, for publishes to a node that does not exist (with Kubernetes).
    nodes: Option<crate::cluster::NodeDirectory>,
    /// Block copies at once: each holds a RouterOS session for as long as it runs.
    pub(super) block_copies: tokio::sync::Semaphore,
    /// Where migrations' durations are told (with a metrics endpoint).
    pub(super) fencing_metrics: Option<crate::metrics::FencingMetrics>,
}

impl ControllerService {
    /// `config` must have been validated.
    pub fn new(rds: routeros::Client, config: ControllerConfig) -> Self {
        Self {
            base_dir: DirPath::try_from(config.volume_base_path.as_str())
                .expect("a validated base path is a valid directory"),
            pool_reading: Cached::new(config.cache_ttl),
            capacity_reading: Cached::new(config.cache_ttl),
            ledger: Ledger::default(),
            listings: std::sync::Mutex::new(Vec::new()),
            rds,
            config,
            locks: VolumeLocks::default(),
            // The binary chooses with --attachment-state; without Kubernetes (tests, the
            // demo) memory is the only state there is.
            attachments: Arc::new(MemoryAttachments::default()),
            events: None,
            vmi_turns: None,
            nodes: None,
            block_copies: tokio::sync::Semaphore::new(super::copying::MAX_BLOCK_COPIES),
            fencing_metrics: None,
        }
    }

    /// The same service telling how long migrations took.
    pub fn with_fencing_metrics(mut self, metrics: crate::metrics::FencingMetrics) -> Self {
        self.fencing_metrics = Some(metrics);
        self
    }

    /// The same service refusing publishes to nodes the cluster does not have.
    pub fn with_nodes(mut self, nodes: crate::cluster::NodeDirectory) -> Self {
        self.nodes = Some(nodes);
        self
    }

    /// `Some(false)` only when the cluster says it has no node `name`.
    pub(crate) async fn node_exists(&self, name: &str) -> Option<bool> {
        match &self.nodes {
            Some(nodes) => nodes.exists(name).await,
            None => None,
        }
    }

    /// The same service publishing the volumes of one KubeVirt VMI one at a time.
    pub fn with_vmi_turns(mut self, turns: crate::cluster::VmiTurns) -> Self {
        self.vmi_turns = Some(turns);
        self
    }

    /// Waits for the turn of the VMIs using `volume_id`, when publishes are serialized per
    /// VMI; hold it for the whole publish.
    pub(crate) async fn publish_turn(&self, volume_id: &str) -> Option<crate::cluster::VmiTurn> {
        match &self.vmi_turns {
            Some(turns) => turns.turn(volume_id).await,
            None => None,
        }
    }

    /// The same service posting events about volumes on their claims.
    pub fn with_events(mut self, events: crate::cluster::VolumeEvents) -> Self {
        self.events = Some(events);
        self
    }

    /// Posts an event about `volume_id` on its claim, when the service has a cluster.
    pub(crate) fn volume_event(
        &self,
        volume_id: &str,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        if let Some(events) = &self.events {
            events.post(volume_id, warning, reason, action, note);
        }
    }

    /// The same service keeping who holds which volume in `attachments`.
    pub fn with_attachments(mut self, attachments: Arc<dyn AttachmentState>) -> Self {
        self.attachments = attachments;
        self
    }

    /// Who holds which volume (read and written under the volume's lock).
    pub fn attachments(&self) -> &dyn AttachmentState {
        self.attachments.as_ref()
    }

    /// The RouterOS client, for the controller's other modules (fencing).
    /// The volume base path as a device directory.
    pub(crate) fn base_dir(&self) -> &DirPath {
        &self.base_dir
    }

    pub(crate) fn rds(&self) -> &routeros::Client {
        &self.rds
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
        self.usable(reading, |pool| pool)
    }

    async fn read_pool(&self) -> routeros::Result<Pool> {
        self.rds.pool(&self.config.pool).await
    }

    /// A pool that is missing or unmounted is the operator's to fix, not a transient fault.
    fn usable<T>(&self, reading: routeros::Result<T>, pool: impl Fn(&T) -> &Pool) -> Result<T> {
        let unusable = |reason: &str| DriverError::PoolUnusable {
            pool: self.config.pool.clone(),
            reason: reason.to_owned(),
        };
        match reading {
            Err(routeros::Error::NotFound(_)) => {
                Err(unusable("no /disk entry has this mount point"))
            }
            Ok(value) if !pool(&value).mounted => Err(unusable("the pool is not mounted")),
            Ok(value) => Ok(value),
            Err(e) => Err(e.into()),
        }
    }

    /// Ready while the RDS answers: `Ok(false)` during an outage; errors for faults that
    /// waiting will not cure (credentials, missing pool, RouterOS too old).
    pub async fn probe(&self) -> Result<bool> {
        let outcome = async {
            self.pool().await?;
            self.require_server_nqn().await
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
    /// One round trip for a new volume: the guarded add, which adds only when neither the
    /// slot nor the image path is taken and reports what it found (plus a capacity reading
    /// when the cached one is stale). Whatever holds the slot is judged against the plan and
    /// never touched. Nothing is removed on the strength of an error text: the only disk this
    /// call ever removes is one the add returned the id of, and only when its read-back
    /// differs from the request.
    pub async fn create_volume(&self, plan: &VolumePlan) -> Result<FileDisk> {
        self.require_server_nqn().await?;
        let reservation = match self.reserve(plan.size).await {
            Ok(reservation) => reservation,
            // A repeat for an existing volume must succeed even on a full pool.
            Err(refusal @ DriverError::InsufficientSpace { .. }) => {
                return self.existing_or(plan, refusal).await;
            }
            Err(e) => return Err(e),
        };
        let (disk, created) = if plan.source.is_some() {
            self.create_copy(plan).await?
        } else {
            self.ensure_subvolume(plan).await?;
            self.add(plan).await?
        };
        if created {
            reservation.created(&disk.slot, disk.file_size);
        }
        Ok(disk)
    }

    /// Volumes are exported under `<prefix>:<id>`, the only NQNs nodes attach; RouterOS before
    /// 7.21 cannot set that.
    async fn require_server_nqn(&self) -> Result<()> {
        match self.rds.version().await?.require_server_nqn() {
            Ok(()) => Ok(()),
            Err(e) => Err(DriverError::Precondition(e.message().to_owned())),
        }
    }

    /// The guarded add and what its facts mean; `true` when this call created the disk.
    pub(super) async fn add(&self, plan: &VolumePlan) -> Result<(FileDisk, bool)> {
        let spec = plan.disk_spec();
        let mut cleared_leftover = false;
        loop {
            let outcome = match self.rds.create_file_disk(&spec).await {
                Ok(outcome) => outcome,
                Err(error) => return self.after_failed_add(plan, error).await,
            };
            match outcome {
                CreateOutcome::Created(disk) => {
                    tracing::info!(size = disk.file_size, nqn = %disk.nqn, "created the volume");
                    return Ok((disk, true));
                }
                CreateOutcome::CreatedMismatch { id, reason } => {
                    self.undo_add(plan, &id, &reason).await;
                    return Err(routeros::Error::Protocol(reason).into());
                }
                CreateOutcome::SlotTaken(items) => {
                    return self.judged(plan, &items).map(|disk| (disk, false));
                }
                CreateOutcome::FileExists if !cleared_leftover => {
                    self.clear_leftover(plan).await?;
                    cleared_leftover = true;
                }
                CreateOutcome::FileExists => {
                    return Err(DriverError::Internal(format!(
                        "the image {} reappeared after its removal; retry",
                        plan.file_path
                    )));
                }
            }
        }
    }

    /// What holds the slot, judged against the plan (a copy's plan names the copy's image).
    pub(super) fn judged(&self, plan: &VolumePlan, items: &[DiskItem]) -> Result<FileDisk> {
        match judge_slot(plan, items) {
            SlotVerdict::Matches(disk) => Ok(disk),
            SlotVerdict::Incompatible(reason) => Err(DriverError::Incompatible {
                volume_id: plan.id.to_string(),
                reason,
            }),
            SlotVerdict::Ambiguous(reason) => Err(DriverError::Precondition(format!(
                "volume {}: {reason}",
                plan.id
            ))),
            SlotVerdict::Vanished => Err(routeros::Error::Unavailable(format!(
                "slot {} changed while the volume was being created; retry",
                plan.id
            ))
            .into()),
        }
    }

    /// The add failed, in transit or with any text: nothing is removed. If the volume exists
    /// as requested (the failure hid a success, or a replay met a device that answers oddly),
    /// that is the answer; otherwise the error stands and the retry judges again.
    async fn after_failed_add(
        &self,
        plan: &VolumePlan,
        error: routeros::Error,
    ) -> Result<(FileDisk, bool)> {
        if error.is_retryable() {
            return Err(error.into());
        }
        tracing::warn!(%error, "the add failed; judging what the slot holds");
        let items = self.rds.slot_items(plan.id.slot()).await?;
        match judge_slot(plan, &items) {
            SlotVerdict::Matches(disk) => Ok((disk, false)),
            // Nothing holds the slot: the refusal stands. "No space" is worth passing on; a
            // text that says "no such item" or "already exists" about a volume that is absent
            // means nothing CSI's NOT_FOUND or ALREADY_EXISTS would.
            SlotVerdict::Vanished => Err(match error {
                routeros::Error::NotFound(text) | routeros::Error::AlreadyExists(text) => {
                    routeros::Error::Protocol(format!("the add failed: {text}")).into()
                }
                other => other.into(),
            }),
            _ => self.judged(plan, &items).map(|disk| (disk, false)),
        }
    }

    /// Removes the disk this call's add created (the device returned its id) whose read-back
    /// differs from the request, with its image: the add ran only because no file existed at
    /// that path, so the image is this call's too. A failure is logged and left for the retry.
    async fn undo_add(&self, plan: &VolumePlan, id: &ItemId, reason: &str) {
        match self.rds.remove_disk(id, Some(&plan.file_path)).await {
            Ok(removal) => tracing::warn!(
                disk = %id, %reason, image = ?removal,
                disk = %id, %reason,
                "removed the disk this call created: the device reports something else than asked"
            ),
            Err(error) => tracing::warn!(
                disk = %id, %error, %reason,
                "could not remove the mismatching disk this call created; a retry will judge it"
            ),
        }
    }

    /// The slot is free but a file sits at this volume's image path. The path derives from the
    /// CSI name, and the CO calls CreateVolume only until a volume is handed out, so the file is
    /// the leftover of an earlier attempt for this same volume that no pod can have used. It is
    /// removed only when this call has read that no disk uses a file of its name, and the
    /// removal checks that again in the same command; it is never handed to `/disk add`, which a
    /// device may reuse, truncate or refuse.
    async fn clear_leftover(&self, plan: &VolumePlan) -> Result<()> {
        let facts = self
            .rds
            .volume_facts(plan.id.slot(), &self.base_dir)
            .await?;
        let incompatible = |reason: String| DriverError::Incompatible {
            volume_id: plan.id.to_string(),
            reason,
        };
        if let Some(user) = facts
            .image_users
            .iter()
            .find(|u| u.file_path == plan.file_path.as_str())
        {
            return Err(incompatible(format!(
                "its image {} is used by disk {}",
                plan.file_path, user.slot
            )));
        }
        match self.rds.remove_unused_image(&plan.file_path).await? {
            ImageRemoval::Removed => {
                tracing::warn!(image = %plan.file_path, "removed a leftover image of this volume that no disk uses");
                Ok(())
            }
            ImageRemoval::InUse => Err(incompatible(format!(
                "its image {} is used by a disk",
                plan.file_path
            ))),
        }
    }

    /// The volume's disk judged against the plan if it exists, else `refusal`.
    async fn existing_or(&self, plan: &VolumePlan, refusal: DriverError) -> Result<FileDisk> {
        let items = self.rds.slot_items(plan.id.slot()).await?;
        if items.is_empty() {
            return Err(refusal);
        }
        self.judged(plan, &items)
    }

    /// Holds `wanted` bytes of the thin-provisioning budget for a create. A cached reading
    /// that says "too little" (or failed) is confirmed with a newer one before refusing, since
    /// volumes may have been deleted, or the device come back, since it was taken.
    async fn reserve(&self, wanted: u64) -> Result<Reservation<'_>> {
        let ratio = self.config.overcommit_ratio;
        let mut not_before = None;
        loop {
            let (reading, taken_at) = self
                .capacity_reading
                .get_newer_than(not_before, || self.read_capacity())
                .await;
            let last_try = not_before.is_some();
            not_before = Some(taken_at);
            let reading = match self.usable(reading, |r| &r.pool) {
                Ok(reading) => reading,
                Err(DriverError::Rds(_)) if !last_try => continue,
                Err(e) => return Err(e),
            };
            let pool = &reading.pool;
            let fits =
                |promised: u64| promised <= ratio.of(pool.size) && wanted <= ratio.of(pool.free);
            if let Some(reservation) = self.ledger.reserve(&reading, wanted, fits) {
                return Ok(reservation);
            }
            if last_try {
                let provisioned = self.ledger.provisioned(&reading);
                return Err(DriverError::InsufficientSpace {
                    pool: self.config.pool.clone(),
                    wanted,
                    available: available(pool, provisioned, ratio),
                    size: pool.size,
                    free: pool.free,
                    provisioned,
                    ratio: ratio.to_string(),
                });
            }
        }
    }

    /// The pool and the driver's volumes (2 round trips), for the capacity budget.
    async fn read_capacity(&self) -> routeros::Result<CapacityReading> {
        let pool = self.read_pool().await?;
        let disks = self.rds.list_disks("").await?;
        Ok(CapacityReading::new(
            pool,
            &disks,
            &self.config.volume_base_path,
        ))
    }

    /// GetCapacity: what the budget still allows, from a reading at most `cache_ttl` old.
    pub async fn available_capacity(&self) -> Result<u64> {
        let (reading, _) = self.capacity_reading.get(|| self.read_capacity()).await;
        let reading = self.usable(reading, |r| &r.pool)?;
        let provisioned = self.ledger.provisioned(&reading);
        Ok(available(
            &reading.pool,
            provisioned,
            self.config.overcommit_ratio,
        ))
    }

    /// DeleteVolume: removes the disk and then its image (RouterOS keeps the file otherwise).
    ///
    /// Round trips: the volume's facts (1: its slot, the images named `<id>.img` anywhere
    /// under the base path, and the disks using them) + one script removing the disk by id and
    /// its image (1). With the disk already gone, each leftover image no disk uses is removed.
    /// A volume in a subvolume of its own loses the subvolume last (one more round trip), as
    /// does a repeat that finds no disk, since a delete cut short may have left it.
    pub async fn delete_volume(&self, id: &VolumeId) -> Result<()> {
        let facts = self.rds.volume_facts(id.slot(), &self.base_dir).await?;
        let subvolume = self.may_have_subvolume(&facts).await;
        self.delete_disk(id, &facts).await?;
        if subvolume {
            self.remove_volume_subvolume(id).await?;
        }
        Ok(())
    }

    async fn delete_disk(&self, id: &VolumeId, facts: &routeros::VolumeFacts) -> Result<()> {
        match plan_delete(facts, &self.config.volume_base_path) {
            DeletePlan::Nothing => Ok(()),
            DeletePlan::NotOurs(reason) => {
                tracing::warn!(%reason, "a disk holds this volume's slot but is not the driver's; leaving it alone");
                Ok(())
            }
            DeletePlan::Ambiguous(reason) => {
                Err(DriverError::Precondition(format!("volume {id}: {reason}")))
            }
            DeletePlan::RemoveDisk {
                id: disk,
                image,
                other_users,
            } => {
                let keep_image = !other_users.is_empty();
                if keep_image {
                    tracing::warn!(image = %image, users = ?other_users, "other disks use this volume's image; removing the disk only");
                }
                let removal = match self
                    .rds
                    .remove_disk(&disk, (!keep_image).then_some(&image))
                    .await
                {
                    Ok(removal) => removal,
                    // It went between our look and the removal: read again on the retry.
                    Err(routeros::Error::NotFound(text)) => {
                        return Err(routeros::Error::Unavailable(format!(
                            "the disk changed while it was being deleted ({text}); retry"
                        ))
                        .into());
                    }
                    Err(e) => return Err(e.into()),
                };
                self.ledger.forget(id.as_str());
                match removal {
                    Some(ImageRemoval::InUse) => {
                        tracing::warn!(image = %image, "deleted the disk; its image came into use by another disk and was kept")
                    }
                    _ => tracing::info!(image = %image, kept = keep_image, "deleted the disk"),
                }
                Ok(())
            }
            DeletePlan::RemoveImage { image, in_use } => {
                warn_in_use(&in_use);
                match self.rds.remove_unused_image(&image).await? {
                    ImageRemoval::Removed => {
                        tracing::info!(image = %image, "removed the image an interrupted delete left behind")
                    }
                    ImageRemoval::InUse => {
                        tracing::warn!(image = %image, "the leftover image came into use by another disk; kept")
                    }
                }
                Ok(())
            }
            DeletePlan::LeaveImages { images, in_use } => {
                warn_in_use(&in_use);
                if !images.is_empty() {
                    tracing::warn!(
                        ?images,
                        "several files carry this volume's image name and no disk uses them; \
                         which was the volume's cannot be told, so none is removed"
                    );
                }
                Ok(())
            }
        }
    }

    /// The driver's disk for a volume id; NOT_FOUND when absent or not the driver's.
    /// One round trip.
    pub async fn volume(&self, id: &VolumeId) -> Result<FileDisk> {
        let items = self.rds.slot_items(id.slot()).await?;
        match items.as_slice() {
            [DiskItem::File(disk)]
                if owned_image(disk, &self.config.volume_base_path).is_some() =>
            {
                Ok(disk.clone())
            }
            [_, _, ..] => Err(DriverError::Precondition(format!(
                "volume {id}: {} disks hold its slot; the driver will not choose between them",
                items.len()
            ))),
            _ => Err(DriverError::VolumeNotFound(id.to_string())),
        }
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
}
