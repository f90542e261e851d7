//! The NVMe-oF (TCP) host side of a node: who this host is ([`identity`]), what the kernel
//! shows ([`sysfs`]), what to do about it ([`plan`]), and the guarded writes that change it
//! ([`kernel`], [`prefix`], which only lets the driver's own volumes through, by the id shape of
//! [`volume_id`]), put together by [`NvmeHost`].
//!
//! Nothing here shells out to nvme-cli: connects are written to `/dev/nvme-fabrics`, state is
//! read from sysfs under an injectable root, and every wait has a deadline.

mod error;
#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixtures;
mod host;
pub mod identity;
pub mod kernel;
pub mod namespace_ids;
pub mod options;
pub mod plan;
mod poll;
pub mod prefix;
pub mod sysfs;
pub mod volume_id;

pub use error::{ConnectFailure, Error, Result};
pub use host::{AttachKind, Attachment, NvmeHost};
pub use identity::{HostIdentity, IdentityOverride, IdentityPaths, resolve_host_identity};
pub use kernel::{Kernel, LinuxKernel};
pub use namespace_ids::{NamespaceIds, Sameness};
pub use options::{ConnectParams, ConnectRequest, CtrlLossTimeout, Target};
pub use prefix::ManagedPrefix;
pub use sysfs::Sysfs;
