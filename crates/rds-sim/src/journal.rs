//! The state journal: what changed between two saves, one JSON line per save, appended to
//! `state.journal` after the snapshot `state.json`.
//!
//! A save writes the disks and files that changed (whole records, as the state's tables
//! noted them while commands ran) and the ids of those removed, with the few scalar fields
//! of the state, as one line: its cost follows the change, not the state. A line is the
//! unit of atomicity: a save cut short leaves an unterminated last line, which loading
//! drops (the state is then the one before that save). Entries hold values, never
//! increments, so replaying entries the snapshot already contains changes nothing: a crash
//! between writing a new snapshot and emptying the journal loses nothing and invents
//! nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::state::{Disk, FileEntry, PoolSettings, Row, State, Subvolume, Table};

/// The state's fields besides its items, written whole in every entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scalars {
    identity: String,
    pool: PoolSettings,
    next_disk_id: u64,
    next_file_id: u64,
    next_subvolume_id: u64,
}

impl Scalars {
    pub fn of(state: &State) -> Self {
        Self {
            identity: state.identity.clone(),
            pool: state.pool.clone(),
            next_disk_id: state.next_disk_id,
            next_file_id: state.next_file_id,
            next_subvolume_id: state.next_subvolume_id,
        }
    }
}

/// One save's changes, as written: the changed items as they are after the change (shared
/// with the state), the ids of those gone, and the scalar fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changes {
    #[serde(flatten)]
    scalars: Scalars,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    disks: Vec<Arc<Disk>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed_disks: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<Arc<FileEntry>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed_files: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subvolumes: Vec<Arc<Subvolume>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed_subvolumes: Vec<u64>,
}

impl Changes {
    /// The changes of the items of these ids, read off `state` as it is now.
    pub fn new(
        state: &State,
        disks: BTreeSet<u64>,
        files: BTreeSet<u64>,
        subvolumes: BTreeSet<u64>,
    ) -> Self {
        let (disks, removed_disks) = split(&state.disks, disks);
        let (files, removed_files) = split(&state.files, files);
        let (subvolumes, removed_subvolumes) = split(&state.subvolumes, subvolumes);
        Self {
            scalars: Scalars::of(state),
            disks,
            removed_disks,
            files,
            removed_files,
            subvolumes,
            removed_subvolumes,
        }
    }

    /// Whether no item changed.
    pub fn no_items(&self) -> bool {
        self.disks.is_empty()
            && self.removed_disks.is_empty()
            && self.files.is_empty()
            && self.removed_files.is_empty()
            && self.subvolumes.is_empty()
            && self.removed_subvolumes.is_empty()
    }

    /// The scalar fields, to tell whether a change without items changed anything.
    pub fn scalars(&self) -> &Scalars {
        &self.scalars
    }
}

/// The items of `ids` still in `table` (shared), and the ids gone from it; both in id order.
fn split<T: Row>(table: &Table<T>, ids: BTreeSet<u64>) -> (Vec<Arc<T>>, Vec<u64>) {
    let (mut present, mut gone) = (Vec::new(), Vec::new());
    let rows = table.shared();
    for id in ids {
        match rows.binary_search_by_key(&id, |row| row.id()) {
            Ok(at) => present.push(Arc::clone(&rows[at])),
            Err(_) => gone.push(id),
        }
    }
    (present, gone)
}

/// One save's changes, as read back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    identity: String,
    pool: PoolSettings,
    next_disk_id: u64,
    next_file_id: u64,
    #[serde(default)]
    disks: Vec<Disk>,
    #[serde(default)]
    removed_disks: Vec<u64>,
    #[serde(default)]
    files: Vec<FileEntry>,
    #[serde(default)]
    removed_files: Vec<u64>,
    /// Entries written before subvolumes existed have none of the three.
    #[serde(default = "first_id")]
    next_subvolume_id: u64,
    #[serde(default)]
    subvolumes: Vec<Subvolume>,
    #[serde(default)]
    removed_subvolumes: Vec<u64>,
}

fn first_id() -> u64 {
    1
}

