//! The attachment index as a plain value: watch events, reduced to [`Update`]s, change it
//! incrementally, and each change reports the volumes whose holders it changed. No kube, no
//! I/O: [`super::attachments`] feeds it from the watchers.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

/// One VolumeAttachment of this driver, as the publish rules see it.
///
/// `node_name` is the VolumeAttachment's `spec.nodeName`, the Kubernetes node name. Our node
/// plugin reports the node name as its CSI node id (`NodeConfig::node_id`), and the
/// external-attacher passes that id to ControllerPublish, so the rules compare a request's
/// node id with `node_name` directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAttachment {
    pub node_name: String,
    pub attachment_name: String,
    /// `metadata.creationTimestamp` (the epoch if the server sent none): the order of attach
    /// requests, so the oldest holder is the migration source.
    pub created: SystemTime,
    /// `status.attached`: ControllerPublish succeeded for it.
    pub attached: bool,
    /// `metadata.deletionTimestamp` is set: a detach is under way, a finalizer holds it.
    pub deleting: bool,
}

/// Where a VolumeAttachment names its volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `spec.source.persistentVolumeName`, resolved through the PV's `spec.csi.volumeHandle`.
    Volume(String),
    /// `spec.source.inlineVolumeSpec.csi.volumeHandle` (an in-line volume migrated to CSI).
    Inline(String),
}

/// What the index keeps of one VolumeAttachment of this driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentFacts {
    pub source: Source,
    pub node_name: String,
    pub created: SystemTime,
    pub attached: bool,
    pub deleting: bool,
}

/// The two watched kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Attachments,
    Volumes,
}

/// One watch event reduced to what the index needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A (re)list of the kind begins: what is not seen again before [`Update::Listed`] is
    /// gone (deleted while the watch was down).
    Relisting(Kind),
    /// A VolumeAttachment as it is now; `None` when it is not this driver's.
    Attachment {
        name: String,
        facts: Option<AttachmentFacts>,
    },
    AttachmentDeleted {
        name: String,
    },
    /// A PersistentVolume's volume handle; `None` when it is not this driver's.
    Volume {
        name: String,
        handle: Option<String>,
    },
    VolumeDeleted {
        name: String,
    },
    /// The (re)list of the kind is complete.
    Listed(Kind),
}

#[derive(Debug)]
struct Entry {
    facts: AttachmentFacts,
    /// The volume handle it holds; `None` while its PV is unknown.
    handle: Option<String>,
}

/// VolumeAttachments of this driver by volume handle, oldest first, and what it takes to keep
/// that up to date: the PVs' handles and which attachments name each PV (also those waiting
/// for a PV not seen yet).
#[derive(Debug, Default)]
pub struct AttachmentState {
    attachments: HashMap<String, Entry>,
    /// PV name → volume handle, this driver's PVs only.
    volumes: HashMap<String, String>,
    /// PV name → attachments naming it, resolved or not.
    naming: HashMap<String, HashSet<String>>,
    holders: HashMap<String, Vec<ClusterAttachment>>,
    /// Names seen since a relist of the kind began.
    relisting: HashMap<Kind, HashSet<String>>,
    listed: HashSet<Kind>,
}

