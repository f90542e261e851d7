//! The device: the state model plus a backend that performs its side
//! effects. Every mutation is all-or-nothing: if an effect fails, the
//! effects already done are undone and the state is restored. Each
//! successful mutation bumps a generation number; saving the state is the
//! job of a [`Persist`] outside the device lock (see [`crate::engine`]).

use crate::error::CmdError;
use crate::journal::Changes;
use crate::quirks::Quirks;
use crate::records::{Record, disk_record, file_record, subvolume_record};
use crate::state::{
    BlockCopy, BlockCopyArgs, Disk, DiskArgs, Effect, Env, ExportSpec, FileEntry, Row, State,
    StateMark, SubvolumeArgs, Table, run_block_copy,
};
use crate::usage::PoolUsage;

/// Performs effects. One real implementation
/// ([`crate::storage::FileStore`]); tests use an in-memory one.
pub trait Backend: Send {
    fn apply(&mut self, effect: &Effect) -> std::io::Result<()>;

    /// Bytes allocated to the backing file of `/file` item `path` (0 when it is missing).
    fn allocated(&self, path: &str) -> std::io::Result<u64>;

    /// What copies the blocks of a `/disk copy`, usable without the device (a copy runs
    /// outside the device lock, see [`crate::engine`]).
    fn block_copier(&self) -> BlockCopier;
}

/// Copies `len` bytes of a block copy starting `done` bytes into it.
pub type BlockCopier =
    std::sync::Arc<dyn Fn(&BlockCopy, u64, u64) -> std::io::Result<()> + Send + Sync>;

/// The exports a save records: all of them, or what changed since the last save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportsSave {
    All(Vec<ExportSpec>),
    /// In the order they happened.
    Changes(Vec<ExportChange>),
}

/// One change of an export, read off the effects a command applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportChange {
    Put(ExportSpec),
    Gone(String),
}

/// Saves the state and the export records. One real implementation
/// ([`crate::storage::StateFiles`]).
pub trait Persist: Send {
    fn persist(&mut self, state: StateRef<'_>, exports: &ExportsSave) -> std::io::Result<()>;

    /// Whether the next save must carry the whole state (nothing saved yet, a journal grown
    /// past its snapshot, a save that failed); by default, changes do.
    fn wants_whole(&self) -> bool {
        false
    }

    /// Saves `state` whole, in one file (at shutdown); by default, nothing more to do.
    fn checkpoint(&mut self, _state: &State) -> std::io::Result<()> {
        Ok(())
    }
}

/// The state a save writes: whole, or what changed since the previous save.
#[derive(Debug, Clone, PartialEq)]
pub enum StateSave {
    Whole(Box<State>),
    Changes(Box<Changes>),
}

/// [`StateSave`] borrowed.
#[derive(Debug, Clone, Copy)]
pub enum StateRef<'a> {
    Whole(&'a State),
    Changes(&'a Changes),
}

impl StateSave {
    pub fn as_ref(&self) -> StateRef<'_> {
        match self {
            StateSave::Whole(state) => StateRef::Whole(state),
            StateSave::Changes(changes) => StateRef::Changes(changes),
        }
    }
}

/// What a save needs, taken under the device lock and written outside it.
#[derive(Debug, Clone)]
pub struct SaveJob {
    pub generation: u64,
    pub state: StateSave,
    pub exports: ExportsSave,
}

pub struct Device {
    state: State,
    backend: Box<dyn Backend>,
    env: Env,
    /// What the backing files occupy; its figure is `env.pool_used`.
    usage: PoolUsage,
    /// Count of successful mutations.
    generation: u64,
    /// Export changes not yet handed to a save.
    export_changes: Vec<ExportChange>,
    /// The next save records every export (a change the effects do not tell, a failed save).
    exports_resync: bool,
    /// The next save writes the whole state (its changes were lost with a failed save).
    state_resync: bool,
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
    /// `env.pool_used` is read off the backing files here.
    pub fn new(mut state: State, backend: Box<dyn Backend>, mut env: Env) -> Self {
        state.forget_changes();
        let usage = PoolUsage::look(&state, &*backend);
        env.pool_used = usage.used();
        Self {
            state,
            backend,
            env,
            usage,
            generation: 0,
            export_changes: Vec::new(),
            exports_resync: true,
            state_resync: false,
        }
    }

    /// Count of successful mutations so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What must be saved now, the whole state when `whole`; the changes it carries are the
    /// save's from here on (a failed save calls [`Device::resync`]).
    pub fn save_job(&mut self, whole: bool) -> SaveJob {
        let state = if whole || std::mem::take(&mut self.state_resync) {
            self.state.forget_changes();
            StateSave::Whole(Box::new(self.state.clone()))
        } else {
            StateSave::Changes(Box::new(self.state.take_changes()))
        };
        let exports = if std::mem::take(&mut self.exports_resync) {
            self.export_changes.clear();
            ExportsSave::All(self.exports())
        } else {
            ExportsSave::Changes(std::mem::take(&mut self.export_changes))
        };
        SaveJob {
            generation: self.generation,
            state,
            exports,
        }
    }

