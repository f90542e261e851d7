//! The end of every run, whether it passed, failed or was interrupted: undo through CSI what
//! the ledger says may still exist, remove directly what CSI could not, stop the processes,
//! check the host, and remove the work directory when nothing is left in it.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::{Csi, E2eError, PathLayout, VolumeMode};
use tokio::time::Instant;
use tonic::Code;

use crate::error::{DemoError, io_context};
use crate::ledger::Undo;
use crate::leftovers::{host_leftovers, host_view};
use crate::plan::Step;
use crate::session::{CONTROLLER, NODE, SIMULATOR, Session};
use crate::signals::Signals;
use crate::sweep;
use crate::term::{Reporter, StepFailure};

/// All CSI undo calls together; a plugin that hangs must not hold the cleanup longer.
const UNDO_BUDGET: Duration = Duration::from_secs(60);
/// Retries of one undo call.
const CALL_BUDGET: Duration = Duration::from_secs(20);
/// How long file I/O left running by an interrupted step may take to end.
const IO_WAIT: Duration = Duration::from_secs(30);
/// Time a process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Worth another try: the plugin is busy with the volume (ABORTED, while a call the demo
/// gave up on still runs) or briefly unreachable.
fn retryable(error: &E2eError) -> bool {
    match error {
        E2eError::Call { status, .. } => matches!(
            status.code(),
            Code::Aborted | Code::Unavailable | Code::DeadlineExceeded
        ),
        E2eError::Timeout { .. } => true,
        _ => false,
    }
}

