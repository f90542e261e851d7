//! Kubernetes objects and watcher events reduced to the index's [`Update`]s: what is this
//! driver's, which volume an attachment names, and the few fields the rules read. Pure.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher;

use super::index::{AttachmentFacts, Kind, Source, Update};

/// A watched kind: how its objects become updates.
pub trait Watched: kube::Resource<DynamicType = ()> {
    const KIND: Kind;
    /// The object as it is now (`None` inside: not this driver's).
    fn update(&self, name: String, driver: &str) -> Update;
    fn deleted(name: String) -> Update;
}

impl Watched for VolumeAttachment {
    const KIND: Kind = Kind::Attachments;

    fn update(&self, name: String, driver: &str) -> Update {
        Update::Attachment {
            name,
            facts: attachment_facts(self, driver),
        }
    }

    fn deleted(name: String) -> Update {
        Update::AttachmentDeleted { name }
    }
}

impl Watched for PersistentVolume {
    const KIND: Kind = Kind::Volumes;

    fn update(&self, name: String, driver: &str) -> Update {
        Update::Volume {
            name,
            handle: volume_handle(self, driver),
        }
    }

    fn deleted(name: String) -> Update {
        Update::VolumeDeleted { name }
    }
}

/// The update a watcher event makes; `None` for an object without a name (the API server
/// always sends one).
pub fn update_of<K: Watched>(event: watcher::Event<K>, driver: &str) -> Option<Update> {
    let name = |obj: &K| obj.meta().name.clone();
    Some(match event {
        watcher::Event::Init => Update::Relisting(K::KIND),
        watcher::Event::InitDone => Update::Listed(K::KIND),
        watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
            obj.update(name(&obj)?, driver)
        }
        watcher::Event::Delete(obj) => K::deleted(name(&obj)?),
    })
}

/// The facts of a VolumeAttachment of `driver` (`spec.attacher`); `None` for another
/// attacher's, or one naming neither a PV nor an in-line CSI volume of this driver.
pub fn attachment_facts(va: &VolumeAttachment, driver: &str) -> Option<AttachmentFacts> {
    let spec = &va.spec;
    if spec.attacher != driver {
        return None;
    }
    let source = match (
        &spec.source.persistent_volume_name,
        &spec.source.inline_volume_spec,
    ) {
        (Some(pv), _) => Source::Volume(pv.clone()),
        (None, Some(inline)) => {
            let csi = inline.csi.as_ref().filter(|c| c.driver == driver)?;
            Source::Inline(csi.volume_handle.clone())
        }
        (None, None) => return None,
    };
    Some(AttachmentFacts {
        source,
        node_name: spec.node_name.clone(),
        created: va
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(UNIX_EPOCH, system_time),
        attached: va.status.as_ref().is_some_and(|s| s.attached),
        deleting: va.metadata.deletion_timestamp.is_some(),
    })
}

/// The CSI volume handle of a PV of `driver`; `None` for any other PV.
pub fn volume_handle(pv: &PersistentVolume, driver: &str) -> Option<String> {
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    (csi.driver == driver).then(|| csi.volume_handle.clone())
}

fn system_time(t: &Time) -> SystemTime {
    SystemTime::from(t.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const DRIVER: &str = "rds.csi.srvlab.io";

    fn va(spec: serde_json::Value, extra_meta: serde_json::Value) -> VolumeAttachment {
        let mut meta = json!({"name": "va1", "creationTimestamp": "2026-01-02T03:04:05Z"});
        meta.as_object_mut()
            .unwrap()
            .extend(extra_meta.as_object().unwrap().clone());
        serde_json::from_value(json!({"metadata": meta, "spec": spec})).unwrap()
    }

    fn pv_spec(driver: &str) -> serde_json::Value {
        json!({"csi": {"driver": driver, "volumeHandle": "pvc-1"}})
    }

    #[test]
    fn a_volume_attachment_of_this_driver_by_persistent_volume() {
        let obj = va(
            json!({"attacher": DRIVER, "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}}),
            json!({"deletionTimestamp": "2026-01-02T03:05:00Z", "finalizers": ["f"]}),
        );
        let facts = attachment_facts(&obj, DRIVER).unwrap();
        assert_eq!(facts.source, Source::Volume("pv1".into()));
        assert_eq!(facts.node_name, "n1");
        assert_eq!(
            facts.created,
            UNIX_EPOCH + Duration::from_secs(1_767_323_045)
        );
        assert!(!facts.attached, "no status yet");
        assert!(facts.deleting);
    }

    #[test]
    fn in_line_volumes_count_only_for_this_driver() {
        let inline = |driver| {
            va(
                json!({"attacher": DRIVER, "nodeName": "n1",
                       "source": {"inlineVolumeSpec": pv_spec(driver)}}),
                json!({}),
            )
        };
        let facts = attachment_facts(&inline(DRIVER), DRIVER).unwrap();
        assert_eq!(facts.source, Source::Inline("pvc-1".into()));
        assert!(attachment_facts(&inline("other.csi"), DRIVER).is_none());
    }

    #[test]
    fn another_attacher_is_not_ours() {
        let obj = va(
            json!({"attacher": "other.csi", "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}}),
            json!({}),
        );
        assert!(attachment_facts(&obj, DRIVER).is_none());
    }

    #[test]
    fn status_attached_is_read() {
        let mut obj = va(
            json!({"attacher": DRIVER, "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}}),
            json!({}),
        );
        obj.status = serde_json::from_value(json!({"attached": true})).unwrap();
        assert!(attachment_facts(&obj, DRIVER).unwrap().attached);
    }

    #[test]
    fn only_this_drivers_persistent_volumes_have_a_handle() {
        let pv = |spec| {
            serde_json::from_value::<PersistentVolume>(
                json!({"metadata": {"name": "pv1"}, "spec": spec}),
            )
            .unwrap()
        };
        assert_eq!(
            volume_handle(&pv(pv_spec(DRIVER)), DRIVER).as_deref(),
            Some("pvc-1")
        );
        assert_eq!(volume_handle(&pv(pv_spec("other.csi")), DRIVER), None);
        assert_eq!(
            volume_handle(&pv(json!({"hostPath": {"path": "/x"}})), DRIVER),
            None
        );
    }

    #[test]
    fn watcher_events_become_updates() {
        let pv: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "pv1"}, "spec": pv_spec(DRIVER)}))
                .unwrap();
        assert_eq!(
            update_of::<PersistentVolume>(watcher::Event::Init, DRIVER),
            Some(Update::Relisting(Kind::Volumes))
        );
        assert_eq!(
            update_of(watcher::Event::InitApply(pv.clone()), DRIVER),
            Some(Update::Volume {
                name: "pv1".into(),
                handle: Some("pvc-1".into())
            })
        );
        assert_eq!(
            update_of(watcher::Event::Delete(pv), DRIVER),
            Some(Update::VolumeDeleted { name: "pv1".into() })
        );
        assert_eq!(
            update_of::<VolumeAttachment>(watcher::Event::InitDone, DRIVER),
            Some(Update::Listed(Kind::Attachments))
        );
    }
}
