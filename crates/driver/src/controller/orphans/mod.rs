//! The orphan reconciler: disks and images of the driver's naming that no PersistentVolume
//! names, found on the device by the leading controller, reported (metric, log, an event on
//! the controller's Pod) and, only with `--orphans delete`, removed.
//!
//! What makes a finding an orphan, and what makes its removal safe:
//! - **the driver's own**: a managed volume id in the base path ([`judge`]);
//! - **no PersistentVolume**: the watched index for reporting; before any removal a fresh
//!   list of the cluster's PersistentVolumes, and no VolumeAttachment naming an unknown PV;
//! - **provably abandoned**: its image untouched for the grace period by the device's own
//!   clock (a CreateVolume whose PV is still being made is seconds old, never past it);
//! - **no operation in flight**: the removal holds the volume's lock, as a CSI call would,
//!   and goes through DeleteVolume's own guarded path (a disk) or the device-side "no disk
//!   uses it" check (an image).

pub mod judge;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use judge::{Finding, OrphanKind};

use super::ControllerService;
use super::rules::VolumeId;
use crate::cluster::{AttachmentIndex, VolumeEvents};

/// What the reconciler does with an orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanMode {
    /// Metric, log and event; nothing on the device changes (the default).
    Report,
    /// As `Report`, then removes it.
    Delete,
}

impl std::str::FromStr for OrphanMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "report" => Ok(Self::Report),
            "delete" => Ok(Self::Delete),
            other => Err(format!("{other:?}: expected report or delete")),
        }
    }
}

/// How the reconciler runs.
#[derive(Debug, Clone, Copy)]
pub struct OrphanPolicy {
    pub mode: OrphanMode,
    /// How long the device must show a finding untouched before it is an orphan.
    pub grace: Duration,
    /// Time between sweeps.
    pub interval: Duration,
}

/// The orphans of one sweep and what became of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Every finding, orphan or not yet (sorted by volume id).
    pub findings: Vec<Finding>,
    /// Findings past the grace period.
    pub orphans: Vec<Finding>,
    /// Orphans removed by this sweep.
    pub removed: Vec<Finding>,
    /// Orphans kept although removal was asked, with the reason.
    pub kept: Vec<(Finding, String)>,
}

/// The reconciler's metrics: set by the sweep, read by scrapes.
#[derive(Debug, Clone, Default)]
pub struct OrphanMetrics {
    found: Family<KindLabels, Gauge>,
    removed: Family<KindLabels, Counter>,
    sweeps: Family<ResultLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

const KINDS: [OrphanKind; 2] = [OrphanKind::Disk, OrphanKind::Image];

impl OrphanMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "rds_csi_controller_orphans",
            "Disks and images of the driver on the device that no PersistentVolume names, \
             untouched for the grace period (last sweep)",
            metrics.found.clone(),
        );
        registry.register(
            "rds_csi_controller_orphans_removed",
            "Orphans removed (--orphans delete)",
            metrics.removed.clone(),
        );
        registry.register(
            "rds_csi_controller_orphan_sweeps",
            "Orphan sweeps by result (ok, error)",
            metrics.sweeps.clone(),
        );
        for kind in KINDS {
            let labels = KindLabels { kind: kind.label() };
            metrics.found.get_or_create(&labels).set(0);
            metrics.removed.get_or_create(&labels).inc_by(0);
        }
        metrics
    }

    fn record(&self, sweep: &Sweep) {
        for kind in KINDS {
            let count = sweep.orphans.iter().filter(|f| f.kind == kind).count();
            let labels = KindLabels { kind: kind.label() };
            self.found
                .get_or_create(&labels)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        for finding in &sweep.removed {
            let labels = KindLabels {
                kind: finding.kind.label(),
            };
            self.removed.get_or_create(&labels).inc();
        }
    }

    fn sweep_ended(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.sweeps.get_or_create(&ResultLabels { result }).inc();
    }
}

/// Where the reconciler posts its events: the controller's own Pod.
#[derive(Debug, Clone)]
pub struct EventTarget {
    pub events: VolumeEvents,
    pub pod: ObjectReference,
}

impl EventTarget {
    /// The Pod `name` in `namespace` (from the downward API).
    pub fn pod(events: VolumeEvents, namespace: &str, name: &str) -> Self {
        let pod = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        };
        Self { events, pod }
    }
}

