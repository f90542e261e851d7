//! The simulator, the controller and the node as child processes of this same binary: how
//! they are started (so that they die with the demo), how their readiness is awaited, and how
//! they are stopped.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use csi::v1::ProbeRequest;
use csi::v1::identity_client::IdentityClient;
use driver::server::Endpoint;
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{ChildStdout, Command};

use crate::error::{DemoError, Result, io_context};

/// Environment variables that configure the subcommands; the user's own settings must not
/// leak into the demo's processes (an `RDS_CSI_RDS_INSECURE` or a host NQN, say).
const NODE_ENV: [&str; 6] = [
    "CSI_ENDPOINT",
    "NODE_ID",
    "DRIVER_NAME",
    "NQN_PREFIX",
    "NVME_HOST_NQN",
    "NVME_HOST_ID",
];

fn is_configuration_variable(name: &str) -> bool {
    name.starts_with("RDS_CSI_") || NODE_ENV.contains(&name)
}

/// One of the demo's processes.
#[derive(Debug)]
pub struct Child {
    pub name: &'static str,
    pub log: PathBuf,
    process: tokio::process::Child,
}

/// Starts `exe args...` with stderr (the log) going to `log`; stdout is piped for
/// [`Child::take_stdout`] when `capture_stdout`, else it goes to the log too.
///
/// The child gets a process group of its own, so that a Ctrl-C at the terminal reaches only
/// the demo, which then stops the children in order; and it is sent SIGTERM by the kernel if
/// the demo dies without doing so (PR_SET_PDEATHSIG). That signal follows the thread that
/// forked, so children must be spawned from a thread that lives as long as the demo (the
/// runtime's main or worker threads, never a blocking-pool thread).
pub fn spawn(
    name: &'static str,
    exe: &Path,
    args: &[OsString],
    log: &Path,
    capture_stdout: bool,
) -> Result<Child> {
    let opening = || format!("creating {}", log.display());
    let log_file = std::fs::File::create(log).map_err(io_context(opening()))?;
    let stdout = if capture_stdout {
        Stdio::piped()
    } else {
        Stdio::from(log_file.try_clone().map_err(io_context(opening()))?)
    };
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log_file)
        .process_group(0)
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(is_configuration_variable) {
            command.env_remove(key);
        }
    }
    let parent = rustix::process::getpid();
    // SAFETY: the closure makes two system calls (prctl, getppid), both async-signal-safe,
    // and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
            // The parent may have died between fork and prctl; then nobody would signal us.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("the demo exited while starting"));
            }
            Ok(())
        });
    }
    let process = command
        .spawn()
        .map_err(io_context(format!("starting the {name}")))?;
    Ok(Child {
        name,
        log: log.to_owned(),
        process,
    })
}

impl Child {
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.process.stdout.take()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.try_wait().ok().flatten()
    }

    fn exited_error(&self, status: String) -> DemoError {
        DemoError::Exited {
            name: self.name,
            status,
            log: self.log.clone(),
        }
    }

    /// SIGKILL at once, as a crash or an OOM kill would end it; waits until it is gone.
    pub async fn kill(&mut self) {
        let _ = self.process.kill().await;
    }

    /// SIGTERM, up to `grace` for it to finish, then SIGKILL. Says how it ended.
    pub async fn stop(&mut self, grace: Duration) -> String {
        if let Some(status) = self.exited() {
            return format!("{} had exited ({status})", self.name);
        }
        if let Some(pid) = self.process.id().and_then(|id| Pid::from_raw(id as i32)) {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
        }
        match tokio::time::timeout(grace, self.process.wait()).await {
            Ok(Ok(status)) if status.success() => format!("{} stopped", self.name),
            Ok(Ok(status)) => format!("{} stopped ({status})", self.name),
            Ok(Err(error)) => format!("{}: {error}", self.name),
            Err(_) => {
                let _ = self.process.kill().await;
                format!(
                    "{} killed: still running {} s after SIGTERM",
                    self.name,
                    grace.as_secs()
                )
            }
        }
    }
}

/// What the simulator printed about itself before `ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFacts {
    pub ssh: SocketAddr,
    pub host_key: String,
    pub nvmet: bool,
    pub version: String,
}

impl SimFacts {
    /// Reads the `key: value` lines of `rds-csi sim`.
    pub fn parse(lines: &[String]) -> std::result::Result<Self, String> {
        let facts: HashMap<&str, &str> = lines
            .iter()
            .filter_map(|line| line.split_once(": "))
            .collect();
        let get = |key: &str| {
            facts
                .get(key)
                .copied()
                .ok_or_else(|| format!("the simulator did not print {key:?}"))
        };
        let ssh = get("ssh-listen")?;
        Ok(Self {
            ssh: ssh
                .parse()
                .map_err(|_| format!("ssh-listen {ssh:?} is not an address"))?,
            host_key: get("ssh-host-key-fingerprint")?.to_owned(),
            nvmet: get("nvmet")? == "on",
            version: get("routeros-version")?.to_owned(),
        })
    }
}

