//! Attach fencing: ControllerPublishVolume and ControllerUnpublishVolume decide which nodes may
//! hold a volume (see `docs/fencing.md`).
//!
//! - [`rules`]: the decisions, pure, time passed in;
//! - [`state`]: who holds what, behind a trait (in memory now, watched from Kubernetes later);
//! - here: the controller's publish and unpublish, reading the state, deciding, recording.

pub mod rules;
pub mod state;
pub mod watched;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use rules::{
    FenceError, Holder, Holders, MigrationWindow, Overdue, PublishDecision, UnpublishDecision,
};
pub use state::{AttachmentState, MemoryAttachments, StateError};
pub use watched::WatchedAttachments;

use super::rules::VolumeId;
use super::service::ControllerService;
use crate::capabilities::Supported;
use crate::error::Result;

impl ControllerService {
    /// ControllerPublishVolume for a validated request, under the volume's lock: the volume
    /// must exist on the RDS (NOT_FOUND), then the rules decide from the holders at `now`.
    pub async fn publish_volume(
        &self,
        id: &VolumeId,
        node: &str,
        access: Supported,
        window: MigrationWindow,
        now: SystemTime,
    ) -> Result<PublishDecision> {
        self.volume(id).await?;
        let attachments = self.attachments();
        let holders = attachments.holders(id.as_str())?;
        let decision = match rules::decide_publish(id.as_str(), &holders, node, access, now) {
            Ok(decision) => decision,
            Err(refusal) => {
                if let FenceError::MigrationOverdue { .. } = refusal {
                    tracing::warn!(%refusal, "migration overdue");
                }
                return Err(refusal.into());
            }
        };
        match &decision {
            PublishDecision::Already => tracing::debug!("already published to this node"),
            PublishDecision::Attach => tracing::info!("attached"),
            PublishDecision::StartMigration { source } => tracing::info!(
                source,
                target = node,
                window_s = window.duration().as_secs(),
                "live migration started"
            ),
        }
        if decision.records() {
            let holder = Holder {
                node: node.to_owned(),
                since: now,
                access: Some(access),
            };
            attachments.record_publish(id.as_str(), holder, window)?;
        }
        Ok(decision)
    }

    /// ControllerUnpublishVolume under the volume's lock: `node` stops holding the volume
    /// (every holder when `None`). Needs no device: a volume the RDS no longer has is simply
    /// no longer held, as the spec asks.
    pub fn unpublish_volume(
        &self,
        id: &VolumeId,
        node: Option<&str>,
        now: SystemTime,
    ) -> Result<UnpublishDecision> {
        let attachments = self.attachments();
        let holders = attachments.holders(id.as_str())?;
        let decision = rules::decide_unpublish(&holders.holders, node);
        if let Some(late) = rules::overdue(&holders, now)
            && decision != UnpublishDecision::NotHeld
        {
            tracing::warn!(
                source = late.source,
                target = late.target,
                age_s = late.age.as_secs(),
                window_s = late.window.as_secs(),
                "an overdue migration ends"
            );
        }
        for leaving in decision.leaving() {
            attachments.record_unpublish(id.as_str(), leaving)?;
        }
        match &decision {
            UnpublishDecision::NotHeld => tracing::debug!("not published to this node"),
            UnpublishDecision::Detach { node } => tracing::info!(node, "detached"),
            UnpublishDecision::CompleteMigration { source, target } => {
                tracing::info!(source, target, "live migration completed")
            }
            UnpublishDecision::RollBack { source, target } => {
                tracing::info!(source, target, "live migration rolled back")
            }
            UnpublishDecision::DetachAll { nodes } => {
                tracing::info!(?nodes, "detached from every node")
            }
        }
        Ok(decision)
    }

    /// Every migration past its window at `now`, by volume id: for warnings, metrics, events.
    pub fn overdue_migrations(&self, now: SystemTime) -> Result<Vec<(String, Overdue)>> {
        Ok(self
            .attachments()
            .all()?
            .into_iter()
            .filter_map(|(id, holders)| rules::overdue(&holders, now).map(|late| (id, late)))
            .collect())
    }
}

/// Logs a warning for every overdue migration, every `every`, while `leading` (one replica
/// says it, not each), until the task is dropped: an overdue migration waits for a person (or
/// KubeVirt) to detach one side, so it keeps being said.
pub async fn warn_overdue(
    service: Arc<ControllerService>,
    every: Duration,
    leading: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !*leading.borrow() {
            continue;
        }
        match service.overdue_migrations(SystemTime::now()) {
            Ok(late) => {
                for (volume_id, late) in late {
                    tracing::warn!(
                        volume_id,
                        source = late.source,
                        target = late.target,
                        age_s = late.age.as_secs(),
                        window_s = late.window.as_secs(),
                        "live migration overdue: new targets are refused until the source or \
                         the target unpublishes; the driver detaches neither by itself"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "cannot check for overdue migrations"),
        }
    }
}
