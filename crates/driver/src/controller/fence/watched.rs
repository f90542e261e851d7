//! The attachment state read from the cluster: Kubernetes' VolumeAttachments (watched by
//! [`crate::cluster::AttachmentIndex`]) say who holds a volume, so a restarted or newly
//! elected controller decides from the same facts, and a VolumeAttachment deleted by hand or
//! by the out-of-service taint frees the volume as soon as the watch shows it.
//!
//! A node holds a volume while its VolumeAttachment is attached (`status.attached`, which the
//! external-attacher sets after our ControllerPublish succeeded), until the object is gone:
//! one being deleted still holds until ControllerUnpublish succeeded and its finalizer went.
//! A VolumeAttachment not attached yet is a request, not a holder (the requester's own, or one
//! refused before). Between our answer and the attacher's status write, this state keeps its
//! own record of what it granted, so that two publishes in a row never both see the volume
//! free; the record goes when the watch shows the attachment or shows it gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
#[cfg(test)]
use std::time::SystemTime;

use k8s_openapi::api::coordination::v1::Lease;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::rules::{Holder, Holders, MigrationWindow};
use super::state::{AttachmentState, StateError};
use crate::cluster::{AttachmentIndex, ClusterAttachment};
use crate::leader::LeaseTiming;

/// A publish this controller granted that the watch may not show as attached yet.
#[derive(Debug, Clone)]
struct Granted {
    holder: Holder,
    /// The watch has shown this node's VolumeAttachment (attached or not) since the grant.
    seen: bool,
}

/// Attachments from the cluster, with this controller's recent grants.
#[derive(Debug)]
pub struct WatchedAttachments {
    index: AttachmentIndex,
    granted: Mutex<HashMap<String, Vec<Granted>>>,
    /// Each volume's migration window as its last publish gave it (the VolumeAttachment does
    /// not carry the volume context); the default until a publish after a restart.
    windows: Mutex<HashMap<String, MigrationWindow>>,
}

impl WatchedAttachments {
    pub fn new(index: AttachmentIndex) -> Self {
        Self {
            index,
            granted: Mutex::default(),
            windows: Mutex::default(),
        }
    }

    fn ready(&self) -> Result<(), StateError> {
        if self.index.is_ready() {
            Ok(())
        } else {
            Err(StateError(
                "the VolumeAttachments are not listed yet (the watch is starting or the API \
                 server is away)"
                    .into(),
            ))
        }
    }

    fn granted(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Granted>>> {
        self.granted.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<String, MigrationWindow>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The holders of a volume: attached VolumeAttachments (oldest first), then grants the watch
/// has not shown attached yet. Updates `granted`: a grant whose attachment the watch shows
/// attached is covered by it; one whose attachment came and went is over.
fn combine(cluster: &[ClusterAttachment], granted: &mut Vec<Granted>) -> Vec<Holder> {
    let mut holders: Vec<Holder> = cluster
        .iter()
        .filter(|a| a.attached)
        .map(|a| Holder {
            node: a.node_name.clone(),
            since: a.created,
            access: None,
        })
        .collect();
    granted.retain_mut(|grant| {
        let shown = cluster.iter().find(|a| a.node_name == grant.holder.node);
        match shown {
            Some(attachment) if attachment.attached => false,
            Some(_) => {
                grant.seen = true;
                true
            }
            None => !grant.seen,
        }
    });
    for grant in granted.iter() {
        if !holders.iter().any(|h| h.node == grant.holder.node) {
            holders.push(grant.holder.clone());
        }
    }
    holders
}

impl AttachmentState for WatchedAttachments {
    fn holders(&self, volume_id: &str) -> Result<Holders, StateError> {
        self.ready()?;
        let cluster = self.index.holders(volume_id);
        let mut granted = self.granted();
        let mine = granted.entry(volume_id.to_owned()).or_default();
        let holders = combine(&cluster, mine);
        if mine.is_empty() {
            granted.remove(volume_id);
        }
        let window = self.windows().get(volume_id).copied().unwrap_or_default();
        Ok(Holders { holders, window })
    }

    fn all(&self) -> Result<Vec<(String, Holders)>, StateError> {
        self.ready()?;
        let mut ids: Vec<String> = self.index.volume_handles();
        ids.extend(self.granted().keys().cloned());
        ids.sort();
        ids.dedup();
        let mut all = Vec::new();
        for id in ids {
            let holders = self.holders(&id)?;
            if !holders.holders.is_empty() {
                all.push((id, holders));
            }
        }
        Ok(all)
    }

    fn record_publish(
        &self,
        volume_id: &str,
        holder: Holder,
        window: MigrationWindow,
    ) -> Result<(), StateError> {
        self.windows().insert(volume_id.to_owned(), window);
        let mut granted = self.granted();
        let mine = granted.entry(volume_id.to_owned()).or_default();
        if !mine.iter().any(|g| g.holder.node == holder.node) {
            mine.push(Granted {
                holder,
                seen: false,
            });
        }
        Ok(())
    }

    fn record_unpublish(&self, volume_id: &str, node: &str) -> Result<(), StateError> {
        // The VolumeAttachment goes once the attacher hears of our success; until then the
        // watch still shows it attached, and a publish elsewhere waits (FAILED_PRECONDITION,
        // retried by the attacher) for the object to go: never two holders of an RWO volume.
        let mut granted = self.granted();
        if let Some(mine) = granted.get_mut(volume_id) {
            mine.retain(|g| g.holder.node != node);
            if mine.is_empty() {
                granted.remove(volume_id);
            }
        }
        Ok(())
    }
}

/// The controller's link to the cluster: the watched attachment state, and the Lease election
/// that picks the one replica running the background loops.
pub struct ClusterLink {
    pub attachments: Arc<WatchedAttachments>,
    /// The watched index behind them (volume handles of the cluster's PVs, holders).
    pub index: AttachmentIndex,
    /// Whether this replica leads (runs the background loops).
    pub leading: watch::Receiver<bool>,
    /// Events on the claims of volumes.
    pub events: crate::cluster::VolumeEvents,
    /// The client, for the controller's other lookups.
    pub client: kube::Client,
    stop: watch::Sender<bool>,
    index_task: JoinHandle<()>,
    election_task: JoinHandle<()>,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink")
            .field("leading", &*self.leading.borrow())
            .finish_non_exhaustive()
    }
}

impl ClusterLink {
    /// Connects to the Kubernetes API (in-cluster, or `KUBECONFIG`), starts the watch of the
    /// driver's VolumeAttachments and the election on Lease `<driver name>-controller` in
    /// `lease_namespace` (the client's default namespace when `None`) as `identity`.
    pub async fn connect(
        driver_name: &str,
        lease_namespace: Option<&str>,
        identity: &str,
    ) -> Result<Self, kube::Error> {
        let client = kube::Client::try_default().await?;
        let namespace =
            lease_namespace.map_or_else(|| client.default_namespace().to_owned(), str::to_owned);
        let (index, index_task) = AttachmentIndex::spawn(client.clone(), driver_name);
        let events = crate::cluster::VolumeEvents::new(
            client.clone(),
            driver_name,
            "rds-csi-controller",
            identity,
        );
        let (stop, stopped) = watch::channel(false);
        let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), &namespace);
        let lease = format!("{}-controller", driver_name.replace('.', "-"));
        let (leading, election_task) = crate::leader::spawn(
            leases,
            lease,
            identity.to_owned(),
            LeaseTiming::default(),
            stopped,
        );
        Ok(Self {
            attachments: Arc::new(WatchedAttachments::new(index.clone())),
            index,
            leading,
            events,
            client,
            stop,
            index_task,
            election_task,
        })
    }