/// Finds (and with [`OrphanMode::Delete`] removes) orphans; see the module documentation.
pub struct OrphanReconciler {
    service: Arc<ControllerService>,
    index: AttachmentIndex,
    client: kube::Client,
    policy: OrphanPolicy,
    metrics: OrphanMetrics,
    events: Option<EventTarget>,
    /// Orphans already announced by an event: one event per orphan, not one per sweep.
    announced: Mutex<HashSet<(OrphanKind, String)>>,
}

impl OrphanReconciler {
    pub fn new(
        service: Arc<ControllerService>,
        index: AttachmentIndex,
        client: kube::Client,
        policy: OrphanPolicy,
        metrics: OrphanMetrics,
    ) -> Self {
        Self {
            service,
            index,
            client,
            policy,
            metrics,
            events: None,
            announced: Mutex::default(),
        }
    }

    pub fn with_events(mut self, target: EventTarget) -> Self {
        self.events = Some(target);
        self
    }

    /// Sweeps every `interval` while this replica leads (the first at once), until `leading`
    /// closes.
    pub async fn run(self, mut leading: watch::Receiver<bool>) {
        loop {
            if leading.wait_for(|l| *l).await.is_err() || self.index.ready().await.is_err() {
                return;
            }
            match self.sweep().await {
                Ok(sweep) => {
                    self.metrics.sweep_ended(true);
                    tracing::debug!(
                        findings = sweep.findings.len(),
                        orphans = sweep.orphans.len(),
                        removed = sweep.removed.len(),
                        "orphan sweep done"
                    );
                }
                Err(error) => {
                    self.metrics.sweep_ended(false);
                    tracing::warn!(%error, "orphan sweep failed; next at the next interval");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.policy.interval) => {}
                changed = leading.changed() => if changed.is_err() { return },
            }
            if !*leading.borrow() {
                // Only the leader's figures count: a follower shows none, not stale ones.
                self.metrics.record(&Sweep::default());
            }
        }
    }

    /// One sweep: the device's inventory, judged against the cluster's volumes; reported,
    /// and removed when asked. Safe to call at any time (tests do).
    pub async fn sweep(&self) -> Result<Sweep, SweepError> {
        let service = &self.service;
        let inventory = service.rds().inventory(service.base_dir()).await?;
        // Read after the inventory: a volume the device listed whose PV appeared meanwhile
        // is known here.
        let handles: HashSet<String> = self.index.persistent_volume_handles();
        let base_path = &service.config().volume_base_path;
        let findings = judge::find(&inventory, base_path, &handles);
        let locks = service.locks();
        let orphans: Vec<Finding> = findings
            .iter()
            .filter(|f| f.is_orphan(self.policy.grace) && !locks.is_held(&f.volume_id))
            .cloned()
            .collect();
        for finding in &findings {
            if !orphans.contains(finding) {
                tracing::debug!(volume_id = finding.volume_id, image = finding.image, idle = ?finding.idle, "no PersistentVolume names it yet; not past the grace period");
            }
        }
        self.announce(&orphans);
        let mut sweep = Sweep {
            findings,
            orphans,
            ..Sweep::default()
        };
        if self.policy.mode == OrphanMode::Delete && !sweep.orphans.is_empty() {
            self.remove_all(&mut sweep).await?;
        }
        self.metrics.record(&sweep);
        Ok(sweep)
    }

    fn announce(&self, orphans: &[Finding]) {
        let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        announced.retain(|(kind, id)| {
            orphans
                .iter()
                .any(|o| o.kind == *kind && &o.volume_id == id)
        });
        for orphan in orphans {
            let idle = humantime::format_duration(orphan.idle.unwrap_or_default());
            tracing::warn!(
                kind = orphan.kind.label(),
                volume_id = orphan.volume_id,
                image = orphan.image,
                %idle,
                mode = ?self.policy.mode,
                "orphan: no PersistentVolume names it"
            );
            if announced.insert((orphan.kind, orphan.volume_id.clone()))
                && let Some(target) = &self.events
            {
                let action = match self.policy.mode {
                    OrphanMode::Report => "left in place (--orphans report)",
                    OrphanMode::Delete => "to be removed (--orphans delete)",
                };
                target.events.post_on(
                    target.pod.clone(),
                    &orphan.volume_id,
                    true,
                    "OrphanFound",
                    "Reconcile",
                    format!(
                        "{} {} ({}) on the RDS: no PersistentVolume names it, untouched for {idle}; {action}",
                        orphan.kind.label(),
                        orphan.volume_id,
                        orphan.image
                    ),
                );
            }
        }
    }

