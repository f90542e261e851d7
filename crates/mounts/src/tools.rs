//! Running external filesystem tools with a deadline and exact exit-status handling.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;
use tokio::time::Instant;

use crate::{Error, Result};

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    fn from_status(status: std::process::ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Code(code),
            (None, Some(signal)) => Self::Signal(signal),
            // Neither code nor signal cannot happen for a reaped child on Linux; treat it as a
            // failure that matches no success code.
            (None, None) => Self::Signal(0),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// What a finished tool left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
}

/// Where the external programs are. The defaults are bare names looked up in `PATH`; tests and
/// unusual images point them elsewhere.
#[derive(Debug, Clone)]
pub struct ToolPaths {
    pub blkid: PathBuf,
    pub mkfs_ext4: PathBuf,
    pub mkfs_xfs: PathBuf,
    pub resize2fs: PathBuf,
    pub xfs_growfs: PathBuf,
    pub e2fsck: PathBuf,
    pub tune2fs: PathBuf,
    pub xfs_admin: PathBuf,
}

impl Default for ToolPaths {
    fn default() -> Self {
        Self {
            blkid: "blkid".into(),
            mkfs_ext4: "mkfs.ext4".into(),
            mkfs_xfs: "mkfs.xfs".into(),
            resize2fs: "resize2fs".into(),
            xfs_growfs: "xfs_growfs".into(),
            e2fsck: "e2fsck".into(),
            tune2fs: "tune2fs".into(),
            xfs_admin: "xfs_admin".into(),
        }
    }
}

/// Error text is kept short: it ends up in RPC statuses and events.
const STDERR_LIMIT: usize = 2048;

fn tool_name(program: &Path) -> String {
    program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// Runs `program` with `args`, no shell, stdin closed, `LC_ALL=C` for stable messages. At the
/// deadline the whole process group is killed and [`Error::TimedOut`] returned without waiting
/// for it (a process stuck in uninterruptible I/O would not die anyway); tokio reaps it later.
pub async fn run(program: &Path, args: &[OsString], deadline: Instant) -> Result<Output> {
    let tool = tool_name(program);
    tracing::debug!(%tool, ?args, "running");
    let child = spawn(program, args)
        .await
        .map_err(|source| Error::ToolSpawn {
            tool: tool.clone(),
            source,
        })?;
    let group = child.id();
    match tokio::time::timeout_at(deadline, child.wait_with_output()).await {
        Ok(Ok(output)) => Ok(Output {
            exit: Exit::from_status(output.status),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Ok(Err(source)) => Err(Error::ToolSpawn { tool, source }),
        Err(_) => {
            if let Some(group) = group.and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
                // The group may already be gone; kill_on_drop covers the leader either way.
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            tracing::warn!(%tool, "killed at its deadline");
            Err(Error::TimedOut {
                op: format!("{tool} {}", display_args(args)),
            })
        }
    }
}

async fn spawn(program: &Path, args: &[OsString]) -> std::io::Result<tokio::process::Child> {
    let attempt = || {
        Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
    };
    // ETXTBSY: another thread forked while the program file was open for writing (it was just
    // installed or updated); the window closes at that child's exec, so one quick retry or two
    // is enough.
    let mut tries = 0;
    loop {
        match attempt() {
            Err(error)
                if error.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error())
                    && tries < 5 =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5 * tries)).await;
            }
            result => return result,
        }
    }
}

fn display_args(args: &[OsString]) -> String {
    args.iter()
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a tool and accepts only the listed exit codes; any other code or any signal is an
/// error carrying the tool's stderr.
pub async fn run_expecting(
    program: &Path,
    args: &[OsString],
    success_codes: &[i32],
    deadline: Instant,
) -> Result<Output> {
    let output = run(program, args, deadline).await?;
    match output.exit {
        Exit::Code(code) if success_codes.contains(&code) => Ok(output),
        exit => Err(Error::ToolFailed {
            tool: tool_name(program),
            status: exit,
            stderr: truncate(output.stderr.trim(), STDERR_LIMIT),
        }),
    }
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
pub(crate) mod test_scripts {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// Writes an executable shell script (a stand-in for a real tool) into `dir`.
    pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::test_scripts::script;
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[tokio::test]
    async fn captures_exit_code_and_output_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let tool = script(
            dir.path(),
            "t",
            "echo out; echo err >&2; echo \"$LC_ALL $1\"; exit 3",
        );
        let output = run(&tool, &["arg".into()], soon()).await.unwrap();
        assert_eq!(output.exit, Exit::Code(3));
        assert_eq!(output.stdout, "out\nC arg\n");
        assert_eq!(output.stderr, "err\n");
    }

    #[tokio::test]
    async fn a_signal_is_not_an_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let tool = script(dir.path(), "t", "kill -TERM $$");
        let output = run(&tool, &[], soon()).await.unwrap();
        assert_eq!(output.exit, Exit::Signal(15));
        let error = run_expecting(&tool, &[], &[0], soon()).await.unwrap_err();
        assert!(matches!(
            error,
            Error::ToolFailed {
                status: Exit::Signal(15),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn unexpected_codes_fail_with_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let tool = script(dir.path(), "t", "echo 'disk on fire' >&2; exit 1");
        match run_expecting(&tool, &[], &[0, 2], soon()).await {
            Err(Error::ToolFailed {
                tool,
                status: Exit::Code(1),
                stderr,
            }) => {
                assert_eq!(tool, "t");
                assert_eq!(stderr, "disk on fire");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_hung_tool_and_its_children_are_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child.pid");
        let tool = script(
            dir.path(),
            "hang",
            &format!("sleep 60 & echo $! > {}; wait", marker.display()),
        );
        let started = Instant::now();
        let result = run(&tool, &[], started + Duration::from_millis(300)).await;
        assert!(matches!(result, Err(Error::TimedOut { .. })), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The grandchild (sleep) shared the process group and must be gone too.
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = async {
            loop {
                let status = std::fs::read_to_string(format!("/proc/{pid}/stat"));
                match status {
                    Err(_) => break,
                    Ok(stat) if stat.contains(") Z ") => break, // killed, awaiting its reaper
                    Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .expect("the grandchild was killed");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let result = run(Path::new("/nonexistent/tool"), &[], soon()).await;
        assert!(matches!(result, Err(Error::ToolSpawn { .. })));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééé", 3), "é...");
    }
}
