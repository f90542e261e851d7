//! The emulated RouterOS version and the features it switches.

use std::fmt;
use std::str::FromStr;

/// A RouterOS 7 version such as `7.21.5`. Only the numeric part matters for
/// behaviour; a channel suffix (`7.22beta3`) is kept for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterOsVersion {
    major: u32,
    minor: u32,
    patch: u32,
    text: String,
}

/// Why a version string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version {0:?} is not of the form 7.MINOR[.PATCH]")]
    Malformed(String),
    #[error("version {0:?} is not RouterOS 7 (rose-storage needs RouterOS 7)")]
    NotSeven(String),
}

impl RouterOsVersion {
    pub const DEFAULT: &'static str = "7.21.5";

    /// `(major, minor, patch)` for ordering.
    pub fn triple(&self) -> (u32, u32, u32) {
        (self.major, self.minor, self.patch)
    }

    /// True when this version is at least `7.minor`.
    pub fn at_least(&self, minor: u32) -> bool {
        self.minor >= minor
    }

    /// `file-path`, `file-size`, `file-offset`, `swap`, `mount-filesystem` exist (7.17+).
    pub fn has_file_disks(&self) -> bool {
        self.at_least(17)
    }

    /// `nvme-tcp-server-nqn` exists (7.21+); before, the subsystem NQN is the slot.
    pub fn has_server_nqn(&self) -> bool {
        self.at_least(21)
    }

    /// `compress` exists on `/disk` (7.18+).
    pub fn has_compress(&self) -> bool {
        self.at_least(18)
    }

    /// What `/system resource` reports, e.g. `7.21.5 (stable)`.
    pub fn resource_text(&self) -> String {
        let channel = if self.text.contains("beta") {
            "testing"
        } else if self.text.contains("rc") {
            "development"
        } else {
            "stable"
        };
        format!("{} ({channel})", self.text)
    }
}

impl Default for RouterOsVersion {
    fn default() -> Self {
        Self::DEFAULT.parse().expect("the default version parses")
    }
}

impl fmt::Display for RouterOsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for RouterOsVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let malformed = || VersionError::Malformed(s.to_string());
        // The numeric prefix; anything after it (beta3, rc1) is a channel suffix.
        let numeric_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let numeric = text[..numeric_end].trim_end_matches('.');
        let mut parts = numeric.split('.');
        let mut next = |required: bool| -> Result<u32, VersionError> {
            match parts.next() {
                Some(p) if !p.is_empty() => p.parse().map_err(|_| malformed()),
                None if !required => Ok(0),
                _ => Err(malformed()),
            }
        };
        let major = next(true)?;
        let minor = next(true)?;
        let patch = next(false)?;
        if parts.next().is_some() {
            return Err(malformed());
        }
        if major != 7 {
            return Err(VersionError::NotSeven(s.to_string()));
        }
        Ok(Self {
            major,
            minor,
            patch,
            text: text.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_switches_features() {
        let v: RouterOsVersion = "7.21.5".parse().unwrap();
        assert_eq!(v.triple(), (7, 21, 5));
        assert!(v.has_server_nqn() && v.has_file_disks());
        assert_eq!(v.resource_text(), "7.21.5 (stable)");

        let v: RouterOsVersion = "7.20".parse().unwrap();
        assert!(!v.has_server_nqn() && v.has_file_disks());

        let v: RouterOsVersion = "7.16.2".parse().unwrap();
        assert!(!v.has_file_disks());

        let v: RouterOsVersion = "7.22beta3".parse().unwrap();
        assert_eq!(v.triple(), (7, 22, 0));
        assert_eq!(v.resource_text(), "7.22beta3 (testing)");
    }

    #[test]
    fn rejects_garbage_and_other_majors() {
        assert!(matches!(
            "x".parse::<RouterOsVersion>(),
            Err(VersionError::Malformed(_))
        ));
        assert!(matches!(
            "7".parse::<RouterOsVersion>(),
            Err(VersionError::Malformed(_))
        ));
        assert!(matches!(
            "7.1.2.3".parse::<RouterOsVersion>(),
            Err(VersionError::Malformed(_))
        ));
        assert!(matches!(
            "6.49.11".parse::<RouterOsVersion>(),
            Err(VersionError::NotSeven(_))
        ));
    }
}
