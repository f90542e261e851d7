//! Everything the demo prints, as strings: step lines, the summary table, the NodeStageVolume
//! breakdown and the `--keep` instructions. No I/O here; [`crate::term`] writes these out.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::StageBreakdown;

use crate::plan::Step;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Failed,
    /// Stopped by SIGINT or SIGTERM while it ran.
    Interrupted,
    /// Not possible on this host (the reason is on its line).
    Skipped,
}

/// A step that ran, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub step: Step,
    pub took: Duration,
    pub status: Status,
}

/// ANSI colours, or nothing when the output is not a terminal (or NO_COLOR is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    pub colour: bool,
}

#[derive(Debug, Clone, Copy)]
enum Ansi {
    Bold = 1,
    Dim = 2,
    Red = 31,
    Green = 32,
    Yellow = 33,
}

impl Paint {
    fn apply(self, code: Ansi, text: &str) -> String {
        if self.colour {
            format!("\x1b[{}m{text}\x1b[0m", code as u8)
        } else {
            text.to_owned()
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.apply(Ansi::Bold, text)
    }

    pub fn dim(self, text: &str) -> String {
        self.apply(Ansi::Dim, text)
    }

    pub fn red(self, text: &str) -> String {
        self.apply(Ansi::Red, text)
    }

    pub fn green(self, text: &str) -> String {
        self.apply(Ansi::Green, text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.apply(Ansi::Yellow, text)
    }
}

/// `0.4 ms`, `12 ms`, `1.24 s`, `42.5 s`: enough digits to compare steps, no more.
pub fn duration(took: Duration) -> String {
    let ms = took.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 10_000.0 {
        format!("{:.2} s", ms / 1e3)
    } else {
        format!("{:.1} s", ms / 1e3)
    }
}

/// `1 GiB`, `64 MiB`, `1007.9 MiB`: binary units, exact when whole.
pub fn bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else {
                format!("{:.1} {unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} B")
}

fn mark(paint: Paint, status: Status) -> String {
    match status {
        Status::Ok => paint.green(" ok "),
        Status::Failed => paint.red("FAIL"),
        Status::Interrupted => paint.yellow("STOP"),
        Status::Skipped => paint.yellow("skip"),
    }
}

/// A step's time, or `-` for one that did not run.
fn time_column(status: Status, took: Duration) -> String {
    match status {
        Status::Skipped => "-".to_owned(),
        _ => duration(took),
    }
}

/// One finished step: `status  label  time  detail`, aligned.
pub fn step_line(paint: Paint, status: Status, step: Step, took: Duration, detail: &str) -> String {
    let width = Step::label_width();
    let detail = match status {
        Status::Ok => paint.dim(detail),
        Status::Failed => paint.red(detail),
        Status::Interrupted | Status::Skipped => paint.yellow(detail),
    };
    let line = format!(
        "{} {:<width$}  {:>8}  {detail}",
        mark(paint, status),
        step.label(),
        time_column(status, took)
    );
    line.trim_end().to_owned()
}

/// Frames of the spinner drawn while a step runs on a terminal.
pub const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// The line a running step shows on a terminal (redrawn in place).
pub fn spinner_line(frame: usize, step: Step, elapsed: Duration) -> String {
    let width = Step::label_width();
    format!(
        "  {}  {:<width$}  {:>8}",
        SPINNER[frame % SPINNER.len()],
        step.label(),
        duration(elapsed)
    )
}

/// The table at the end: every planned step with its time and result, then the total.
pub fn summary(plan: &[Step], records: &[StepRecord]) -> String {
    let width = Step::label_width();
    let mut out = format!("  {:<width$}  {:>8}  result\n", "step", "time");
    for step in plan {
        let (time, result) = match records.iter().find(|r| r.step == *step) {
            Some(record) => (
                time_column(record.status, record.took),
                match record.status {
                    Status::Ok => "ok",
                    Status::Failed => "FAILED",
                    Status::Interrupted => "interrupted",
                    Status::Skipped => "skipped",
                },
            ),
            None => ("-".to_owned(), "not run"),
        };
        let _ = writeln!(out, "  {:<width$}  {time:>8}  {result}", step.label());
    }
    let total: Duration = records.iter().map(|r| r.took).sum();
    let _ = writeln!(out, "  {:<width$}  {:>8}", "total", duration(total));
    out
}

/// The last line of a run in which no step failed.
pub fn verdict(records: &[StepRecord]) -> String {
    let skipped = records
        .iter()
        .filter(|r| r.status == Status::Skipped)
        .count();
    let passed = records.len() - skipped;
    match skipped {
        0 => format!("All {passed} steps passed."),
        n => format!("{passed} steps passed; {n} could not run on this host (see above)."),
    }
}

/// NodeStageVolume split into the external work (connect, device, blkid, mkfs, mount), the
/// driver's own work and gRPC, as the e2e crate tabulates it, indented under its heading.
pub fn breakdown(stage: &StageBreakdown) -> String {
    stage
        .table()
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect()
}

/// Why volumes go through loop devices instead of NVMe/TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopReason {
    /// No nvmet in configfs: the simulator cannot be a real NVMe/TCP target.
    NoTarget,
    /// No NVMe/TCP initiator (`/dev/nvme-fabrics`): the node cannot connect.
    NoInitiator,
    NoTargetNoInitiator,
    /// The kernel seemed to have both, but the simulator did not manage to use nvmet.
    SimulatorDeclined,
}

impl LoopReason {
    fn text(self) -> &'static str {
        match self {
            LoopReason::NoTarget => "no nvmet target support (/sys/kernel/config/nvmet)",
            LoopReason::NoInitiator => "no NVMe/TCP initiator (/dev/nvme-fabrics)",
            LoopReason::NoTargetNoInitiator => {
                "no nvmet target support and no NVMe/TCP initiator in this kernel"
            }
            LoopReason::SimulatorDeclined => {
                "the simulator could not export through nvmet (see sim.log)"
            }
        }
    }
}

