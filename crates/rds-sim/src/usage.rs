//! What the pool's files occupy, read off the backing files: their allocated blocks.
//!
//! The simulator's own changes (create, grow, remove) are read again at once. Writes it
//! cannot see (a host writing through NVMe/TCP or a loop device) show at the next full
//! look, which is due once the last one is older than [`LOOK_INTERVAL_FACTOR`] times what
//! it took: looking costs at most about 1% of the device's time however many files there
//! are, and with few files the figure is fresh to the millisecond.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::device::Backend;
use crate::state::{FileKind, State, pool_used};

/// A full look is due when the last is older than this many times its own duration.
pub const LOOK_INTERVAL_FACTOR: u32 = 100;

/// Allocated bytes per backing file (by `/file` name).
#[derive(Debug)]
pub struct PoolUsage {
    allocated: HashMap<String, u64>,
    total: u64,
    looked: Instant,
    look_took: Duration,
}

impl PoolUsage {
    /// Looks at every file of `state`.
    pub fn look(state: &State, backend: &dyn Backend) -> Self {
        let mut usage = PoolUsage {
            allocated: HashMap::new(),
            total: 0,
            looked: Instant::now(),
            look_took: Duration::ZERO,
        };
        usage.look_again(state, backend);
        usage
    }

    /// Looks at every file again.
    pub fn look_again(&mut self, state: &State, backend: &dyn Backend) {
        let started = Instant::now();
        self.allocated.clear();
        self.total = 0;
        for file in state.files.iter().filter(|f| f.kind == FileKind::File) {
            let bytes = allocated(backend, &file.name);
            self.total += bytes;
            self.allocated.insert(file.name.clone(), bytes);
        }
        self.looked = Instant::now();
        self.look_took = self.looked - started;
    }

    /// Looks at every file again if the last look is old enough ([`look_due`]).
    pub fn look_if_due(&mut self, state: &State, backend: &dyn Backend) {
        if look_due(self.looked.elapsed(), self.look_took) {
            self.look_again(state, backend);
        }
    }

    /// Reads again the files at `paths` (ones the simulator just changed); a path that is
    /// no file of `state` any more is forgotten.
    pub fn update<'p>(
        &mut self,
        paths: impl IntoIterator<Item = &'p str>,
        state: &State,
        backend: &dyn Backend,
    ) {
        for path in paths {
            let bytes = state
                .file_by_name(path)
                .filter(|f| f.kind == FileKind::File)
                .map(|_| allocated(backend, path));
            let old = match bytes {
                Some(bytes) => {
                    self.total += bytes;
                    self.allocated.insert(path.to_string(), bytes)
                }
                None => self.allocated.remove(path),
            };
            self.total -= old.unwrap_or(0);
        }
    }

    /// Bytes the files occupy, metadata included.
    pub fn used(&self) -> u64 {
        pool_used(self.total, self.allocated.len())
    }
}

fn allocated(backend: &dyn Backend, path: &str) -> u64 {
    backend.allocated(path).unwrap_or_else(|e| {
        tracing::warn!(path, error = %e, "reading the allocation of a backing file failed");
        0
    })
}

/// Whether a full look is due, `since` the last one that took `took`.
pub fn look_due(since: Duration, took: Duration) -> bool {
    since >= took * LOOK_INTERVAL_FACTOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_are_due_after_a_hundred_times_their_cost() {
        let ms = Duration::from_millis;
        assert!(look_due(ms(100), ms(1)));
        assert!(!look_due(ms(99), ms(1)));
        assert!(!look_due(ms(1_999), ms(20)));
        assert!(look_due(Duration::ZERO, Duration::ZERO));
    }
}
