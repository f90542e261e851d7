//! What the SSH and REST servers share: the device behind one lock, the
//! saver, the fault set, the session gate and the clock.
//!
//! Saving happens after the device lock is released and before the reply
//! goes out, behind its own lock: a save writes the newest state, so
//! commands that finish while another save runs are covered by the next
//! one instead of each writing the files in turn.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::device::{Device, Persist};
use crate::error::CmdError;
use crate::faults::{CommandFaults, FaultControl, InjectedDelay, SessionGate, SessionPermit};
use crate::format::{TERMINAL_WIDTH, terminal_wrap};
use crate::script::{self, RunContext};
use crate::state::{copy_status, run_block_copy};
use crate::version::RouterOsVersion;

/// How a command ends for the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecReply {
    /// Close the connection without replying (fault).
    Drop,
    Output {
        /// CRLF-terminated, wrapped at the terminal width.
        stdout: String,
        exit_status: u32,
    },
}

struct Saver {
    persist: Box<dyn Persist>,
    /// Generation of the state on disk.
    saved: u64,
}

pub struct Engine {
    device: Mutex<Device>,
    saver: Mutex<Saver>,
    pub faults: Arc<FaultControl>,
    gate: Arc<SessionGate>,
    started: Instant,
    version: RouterOsVersion,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// `device` must be saved already (its current generation is on disk).
    pub fn new(device: Device, persist: Box<dyn Persist>, faults: Arc<FaultControl>) -> Self {
        let version = device.env().version.clone();
        let saved = device.generation();
        Self {
            saver: Mutex::new(Saver { persist, saved }),
            device: Mutex::new(device),
            faults,
            gate: Arc::new(SessionGate::default()),
            started: Instant::now(),
            version,
        }
    }

    /// The device, for reads and for work outside commands (start, stop).
    pub fn lock(&self) -> MutexGuard<'_, Device> {
        self.device.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn version(&self) -> &RouterOsVersion {
        &self.version
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Admits one session if the cap allows.
    pub fn admit(&self) -> Option<SessionPermit> {
        self.gate.try_enter(self.faults.max_sessions())
    }

    /// Sessions in flight.
    pub fn active_sessions(&self) -> usize {
        self.gate.active()
    }

    /// Makes sure the state of generation `upto` (or a newer one) is on disk. A caller
    /// whose change a save finished meanwhile (while it waited for the saver) returns at
    /// once: one save covers every change made before it started. Errors are logged (the
    /// state in memory stays right; the next save retries).
    pub fn save(&self, upto: u64) {
        let mut saver = self.saver.lock().unwrap_or_else(|p| p.into_inner());
        if saver.saved >= upto {
            return;
        }
        let whole = saver.persist.wants_whole();
        let job = self.lock().save_job(whole);
        match saver.persist.persist(job.state.as_ref(), &job.exports) {
            Ok(()) => saver.saved = job.generation,
            Err(e) => {
                // The changes it carried are lost with it: the next save writes all.
                self.lock().resync();
                tracing::error!(error = %e, "saving the state failed");
            }
        }
    }

    /// Saves the current state whole (at shutdown), so that the data directory holds it in
    /// one file. Errors are logged.
    pub fn checkpoint(&self) {
        let mut saver = self.saver.lock().unwrap_or_else(|p| p.into_inner());
        let (generation, state) = self.lock().state_job();
        match saver.persist.checkpoint(&state) {
            Ok(()) => saver.saved = saver.saved.max(generation),
            Err(e) => tracing::error!(error = %e, "saving the state at shutdown failed"),
        }
    }

    /// Runs `f` on the device with the command's conditions applied, then
    /// saves, on a blocking thread (file and configfs I/O happen inside), once the rest of
    /// the command's injected delay has passed.
    pub async fn with_device<T: Send + 'static>(
        self: &Arc<Self>,
        faults: &CommandFaults,
        delay: InjectedDelay,
        f: impl FnOnce(&mut Device, &RunContext) -> T + Send + 'static,
    ) -> T {
        let engine = Arc::clone(self);
        let (pool_full, quirks) = (faults.pool_full, faults.quirks);
        let ctx = RunContext {
            float_numbers: faults.float_numbers,
            interrupt_copies: faults.interrupt_copies,
            uptime_seconds: self.uptime_seconds(),
            health: faults.health.clone(),
        };
        tokio::task::spawn_blocking(move || {
            delay.finish_blocking();
            let (result, generation) = {
                let mut device = engine.lock();
                device.set_conditions(unix_now(), pool_full, quirks);
                let result = f(&mut device, &ctx);
                (result, device.generation())
            };
            engine.save(generation);
            result
        })
        .await
        .expect("device task panicked")
    }