impl Entry {
    /// Lays the entry over `state`. The state notes the changes as any other: a replay
    /// ends with [`State::settle`] and a save of the whole state.
    pub fn apply(self, state: &mut State) {
        state.identity = self.identity;
        state.pool = self.pool;
        state.next_disk_id = self.next_disk_id;
        state.next_file_id = self.next_file_id;
        apply_items(&mut state.disks, self.disks, &self.removed_disks);
        apply_items(&mut state.files, self.files, &self.removed_files);
        state.next_subvolume_id = self.next_subvolume_id;
        apply_items(
            &mut state.subvolumes,
            self.subvolumes,
            &self.removed_subvolumes,
        );
    }
}

/// Puts `upserts` in their places by id (replacing items of the same id) and takes out
/// `removed`.
fn apply_items<T: Row>(table: &mut Table<T>, upserts: Vec<T>, removed: &[u64]) {
    for item in upserts {
        table.put(item);
    }
    for &gone in removed {
        table.remove(gone);
    }
}

/// Why a journal could not be read.
#[derive(Debug, thiserror::Error)]
#[error("entry {line}: {source}")]
pub struct BadEntry {
    pub line: usize,
    pub source: serde_json::Error,
}

/// Replays the journal text over `state`. An unterminated last line is a save cut short and
/// is dropped; a terminated line that does not parse is corruption. Returns how many entries
/// were applied and whether a torn tail was dropped.
pub fn replay(state: &mut State, text: &[u8]) -> Result<(usize, bool), BadEntry> {
    let mut applied = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            state.forget_changes();
            return Ok((applied, true));
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let entry: Entry = serde_json::from_slice(line).map_err(|source| BadEntry {
            line: applied + 1,
            source,
        })?;
        entry.apply(state);
        applied += 1;
    }
    state.forget_changes();
    Ok((applied, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{GIB, env, file_args, fresh};

    fn line(state: &mut State) -> Vec<u8> {
        let mut out = serde_json::to_vec(&state.take_changes()).unwrap();
        out.push(b'\n');
        out
    }

    #[test]
    fn replaying_the_changes_rebuilds_the_state() {
        let env = env();
        let start = fresh();
        let mut state = start.clone();
        let mut journal = Vec::new();
        for n in 0..5 {
            state
                .add_disk(&file_args(&format!("pvc-{n}"), GIB), &env)
                .unwrap();
            journal.extend(line(&mut state));
        }
        state.remove_disk(3, &env).unwrap();
        let grow = crate::state::DiskArgs {
            file_size: Some(2 * GIB),
            ..Default::default()
        };
        state.set_disk(5, &grow, &env).unwrap();
        let id = state.file_by_name("storage-pool/pvc-1.img").unwrap().id;
        state.remove_file(id).unwrap();
        state.set_identity("rds-2").unwrap();
        journal.extend(line(&mut state));
        let subvolume = |name: &str, parent: Option<&str>| crate::state::SubvolumeArgs {
            fs: Some("storage-pool".into()),
            name: Some(name.into()),
            parent: parent.map(str::to_string),
            read_only: Some(parent.is_some()),
        };
        state.add_subvolume(&subvolume("vol", None), &env).unwrap();
        state
            .add_subvolume(&subvolume("snap", Some("vol")), &env)
            .unwrap();
        journal.extend(line(&mut state));
        let saved = state.clone();
        state.remove_subvolume(1).unwrap();
        journal.extend(line(&mut state));
        assert!(state.take_changes().no_items(), "told once");

        let mut replayed = start.clone();
        assert_eq!(replay(&mut replayed, &journal).unwrap(), (8, false));
        assert_eq!(replayed, state);

        // Replaying over a snapshot that already holds the changes changes nothing.
        let mut again = state.clone();
        replay(&mut again, &journal).unwrap();
        assert_eq!(again, state);

        // A save cut short: its line is dropped, the state is the one before it.
        let mut torn = journal.clone();
        let last_start = torn[..torn.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        torn.truncate(last_start + 10);
        let mut replayed = start.clone();
        assert_eq!(replay(&mut replayed, &torn).unwrap(), (7, true));
        assert_eq!(replayed, saved);

        // A whole line that does not parse is corruption, not a torn save.
        let mut corrupt = journal[..last_start].to_vec();
        corrupt.extend(b"{\"oops\": 1}\n");
        assert!(replay(&mut start.clone(), &corrupt).is_err());
    }
}
