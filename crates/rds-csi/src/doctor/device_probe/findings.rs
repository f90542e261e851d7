//! What a probe run records: each command sent, the device's verbatim reply, and the state of
//! the run's items afterwards. Recording only; [`super::judge`] gives the meaning.

use routeros::reply::{self, ExecOutput};
use routeros::{DiskItem, Error};
use serde::Serialize;

use super::plan::Plan;

/// The probes, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Probe {
    /// A first add: a 1 MiB file disk, not exported.
    Baseline,
    /// A second add in the baseline's slot, with another image.
    DuplicateSlot,
    /// An add in a new slot with the image the baseline disk uses.
    ExistingFile,
    /// `/disk remove` of an id no disk has.
    MissingId,
    /// `/disk remove` of a slot name no disk has.
    MissingName,
    /// An add four times the size of the pool.
    NoSpace,
    /// `/disk remove` of the baseline disk: does its image stay?
    RemoveKeepsImage,
    /// An add in a new slot with the image the removed baseline left behind.
    LeftoverImage,
}

impl Probe {
    pub const ALL: [Probe; 8] = [
        Probe::Baseline,
        Probe::DuplicateSlot,
        Probe::ExistingFile,
        Probe::MissingId,
        Probe::MissingName,
        Probe::NoSpace,
        Probe::RemoveKeepsImage,
        Probe::LeftoverImage,
    ];

    /// The stable id (as in JSON).
    pub fn id(self) -> &'static str {
        match self {
            Probe::Baseline => "baseline",
            Probe::DuplicateSlot => "duplicate-slot",
            Probe::ExistingFile => "existing-file",
            Probe::MissingId => "missing-id",
            Probe::MissingName => "missing-name",
            Probe::NoSpace => "no-space",
            Probe::RemoveKeepsImage => "remove-keeps-image",
            Probe::LeftoverImage => "leftover-image",
        }
    }

    /// What it asks, for people.
    pub fn title(self) -> &'static str {
        match self {
            Probe::Baseline => "first add (1 MiB image, not exported)",
            Probe::DuplicateSlot => "second add in the same slot, another image",
            Probe::ExistingFile => "add in a new slot with the image the first disk uses",
            Probe::MissingId => "remove an id no disk has",
            Probe::MissingName => "remove a slot name no disk has",
            Probe::NoSpace => "add four times the pool's size",
            Probe::RemoveKeepsImage => "remove the first disk: does its image stay?",
            Probe::LeftoverImage => "add in a new slot with the image the removed disk left",
        }
    }
}

/// What came back for one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The device's answer: stdout over SSH, `ret` of `/execute` over REST, verbatim. Only
    /// SSH has an exit status.
    Answer {
        text: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        stderr: String,
        exit_status: Option<u32>,
    },
    /// REST answered the request itself with an error, as the client reads it.
    Rejected { kind: &'static str, message: String },
    /// Nothing came back (lost connection, deadline): the command may or may not have run.
    NoAnswer { error: String },
}

impl Reply {
    pub fn from_output(output: &ExecOutput) -> Self {
        Reply::Answer {
            text: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            exit_status: output.exit_status,
        }
    }

    pub fn from_error(error: &Error) -> Self {
        Reply::Rejected {
            kind: kind_name(error),
            message: error.message().to_owned(),
        }
    }

    /// The words of the reply as the client reads them: stdout (else stderr, else the
    /// rejection's message) with every CR and LF dropped, since the terminal wraps long lines
    /// anywhere, and trimmed.
    pub fn words(&self) -> String {
        let text = match self {
            Reply::Answer { text, stderr, .. } if text.trim().is_empty() => stderr,
            Reply::Answer { text, .. } => text,
            Reply::Rejected { message, .. } => message,
            Reply::NoAnswer { .. } => "",
        };
        text.replace(['\r', '\n'], "").trim().to_owned()
    }

    /// No words and no failing exit status: the device did it without comment.
    pub fn is_silent_success(&self) -> bool {
        matches!(
            self,
            Reply::Answer {
                exit_status: None | Some(0),
                ..
            }
        ) && self.words().is_empty()
    }
}

