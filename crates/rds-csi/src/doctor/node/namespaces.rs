//! Namespace identifiers of the driver's volumes, recorded and compared across an RDS reboot.
//!
//! The kernel keeps a namespace (and every mount on it) through a target's restart only when
//! its identifiers (`uuid`, `nguid`, `eui`, `wwid`) come back unchanged. Whether RouterOS keeps
//! them is not known, so `--save` records them and `--compare` tells, per volume, what became
//! of them. Everything here is pure: the sysfs topology comes in, records and verdicts go out.

use std::collections::{BTreeMap, BTreeSet};

use nvme::sysfs::{Namespace, Topology};
use nvme::{ManagedPrefix, NamespaceIds, Sameness};
use serde::{Deserialize, Serialize};

use super::judge::state_text;
use crate::doctor::report::{Check, Status};

/// Version of the state file's layout; a file of another version is refused, not guessed at.
pub const FORMAT: u32 = 1;

/// What `--save` writes and `--compare` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    pub format: u32,
    /// When it was taken, RFC 3339 in UTC, and the same as seconds since the epoch.
    pub taken_at: String,
    pub taken_at_unix: u64,
    /// The host NQN the node presents, when it could be resolved.
    pub host_nqn: Option<String>,
    /// `--nqn-prefix` at the time: what counted as managed.
    pub nqn_prefix: String,
    /// NQNs connected but not the driver's (counted, never named).
    pub foreign_skipped: usize,
    pub volumes: Vec<VolumeRecord>,
}

/// One managed volume connected on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub nqn: String,
    pub controllers: Vec<ControllerRecord>,
    pub namespaces: Vec<NamespaceRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRecord {
    pub name: String,
    pub state: String,
}

/// A namespace block device and what identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    /// Block device name (`nvme1n1`).
    pub device: String,
    /// `major:minor`.
    pub dev: String,
    pub nsid: Option<u32>,
    pub uuid: Option<String>,
    pub nguid: Option<String>,
    pub eui64: Option<String>,
    pub wwid: Option<String>,
}

impl NamespaceRecord {
    fn from_namespace(namespace: &Namespace) -> Self {
        let NamespaceIds {
            uuid,
            nguid,
            eui64,
            wwid,
        } = namespace.ids.clone();
        Self {
            device: namespace.name.clone(),
            dev: namespace.device.to_string(),
            nsid: namespace.nsid,
            uuid,
            nguid,
            eui64,
            wwid,
        }
    }

    pub fn ids(&self) -> NamespaceIds {
        NamespaceIds {
            uuid: self.uuid.clone(),
            nguid: self.nguid.clone(),
            eui64: self.eui64.clone(),
            wwid: self.wwid.clone(),
        }
    }
}

/// The managed volumes connected now, and how many foreign NQNs were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedVolumes {
    pub volumes: Vec<VolumeRecord>,
    pub foreign_skipped: usize,
}

impl ManagedVolumes {
    pub fn namespace_count(&self) -> usize {
        self.volumes.iter().map(|v| v.namespaces.len()).sum()
    }
}

/// The driver's volumes in `topology`: managed means what the controllers check and the node
/// plugin mean by it ([`ManagedPrefix::covers`]); every other NQN is only counted.
pub fn managed_volumes(prefix: &ManagedPrefix, topology: &Topology) -> ManagedVolumes {
    let nqns: BTreeSet<&str> = topology
        .subsystems
        .iter()
        .map(|s| s.nqn.as_str())
        .chain(
            topology
                .controllers
                .iter()
                .map(|c| c.subsystem_nqn.as_str()),
        )
        .collect();
    let (managed, foreign): (Vec<&str>, Vec<&str>) =
        nqns.into_iter().partition(|nqn| prefix.covers(nqn));
    let volumes = managed
        .into_iter()
        .map(|nqn| {
            let view = topology.view(nqn);
            VolumeRecord {
                nqn: nqn.to_owned(),
                controllers: view
                    .controllers
                    .iter()
                    .map(|c| ControllerRecord {
                        name: c.name.clone(),
                        state: state_text(&c.state).to_owned(),
                    })
                    .collect(),
                namespaces: view
                    .namespaces()
                    .map(NamespaceRecord::from_namespace)
                    .collect(),
            }
        })
        .collect();
    ManagedVolumes {
        volumes,
        foreign_skipped: foreign.len(),
    }
}

