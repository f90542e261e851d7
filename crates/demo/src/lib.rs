//! `rds-csi demo`: runs the RDS simulator, the CSI controller and the CSI node plugin on this
//! machine as child processes of the same binary, and drives them over CSI gRPC as
//! Kubernetes would: a filesystem volume (stage, publish, write and read back, stats,
//! expand), a raw block volume, deletion, and a check that nothing is left behind.
//!
//! Pure parts ([`plan`], [`render`], [`ledger`], judgements in [`preflight`],
//! [`leftovers`] and [`usage`]) are apart from the parts that act ([`flow`], [`procs`],
//! [`sweep`], [`teardown`], [`term`]).

pub mod error;
pub mod flow;
pub mod ledger;
pub mod leftovers;
pub mod metrics;
pub mod plan;
pub mod preflight;
pub mod procs;
pub mod render;
pub mod session;
pub mod signals;
pub mod snapshot;
pub mod start;
pub mod sweep;
pub mod teardown;
pub mod term;
pub mod usage;

use std::process::ExitCode;

use driver::capacity::parse_size;

use crate::plan::{FsKind, Sizes, plan};
use crate::render::{bytes, keep_instructions, logs_pointer};
use crate::session::{Session, WorkDir};
use crate::signals::{Received, Signals};
use crate::term::{Reporter, StepFailure, Style};

/// Exit status when the demo cannot run here (not root, tools missing, bad size).
pub const EXIT_CANNOT_RUN: u8 = 2;

/// Flags of `rds-csi demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Leave everything running at the end, with a filesystem volume published, print how to
    /// reach it, and clean up on Ctrl-C.
    #[arg(long)]
    pub keep: bool,

    /// Size of each volume (bytes, or with Ki, Mi, Gi, Ti); the filesystem volume is then
    /// expanded to twice this.
    #[arg(long, default_value = "1Gi", value_parser = parse_size)]
    pub size: u64,

    /// Filesystem of the filesystem volume.
    #[arg(long, value_enum, default_value_t = FsKind::Ext4)]
    pub fs: FsKind,
}

/// How the steps ended.
enum Outcome {
    Passed,
    Failed(StepFailure),
    Interrupted(Received),
}

/// Runs the demonstration. Exit status: 0 when every step passed (and, with `--keep`, the
/// cleanup after Ctrl-C too), 1 when a step failed, 2 when it cannot run here, 128 + the
/// signal's number when interrupted.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let facts = preflight::gather(args.fs);
    if let Some(refusal) = preflight::refusal(&facts) {
        eprintln!("{refusal}");
        return Ok(ExitCode::from(EXIT_CANNOT_RUN));
    }
    let sizes = match Sizes::new(args.size, args.fs) {
        Ok(sizes) => sizes,
        Err(problem) => {
            eprintln!("rds-csi demo: {problem}");
            return Ok(ExitCode::from(EXIT_CANNOT_RUN));
        }
    };
    // Before any child exists: from here on a signal means "clean up", not "die".
    let mut signals = Signals::listen()?;
    let exe = std::env::current_exe()?;
    let work = WorkDir::create()?;
    let mut rep = Reporter::new(Style::detect(), plan(args.keep));
    let paint = rep.paint();
    rep.say(&paint.bold(&format!(
        "rds-csi demo: the RDS simulator, the CSI controller and the CSI node plugin on this \
         machine, driven over CSI gRPC as Kubernetes drives them ({} volumes of {}).",
        args.fs,
        bytes(sizes.volume)
    )));
    rep.say(&format!(
        "work directory: {} (logs: sim.log, controller.log, node.log)",
        work.root.display()
    ));
    if let Some(reason) = facts.growth_blocked(args.fs) {
        rep.say(&paint.yellow(&format!(
            "notice: NodeExpandVolume will be skipped: {reason}"
        )));
    }
    let mut s = Session::new(exe, args.fs, sizes, args.keep, facts, work);

    let outcome = tokio::select! {
        finished = flow::run(&mut rep, &mut s) => match finished {
            Ok(()) => Outcome::Passed,
            Err(failure) => Outcome::Failed(failure),
        },
        received = signals.recv() => Outcome::Interrupted(received),
    };
    if let Outcome::Interrupted(received) = &outcome {
        rep.interrupted(received.name);
        rep.say(&paint.yellow(&format!("{}: cleaning up", received.name)));
    }
    if let (Outcome::Passed, Some(kept)) = (&outcome, &s.kept) {
        rep.say(&keep_instructions(paint, kept));
        let received = signals.recv().await;
        rep.say(&format!("{}: cleaning up", received.name));
    }

    let keep_logs = matches!(outcome, Outcome::Failed(_));
    let teardown = teardown::run(&mut rep, &mut s, &mut signals, !keep_logs).await;

    rep.say(&paint.bold("\nSummary"));
    rep.say(&render::summary(rep.plan(), rep.records()));
    if let Some(fabric) = s.fabric {
        rep.say(&fabric.describe());
    }
    if let Some(breakdown) = &s.breakdown {
        rep.say(&paint.bold("NodeStageVolume of the filesystem volume, as the node measured it:"));
        rep.say(&render::breakdown(breakdown));
    }

    let code = match (&outcome, &teardown) {
        (Outcome::Passed, Ok(())) => {
            rep.say(&paint.green(&render::verdict(rep.records())));
            0
        }
        (Outcome::Failed(failure), _) => {
            rep.say(&paint.red(&format!(
                "rds-csi demo failed at \"{}\": {}",
                failure.step.label(),
                failure.reason
            )));
            let kept = s.work.root.exists();
            rep.say(&logs_pointer(&s.work.root, &s.work.logs(), kept));
            1
        }
        (Outcome::Interrupted(received), _) => received.exit_code(),
        (Outcome::Passed, Err(failure)) => {
            rep.say(&paint.red(&format!(
                "rds-csi demo could not clean up: {}",
                failure.reason
            )));
            1
        }
    };
    if let (Outcome::Interrupted(_), Err(failure)) = (&outcome, &teardown) {
        rep.say(&paint.red(&format!("the cleanup was incomplete: {}", failure.reason)));
    }
    Ok(ExitCode::from(code))
}
