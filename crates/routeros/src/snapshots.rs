//! Copies of a volume on the device (facts: `routeros.md` §6): btrfs subvolumes and their
//! copy-on-write snapshots (7.18+) and `/file copy` (7.23+). Command text and reply
//! parsing are pure; the [`Client`] operations below run them through the transport's one
//! script path, so SSH and REST send the same text.
//!
//! `/disk add copy-from=` is deliberately absent: RouterOS documents it as a copy of an
//! item's properties, not of its data.

use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::model::FileEntry;
use crate::quote::{quote, regex_escape};
use crate::reply::{self, Object};
use crate::validate::{FilePath, SubvolumeName, check_name};
use crate::version::{MIN_FILE_COPY, MIN_SUBVOLUMES};

/// One `/disk btrfs subvolume` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subvolume {
    /// Internal id (`*1`).
    pub id: String,
    pub name: String,
    /// The btrfs filesystem's label.
    pub fs: String,
    /// The subvolume it is a snapshot of, if the device says.
    pub parent: Option<String>,
    pub read_only: bool,
}

/// What a guarded add of a subvolume found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubvolumeOutcome {
    /// This call made it; the read-back matched what was asked.
    Created(Subvolume),
    /// The name was taken before the add: nothing was done. What holds it may be an
    /// earlier try of the same request, or something else; the caller judges.
    Exists(Subvolume),
}

/// What a guarded subvolume removal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubvolumeRemoval {
    /// No subvolume has the name now (removed by this call, or absent before).
    Gone,
    /// A disk is backed by a file in it: nothing was removed.
    InUse,
}

/// What a guarded `/file copy` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOutcome {
    /// This call copied the file to the target.
    Copied(FileEntry),
    /// A file was at the target before: nothing was copied.
    TargetExists(FileEntry),
}

fn put_json(print: &str) -> String {
    format!(":put [:serialize to=json [{print}]]")
}

fn subvolume_named(name: &SubvolumeName) -> String {
    format!("where name={}", quote(name.as_str()))
}

/// Every subvolume.
pub fn list_subvolumes() -> String {
    put_json("/disk btrfs subvolume print as-value")
}

/// Adds the subvolume only when no subvolume has its name, and prints the ids found before
/// and the subvolumes of that name after: two values. With `parent`, a snapshot of it.
pub fn add_subvolume(
    fs: &str,
    name: &SubvolumeName,
    parent: Option<&SubvolumeName>,
    read_only: bool,
) -> String {
    let parent = parent
        .map(|p| format!(" parent={}", quote(p.as_str())))
        .unwrap_or_default();
    let read_only = if read_only { "yes" } else { "no" };
    let filter = subvolume_named(name);
    format!(
        ":local found [/disk btrfs subvolume find {filter}];\
         :put [:serialize to=json $found];\
         :if ([:len $found] = 0) do={{/disk btrfs subvolume add fs={fs} name={name}{parent} \
         read-only={read_only}}};{after}",
        fs = quote(fs),
        name = quote(name.as_str()),
        after = put_json(&format!("/disk btrfs subvolume print as-value {filter}")),
    )
}

/// Removes the subvolume of that name (a no-op when there is none) and prints what holds the
/// name afterwards: one value.
pub fn remove_subvolume(name: &SubvolumeName) -> String {
    let filter = subvolume_named(name);
    format!(
        "/disk btrfs subvolume remove [/disk btrfs subvolume find {filter}];{}",
        put_json(&format!("/disk btrfs subvolume print as-value {filter}"))
    )
}

/// Removes subvolume `name` of the filesystem mounted at `mount` only if, at that moment, no
/// disk is backed by a file in it; prints the ids of such disks and the subvolumes of that
/// name afterwards: two values.
pub fn remove_unused_subvolume(mount: &str, name: &SubvolumeName) -> String {
    let users = format!(
        "[/disk find where file-path~{}]",
        quote(&format!(
            "^/?{}/{}/",
            regex_escape(mount),
            regex_escape(name.as_str())
        ))
    );
    let filter = subvolume_named(name);
    format!(
        ":local users {users};:put [:serialize to=json $users];\
         :if ([:len $users] = 0) do={{/disk btrfs subvolume remove \
         [/disk btrfs subvolume find {filter}]}};{after}",
        after = put_json(&format!("/disk btrfs subvolume print as-value {filter}")),
    )
}

