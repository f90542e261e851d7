//! The kinds the fake serves: where each lives in the URL space and what it allows.

/// One served resource type (a kind at one group version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// API group; empty for the core group (`/api/v1`).
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Lower-case plural, the URL segment.
    pub plural: String,
    pub namespaced: bool,
    /// Whether `status` is a subresource: the main resource's writes keep the stored status,
    /// `/status` writes change only the status, and create drops it.
    pub status_subresource: bool,
    /// Field selector keys beyond `metadata.name` and `metadata.namespace`; any other key is a
    /// 400, as on a real server (which supports only a fixed set per kind).
    pub field_labels: Vec<String>,
}

impl Resource {
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Resource {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
            status_subresource: false,
            field_labels: Vec::new(),
        }
    }

    /// With a `/status` subresource.
    pub fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    /// With more field selector keys.
    pub fn with_field_labels(mut self, labels: &[&str]) -> Self {
        self.field_labels
            .extend(labels.iter().map(|l| (*l).to_owned()));
        self
    }

    /// `apiVersion` as written in objects: `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` or `plural.group`, as error messages name a resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn supports_field(&self, field: &str) -> bool {
        field == "metadata.name"
            || (field == "metadata.namespace" && self.namespaced)
            || self.field_labels.iter().any(|l| l == field)
    }
}

/// The kinds served out of the box: those the driver and its tests use, and their neighbours.
pub fn defaults() -> Vec<Resource> {
    let core = |kind, plural, namespaced| Resource::new("", "v1", kind, plural, namespaced);
    vec![
        core("Namespace", "namespaces", false).with_status(),
        core("Node", "nodes", false)
            .with_status()
            .with_field_labels(&["spec.unschedulable"]),
        core("Pod", "pods", true).with_status().with_field_labels(&[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]),
        core("PersistentVolume", "persistentvolumes", false).with_status(),
        core("PersistentVolumeClaim", "persistentvolumeclaims", true).with_status(),
        core("ConfigMap", "configmaps", true),
        core("Secret", "secrets", true).with_field_labels(&["type"]),
        core("Event", "events", true).with_field_labels(&[
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type",
        ]),
        Resource::new(
            "storage.k8s.io",
            "v1",
            "VolumeAttachment",
            "volumeattachments",
            false,
        )
        .with_status(),
        Resource::new(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            false,
        ),
        Resource::new("storage.k8s.io", "v1", "CSINode", "csinodes", false),
        Resource::new("storage.k8s.io", "v1", "CSIDriver", "csidrivers", false),
        Resource::new("events.k8s.io", "v1", "Event", "events", true).with_field_labels(&[
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
            "regarding.uid",
            "reason",
            "reportingController",
            "type",
        ]),
        Resource::new("coordination.k8s.io", "v1", "Lease", "leases", true),
    ]
}
