//! The device: the state model plus a backend that performs its side
//! effects. Every mutation is all-or-nothing: if an effect fails, the
//! effects already done are undone and the state is restored. Each
//! successful mutation bumps a generation number; saving the state is the
//! job of a [`Persist`] outside the device lock (see [`crate::engine`]).

use crate::error::CmdError;
use crate::quirks::Quirks;
use crate::records::{Record, disk_record, file_record};
use crate::state::{DiskArgs, Effect, Env, ExportSpec, State};

/// Performs effects. One real implementation
/// ([`crate::storage::FileStore`]); tests use an in-memory one.
pub trait Backend: Send {
    fn apply(&mut self, effect: &Effect) -> std::io::Result<()>;
}

/// Saves the state; `exports` are the active exports it implies. One real
/// implementation ([`crate::storage::StateFiles`]).
pub trait Persist: Send {
    fn persist(&mut self, state: &State, exports: &[ExportSpec]) -> std::io::Result<()>;
}

/// What a save needs, taken under the device lock and written outside it.
#[derive(Debug, Clone)]
pub struct SaveJob {
    pub generation: u64,
    pub state: State,
    pub exports: Vec<ExportSpec>,
}

pub struct Device {
    state: State,
    backend: Box<dyn Backend>,
    env: Env,
    /// Count of successful mutations.
    generation: u64,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("state", &self.state)
            .field("env", &self.env)
            .finish()
    }
}

impl Device {
    pub fn new(state: State, backend: Box<dyn Backend>, env: Env) -> Self {
        Self {
            state,
            backend,
            env,
            generation: 0,
        }
    }

    /// Count of successful mutations so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A copy of what must be saved now.
    pub fn save_job(&self) -> SaveJob {
        SaveJob {
            generation: self.generation,
            state: self.state.clone(),
            exports: self.exports(),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Updates the clock, the pool-full fault and the quirks before a command runs.
    pub fn set_conditions(&mut self, now: u64, pool_full: bool, quirks: Quirks) {
        self.env.now = now;
        self.env.pool_full = pool_full;
        self.env.quirks = quirks;
    }

    /// Active exports.
    pub fn exports(&self) -> Vec<ExportSpec> {
        self.state.exports(&self.env.version)
    }

    pub fn disk_records(&self) -> Vec<Record> {
        self.disk_records_in_slot(None)
    }

    /// The records of the disks in `slot` (all disks for `None`). A print that names the
    /// slot renders one record instead of every disk's, which keeps a command's work under
    /// the device lock independent of how many disks exist.
    pub fn disk_records_in_slot(&self, slot: Option<&str>) -> Vec<Record> {
        self.state
            .disks
            .iter()
            .filter(|d| slot.is_none_or(|s| d.slot == s))
            .map(|d| disk_record(&self.state, d, &self.env))
            .collect()
    }

    pub fn file_records(&self) -> Vec<Record> {
        self.state.files.iter().map(|f| file_record(f)).collect()
    }

    pub fn add_disk(&mut self, args: &DiskArgs) -> Result<u64, CmdError> {
        self.commit(|state, env| state.add_disk(args, env))
    }

    pub fn set_disk(&mut self, id: u64, args: &DiskArgs) -> Result<(), CmdError> {
        self.commit(|state, env| state.set_disk(id, args, env))
    }

    pub fn remove_disk(&mut self, id: u64) -> Result<(), CmdError> {
        self.commit(|state, env| state.remove_disk(id, env))
    }

    pub fn remove_file(&mut self, id: u64) -> Result<(), CmdError> {
        self.commit(|state, _| state.remove_file(id))
    }

    pub fn set_identity(&mut self, name: &str) -> Result<(), CmdError> {
        self.commit(|state, _| state.set_identity(name))
    }

    /// Applies effects outside an operation (start-up exports, shutdown
    /// teardown); returns the first error but tries every effect.
    pub fn apply_all(&mut self, effects: &[Effect]) -> std::io::Result<()> {
        let mut first_error = None;
        for effect in effects {
            if let Err(e) = self.backend.apply(effect) {
                tracing::error!(?effect, error = %e, "device effect failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn commit<T>(
        &mut self,
        op: impl FnOnce(&mut State, &Env) -> Result<(T, Vec<Effect>), CmdError>,
    ) -> Result<T, CmdError> {
        let before = self.state.clone();
        let (value, effects) = match op(&mut self.state, &self.env) {
            Ok(outcome) => outcome,
            Err(e) => {
                self.state = before;
                return Err(e);
            }
        };
        let mut done: Vec<&Effect> = Vec::with_capacity(effects.len());
        let mut failure = None;
        for effect in &effects {
            match self.backend.apply(effect) {
                Ok(()) => done.push(effect),
                Err(e) => {
                    tracing::error!(?effect, error = %e, "device effect failed; rolling back");
                    failure = Some(e);
                    break;
                }
            }
        }
        let Some(error) = failure else {
            self.generation += 1;
            return Ok(value);
        };
        for effect in done.iter().rev() {
            if let Some(undo) = effect.inverse()
                && let Err(e) = self.backend.apply(&undo)
            {
                tracing::error!(effect = ?undo, error = %e, "undo failed");
            }
        }
        self.state = before;
        Err(CmdError::failure(error.to_string()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::state::tests::{GIB, env, file_args, fresh};

    /// Records effects; fails exports when told to.
    #[derive(Clone, Default)]
    pub(crate) struct MemoryBackend {
        pub log: Arc<Mutex<Vec<Effect>>>,
        pub fail_exports: bool,
    }

    impl Backend for MemoryBackend {
        fn apply(&mut self, effect: &Effect) -> std::io::Result<()> {
            if self.fail_exports && matches!(effect, Effect::Export(_)) {
                return Err(std::io::Error::other("export refused"));
            }
            self.log.lock().unwrap().push(effect.clone());
            Ok(())
        }
    }

    pub(crate) fn device_with(backend: MemoryBackend) -> Device {
        Device::new(fresh(), Box::new(backend), env())
    }

    #[test]
    fn mutations_apply_effects_and_count_generations() {
        let backend = MemoryBackend::default();
        let mut device = device_with(backend.clone());
        device.add_disk(&file_args("pvc-1", GIB)).unwrap();
        assert_eq!(backend.log.lock().unwrap().len(), 2);
        assert_eq!(device.generation(), 1);
        let job = device.save_job();
        assert_eq!((job.generation, job.exports.len()), (1, 1));
        assert_eq!(&job.state, device.state());
    }

    #[test]
    fn a_failed_effect_is_rolled_back() {
        let backend = MemoryBackend {
            fail_exports: true,
            ..Default::default()
        };
        let mut device = device_with(backend.clone());
        let before = device.state().clone();
        let err = device.add_disk(&file_args("pvc-1", GIB)).unwrap_err();
        assert_eq!(err.to_string(), "failure: export refused");
        assert_eq!(device.state(), &before);
        // The backing file made before the failed export was removed again.
        let log = backend.log.lock().unwrap();
        assert!(matches!(
            log.as_slice(),
            [Effect::CreateFile { .. }, Effect::RemoveFile { .. }]
        ));
        assert_eq!(device.generation(), 0);
    }

    #[test]
    fn refused_operations_touch_nothing() {
        let backend = MemoryBackend::default();
        let mut device = device_with(backend.clone());
        assert_eq!(device.remove_disk(99).unwrap_err(), CmdError::NoSuchItem);
        assert!(backend.log.lock().unwrap().is_empty());
        assert_eq!(device.generation(), 0);
    }
}