/// How volumes reach the node in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fabric {
    NvmeTcp { port: u16 },
    Loop(LoopReason),
}

impl Fabric {
    /// The node's `--fabric` value.
    pub fn node_flag(self) -> &'static str {
        match self {
            Fabric::NvmeTcp { .. } => "nvme-tcp",
            Fabric::Loop(_) => "loop",
        }
    }

    /// The one notice printed when the loop fabric stands in for NVMe/TCP.
    pub fn notice(self) -> Option<String> {
        match self {
            Fabric::NvmeTcp { .. } => None,
            Fabric::Loop(reason) => Some(format!(
                "notice: {}, so volumes reach the node through loop devices over the \
                 simulator's files: the CSI calls, mkfs, mounts and device nodes are real, the \
                 NVMe/TCP hop is not (load nvmet-tcp and nvme-tcp to see it)",
                reason.text()
            )),
        }
    }

    /// One line saying what carried the data.
    pub fn describe(self) -> String {
        match self {
            Fabric::NvmeTcp { port } => format!(
                "fabric: NVMe/TCP, the kernel's initiator connected to the simulator's nvmet \
                 target on 127.0.0.1:{port}"
            ),
            Fabric::Loop(_) => "fabric: loop devices over the simulator's files (no NVMe/TCP \
                                here; a stand-in for demos and tests)"
                .to_owned(),
        }
    }
}

/// Where everything of a `--keep` run can be reached.
#[derive(Debug, Clone)]
pub struct KeepInfo {
    pub volume_id: String,
    pub fs: String,
    pub size: u64,
    pub target: PathBuf,
    pub controller: String,
    pub node: String,
    /// The `--work-dir` for csi-e2e (kubelet's directory in this run).
    pub kubelet_dir: PathBuf,
    pub ssh: SocketAddr,
    pub user: String,
    pub password_file: PathBuf,
    pub host_key: String,
    pub known_hosts: PathBuf,
    /// How to run csi-e2e: its path next to this binary, or its bare name.
    pub csi_e2e: String,
    pub work_dir: PathBuf,
    pub logs: Vec<PathBuf>,
}

