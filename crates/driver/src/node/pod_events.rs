//! What a failed NodePublishVolume tells the pod that asked for it: a Warning event on the pod
//! (`kubectl describe pod`), with what went wrong and where to look. The pod comes from the
//! volume context, where kubelet puts it because the CSIDriver says `podInfoOnMount: true`.
//! Pure: [`super::pods`] posts it.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use tonic::Code;

/// The pod a NodePublishVolume is for, as kubelet names it in the volume context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

impl PodRef {
    /// From `csi.storage.k8s.io/pod.{name,namespace,uid}`; `None` without name and namespace
    /// (a CO without podInfoOnMount, or a test).
    pub fn from_context(context: &HashMap<String, String>) -> Option<Self> {
        let get = |key: &str| {
            context
                .get(&format!("csi.storage.k8s.io/pod.{key}"))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        Some(Self {
            namespace: get("namespace")?,
            name: get("name")?,
            uid: get("uid"),
        })
    }

    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: self.uid.clone(),
            ..ObjectReference::default()
        }
    }
}

/// The event's reason for every failure that gets one.
pub const PUBLISH_FAILED: &str = "VolumePublishFailed";

/// The note of the event about a NodePublishVolume of `volume_id` that failed with `code` and
/// `message`; `None` for the failures that need no person (another operation on the volume
/// was running: kubelet retries; the caller's deadline passed: the retry goes on from there).
pub fn publish_failure_note(volume_id: &str, code: Code, message: &str) -> Option<String> {
    let hint = match code {
        Code::Aborted | Code::DeadlineExceeded | Code::Ok | Code::Cancelled => return None,
        Code::Unavailable => {
            "the node retries when kubelet does; if it lasts, check the RDS and the network \
             (rds-csi doctor on this node)"
        }
        Code::FailedPrecondition | Code::NotFound => {
            "the volume's state on this node does not allow it; the node plugin's log has the \
             details"
        }
        Code::AlreadyExists => {
            "the target is already published differently (read-only or another device): \
             another pod spec for the same path?"
        }
        Code::InvalidArgument => {
            "the request cannot work as given: check the pod's volume and the StorageClass"
        }
        _ => "the node plugin's log has the details",
    };
    Some(format!(
        "volume {volume_id} not published for this pod ({}): {message}; {hint}",
        code_name(code)
    ))
}

/// The spec's name of a status code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unavailable => "UNAVAILABLE",
        Code::Internal => "INTERNAL",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_pod_comes_from_kubelets_keys() {
        let full = context(&[
            ("csi.storage.k8s.io/pod.name", "vm-launcher-x"),
            ("csi.storage.k8s.io/pod.namespace", "vms"),
            ("csi.storage.k8s.io/pod.uid", "u-1"),
            ("nqn", "nqn.2000-02.com.mikrotik:pvc-1"),
        ]);
        let pod = PodRef::from_context(&full).unwrap();
        assert_eq!(
            pod,
            PodRef {
                namespace: "vms".into(),
                name: "vm-launcher-x".into(),
                uid: Some("u-1".into())
            }
        );
        let reference = pod.object_ref();
        assert_eq!(reference.kind.as_deref(), Some("Pod"));
        assert_eq!(reference.uid.as_deref(), Some("u-1"));
        let no_uid = context(&[
            ("csi.storage.k8s.io/pod.name", "p"),
            ("csi.storage.k8s.io/pod.namespace", "n"),
        ]);
        assert_eq!(PodRef::from_context(&no_uid).unwrap().uid, None);
        for partial in [
            context(&[("csi.storage.k8s.io/pod.name", "p")]),
            context(&[("csi.storage.k8s.io/pod.namespace", "n")]),
            context(&[
                ("csi.storage.k8s.io/pod.name", ""),
                ("csi.storage.k8s.io/pod.namespace", "n"),
            ]),
            HashMap::new(),
        ] {
            assert_eq!(PodRef::from_context(&partial), None, "{partial:?}");
        }
    }

    #[test]
    fn failures_a_person_can_act_on_get_a_note_and_retries_do_not() {
        for quiet in [Code::Aborted, Code::DeadlineExceeded] {
            assert_eq!(publish_failure_note("v", quiet, "x"), None, "{quiet:?}");
        }
        let down = publish_failure_note("pvc-1", Code::Unavailable, "target refused").unwrap();
        assert!(
            down.starts_with(
                "volume pvc-1 not published for this pod (UNAVAILABLE): target refused;"
            ),
            "{down}"
        );
        assert!(down.contains("rds-csi doctor"), "{down}");
        let state = publish_failure_note("v", Code::FailedPrecondition, "not staged").unwrap();
        assert!(
            state.contains("(FAILED_PRECONDITION): not staged; the volume's state"),
            "{state}"
        );
        let twice = publish_failure_note("v", Code::AlreadyExists, "ro").unwrap();
        assert!(twice.contains("already published differently"), "{twice}");
        let bad = publish_failure_note("v", Code::InvalidArgument, "fs").unwrap();
        assert!(bad.contains("StorageClass"), "{bad}");
        let tool = publish_failure_note("v", Code::Internal, "mount failed").unwrap();
        assert!(
            tool.contains("(INTERNAL): mount failed; the node plugin's log"),
            "{tool}"
        );
    }
}