fn file_named(path: &FilePath) -> String {
    format!(
        "where name~{}",
        quote(&format!("^/?{}$", regex_escape(path.as_str())))
    )
}

/// Copies `from` to `to` only when no file is at `to`, and prints the ids found there before
/// and the files there after: two values.
pub fn copy_file(from: &FilePath, to: &FilePath) -> String {
    let target = file_named(to);
    format!(
        ":local found [/file find {target}];:put [:serialize to=json $found];\
         :if ([:len $found] = 0) do={{/file copy [/file find {source}] name={name}}};{after}",
        source = file_named(from),
        name = quote(to.as_str()),
        after = put_json(&format!("/file print as-value {target}")),
    )
}

/// The subvolumes whose names start with `prefix`, then the files at and under the pool
/// directories of that prefix: two values.
pub fn subvolume_contents(mount: &str, prefix: &SubvolumeName) -> String {
    let prefix = regex_escape(prefix.as_str());
    format!(
        "{};{}",
        put_json(&format!(
            "/disk btrfs subvolume print as-value where name~{}",
            quote(&format!("^{prefix}"))
        )),
        put_json(&format!(
            "/file print as-value where name~{}",
            quote(&format!("^/?{}/{prefix}", regex_escape(mount)))
        ))
    )
}

/// Reads one subvolume item.
pub fn subvolume(obj: &Object) -> Result<Subvolume> {
    Ok(Subvolume {
        id: reply::req_str(obj, ".id")?,
        name: reply::req_str(obj, "name")?,
        fs: reply::opt_str(obj, "fs").unwrap_or_default(),
        parent: reply::opt_str(obj, "parent").filter(|p| !p.is_empty()),
        read_only: reply::opt_bool(obj, "read-only")?.unwrap_or(false),
    })
}

/// A `print as-value` listing of subvolumes: an array, or one object (or `{}`, none).
pub fn subvolumes(value: Value) -> Result<Vec<Subvolume>> {
    items(value, "subvolume listing")?
        .iter()
        .map(subvolume)
        .collect()
}

fn items(value: Value, what: &str) -> Result<Vec<Object>> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(obj) => Ok(obj),
                other => Err(Error::Protocol(format!("{what}: unexpected item {other}"))),
            })
            .collect(),
        Value::Object(obj) if obj.is_empty() => Ok(Vec::new()),
        Value::Object(obj) => Ok(vec![obj]),
        other => Err(Error::Protocol(format!("{what}: unexpected {other}"))),
    }
}

/// Whether the ids a guarded script printed before its add say the name was free.
fn was_free(found: &Value) -> Result<bool> {
    match found {
        Value::Array(ids) => Ok(ids.is_empty()),
        Value::String(id) => Ok(id.is_empty()),
        other => Err(Error::Protocol(format!(
            "unexpected look-up result {other}"
        ))),
    }
}

/// The one item of `name` among `items`; none or several is a protocol error.
fn the_one<T>(mut items: Vec<T>, name: &str, what: &str) -> Result<T> {
    match items.len() {
        1 => Ok(items.remove(0)),
        n => Err(Error::Protocol(format!(
            "{n} {what} items named {name} after the add, expected one"
        ))),
    }
}

impl Client {
    /// Every btrfs subvolume of the device (7.18+).
    pub async fn subvolumes(&self) -> Result<Vec<Subvolume>> {
        self.version()
            .await?
            .require("btrfs subvolumes", MIN_SUBVOLUMES)?;
        let mut values = self
            .query_script("list-subvolumes", "", &list_subvolumes(), 1)
            .await?;
        subvolumes(values.remove(0))
    }

    /// An empty subvolume `name` of filesystem `fs`, made only if no subvolume has the name.
    pub async fn create_subvolume(
        &self,
        fs: &str,
        name: &SubvolumeName,
    ) -> Result<SubvolumeOutcome> {
        self.add_subvolume(fs, name, None, false).await
    }