    /// Gives the Lease up (so another replica leads at once) and stops the watch.
    pub async fn close(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.election_task).await;
        self.index_task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn attachment(node: &str, created_s: u64, attached: bool) -> ClusterAttachment {
        ClusterAttachment {
            node_name: node.into(),
            attachment_name: format!("csi-{node}"),
            created: SystemTime::UNIX_EPOCH + Duration::from_secs(created_s),
            attached,
            deleting: false,
        }
    }

    fn grant(node: &str) -> Granted {
        Granted {
            holder: Holder {
                node: node.into(),
                since: SystemTime::UNIX_EPOCH + Duration::from_secs(500),
                access: None,
            },
            seen: false,
        }
    }

    fn nodes(holders: &[Holder]) -> Vec<&str> {
        holders.iter().map(|h| h.node.as_str()).collect()
    }

    #[test]
    fn attached_attachments_hold_oldest_first_and_requests_do_not() {
        let cluster = [
            attachment("b", 20, true),
            attachment("a", 10, true),
            attachment("c", 30, false),
        ];
        // The index gives them oldest first; here in any order, sorted by the index.
        let mut sorted = cluster.to_vec();
        sorted.sort_by_key(|a| a.created);
        let holders = combine(&sorted, &mut Vec::new());
        assert_eq!(nodes(&holders), ["a", "b"]);
    }

    #[test]
    fn a_grant_holds_until_the_watch_shows_it_attached_or_gone() {
        let mut granted = vec![grant("b")];
        // Not in the watch yet: b holds (a second publish must see it).
        let holders = combine(&[attachment("a", 10, true)], &mut granted);
        assert_eq!(nodes(&holders), ["a", "b"]);
        // Seen, not attached yet: still held by the grant.
        let holders = combine(
            &[attachment("a", 10, true), attachment("b", 20, false)],
            &mut granted,
        );
        assert_eq!(nodes(&holders), ["a", "b"]);
        assert!(granted[0].seen);
        // Attached: the cluster says so; the grant is done.
        let holders = combine(
            &[attachment("a", 10, true), attachment("b", 20, true)],
            &mut granted,
        );
        assert_eq!(nodes(&holders), ["a", "b"]);
        assert!(granted.is_empty());
    }

    #[test]
    fn a_grant_whose_attachment_came_and_went_is_over() {
        let mut granted = vec![grant("b")];
        combine(&[attachment("b", 20, false)], &mut granted);
        let holders = combine(&[], &mut granted);
        assert!(holders.is_empty());
        assert!(granted.is_empty());
    }

    #[test]
    fn a_detaching_attachment_still_holds() {
        let mut detaching = attachment("a", 10, true);
        detaching.deleting = true;
        let holders = combine(&[detaching], &mut Vec::new());
        assert_eq!(nodes(&holders), ["a"]);
    }
}