impl AttachmentState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one update; returns the volume handles whose holders changed (each once).
    pub fn apply(&mut self, update: Update) -> Vec<String> {
        let mut changed = Changed::default();
        match update {
            Update::Relisting(kind) => {
                // A relist may restart (kube's watcher sends `Init` again): start counting anew.
                self.relisting.insert(kind, HashSet::new());
            }
            Update::Attachment { name, facts } => {
                self.seen(Kind::Attachments, &name);
                match facts {
                    Some(facts) => self.put_attachment(name, facts, &mut changed),
                    None => self.remove_attachment(&name, &mut changed),
                }
            }
            Update::AttachmentDeleted { name } => self.remove_attachment(&name, &mut changed),
            Update::Volume { name, handle } => {
                self.seen(Kind::Volumes, &name);
                match handle {
                    Some(handle) => self.put_volume(name, handle, &mut changed),
                    None => self.remove_volume(&name, &mut changed),
                }
            }
            Update::VolumeDeleted { name } => self.remove_volume(&name, &mut changed),
            Update::Listed(kind) => {
                let seen = self.relisting.remove(&kind).unwrap_or_default();
                self.forget_unseen(kind, &seen, &mut changed);
                self.listed.insert(kind);
            }
        }
        changed.0
    }

    /// The attachments holding a volume, oldest first.
    /// Every volume handle with at least one attachment, sorted.
    pub fn volume_handles(&self) -> Vec<String> {
        let mut handles: Vec<String> = self
            .holders
            .iter()
            .filter(|(_, held)| !held.is_empty())
            .map(|(handle, _)| handle.clone())
            .collect();
        handles.sort();
        handles
    }

    pub fn holders(&self, volume_handle: &str) -> &[ClusterAttachment] {
        self.holders
            .get(volume_handle)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The volume handles of this driver's PersistentVolumes.
    pub fn persistent_volume_handles(&self) -> std::collections::HashSet<String> {
        self.volumes.values().cloned().collect()
    }

    /// Both kinds have been listed once: the index reflects the cluster.
    pub fn is_ready(&self) -> bool {
        self.listed.contains(&Kind::Attachments) && self.listed.contains(&Kind::Volumes)
    }

    /// Attachments of this driver whose PV is unknown (not yet seen, deleted, or another
    /// driver's), sorted.
    pub fn unresolved(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .attachments
            .iter()
            .filter(|(_, e)| e.handle.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Attachments of this driver known, resolved or not.
    pub fn attachment_count(&self) -> usize {
        self.attachments.len()
    }

    fn seen(&mut self, kind: Kind, name: &str) {
        if let Some(seen) = self.relisting.get_mut(&kind) {
            seen.insert(name.to_owned());
        }
    }

    fn put_attachment(&mut self, name: String, facts: AttachmentFacts, changed: &mut Changed) {
        if self
            .attachments
            .get(&name)
            .is_some_and(|old| old.facts == facts)
        {
            return;
        }
        self.remove_attachment(&name, changed);
        let handle = match &facts.source {
            Source::Volume(pv) => {
                self.naming
                    .entry(pv.clone())
                    .or_default()
                    .insert(name.clone());
                self.volumes.get(pv).cloned()
            }
            Source::Inline(handle) => Some(handle.clone()),
        };
        if let Some(handle) = &handle {
            self.add_holder(handle, holder(&name, &facts), changed);
        }
        self.attachments.insert(name, Entry { facts, handle });
    }

    fn remove_attachment(&mut self, name: &str, changed: &mut Changed) {
        let Some(old) = self.attachments.remove(name) else {
            return;
        };
        if let Source::Volume(pv) = &old.facts.source
            && let Some(names) = self.naming.get_mut(pv)
        {
            names.remove(name);
            if names.is_empty() {
                self.naming.remove(pv);
            }
        }
        if let Some(handle) = &old.handle {
            self.remove_holder(handle, name, changed);
        }
    }

    fn put_volume(&mut self, pv: String, handle: String, changed: &mut Changed) {
        if self.volumes.get(&pv) == Some(&handle) {
            return;
        }
        // A PV's handle is immutable in Kubernetes; a PV recreated under the same name with
        // another handle moves its attachments all the same.
        self.resolve(&pv, Some(&handle), changed);
        self.volumes.insert(pv, handle);
    }

    fn remove_volume(&mut self, pv: &str, changed: &mut Changed) {
        if self.volumes.remove(pv).is_some() {
            // The external-attacher's finalizer keeps a PV while attachments name it, so this
            // is rare (finalizers removed by hand); its attachments wait for it again.
            self.resolve(pv, None, changed);
        }
    }

    /// Points every attachment naming `pv` at `handle`.
    fn resolve(&mut self, pv: &str, handle: Option<&str>, changed: &mut Changed) {
        let Some(names) = self.naming.get(pv) else {
            return;
        };
        for name in names {
            let Some(entry) = self.attachments.get_mut(name) else {
                continue;
            };
            if let Some(old) = entry.handle.take() {
                remove_holder(&mut self.holders, &old, name, changed);
            }
            if let Some(handle) = handle {
                let h = holder(name, &entry.facts);
                add_holder(&mut self.holders, handle, h, changed);
                entry.handle = Some(handle.to_owned());
            }
        }
    }

    fn forget_unseen(&mut self, kind: Kind, seen: &HashSet<String>, changed: &mut Changed) {
        let unseen = |name: &&String| !seen.contains(*name);
        let gone: Vec<String> = match kind {
            Kind::Attachments => self.attachments.keys().filter(unseen).cloned().collect(),
            Kind::Volumes => self.volumes.keys().filter(unseen).cloned().collect(),
        };
        for name in gone {
            match kind {
                Kind::Attachments => self.remove_attachment(&name, changed),
                Kind::Volumes => self.remove_volume(&name, changed),
            }
        }
    }

    fn add_holder(&mut self, handle: &str, h: ClusterAttachment, changed: &mut Changed) {
        add_holder(&mut self.holders, handle, h, changed);
    }

    fn remove_holder(&mut self, handle: &str, name: &str, changed: &mut Changed) {
        remove_holder(&mut self.holders, handle, name, changed);
    }
}

/// Volume handles changed by one update, each once.
#[derive(Debug, Default)]
struct Changed(Vec<String>);

impl Changed {
    fn add(&mut self, handle: &str) {
        if !self.0.iter().any(|h| h == handle) {
            self.0.push(handle.to_owned());
        }
    }
}

fn holder(name: &str, facts: &AttachmentFacts) -> ClusterAttachment {
    ClusterAttachment {
        node_name: facts.node_name.clone(),
        attachment_name: name.to_owned(),
        created: facts.created,
        attached: facts.attached,
        deleting: facts.deleting,
    }
}

/// Oldest first; the name breaks ties (timestamps have whole seconds), so the order is the
/// same for every controller that reads the same objects.
fn order(a: &ClusterAttachment) -> (SystemTime, &str) {
    (a.created, a.attachment_name.as_str())
}

fn add_holder(
    holders: &mut HashMap<String, Vec<ClusterAttachment>>,
    handle: &str,
    h: ClusterAttachment,
    changed: &mut Changed,
) {
    let list = holders.entry(handle.to_owned()).or_default();
    let at = list.partition_point(|a| order(a) < order(&h));
    list.insert(at, h);
    changed.add(handle);
}

fn remove_holder(
    holders: &mut HashMap<String, Vec<ClusterAttachment>>,
    handle: &str,
    name: &str,
    changed: &mut Changed,
) {
    let Some(list) = holders.get_mut(handle) else {
        return;
    };
    let before = list.len();
    list.retain(|a| a.attachment_name != name);
    if list.len() != before {
        changed.add(handle);
    }
    if list.is_empty() {
        holders.remove(handle);
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
