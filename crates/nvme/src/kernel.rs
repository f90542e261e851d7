//! The few writes that change NVMe state: connect through the fabrics device, delete and rescan
//! a controller through sysfs. Behind a trait so the orchestration can be tested against a fake
//! kernel; the real implementation is a handful of file writes.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::options::FabricsOptions;
use crate::prefix::ManagedController;

/// Blocking calls into the kernel (callers run them on the blocking pool with a deadline).
pub trait Kernel: Send + Sync + 'static {
    /// Creates a controller; returns the fabrics device's reply (`instance=N,cntlid=M`).
    fn connect(&self, options: &FabricsOptions) -> io::Result<String>;
    /// Deletes a controller. Only a [`ManagedController`] can be passed: see [`crate::prefix`].
    fn delete_controller(&self, controller: &ManagedController) -> io::Result<()>;
    /// Asks a controller to rescan its namespaces (sizes included). Only a
    /// [`ManagedController`] can be passed, as for deletion.
    fn rescan_controller(&self, controller: &ManagedController) -> io::Result<()>;
}

/// The Linux kernel's NVMe-oF host interface.
#[derive(Debug, Clone)]
pub struct LinuxKernel {
    fabrics_device: PathBuf,
}

impl Default for LinuxKernel {
    fn default() -> Self {
        Self::new("/dev/nvme-fabrics")
    }
}

impl LinuxKernel {
    pub fn new(fabrics_device: impl Into<PathBuf>) -> Self {
        Self {
            fabrics_device: fabrics_device.into(),
        }
    }
}

/// Writes `1` to an existing attribute (never creates a file).
fn poke(attribute: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(attribute)?
        .write_all(b"1")
}

impl Kernel for LinuxKernel {
    fn connect(&self, options: &FabricsOptions) -> io::Result<String> {
        let mut device = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.fabrics_device)?;
        // The kernel parses exactly one write per open; a short write would be a different,
        // truncated request, so it is an error rather than something to continue.
        let written = device.write(options.as_str().as_bytes())?;
        if written != options.as_str().len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write to the fabrics device: {written} bytes"),
            ));
        }
        let mut reply = [0u8; 256];
        let length = device.read(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply[..length]).into_owned())
    }

    fn delete_controller(&self, controller: &ManagedController) -> io::Result<()> {
        poke(&controller.dir().join("delete_controller"))
    }

    fn rescan_controller(&self, controller: &ManagedController) -> io::Result<()> {
        poke(&controller.dir().join("rescan_controller"))
    }
}
