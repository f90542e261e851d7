//! The node's mount layer: everything between "a block device exists" and "a pod sees a
//! filesystem or a device node".
//!
//! Every operation that can hang (syscalls on a dead device, external tools, reading a huge
//! mount table) takes a deadline and returns [`Error::TimedOut`] when it passes. Side effects live
//! in thin functions; the decisions they rely on (how to read blkid's exit status, what a mount
//! option means, whether a path is a mount point) are plain functions with unit tests.

pub mod blocking;
pub mod devnode;
mod devnum;
mod error;
#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixtures;
pub mod format;
pub mod mount;
pub mod mountinfo;
pub mod mountpoint;
pub mod phase;
pub mod shellwords;
pub mod stats;
pub mod tools;

pub use devnum::{DeviceNumber, ParseDeviceNumberError};
pub use error::{Error, Result};