/// What became of one namespace between the saved reading and now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Same identifiers: the kernel keeps such a namespace through a reconnect.
    Kept {
        device_was: String,
        device: String,
        same_device: bool,
    },
    /// An identifier differs: the kernel drops the namespace and makes a new device.
    Changed {
        attribute: &'static str,
        was: Option<String>,
        now: Option<String>,
        device_was: String,
        device: String,
    },
    /// Neither reading has an identifier: cannot tell.
    NoIdentifiers { device_was: String, device: String },
    /// Saved, not shown now; `controllers` are the NQN's controllers now, if it is connected.
    Gone {
        device_was: String,
        controllers: Vec<ControllerRecord>,
    },
    /// Shown now, not saved.
    New { device: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeComparison {
    pub nqn: String,
    pub nsid: Option<u32>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub kept: usize,
    pub changed: usize,
    pub no_identifiers: usize,
    pub gone: usize,
    pub new: usize,
}

/// What the comparison means for the volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every namespace that could be compared kept its identifiers.
    Kept,
    /// At least one namespace has new identifiers.
    Changed,
    /// No namespace could be compared.
    NothingComparable,
}

/// The `namespace_ids` section of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// The file compared with, as given.
    pub file: String,
    pub saved_at: String,
    pub saved_host_nqn: Option<String>,
    pub verdict: Verdict,
    /// The verdict for people.
    pub summary: String,
    pub counts: OutcomeCounts,
    /// Reasons the comparison may mislead (another host, another prefix).
    pub notes: Vec<String>,
    pub volumes: Vec<VolumeComparison>,
}

type Key = (String, Option<u32>);

fn by_namespace(volumes: &[VolumeRecord]) -> BTreeMap<Key, &NamespaceRecord> {
    volumes
        .iter()
        .flat_map(|v| v.namespaces.iter().map(|ns| ((v.nqn.clone(), ns.nsid), ns)))
        .collect()
}

/// Pairs the saved namespaces with today's by NQN and namespace id and says what became of each.
pub fn compare_volumes(saved: &[VolumeRecord], now: &[VolumeRecord]) -> Vec<VolumeComparison> {
    let (before, after) = (by_namespace(saved), by_namespace(now));
    let keys: BTreeSet<&Key> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .map(|key @ (nqn, nsid)| {
            let outcome = match (before.get(key), after.get(key)) {
                (Some(was), Some(is)) => {
                    let (device_was, device) = (was.device.clone(), is.device.clone());
                    match was.ids().compare(&is.ids()) {
                        Sameness::Same => Outcome::Kept {
                            same_device: device_was == device,
                            device_was,
                            device,
                        },
                        Sameness::Different {
                            attribute,
                            was,
                            now,
                        } => Outcome::Changed {
                            attribute,
                            was,
                            now,
                            device_was,
                            device,
                        },
                        Sameness::Unknown => Outcome::NoIdentifiers { device_was, device },
                    }
                }
                (Some(was), None) => Outcome::Gone {
                    device_was: was.device.clone(),
                    controllers: now
                        .iter()
                        .find(|v| &v.nqn == nqn)
                        .map(|v| v.controllers.clone())
                        .unwrap_or_default(),
                },
                (None, Some(is)) => Outcome::New {
                    device: is.device.clone(),
                },
                (None, None) => unreachable!("every key comes from one of the maps"),
            };
            VolumeComparison {
                nqn: nqn.clone(),
                nsid: *nsid,
                outcome,
            }
        })
        .collect()
}

pub fn count(volumes: &[VolumeComparison]) -> OutcomeCounts {
    let mut counts = OutcomeCounts::default();
    for volume in volumes {
        match volume.outcome {
            Outcome::Kept { .. } => counts.kept += 1,
            Outcome::Changed { .. } => counts.changed += 1,
            Outcome::NoIdentifiers { .. } => counts.no_identifiers += 1,
            Outcome::Gone { .. } => counts.gone += 1,
            Outcome::New { .. } => counts.new += 1,
        }
    }
    counts
}

pub fn verdict(counts: &OutcomeCounts) -> Verdict {
    if counts.changed > 0 {
        Verdict::Changed
    } else if counts.kept > 0 {
        Verdict::Kept
    } else {
        Verdict::NothingComparable
    }
}

/// The verdict in words the user can act on.
pub fn summary(verdict: Verdict, counts: &OutcomeCounts) -> String {
    match verdict {
        Verdict::Kept => "the RDS kept the namespace identifiers: volumes ride out its reboot \
                          without the node's help"
            .to_owned(),
        Verdict::Changed => format!(
            "the RDS gave {} new identifiers: after its reboot the node must recover these \
             volumes (re-stage onto the new device) and pods using them must be restarted; see \
             docs/operations.md, 'When the RDS reboots'",
            plural(counts.changed, "namespace", "namespaces")
        ),
        Verdict::NothingComparable if counts.no_identifiers > 0 => format!(
            "cannot tell: {} no identifiers, before or now, so nothing tells whether the RDS \
             keeps them",
            plural(counts.no_identifiers, "namespace shows", "namespaces show")
        ),
        Verdict::NothingComparable => "nothing to compare: no managed volume was connected \
                                       both when the file was saved and now"
            .to_owned(),
    }
}