    /// The exports are on disk as they are now (right after a start that wrote them all).
    pub fn exports_recorded(&mut self) {
        self.exports_resync = false;
        self.export_changes.clear();
    }

    /// The next save records the whole state and every export again.
    pub fn resync(&mut self) {
        self.exports_resync = true;
        self.state_resync = true;
    }

    /// The state alone (a checkpoint at shutdown), leaving pending export changes.
    pub fn state_job(&self) -> (u64, State) {
        (self.generation, self.state.clone())
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Updates the clock, the pool-full fault and the quirks before a command runs, and
    /// the pool usage when a look at the files is due.
    pub fn set_conditions(&mut self, now: u64, pool_full: bool, quirks: Quirks) {
        self.env.now = now;
        self.env.pool_full = pool_full;
        self.env.quirks = quirks;
        self.usage.look_if_due(&self.state, &*self.backend);
        self.env.pool_used = self.usage.used();
    }

    /// Reads the pool usage off every backing file now.
    pub fn refresh_pool_usage(&mut self) {
        self.usage.look_again(&self.state, &*self.backend);
        self.env.pool_used = self.usage.used();
    }

    /// Active exports.
    pub fn exports(&self) -> Vec<ExportSpec> {
        self.state.exports(&self.env.version)
    }

    pub fn disk_records(&self) -> Vec<Record> {
        self.disk_records_where(None, |_| true)
    }

    pub fn file_records(&self) -> Vec<Record> {
        let mut records = Vec::new();
        self.each_file_record(None, |_| true, |record| records.push(record));
        records
    }

    /// The record of disk `id`.
    pub fn disk_record(&self, id: u64) -> Option<Record> {
        let disk = self.state.disk(id)?;
        Some(disk_record(&self.state, disk, &self.env))
    }

    /// The record of file `id`.
    pub fn file_record(&self, id: u64) -> Option<Record> {
        self.state.file(id).map(file_record)
    }

    /// The records of the disks `keep` admits, in id order; of those only that have one of
    /// `names` in the index, when given. A look-up that names its item (a slot, an image
    /// path) renders that one record instead of every disk's, which keeps a command's work
    /// under the device lock independent of how many disks exist.
    pub fn disk_records_where(
        &self,
        named: Option<(usize, &[String])>,
        keep: impl FnMut(&Disk) -> bool,
    ) -> Vec<Record> {
        let mut records = Vec::new();
        self.each_disk_record(named, keep, |record| records.push(record));
        records
    }

    /// As [`Device::disk_records_where`], each record handed to `each` as it is rendered.
    pub fn each_disk_record(
        &self,
        named: Option<(usize, &[String])>,
        keep: impl FnMut(&Disk) -> bool,
        each: impl FnMut(Record),
    ) {
        let render = |d: &Disk| disk_record(&self.state, d, &self.env);
        each_kept(&self.state.disks, named, keep, render, each);
    }

    /// As [`Device::each_disk_record`], for files.
    pub fn each_file_record(
        &self,
        named: Option<(usize, &[String])>,
        keep: impl FnMut(&FileEntry) -> bool,
        each: impl FnMut(Record),
    ) {
        each_kept(&self.state.files, named, keep, file_record, each);
    }

    pub fn subvolume_records(&self) -> Vec<Record> {
        self.state
            .subvolumes
            .iter()
            .map(|s| subvolume_record(&self.state.pool.name, s))
            .collect()
    }

    pub fn add_subvolume(&mut self, args: &SubvolumeArgs) -> Result<u64, CmdError> {
        self.commit(|state, env| state.add_subvolume(args, env))
    }

    pub fn remove_subvolume(&mut self, id: u64) -> Result<(), CmdError> {
        self.commit(|state, _| state.remove_subvolume(id))
    }

    pub fn copy_file(&mut self, id: u64, name: &str) -> Result<(), CmdError> {
        self.commit(|state, env| state.copy_file(id, name, env))
    }

    /// `/disk copy` within this call (see [`run_block_copy`]). The state does not change.
    pub fn block_copy(
        &mut self,
        args: &BlockCopyArgs,
        stop_half_way: bool,
        progress: impl FnMut(u64, u64),
    ) -> Result<bool, CmdError> {
        let (copy, copier) = self.start_block_copy(args)?;
        let result = run_block_copy(
            &copy,
            stop_half_way,
            |done, len| copier(&copy, done, len),
            progress,
        );
        self.finish_block_copy(&copy);
        result
    }

    /// A checked `/disk copy` and what copies its blocks, for a copy run outside the lock.
    pub fn start_block_copy(
        &self,
        args: &BlockCopyArgs,
    ) -> Result<(BlockCopy, BlockCopier), CmdError> {
        Ok((
            self.state.plan_block_copy(args)?,
            self.backend.block_copier(),
        ))
    }

    /// After a copy: its destination's allocated blocks counted again.
    pub fn finish_block_copy(&mut self, copy: &BlockCopy) {
        self.usage.update(
            std::iter::once(copy.to.as_str()),
            &self.state,
            &*self.backend,
        );
        self.env.pool_used = self.usage.used();
    }

    pub fn add_disk(&mut self, args: &DiskArgs) -> Result<u64, CmdError> {
        self.commit(|state, env| state.add_disk(args, env))
    }

    pub fn set_disk(&mut self, id: u64, args: &DiskArgs) -> Result<(), CmdError> {
        self.commit(|state, env| state.set_disk(id, args, env))?;
        if args.slot.is_some() {
            // A new slot changes an export's record without an export effect.
            self.exports_resync = true;
        }
        Ok(())
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
        let before = self.state.mark();
        let (value, effects) = match op(&mut self.state, &self.env) {
            Ok(outcome) => outcome,
            Err(e) => {
                self.state.undo_to(before);
                self.state.settle();
                return Err(e);
            }
        };
        let result = self.apply_or_undo(&effects, before);
        self.state.settle();
        let files = effects.iter().filter_map(|e| match e {
            Effect::CreateFile { path, .. }
            | Effect::ResizeFile { path, .. }
            | Effect::RemoveFile { path } => Some(path.as_str()),
            _ => None,
        });
        self.usage.update(files, &self.state, &*self.backend);
        // A copy or a removed tree touches files no effect names: look at all of them.
        if effects
            .iter()
            .any(|e| matches!(e, Effect::Copy { .. } | Effect::RemoveTree { .. }))
        {
            self.usage.look_again(&self.state, &*self.backend);
        }
        self.env.pool_used = self.usage.used();
        result.map(|()| value)
    }

    /// Applies `effects`; if one fails, undoes those done and restores `before`.
    fn apply_or_undo(&mut self, effects: &[Effect], before: StateMark) -> Result<(), CmdError> {
        let mut done: Vec<&Effect> = Vec::with_capacity(effects.len());
        let mut failure = None;
        for effect in effects {
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
            self.export_changes
                .extend(effects.iter().filter_map(|effect| match effect {
                    Effect::Export(spec) | Effect::Revalidate(spec) => {
                        Some(ExportChange::Put(spec.clone()))
                    }
                    Effect::AllowHosts { spec, .. } => Some(ExportChange::Put(spec.clone())),
                    Effect::Unexport(spec) => Some(ExportChange::Gone(spec.nqn.clone())),
                    _ => None,
                }));
            return Ok(());
        };
        for effect in done.iter().rev() {
            if let Some(undo) = effect.inverse()
                && let Err(e) = self.backend.apply(&undo)
            {
                tracing::error!(effect = ?undo, error = %e, "undo failed");
            }
        }
        self.state.undo_to(before);
        Err(CmdError::failure(error.to_string()))
    }
}

/// The items of `table` (those with one of the names, when given) that `keep` admits,
/// rendered one at a time.
fn each_kept<T: Row>(
    table: &Table<T>,
    named: Option<(usize, &[String])>,
    mut keep: impl FnMut(&T) -> bool,
    render: impl Fn(&T) -> Record,
    mut each: impl FnMut(Record),
) {
    let mut visit = |item: &T| {
        if keep(item) {
            each(render(item));
        }
    };
    match named {
        None => table.iter().for_each(&mut visit),
        Some((index, names)) => table.named_any(index, names).into_iter().for_each(visit),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::records::Val;
    use crate::state::FILE_METADATA_BYTES;
    use crate::state::tests::{GIB, env, file_args, fresh};

    /// Records effects; fails exports when told to. Files allocate nothing until a test
    /// says so in `allocated` (as if data had been written).
    #[derive(Clone, Default)]
    pub(crate) struct MemoryBackend {
        pub log: Arc<Mutex<Vec<Effect>>>,
        pub fail_exports: bool,
        pub allocated: Arc<Mutex<HashMap<String, u64>>>,
        /// `/disk copy` steps: the copy, bytes done before the step, the step's length.
        pub copies: Arc<Mutex<Vec<(BlockCopy, u64, u64)>>>,
    }

    impl Backend for MemoryBackend {
        fn apply(&mut self, effect: &Effect) -> std::io::Result<()> {
            if self.fail_exports && matches!(effect, Effect::Export(_)) {
                return Err(std::io::Error::other("export refused"));
            }
            if let Effect::RemoveFile { path } = effect {
                self.allocated.lock().unwrap().remove(path);
            }
            self.log.lock().unwrap().push(effect.clone());
            Ok(())
        }

        fn allocated(&self, path: &str) -> std::io::Result<u64> {
            Ok(self
                .allocated
                .lock()
                .unwrap()
                .get(path)
                .copied()
                .unwrap_or(0))
        }

        fn block_copier(&self) -> BlockCopier {
            let copies = Arc::clone(&self.copies);
            Arc::new(move |copy, done, len| {
                copies.lock().unwrap().push((copy.clone(), done, len));
                Ok(())
            })
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
        let job = device.save_job(true);
        let ExportsSave::All(exports) = &job.exports else {
            panic!("the first save records every export")
        };
        assert_eq!((job.generation, exports.len()), (1, 1));
        assert_eq!(
            job.state,
            StateSave::Whole(Box::new(device.state().clone()))
        );
        // From then on, the changes: the next export, its removal.
        device.add_disk(&file_args("pvc-2", GIB)).unwrap();
        device.remove_disk(2).unwrap();
        let job = device.save_job(false);
        let StateSave::Changes(state_changes) = &job.state else {
            panic!("a save that need not be whole carries the changes")
        };
        assert!(!state_changes.no_items());
        let ExportsSave::Changes(changes) = &job.exports else {
            panic!("later saves record the changes")
        };
        let kinds: Vec<String> = changes
            .iter()
            .map(|c| match c {
                ExportChange::Put(spec) => format!("put {}", spec.slot),
                ExportChange::Gone(nqn) => format!("gone {nqn}"),
            })
            .collect();
        assert_eq!(kinds, ["put pvc-2", "gone nqn.2000-02.com.mikrotik:pvc-1"]);
        let job = device.save_job(false);
        assert_eq!(job.exports, ExportsSave::Changes(Vec::new()));
        assert!(matches!(job.state, StateSave::Changes(c) if c.no_items()));
        // After a failed save, the next one writes everything.
        device.resync();
        let job = device.save_job(false);
        assert!(matches!(job.exports, ExportsSave::All(e) if e.len() == 1));
        assert_eq!(
            job.state,
            StateSave::Whole(Box::new(device.state().clone()))
        );
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
    fn the_pool_reports_allocated_bytes_and_refuses_only_when_nothing_is_left() {
        let backend = MemoryBackend::default();
        let mut device = device_with(backend.clone());
        let free = |device: &Device| device.state().pool_free(device.env());
        assert_eq!(free(&device), 100 * GIB);
        // A new image is sparse: its metadata block is all it takes, whatever its size.
        device.add_disk(&file_args("pvc-1", 10 * GIB)).unwrap();
        device.add_disk(&file_args("big", 200 * GIB)).unwrap();
        assert_eq!(free(&device), 100 * GIB - 2 * FILE_METADATA_BYTES);
        let pool = device.disk_record(1).unwrap();
        assert_eq!(pool.get("size"), Some(Val::Bytes(100 * GIB)));
        assert_eq!(pool.get("use"), Some(Val::Percent(0)));

        // Data written from outside shows at the next look.
        let written = |path: &str, bytes: u64| {
            backend
                .allocated
                .lock()
                .unwrap()
                .insert(format!("storage-pool/{path}.img"), bytes);
        };
        written("pvc-1", 30 * GIB);
        device.refresh_pool_usage();
        assert_eq!(free(&device), 70 * GIB - 2 * FILE_METADATA_BYTES);
        let pool = device.disk_record(1).unwrap();
        assert_eq!(pool.get("use"), Some(Val::Percent(30)));

        // Full up to less than a metadata block: adds and grows are refused.
        written("big", 70 * GIB - 2 * FILE_METADATA_BYTES - 1);
        device.refresh_pool_usage();
        assert_eq!(free(&device), 1);
        let no_space = CmdError::failure("not enough free space on storage-pool");
        assert_eq!(
            device.add_disk(&file_args("pvc-2", GIB)),
            Err(no_space.clone())
        );
        let grow = DiskArgs {
            file_size: Some(11 * GIB),
            ..DiskArgs::default()
        };
        assert_eq!(device.set_disk(2, &grow), Err(no_space));

        // The simulator's own removals count at once: a kept image still takes its
        // blocks, a removed file none.
        device.remove_disk(3).unwrap();
        assert_eq!(free(&device), 1);
        let big = device
            .state()
            .file_by_name("storage-pool/big.img")
            .unwrap()
            .id;
        device.remove_file(big).unwrap();
        assert_eq!(free(&device), 70 * GIB - FILE_METADATA_BYTES);
        device.add_disk(&file_args("pvc-2", GIB)).unwrap();
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
