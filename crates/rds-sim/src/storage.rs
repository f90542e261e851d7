//! The data directory: persisted state, sparse backing files, the export
//! record and (where configfs exists) nvmet exports.
//!
//! Layout of `<data-dir>`:
//! - `state.json`: a snapshot of the state model, replaced atomically (at start, at
//!   shutdown and whenever the journal has grown past it);
//! - `state.journal`: the changes since the snapshot, one line per save
//!   ([`crate::journal`]): a save costs what it changed, not the whole state;
//! - `files/<file path>`: backing files (`files/storage-pool/pvc-1.img`);
//! - `exports/<nqn>.json`: one record per active NVMe/TCP export ([`ExportRecord`]), written
//!   and removed with the export, so that a save costs the exports it changed;
//! - `faults.json`: optional fault control file (see [`crate::faults`]);
//! - host key, TLS certificate and key, and a lock file.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::device::{Backend, ExportChange, ExportsSave, Persist, StateRef};
use crate::journal::{Changes, Scalars};
use crate::nvmet::NvmetExporter;
use crate::state::{BlockCopy, Effect, ExportSpec, FileKind, Id128, STATE_FORMAT, State};

pub const STATE_FILE: &str = "state.json";
/// The changes saved since `state.json` was written.
pub const JOURNAL_FILE: &str = "state.journal";
/// The journal is folded into a new snapshot once it is larger than the snapshot and this.
pub const COMPACT_FLOOR_BYTES: u64 = 1 << 20;
/// The directory of the export records.
pub const EXPORTS_DIR: &str = "exports";
/// The single record of every export that older simulators wrote; removed at start.
const LEGACY_EXPORTS_FILE: &str = "exports.json";
/// The state before the last save: the scratch file the next save writes into.
pub const PREVIOUS_STATE_FILE: &str = "state.json.prev";
pub const FILES_DIR: &str = "files";

/// The record file name of the export of `nqn`: the NQN itself, which tools on the host
/// look up directly. `None` for an NQN that cannot be a file name (a `/`, a leading `.`);
/// such an export gets no record (it is still served by nvmet).
pub fn export_record_name(nqn: &str) -> Option<String> {
    let fits = !nqn.is_empty() && nqn.len() <= 250 && !nqn.starts_with('.');
    (fits && !nqn.contains(['/', '\0'])).then(|| format!("{nqn}.json"))
}

/// Reads every export record under `data_dir` (tests and tools; unreadable records are
/// errors).
pub fn read_export_records(data_dir: &Path) -> io::Result<Vec<ExportRecord>> {
    let mut records = Vec::new();
    let entries = match fs::read_dir(data_dir.join(EXPORTS_DIR)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(records),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            records.push(serde_json::from_slice(&fs::read(&path)?).map_err(io::Error::other)?);
        }
    }
    records.sort_by(|a: &ExportRecord, b| a.nqn.cmp(&b.nqn));
    Ok(records)
}

/// One exported disk, as recorded in `exports/<nqn>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub slot: String,
    /// Subsystem NQN a host connects to.
    pub nqn: String,
    /// Address of the NVMe/TCP listener (from `--nvme-listen`).
    pub address: String,
    /// TCP port (the disk's `nvme-tcp-server-port`).
    pub port: u16,
    /// `file-path` as the device prints it (leading `/`).
    pub file_path: String,
    /// Absolute path of the backing file on this host.
    pub backing_file: PathBuf,
    /// Size of the namespace in bytes.
    pub size: u64,
    /// Whether a real nvmet subsystem serves it (false without configfs).
    pub nvmet: bool,
    /// The namespace's `device_uuid`, as a host shows it in `/sys/block/<dev>/uuid`.
    pub uuid: Id128,
    /// The namespace's `device_nguid`, as a host shows it in `/sys/block/<dev>/nguid`.
    pub nguid: Id128,
    /// Host NQNs admitted; empty = any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
}

/// Why the stored state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a valid state file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has format {found}; this simulator reads format {STATE_FORMAT}")]
    Format { path: PathBuf, found: u32 },
    #[error("{path} is not a valid state journal: {source}")]
    Journal {
        path: PathBuf,
        source: crate::journal::BadEntry,
    },
}

/// Absolute path of the backing file for a `/file` name.
pub fn backing_path(data_dir: &Path, file_path: &str) -> PathBuf {
    data_dir.join(FILES_DIR).join(file_path)
}

