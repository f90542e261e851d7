//! Node-side orphans: NVMe controllers of the driver's own volumes that no staged volume
//! uses (an unstage cut off half-way, a volume deleted while attached, a crash between
//! connect and record). Found by the background check and, with `--orphans disconnect`,
//! disconnected once they stayed orphaned for `--orphan-grace`.
//!
//! An attachment counts as orphaned only when every fact, read by this check, says so: its
//! NQN is under the managed prefix with the driver's id shape (the fabric guards that again
//! at disconnect), no record of this node names it, nothing mounts its device and no device
//! node below the publish directory points at it, and no CSI call holds the volume. The
//! grace period covers a stage between its connect and its record.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::NodeCore;
use crate::locks::VolumeLocks;

/// Default time an attachment must stay orphaned before it is disconnected.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(600);

/// What the node does about orphaned attachments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OrphanPolicy {
    /// Log and count them (`rds_csi_node_orphaned_attachments`).
    Report,
    /// Also disconnect them after the grace period.
    #[default]
    Disconnect,
}

/// Since when each attachment has been seen orphaned (pure bookkeeping).
#[derive(Debug, Default)]
pub struct OrphanTracker {
    since: HashMap<String, Instant>,
}

impl OrphanTracker {
    /// Notes the NQNs orphaned now (`attached` minus `recorded`); forgets those no longer
    /// orphaned. Returns those orphaned for at least `grace`, sorted.
    pub fn update(
        &mut self,
        attached: &[String],
        recorded: &HashSet<String>,
        now: Instant,
        grace: Duration,
    ) -> Vec<String> {
        let orphaned: HashSet<&String> = attached
            .iter()
            .filter(|nqn| !recorded.contains(*nqn))
            .collect();
        self.since.retain(|nqn, _| orphaned.contains(nqn));
        for nqn in orphaned {
            self.since.entry(nqn.clone()).or_insert(now);
        }
        let mut due: Vec<String> = self
            .since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= grace)
            .map(|(nqn, _)| nqn.clone())
            .collect();
        due.sort();
        due
    }

    /// Attachments currently seen orphaned, whatever their age.
    pub fn count(&self) -> usize {
        self.since.len()
    }

    /// Restarts the clock of an attachment that was found in use after all.
    pub fn in_use(&mut self, nqn: &str, now: Instant) {
        if let Some(since) = self.since.get_mut(nqn) {
            *since = now;
        }
    }
}

impl NodeCore {
    /// One pass: counts the orphans and, when so configured, disconnects those past the
    /// grace period. Failures are logged; the next pass tries again.
    pub(crate) async fn sweep_orphans(
        &self,
        tracker: &mut OrphanTracker,
        locks: &VolumeLocks,
        deadline: Instant,
    ) {
        // The fabric lists only the driver's NQNs; checked again here, as every fabric may not.
        let ours = nvme::ManagedPrefix::new(format!("{}:", self.config.nqn_prefix));
        let attached = match self.fabric.managed_controllers(deadline).await {
            Ok(mut controllers) => {
                controllers.retain(|c| ours.as_ref().is_ok_and(|p| p.covers(&c.nqn)));
                self.metrics
                    .set_nvme_controllers(controllers.iter().map(|c| c.state));
                let mut nqns: Vec<String> = controllers.into_iter().map(|c| c.nqn).collect();
                nqns.dedup();
                nqns
            }
            Err(error) => {
                tracing::warn!(%error, "orphaned attachments not checked");
                return;
            }
        };
        let recorded: HashSet<String> = self.records.all().into_iter().map(|r| r.nqn).collect();
        let now = Instant::now();
        let due = tracker.update(&attached, &recorded, now, self.config.orphan_grace);
        self.metrics.set_orphaned_attachments(tracker.count());
        for nqn in due {
            match self.config.orphans {
                OrphanPolicy::Report => {
                    tracing::warn!(
                        nqn,
                        "attached, but no staged volume uses it (--orphans report)"
                    );
                }
                OrphanPolicy::Disconnect => {
                    if !self.disconnect_orphan(&nqn, locks, deadline).await {
                        tracker.in_use(&nqn, now);
                    }
                }
            }
        }
    }

    /// Disconnects `nqn` if, under its volume's lock, nothing uses it; true when it went.
    async fn disconnect_orphan(&self, nqn: &str, locks: &VolumeLocks, deadline: Instant) -> bool {
        let Some(volume_id) = nqn
            .strip_prefix(&self.config.nqn_prefix)
            .and_then(|rest| rest.strip_prefix(':'))
        else {
            return false;
        };
        let Some(_guard) = locks.try_lock(volume_id) else {
            return false;
        };
        if self.records.all().iter().any(|r| r.nqn == nqn) {
            return false;
        }
        let users = match self.fabric.find(nqn, deadline).await {
            Ok(Some(device)) => self.users_of(device.device, deadline).await,
            Ok(None) => Ok(Vec::new()),
            Err(error) => Err(error.into()),
        };
        match users {
            Ok(users) if users.is_empty() => match self.fabric.detach(nqn, deadline).await {
                Ok(()) => {
                    tracing::warn!(
                        nqn,
                        grace_s = self.config.orphan_grace.as_secs(),
                        "disconnected an attachment no staged volume used"
                    );
                    self.metrics.orphan_disconnected();
                    true
                }
                Err(error) => {
                    tracing::warn!(nqn, %error, "orphaned attachment not disconnected");
                    false
                }
            },
            Ok(users) => {
                tracing::warn!(
                    nqn,
                    ?users,
                    "attached without a record, but in use: left alone"
                );
                false
            }
            Err(error) => {
                tracing::warn!(nqn, %error, "orphaned attachment not disconnected: usage unknown");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nqns(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn an_attachment_is_due_only_after_staying_orphaned_for_the_grace_period() {
        let grace = Duration::from_secs(600);
        let mut tracker = OrphanTracker::default();
        let t0 = Instant::now();
        let recorded: HashSet<String> = ["p:a".to_owned()].into();
        let attached = nqns(&["p:a", "p:b", "p:c"]);
        assert!(tracker.update(&attached, &recorded, t0, grace).is_empty());
        assert_eq!(tracker.count(), 2);
        let later = t0 + grace;
        assert_eq!(
            tracker.update(&attached, &recorded, later, grace),
            nqns(&["p:b", "p:c"])
        );
        // c got a record meanwhile (a stage finished): no longer orphaned, and its clock
        // starts again if it is ever orphaned again.
        let recorded: HashSet<String> = ["p:a".to_owned(), "p:c".to_owned()].into();
        assert_eq!(
            tracker.update(&attached, &recorded, later, grace),
            nqns(&["p:b"])
        );
        let recorded: HashSet<String> = ["p:a".to_owned()].into();
        assert_eq!(
            tracker.update(&attached, &recorded, later, grace),
            nqns(&["p:b"])
        );
        // b was found in use: its clock restarts.
        tracker.in_use("p:b", later);
        assert!(
            tracker
                .update(&attached, &recorded, later, grace)
                .is_empty()
        );
        // Detached: forgotten.
        assert!(
            tracker
                .update(&nqns(&["p:a"]), &recorded, later + grace, grace)
                .is_empty()
        );
        assert_eq!(tracker.count(), 0);
    }
}
