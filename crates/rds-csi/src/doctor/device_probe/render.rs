//! The report a user pastes into an issue (text) or a program reads (`--json`), and the notice
//! printed before the first change (pure).

use std::fmt::Write as _;

use clap::ValueEnum as _;
use rds_sim::Quirk;
use serde::Serialize;

use super::cleanup::CleanupReport;
use super::findings::{DeviceState, Exchange, Findings, Probe, Reply};
use super::judge::{Allocation, Judged, Verdict};
use super::plan::{IMAGE_SIZE, Plan};
use crate::doctor::report::bytes;

/// Where issues are filed.
pub const ISSUES: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/issues");

/// What the device said about itself, and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    pub routeros: String,
    pub board: Option<String>,
    pub identity: String,
    pub transport: &'static str,
    /// `address:port`.
    pub target: String,
}

/// Whether a probe ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Progress {
    Ran,
    Skipped,
    /// The run stopped before it.
    NotReached,
}

/// One probe in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeEntry {
    pub id: &'static str,
    pub title: &'static str,
    pub status: Progress,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<Exchange>,
    /// The run's items afterwards, when they could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<DeviceState>,
    /// The meaning (or why it was skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Judged>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The pool's numbers around the first add.
#[derive(Debug, Clone, Serialize)]
pub struct PoolEntry {
    pub size: u64,
    pub free_before: Option<u64>,
    pub free_after: Option<u64>,
    pub allocation: Option<Allocation>,
}

/// Everything one run found, in the order it is shown.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub version: &'static str,
    pub device: DeviceInfo,
    pub tag: String,
    pub image_prefix: String,
    /// Every probe ran (or was skipped for a stated reason).
    pub completed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub probes: Vec<ProbeEntry>,
    pub pool: PoolEntry,
    pub cleanup: CleanupReport,
    /// The snapshot methods, when the run got to them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<super::methods::MethodsReport>,
    pub matching_quirks: Vec<Quirk>,
    /// What the device did that no simulator quirk plays.
    pub unmatched: Vec<String>,
}

impl ProbeReport {
    pub fn new(
        device: DeviceInfo,
        plan: &Plan,
        findings: Findings,
        verdict: Verdict,
        cleanup: CleanupReport,
        methods: Option<super::methods::MethodsReport>,
    ) -> Self {
        let mut judged = verdict.probes.into_iter();
        let probes = Probe::ALL
            .into_iter()
            .map(|probe| {
                let entry = |status| ProbeEntry {
                    id: probe.id(),
                    title: probe.title(),
                    status,
                    exchange: None,
                    after: None,
                    outcome: None,
                    skipped: None,
                };
                if let Some(step) = findings.step(probe) {
                    ProbeEntry {
                        exchange: Some(step.exchange.clone()),
                        after: step.after.clone(),
                        outcome: judged.find(|j| j.probe == probe),
                        ..entry(Progress::Ran)
                    }
                } else if let Some((_, reason)) = findings.skipped.iter().find(|s| s.0 == probe) {
                    ProbeEntry {
                        skipped: Some(reason.clone()),
                        ..entry(Progress::Skipped)
                    }
                } else {
                    entry(Progress::NotReached)
                }
            })
            .collect();
        Self {
            version: env!("CARGO_PKG_VERSION"),
            device,
            tag: plan.tag().to_owned(),
            image_prefix: plan.image_prefix(),
            completed: findings.stopped.is_none(),
            stopped: findings.stopped,
            probes,
            pool: PoolEntry {
                size: findings.pool_size,
                free_before: findings.free_before,
                free_after: findings.free_after,
                allocation: verdict.allocation,
            },
            cleanup,
            methods,
            matching_quirks: verdict.quirks,
            unmatched: verdict.unmatched,
        }
    }

    /// The probe ran to its end and left nothing behind.
    pub fn succeeded(&self) -> bool {
        self.completed
            && self.cleanup.clean
            && self.methods.as_ref().is_none_or(|m| m.left.is_empty())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The text report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let d = &self.device;
        let _ = writeln!(out, "rds-csi doctor --probe-device {}", self.version);
        let _ = writeln!(
            out,
            "device:    RouterOS {}, board {}, identity {}",
            d.routeros,
            d.board.as_deref().unwrap_or("unknown"),
            d.identity
        );
        let _ = writeln!(out, "transport: {} to {}", d.transport, d.target);
        let _ = writeln!(
            out,
            "names:     slots {}-*, images {}-*.img",
            self.tag, self.image_prefix
        );
        let mut previous = None;
        for (index, probe) in self.probes.iter().enumerate() {
            let _ = writeln!(out, "\n{}. {}: {}", index + 1, probe.id, probe.title);
            render_probe(&mut out, probe, previous);
            previous = probe.after.as_ref().or(previous);
        }
        if let Some(methods) = &self.methods {
            out.push_str(&methods.render());
        }
        let _ = writeln!(out, "\nimage allocation: {}", self.pool.describe());
        if let Some(stopped) = &self.stopped {
            let _ = writeln!(out, "stopped:   {stopped}");
        }
        let _ = writeln!(out, "cleanup:   {}", self.cleanup.describe());
        let quirks = quirk_list(&self.matching_quirks);
        if self.completed {
            let _ = writeln!(out, "matching quirks: {quirks}");
        } else {
            let _ = writeln!(
                out,
                "matching quirks: {quirks} (in what ran before the stop)"
            );
        }
        if !self.unmatched.is_empty() {
            let _ = writeln!(out, "not played by any quirk:");
            for line in &self.unmatched {
                let _ = writeln!(out, "  - {line}");
            }
        }
        let _ = writeln!(
            out,
            "\nPlease paste this report into an issue: {ISSUES} (it names no secret)."
        );
        out
    }
}

