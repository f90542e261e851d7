//! What the cluster says about this driver's attachments, for the controller's publish
//! decisions: a watched index of VolumeAttachments by volume handle, so a restarted or newly
//! elected controller decides from the same facts, and a VolumeAttachment deleted by hand (or
//! after the out-of-service taint) frees its volume as soon as the watch event arrives.
//!
//! [`index`] is the pure state (updates in, changed volumes out), [`facts`] reduces
//! Kubernetes objects to updates, [`attachments`] runs the watchers, [`backoff`] says when
//! they retry. [`events`] posts events on claims; [`nodes`] tells whether a node exists;
//! [`vmi`] serializes the publishes of one KubeVirt VMI's volumes when asked to.

pub mod attachments;
pub mod backoff;
pub mod events;
pub mod facts;
pub mod index;
pub mod nodes;
pub mod vmi;

pub use attachments::{AttachmentIndex, IndexStopped};
pub use events::VolumeEvents;
pub use index::{AttachmentState, ClusterAttachment, Kind, Source, Update};
pub use nodes::NodeDirectory;
pub use vmi::{VmiTurn, VmiTurns};
