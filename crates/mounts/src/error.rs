use std::io;
use std::path::PathBuf;

use crate::tools::Exit;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the mount layer can report. Variants carry the path or tool involved so that a
/// caller can map them to an RPC status without parsing messages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A syscall or file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The deadline passed first. A blocked syscall cannot be cancelled, so the operation may
    /// still complete later in the background; a child process has been killed.
    #[error("{op} did not finish before its deadline")]
    TimedOut { op: String },
    /// `stat` on the path failed the way a dead mount fails (ENOTCONN, EIO, ESTALE, ...).
    #[error("{} looks like a stale mount: {source}", path.display())]
    StaleMount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Unmount or exclusive open refused: something still uses it.
    #[error("{} is busy", path.display())]
    Busy { path: PathBuf },
    /// Refused to remove a path that is still a mount point.
    #[error("{} is still a mount point", path.display())]
    IsMountPoint { path: PathBuf },
    /// A line of the mount table could not be parsed.
    #[error("mount table line {line}: {reason}")]
    MountInfo { line: usize, reason: String },
    /// A caller-supplied option (mount flag, mkfs options, path) is not acceptable.
    #[error("invalid option {option:?}: {reason}")]
    InvalidOption { option: String, reason: String },
    /// An external tool could not be started.
    #[error("cannot run {tool}: {source}")]
    ToolSpawn {
        tool: String,
        #[source]
        source: io::Error,
    },
    /// An external tool ended with a status that does not mean success.
    #[error("{tool} ended with {status}: {stderr}")]
    ToolFailed {
        tool: String,
        status: Exit,
        stderr: String,
    },
    /// An external tool succeeded but printed something we cannot interpret.
    #[error("unexpected output from {tool}: {reason}")]
    ToolOutput { tool: String, reason: String },
    /// The device carries something (partition table, RAID member, unknown signature) that is not
    /// the filesystem we could use; formatting it would destroy data.
    #[error("{} already holds {found}; refusing to format it", device.display())]
    NotEmpty { device: PathBuf, found: String },
    /// The device cannot be read yet (missing, zero size, I/O error).
    #[error("{} is not ready: {reason}", device.display())]
    DeviceNotReady { device: PathBuf, reason: String },
    /// A path holds something other than what the operation expects.
    #[error("{}: expected {expected}, found {found}", path.display())]
    UnexpectedNode {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

impl From<crate::blocking::DeadlinePassed> for Error {
    fn from(passed: crate::blocking::DeadlinePassed) -> Self {
        Self::TimedOut { op: passed.op }
    }
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(option: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidOption {
            option: option.into(),
            reason: reason.into(),
        }
    }

    /// True when retrying later may succeed without anyone changing the request.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::TimedOut { .. } | Self::Busy { .. } | Self::DeviceNotReady { .. }
        )
    }
}