    async fn remove_all(&self, sweep: &mut Sweep) -> Result<(), SweepError> {
        // Removal rests on a fresh list of the cluster's PersistentVolumes, not on the
        // watch (which may lag), and on no attachment naming a volume the index cannot see.
        let fresh = self.fresh_handles().await?;
        let unresolved = self.index.unresolved();
        for orphan in sweep.orphans.clone() {
            let refusal = if fresh.contains(&orphan.volume_id) {
                Some("a PersistentVolume names it now".to_owned())
            } else if !unresolved.is_empty() {
                Some(format!(
                    "VolumeAttachments name PersistentVolumes the controller cannot see ({}); nothing is removed until they resolve",
                    unresolved.join(", ")
                ))
            } else if !self.index.holders(&orphan.volume_id).is_empty() {
                Some("a VolumeAttachment holds it".to_owned())
            } else {
                None
            };
            let outcome = match refusal {
                Some(reason) => Err(reason),
                None => self.remove(&orphan).await,
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(
                        kind = orphan.kind.label(),
                        volume_id = orphan.volume_id,
                        image = orphan.image,
                        "removed the orphan"
                    );
                    self.post(
                        &orphan,
                        false,
                        "OrphanRemoved",
                        format!(
                            "{} {} ({}) removed from the RDS: no PersistentVolume named it",
                            orphan.kind.label(),
                            orphan.volume_id,
                            orphan.image
                        ),
                    );
                    sweep.removed.push(orphan);
                }
                Err(reason) => {
                    tracing::warn!(kind = orphan.kind.label(), volume_id = orphan.volume_id, %reason, "orphan kept");
                    sweep.kept.push((orphan, reason));
                }
            }
        }
        Ok(())
    }

    /// Removes one orphan while holding its volume's lock; `Err` says why it was kept.
    async fn remove(&self, orphan: &Finding) -> Result<(), String> {
        let service = &self.service;
        let Some(_guard) = service.locks().try_lock(&orphan.volume_id) else {
            return Err("an operation on the volume is in flight".into());
        };
        match orphan.kind {
            OrphanKind::Disk => {
                let id = VolumeId::parse(&orphan.volume_id)
                    .ok_or_else(|| "not a volume id of the driver".to_owned())?;
                service.delete_volume(&id).await.map_err(|e| e.to_string())
            }
            // Removed as DeleteSnapshot removes it, if it still is an unfinished one: a
            // retry of its CreateSnapshot may have finished it since the sweep looked.
            OrphanKind::UnfinishedSnapshot => {
                match service.copy_snapshot(&orphan.volume_id).await {
                    Ok(Some(info)) if !info.ready => service
                        .delete_copy_snapshot(&orphan.volume_id)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Ok(Some(_)) => Err("its copy finished meanwhile: it is a snapshot".into()),
                    Ok(None) => Err("no copy snapshot of that id now".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
            OrphanKind::Image => {
                let path = routeros::FilePath::try_from(orphan.image.as_str())
                    .map_err(|e| e.to_string())?;
                match service.rds().remove_unused_image(&path).await {
                    Ok(routeros::ImageRemoval::Removed) => Ok(()),
                    Ok(routeros::ImageRemoval::InUse) => {
                        Err("a disk uses a file of its name now".into())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    fn post(&self, orphan: &Finding, warning: bool, reason: &str, note: String) {
        if let Some(target) = &self.events {
            target.events.post_on(
                target.pod.clone(),
                &orphan.volume_id,
                warning,
                reason,
                "Reconcile",
                note,
            );
        }
    }

    /// The volume handles of this driver's PersistentVolumes, listed now.
    async fn fresh_handles(&self) -> Result<HashSet<String>, SweepError> {
        let volumes: kube::Api<PersistentVolume> = kube::Api::all(self.client.clone());
        let driver = &self.service.config().driver_name;
        let listed = tokio::time::timeout(LIST_TIME, volumes.list(&Default::default()))
            .await
            .map_err(|_| SweepError::Cluster("listing PersistentVolumes timed out".into()))?
            .map_err(|e| SweepError::Cluster(e.to_string()))?;
        Ok(listed
            .items
            .iter()
            .filter_map(|pv| crate::cluster::facts::volume_handle(pv, driver))
            .collect())
    }
}

/// Bound on the fresh PersistentVolume list before removals.
const LIST_TIME: Duration = Duration::from_secs(30);

/// Why a sweep could not judge.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("reading the RDS: {0}")]
    Device(#[from] routeros::Error),
    #[error("reading the cluster: {0}")]
    Cluster(String),
}
