//! Quirks: plausible ways a real RDS may differ from the facts the driver was built on.
//! Each is off by default; switch them on with `--quirks`, the `quirks` field of the fault
//! control file, or [`crate::Faults::quirks`].

use serde::{Deserialize, Serialize};

use crate::error::CmdError;

/// One quirk. Names as on the command line and in `faults.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Quirk {
    /// Every refusal of a /disk or /file command answers `failure: operation failed`
    /// (REST: 400 with that detail); syntax errors stay as they are.
    GenericErrors,
    /// `/disk add` (and `set slot=`) with a slot already in use succeeds: the slot then
    /// holds more than one disk.
    DuplicateSlots,
    /// `/disk add` with the file-path of an existing file adopts it as it is: no refusal,
    /// no truncation, its size and data kept.
    ReuseExistingFile,
    /// Exported namespaces get new random identifiers (`device_uuid`, `device_nguid`)
    /// every time their exports are made: at every start and every re-export. Hosts then
    /// drop the namespace on reconnect, so a restart kills the mounts on it.
    FreshNamespaceIds,
}

impl Quirk {
    pub const ALL: [Quirk; 4] = [
        Quirk::GenericErrors,
        Quirk::DuplicateSlots,
        Quirk::ReuseExistingFile,
        Quirk::FreshNamespaceIds,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of quirks; in JSON a list of names (`["generic-errors"]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Quirk>", into = "Vec<Quirk>")]
pub struct Quirks(u8);

impl Quirks {
    pub fn has(self, quirk: Quirk) -> bool {
        self.0 & quirk.bit() != 0
    }

    pub fn insert(&mut self, quirk: Quirk) {
        self.0 |= quirk.bit();
    }

    pub fn remove(&mut self, quirk: Quirk) {
        self.0 &= !quirk.bit();
    }

    pub fn iter(self) -> impl Iterator<Item = Quirk> {
        Quirk::ALL.into_iter().filter(move |q| self.has(*q))
    }

    /// What a refusal of a `/disk` or `/file` command says: with `generic-errors` one
    /// unclassified text whatever the reason; syntax errors are not refusals.
    pub fn refusal(self, error: CmdError) -> CmdError {
        if self.has(Quirk::GenericErrors) && error.is_refusal() {
            CmdError::failure(GENERIC_REFUSAL)
        } else {
            error
        }
    }
}

/// The reason every refusal gives with `generic-errors` (printed `failure: operation failed`).
pub const GENERIC_REFUSAL: &str = "operation failed";

impl FromIterator<Quirk> for Quirks {
    fn from_iter<I: IntoIterator<Item = Quirk>>(iter: I) -> Self {
        let mut quirks = Quirks::default();
        for quirk in iter {
            quirks.insert(quirk);
        }
        quirks
    }
}

impl From<Vec<Quirk>> for Quirks {
    fn from(list: Vec<Quirk>) -> Self {
        list.into_iter().collect()
    }
}

impl From<Quirks> for Vec<Quirk> {
    fn from(quirks: Quirks) -> Self {
        quirks.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Pos;

    #[test]
    fn sets_round_trip_as_lists_of_names() {
        let quirks: Quirks = [Quirk::ReuseExistingFile, Quirk::GenericErrors]
            .into_iter()
            .collect();
        assert!(quirks.has(Quirk::GenericErrors) && !quirks.has(Quirk::DuplicateSlots));
        let json = serde_json::to_string(&quirks).unwrap();
        assert_eq!(json, r#"["generic-errors","reuse-existing-file"]"#);
        assert_eq!(serde_json::from_str::<Quirks>(&json).unwrap(), quirks);
        assert!(serde_json::from_str::<Quirks>(r#"["no-such-quirk"]"#).is_err());
        let mut less = quirks;
        less.remove(Quirk::GenericErrors);
        assert_eq!(less.iter().collect::<Vec<_>>(), [Quirk::ReuseExistingFile]);
    }

    #[test]
    fn generic_errors_hide_the_reason_of_refusals_only() {
        let generic: Quirks = [Quirk::GenericErrors].into_iter().collect();
        for refusal in [
            CmdError::NoSuchItem,
            CmdError::failure("disk with slot x already exists"),
            CmdError::InvalidValue("file-size".into()),
            CmdError::NoMatchingValue("type".into()),
            CmdError::MissingArguments("type".into()),
        ] {
            assert_eq!(
                generic.refusal(refusal.clone()).to_string(),
                "failure: operation failed"
            );
            assert_eq!(Quirks::default().refusal(refusal.clone()), refusal);
        }
        let pos = Pos { line: 1, column: 2 };
        for kept in [
            CmdError::Syntax { pos },
            CmdError::ExpectedEndOfCommand { pos },
            CmdError::BadCommandName {
                word: "x".into(),
                pos,
            },
            CmdError::Injected("couldn't add disk (6)".into()),
        ] {
            assert_eq!(generic.refusal(kept.clone()), kept);
        }
    }
}
