use std::fmt;
use std::str::FromStr;

/// A Linux device number (`major:minor`), as sysfs `dev` files and mountinfo print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceNumber {
    pub major: u32,
    pub minor: u32,
}

impl DeviceNumber {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// From a raw `dev_t` (`st_dev` / `st_rdev`).
    pub fn from_raw(dev: u64) -> Self {
        Self {
            major: rustix::fs::major(dev),
            minor: rustix::fs::minor(dev),
        }
    }

    /// As a raw `dev_t`, for `mknod`.
    pub fn to_raw(self) -> u64 {
        rustix::fs::makedev(self.major, self.minor)
    }
}

impl fmt::Display for DeviceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// The text was not of the form `MAJOR:MINOR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a device number (MAJOR:MINOR): {0:?}")]
pub struct ParseDeviceNumberError(pub String);

impl FromStr for DeviceNumber {
    type Err = ParseDeviceNumberError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ParseDeviceNumberError(text.to_owned());
        let (major, minor) = text.trim().split_once(':').ok_or_else(bad)?;
        Ok(Self {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_dev_text_with_newline() {
        assert_eq!(
            "259:12\n".parse::<DeviceNumber>(),
            Ok(DeviceNumber::new(259, 12))
        );
    }

    #[test]
    fn rejects_malformed_numbers() {
        for text in ["", "259", "259:", ":1", "a:b", "1:2:3", "-1:0"] {
            assert!(text.parse::<DeviceNumber>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn raw_round_trip_keeps_large_minors() {
        let dev = DeviceNumber::new(259, 1_048_575);
        assert_eq!(DeviceNumber::from_raw(dev.to_raw()), dev);
        assert_eq!(dev.to_string(), "259:1048575");
    }
}
