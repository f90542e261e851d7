//! Attach fencing: ControllerPublishVolume and ControllerUnpublishVolume decide which nodes may
//! hold a volume (see `docs/fencing.md`).
//!
//! - [`rules`]: the decisions, pure, time passed in;
//! - [`state`]: who holds what, behind a trait, kept in memory;
//! - [`watched`]: the same read from the cluster's VolumeAttachments (the default);
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

use super::export_acl::{ExportHostsPlan, admitted, plan_publish, plan_unpublish};
use super::rules::VolumeId;
use super::service::ControllerService;
use crate::capabilities::Supported;
use crate::error::{DriverError, Result};
use crate::node_id::NodeRef;

impl ControllerService {
    /// ControllerPublishVolume for a validated request, under the volume's lock: the volume
    /// must exist on the RDS and, with Kubernetes, the node in the cluster (NOT_FOUND), then
    /// the rules decide from the holders at `now`.
    pub async fn publish_volume(
        &self,
        id: &VolumeId,
        node_ref: &NodeRef,
        access: Supported,
        window: MigrationWindow,
        now: SystemTime,
    ) -> Result<PublishDecision> {
        let node = node_ref.name.as_str();
        self.volume(id).await?;
        if self.node_exists(node).await == Some(false) {
            return Err(DriverError::NodeNotFound(node.to_owned()));
        }
        let attachments = self.attachments();
        let mut holders = attachments.holders(id.as_str())?;
        // The window this publish's volume context gives (a watched state may not know it).
        holders.window = window;
        let decision = match rules::decide_publish(id.as_str(), &holders, node, access, now) {
            Ok(decision) => decision,
            Err(refusal) => {
                if let FenceError::MigrationOverdue { .. } = refusal {
                    tracing::warn!(%refusal, "migration overdue");
                }
                self.volume_event(
                    id.as_str(),
                    true,
                    "PublishRefused",
                    "ControllerPublishVolume",
                    format!("not attached to node {node}: {refusal}"),
                );
                return Err(refusal.into());
            }
        };
        match &decision {
            PublishDecision::Already => tracing::debug!("already published to this node"),
            PublishDecision::Attach => tracing::info!("attached"),
            PublishDecision::StartMigration { source } => {
                tracing::info!(
                    source,
                    target = node,
                    window_s = window.duration().as_secs(),
                    "live migration started"
                );
                self.volume_event(
                    id.as_str(),
                    false,
                    "MigrationStarted",
                    "ControllerPublishVolume",
                    format!(
                        "live migration from node {source} to node {node} started; both may \
                         hold the volume for {} s",
                        window.duration().as_secs()
                    ),
                );
            }
        }
        if self.config().export_acl {
            let others_hold = holders.holders.iter().any(|h| h.node != node);
            self.admit(id, node_ref, others_hold).await?;
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
    pub async fn unpublish_volume(
        &self,
        id: &VolumeId,
        node_ref: Option<&NodeRef>,
        now: SystemTime,
    ) -> Result<UnpublishDecision> {
        let node = node_ref.map(|n| n.name.as_str());
        let attachments = self.attachments();
        let holders = attachments.holders(id.as_str())?;
        let decision = rules::decide_unpublish(&holders.holders, node);
        // The export goes first: once the node is off its list, it can be let go.
        if self.config().export_acl {
            let remaining = holders.holders.len() - decision.leaving().len();
            self.release_export(id, node_ref, remaining).await?;
        }
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
        if let (Some(metrics), Some((outcome, took))) = (
            &self.fencing_metrics,
            rules::migration_end(&holders, &decision, now),
        ) {
            metrics.migration_ended(outcome, took);
        }
        match &decision {
            UnpublishDecision::NotHeld => tracing::debug!("not published to this node"),
            UnpublishDecision::Detach { node } => tracing::info!(node, "detached"),
            UnpublishDecision::CompleteMigration { source, target } => {
                tracing::info!(source, target, "live migration completed");
                self.volume_event(
                    id.as_str(),
                    false,
                    "MigrationCompleted",
                    "ControllerUnpublishVolume",
                    format!("live migration from node {source} to node {target} completed"),
                );
            }
            UnpublishDecision::RollBack { source, target } => {
                tracing::info!(source, target, "live migration rolled back");
                self.volume_event(
                    id.as_str(),
                    false,
                    "MigrationRolledBack",
                    "ControllerUnpublishVolume",
                    format!("live migration from node {source} to node {target} rolled back"),
                );
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

impl ControllerService {
    /// `--export-acl`: puts `node`'s host NQN on the volume's export list (read, planned,
    /// written only on change, verified by read-back).
    async fn admit(&self, id: &VolumeId, node: &NodeRef, others_hold: bool) -> Result<()> {
        let current = self.rds().export_hosts(id.slot()).await?;
        let plan = plan_publish(id.as_str(), &current, node, others_hold);
        self.apply_export_plan(id, plan, true).await
    }

    /// `--export-acl`: takes `node`'s host NQN (every host, when `None`) off the volume's
    /// export list. A volume the RDS no longer has needs nothing.
    async fn release_export(
        &self,
        id: &VolumeId,
        node: Option<&NodeRef>,
        remaining: usize,
    ) -> Result<()> {
        let current = match self.rds().export_hosts(id.slot()).await {
            Ok(current) => current,
            Err(routeros::Error::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        let plan = plan_unpublish(id.as_str(), &current, node, remaining);
        self.apply_export_plan(id, plan, false).await
    }

    async fn apply_export_plan(
        &self,
        id: &VolumeId,
        plan: ExportHostsPlan,
        publishing: bool,
    ) -> Result<()> {
        match plan {
            ExportHostsPlan::Keep => Ok(()),
            ExportHostsPlan::Set(hosts) => {
                self.rds().set_export_hosts(id.slot(), &hosts).await?;
                tracing::info!(hosts = %hosts, "export access set");
                self.volume_event(
                    id.as_str(),
                    false,
                    "FencingApplied",
                    action(publishing),
                    format!(
                        "the volume's NVMe/TCP export now admits {}",
                        admitted(&hosts)
                    ),
                );
                Ok(())
            }
            ExportHostsPlan::Leave(why) => {
                tracing::warn!(%why, publishing, "export access not changed");
                self.volume_event(
                    id.as_str(),
                    true,
                    "FencingNotApplied",
                    action(publishing),
                    format!("the volume's export access was left as it is: {why}"),
                );
                Ok(())
            }
            ExportHostsPlan::Refuse(why) => Err(DriverError::Precondition(why)),
        }
    }
}

fn action(publishing: bool) -> &'static str {
    if publishing {
        "ControllerPublishVolume"
    } else {
        "ControllerUnpublishVolume"
    }
}

/// Every `every`, while `leading` (one replica says it, not each): logs a warning for every
/// overdue migration — it waits for a person (or KubeVirt) to detach one side, so it keeps
/// being said — and sets the fencing gauges. Runs until the task is dropped.
pub async fn watch_attachments(
    service: Arc<ControllerService>,
    every: Duration,
    leading: tokio::sync::watch::Receiver<bool>,
    metrics: crate::metrics::FencingMetrics,
) {
    // The first pass after one period: at start the watched state is still listing.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !*leading.borrow() {
            continue;
        }
        let now = SystemTime::now();
        let all = match service.attachments().all() {
            Ok(all) => all,
            Err(error) => {
                tracing::warn!(%error, "cannot check the attachments");
                continue;
            }
        };
        let migrations = all.iter().filter(|(_, h)| h.holders.len() > 1).count();
        let mut overdue = 0;
        for (volume_id, holders) in &all {
            if let Some(late) = rules::overdue(holders, now) {
                overdue += 1;
                service.volume_event(
                    volume_id,
                    true,
                    "MigrationOverdue",
                    "LiveMigration",
                    format!(
                        "live migration from node {} to node {} is {} s old, past its {} s \
                         window: new targets are refused until one side detaches; the driver \
                         detaches neither",
                        late.source,
                        late.target,
                        late.age.as_secs(),
                        late.window.as_secs()
                    ),
                );
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
        metrics.set(all.len(), migrations, overdue);
    }
}
