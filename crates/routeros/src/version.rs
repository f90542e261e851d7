//! RouterOS version strings and the features that depend on them.

use std::cmp::Ordering;
use std::fmt;

use crate::error::Error;

/// The first release with file-backed disks (`type=file`, `file-path`, `file-size`).
pub const MIN_FILE_DISKS: (u32, u32) = (7, 17);
/// The first release with `nvme-tcp-server-nqn`; before it the subsystem NQN is the slot name.
pub const MIN_SERVER_NQN: (u32, u32) = (7, 21);
/// The first release with btrfs subvolumes and their snapshots (`/disk btrfs subvolume`).
pub const MIN_SUBVOLUMES: (u32, u32) = (7, 18);
/// The first release with `/file copy`.
pub const MIN_FILE_COPY: (u32, u32) = (7, 23);

/// A pre-release tag (`7.17rc2`, `7.20beta3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PreRelease {
    Alpha(u32),
    Beta(u32),
    Rc(u32),
}

/// A parsed RouterOS version such as `7.21.5 (stable)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterOsVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub pre: Option<PreRelease>,
    /// The release channel in parentheses (`stable`, `long-term`, `testing`), if printed.
    pub channel: Option<String>,
}

impl RouterOsVersion {
    /// Parses the `version` field of `/system resource`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || Error::Protocol(format!("unrecognised RouterOS version {text:?}"));
        let text = text.trim();
        let (number, channel) = match text.split_once(char::is_whitespace) {
            Some((n, rest)) => {
                let rest = rest.trim();
                let channel = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(bad)?;
                (n, Some(channel.to_owned()))
            }
            None => (text, None),
        };
        // Split off a trailing pre-release tag: digits and dots first, then letters, then digits.
        let numeric_end = number
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(number.len());
        let (dotted, tag) = number.split_at(numeric_end);
        let pre = if tag.is_empty() {
            None
        } else {
            let letters_end = tag.find(|c: char| c.is_ascii_digit()).ok_or_else(bad)?;
            let (kind, n) = tag.split_at(letters_end);
            let n: u32 = n.parse().map_err(|_| bad())?;
            Some(match kind {
                "alpha" => PreRelease::Alpha(n),
                "beta" => PreRelease::Beta(n),
                "rc" => PreRelease::Rc(n),
                _ => return Err(bad()),
            })
        };
        let mut parts = dotted.split('.');
        let mut next = |required: bool| -> Result<u32, Error> {
            match parts.next() {
                Some(p) => p.parse().map_err(|_| bad()),
                None if required => Err(bad()),
                None => Ok(0),
            }
        };
        let major = next(true)?;
        let minor = next(true)?;
        let patch = next(false)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            major,
            minor,
            patch,
            pre,
            channel,
        })
    }

    /// Features arrive in a minor release and are present in its betas and release candidates,
    /// so feature checks compare major.minor only.
    fn at_least(&self, (major, minor): (u32, u32)) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// `/disk add type=file` with `file-path`/`file-size` exists.
    pub fn supports_file_disks(&self) -> bool {
        self.at_least(MIN_FILE_DISKS)
    }

    /// `nvme-tcp-server-nqn` exists; otherwise the subsystem NQN is the slot name.
    pub fn supports_server_nqn(&self) -> bool {
        self.at_least(MIN_SERVER_NQN)
    }

    /// `/disk btrfs subvolume` exists: subvolumes and copy-on-write snapshots of them.
    pub fn supports_subvolumes(&self) -> bool {
        self.at_least(MIN_SUBVOLUMES)
    }

    /// `/file copy` exists.
    pub fn supports_file_copy(&self) -> bool {
        self.at_least(MIN_FILE_COPY)
    }

    /// `Unsupported` unless `what` exists from `since` on this version.
    pub fn require(&self, what: &str, since: (u32, u32)) -> Result<(), Error> {
        if self.at_least(since) {
            return Ok(());
        }
        Err(Error::Unsupported(format!(
            "RouterOS {self} has no {what}; version {}.{} or newer is required",
            since.0, since.1
        )))
    }

    /// `Unsupported` unless file disks exist on this version.
    pub fn require_file_disks(&self) -> Result<(), Error> {
        if self.supports_file_disks() {
            return Ok(());
        }
        Err(Error::Unsupported(format!(
            "RouterOS {self} has no file-backed disks (type=file); version {}.{} or newer is required",
            MIN_FILE_DISKS.0, MIN_FILE_DISKS.1
        )))
    }

    /// `Unsupported` unless the subsystem NQN can be set (7.21+). Before that the NQN is the
    /// slot name, which nodes refuse to attach: they only manage `<prefix>:<volume id>` NQNs,
    /// so that nothing else exported by the same device can be touched.
    pub fn require_server_nqn(&self) -> Result<(), Error> {
        self.require_file_disks()?;
        if self.supports_server_nqn() {
            return Ok(());
        }
        Err(Error::Unsupported(format!(
            "RouterOS {self} cannot set nvme-tcp-server-nqn, so its volumes would be exported \
             under their slot name, which nodes do not attach; upgrade to {}.{} or newer",
            MIN_SERVER_NQN.0, MIN_SERVER_NQN.1
        )))
    }
}

