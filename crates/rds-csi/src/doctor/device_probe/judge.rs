//! What the recorded replies mean (pure): per probe, what the device did and how the client
//! reads its words; over all, which simulator quirks the device shows and what no quirk plays.

use rds_sim::Quirk;
use routeros::error::classify_device_text;
use serde::Serialize;

use super::findings::{DeviceState, Findings, Probe, Reply, StateDisk, Step, kind_name};
use super::plan::{ADOPTION_SIZE, IMAGE_SIZE, Name, Plan};

/// How the client reads a refusal, against the meaning the driver relies on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reading {
    /// The error kind the client makes of the words, or `unrecognised`.
    pub client_reads: &'static str,
    pub expected: &'static str,
}

impl Reading {
    pub fn as_expected(&self) -> bool {
        self.client_reads == self.expected
    }
}

/// The meaning of one probe's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judged {
    pub probe: Probe,
    /// What the device did, for people.
    pub outcome: String,
    /// For a refusal: how the client reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reading: Option<Reading>,
    /// The quirk this outcome shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shows: Option<Quirk>,
    /// Behaviour no simulator quirk plays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmatched: Option<String>,
}

/// Whether the image was allocated when the disk was made, judged by the pool's free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocation {
    /// Free space did not move by half the image size or more.
    Sparse,
    /// Free space dropped by about the image size.
    Allocated,
    /// Free space moved by something else (other writes on the pool).
    Inconclusive,
}

/// All meanings of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub probes: Vec<Judged>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation: Option<Allocation>,
    /// The simulator quirks (`rds-csi sim --quirks`) whose behaviour the device shows.
    pub quirks: Vec<Quirk>,
    /// What the device did that no quirk plays.
    pub unmatched: Vec<String>,
}

/// The meaning of every probe that ran, and the quirks they add up to.
pub fn judge(plan: &Plan, findings: &Findings) -> Verdict {
    let baseline = baseline_disk(plan, findings).map(|d| d.id.as_str());
    let probes: Vec<Judged> = findings
        .with_before()
        .map(|(before, step)| judge_step(plan, baseline, before, step))
        .collect();
    let mut quirks: Vec<Quirk> = Vec::new();
    let mut add = |quirk: Quirk| {
        if !quirks.contains(&quirk) {
            quirks.push(quirk);
        }
    };
    for judged in &probes {
        if let Some(quirk) = judged.shows {
            add(quirk);
        }
        if judged.reading.as_ref().is_some_and(|r| !r.as_expected()) {
            add(Quirk::GenericErrors);
        }
    }
    quirks.sort_by_key(|q| Quirk::ALL.iter().position(|a| a == q));
    let mut unmatched: Vec<String> = probes.iter().filter_map(|j| j.unmatched.clone()).collect();
    let allocation = findings
        .free_before
        .zip(findings.free_after)
        .map(|(before, after)| allocation(before, after, IMAGE_SIZE));
    if let Some(removal) = &findings.huge_removal
        && !removal.failed.is_empty()
    {
        unmatched.push(format!(
            "the far-too-large disk could not be removed at once: {}",
            removal.failed.join("; ")
        ));
    }
    Verdict {
        probes,
        allocation,
        quirks,
        unmatched,
    }
}

/// Sparse, allocated or unclear, from the pool's free bytes around an add of `size` bytes.
pub fn allocation(before: u64, after: u64, size: u64) -> Allocation {
    let dropped = i128::from(before) - i128::from(after);
    let size = i128::from(size);
    if dropped.abs() * 2 < size {
        Allocation::Sparse
    } else if dropped * 2 >= size && dropped <= 2 * size {
        Allocation::Allocated
    } else {
        Allocation::Inconclusive
    }
}

/// The disk the baseline add made, as read back right after it.
pub fn baseline_disk<'a>(plan: &Plan, findings: &'a Findings) -> Option<&'a StateDisk> {
    let step = findings.step(Probe::Baseline)?;
    new_disks(&findings.initial, step.after.as_ref()?, plan, Name::A)
        .into_iter()
        .next()
}