/// The name of an error kind as the client knows it.
pub fn kind_name(error: &Error) -> &'static str {
    error.kind_name()
}

/// One command and its reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exchange {
    pub command: String,
    pub reply: Reply,
}

/// A disk of the run as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateDisk {
    pub id: String,
    pub slot: String,
    /// `file`, or the type of whatever else holds the slot.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
}

/// A file of the run as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateFile {
    pub id: String,
    pub name: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// Everything of the run on the device at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceState {
    pub disks: Vec<StateDisk>,
    pub files: Vec<StateFile>,
}

impl DeviceState {
    pub fn is_empty(&self) -> bool {
        self.disks.is_empty() && self.files.is_empty()
    }

    pub fn disks_in<'a>(&'a self, slot: &'a str) -> impl Iterator<Item = &'a StateDisk> {
        self.disks.iter().filter(move |d| d.slot == slot)
    }

    pub fn disk(&self, id: &str) -> Option<&StateDisk> {
        self.disks.iter().find(|d| d.id == id)
    }

    pub fn file(&self, name: &str) -> Option<&StateFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The disks using the image `name`.
    pub fn users_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a StateDisk> {
        self.disks
            .iter()
            .filter(move |d| d.file_path.as_deref() == Some(name))
    }

    /// Every name in it, for people (`slot (*id)`, image paths).
    pub fn names(&self) -> Vec<String> {
        let disks = self
            .disks
            .iter()
            .map(|d| format!("disk {} ({})", d.slot, d.id));
        let files = self.files.iter().map(|f| format!("file {}", f.name));
        disks.chain(files).collect()
    }
}

