//! A namespace's identifiers as the host sees them (`uuid`, `nguid`, `eui`, `wwid` in the
//! block device's sysfs directory).
//!
//! They are what tells one namespace from another across a reconnect: the kernel keeps a
//! namespace (and every mount on it) through a target's restart only when they are unchanged;
//! otherwise it removes the block device and creates a new one for the "same" disk. The node
//! records them when it stages a volume and compares them later.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The identifiers one namespace reported, each as the kernel printed it (lower case). An
/// attribute the kernel hides (it hides identifiers the target left zero) is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceIds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nguid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eui64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwid: Option<String>,
}

/// The sysfs attribute holding each identifier, in the order they are compared and shown.
pub const ID_ATTRIBUTES: [&str; 4] = ["uuid", "nguid", "eui", "wwid"];

/// Whether two readings are of the same namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sameness {
    /// Every identifier present in both readings is equal, and there is at least one.
    Same,
    /// An identifier differs (or is present in only one reading).
    Different {
        attribute: &'static str,
        was: Option<String>,
        now: Option<String>,
    },
    /// Neither reading has any identifier: they cannot be told apart by identity.
    Unknown,
}

impl NamespaceIds {
    /// Builds the set from attribute texts (trailing newlines and case are not significant;
    /// empty texts count as absent).
    pub fn from_attributes<'a>(mut read: impl FnMut(&'static str) -> Option<&'a str>) -> Self {
        let mut normal = |attribute| {
            read(attribute)
                .map(|text| text.trim().to_ascii_lowercase())
                .filter(|text| !text.is_empty())
        };
        Self {
            uuid: normal("uuid"),
            nguid: normal("nguid"),
            eui64: normal("eui"),
            wwid: normal("wwid"),
        }
    }

    fn fields(&self) -> [(&'static str, &Option<String>); 4] {
        [
            (ID_ATTRIBUTES[0], &self.uuid),
            (ID_ATTRIBUTES[1], &self.nguid),
            (ID_ATTRIBUTES[2], &self.eui64),
            (ID_ATTRIBUTES[3], &self.wwid),
        ]
    }

    /// True when the kernel showed no identifier at all.
    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, value)| value.is_none())
    }

    /// Compares a reading taken earlier (`self`) with one taken now. An identifier that
    /// appeared or vanished counts as a change: a target does not drop identifiers of a
    /// namespace it keeps.
    pub fn compare(&self, now: &NamespaceIds) -> Sameness {
        if self.is_empty() && now.is_empty() {
            return Sameness::Unknown;
        }
        for ((attribute, was), (_, current)) in self.fields().into_iter().zip(now.fields()) {
            if was != current {
                return Sameness::Different {
                    attribute,
                    was: was.clone(),
                    now: current.clone(),
                };
            }
        }
        Sameness::Same
    }
}

impl fmt::Display for NamespaceIds {
    /// `uuid 1b4e…, nguid …`, only the identifiers present; `no identifiers` when none is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present: Vec<String> = self
            .fields()
            .iter()
            .filter_map(|(attribute, value)| value.as_ref().map(|v| format!("{attribute} {v}")))
            .collect();
        if present.is_empty() {
            f.write_str("no identifiers")
        } else {
            f.write_str(&present.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(uuid: Option<&str>, nguid: Option<&str>) -> NamespaceIds {
        NamespaceIds {
            uuid: uuid.map(str::to_owned),
            nguid: nguid.map(str::to_owned),
            ..NamespaceIds::default()
        }
    }

    #[test]
    fn attributes_are_trimmed_lowered_and_empty_ones_dropped() {
        let read = NamespaceIds::from_attributes(|attribute| match attribute {
            "uuid" => Some("1B4E28BA-2FA1-11D2-883F-0016D3CCA427\n"),
            "nguid" => Some("\n"),
            "wwid" => Some("uuid.1b4e28ba-2fa1-11d2-883f-0016d3cca427\n"),
            _ => None,
        });
        assert_eq!(
            read.uuid.as_deref(),
            Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
        );
        assert_eq!(read.nguid, None);
        assert_eq!(read.eui64, None);
        assert!(read.wwid.unwrap().starts_with("uuid."));
    }

    #[test]
    fn equal_readings_are_the_same_namespace() {
        let a = ids(Some("u1"), Some("g1"));
        assert_eq!(a.compare(&a.clone()), Sameness::Same);
    }

    #[test]
    fn any_changed_appeared_or_vanished_identifier_is_another_namespace() {
        let before = ids(Some("u1"), Some("g1"));
        assert_eq!(
            before.compare(&ids(Some("u2"), Some("g1"))),
            Sameness::Different {
                attribute: "uuid",
                was: Some("u1".into()),
                now: Some("u2".into())
            }
        );
        assert_eq!(
            before.compare(&ids(Some("u1"), Some("g2"))),
            Sameness::Different {
                attribute: "nguid",
                was: Some("g1".into()),
                now: Some("g2".into())
            }
        );
        assert!(matches!(
            before.compare(&ids(Some("u1"), None)),
            Sameness::Different {
                attribute: "nguid",
                now: None,
                ..
            }
        ));
        assert!(matches!(
            ids(None, None).compare(&ids(None, Some("g1"))),
            Sameness::Different {
                attribute: "nguid",
                was: None,
                ..
            }
        ));
    }

    #[test]
    fn two_readings_without_identifiers_cannot_be_compared() {
        assert_eq!(
            NamespaceIds::default().compare(&NamespaceIds::default()),
            Sameness::Unknown
        );
    }

    #[test]
    fn display_names_only_what_is_present() {
        assert_eq!(ids(Some("u1"), Some("g1")).to_string(), "uuid u1, nguid g1");
        assert_eq!(NamespaceIds::default().to_string(), "no identifiers");
    }
}