impl Ord for RouterOsVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            // A release sorts after its own pre-releases.
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for RouterOsVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for RouterOsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.patch != 0 {
            write!(f, ".{}", self.patch)?;
        }
        match self.pre {
            Some(PreRelease::Alpha(n)) => write!(f, "alpha{n}"),
            Some(PreRelease::Beta(n)) => write!(f, "beta{n}"),
            Some(PreRelease::Rc(n)) => write!(f, "rc{n}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> RouterOsVersion {
        RouterOsVersion::parse(s).unwrap()
    }

    #[test]
    fn parses_the_printed_forms() {
        let s = v("7.21.5 (stable)");
        assert_eq!((s.major, s.minor, s.patch, s.pre), (7, 21, 5, None));
        assert_eq!(s.channel.as_deref(), Some("stable"));
        let rc = v("7.17rc2");
        assert_eq!(
            (rc.major, rc.minor, rc.patch, rc.pre),
            (7, 17, 0, Some(PreRelease::Rc(2)))
        );
        assert_eq!(rc.channel, None);
        assert_eq!(v("7.20beta3").pre, Some(PreRelease::Beta(3)));
        assert_eq!(v("7.20beta3 (testing)").channel.as_deref(), Some("testing"));
        assert_eq!(v("6.49.11 (long-term)").major, 6);
        assert_eq!(v("7.1").minor, 1);
        assert_eq!(v("  7.18.2  ").patch, 2);
        assert_eq!(v("7.22alpha1").pre, Some(PreRelease::Alpha(1)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "7",
            "seven",
            "7.x",
            "7.17gamma1",
            "7.17rc",
            "7.1.2.3",
            "7.21.5 stable",
            "v7.21",
            "7.21 ()x",
        ] {
            assert!(RouterOsVersion::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn orders_pre_releases_before_releases() {
        let order = [
            "7.16.2",
            "7.17beta1",
            "7.17rc1",
            "7.17rc2",
            "7.17",
            "7.17.1",
            "7.20beta3",
            "7.21",
            "7.21.5",
            "8.0",
        ];
        for pair in order.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("7.21.5 (stable)").cmp(&v("7.21.5")), Ordering::Equal);
    }

    #[test]
    fn feature_gates() {
        for (text, file, nqn) in [
            ("7.16.2", false, false),
            ("7.17rc2", true, false),
            ("7.17", true, false),
            ("7.20beta3", true, false),
            ("7.20.8 (long-term)", true, false),
            ("7.21beta1", true, true),
            ("7.21.5 (stable)", true, true),
            ("8.0", true, true),
            ("6.49.11", false, false),
        ] {
            let ver = v(text);
            assert_eq!(ver.supports_file_disks(), file, "{text}");
            assert_eq!(ver.supports_server_nqn(), nqn, "{text}");
            assert_eq!(ver.require_file_disks().is_ok(), file, "{text}");
        }
        let Err(Error::Unsupported(msg)) = v("7.16.2").require_file_disks() else {
            panic!("7.16.2 accepted")
        };
        assert!(msg.contains("7.16.2") && msg.contains("7.17"), "{msg}");
    }

    #[test]
    fn the_driver_needs_a_settable_nqn() {
        let v = |t: &str| RouterOsVersion::parse(t).unwrap();
        assert!(v("7.21.0").require_server_nqn().is_ok());
        assert!(v("7.24beta2").require_server_nqn().is_ok());
        let Err(Error::Unsupported(m)) = v("7.20.8").require_server_nqn() else {
            panic!("7.20 accepted")
        };
        assert!(m.contains("7.20.8") && m.contains("7.21"), "{m}");
        let Err(Error::Unsupported(m)) = v("7.16.2").require_server_nqn() else {
            panic!("7.16 accepted")
        };
        assert!(m.contains("7.17"), "file disks come first: {m}");
    }

    #[test]
    fn display_round_trips_the_number() {
        for s in ["7.21.5", "7.17rc2", "7.20beta3", "7.17"] {
            assert_eq!(v(s).to_string(), s);
        }
    }
}
