//! The pods whose containers hold the dead filesystem of a re-staged volume: found from the
//! published paths (kubelet puts the pod's UID in them), told with a Warning event, and, only
//! when the operator asked for it (`--pod-recovery delete`), deleted so that their controllers
//! create them again on the recovered volume.
//!
//! Kubelet publishes a filesystem volume at `<kubelet>/pods/<pod uid>/volumes/kubernetes.io~csi/
//! <pv>/mount` and a block volume at `<publish dir>/publish/<pv>/<pod uid>`.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::pod_events::{PUBLISH_FAILED, PodRef, publish_failure_note};
use crate::cluster::events::note_text;
use kube::{Resource as _, ResourceExt as _};

/// What the node does about pods left on a replaced namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PodRecovery {
    /// Nothing beyond the volume's condition and the log.
    Off,
    /// A Warning event on each such pod.
    Events,
    /// The event, then the pod is deleted when a controller owns it (and will create it again).
    Delete,
}

/// Whether a pod may be deleted so that its controller recreates it: only a pod that a
/// controller owns (a bare pod would be gone for good) and that is not already going away.
pub fn deletion_verdict(pod: &Pod) -> Result<(), String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Err("it is already being deleted".into());
    }
    match pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
    {
        Some(_) => Ok(()),
        None => Err(
            "no controller owns it, so nothing would create it again; restart it by \
                     hand"
                .into(),
        ),
    }
}

/// Time each call to the API server may take: recovery never waits long on the cluster.
const API_TIME: Duration = Duration::from_secs(10);

/// The node's access to its pods in the cluster.
#[derive(Clone)]
pub struct ClusterPods {
    client: kube::Client,
    recorder: Recorder,
    node_name: String,
    recovery: PodRecovery,
}

impl std::fmt::Debug for ClusterPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPods")
            .field("node_name", &self.node_name)
            .field("recovery", &self.recovery)
            .finish()
    }
}

/// Posts `event` about the pod `reference`, within [`API_TIME`]; a failure is logged, never
/// an error of the caller.
async fn post_event(recorder: &Recorder, event: &Event, reference: &ObjectReference) {
    let (namespace, name) = (
        reference.namespace.as_deref().unwrap_or_default(),
        reference.name.as_deref().unwrap_or_default(),
    );
    match tokio::time::timeout(API_TIME, recorder.publish(event, reference)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(namespace, pod = name, %error, "event not posted"),
        Err(_) => tracing::warn!(namespace, pod = name, "event not posted in time"),
    }
}

impl ClusterPods {
    /// `node_name` is the Kubernetes node this plugin serves (its `--node-id`).
    pub fn new(client: kube::Client, node_name: &str, recovery: PodRecovery) -> Self {
        let reporter = Reporter {
            controller: "rds-csi-node".into(),
            instance: Some(node_name.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            node_name: node_name.to_owned(),
            recovery,
        }
    }

    /// Tells the pods published at `paths` that `volume_id` was re-staged on a new namespace
    /// under them, and deletes those a controller owns when so configured; returns how many
    /// were deleted. Failures are logged: the recovery itself is done and stands.
    pub async fn after_restage(&self, volume_id: &str, paths: &[PathBuf], why: &str) -> usize {
        if self.recovery == PodRecovery::Off {
            return 0;
        }
        let uids: Vec<String> = paths.iter().filter_map(|p| pod_uid_of_target(p)).collect();
        if uids.is_empty() {
            return 0;
        }
        let pods = match self.pods_here().await {
            Ok(pods) => pods,
            Err(error) => {
                tracing::warn!(volume_id, %error, "cannot list this node's pods");
                return 0;
            }
        };
        let mut deleted = 0;
        for pod in pods.iter().filter(|pod| {
            pod.metadata
                .uid
                .as_ref()
                .is_some_and(|uid| uids.contains(uid))
        }) {
            if self.recover_pod(volume_id, pod, why).await {
                deleted += 1;
            }
        }
        deleted
    }

    /// Posts, in the background, a Warning event on `pod` saying why NodePublishVolume of
    /// `volume_id` failed (nothing for the failures that need no person, see
    /// [`publish_failure_note`]). Posted whatever `--pod-recovery` says: kubelet's own event
    /// names the call, this one says what to do.
    pub fn publish_failed(&self, pod: PodRef, volume_id: &str, code: tonic::Code, message: &str) {
        let Some(note) = publish_failure_note(volume_id, code, message) else {
            return;
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            let event = Event {
                type_: EventType::Warning,
                reason: PUBLISH_FAILED.into(),
                note: Some(note_text(note, 1000)),
                action: "NodePublishVolume".into(),
                secondary: None,
            };
            post_event(&recorder, &event, &pod.object_ref()).await;
        });
    }

    async fn pods_here(&self) -> Result<Vec<Pod>, String> {
        let on_node = ListParams::default().fields(&format!("spec.nodeName={}", self.node_name));
        let listed = tokio::time::timeout(
            API_TIME,
            Api::<Pod>::all(self.client.clone()).list(&on_node),
        )
        .await
        .map_err(|_| "the API server did not answer in time".to_owned())?
        .map_err(|e| e.to_string())?;
        Ok(listed.items)
    }

