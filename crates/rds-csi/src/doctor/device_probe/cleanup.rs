//! Removing what the run made. It removes only what a read-back just listed under the run's
//! own names (never what it believes it made: an interrupted command may have run or not),
//! disks before images, and reads back again until nothing is left or it gives up.

use std::time::Duration;

use routeros::{Client, FilePath, ItemId};
use serde::Serialize;

use super::findings::{DeviceState, Removal, StateDisk, StateFile};
use super::plan::Plan;
use super::probes::read_state;

/// Rounds of read-back and removal before giving up.
const ROUNDS: usize = 3;
/// Pause before a round that follows a failure (a device that dropped a connection may need
/// a moment).
const PAUSE: Duration = Duration::from_secs(1);

/// What the final cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    pub removed: Vec<String>,
    /// Removals and read-backs that failed.
    pub errors: Vec<String>,
    /// What is (or may be) left on the device. Empty only when a read-back showed nothing.
    pub left: Vec<String>,
    /// A last read-back showed nothing of the run.
    pub clean: bool,
}

/// Removes everything of the run, in rounds, and says what is left.
pub async fn clean(client: &Client, plan: &Plan) -> CleanupReport {
    let mut report = CleanupReport::default();
    let mut last_seen: Option<DeviceState> = None;
    let mut failed = false;
    for round in 0..=ROUNDS {
        if failed {
            tokio::time::sleep(PAUSE).await;
        }
        let state = match read_state(client, plan).await {
            Ok(state) => state,
            Err(error) => {
                report.errors.push(format!("reading what is left: {error}"));
                failed = true;
                continue;
            }
        };
        if state.is_empty() {
            report.clean = true;
            return report;
        }
        if round == ROUNDS {
            last_seen = Some(state);
            break;
        }
        let removal = remove(client, &state.disks, &state.files).await;
        failed = !removal.failed.is_empty();
        report.removed.extend(removal.removed);
        report.errors.extend(removal.failed);
        last_seen = Some(state);
    }
    report.left = match last_seen {
        Some(state) => state.names(),
        None => patterns(plan),
    };
    report
}

impl CleanupReport {
    /// The cleanup was given up before a read-back showed nothing.
    pub fn abandoned(plan: &Plan, why: &str) -> Self {
        Self {
            errors: vec![why.to_owned()],
            left: patterns(plan),
            ..Self::default()
        }
    }

    /// The run made nothing (it stopped before its first change).
    pub fn nothing_made() -> Self {
        Self {
            clean: true,
            ..Self::default()
        }
    }
}

/// What may be left when nothing could be read: the run's names.
fn patterns(plan: &Plan) -> Vec<String> {
    vec![
        format!("any disk whose slot starts {}-", plan.tag()),
        format!("any file whose name starts {}-", plan.image_prefix()),
    ]
}

/// Removes `disks` (by id), then `files`.
pub async fn remove(client: &Client, disks: &[StateDisk], files: &[StateFile]) -> Removal {
    let mut removal = Removal::default();
    for disk in disks {
        let name = format!("disk {} ({})", disk.slot, disk.id);
        let outcome = match ItemId::try_from(disk.id.as_str()) {
            Ok(id) => client.remove_disk(&id, None).await,
            Err(error) => Err(error),
        };
        match outcome {
            // Listed a moment ago and gone now: what the removal was for.
            Ok(_) | Err(routeros::Error::NotFound(_)) => removal.removed.push(name),
            Err(error) => removal.failed.push(format!("{name}: {error}")),
        }
    }
    for file in files {
        let name = format!("file {}", file.name);
        let outcome = match FilePath::try_from(file.name.as_str()) {
            Ok(path) => client.remove_file(&path).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => removal.removed.push(name),
            Err(error) => removal.failed.push(format!("{name}: {error}")),
        }
    }
    removal
}