/// The real [`Backend`]: files under the data directory plus nvmet.
#[derive(Debug)]
pub struct FileStore {
    data_dir: PathBuf,
    nvmet: Option<NvmetExporter>,
}

impl FileStore {
    pub fn new(data_dir: impl Into<PathBuf>, nvmet: Option<NvmetExporter>) -> Self {
        Self {
            data_dir: data_dir.into(),
            nvmet,
        }
    }

    pub fn backing_path(&self, file_path: &str) -> PathBuf {
        backing_path(&self.data_dir, file_path)
    }

    /// The saved state, if there is one.
    pub fn load(data_dir: &Path) -> Result<Option<State>, LoadError> {
        let path = data_dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LoadError::Read { path, source }),
        };
        let state: State = serde_json::from_str(&text).map_err(|source| LoadError::Parse {
            path: path.clone(),
            source,
        })?;
        if state.format != STATE_FORMAT {
            return Err(LoadError::Format {
                path,
                found: state.format,
            });
        }
        let mut state = state;
        let path = data_dir.join(JOURNAL_FILE);
        let journal = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(LoadError::Read { path, source }),
        };
        let (_, torn) =
            crate::journal::replay(&mut state, &journal).map_err(|e| LoadError::Journal {
                path: path.clone(),
                source: e,
            })?;
        if torn {
            tracing::warn!(journal = %path.display(), "the last save was cut short; the state is the one before it");
        }
        Ok(Some(state))
    }

    /// Brings the data directory in line with a loaded state, as a device
    /// does when it boots: recreates missing directories and backing files
    /// (sparse, warning about each) and re-creates the exports.
    pub fn restore(&mut self, state: &State, exports: &[ExportSpec]) -> io::Result<()> {
        fs::create_dir_all(self.data_dir.join(FILES_DIR))?;
        for file in state.files.iter() {
            let path = self.backing_path(&file.name);
            match file.kind {
                FileKind::Disk | FileKind::Directory => fs::create_dir_all(&path)?,
                FileKind::File => match fs::metadata(&path) {
                    Ok(meta) if meta.len() >= file.size => {}
                    Ok(_) | Err(_) => {
                        tracing::warn!(file = %path.display(), size = file.size, "backing file missing or short; recreating it sparse");
                        if let Some(parent) = path.parent() {
                            fs::create_dir_all(parent)?;
                        }
                        fs::OpenOptions::new()
                            .create(true)
                            .write(true)
                            .truncate(false)
                            .open(&path)?
                            .set_len(file.size)?;
                    }
                },
            }
        }
        for spec in exports {
            self.apply(&Effect::Export(spec.clone()))?;
        }
        Ok(())
    }

    /// Removes the nvmet exports (at shutdown: the device goes away).
    pub fn teardown(&mut self, exports: &[ExportSpec]) -> io::Result<()> {
        let mut first_error = None;
        for spec in exports {
            if let Err(e) = self.apply(&Effect::Unexport(spec.clone())) {
                tracing::error!(nqn = %spec.nqn, error = %e, "removing nvmet export failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Backend for FileStore {
    fn apply(&mut self, effect: &Effect) -> io::Result<()> {
        match effect {
            Effect::CreateDir { path } => fs::create_dir_all(self.backing_path(path)),
            Effect::RemoveDir { path } => ignore_missing(fs::remove_dir(self.backing_path(path))),
            Effect::CreateFile { path, size } => {
                let path = self.backing_path(path);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                // Truncating first: a stray file of that name must not leak
                // old data into a new disk. `set_len` keeps it sparse.
                fs::File::create(&path)?.set_len(*size)
            }
            Effect::ResizeFile { path, to, .. } => fs::OpenOptions::new()
                .write(true)
                .open(self.backing_path(path))?
                .set_len(*to),
            Effect::RemoveFile { path } => ignore_missing(fs::remove_file(self.backing_path(path))),
            Effect::Copy { from, to } => {
                let (from, to) = (self.backing_path(from), self.backing_path(to));
                let kind = crate::copy::copy_tree(&from, &to);
                if kind.is_err() {
                    // All or nothing: the copy made so far goes.
                    let _ = crate::copy::remove_tree(&to);
                }
                tracing::debug!(from = %from.display(), to = %to.display(), ?kind, "copied");
                kind.map(drop)
            }
            Effect::RemoveTree { path } => crate::copy::remove_tree(&self.backing_path(path)),
            Effect::Export(spec) => match &self.nvmet {
                Some(nvmet) => nvmet.export(
                    &spec.nqn,
                    spec.port,
                    &self.backing_path(&spec.file_path),
                    &spec.ids,
                    &spec.allowed_hosts,
                ),
                None => Ok(()),
            },
            Effect::Unexport(spec) => match &self.nvmet {
                Some(nvmet) => nvmet.unexport(&spec.nqn, spec.port),
                None => Ok(()),
            },
            Effect::Revalidate(spec) => match &self.nvmet {
                Some(nvmet) => nvmet.revalidate(&spec.nqn),
                None => Ok(()),
            },
            Effect::AllowHosts { spec, .. } => match &self.nvmet {
                Some(nvmet) => nvmet.allow_hosts(&spec.nqn, &spec.allowed_hosts),
                None => Ok(()),
            },
        }
    }

    fn block_copier(&self) -> crate::device::BlockCopier {
        let data_dir = self.data_dir.clone();
        std::sync::Arc::new(move |copy: &BlockCopy, done, len| {
            crate::copy::copy_range(
                &backing_path(&data_dir, &copy.from),
                copy.from_offset + done,
                &backing_path(&data_dir, &copy.to),
                copy.to_offset + done,
                len,
            )
        })
    }

    fn allocated(&self, path: &str) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(self.backing_path(path)) {
            Ok(meta) => Ok(meta.blocks() * 512),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// The real [`Persist`]: `state.json` (with its journal) and the export records, each
/// replaced atomically; an export's record only when that export changed.
#[derive(Debug)]
pub struct StateFiles {
    data_dir: PathBuf,
    nvme_address: IpAddr,
    nvmet: bool,

    /// Serialisation buffer, kept between saves.
    buffer: Vec<u8>,
    /// The scalar fields the journal last wrote: a save without changed items and with
    /// these writes nothing.
    last_scalars: Option<Scalars>,
    /// `state.journal`, open for appending once a snapshot has been written; until then
    /// (and after a failed append) a save must be whole.
    journal: Option<fs::File>,
    journal_bytes: u64,
    snapshot_bytes: u64,
}

impl StateFiles {
    pub fn new(data_dir: impl Into<PathBuf>, nvme_address: IpAddr, nvmet: bool) -> Self {
        Self {
            data_dir: data_dir.into(),
            nvme_address,
            nvmet,
            buffer: Vec::new(),
            last_scalars: None,
            journal: None,
            journal_bytes: 0,
            snapshot_bytes: 0,
        }
    }

    /// Writes `state` as the new snapshot, then empties the journal. A crash in between
    /// leaves a journal whose entries the snapshot already holds, which replay harmlessly.
    fn write_snapshot(&mut self, state: &State) -> io::Result<()> {
        // Compact: only the simulator reads it.
        self.buffer.clear();
        serde_json::to_writer(&mut self.buffer, state).map_err(io::Error::other)?;
        replace_via_scratch(
            &self.data_dir.join(STATE_FILE),
            &self.data_dir.join(PREVIOUS_STATE_FILE),
            &self.buffer,
        )?;
        self.snapshot_bytes = self.buffer.len() as u64;
        let journal = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join(JOURNAL_FILE))?;
        journal.set_len(0)?;
        self.journal = Some(journal);
        self.journal_bytes = 0;
        self.buffer = Vec::new();
        self.last_scalars = Some(Scalars::of(state));
        Ok(())
    }

    /// Appends what changed since the last save as one line.
    fn append_change(&mut self, changes: &Changes) -> io::Result<()> {
        let same_scalars = self.last_scalars.as_ref() == Some(changes.scalars());
        if changes.no_items() && same_scalars {
            return Ok(());
        }
        if !same_scalars {
            self.last_scalars = Some(changes.scalars().clone());
        }
        self.buffer.clear();
        serde_json::to_writer(&mut self.buffer, changes).map_err(io::Error::other)?;
        self.buffer.push(b'\n');
        let journal = self
            .journal
            .as_mut()
            .expect("a snapshot opened the journal");
        journal.write_all(&self.buffer)?;
        self.journal_bytes += self.buffer.len() as u64;
        Ok(())
    }

    /// Writes the export records: every one (and removes any other record, the single file
    /// of older versions too), or the changes in their order.
    fn write_export_records(&mut self, exports: &ExportsSave) -> io::Result<()> {
        let dir = self.data_dir.join(EXPORTS_DIR);
        match exports {
            ExportsSave::All(all) => {
                fs::create_dir_all(&dir)?;
                ignore_missing(fs::remove_file(self.data_dir.join(LEGACY_EXPORTS_FILE)))?;
                let names: HashSet<String> = all
                    .iter()
                    .filter_map(|spec| export_record_name(&spec.nqn))
                    .collect();
                for entry in fs::read_dir(&dir)? {
                    let entry = entry?;
                    if !entry
                        .file_name()
                        .to_str()
                        .is_some_and(|n| names.contains(n))
                    {
                        ignore_missing(fs::remove_file(entry.path()))?;
                    }
                }
                for spec in all {
                    self.write_export_record(&dir, spec)?;
                }
            }
            ExportsSave::Changes(changes) => {
                for change in changes {
                    match change {
                        ExportChange::Put(spec) => self.write_export_record(&dir, spec)?,
                        ExportChange::Gone(nqn) => {
                            if let Some(name) = export_record_name(nqn) {
                                ignore_missing(fs::remove_file(dir.join(name)))?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn write_export_record(&self, dir: &Path, spec: &ExportSpec) -> io::Result<()> {
        let Some(name) = export_record_name(&spec.nqn) else {
            tracing::warn!(nqn = %spec.nqn, "this NQN cannot name a file: no export record");
            return Ok(());
        };
        let text =
            serde_json::to_vec_pretty(&self.export_record(spec)).map_err(io::Error::other)?;
        write_atomic(&dir.join(name), &text)
    }

    fn export_record(&self, spec: &ExportSpec) -> ExportRecord {
        ExportRecord {
            slot: spec.slot.clone(),
            nqn: spec.nqn.clone(),
            address: self.nvme_address.to_string(),
            port: spec.port,
            file_path: format!("/{}", spec.file_path),
            backing_file: backing_path(&self.data_dir, &spec.file_path),
            size: spec.size,
            nvmet: self.nvmet,
            uuid: spec.ids.uuid,
            nguid: spec.ids.nguid,
            allowed_hosts: spec.allowed_hosts.clone(),
        }
    }
}

impl Persist for StateFiles {
    fn persist(&mut self, state: StateRef<'_>, exports: &ExportsSave) -> io::Result<()> {
        match state {
            StateRef::Whole(state) => self.write_snapshot(state)?,
            StateRef::Changes(_) if self.journal.is_none() => {
                return Err(io::Error::other(
                    "no snapshot to append changes to: the next save writes the whole state",
                ));
            }
            StateRef::Changes(changes) => {
                if let Err(e) = self.append_change(changes) {
                    // Unknown how much of the line made it: the next save writes a snapshot.
                    self.journal = None;
                    return Err(e);
                }
            }
        }
        self.write_export_records(exports)
    }

    /// Once the journal has grown past the snapshot, the next save folds it into a new one.
    fn wants_whole(&self) -> bool {
        self.journal.is_none() || self.journal_bytes > self.snapshot_bytes.max(COMPACT_FLOOR_BYTES)
    }

    /// Folds the journal into a new snapshot (at shutdown: one file holds the state).
    fn checkpoint(&mut self, state: &State) -> io::Result<()> {
        self.write_snapshot(state)
    }
}

/// Replaces `path` with `bytes` through `scratch`, a file only this process uses: the bytes
/// go into the scratch, the two names swap in one atomic exchange, and the scratch keeps the
/// previous content until the next save overwrites it. Unlike a new temporary file per save,
/// this allocates and frees no inode, which on ext4 costs more than the write itself when
/// saves come in bursts (the allocator scans past recently freed inodes). Only for files no
/// other process reads: a reader still holding the old file could see it being rewritten.
pub fn replace_via_scratch(path: &Path, scratch: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(scratch)?;
    file.write_all(bytes)?;
    file.set_len(bytes.len() as u64)?;
    drop(file);
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, scratch, CWD, path, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        // No old file yet, or a filesystem without exchange.
        Err(Errno::NOENT | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            fs::rename(scratch, path)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so
/// readers (and a restart after a crash) see the old or the new content,
/// never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.flush()?;
    drop(file);
    // Swap, then drop the old content: as atomic as a rename over the old
    // file, but ext4 turns that rename into a flush plus freeing (and, with
    // `discard`, trimming) the old blocks, costing milliseconds per save.
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, &tmp, CWD, path, RenameFlags::EXCHANGE) {
        Ok(()) => ignore_missing(fs::remove_file(&tmp)),
        // No old file yet, or a filesystem without exchange.
        Err(Errno::NOENT | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            fs::rename(&tmp, path)
        }
        Err(e) => Err(e.into()),
    }
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
