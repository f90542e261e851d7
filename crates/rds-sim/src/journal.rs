//! The state journal: what changed between two saves, one JSON line per save, appended to
//! `state.journal` after the snapshot `state.json`.
//!
//! A save writes the disks and files that changed (whole records) and the ids of those
//! removed, with the few scalar fields of the state, as one line: its cost follows the
//! change, not the state. A line is the unit of atomicity: a save cut short leaves an
//! unterminated last line, which loading drops (the state is then the one before that
//! save). Entries hold values, never increments, so replaying entries the snapshot already
//! contains changes nothing: a crash between writing a new snapshot and emptying the
//! journal loses nothing and invents nothing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::state::{Disk, FileEntry, PoolSettings, State, Subvolume};

/// One save's changes, as written.
#[derive(Debug, Serialize)]
pub struct EntryRef<'a> {
    identity: &'a str,
    pool: &'a PoolSettings,
    next_disk_id: u64,
    next_file_id: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    disks: Vec<&'a Disk>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed_disks: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<&'a FileEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed_files: Vec<u64>,
    next_subvolume_id: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subvolumes: Vec<&'a Subvolume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed_subvolumes: Vec<u64>,
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

impl<'a> EntryRef<'a> {
    /// What `new` changed since `old`; `None` when nothing did. Items are compared by
    /// pointer first (an unchanged item is the same `Arc`), so a save looks at every item
    /// but copies and writes only the changed ones.
    pub fn diff(old: &State, new: &'a State) -> Option<Self> {
        let (disks, removed_disks) = diff_items(&old.disks, &new.disks, |d| d.id);
        let (files, removed_files) = diff_items(&old.files, &new.files, |f| f.id);
        let (subvolumes, removed_subvolumes) =
            diff_items(&old.subvolumes, &new.subvolumes, |s| s.id);
        let unchanged = disks.is_empty()
            && subvolumes.is_empty()
            && removed_subvolumes.is_empty()
            && old.next_subvolume_id == new.next_subvolume_id
            && removed_disks.is_empty()
            && files.is_empty()
            && removed_files.is_empty()
            && old.identity == new.identity
            && old.pool == new.pool
            && old.next_disk_id == new.next_disk_id
            && old.next_file_id == new.next_file_id;
        (!unchanged).then(|| EntryRef {
            identity: &new.identity,
            pool: &new.pool,
            next_disk_id: new.next_disk_id,
            next_file_id: new.next_file_id,
            disks,
            removed_disks,
            files,
            removed_files,
            next_subvolume_id: new.next_subvolume_id,
            subvolumes,
            removed_subvolumes,
        })
    }
}

impl Entry {
    /// Lays the entry over `state`.
    pub fn apply(self, state: &mut State) {
        state.identity = self.identity;
        state.pool = self.pool;
        state.next_disk_id = self.next_disk_id;
        state.next_file_id = self.next_file_id;
        apply_items(&mut state.disks, self.disks, &self.removed_disks, |d| d.id);
        apply_items(&mut state.files, self.files, &self.removed_files, |f| f.id);
        state.next_subvolume_id = self.next_subvolume_id;
        apply_items(
            &mut state.subvolumes,
            self.subvolumes,
            &self.removed_subvolumes,
            |s| s.id,
        );
    }
}

/// Items of `new` that are not in `old` as they are, and ids of `old` gone from `new`; both
/// lists are in id order.
fn diff_items<'a, T: PartialEq>(
    old: &[Arc<T>],
    new: &'a [Arc<T>],
    id: impl Fn(&T) -> u64,
) -> (Vec<&'a T>, Vec<u64>) {
    let (mut changed, mut removed) = (Vec::new(), Vec::new());
    let (mut o, mut n) = (0, 0);
    while o < old.len() || n < new.len() {
        match (old.get(o), new.get(n)) {
            (Some(a), Some(b)) if id(&**a) == id(&**b) => {
                if !Arc::ptr_eq(a, b) && a != b {
                    changed.push(b.as_ref());
                }
                o += 1;
                n += 1;
            }
            (Some(a), Some(b)) if id(&**a) < id(&**b) => {
                removed.push(id(&**a));
                o += 1;
            }
            (Some(a), None) => {
                removed.push(id(&**a));
                o += 1;
            }
            (_, Some(b)) => {
                changed.push(b.as_ref());
                n += 1;
            }
            (None, None) => unreachable!("the loop runs while one side has items"),
        }
    }
    (changed, removed)
}

/// Puts `upserts` in their places by id (replacing items of the same id) and takes out
/// `removed`; `items` stays in id order.
fn apply_items<T>(
    items: &mut Vec<Arc<T>>,
    upserts: Vec<T>,
    removed: &[u64],
    id: impl Fn(&T) -> u64,
) {
    for item in upserts {
        match items.binary_search_by_key(&id(&item), |i| id(&**i)) {
            Ok(at) => items[at] = Arc::new(item),
            Err(at) => items.insert(at, Arc::new(item)),
        }
    }
    for gone in removed {
        if let Ok(at) = items.binary_search_by_key(gone, |i| id(&**i)) {
            items.remove(at);
        }
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
    Ok((applied, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{GIB, env, file_args, fresh};

    fn line(old: &State, new: &State) -> Vec<u8> {
        let mut out = serde_json::to_vec(&EntryRef::diff(old, new).unwrap()).unwrap();
        out.push(b'\n');
        out
    }

    #[test]
    fn replaying_the_changes_rebuilds_the_state() {
        let env = env();
        let start = fresh();
        let mut state = start.clone();
        let mut journal = Vec::new();
        let mut saved = state.clone();
        for n in 0..5 {
            state
                .add_disk(&file_args(&format!("pvc-{n}"), GIB), &env)
                .unwrap();
            journal.extend(line(&saved, &state));
            saved = state.clone();
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
        journal.extend(line(&saved, &state));
        saved = state.clone();
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
        journal.extend(line(&saved, &state));
        saved = state.clone();
        state.remove_subvolume(1).unwrap();
        journal.extend(line(&saved, &state));
        assert!(
            EntryRef::diff(&state, &state).is_none(),
            "no change, no entry"
        );

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