    /// A snapshot of subvolume `parent` named `name` (read-only when asked), made only if no
    /// subvolume has the name: blocks shared with the parent, which goes on unaffected.
    pub async fn snapshot_subvolume(
        &self,
        fs: &str,
        parent: &SubvolumeName,
        name: &SubvolumeName,
        read_only: bool,
    ) -> Result<SubvolumeOutcome> {
        self.add_subvolume(fs, name, Some(parent), read_only).await
    }

    async fn add_subvolume(
        &self,
        fs: &str,
        name: &SubvolumeName,
        parent: Option<&SubvolumeName>,
        read_only: bool,
    ) -> Result<SubvolumeOutcome> {
        check_name("filesystem label", fs)?;
        self.version()
            .await?
            .require("btrfs subvolumes", MIN_SUBVOLUMES)?;
        let script = add_subvolume(fs, name, parent, read_only);
        let mut values = self
            .query_script("add-subvolume", name.as_str(), &script, 2)
            .await?;
        let after = subvolumes(values.pop().expect("two values"))?;
        let free = was_free(&values[0])?;
        let item = the_one(after, name.as_str(), "subvolume")?;
        if item.name != name.as_str() {
            return Err(Error::Protocol(format!(
                "asked for subvolume {name}, the device returned {}",
                item.name
            )));
        }
        if !free {
            return Ok(SubvolumeOutcome::Exists(item));
        }
        // A device that made something else than asked must not be taken at its word.
        let parent_seen = item.parent.as_deref();
        if item.read_only != read_only
            || parent.is_some_and(|p| parent_seen.is_some_and(|seen| seen != p.as_str()))
        {
            return Err(Error::Protocol(format!(
                "subvolume {name}: asked for parent {:?}, read-only {read_only}; the device \
                 shows parent {parent_seen:?}, read-only {}",
                parent.map(SubvolumeName::as_str),
                item.read_only
            )));
        }
        Ok(SubvolumeOutcome::Created(item))
    }

    /// Removes subvolume `name` with every file in it; absent is not an error. Verified: the
    /// name is free afterwards, or this fails.
    pub async fn remove_subvolume(&self, name: &SubvolumeName) -> Result<()> {
        self.version()
            .await?
            .require("btrfs subvolumes", MIN_SUBVOLUMES)?;
        let mut values = self
            .query_script(
                "remove-subvolume",
                name.as_str(),
                &remove_subvolume(name),
                1,
            )
            .await?;
        let left = subvolumes(values.remove(0))?;
        if !left.is_empty() {
            return Err(Error::Protocol(format!(
                "subvolume {name} is still there after its removal"
            )));
        }
        Ok(())
    }

    /// Removes subvolume `name` (of the filesystem mounted at `mount`) with everything in it,
    /// only if no disk is backed by a file in it, checked in the same command; verified gone.
    pub async fn remove_unused_subvolume(
        &self,
        mount: &str,
        name: &SubvolumeName,
    ) -> Result<SubvolumeRemoval> {
        check_name("mount point", mount)?;
        self.version()
            .await?
            .require("btrfs subvolumes", MIN_SUBVOLUMES)?;
        let script = remove_unused_subvolume(mount, name);
        let mut values = self
            .query_script("remove-unused-subvolume", name.as_str(), &script, 2)
            .await?;
        let left = subvolumes(values.pop().expect("two values"))?;
        if !was_free(&values[0])? {
            return Ok(SubvolumeRemoval::InUse);
        }
        if !left.is_empty() {
            return Err(Error::Protocol(format!(
                "subvolume {name} is still there after its removal"
            )));
        }
        Ok(SubvolumeRemoval::Gone)
    }

