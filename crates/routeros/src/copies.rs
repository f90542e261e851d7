//! Block copies (`/disk copy`, every version) and the unexported disks a copy needs: its
//! destination, and the record of a finished copy (facts: `routeros.md` §6).
//!
//! `/disk copy` runs as long as the copy and prints its progress as `status: <copied> /
//! <total> (<pct>%)`. The facts do not say what the device does with a copy whose session
//! ends, so a copy counts as done only when this call read its last status at 100 % with
//! copied equal to total: a cut session, a deadline or any other answer is [`Unfinished`],
//! and the caller copies again.
//!
//! [`Unfinished`]: BlockCopyOutcome::Unfinished

use std::time::Duration;

use crate::attach::GuardedAdd;
use crate::client::Client;
use crate::command::{find_file, find_slot, print_disk, put_json};
use crate::error::{Error, Result};
use crate::judge::check_slots;
use crate::model::{DiskItem, FileDisk};
use crate::quote::{quote, regex_escape};
use crate::reply::{disk_item, items};
use crate::validate::{FilePath, Slot, check_comment};

/// One progress report of a copy, as the device words it (sizes may carry units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyProgress {
    pub copied: String,
    pub total: String,
    pub percent: u8,
}

impl CopyProgress {
    /// Reads `status: <copied> / <total> (<pct>%)` (leading blanks allowed).
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("status:")?.trim();
        let (copied, rest) = rest.split_once(" / ")?;
        let (total, percent) = rest.trim().split_once(' ')?;
        let percent = percent.trim().strip_prefix('(')?.strip_suffix("%)")?;
        let size_like =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
        let (copied, total) = (copied.trim(), total.trim());
        (size_like(copied) && size_like(total)).then_some(())?;
        Some(Self {
            copied: copied.to_owned(),
            total: total.to_owned(),
            percent: percent.parse().ok().filter(|p| *p <= 100)?,
        })
    }

    /// The copy is whole: 100 % and copied equal to total.
    pub fn is_complete(&self) -> bool {
        self.percent == 100 && self.copied == self.total
    }
}

/// What a `/disk copy` call saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockCopyOutcome {
    /// The last status said the whole source was copied.
    Finished,
    /// No final status: the copy may have stopped anywhere. `said` is the device's last line.
    Unfinished {
        last: Option<CopyProgress>,
        said: String,
    },
}

/// Judges the output of a `/disk copy`.
pub fn judge_block_copy(output: &str) -> BlockCopyOutcome {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let last = lines.iter().rev().find_map(|l| CopyProgress::parse(l));
    match (&last, lines.last()) {
        // The final status must also be the last thing said: an error after it is not done.
        (Some(p), Some(line)) if p.is_complete() && CopyProgress::parse(line).is_some() => {
            BlockCopyOutcome::Finished
        }
        _ => BlockCopyOutcome::Unfinished {
            last,
            said: lines.last().map_or_else(String::new, |l| (*l).to_owned()),
        },
    }
}

/// `/disk copy` of disk `src` into disk `dst`.
pub fn block_copy(src: &Slot, dst: &Slot) -> String {
    format!(
        "/disk copy src={} dst={}",
        quote(src.as_str()),
        quote(dst.as_str())
    )
}

/// What a guarded add of an unexported disk found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnexportedOutcome {
    /// This call added it; the read-back shows it.
    Added(FileDisk),
    /// The slot was held before: nothing was done (the items holding it now).
    SlotTaken(Vec<DiskItem>),
    /// Nothing was done: with a size, a file was at the path already; without one, the path
    /// does not hold exactly one file, or a disk uses it.
    PathUnfit,
}

/// An unexported file disk to add: over a new image of `size` bytes, or, without a size,
/// over the image that is at the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnexportedDisk {
    pub slot: Slot,
    pub file_path: FilePath,
    pub size: Option<u64>,
    pub comment: String,
}

