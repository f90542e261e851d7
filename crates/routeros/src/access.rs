//! Who may connect to a disk's NVMe/TCP export: `nvme-tcp-server-allow-host-name`.
//!
//! RouterOS documents the property as a string of "hostnames allowed to connect", empty
//! meaning anyone. Whether a host is named by its host NQN, and whether several may be
//! listed (and how), is not documented. This model writes host NQNs separated by commas and
//! reads back exactly what it wrote; a value it cannot read as such a list (set by hand, or
//! a device that words it differently) is kept as [`AllowedHosts::Unrecognized`] so that no
//! caller edits what it does not understand.

use std::fmt;

use crate::error::{Error, Result};
use crate::validate::Nqn;

/// The separator written between host NQNs (NQNs never contain one).
const SEPARATOR: char = ',';

/// The hosts a disk's export admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// The property is empty: any host may connect.
    Any,
    /// Only these hosts (never empty).
    Only(Vec<Nqn>),
    /// A value that is not a list of host NQNs, verbatim.
    Unrecognized(String),
}

impl AllowedHosts {
    /// Only `hosts`, deduplicated in order. An empty list is refused: written to the device it
    /// would mean "anyone", the opposite of what a caller removing the last host wants.
    pub fn only(hosts: impl IntoIterator<Item = Nqn>) -> Result<Self> {
        let mut listed: Vec<Nqn> = Vec::new();
        for host in hosts {
            if !listed.contains(&host) {
                listed.push(host);
            }
        }
        if listed.is_empty() {
            return Err(Error::Invalid(
                "an export's host list cannot be empty (empty admits every host)".into(),
            ));
        }
        Ok(Self::Only(listed))
    }

    /// Reads the property's value as the device shows it.
    pub fn parse(value: &str) -> Self {
        let value = value.trim();
        if value.is_empty() {
            return Self::Any;
        }
        let hosts: Option<Vec<Nqn>> = value
            .split(SEPARATOR)
            .map(|host| Nqn::try_from(host.trim()).ok())
            .collect();
        match hosts {
            Some(hosts) if !hosts.is_empty() => Self::Only(hosts),
            _ => Self::Unrecognized(value.to_owned()),
        }
    }

    /// The value to write (`Any` → empty).
    pub fn to_value(&self) -> String {
        match self {
            Self::Any => String::new(),
            Self::Only(hosts) => hosts
                .iter()
                .map(Nqn::as_str)
                .collect::<Vec<_>>()
                .join(&SEPARATOR.to_string()),
            Self::Unrecognized(value) => value.clone(),
        }
    }

    /// Whether `host` may connect, as far as the value says.
    pub fn admits(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(hosts) => hosts.iter().any(|h| h.as_str() == host),
            Self::Unrecognized(_) => false,
        }
    }
}

impl fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any host"),
            Self::Only(_) => f.write_str(&self.to_value()),
            Self::Unrecognized(value) => write!(f, "{value:?} (not a list of host NQNs)"),
        }
    }
}

/// A disk's export access as read from the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportAccess {
    /// RouterOS internal id.
    pub id: String,
    pub slot: String,
    /// The property's value, verbatim.
    pub value: String,
}

impl ExportAccess {
    pub fn hosts(&self) -> AllowedHosts {
        AllowedHosts::parse(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nqn(s: &str) -> Nqn {
        Nqn::try_from(s).unwrap()
    }

    const A: &str = "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211";
    const B: &str = "nqn.2014-08.org.nvmexpress:uuid:0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";

    #[test]
    fn a_list_is_written_and_read_back_the_same() {
        let both = AllowedHosts::only([nqn(A), nqn(B), nqn(A)]).unwrap();
        assert_eq!(both.to_value(), format!("{A},{B}"));
        assert_eq!(AllowedHosts::parse(&both.to_value()), both);
        assert!(both.admits(A) && both.admits(B));
        assert!(!both.admits("nqn.2014-08.org.nvmexpress:uuid:other"));
        // Spaces a device might add around the separator do not change the hosts.
        assert_eq!(AllowedHosts::parse(&format!(" {A} , {B} ")), both);
    }

    #[test]
    fn empty_means_anyone_and_is_never_built_from_an_empty_list() {
        assert_eq!(AllowedHosts::parse(""), AllowedHosts::Any);
        assert_eq!(AllowedHosts::parse("  "), AllowedHosts::Any);
        assert!(AllowedHosts::Any.admits(A));
        assert_eq!(AllowedHosts::Any.to_value(), "");
        assert!(matches!(
            AllowedHosts::only(Vec::new()),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn a_value_that_is_not_a_list_of_nqns_is_kept_verbatim_and_admits_no_one_known() {
        for odd in ["worker-1", "worker-1 worker-2", &format!("{A};{B}"), ","] {
            let parsed = AllowedHosts::parse(odd);
            assert_eq!(parsed, AllowedHosts::Unrecognized(odd.trim().to_owned()));
            assert!(!parsed.admits(A));
            assert_eq!(parsed.to_value(), odd.trim());
        }
    }
}