/// Reads the simulator's stdout up to `ready`, within `limit`.
pub async fn wait_for_sim(
    child: &mut Child,
    stdout: ChildStdout,
    limit: Duration,
) -> Result<SimFacts> {
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await? {
            if line == "ready" {
                return Ok(true);
            }
            seen.push(line);
        }
        Ok::<_, std::io::Error>(false)
    })
    .await;
    match read {
        Ok(Ok(true)) => SimFacts::parse(&seen).map_err(DemoError::Check),
        Ok(Ok(false)) => {
            // Its stdout closed: it is exiting; give it a moment to say how.
            let status = tokio::time::timeout(Duration::from_secs(5), child.process.wait())
                .await
                .ok()
                .and_then(|s| s.ok())
                .map_or_else(|| "status unknown".to_owned(), |s| s.to_string());
            Err(child.exited_error(status))
        }
        Ok(Err(error)) => Err(io_context("reading the simulator's output")(error)),
        Err(_) => Err(DemoError::NotReady {
            name: child.name,
            seconds: limit.as_secs(),
            last: "no `ready` line".into(),
            log: child.log.clone(),
        }),
    }
}

/// CSI Probe: `Ok(true)` when the plugin says it is ready (or does not say).
async fn probe(endpoint: &Endpoint) -> std::result::Result<bool, String> {
    let channel = driver::server::connect(endpoint)
        .await
        .map_err(|e| e.to_string())?;
    let reply = IdentityClient::new(channel)
        .probe(ProbeRequest {})
        .await
        .map_err(|status| format!("Probe: {}", status.message()))?;
    Ok(reply.into_inner().ready.unwrap_or(true))
}

/// Probes the plugin until it is ready, it exits, or `limit` passes. Retries start at 10 ms
/// and back off to 200 ms: a plugin binds its socket within milliseconds of starting.
pub async fn wait_serving(child: &mut Child, endpoint: &Endpoint, limit: Duration) -> Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        let last = match tokio::time::timeout(Duration::from_secs(5), probe(endpoint)).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => "Probe says not ready".to_owned(),
            Ok(Err(error)) => error,
            Err(_) => "Probe got no answer within 5 s".to_owned(),
        };
        if let Some(status) = child.exited() {
            return Err(child.exited_error(status.to_string()));
        }
        if started.elapsed() >= limit {
            return Err(DemoError::NotReady {
                name: child.name,
                seconds: limit.as_secs(),
                last,
                log: child.log.clone(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A TCP port nothing listens on right now, for the NVMe/TCP target (4420 may be taken by a
/// real target on this host).
pub fn free_tcp_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io_context("finding a free TCP port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn simulator_facts_come_from_its_key_value_lines() {
        let facts = SimFacts::parse(&lines(
            "ssh-listen: 127.0.0.1:40211\nrest-listen: 127.0.0.1:1\n\
             ssh-host-key-fingerprint: SHA256:abc\nnvmet: on\nrouteros-version: 7.21.5",
        ))
        .unwrap();
        assert_eq!(facts.ssh, "127.0.0.1:40211".parse().unwrap());
        assert_eq!(facts.host_key, "SHA256:abc");
        assert!(facts.nvmet);
        assert_eq!(facts.version, "7.21.5");
        let off = SimFacts::parse(&lines(
            "ssh-listen: 127.0.0.1:1\nssh-host-key-fingerprint: x\nnvmet: off\nrouteros-version: 7",
        ))
        .unwrap();
        assert!(!off.nvmet);
        let missing = SimFacts::parse(&lines("ssh-listen: 127.0.0.1:1")).unwrap_err();
        assert!(missing.contains("ssh-host-key-fingerprint"), "{missing}");
        assert!(SimFacts::parse(&lines("ssh-listen: nowhere")).is_err());
    }

    #[test]
    fn only_the_subcommands_own_variables_are_withheld() {
        for name in [
            "RDS_CSI_RDS_INSECURE",
            "RDS_CSI_LOG",
            "NODE_ID",
            "NVME_HOST_NQN",
        ] {
            assert!(is_configuration_variable(name), "{name}");
        }
        for name in ["PATH", "HOME", "TMPDIR", "NO_COLOR", "RDS_CSIX"] {
            assert!(!is_configuration_variable(name), "{name}");
        }
    }

    #[tokio::test]
    async fn a_child_is_stopped_with_sigterm_and_its_exit_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let mut child = spawn("sleeper", Path::new("sleep"), &["30".into()], &log, false).unwrap();
        assert!(child.exited().is_none());
        let said = child.stop(Duration::from_secs(5)).await;
        assert!(said.starts_with("sleeper stopped"), "{said}");
        assert!(child.exited().is_some());
        assert!(
            child
                .stop(Duration::from_secs(1))
                .await
                .contains("had exited")
        );
    }

    #[tokio::test]
    async fn a_plugin_that_exits_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("false.log");
        let mut child = spawn("controller", Path::new("false"), &[], &log, false).unwrap();
        let endpoint = Endpoint::Unix(dir.path().join("none.sock"));
        let error = wait_serving(&mut child, &endpoint, Duration::from_secs(20))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("controller exited"), "{text}");
        assert!(text.contains("false.log"), "{text}");
    }

    #[tokio::test]
    async fn a_simulator_that_never_says_ready_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn(
            "RDS simulator",
            Path::new("sleep"),
            &["30".into()],
            &dir.path().join("sim.log"),
            true,
        )
        .unwrap();
        let stdout = child.take_stdout().unwrap();
        let error = wait_for_sim(&mut child, stdout, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(error, DemoError::NotReady { .. }), "{error}");
        child.stop(Duration::from_secs(5)).await;
    }
}