    /// The subvolumes named `prefix…` and the files in them (one round trip): what the
    /// device knows about a family of subvolumes, such as the driver's snapshots.
    pub async fn subvolume_contents(
        &self,
        mount: &str,
        prefix: &SubvolumeName,
    ) -> Result<(Vec<Subvolume>, Vec<FileEntry>)> {
        check_name("mount point", mount)?;
        self.version()
            .await?
            .require("btrfs subvolumes", MIN_SUBVOLUMES)?;
        let script = subvolume_contents(mount, prefix);
        let mut values = self
            .query_script("subvolume-contents", prefix.as_str(), &script, 2)
            .await?;
        let files = items(values.pop().expect("two values"), "file listing")?
            .iter()
            .map(reply::file_entry)
            .collect::<Result<Vec<_>>>()?;
        let subvolumes = subvolumes(values.pop().expect("two values"))?;
        if let Some(stray) = subvolumes
            .iter()
            .find(|s| !s.name.starts_with(prefix.as_str()))
        {
            return Err(Error::Protocol(format!(
                "asked for subvolumes named {prefix}…, the device returned {}",
                stray.name
            )));
        }
        let root = format!("{mount}/{prefix}");
        if let Some(stray) = files.iter().find(|f| !f.name.starts_with(&root)) {
            return Err(Error::Protocol(format!(
                "asked for files under {root}…, the device returned {}",
                stray.name
            )));
        }
        Ok((subvolumes, files))
    }

    /// Copies file `from` to `to` on the device (7.23+), only if no file is at `to`.
    pub async fn copy_file(&self, from: &FilePath, to: &FilePath) -> Result<CopyOutcome> {
        self.version().await?.require("/file copy", MIN_FILE_COPY)?;
        let mut values = self
            .query_script("copy-file", to.as_str(), &copy_file(from, to), 2)
            .await?;
        let after = items(values.pop().expect("two values"), "file listing")?
            .iter()
            .map(reply::file_entry)
            .collect::<Result<Vec<_>>>()?;
        let free = was_free(&values[0])?;
        let file = the_one(after, to.as_str(), "file")?;
        if file.name != to.as_str() {
            return Err(Error::Protocol(format!(
                "asked for file {to}, the device returned {}",
                file.name
            )));
        }
        Ok(if free {
            CopyOutcome::Copied(file)
        } else {
            CopyOutcome::TargetExists(file)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> SubvolumeName {
        SubvolumeName::try_from(text).unwrap()
    }

    #[test]
    fn scripts_quote_every_name_and_guard_the_add() {
        let script = add_subvolume("storage-pool", &name("snap-1"), Some(&name("pvc-1")), true);
        assert_eq!(
            script,
            ":local found [/disk btrfs subvolume find where name=\"snap-1\"];\
             :put [:serialize to=json $found];\
             :if ([:len $found] = 0) do={/disk btrfs subvolume add fs=\"storage-pool\" \
             name=\"snap-1\" parent=\"pvc-1\" read-only=yes};\
             :put [:serialize to=json [/disk btrfs subvolume print as-value where \
             name=\"snap-1\"]]"
        );
        let copy = copy_file(
            &FilePath::try_from("storage-pool/a.img").unwrap(),
            &FilePath::try_from("storage-pool/b.img").unwrap(),
        );
        assert!(
            copy.contains("/file copy [/file find where name~\"\\5E/\\3F"),
            "{copy}"
        );
        assert!(copy.contains("name=\"storage-pool/b.img\""), "{copy}");
        // Names outside the grammar never reach a script.
        for bad in ["a\"b", "a;b", "$x", "[x]", "", ".hidden", "a/b"] {
            assert!(SubvolumeName::try_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn listings_read_as_subvolumes() {
        let value = serde_json::json!([
            {".id": "*1", "name": "pvc-1", "fs": "storage-pool", "parent": "", "read-only": false},
            {".id": "*2", "name": "snap-1", "fs": "storage-pool", "parent": "pvc-1", "read-only": "true"}
        ]);
        let list = subvolumes(value).unwrap();
        assert_eq!(list[0].parent, None);
        assert_eq!(list[1].parent.as_deref(), Some("pvc-1"));
        assert!(list[1].read_only && !list[0].read_only);
        assert!(subvolumes(serde_json::json!({})).unwrap().is_empty());
        assert!(subvolumes(serde_json::json!("x")).is_err());
        assert!(subvolumes(serde_json::json!([{"name": "no id"}])).is_err());
    }

    #[test]
    fn a_lookup_says_free_only_when_it_found_nothing() {
        assert!(was_free(&serde_json::json!([])).unwrap());
        assert!(was_free(&serde_json::json!("")).unwrap());
        assert!(!was_free(&serde_json::json!(["*1"])).unwrap());
        assert!(!was_free(&serde_json::json!("*1")).unwrap());
        assert!(was_free(&serde_json::json!(1)).is_err());
    }
}