    /// One SSH exec request: parse (nothing runs on a syntax error), wait
    /// the injected latency, then run under the device lock.
    pub async fn exec(self: &Arc<Self>, text: String) -> ExecReply {
        let faults = self.faults.begin_command();
        let parsed = script::parse(&text, &self.version);
        let adds = parsed.as_ref().map(|s| s.count_disk_adds()).unwrap_or(0) as u32;
        let delay = InjectedDelay::begin(faults.latency + faults.slow_add * adds).await;
        let error_status = if faults.exit_status_on_error { 1 } else { 0 };
        let refused = |message: String| ExecReply::Output {
            stdout: terminal_wrap(vec![message], TERMINAL_WIDTH),
            exit_status: error_status,
        };
        // Faults and syntax errors answer without touching the device, after the same delay.
        let script = if faults.drop {
            Err(ExecReply::Drop)
        } else if let Some(message) = faults.fail.clone() {
            Err(refused(message))
        } else {
            parsed.map_err(|e| refused(e.to_string()))
        };
        let script = match script {
            Ok(script) => script,
            Err(reply) => {
                delay.finish().await;
                return reply;
            }
        };
        if let Some(args) = script.lone_block_copy() {
            return self.block_copy(args, faults, delay).await;
        }
        let output = self
            .with_device(&faults, delay, move |device, ctx| {
                script::run(&script, device, ctx)
            })
            .await;
        if faults.lose_reply || output.cut_off {
            tracing::info!("fault: the command ran; its reply is lost");
            return ExecReply::Drop;
        }
        reply(output.lines, output.error, error_status)
    }

    /// A script that is one `/disk copy`: checked under the device lock, then copied outside
    /// it, so that other commands are served while it runs (as on a device, where a copy
    /// goes on in the background while its session prints the progress); the session ends
    /// with the copy. A copy cut off by the fault loses its session.
    async fn block_copy(
        self: &Arc<Self>,
        args: Vec<(String, String)>,
        faults: CommandFaults,
        delay: InjectedDelay,
    ) -> ExecReply {
        let engine = Arc::clone(self);
        let (pool_full, quirks) = (faults.pool_full, faults.quirks);
        let (stop, pace) = (faults.interrupt_copies, faults.slow_copy_step);
        let (lines, error, cut_off) = tokio::task::spawn_blocking(move || {
            delay.finish_blocking();
            let started = {
                let mut device = engine.lock();
                device.set_conditions(unix_now(), pool_full, quirks);
                crate::args::block_copy_args(args.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(crate::args::ArgsError::into_cmd_error)
                    .and_then(|args| device.start_block_copy(&args))
            };
            let mut lines = Vec::new();
            let (copy, copier) = match started {
                Ok(started) => started,
                Err(error) => return (lines, Some(error), false),
            };
            let result = run_block_copy(
                &copy,
                stop,
                |done, len| {
                    std::thread::sleep(pace);
                    copier(&copy, done, len)
                },
                |copied, total| lines.push(copy_status(copied, total)),
            );
            engine.lock().finish_block_copy(&copy);
            match result {
                Ok(true) => (lines, None, false),
                Ok(false) => (lines, Some(CmdError::failure("copy interrupted")), true),
                Err(error) => (lines, Some(error), false),
            }
        })
        .await
        .expect("copy task panicked");
        if faults.lose_reply || cut_off {
            tracing::info!("fault: the copy's session is lost");
            return ExecReply::Drop;
        }
        let error_status = if faults.exit_status_on_error { 1 } else { 0 };
        reply(lines, error, error_status)
    }
}

/// A command's reply: its lines, then its error (if any) with `error_status`.
fn reply(mut lines: Vec<String>, error: Option<CmdError>, error_status: u32) -> ExecReply {
    let failed = error.is_some();
    if let Some(error) = error {
        tracing::debug!(%error, "command failed");
        lines.push(error.to_string());
    }
    ExecReply::Output {
        stdout: terminal_wrap(lines, TERMINAL_WIDTH),
        exit_status: if failed { error_status } else { 0 },
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
