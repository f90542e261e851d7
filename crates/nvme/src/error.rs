use std::fmt;
use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the kernel refused a connect, from the errno of the write to `/dev/nvme-fabrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// ECONNREFUSED: nothing listens at that address and port.
    Refused,
    /// EIO: the target answered but refused the subsystem (unknown NQN, host not allowed).
    Rejected,
    /// EINVAL: the kernel did not accept the options string.
    InvalidOptions,
    /// ETIMEDOUT: the target did not answer in time.
    TimedOut,
    /// EHOSTUNREACH / ENETUNREACH: no route to the target.
    Unreachable,
    /// EALREADY: an identical controller exists (handled by reusing it; not returned by attach).
    AlreadyConnected,
    /// ENOENT / ENODEV on the fabrics device: the nvme-fabrics / nvme-tcp modules are not loaded.
    FabricsUnavailable,
    /// Any other errno.
    Other(i32),
}

impl ConnectFailure {
    /// Classifies an error of opening or writing the fabrics device.
    pub fn from_io(error: &io::Error) -> Self {
        use rustix::io::Errno;
        let Some(raw) = error.raw_os_error() else {
            return Self::Other(0);
        };
        match Errno::from_raw_os_error(raw) {
            Errno::CONNREFUSED => Self::Refused,
            Errno::IO => Self::Rejected,
            Errno::INVAL => Self::InvalidOptions,
            Errno::TIMEDOUT => Self::TimedOut,
            Errno::HOSTUNREACH | Errno::NETUNREACH => Self::Unreachable,
            Errno::ALREADY => Self::AlreadyConnected,
            Errno::NOENT | Errno::NODEV | Errno::NXIO => Self::FabricsUnavailable,
            _ => Self::Other(raw),
        }
    }

    /// Whether retrying the same request later may succeed (the target may come back).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Refused | Self::TimedOut | Self::Unreachable | Self::Rejected
        )
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused => f.write_str("connection refused"),
            Self::Rejected => f.write_str("target rejected the subsystem or this host"),
            Self::InvalidOptions => f.write_str("kernel rejected the connect options"),
            Self::TimedOut => f.write_str("target did not answer in time"),
            Self::Unreachable => f.write_str("target unreachable"),
            Self::AlreadyConnected => f.write_str("already connected"),
            Self::FabricsUnavailable => f.write_str("NVMe-oF support not loaded on this node"),
            Self::Other(errno) => write!(f, "{}", io::Error::from_raw_os_error(*errno)),
        }
    }
}

/// Everything the NVMe host layer can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value that would go into the fabrics options string (or a host identity) is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The NQN is not ours to touch.
    #[error(
        "NQN {nqn:?} is not <{prefix}><volume id> of a volume this driver creates; refusing to \
         touch it"
    )]
    ForeignNqn { nqn: String, prefix: String },
    #[error("connecting {nqn} at {target}: {failure}")]
    Connect {
        nqn: String,
        target: String,
        failure: ConnectFailure,
        #[source]
        source: io::Error,
    },
    /// The fabrics device answered something other than `instance=N,cntlid=M`.
    #[error("unexpected reply from the fabrics device: {0:?}")]
    BadReply(String),
    #[error("{op} {}: {source}", path.display())]
    Sysfs {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {reason}", path.display())]
    SysfsFormat { path: PathBuf, reason: String },
    /// A bounded wait ended without the awaited state.
    #[error("timed out waiting for {waiting_for} (last seen: {last_seen})")]
    TimedOut {
        waiting_for: String,
        last_seen: String,
    },
    /// Sysfs shows a state that repeated recovery did not fix.
    #[error("{nqn}: {reason}")]
    Stuck { nqn: String, reason: String },
    /// A disconnect was refused because the namespace is still used.
    #[error("{nqn} is still in use: {reason}")]
    InUse { nqn: String, reason: String },
    #[error("host identity: {0}")]
    Identity(String),
    #[error(transparent)]
    Mounts(#[from] mounts::Error),
}

impl From<mounts::blocking::DeadlinePassed> for Error {
    fn from(passed: mounts::blocking::DeadlinePassed) -> Self {
        Self::TimedOut {
            waiting_for: passed.op,
            last_seen: "still running".into(),
        }
    }
}

impl Error {
    pub(crate) fn sysfs(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Sysfs {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// True when the same request may succeed later without changes (target back, device
    /// settled).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { failure, .. } => failure.is_transient(),
            Self::TimedOut { .. } | Self::InUse { .. } => true,
            Self::Mounts(inner) => inner.is_transient(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;

    fn failure(errno: Errno) -> ConnectFailure {
        ConnectFailure::from_io(&io::Error::from_raw_os_error(errno.raw_os_error()))
    }

    #[test]
    fn errnos_seen_from_the_fabrics_device_map_to_their_meaning() {
        assert_eq!(failure(Errno::CONNREFUSED), ConnectFailure::Refused);
        assert_eq!(failure(Errno::IO), ConnectFailure::Rejected);
        assert_eq!(failure(Errno::INVAL), ConnectFailure::InvalidOptions);
        assert_eq!(failure(Errno::TIMEDOUT), ConnectFailure::TimedOut);
        assert_eq!(failure(Errno::HOSTUNREACH), ConnectFailure::Unreachable);
        assert_eq!(failure(Errno::NETUNREACH), ConnectFailure::Unreachable);
        assert_eq!(failure(Errno::ALREADY), ConnectFailure::AlreadyConnected);
        assert_eq!(failure(Errno::NOENT), ConnectFailure::FabricsUnavailable);
        assert_eq!(
            failure(Errno::NOMEM),
            ConnectFailure::Other(Errno::NOMEM.raw_os_error())
        );
    }

    #[test]
    fn only_target_side_failures_are_transient() {
        assert!(ConnectFailure::Refused.is_transient());
        assert!(ConnectFailure::TimedOut.is_transient());
        assert!(!ConnectFailure::InvalidOptions.is_transient());
        assert!(!ConnectFailure::FabricsUnavailable.is_transient());
    }
}
