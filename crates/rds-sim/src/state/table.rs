//! A table of the device's items (`/disk`, `/file`, subvolumes): in id order, found by id
//! or by name in constant or logarithmic time, and keeping account of its changes.
//!
//! Every change goes through [`Table::put`] or [`Table::remove`], which keep the name
//! indexes right and note the change twice: the ids changed since the last save (so a save
//! writes those items, not a comparison of the whole state) and the items as they were
//! before (so a command that fails half-way is undone without a copy of the state taken
//! beforehand). With 10,000 volumes either copy would cost more than the command itself.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many names an item can be found by (a disk: slot, image path, NQN).
pub const INDEXES: usize = 3;

/// An item of a [`Table`].
pub trait Row: Clone {
    fn id(&self) -> u64;
    /// The names the item is found by, one per index (`None`: not in that index).
    fn names(&self) -> [Option<&str>; INDEXES];
}

/// Items in id order, with an ordered index per kind of name (ordered, so that the items
/// under a directory are a range).
#[derive(Clone)]
pub struct Table<T> {
    rows: Vec<Arc<T>>,
    indexes: [BTreeMap<Box<str>, Vec<u64>>; INDEXES],
    /// Ids changed since the last [`Table::take_changed`].
    changed: BTreeSet<u64>,
    /// The items the changes since the last [`Table::settle`] replaced (`None`: there was
    /// none), in the order of the changes.
    undo: Vec<(u64, Option<Arc<T>>)>,
}

impl<T: Row> Table<T> {
    pub fn new() -> Self {
        Self {
            rows: Vec::new(),
            indexes: Default::default(),
            changed: BTreeSet::new(),
            undo: Vec::new(),
        }
    }

    /// A table of `rows` with no change noted.
    pub fn from_rows(rows: impl IntoIterator<Item = T>) -> Self {
        let mut table = Self::new();
        for row in rows {
            table.put(row);
        }
        table.take_changed();
        table.settle();
        table
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The items in id order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.rows.iter().map(Arc::as_ref)
    }

    /// The items in id order, shared.
    pub fn shared(&self) -> &[Arc<T>] {
        &self.rows
    }

    pub fn get(&self, id: u64) -> Option<&T> {
        self.position(id).ok().map(|at| self.rows[at].as_ref())
    }

    /// The ids of the items whose name in `index` is `name`, in id order.
    pub fn ids_named(&self, index: usize, name: &str) -> &[u64] {
        self.indexes[index].get(name).map_or(&[], Vec::as_slice)
    }

    /// The items whose name in `index` is `name`, in id order.
    pub fn named(&self, index: usize, name: &str) -> impl Iterator<Item = &T> {
        self.ids_named(index, name)
            .iter()
            .filter_map(|&id| self.get(id))
    }

    /// The items that have one of `names` in `index`, in id order, each once.
    pub fn named_any(&self, index: usize, names: &[String]) -> Vec<&T> {
        let mut ids: Vec<u64> = names
            .iter()
            .flat_map(|name| self.ids_named(index, name))
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().filter_map(|id| self.get(id)).collect()
    }

    /// The items whose name in `index` lies under directory `dir` (`dir/…`), in name order.
    pub fn under(&self, index: usize, dir: &str) -> impl Iterator<Item = &T> {
        let start = format!("{dir}/");
        let end = format!("{dir}0"); // '0' follows '/' in every encoding of names
        self.indexes[index]
            .range::<str, _>((
                Bound::Included(start.as_str()),
                Bound::Excluded(end.as_str()),
            ))
            .flat_map(|(_, ids)| ids.iter().filter_map(|&id| self.get(id)))
    }

    /// Puts `row` in its place by id, replacing the item of that id; returns that item.
    pub fn put(&mut self, row: T) -> Option<Arc<T>> {
        let id = row.id();
        let row = Arc::new(row);
        // The old names go first: the new item may have some of them.
        let old = match self.position(id) {
            Ok(at) => Some(std::mem::replace(&mut self.rows[at], Arc::clone(&row))),
            Err(at) => {
                self.rows.insert(at, Arc::clone(&row));
                None
            }
        };
        if let Some(old) = &old {
            self.index(old, false);
        }
        self.index(&row, true);
        self.noted(id, old.clone());
        old
    }