/// Reads [`Plan::read_state`]'s output. Items outside the run's names mean the device's filter
/// did not do what was asked; nothing may be decided (or removed) on such a reply.
pub fn parse_state(plan: &Plan, output: &ExecOutput) -> Result<DeviceState, Error> {
    let [disks, files]: [serde_json::Value; 2] = reply::expect_values(output, 2)?
        .try_into()
        .map_err(|_| Error::Protocol("expected 2 JSON values".into()))?;
    let disks = reply::items(disks)?
        .iter()
        .map(|obj| {
            Ok(match reply::disk_item(obj)? {
                DiskItem::File(disk) => StateDisk {
                    id: disk.id,
                    slot: disk.slot,
                    kind: "file".into(),
                    file_path: Some(disk.file_path),
                    file_size: Some(disk.file_size),
                },
                DiskItem::Other { id, slot, kind } => StateDisk {
                    id,
                    slot,
                    kind,
                    file_path: None,
                    file_size: None,
                },
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let files = reply::items(files)?
        .iter()
        .map(|obj| {
            reply::file_entry(obj).map(|file| StateFile {
                id: file.id,
                name: file.name,
                size: file.size,
                last_modified: file.last_modified,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    if let Some(stray) = disks.iter().find(|d| !plan.owns_slot(&d.slot)) {
        return Err(Error::Protocol(format!(
            "asked for slots starting {}-, the device returned slot {}",
            plan.tag(),
            stray.slot
        )));
    }
    if let Some(stray) = files.iter().find(|f| !plan.owns_file(&f.name)) {
        return Err(Error::Protocol(format!(
            "asked for files starting {}-, the device returned {}",
            plan.image_prefix(),
            stray.name
        )));
    }
    Ok(DeviceState { disks, files })
}

/// A probe that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub probe: Probe,
    pub exchange: Exchange,
    /// The run's items afterwards; `None` when they could not be read.
    pub after: Option<DeviceState>,
}

/// Removals made by the probe itself, outside the final cleanup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    pub removed: Vec<String>,
    /// What could not be removed, with the reason.
    pub failed: Vec<String>,
}

/// Everything one run recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// The pool's size in bytes, read before the first change.
    pub pool_size: u64,
    /// The pool's free bytes just before and just after the baseline add.
    pub free_before: Option<u64>,
    pub free_after: Option<u64>,
    /// The run's items before the first change (must be none).
    pub initial: DeviceState,
    pub steps: Vec<Step>,
    /// Probes not run, with the reason.
    pub skipped: Vec<(Probe, String)>,
    /// The no-space disk, when the device made it: removed at once.
    pub huge_removal: Option<Removal>,
    /// Why the run ended before its last probe.
    pub stopped: Option<String>,
}

impl Findings {
    /// The run's items as last read.
    pub fn current(&self) -> &DeviceState {
        self.steps
            .iter()
            .rev()
            .find_map(|s| s.after.as_ref())
            .unwrap_or(&self.initial)
    }

    pub fn step(&self, probe: Probe) -> Option<&Step> {
        self.steps.iter().find(|s| s.probe == probe)
    }

    /// Each probe that ran with the state just before it (the run stops at the first state
    /// it cannot read, so only the last step can lack one).
    pub fn with_before(&self) -> impl Iterator<Item = (&DeviceState, &Step)> {
        let befores = std::iter::once(&self.initial).chain(
            self.steps
                .iter()
                .map(|s| s.after.as_ref().unwrap_or(&self.initial)),
        );
        befores.zip(&self.steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use routeros::DirPath;

    fn plan() -> Plan {
        Plan::new(DirPath::try_from("storage-pool").unwrap(), 0xabcdef01)
    }

    fn output(text: &str) -> ExecOutput {
        ExecOutput {
            stdout: text.as_bytes().to_vec(),
            ..ExecOutput::default()
        }
    }

    #[test]
    fn the_state_is_read_from_both_listings_and_kept_to_the_runs_names() {
        let plan = plan();
        let disk = r#"[{".id":"*1A","slot":"rds-csi-probe-abcdef01-a","type":"file",
            "file-path":"/storage-pool/rds-csi-probe-abcdef01-a.img","file-size":1048576,
            "nvme-tcp-export":false,"nvme-tcp-server-port":4420}]"#;
        let file = r#"[{".id":"*3","name":"storage-pool/rds-csi-probe-abcdef01-a.img",
            "type":".img file","size":"1048576","last-modified":"2026-01-02 03:04:05"}]"#;
        let state = parse_state(&plan, &output(&format!("{disk}\r\n{file}\r\n"))).unwrap();
        assert_eq!(state.disks.len(), 1);
        assert_eq!(
            state.disks[0].file_path.as_deref(),
            Some("storage-pool/rds-csi-probe-abcdef01-a.img")
        );
        assert_eq!(state.files[0].size, 1 << 20);
        assert_eq!(
            state
                .users_of("storage-pool/rds-csi-probe-abcdef01-a.img")
                .count(),
            1
        );

        let empty = parse_state(&plan, &output("[]\r\n[]\r\n")).unwrap();
        assert!(empty.is_empty());

        let stray = r#"[{".id":"*2","slot":"pvc-1","type":"file","file-path":"p/pvc-1.img",
            "file-size":1,"nvme-tcp-export":true,"nvme-tcp-server-port":4420}]"#;
        let error = parse_state(&plan, &output(&format!("{stray}\r\n[]\r\n"))).unwrap_err();
        assert!(error.to_string().contains("pvc-1"), "{error}");

        let refused = parse_state(&plan, &output("failure: operation failed\r\n")).unwrap_err();
        assert!(matches!(refused, Error::Invalid(_)), "{refused:?}");
    }

    #[test]
    fn replies_keep_their_words_and_tell_silence() {
        let silent = Reply::from_output(&ExecOutput {
            exit_status: Some(0),
            ..ExecOutput::default()
        });
        assert!(silent.is_silent_success());
        let failed = Reply::from_output(&ExecOutput {
            exit_status: Some(1),
            ..ExecOutput::default()
        });
        assert!(!failed.is_silent_success());
        let said = Reply::from_output(&output("no such item\r\n"));
        assert_eq!(said.words(), "no such item");
        let wrapped = Reply::from_output(&output("failure: not enough free sp\r\nace on pool\r\n"));
        assert_eq!(wrapped.words(), "failure: not enough free space on pool");
        let rejected = Reply::from_error(&Error::Invalid("Bad Request: no such item".into()));
        assert_eq!(rejected.words(), "Bad Request: no such item");
        assert!(!rejected.is_silent_success());
    }
}