fn disk_users(path: &FilePath) -> String {
    format!(
        "[/disk find where file-path~{}]",
        quote(&format!("^/?{}$", regex_escape(path.as_str())))
    )
}

/// The guarded add in one exec: the slot's holders, the files at the path, the disks using
/// it, the new id when it added, the slot's items: four or five JSON values.
pub fn add_unexported(disk: &UnexportedDisk) -> String {
    let (in_slot, at_path, users) = (
        find_slot(&disk.slot),
        find_file(&disk.file_path),
        disk_users(&disk.file_path),
    );
    let (size, path_fits) = match disk.size {
        Some(size) => (
            format!(" file-size={size}"),
            format!("[:len {at_path}] = 0"),
        ),
        None => (
            String::new(),
            format!("([:len {at_path}] = 1) && ([:len {users}] = 0)"),
        ),
    };
    let add = format!(
        "/disk add type=file slot={} file-path={}{size} mount-filesystem=no comment={}",
        quote(disk.slot.as_str()),
        quote(disk.file_path.as_str()),
        quote(&disk.comment),
    );
    format!(
        ":put [:serialize to=json {in_slot}];:put [:serialize to=json {at_path}];\
         :put [:serialize to=json {users}];\
         :if (([:len {in_slot}] = 0) && ({path_fits})) do={{{}}};{}",
        put_json(&add),
        print_disk(&disk.slot)
    )
}

/// Sets the comment of the disk in `slot` from `from` to `to`, only when it says `from`,
/// and prints the slot's items.
pub fn swap_comment(slot: &Slot, from: &str, to: &str) -> String {
    format!(
        "/disk set [find where slot={} and comment={}] comment={};{}",
        quote(slot.as_str()),
        quote(from),
        quote(to),
        print_disk(slot)
    )
}

fn the_disk(slot: &Slot, value: serde_json::Value) -> Result<Option<FileDisk>> {
    let slot_items: Vec<DiskItem> = items(value)?.iter().map(disk_item).collect::<Result<_>>()?;
    check_slots(slot, &slot_items)?;
    match slot_items.as_slice() {
        [] => Ok(None),
        [DiskItem::File(disk)] => Ok(Some(disk.clone())),
        [DiskItem::Other { kind, .. }] => Err(Error::Protocol(format!(
            "slot {slot} holds a disk of type {kind}"
        ))),
        _ => Err(Error::Protocol(format!("slot {slot} holds several items"))),
    }
}

