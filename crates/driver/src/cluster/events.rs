//! Kubernetes events (events.k8s.io/v1, through kube's recorder) about a volume, posted on
//! the PersistentVolumeClaim that a person looks at (`kubectl describe pvc`): a publish the
//! controller refused and who holds the volume, a live migration started, completed, rolled
//! back or overdue.
//!
//! Posting runs in the background: the API server's pace never holds a CSI call or a volume's
//! lock, and a failure to post is logged, never an error of the call.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume};
use kube::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Time an event may take to post.
const POST_TIME: Duration = Duration::from_secs(10);

/// Longest note the API server takes (events.k8s.io/v1 `note`: 1 kB).
const MAX_NOTE: usize = 1000;

/// `text` cut at `max` bytes, on a character boundary.
pub fn note_text(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The claim a PersistentVolume of `driver` with handle `volume_id` is bound to.
pub fn claim_of(pv: &PersistentVolume, driver: &str, volume_id: &str) -> Option<ObjectReference> {
    let spec = pv.spec.as_ref()?;
    let csi = spec.csi.as_ref()?;
    if csi.driver != driver || csi.volume_handle != volume_id {
        return None;
    }
    let claim = spec.claim_ref.as_ref()?;
    Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.namespace.clone(),
        name: claim.name.clone(),
        uid: claim.uid.clone(),
        ..ObjectReference::default()
    })
}

/// Posts events about volumes on their claims.
#[derive(Clone)]
pub struct VolumeEvents {
    volumes: Api<PersistentVolume>,
    recorder: Recorder,
    driver: String,
}

impl std::fmt::Debug for VolumeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeEvents")
            .field("driver", &self.driver)
            .finish()
    }
}

impl VolumeEvents {
    /// Events reported as `component` (`rds-csi-controller`) from `instance` (the pod).
    pub fn new(client: kube::Client, driver: &str, component: &str, instance: &str) -> Self {
        let reporter = Reporter {
            controller: component.into(),
            instance: Some(instance.into()),
        };
        Self {
            volumes: Api::all(client.clone()),
            recorder: Recorder::new(client, reporter),
            driver: driver.into(),
        }
    }

    /// Posts, in the background, an event about `volume_id` on its claim. The claim is found
    /// through the PersistentVolume named like the volume (what the external-provisioner
    /// names the PVs it creates); a volume without one (a static PV under another name) gets
    /// no event, only the log.
    pub fn post(&self, volume_id: &str, warning: bool, reason: &str, action: &str, note: String) {
        let event = event(warning, reason, action, note);
        self.spawn_post(volume_id.to_owned(), event, None);
    }

    /// Posts, in the background, an event about `subject` on `object` (the controller's own
    /// Pod, for what concerns no claim: orphans on the device).
    pub fn post_on(
        &self,
        object: ObjectReference,
        subject: &str,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = event(warning, reason, action, note);
        self.spawn_post(subject.to_owned(), event, Some(object));
    }

    fn spawn_post(&self, subject: String, event: Event, object: Option<ObjectReference>) {
        let events = self.clone();
        tokio::spawn(async move {
            let posted = tokio::time::timeout(POST_TIME, async {
                let target = match object {
                    Some(object) => Some(object),
                    None => {
                        let pv = events.volumes.get_opt(&subject).await?;
                        pv.and_then(|pv| claim_of(&pv, &events.driver, &subject))
                    }
                };
                match target {
                    Some(target) => events
                        .recorder
                        .publish(&event, &target)
                        .await
                        .map(|()| true),
                    None => Ok(false),
                }
            })
            .await;
            let reason = &event.reason;
            match posted {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => tracing::debug!(subject, reason, "no claim to post on"),
                Ok(Err(error)) => tracing::warn!(subject, reason, %error, "event not posted"),
                Err(_) => tracing::warn!(subject, reason, "event not posted in time"),
            }
        });
    }
}

fn event(warning: bool, reason: &str, action: &str, note: String) -> Event {
    Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note_text(note, MAX_NOTE)),
        action: action.into(),
        secondary: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(driver: &str, handle: &str, claim: Option<(&str, &str)>) -> PersistentVolume {
        let mut spec = serde_json::json!({"csi": {"driver": driver, "volumeHandle": handle}});
        if let Some((namespace, name)) = claim {
            spec["claimRef"] =
                serde_json::json!({"namespace": namespace, "name": name, "uid": "u-1"});
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": handle}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn the_claim_of_the_drivers_own_bound_volume_only() {
        let bound = pv("rds", "pvc-1", Some(("apps", "data")));
        let claim = claim_of(&bound, "rds", "pvc-1").unwrap();
        assert_eq!(claim.kind.as_deref(), Some("PersistentVolumeClaim"));
        assert_eq!(claim.namespace.as_deref(), Some("apps"));
        assert_eq!(claim.name.as_deref(), Some("data"));
        assert_eq!(claim.uid.as_deref(), Some("u-1"));
        assert_eq!(claim_of(&bound, "other", "pvc-1"), None);
        assert_eq!(claim_of(&bound, "rds", "pvc-2"), None);
        assert_eq!(claim_of(&pv("rds", "pvc-1", None), "rds", "pvc-1"), None);
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(note_text("abc".into(), 10), "abc");
        assert_eq!(note_text("abcdef".into(), 3), "abc");
        // 'é' is two bytes: a cut inside it backs off to before it.
        assert_eq!(note_text("aé".into(), 2), "a");
        assert_eq!(note_text("ééé".into(), 3), "é");
        assert_eq!(note_text("x".repeat(2000), 1000).len(), 1000);
    }
}