async fn undo_one(csi: &Csi, layout: &PathLayout, undo: &Undo) -> Result<(), E2eError> {
    let give_up = Instant::now() + CALL_BUDGET;
    let mut pause = Duration::from_millis(100);
    loop {
        let outcome = match undo {
            Undo::Unpublish { id, mode } => csi.node_unpublish(id, &layout.target(id, mode)).await,
            Undo::Unstage { id } => match csi.node_unstage(id, &layout.staging(id)).await {
                // The controller's side of the detach follows the node's, as a CO does it.
                Ok(()) => csi.controller_unpublish(id).await,
                failed => failed,
            },
            Undo::Delete { id } => csi.delete_volume(id).await,
            Undo::DeleteSnapshot { id } => csi.delete_snapshot(id).await,
        };
        match outcome {
            Err(error) if retryable(&error) && Instant::now() < give_up => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Undoes through CSI what the ledger lists, node-side calls (unpublish, unstage) or
/// deletions; one note per call.
async fn undo_through_csi(s: &mut Session, node_side: bool, notes: &mut Vec<String>) {
    let Some(csi) = s.csi.clone() else {
        return;
    };
    for undo in s.ledger.undo_plan() {
        if undo.is_node_side() != node_side {
            continue;
        }
        match undo_one(&csi, &s.layout, &undo).await {
            Ok(()) => {
                s.ledger.undone(&undo);
                notes.push(format!("{} {}: done", undo.call(), undo.id()));
            }
            Err(error) => notes.push(format!("{} {}: {error}", undo.call(), undo.id())),
        }
    }
}

/// One phase of CSI undo calls, within [`UNDO_BUDGET`]; a signal cuts it short. Returns
/// whether it was cut short.
async fn undo_phase(
    s: &mut Session,
    signals: &mut Signals,
    node_side: bool,
    notes: &mut Vec<String>,
) -> bool {
    let has_work = s
        .ledger
        .undo_plan()
        .iter()
        .any(|u| u.is_node_side() == node_side);
    if !has_work {
        return false;
    }
    let plugin = if node_side { NODE } else { CONTROLLER };
    if !s.running(plugin) {
        notes.push(format!(
            "the {plugin} is not running: its CSI calls are skipped"
        ));
        return false;
    }
    let mut phase_notes = Vec::new();
    let cut_short = tokio::select! {
        finished = tokio::time::timeout(UNDO_BUDGET, undo_through_csi(s, node_side, &mut phase_notes)) => {
            finished.err().map(|_| format!("CSI calls stopped after {} s", UNDO_BUDGET.as_secs()))
        }
        received = signals.recv() => {
            Some(format!("{}: skipped the remaining CSI calls", received.name))
        }
    };
    notes.append(&mut phase_notes);
    let stopped = cut_short.is_some();
    notes.extend(cut_short);
    stopped
}

/// Waits for file I/O a dropped step left running on a volume: it holds files open there,
/// and nothing can be unmounted under it.
async fn wait_for_io(s: &mut Session, notes: &mut Vec<String>) {
    let Some(io) = s.io_in_flight.take() else {
        return;
    };
    let started = std::time::Instant::now();
    match tokio::time::timeout(IO_WAIT, io).await {
        Ok(_) => notes.push(format!(
            "waited {} for the file I/O under way to finish",
            crate::render::duration(started.elapsed())
        )),
        Err(_) => notes.push(format!(
            "file I/O still running after {} s; unmounting may fail",
            IO_WAIT.as_secs()
        )),
    }
}

/// Volumes on the simulator the ledger does not know (made by hand with csi-e2e during
/// `--keep`) join it, so that they are undone through CSI too. Their mode is read from
/// where kubelet's paths would be: a device node below the block directory means block.
/// Returns the NQNs of every disk the simulator holds.
async fn adopt_volumes(s: &mut Session) -> BTreeSet<String> {
    let mut nqns = BTreeSet::new();
    if !s.running(SIMULATOR) {
        return nqns;
    }
    let Ok(client) = s.rds_client(Duration::from_secs(5)).await else {
        return nqns;
    };
    let Ok(disks) = client.list_disks("").await else {
        return nqns;
    };
    for disk in disks {
        let mode = if s.layout.target(&disk.slot, &VolumeMode::Block).exists() {
            VolumeMode::Block
        } else {
            VolumeMode::Filesystem {
                fs_type: String::new(),
            }
        };
        s.ledger.adopt(&disk.slot, mode);
        nqns.insert(disk.nqn);
    }
    nqns
}

/// Runs the teardown as the last step. `remove_work_dir` is false after a failure, to keep
/// the logs; the directory is kept anyway, with a message, while anything is left in it.
pub async fn run(
    rep: &mut Reporter,
    s: &mut Session,
    signals: &mut Signals,
    remove_work_dir: bool,
) -> Result<(), StepFailure> {
    let mut notes = Vec::new();
    let outcome = rep
        .step(Step::Shutdown, async {
            // Unpublish and unstage through the node, remove directly what it could not,
            // then delete through the controller (a volume still attached would be deleted
            // from under its loop device or NVMe controller). A second signal skips the
            // remaining CSI calls; the direct cleanup runs regardless.
            wait_for_io(s, &mut notes).await;
            let mut nqns = adopt_volumes(s).await;
            let cut_short = undo_phase(s, signals, true, &mut notes).await;
            nqns.extend(s.nqns());
            let found = host_leftovers(&host_view().await?, &s.work.root, &nqns);
            for done in sweep::force(&found).await {
                notes.push(match done {
                    Ok(text) => format!("forced: {text}"),
                    Err(text) => format!("could not force: {text}"),
                });
            }
            if !cut_short {
                undo_phase(s, signals, false, &mut notes).await;
            }
            let mut stopped = Vec::new();
            for child in s.children.iter_mut().rev() {
                stopped.push(child.stop(STOP_GRACE).await);
            }
            let left = host_leftovers(&host_view().await?, &s.work.root, &nqns);
            if !left.is_empty() {
                let list: Vec<String> = left.iter().map(ToString::to_string).collect();
                return Err(DemoError::Check(format!(
                    "left behind: {}; the work directory {} is kept (unmount before removing it)",
                    list.join("; "),
                    s.work.root.display()
                )));
            }
            let mut detail = if stopped.is_empty() {
                "nothing was running".to_owned()
            } else {
                stopped.join(", ")
            };
            if remove_work_dir {
                std::fs::remove_dir_all(&s.work.root)
                    .map_err(io_context(format!("removing {}", s.work.root.display())))?;
                detail.push_str("; work directory removed");
            } else {
                detail.push_str("; work directory kept");
            }
            Ok(((), detail))
        })
        .await;
    for note in &notes {
        rep.say(&format!("       {note}"));
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_or_unreachable_plugins_are_retried_and_refusals_are_not() {
        let call = |code| E2eError::Call {
            call: "NodeUnstageVolume",
            status: Box::new(tonic::Status::new(code, "x")),
        };
        assert!(retryable(&call(Code::Aborted)));
        assert!(retryable(&call(Code::Unavailable)));
        assert!(retryable(&E2eError::Timeout {
            call: "DeleteVolume",
            seconds: 65
        }));
        assert!(!retryable(&call(Code::FailedPrecondition)));
        assert!(!retryable(&E2eError::Check("x".into())));
    }
}