fn judge_step(plan: &Plan, baseline: Option<&str>, before: &DeviceState, step: &Step) -> Judged {
    let reply = &step.exchange.reply;
    let judged = |outcome: String| Judged {
        probe: step.probe,
        outcome,
        reading: None,
        shows: None,
        unmatched: None,
    };
    let Some(after) = &step.after else {
        return judged("unknown: the state afterwards could not be read".into());
    };
    let refused = |expected: &'static str| {
        let reading = read(reply, expected);
        let outcome = match reply.words().as_str() {
            "" => "refused without a word".to_owned(),
            words => format!("refused: {words}"),
        };
        let mut judged = judged(outcome);
        judged.reading = Some(reading);
        judged
    };
    let image_a = plan.image(Name::A);
    let image_a = image_a.as_str();
    match step.probe {
        Probe::Baseline => match new_disks(before, after, plan, Name::A).first() {
            Some(disk) => judged(format!("made disk {} ({})", disk.slot, disk.id)),
            None => judged(format!("not made: {}", reply.words())),
        },
        Probe::DuplicateSlot => {
            let slot = plan.slot(Name::A);
            if new_disks(before, after, plan, Name::A).is_empty() {
                with_side_effects(refused("AlreadyExists"), before, after)
            } else {
                let mut judged = judged(format!(
                    "accepted: slot {slot} now holds {} disks",
                    after.disks_in(slot.as_str()).count()
                ));
                judged.shows = Some(Quirk::DuplicateSlots);
                judged
            }
        }
        Probe::ExistingFile | Probe::LeftoverImage => {
            let slot = if step.probe == Probe::ExistingFile {
                Name::C
            } else {
                Name::D
            };
            match new_disks(before, after, plan, slot).first() {
                None => with_side_effects(refused("AlreadyExists"), before, after),
                Some(disk) => {
                    let mut judged = judged(adoption(before, after, image_a, &disk.id));
                    judged.shows = Some(Quirk::ReuseExistingFile);
                    judged
                }
            }
        }
        Probe::MissingId | Probe::MissingName => {
            if reply.is_silent_success() {
                let mut judged = judged("no error: removing a missing item passes silently".into());
                judged.unmatched = Some(format!(
                    "{}: removing a missing item passes silently",
                    step.probe.id()
                ));
                judged
            } else {
                refused("NotFound")
            }
        }
        Probe::NoSpace => match new_disks(before, after, plan, Name::Big).first() {
            None => with_side_effects(refused("NoSpace"), before, after),
            Some(disk) => {
                let mut judged = judged(format!(
                    "accepted: made disk {} of {} bytes without a space check; removed at once",
                    disk.id,
                    disk.file_size.unwrap_or(0)
                ));
                judged.unmatched =
                    Some("no-space: an add far larger than the pool was accepted".into());
                judged
            }
        },
        Probe::RemoveKeepsImage => {
            let gone = baseline.is_some_and(|id| after.disk(id).is_none());
            let kept = after.file(image_a).is_some();
            let (outcome, unmatched) = match (gone, kept) {
                (true, true) => ("removed; its image stays, as documented".to_owned(), None),
                (true, false) => (
                    "removed, and its image went with it".to_owned(),
                    Some("remove-keeps-image: removing a disk deleted its image too".to_owned()),
                ),
                (false, _) => (
                    format!("not removed: {}", reply.words()),
                    Some(format!(
                        "remove-keeps-image: the disk was not removed ({})",
                        reply.words()
                    )),
                ),
            };
            let mut judged = judged(outcome);
            judged.unmatched = unmatched;
            judged
        }
    }
}

/// How the client reads a refusal's words (a REST rejection is already read).
fn read(reply: &Reply, expected: &'static str) -> Reading {
    let client_reads = match reply {
        Reply::Rejected { kind, .. } => kind,
        Reply::Answer { .. } | Reply::NoAnswer { .. } => classify_device_text(&reply.words())
            .as_ref()
            .map_or("unrecognised", kind_name),
    };
    Reading {
        client_reads,
        expected,
    }
}

/// Disks in `name`'s slot that are in `after` but not in `before`.
fn new_disks<'a>(
    before: &DeviceState,
    after: &'a DeviceState,
    plan: &Plan,
    name: Name,
) -> Vec<&'a StateDisk> {
    let slot = plan.slot(name);
    after
        .disks
        .iter()
        .filter(|d| d.slot == slot.as_str() && before.disk(&d.id).is_none())
        .collect()
}

/// A refusal that still changed something: a new file, or a file whose size changed.
fn with_side_effects(mut judged: Judged, before: &DeviceState, after: &DeviceState) -> Judged {
    let mut effects = Vec::new();
    for file in &after.files {
        match before.file(&file.name) {
            None => effects.push(format!("left a new file {}", file.name)),
            Some(old) if old.size != file.size => effects.push(format!(
                "changed the size of {} from {} to {} bytes",
                file.name, old.size, file.size
            )),
            Some(_) => {}
        }
    }
    if !effects.is_empty() {
        judged.outcome = format!("{}; but it {}", judged.outcome, effects.join(" and "));
        judged.unmatched = Some(format!(
            "{}: a refused add {}",
            judged.probe.id(),
            effects.join(" and ")
        ));
    }
    judged
}

/// What an add that took an existing image did to it.
fn adoption(before: &DeviceState, after: &DeviceState, image: &str, id: &str) -> String {
    let (old, new) = (before.file(image), after.file(image));
    let size = match (old, new) {
        (Some(old), Some(new)) if old.size == new.size => format!(
            "size kept at {} bytes (the add asked for {})",
            new.size, ADOPTION_SIZE
        ),
        (Some(old), Some(new)) => format!("size changed from {} to {} bytes", old.size, new.size),
        _ => "image no longer listed".to_owned(),
    };
    let data = match (old, new) {
        (Some(old), Some(new)) if old.last_modified == new.last_modified => {
            "last-modified unchanged, so its data is most likely kept"
        }
        (Some(_), Some(_)) => "last-modified changed: the image may have been rewritten",
        _ => "its data cannot be judged",
    };
    format!("accepted: disk {id} adopted the existing image {image}; {size}; {data}")
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