    /// Posts the event, deletes the pod when it may; true when it was deleted.
    async fn recover_pod(&self, volume_id: &str, pod: &Pod, why: &str) -> bool {
        let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let verdict = match self.recovery {
            PodRecovery::Delete => deletion_verdict(pod),
            _ => Err("--pod-recovery is not delete".into()),
        };
        let note = format!(
            "volume {volume_id}: {why}; the node re-staged it on the new namespace, but this \
             pod's running containers still hold the dead filesystem or device{}",
            match &verdict {
                Ok(()) => "; deleting the pod so that its controller creates it again".to_owned(),
                Err(_) => "; restart the pod to use the recovered volume".to_owned(),
            }
        );
        let event = Event {
            type_: EventType::Warning,
            reason: "VolumeNamespaceReplaced".into(),
            note: Some(note_text(note, 1000)),
            action: "Restage".into(),
            secondary: None,
        };
        post_event(&self.recorder, &event, &pod.object_ref(&())).await;
        match verdict {
            Ok(()) => self.delete(&namespace, &name, pod).await,
            Err(reason) => {
                if self.recovery == PodRecovery::Delete {
                    tracing::warn!(%namespace, pod = %name, %reason, "pod not deleted");
                }
                false
            }
        }
    }

    /// Deletes the pod, but only the very pod looked at (UID precondition): a pod of the same
    /// name created meanwhile is another pod, on the recovered volume already.
    async fn delete(&self, namespace: &str, name: &str, pod: &Pod) -> bool {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        match tokio::time::timeout(API_TIME, api.delete(name, &params)).await {
            Ok(Ok(_)) => {
                tracing::warn!(%namespace, pod = %name,
                    "deleted a pod holding a replaced namespace, for its controller to recreate");
                true
            }
            Ok(Err(error)) => {
                tracing::warn!(%namespace, pod = %name, %error, "pod not deleted");
                false
            }
            Err(_) => {
                tracing::warn!(%namespace, pod = %name, "pod deletion not answered in time");
                false
            }
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary (events refuse longer notes).
/// The pod UID in a published path, when the path has one of kubelet's two shapes.
pub fn pod_uid_of_target(path: &Path) -> Option<String> {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    let uid = match parts.as_slice() {
        [.., "pods", uid, "volumes", "kubernetes.io~csi", _, "mount"] => uid,
        [.., "volumeDevices", "publish", _, uid] => uid,
        _ => return None,
    };
    is_uid(uid).then(|| (*uid).to_owned())
}

/// A Kubernetes UID: a UUID in its 8-4-4-4-12 hex form.
fn is_uid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6a1f0c2e-9b3d-4e5f-8a7b-1c2d3e4f5a6b";

    #[test]
    fn kubelets_filesystem_and_block_paths_name_the_pod() {
        let fs = format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~csi/pvc-1/mount");
        assert_eq!(pod_uid_of_target(Path::new(&fs)).as_deref(), Some(UID));
        let block =
            format!("/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-1/{UID}");
        assert_eq!(pod_uid_of_target(Path::new(&block)).as_deref(), Some(UID));
    }

    fn pod(owners: Vec<(&str, Option<bool>)>, deleting: bool) -> Pod {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let mut pod = Pod::default();
        pod.metadata.owner_references = Some(
            owners
                .into_iter()
                .map(|(kind, controller)| OwnerReference {
                    kind: kind.into(),
                    controller,
                    ..OwnerReference::default()
                })
                .collect(),
        );
        if deleting {
            pod.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        pod
    }

    #[test]
    fn only_pods_a_controller_owns_and_not_going_away_are_deleted() {
        assert_eq!(
            deletion_verdict(&pod(vec![("ReplicaSet", Some(true))], false)),
            Ok(())
        );
        assert_eq!(
            deletion_verdict(&pod(
                vec![("ConfigMap", None), ("VirtualMachineInstance", Some(true))],
                false
            )),
            Ok(())
        );
        for refused in [
            pod(vec![], false),
            pod(vec![("ReplicaSet", Some(false)), ("Thing", None)], false),
            pod(vec![("ReplicaSet", Some(true))], true),
        ] {
            assert!(deletion_verdict(&refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn other_paths_and_malformed_uids_name_no_pod() {
        for path in [
            "/var/lib/kubelet/plugins/kubernetes.io/csi/rds/abc/globalmount".to_owned(),
            format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~empty-dir/x/mount"),
            "/var/lib/kubelet/pods/not-a-uid/volumes/kubernetes.io~csi/pvc-1/mount".to_owned(),
            "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-1/../x"
                .to_owned(),
            format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~csi/pvc-1/mount/sub"),
            String::new(),
        ] {
            assert_eq!(pod_uid_of_target(Path::new(&path)), None, "{path}");
        }
    }
}
