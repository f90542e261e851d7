//! `/disk copy src=… dst=…`: a block copy into a disk, the one data copy RouterOS offers on
//! every version. The source is a disk (by slot) or a file (by name), the destination a file
//! disk at least as large as what is copied; the copy overwrites the destination's range
//! whole and reports its progress (`status: <copied> / <total> (<pct>%)`).

use super::{DiskKind, FileKind, State};
use crate::error::CmdError;

/// Typed arguments of `/disk copy`; `None` = not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockCopyArgs {
    pub src: Option<String>,
    pub dst: Option<String>,
    pub src_offset: u64,
    pub dst_offset: u64,
    pub size: Option<u64>,
}

/// A checked block copy: `len` bytes of backing file `from` at `from_offset` into backing
/// file `to` at `to_offset` (paths as `/file` names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockCopy {
    pub from: String,
    pub from_offset: u64,
    pub to: String,
    pub to_offset: u64,
    pub len: u64,
}

impl State {
    /// Checks a `/disk copy` and says what it copies; nothing changes.
    pub fn plan_block_copy(&self, args: &BlockCopyArgs) -> Result<BlockCopy, CmdError> {
        let src = args
            .src
            .as_deref()
            .ok_or_else(|| CmdError::MissingArguments("src".into()))?;
        let dst = args
            .dst
            .as_deref()
            .ok_or_else(|| CmdError::MissingArguments("dst".into()))?;
        let (from, base, available) = self.copy_source(src)?;
        let target = self
            .disk_by_slot(dst)
            .ok_or_else(|| CmdError::failure(format!("no such disk {dst}")))?;
        let DiskKind::File { path, size, offset } = &target.kind else {
            return Err(CmdError::failure("dst must be a file disk"));
        };
        if *path == from {
            return Err(CmdError::failure("src and dst are the same"));
        }
        self.check_writable(path)?;
        let available = available
            .checked_sub(args.src_offset)
            .ok_or(CmdError::InvalidValue("src-offset".into()))?;
        let len = args.size.unwrap_or(available);
        if len == 0 || len > available {
            return Err(CmdError::InvalidValue("size".into()));
        }
        let room = size.saturating_sub(*offset).saturating_sub(args.dst_offset);
        if len > room {
            return Err(CmdError::failure("destination is too small"));
        }
        Ok(BlockCopy {
            from,
            from_offset: base + args.src_offset,
            to: path.clone(),
            to_offset: offset + args.dst_offset,
            len,
        })
    }

    /// A copy source: a disk's slot or a file's name → (backing file, offset, bytes there).
    fn copy_source(&self, src: &str) -> Result<(String, u64, u64), CmdError> {
        if let Some(disk) = self.disk_by_slot(src) {
            return match &disk.kind {
                DiskKind::File { path, size, offset } => {
                    Ok((path.clone(), *offset, size.saturating_sub(*offset)))
                }
                DiskKind::Raid => Err(CmdError::failure("can not copy the pool's own disk")),
            };
        }
        let name = src.trim_start_matches('/');
        match self.file_by_name(name) {
            Some(file) if file.kind == FileKind::File => Ok((file.name.clone(), 0, file.size)),
            _ => Err(CmdError::failure(format!("no such disk or file {src}"))),
        }
    }
}

/// Progress steps of a `/disk copy`.
pub const COPY_STEPS: u64 = 8;

/// Runs `copy` in [`COPY_STEPS`] steps: `step(done, len)` copies `len` bytes from `done`
/// bytes into it, `progress(copied, total)` hears after each (and before the first).
/// `stop_half_way` (a fault) ends it after half of them, as a device that went down would,
/// and says so with `Ok(false)`.
pub fn run_block_copy(
    copy: &BlockCopy,
    stop_half_way: bool,
    mut step: impl FnMut(u64, u64) -> std::io::Result<()>,
    mut progress: impl FnMut(u64, u64),
) -> Result<bool, CmdError> {
    let size = copy.len.div_ceil(COPY_STEPS);
    let mut done = 0;
    progress(0, copy.len);
    while done < copy.len {
        if stop_half_way && done >= copy.len / 2 {
            return Ok(false);
        }
        let len = size.min(copy.len - done);
        if let Err(e) = step(done, len) {
            tracing::error!(?copy, error = %e, "block copy failed");
            return Err(CmdError::failure(e.to_string()));
        }
        done += len;
        progress(done, copy.len);
    }
    Ok(true)
}

/// The progress text RouterOS shows for a copy.
pub fn copy_status(copied: u64, total: u64) -> String {
    let percent = if total == 0 {
        100
    } else {
        (u128::from(copied) * 100 / u128::from(total)) as u64
    };
    format!(
        "status: {} / {} ({percent}%)",
        crate::units::humanize_bytes(copied),
        crate::units::humanize_bytes(total)
    )
}