/// Everything `--compare` reports, from the saved file and today's reading.
pub fn compare(
    file: &str,
    saved: &StateFile,
    now: &[VolumeRecord],
    host_nqn: Option<&str>,
    nqn_prefix: &str,
) -> Comparison {
    let volumes = compare_volumes(&saved.volumes, now);
    let counts = count(&volumes);
    let verdict = verdict(&counts);
    let mut notes = Vec::new();
    if let (Some(was), Some(is)) = (saved.host_nqn.as_deref(), host_nqn)
        && was != is
    {
        notes.push(format!(
            "saved on another node (host NQN {was}; this node is {is}): compare on the node \
             that saved the file"
        ));
    }
    if saved.nqn_prefix != nqn_prefix {
        notes.push(format!(
            "saved with --nqn-prefix {}, now {nqn_prefix}: volumes may show as gone or new \
             only because of that",
            saved.nqn_prefix
        ));
    }
    Comparison {
        file: file.to_owned(),
        saved_at: saved.taken_at.clone(),
        saved_host_nqn: saved.host_nqn.clone(),
        summary: summary(verdict, &counts),
        verdict,
        counts,
        notes,
        volumes,
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn shown(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(none)")
}

/// One line per namespace, for the table.
pub fn describe(volume: &VolumeComparison) -> String {
    let what = match &volume.outcome {
        Outcome::Kept {
            device,
            same_device: true,
            ..
        } => format!("kept     {device} (same device)"),
        Outcome::Kept {
            device, device_was, ..
        } => format!("kept     {device} (was {device_was}: staged again meanwhile)"),
        Outcome::Changed {
            attribute,
            was,
            now,
            device_was,
            device,
        } => format!(
            "changed  {attribute} {} -> {} ({device_was}, now {device})",
            shown(was),
            shown(now)
        ),
        Outcome::NoIdentifiers { device, .. } => {
            format!("no ids   {device} (no identifiers, before or now)")
        }
        Outcome::Gone {
            device_was,
            controllers,
        } if controllers.is_empty() => format!("gone     was {device_was}; not connected now"),
        Outcome::Gone {
            device_was,
            controllers,
        } => {
            let states: Vec<String> = controllers
                .iter()
                .map(|c| format!("{} {}", c.name, c.state))
                .collect();
            format!(
                "gone     was {device_was}; connected ({}) but no namespace shown",
                states.join(", ")
            )
        }
        Outcome::New { device } => format!("new      {device} (not in the file)"),
    };
    let nsid = match volume.nsid {
        Some(nsid) if nsid != 1 => format!(" nsid {nsid}"),
        _ => String::new(),
    };
    format!("{what}  {}{nsid}", volume.nqn)
}

pub const COMPARE: (&str, &str) = ("namespaces.compare", "namespace identifiers");

/// The `namespaces.compare` check. Changed identifiers warn rather than fail: the node and its
/// volumes work, the finding is about what an RDS reboot will cost (see docs/doctor.md).
pub fn judge_comparison(comparison: &Comparison) -> Check {
    let (id, name) = COMPARE;
    let counts = &comparison.counts;
    let mut status = match comparison.verdict {
        Verdict::Kept => Status::Ok,
        Verdict::Changed => Status::Warn,
        Verdict::NothingComparable => Status::Skip,
    };
    if counts.gone > 0 || !comparison.notes.is_empty() {
        status = Status::Warn;
    }
    let mut detail = format!(
        "{}\ncompared with {}, saved {}: {} kept, {} changed, {} without identifiers, {} gone, \
         {} new",
        comparison.summary,
        comparison.file,
        comparison.saved_at,
        counts.kept,
        counts.changed,
        counts.no_identifiers,
        counts.gone,
        counts.new
    );
    for note in &comparison.notes {
        detail.push_str(&format!("\nnote: {note}"));
    }
    for volume in &comparison.volumes {
        detail.push('\n');
        detail.push_str(&describe(volume));
    }
    let mut fixes = Vec::new();
    if counts.changed > 0 {
        fixes.push(
            "the volumes marked changed lost their mounts when the RDS came back: restart the \
             pods using them so they are staged onto the new device; see docs/operations.md, \
             'When the RDS reboots'",
        );
    }
    if counts.gone > 0 {
        fixes.push(
            "a volume marked gone was unstaged meanwhile, or the kernel gave up reconnecting \
             (ctrl_loss_tmo ran out while the RDS was away); in the latter case its mounts are \
             dead: restart the pods using it",
        );
    }
    let check = Check::new(id, name, status, detail);
    match fixes.is_empty() {
        true => check,
        false => check.fix(fixes.join("\n")),
    }
}

#[cfg(test)]
#[path = "namespaces_tests.rs"]
mod tests;
