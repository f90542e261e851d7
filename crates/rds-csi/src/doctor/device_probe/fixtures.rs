//! Recorded runs for the unit tests: what a faithful device answers, and the pieces to make
//! it answer otherwise.

use routeros::DirPath;

use super::findings::{DeviceState, Exchange, Findings, Probe, Reply, StateDisk, StateFile, Step};
use super::plan::{ADOPTION_SIZE, IMAGE_SIZE, MISSING_ID, Name, Plan};

pub fn plan() -> Plan {
    Plan::new(DirPath::try_from("storage-pool").unwrap(), 0x5eed)
}

pub fn disk(plan: &Plan, slot: Name, image: Name, id: &str) -> StateDisk {
    StateDisk {
        id: id.into(),
        slot: plan.slot(slot).to_string(),
        kind: "file".into(),
        file_path: Some(plan.image(image).to_string()),
        file_size: Some(IMAGE_SIZE),
    }
}

pub fn file(plan: &Plan, image: Name, size: u64) -> StateFile {
    StateFile {
        id: format!("*F{}", image as u8),
        name: plan.image(image).to_string(),
        size,
        last_modified: Some("2026-01-02 03:04:05".into()),
    }
}

pub fn state(disks: Vec<StateDisk>, files: Vec<StateFile>) -> DeviceState {
    DeviceState { disks, files }
}

/// SSH exec output: the text, exit status 0.
pub fn said(text: &str) -> Reply {
    Reply::Answer {
        text: text.into(),
        stderr: String::new(),
        exit_status: Some(0),
    }
}

pub fn step(probe: Probe, command: String, reply: Reply, after: DeviceState) -> Step {
    Step {
        probe,
        exchange: Exchange { command, reply },
        after: Some(after),
    }
}

/// The run on a device that refuses everything it should, in the words the client knows.
pub fn faithful(plan: &Plan) -> Findings {
    let with_a = state(
        vec![disk(plan, Name::A, Name::A, "*1")],
        vec![file(plan, Name::A, IMAGE_SIZE)],
    );
    let image_only = state(Vec::new(), vec![file(plan, Name::A, IMAGE_SIZE)]);
    let slot_a = plan.slot(Name::A);
    let steps = vec![
        step(
            Probe::Baseline,
            plan.add(Name::A, Name::A, IMAGE_SIZE),
            said("*1\r\n"),
            with_a.clone(),
        ),
        step(
            Probe::DuplicateSlot,
            plan.add(Name::A, Name::B, IMAGE_SIZE),
            said(&format!(
                "failure: disk with slot {slot_a} already exists\r\n"
            )),
            with_a.clone(),
        ),
        step(
            Probe::ExistingFile,
            plan.add(Name::C, Name::A, ADOPTION_SIZE),
            said("failure: file already exists\r\n"),
            with_a.clone(),
        ),
        step(
            Probe::MissingId,
            format!("/disk remove {MISSING_ID}"),
            said("no such item\r\n"),
            with_a.clone(),
        ),
        step(
            Probe::MissingName,
            plan.remove_by_name(Name::Missing),
            said("no such item\r\n"),
            with_a.clone(),
        ),
        step(
            Probe::NoSpace,
            plan.add(Name::Big, Name::Big, 4 << 40),
            said("failure: not enough free space on storage-pool\r\n"),
            with_a,
        ),
        step(
            Probe::RemoveKeepsImage,
            "/disk remove *1".into(),
            said(""),
            image_only.clone(),
        ),
        step(
            Probe::LeftoverImage,
            plan.add(Name::D, Name::A, ADOPTION_SIZE),
            said("failure: file already exists\r\n"),
            image_only,
        ),
    ];
    Findings {
        pool_size: 1 << 40,
        free_before: Some(1 << 39),
        free_after: Some((1 << 39) - IMAGE_SIZE),
        steps,
        ..Findings::default()
    }
}

/// `findings` with `probe`'s step changed by `change`.
pub fn altered(mut findings: Findings, probe: Probe, change: impl FnOnce(&mut Step)) -> Findings {
    let step = findings
        .steps
        .iter_mut()
        .find(|s| s.probe == probe)
        .expect("the probe ran");
    change(step);
    findings
}