impl Client {
    /// `/disk copy` of disk `src` into disk `dst`, allowed `deadline` (the copy's time, not
    /// a command's). Only a final status seen here counts as done.
    pub async fn block_copy(
        &self,
        src: &Slot,
        dst: &Slot,
        deadline: Duration,
    ) -> Result<BlockCopyOutcome> {
        let output = self
            .run_long_script("block-copy", dst.as_str(), &block_copy(src, dst), deadline)
            .await?;
        Ok(judge_block_copy(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Adds an unexported file disk (a copy's destination or record) only when the slot is
    /// free and the path fits (see [`UnexportedOutcome`]); one round trip.
    pub async fn add_unexported_disk(&self, disk: &UnexportedDisk) -> Result<UnexportedOutcome> {
        check_comment(&disk.comment)?;
        if disk.size == Some(0) {
            return Err(Error::Invalid("invalid size 0".into()));
        }
        let values = self
            .query_script_any("add-unexported", disk.slot.as_str(), &add_unexported(disk))
            .await?;
        let GuardedAdd {
            slot_before: holders,
            files,
            users,
            added,
            after,
        } = GuardedAdd::read(values, "guarded add")?;
        let added = added.is_some();
        let fits = match disk.size {
            Some(_) => files.is_empty(),
            None => files.len() == 1 && users.is_empty(),
        };
        if added != (holders.is_empty() && fits) {
            return Err(Error::Protocol(format!(
                "guarded add: slot holders {holders:?}, files {files:?}, users {users:?}, \
                 added {added}"
            )));
        }
        let slot_items: Vec<DiskItem> =
            items(after)?.iter().map(disk_item).collect::<Result<_>>()?;
        check_slots(&disk.slot, &slot_items)?;
        if !holders.is_empty() {
            return Ok(UnexportedOutcome::SlotTaken(slot_items));
        }
        if !added {
            return Ok(UnexportedOutcome::PathUnfit);
        }
        match slot_items.as_slice() {
            [DiskItem::File(new)]
                if new.file_path.trim_start_matches('/') == disk.file_path.as_str()
                    && !new.nvme_tcp_export
                    && new.comment.as_deref() == Some(disk.comment.as_str()) =>
            {
                Ok(UnexportedOutcome::Added(new.clone()))
            }
            other => Err(Error::Protocol(format!(
                "the new disk in slot {} reads back as {other:?}",
                disk.slot
            ))),
        }
    }

    /// Changes the comment of the disk in `slot` from `from` to `to` (nothing when it says
    /// something else) and returns the disk as read back; one round trip.
    pub async fn swap_disk_comment(
        &self,
        slot: &Slot,
        from: &str,
        to: &str,
    ) -> Result<Option<FileDisk>> {
        check_comment(from)?;
        check_comment(to)?;
        let mut values = self
            .query_script(
                "swap-comment",
                slot.as_str(),
                &swap_comment(slot, from, to),
                1,
            )
            .await?;
        the_disk(slot, values.pop().expect("one value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_last_status_at_one_hundred_percent_is_a_finished_copy() {
        let done = "status: 0 / 64.0MiB (0%)\r\nstatus: 32.0MiB / 64.0MiB (50%)\r\n  status: 64.0MiB / 64.0MiB (100%)\r\n";
        assert_eq!(judge_block_copy(done), BlockCopyOutcome::Finished);
        let bytes = "status: 67108864 / 67108864 (100%)";
        assert_eq!(judge_block_copy(bytes), BlockCopyOutcome::Finished);
        for unfinished in [
            "",
            "status: 0 / 64.0MiB (0%)\nstatus: 32.0MiB / 64.0MiB (50%)",
            "status: 64.0MiB / 64.0MiB (100%)\nfailure: something after it",
            // Rounded units can say 100 % before the last byte: copied must equal total.
            "status: 63.9MiB / 64.0MiB (100%)",
            "no such disk or file pvc-1",
            "status: 64.0MiB / 64.0MiB (101%)",
        ] {
            assert!(
                matches!(
                    judge_block_copy(unfinished),
                    BlockCopyOutcome::Unfinished { .. }
                ),
                "{unfinished:?}"
            );
        }
        let BlockCopyOutcome::Unfinished { last, said } =
            judge_block_copy("status: 1.0GiB / 10.0GiB (10%)\r\nSession closed")
        else {
            panic!()
        };
        assert_eq!(last.unwrap().percent, 10);
        assert_eq!(said, "Session closed");
    }

    #[test]
    fn scripts_quote_names_and_guard_the_add() {
        let disk = UnexportedDisk {
            slot: Slot::try_from("snap-1").unwrap(),
            file_path: FilePath::try_from("storage-pool/snap-1.img").unwrap(),
            size: Some(1 << 20),
            comment: "rds-csi:snapshot a\"b".into(),
        };
        let script = add_unexported(&disk);
        assert!(
            script.contains(
                "file-size=1048576 mount-filesystem=no comment=\"rds-csi:snapshot a\\22b\""
            ),
            "{script}"
        );
        assert!(!script.contains("nvme-tcp-export"), "{script}");
        let over = add_unexported(&UnexportedDisk { size: None, ..disk });
        assert!(over.contains("[:len [/file find where name~"), "{over}");
        assert!(!over.contains("file-size"), "{over}");
        let copy = block_copy(
            &Slot::try_from("pvc-1").unwrap(),
            &Slot::try_from("snap-1").unwrap(),
        );
        assert_eq!(copy, "/disk copy src=\"pvc-1\" dst=\"snap-1\"");
    }
}