    /// Changes the item `id` with `change`; `false` when there is none.
    pub fn update(&mut self, id: u64, change: impl FnOnce(&mut T)) -> bool {
        let Some(mut row) = self.get(id).cloned() else {
            return false;
        };
        change(&mut row);
        debug_assert_eq!(row.id(), id, "a change keeps the id");
        self.put(row);
        true
    }

    /// Takes out the item `id`; returns it.
    pub fn remove(&mut self, id: u64) -> Option<Arc<T>> {
        let at = self.position(id).ok()?;
        let old = self.rows.remove(at);
        self.index(&old, false);
        self.noted(id, Some(Arc::clone(&old)));
        Some(old)
    }

    /// How far the undo record reaches now, for [`Table::undo_to`].
    pub fn mark(&self) -> usize {
        self.undo.len()
    }

    /// Puts back the items the changes since `mark` replaced, last change first.
    pub fn undo_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let (id, old) = self.undo.pop().expect("longer than the mark");
            if let Ok(at) = self.position(id) {
                let gone = self.rows.remove(at);
                self.index(&gone, false);
            }
            if let Some(old) = old {
                self.index(&old, true);
                let at = self.position(id).expect_err("just taken out");
                self.rows.insert(at, old);
            }
        }
    }

    /// The changes so far are kept: nothing before this point can be undone.
    pub fn settle(&mut self) {
        self.undo.clear();
    }

    /// The ids changed since the last call, in id order (an id may have changed back).
    pub fn take_changed(&mut self) -> BTreeSet<u64> {
        std::mem::take(&mut self.changed)
    }

    fn noted(&mut self, id: u64, old: Option<Arc<T>>) {
        self.changed.insert(id);
        self.undo.push((id, old));
    }

    fn position(&self, id: u64) -> Result<usize, usize> {
        self.rows.binary_search_by_key(&id, |row| row.id())
    }

    /// Adds `row`'s names to the indexes, or takes them out.
    fn index(&mut self, row: &T, add: bool) {
        let id = row.id();
        for (index, name) in self.indexes.iter_mut().zip(row.names()) {
            let Some(name) = name else { continue };
            if add {
                let ids = index.entry(name.into()).or_default();
                if let Err(at) = ids.binary_search(&id) {
                    ids.insert(at, id);
                }
            } else if let Some(ids) = index.get_mut(name) {
                ids.retain(|&other| other != id);
                if ids.is_empty() {
                    index.remove(name);
                }
            }
        }
    }
}

impl<T: Row> Default for Table<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Two tables are equal when their items are; what changed is not part of it.
impl<T: Row + PartialEq> PartialEq for Table<T> {
    fn eq(&self, other: &Self) -> bool {
        self.rows.len() == other.rows.len() && self.iter().eq(other.iter())
    }
}