fn file_names(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to try while everything runs, and how it ends.
pub fn keep_instructions(paint: Paint, info: &KeepInfo) -> String {
    let target = info.target.display();
    let connection = format!(
        "--controller {} --node {} --work-dir {}",
        info.controller,
        info.node,
        info.kubelet_dir.display()
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        paint.bold("Everything is still running (--keep). Have a look:")
    );
    let _ = writeln!(
        out,
        "  volume       {} ({}, {}) is published at\n               {target}\n               \
         try: df -h {target}; cat {target}/README.txt",
        info.volume_id,
        info.fs,
        bytes(info.size)
    );
    let _ = writeln!(
        out,
        "  the RDS      ssh -p {} -o UserKnownHostsFile={} {}@{} '/disk print'\n               \
         password in {}; host key {}",
        info.ssh.port(),
        info.known_hosts.display(),
        info.user,
        info.ssh.ip(),
        info.password_file.display(),
        info.host_key
    );
    let _ = writeln!(
        out,
        "  CSI sockets  controller {}\n               node       {}",
        info.controller, info.node
    );
    let _ = writeln!(
        out,
        "  as a CO      {} attach {connection} --name my-volume --size-mib 256\n               \
         {} detach {connection} --volume-id <id> --delete",
        info.csi_e2e, info.csi_e2e
    );
    let _ = writeln!(
        out,
        "  logs         {} in {}",
        file_names(&info.logs),
        info.work_dir.display()
    );
    let _ = writeln!(
        out,
        "{}",
        paint.bold("Press Ctrl-C to stop everything and clean up.")
    );
    out
}

/// Where the logs are after a failure, and whether the work directory is still there.
pub fn logs_pointer(work_dir: &Path, logs: &[PathBuf], kept: bool) -> String {
    if kept {
        format!(
            "logs: {} in {} (kept for you to read; remove it when done)",
            file_names(logs),
            work_dir.display()
        )
    } else {
        format!("logs: {} were in {}", file_names(logs), work_dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Paint = Paint { colour: false };

    #[test]
    fn durations_keep_a_few_significant_digits() {
        assert_eq!(duration(Duration::from_micros(420)), "0.4 ms");
        assert_eq!(duration(Duration::from_micros(12_400)), "12 ms");
        assert_eq!(duration(Duration::from_millis(999)), "999 ms");
        assert_eq!(duration(Duration::from_millis(1_236)), "1.24 s");
        assert_eq!(duration(Duration::from_millis(42_460)), "42.5 s");
    }

    #[test]
    fn byte_counts_are_exact_when_whole() {
        assert_eq!(bytes(1 << 30), "1 GiB");
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(1_056_858_112), "1007.9 MiB");
        assert_eq!(bytes(3 << 39), "1.5 TiB");
        assert_eq!(bytes(512), "512 B");
    }

    #[test]
    fn step_lines_align_and_carry_colour_only_when_asked() {
        let a = step_line(
            PLAIN,
            Status::Ok,
            Step::StartSimulator,
            Duration::from_millis(312),
            "x",
        );
        let b = step_line(
            PLAIN,
            Status::Failed,
            Step::RawIo,
            Duration::from_secs(2),
            "bad",
        );
        assert!(a.starts_with(" ok  start the RDS simulator "), "{a}");
        assert!(a.ends_with("312 ms  x"), "{a}");
        assert!(b.starts_with("FAIL raw I/O on the device node"), "{b}");
        assert_eq!(a.find("ms  x"), b.find(" s  bad"), "{a}\n{b}");
        assert!(!a.contains('\x1b'));
        let coloured = step_line(
            Paint { colour: true },
            Status::Failed,
            Step::RawIo,
            Duration::ZERO,
            "bad",
        );
        assert!(coloured.contains("\x1b[31mFAIL\x1b[0m"), "{coloured:?}");
        let bare = step_line(PLAIN, Status::Ok, Step::Shutdown, Duration::ZERO, "");
        assert_eq!(bare, bare.trim_end());
        let skipped = step_line(
            PLAIN,
            Status::Skipped,
            Step::ExpandNode,
            Duration::ZERO,
            "why",
        );
        assert!(skipped.starts_with("skip NodeExpandVolume"), "{skipped}");
        assert!(skipped.ends_with("  -  why"), "{skipped}");
    }

    #[test]
    fn the_spinner_cycles_through_its_frames() {
        let first = spinner_line(0, Step::StageFilesystem, Duration::from_millis(300));
        let wrapped = spinner_line(SPINNER.len(), Step::StageFilesystem, Duration::ZERO);
        assert!(first.contains('⠋') && first.contains("NodeStageVolume (filesystem)"));
        assert!(first.ends_with("300 ms"), "{first}");
        assert!(wrapped.contains('⠋'));
    }

    #[test]
    fn the_summary_lists_every_planned_step_and_the_total() {
        let plan = [Step::StartSimulator, Step::StageFilesystem, Step::Shutdown];
        let records = [
            StepRecord {
                step: Step::StartSimulator,
                took: Duration::from_millis(300),
                status: Status::Ok,
            },
            StepRecord {
                step: Step::StageFilesystem,
                took: Duration::from_millis(200),
                status: Status::Interrupted,
            },
        ];
        let table = summary(&plan, &records);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].trim_start().starts_with("step") && lines[0].ends_with("result"));
        assert!(lines[1].ends_with("300 ms  ok"), "{table}");
        assert!(lines[2].ends_with("200 ms  interrupted"), "{table}");
        assert!(lines[3].starts_with("  stop and clean up") && lines[3].ends_with("-  not run"));
        assert!(
            lines[4].starts_with("  total") && lines[4].ends_with("500 ms"),
            "{table}"
        );
    }

    #[test]
    fn the_verdict_counts_skipped_steps_apart() {
        let record = |status| StepRecord {
            step: Step::ExpandNode,
            took: Duration::ZERO,
            status,
        };
        assert_eq!(
            verdict(&[record(Status::Ok), record(Status::Ok)]),
            "All 2 steps passed."
        );
        assert_eq!(
            verdict(&[record(Status::Ok), record(Status::Skipped)]),
            "1 steps passed; 1 could not run on this host (see above)."
        );
    }

    #[test]
    fn the_breakdown_names_the_driver_overhead_and_the_totals() {
        let stage = StageBreakdown {
            co_total: Duration::from_millis(335),
            node_total: Duration::from_millis(330),
            parts: vec![
                ("connect".into(), Duration::from_millis(12)),
                ("mkfs".into(), Duration::from_millis(300)),
            ],
        };
        let table = breakdown(&stage);
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("no {name} row in {table}"))
                .to_owned()
        };
        assert!(table.lines().all(|l| l.starts_with("  ")), "{table}");
        assert!(row("connect").ends_with("12.0"));
        assert!(row("driver overhead").ends_with("18.0"), "{table}");
        assert!(row("gRPC and transport").ends_with("5.0"), "{table}");
        assert!(
            row("= NodeStageVolume at the CO").ends_with("335.0"),
            "{table}"
        );
    }

    #[test]
    fn the_loop_fabric_says_why_in_one_line_and_nvme_tcp_needs_no_notice() {
        let notice = Fabric::Loop(LoopReason::NoTargetNoInitiator)
            .notice()
            .unwrap();
        assert_eq!(notice.lines().count(), 1);
        assert!(notice.contains("loop devices") && notice.contains("NVMe/TCP hop is not"));
        assert!(Fabric::NvmeTcp { port: 4420 }.notice().is_none());
        assert!(
            Fabric::NvmeTcp { port: 4420 }
                .describe()
                .contains("nvmet target on 127.0.0.1:4420")
        );
        assert_eq!(Fabric::Loop(LoopReason::NoTarget).node_flag(), "loop");
        assert_eq!(Fabric::NvmeTcp { port: 1 }.node_flag(), "nvme-tcp");
    }

    #[test]
    fn keep_instructions_name_every_way_in() {
        let info = KeepInfo {
            volume_id: "pvc-1".into(),
            fs: "ext4".into(),
            size: 1 << 30,
            target: "/w/kubelet/pods/pvc-1/mount".into(),
            controller: "unix:///w/controller.sock".into(),
            node: "unix:///w/node.sock".into(),
            kubelet_dir: "/w/kubelet".into(),
            ssh: "127.0.0.1:40211".parse().unwrap(),
            user: "admin".into(),
            password_file: "/w/rds-password".into(),
            host_key: "SHA256:abc".into(),
            known_hosts: "/w/known_hosts".into(),
            csi_e2e: "/t/csi-e2e".into(),
            work_dir: "/w".into(),
            logs: vec!["/w/sim.log".into(), "/w/node.log".into()],
        };
        let text = keep_instructions(PLAIN, &info);
        for needle in [
            "pvc-1 (ext4, 1 GiB)",
            "ssh -p 40211 -o UserKnownHostsFile=/w/known_hosts admin@127.0.0.1 '/disk print'",
            "password in /w/rds-password; host key SHA256:abc",
            "/t/csi-e2e attach --controller unix:///w/controller.sock --node unix:///w/node.sock \
             --work-dir /w/kubelet --name my-volume",
            "--volume-id <id> --delete",
            "sim.log, node.log in /w",
            "Ctrl-C",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    #[test]
    fn the_logs_pointer_says_whether_the_directory_is_kept() {
        let logs = [PathBuf::from("/w/node.log")];
        assert!(logs_pointer(Path::new("/w"), &logs, true).contains("kept"));
        assert!(!logs_pointer(Path::new("/w"), &logs, false).contains("kept"));
    }
}
