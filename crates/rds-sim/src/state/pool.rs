//! Pool space.

use super::{Env, FileKind, State};
use crate::error::CmdError;

impl State {
    /// Sum of the logical sizes of the files in the pool.
    pub fn pool_used(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.kind == FileKind::File)
            .map(|f| f.size)
            .sum()
    }

    /// Free bytes in the pool: capacity minus logical file sizes (0 when the
    /// pool-full fault is on).
    pub fn pool_free(&self, env: &Env) -> u64 {
        if env.pool_full {
            0
        } else {
            self.pool.capacity.saturating_sub(self.pool_used())
        }
    }

    pub(super) fn no_space(&self) -> CmdError {
        CmdError::failure(format!("not enough free space on {}", self.pool.name))
    }
}