impl<T: Row + std::fmt::Debug> std::fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Written as the list of its items, as the state file has always held them.
impl<T: Row + Serialize> Serialize for Table<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de, T: Row + Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(deserializer).map(Self::from_rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item {
        id: u64,
        name: String,
        alias: Option<String>,
    }

    impl Row for Item {
        fn id(&self) -> u64 {
            self.id
        }
        fn names(&self) -> [Option<&str>; INDEXES] {
            [Some(&self.name), self.alias.as_deref(), None]
        }
    }

    fn item(id: u64, name: &str) -> Item {
        Item {
            id,
            name: name.into(),
            alias: None,
        }
    }

    fn ids<'a>(items: impl Iterator<Item = &'a Item>) -> Vec<u64> {
        items.map(|i| i.id).collect()
    }

    #[test]
    fn items_are_found_by_id_and_by_every_name_as_they_change() {
        let mut table = Table::new();
        table.put(item(3, "pool/b"));
        table.put(item(1, "pool/a"));
        table.put(item(2, "pool/a")); // names may repeat
        table.put(Item {
            alias: Some("x".into()),
            ..item(4, "pool/dir/c")
        });
        assert_eq!(ids(table.iter()), [1, 2, 3, 4], "id order");
        assert_eq!(table.ids_named(0, "pool/a"), [1, 2]);
        assert_eq!(ids(table.named(1, "x")), [4]);
        let names = [
            "pool/b".to_string(),
            "x".into(),
            "pool/a".into(),
            "pool/b".into(),
        ];
        assert_eq!(ids(table.named_any(0, &names).into_iter()), [1, 2, 3]);
        assert_eq!(ids(table.under(0, "pool")), [1, 2, 3, 4]);
        assert_eq!(ids(table.under(0, "pool/dir")), [4]);
        assert_eq!(ids(table.under(0, "poo")), Vec::<u64>::new());

        assert!(table.update(3, |i| i.alias = Some("y".into())));
        assert_eq!(
            table.ids_named(0, "pool/b"),
            [3],
            "a name kept is still found"
        );
        assert!(table.update(4, |i| i.alias = None));
        assert!(
            table.ids_named(1, "x").is_empty(),
            "an old name is forgotten"
        );
        assert!(table.update(1, |i| i.name = "pool/z".into()));
        assert_eq!(table.ids_named(0, "pool/a"), [2]);
        assert_eq!(table.get(1).unwrap().name, "pool/z");
        assert_eq!(table.remove(2).unwrap().id, 2);
        assert!(table.ids_named(0, "pool/a").is_empty());
        assert!(table.remove(2).is_none());
        assert!(!table.update(2, |_| {}));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn changes_since_a_mark_are_undone_and_changed_ids_are_told_once() {
        let mut table = Table::from_rows([item(1, "a"), item(2, "b")]);
        assert!(
            table.take_changed().is_empty(),
            "a new table has no changes"
        );
        let before = table.clone();

        let mark = table.mark();
        table.put(item(3, "c"));
        table.update(1, |i| i.name = "a2".into());
        table.update(1, |i| i.name = "a3".into());
        table.remove(2);
        table.undo_to(mark);
        assert_eq!(table, before);
        assert_eq!(ids(table.named(0, "a")), [1]);
        assert_eq!(ids(table.named(0, "b")), [2]);
        assert!(table.ids_named(0, "a3").is_empty() && table.ids_named(0, "c").is_empty());
        assert_eq!(
            table.take_changed().into_iter().collect::<Vec<_>>(),
            [1, 2, 3],
            "undone changes may be told: a save writes what is there"
        );

        table.put(item(5, "e"));
        table.settle();
        let mark = table.mark();
        table.remove(5);
        table.undo_to(mark);
        assert_eq!(ids(table.named(0, "e")), [5], "settled changes stay");
        assert_eq!(table.take_changed().into_iter().collect::<Vec<_>>(), [5]);
        assert!(table.take_changed().is_empty());
    }

    #[test]
    fn it_is_written_and_read_as_the_list_of_its_items() {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        struct Named {
            id: u64,
            name: String,
        }
        impl Row for Named {
            fn id(&self) -> u64 {
                self.id
            }
            fn names(&self) -> [Option<&str>; INDEXES] {
                [Some(&self.name), None, None]
            }
        }
        let table = Table::from_rows([
            Named {
                id: 2,
                name: "b".into(),
            },
            Named {
                id: 1,
                name: "a".into(),
            },
        ]);
        let text = serde_json::to_string(&table).unwrap();
        assert_eq!(text, r#"[{"id":1,"name":"a"},{"id":2,"name":"b"}]"#);
        let read: Table<Named> = serde_json::from_str(&text).unwrap();
        assert_eq!(read, table);
        assert_eq!(read.named(0, "b").next().unwrap().id, 2);
    }
}
