//! What can stop a step.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A CSI call failed or timed out, or a data check did not hold.
    #[error(transparent)]
    Csi(#[from] e2e::E2eError),
    #[error("the RDS simulator answered: {0}")]
    Device(#[from] routeros::Error),
    #[error(transparent)]
    Mounts(#[from] mounts::Error),
    #[error("NVMe: {0}")]
    Nvme(#[from] nvme::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the {name} exited ({status}) before it was ready; see {}", log.display())]
    Exited {
        name: &'static str,
        status: String,
        log: PathBuf,
    },
    #[error("the {name} was not ready within {seconds} s ({last}); see {}", log.display())]
    NotReady {
        name: &'static str,
        seconds: u64,
        last: String,
        log: PathBuf,
    },
    #[error("{0}")]
    Check(String),
}

pub type Result<T, E = DemoError> = std::result::Result<T, E>;

/// Wraps an I/O error with what was being done.
pub fn io_context(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let context = context.into();
    move |source| DemoError::Io { context, source }
}