const FIELD: &str = "   ";

/// One probe; its read-back is shown as `unchanged` when it equals `previous`.
fn render_probe(out: &mut String, probe: &ProbeEntry, previous: Option<&DeviceState>) {
    match probe.status {
        Progress::NotReached => {
            let _ = writeln!(out, "{FIELD}not reached: the run stopped before it");
        }
        Progress::Skipped => {
            let reason = probe.skipped.as_deref().unwrap_or("");
            let _ = writeln!(out, "{FIELD}skipped: {reason}");
        }
        Progress::Ran => {
            if let Some(exchange) = &probe.exchange {
                let _ = writeln!(out, "{FIELD}command: {}", exchange.command);
                match &exchange.reply {
                    Reply::Answer {
                        text,
                        stderr,
                        exit_status,
                    } => {
                        let _ = writeln!(out, "{FIELD}reply:   {text:?}");
                        if !stderr.is_empty() {
                            let _ = writeln!(out, "{FIELD}stderr:  {stderr:?}");
                        }
                        let exit = exit_status.map_or("none (REST)".to_owned(), |s| s.to_string());
                        let _ = writeln!(out, "{FIELD}exit:    {exit}");
                    }
                    Reply::Rejected { kind, message } => {
                        let _ = writeln!(out, "{FIELD}reply:   REST error {message:?} ({kind})");
                    }
                    Reply::NoAnswer { error } => {
                        let _ = writeln!(out, "{FIELD}reply:   none: {error}");
                    }
                }
            }
            let after = match &probe.after {
                None => "could not be read".to_owned(),
                Some(after) if Some(after) == previous => "unchanged".to_owned(),
                Some(after) => describe_state(after),
            };
            let _ = writeln!(out, "{FIELD}after:   {after}");
            if let Some(judged) = &probe.outcome {
                let _ = writeln!(out, "{FIELD}outcome: {}", judged.outcome);
                if let Some(reading) = &judged.reading {
                    let mark = if reading.as_expected() {
                        "as expected"
                    } else {
                        "NOT the meaning the driver relies on"
                    };
                    let _ = writeln!(
                        out,
                        "{FIELD}client:  reads {} (expected {}): {mark}",
                        reading.client_reads, reading.expected
                    );
                }
                if let Some(quirk) = judged.shows {
                    let _ = writeln!(out, "{FIELD}quirk:   {}", quirk_name(quirk));
                }
            }
        }
    }
}

/// The run's items, one phrase each.
fn describe_state(state: &DeviceState) -> String {
    if state.is_empty() {
        return "nothing of the run".into();
    }
    let disks = state
        .disks
        .iter()
        .map(|d| match (&d.file_path, d.file_size) {
            (Some(path), Some(size)) => format!("disk {} {} on {path} ({size} B)", d.slot, d.id),
            _ => format!("disk {} {} of type {}", d.slot, d.id, d.kind),
        });
    let files = state
        .files
        .iter()
        .map(|f| format!("file {} ({} B)", f.name, f.size));
    disks.chain(files).collect::<Vec<_>>().join("; ")
}

impl PoolEntry {
    fn describe(&self) -> String {
        let (Some(before), Some(after), Some(allocation)) =
            (self.free_before, self.free_after, self.allocation)
        else {
            return "not judged: the pool's free space could not be read around the first add"
                .into();
        };
        let verdict = match allocation {
            Allocation::Sparse => "sparse: free space did not drop by the image's size",
            Allocation::Allocated => "allocated up front: free space dropped by the image's size",
            Allocation::Inconclusive => {
                "unclear: free space moved by more than the image (other writes on the pool?)"
            }
        };
        format!("pool free {before} B before the {IMAGE_SIZE} B add, {after} B after: {verdict}")
    }
}

impl CleanupReport {
    fn describe(&self) -> String {
        let mut text = if self.clean {
            format!(
                "removed {} item(s); nothing of the run is left",
                self.removed.len()
            )
        } else {
            format!(
                "INCOMPLETE: removed {} item(s); left or possibly left on the device: {}",
                self.removed.len(),
                self.left.join(", ")
            )
        };
        // A device that stopped answering fails every round the same way: say it once.
        let mut errors = self.errors.iter().peekable();
        while let Some(error) = errors.next() {
            let mut times = 1;
            while errors.next_if_eq(&error).is_some() {
                times += 1;
            }
            let _ = write!(text, "\n           {error}");
            if times > 1 {
                let _ = write!(text, " ({times} times)");
            }
        }
        text
    }
}

/// A quirk as `rds-csi sim --quirks` names it.
pub fn quirk_name(quirk: Quirk) -> String {
    quirk
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_else(|| format!("{quirk:?}"))
}

fn quirk_list(quirks: &[Quirk]) -> String {
    if quirks.is_empty() {
        return "none".into();
    }
    quirks
        .iter()
        .map(|q| quirk_name(*q))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Said before the first change, so nobody is surprised by what appears on the device.
pub fn announcement(plan: &Plan, target: &str, transport: &str) -> String {
    let tag = plan.tag();
    format!(
        "rds-csi doctor --probe-device changes the RDS at {target} ({transport}) for a few seconds:\n\
         - it makes throwaway file disks in slots {tag}-*, with {size} images\n  \
         {prefix}-*.img, never exported (nvme-tcp-export=no);\n\
         - it asks for what RouterOS should refuse (a taken slot, an image in use, a missing\n  \
         item, a disk four times the pool's size) and records how the device answers;\n\
         - at the end it removes everything named {tag}-*, also when interrupted\n  \
         or failing (best effort), and says what it could not remove.\n\
         No other disk or file is touched.\n",
        prefix = plan.image_prefix(),
        size = bytes(IMAGE_SIZE),
    )
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
