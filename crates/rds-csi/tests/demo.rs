//! `rds-csi demo` as a user runs it: the built binary, with its own simulator, controller and
//! node, on this host (loop fabric here; nvmet in the QEMU lab). Each test gives the demo its
//! own `TMPDIR` and checks afterwards that nothing of it is left: no mount below it, no loop
//! device over a file in it, no process naming it, no file in it.
//!
//! Needs root (mounts, loop devices); outside CI a non-root run skips with a message.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use demo::plan::{Step, plan};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The demos share loop devices and CPU; one at a time keeps each well inside its time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Far above what a run takes (a few seconds), far below a hung test.
const RUN_LIMIT: Duration = Duration::from_secs(90);

fn demo_command(tmp: &Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rds-csi"));
    command
        .arg("demo")
        .args(args)
        .env("TMPDIR", tmp)
        .env_remove("RDS_CSI_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A demo run whose output is read line by line as it comes.
struct Run {
    tmp: tempfile::TempDir,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Run {
    fn start(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = Command::from(demo_command(tmp.path(), args))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            tmp,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads up to (and including) the first line that satisfies `wanted`.
    async fn until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(RUN_LIMIT, async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push(line.clone());
                if wanted(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("no such line in:\n{}", self.seen.join("\n")),
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id().unwrap() as i32).unwrap();
        kill_process(pid, signal).unwrap();
    }

    /// Waits for the exit; returns the status, all of stdout and stderr.
    async fn finish(mut self) -> (ExitStatus, String, String, tempfile::TempDir) {
        let mut stderr = String::new();
        let mut err = self.child.stderr.take().unwrap();
        let outcome = tokio::time::timeout(RUN_LIMIT, async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push(line);
            }
            err.read_to_string(&mut stderr).await.unwrap();
            self.child.wait().await.unwrap()
        })
        .await;
        let stdout = self.seen.join("\n");
        let status = outcome.unwrap_or_else(|_| panic!("the demo did not end:\n{stdout}"));
        (status, stdout, stderr, self.tmp)
    }
}

/// The work directory the demo announced.
fn work_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("work directory: "))
        .unwrap_or_else(|| panic!("no work directory line in:\n{stdout}"));
    PathBuf::from(line.split(" (").next().unwrap())
}

/// Processes whose command line names `dir` (the demo's children all do).
fn processes_naming(dir: &Path) -> Vec<String> {
    let needle = dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            cmdline
                .windows(needle.len())
                .any(|w| w == needle)
                .then(|| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        })
        .collect()
}

/// Everything the demo could leave behind under `tmp`.
fn leftovers(tmp: &Path) -> Vec<String> {
    let tmp = tmp.canonicalize().unwrap();
    let mut found = Vec::new();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo.lines() {
        let point = line.split(' ').nth(4).unwrap_or("");
        if Path::new(point).starts_with(&tmp) {
            found.push(format!("mount {point}"));
        }
    }
    for entry in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file"))
            && Path::new(backing.trim()).starts_with(&tmp)
        {
            found.push(format!("{:?} over {}", entry.file_name(), backing.trim()));
        }
    }
    found.extend(
        processes_naming(&tmp)
            .into_iter()
            .map(|p| format!("process {p}")),
    );
    found.extend(
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| format!("file {}", e.path().display())),
    );
    found
}

fn assert_nothing_left(tmp: &Path, stdout: &str) {
    let left = leftovers(tmp);
    assert!(left.is_empty(), "left behind: {left:#?}\noutput:\n{stdout}");
}

/// Each planned step has its line; only NodeExpandVolume of ext4 may be skipped (without
/// CAP_SYS_RESOURCE ext4 cannot grow online, and the demo says so).
fn assert_every_step_passed(stdout: &str, keep: bool, may_skip_growth: bool) {
    for step in plan(keep) {
        let passed = format!(" ok  {}", step.label());
        let skipped = format!("skip {}", step.label());
        let ok = stdout.lines().any(|l| l.starts_with(&passed))
            || (step == Step::ExpandNode
                && may_skip_growth
                && stdout.lines().any(|l| l.starts_with(&skipped)));
        assert!(ok, "no passing line for {:?} in:\n{stdout}", step.label());
    }
    let refused = stdout
        .lines()
        .find(|l| l.starts_with(" ok  ControllerPublishVolume (node 2)"))
        .expect("the second node's step");
    // The holder is named, with the reason the claim's event would carry.
    assert!(
        refused.contains("refused (FAILED_PRECONDITION)")
            && refused.contains("is published to node")
            && refused.contains("PublishRefused"),
        "{refused}"
    );
    for needle in [
        "\nSummary\n",
        "  total ",
        "fabric: ",
        "as the node measured it:",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|l| l.contains("steps passed")),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\x1b'),
        "colour codes in a pipe:\n{stdout}"
    );
}

