//! Pool space. Images are sparse: a file occupies the blocks allocated to it, which the
//! device reads off the backing files ([`crate::usage`]) and hands in as
//! [`Env::pool_used`], plus one metadata block.

use super::{Env, State};
use crate::error::CmdError;

/// What a file occupies besides its data (its inode and extent records on the device's
/// btrfs): a new, empty image moves `free` by this much, and a pool is empty again only
/// once its files are gone.
pub const FILE_METADATA_BYTES: u64 = 4096;

/// Bytes the pool's files occupy: `allocated` data bytes in `files` files.
pub fn pool_used(allocated: u64, files: usize) -> u64 {
    allocated.saturating_add(FILE_METADATA_BYTES.saturating_mul(files as u64))
}

impl State {
    /// Free bytes in the pool: its size minus what its files occupy (0 when the pool-full
    /// fault is on).
    pub fn pool_free(&self, env: &Env) -> u64 {
        if env.pool_full {
            0
        } else {
            self.pool.capacity.saturating_sub(env.pool_used)
        }
    }

    /// Refuses an add or grow only when no room is left even for a file's metadata: a
    /// sparse image takes space as data is written into it, not when it is made or grown.
    pub(super) fn check_room(&self, env: &Env) -> Result<(), CmdError> {
        if self.pool_free(env) < FILE_METADATA_BYTES {
            return Err(CmdError::failure(format!(
                "not enough free space on {}",
                self.pool.name
            )));
        }
        Ok(())
    }
}
