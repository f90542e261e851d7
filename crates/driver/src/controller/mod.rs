//! The CSI Controller service: volume lifecycle on the RDS.
//!
//! - [`rules`]: the decisions, free of I/O (plans, idempotency, ownership, condition, paging);
//! - [`judge`]: what the device showed means for a create or a delete (pure);
//! - [`budget`]: thin provisioning (overcommit ratio, promised bytes);
//! - [`export_acl`]: which hosts a volume's export admits (`--export-acl`, pure);
//! - [`fence`]: attach fencing (ControllerPublish/Unpublish, live migration, the attachment
//!   state behind a trait);
//! - [`orphans`]: the reconciler of disks and images no PersistentVolume names;
//! - [`snapshots`]: CreateSnapshot, DeleteSnapshot, ListSnapshots by btrfs subvolume snapshot;
//! - [`service`]: the device work, one function per RPC; `subvolumes` the volumes that live in
//!   a btrfs subvolume of their own;
//! - [`grpc`]: the tonic handlers.

pub mod budget;
mod copy_snapshots;
mod copying;
pub mod export_acl;
pub mod fence;
mod go_snapshots;
pub mod grpc;
pub mod judge;
mod listing;
pub mod orphans;
mod restore;
mod restore_copy;
pub mod rules;
pub mod service;
mod snapshot_grpc;
pub mod snapshots;
mod subvolumes;

pub use grpc::{CONTROLLER_CAPABILITIES, CsiController};
pub use service::ControllerService;

use std::sync::Arc;

/// The gRPC services of a controller plugin: Identity (probing the RDS) and Controller.
pub fn routes(service: Arc<ControllerService>) -> tonic::service::Routes {
    let config = service.config();
    let identity = crate::identity::CsiIdentity::new(
        config.driver_name.clone(),
        config.vendor_version.clone(),
        service.clone(),
    );
    tonic::service::Routes::new(identity.into_server())
        .add_service(CsiController::new(service).into_server())
}

#[cfg(test)]
mod tests;