#[tokio::test]
async fn the_demo_runs_every_step_and_leaves_nothing_behind() {
    if !mounts::fixtures::root_or_skip("the_demo_runs_every_step_and_leaves_nothing_behind") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let started = std::time::Instant::now();
    let (status, stdout, stderr, tmp) = Run::start(&[]).finish().await;
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    assert!(stdout.contains("(ext4 volumes of 1 GiB)"), "{stdout}");
    assert_every_step_passed(&stdout, false, true);
    assert!(stdout.contains("nothing left on the RDS"), "{stdout}");
    assert!(!work_dir(&stdout).exists());
    assert_nothing_left(tmp.path(), &stdout);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn xfs_volumes_grow_online() {
    if !mounts::fixtures::root_or_skip("xfs_volumes_grow_online") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (status, stdout, stderr, tmp) = Run::start(&["--fs", "xfs", "--size", "512Mi"])
        .finish()
        .await;
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    assert!(stdout.contains("(xfs volumes of 512 MiB)"), "{stdout}");
    assert_every_step_passed(&stdout, false, false);
    let grew = stdout
        .lines()
        .find(|l| l.starts_with(" ok  NodeExpandVolume"))
        .unwrap();
    assert!(grew.contains("filesystem grew online"), "{grew}");
    assert!(stdout.contains("mkfs.xfs"), "{stdout}");
    assert_nothing_left(tmp.path(), &stdout);
}

#[tokio::test]
async fn without_root_it_says_what_it_needs_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let mut command = demo_command(tmp.path(), &[]);
    if rustix::process::geteuid().is_root() {
        // std drops the supplementary groups too when root changes the uid.
        command.uid(65534).gid(65534);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for needle in ["needs root", "mounts", "loop devices", "sudo rds-csi demo"] {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
    assert!(output.stdout.is_empty());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn ctrl_c_mid_run_undoes_everything() {
    if !mounts::fixtures::root_or_skip("ctrl_c_mid_run_undoes_everything") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let mut run = Run::start(&[]);
    // Staged and published, and the write (a second or so) under way: the hardest moment,
    // with a file open on the volume.
    run.until(|l| l.starts_with(" ok  NodePublishVolume (filesystem)"))
        .await;
    run.signal(Signal::INT);
    let (status, stdout, _, tmp) = run.finish().await;
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("SIGINT: cleaning up"), "{stdout}");
    assert!(
        stdout.contains("NodeUnpublishVolume pvc-")
            && stdout.contains("NodeUnstageVolume pvc-")
            && stdout.contains("DeleteVolume pvc-"),
        "the staged volume was not undone through CSI:\n{stdout}"
    );
    assert!(
        !stdout.contains("forced:"),
        "CSI alone should have undone it:\n{stdout}"
    );
    assert!(stdout.contains(" ok  stop and clean up"), "{stdout}");
    assert!(stdout.contains("not run"), "{stdout}");
    assert_nothing_left(tmp.path(), &stdout);
}

#[tokio::test]
async fn keep_leaves_a_published_volume_until_interrupted() {
    if !mounts::fixtures::root_or_skip("keep_leaves_a_published_volume_until_interrupted") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let mut run = Run::start(&["--keep", "--size", "64Mi"]);
    let kept = run
        .until(|l| l.starts_with(" ok  keep a volume published"))
        .await;
    let target = PathBuf::from(kept.rsplit(" published at ").next().unwrap());
    run.until(|l| l.contains("Press Ctrl-C")).await;
    let readme = std::fs::read_to_string(target.join("README.txt")).unwrap();
    assert!(readme.contains("rds-csi demo --keep"), "{readme}");
    let instructions = run.seen.join("\n");
    for needle in [
        "ssh -p ",
        "'/disk print'",
        "csi-e2e",
        " attach --controller unix://",
    ] {
        assert!(
            instructions.contains(needle),
            "{needle:?} missing:\n{instructions}"
        );
    }
    run.signal(Signal::TERM);
    let (status, stdout, stderr, tmp) = run.finish().await;
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    assert_every_step_passed(&stdout, true, true);
    assert!(!target.exists());
    assert_nothing_left(tmp.path(), &stdout);
}

#[tokio::test]
async fn its_processes_die_with_it_even_when_it_is_killed() {
    if !mounts::fixtures::root_or_skip("its_processes_die_with_it_even_when_it_is_killed") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let mut run = Run::start(&[]);
    run.until(|l| l.starts_with(" ok  start the node plugin"))
        .await;
    let work = work_dir(&run.seen.join("\n"));
    assert_eq!(
        processes_naming(&work).len(),
        3,
        "simulator, controller, node"
    );
    run.signal(Signal::KILL);
    let (status, stdout, _, tmp) = run.finish().await;
    assert_eq!(status.code(), None, "killed by a signal: {stdout}");
    // The kernel sends them SIGTERM when the demo dies; they stop within a moment.
    let gone = tokio::time::timeout(Duration::from_secs(15), async {
        while !processes_naming(&work).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "still running: {:#?}",
        processes_naming(&work)
    );
    // Nothing was staged yet, so nothing is mounted; only the files remain to remove.
    std::fs::remove_dir_all(&work).unwrap();
    assert_nothing_left(tmp.path(), &stdout);
}
