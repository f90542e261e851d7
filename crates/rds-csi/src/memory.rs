//! How the process hands memory back to the system.
//!
//! The peaks of every role are large buffers that live for one request: a listing of every
//! disk is about 1 KB per disk as text (10 MB with 10,000 volumes), held while it is read or
//! written. glibc's allocator serves a request that large from its own mapping, given back
//! when freed, but only until the first such buffer is freed: from then on its threshold
//! rises to the largest size freed, later buffers come from the heap, and a heap keeps its
//! peak resident for as long as any later allocation sits above it. A fixed threshold keeps
//! every large buffer in a mapping of its own, so the resident size follows what is in use.

/// Allocations from this size up get a mapping of their own (glibc's initial threshold).
const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Fixes the allocator's mapping threshold (on glibc; other C libraries behave as they do).
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` changes allocator parameters under the allocator's own lock; it
        // is safe to call at any time and from any thread.
        let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
        if applied != 1 {
            tracing::debug!("the allocator did not take the mapping threshold");
        }
    }
}
