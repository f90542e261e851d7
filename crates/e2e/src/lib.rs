//! The container orchestrator's side of the CSI flow, as Kubernetes drives it: CreateVolume,
//! NodeStageVolume, NodePublishVolume, I/O, NodeUnpublishVolume, NodeUnstageVolume,
//! ControllerExpandVolume with NodeExpandVolume, DeleteVolume; for filesystem and block
//! volumes, with the time of each step. The `csi-e2e` binary runs it against a controller and
//! a node on Unix sockets; the pieces are public so other tools (a demo) can reuse them.

pub mod breakdown;
pub mod client;
pub mod error;
pub mod flow;
pub mod pattern;
pub mod timing;

pub use breakdown::{LogTail, StageBreakdown};
pub use client::{Csi, PathLayout, VolumeMode};
pub use error::{E2eError, Result};
pub use flow::{Attached, FlowConfig, FlowReport, attach, attach_copy, detach, run_full};
pub use timing::StepLog;
