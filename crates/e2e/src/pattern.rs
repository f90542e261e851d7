//! Data written by a flow and checked later: a reproducible pseudo-random stream (so a reader
//! needs only the seed and length, not a copy) and its SHA-256.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{E2eError, Result, io_at};

pub const MIB: u64 = 1 << 20;
/// Alignment O_DIRECT needs on every device the driver hands out (4 KiB covers 512e and 4Kn).
const DIRECT_ALIGN: usize = 4096;

/// A seeded xorshift64* stream; cheap enough to not dominate a 64 MiB write in a slow VM.
#[derive(Debug, Clone)]
pub struct Pattern {
    state: u64,
}

impl Pattern {
    pub fn new(seed: u64) -> Self {
        // A splitmix64 step spreads neighbouring seeds apart; xorshift must not start at zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self {
            state: if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z },
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Hex SHA-256 of the first `len` bytes of the pattern of `seed`.
pub fn pattern_digest(seed: u64, len: u64) -> String {
    let mut pattern = Pattern::new(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        pattern.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `len` bytes of the pattern to a new (or truncated) file, syncing every `sync_every`
/// bytes so the data reaches the device while it is written (not only at the end), and
/// returns the digest of what was written.
pub fn write_pattern_file(path: &Path, seed: u64, len: u64, sync_every: u64) -> Result<String> {
    let mut file = File::create(path).map_err(io_at("creating", path))?;
    let digest = write_stream(&mut file, path, seed, len, sync_every)?;
    file.sync_all().map_err(io_at("syncing", path))?;
    Ok(digest)
}

fn write_stream(
    out: &mut File,
    path: &Path,
    seed: u64,
    len: u64,
    sync_every: u64,
) -> Result<String> {
    let mut pattern = Pattern::new(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    let (mut written, mut unsynced) = (0u64, 0u64);
    while written < len {
        let n = (len - written).min(MIB) as usize;
        pattern.fill(&mut buf[..n]);
        out.write_all(&buf[..n]).map_err(io_at("writing", path))?;
        hasher.update(&buf[..n]);
        written += n as u64;
        unsynced += n as u64;
        if sync_every > 0 && unsynced >= sync_every {
            out.sync_data().map_err(io_at("syncing", path))?;
            unsynced = 0;
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Hex SHA-256 of a whole file.
pub fn file_digest(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).map_err(io_at("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_at("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// Checks that `path` holds exactly the pattern of `seed`, `len` bytes long.
pub fn verify_pattern_file(path: &Path, seed: u64, len: u64) -> Result<String> {
    let (digest, size) = file_digest(path)?;
    let expected = pattern_digest(seed, len);
    if size != len || digest != expected {
        return Err(E2eError::Check(format!(
            "{}: {size} bytes with sha256 {digest}, expected {len} bytes with sha256 {expected}",
            path.display()
        )));
    }
    Ok(digest)
}

/// A buffer aligned for O_DIRECT.
struct AlignedBuf {
    storage: Vec<u8>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        let offset = storage.as_ptr().align_offset(DIRECT_ALIGN);
        Self {
            storage,
            offset,
            len,
        }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.storage[self.offset..self.offset + self.len]
    }
}

/// Raw I/O on a block device node: writes the pattern at the start and at the end of the
/// device with O_DIRECT, then reads both back with O_DIRECT (from the device, not the page
/// cache) and compares. Returns the device size in bytes.
pub fn check_block_device(path: &Path, seed: u64, len: u64) -> Result<u64> {
    let mut device = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_o_direct())
        .open(path)
        .map_err(io_at("opening", path))?;
    let size = device
        .seek(SeekFrom::End(0))
        .map_err(io_at("sizing", path))?;
    let len = usize::try_from(len).map_err(|_| E2eError::Invalid("length too large".into()))?;
    if len == 0 || len % DIRECT_ALIGN != 0 || 2 * len as u64 > size {
        return Err(E2eError::Invalid(format!(
            "raw I/O length {len} must be a positive multiple of {DIRECT_ALIGN} and fit twice in \
             {size} bytes"
        )));
    }
    let offsets = [0, size - len as u64];
    let mut out = AlignedBuf::new(len);
    let mut pattern = Pattern::new(seed);
    let mut written = Vec::new();
    for offset in offsets {
        pattern.fill(out.bytes());
        device
            .seek(SeekFrom::Start(offset))
            .map_err(io_at("seeking", path))?;
        device
            .write_all(out.bytes())
            .map_err(io_at("writing", path))?;
        written.push(out.bytes().to_vec());
    }
    device.sync_all().map_err(io_at("syncing", path))?;
    let mut back = AlignedBuf::new(len);
    for (offset, expected) in offsets.iter().zip(&written) {
        device
            .seek(SeekFrom::Start(*offset))
            .map_err(io_at("seeking", path))?;
        device
            .read_exact(back.bytes())
            .map_err(io_at("reading", path))?;
        if back.bytes() != expected.as_slice() {
            return Err(E2eError::Check(format!(
                "{}: the {len} bytes read back at offset {offset} differ from what was written",
                path.display()
            )));
        }
    }
    Ok(size)
}

fn libc_o_direct() -> i32 {
    rustix::fs::OFlags::DIRECT.bits() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_reproducible_and_seed_dependent() {
        let (mut a, mut b, mut c) = (vec![0u8; 1000], vec![0u8; 1000], vec![0u8; 1000]);
        Pattern::new(7).fill(&mut a);
        Pattern::new(7).fill(&mut b);
        Pattern::new(6).fill(&mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
        Pattern::new(8).fill(&mut c);
        assert_ne!(a, c);
        assert!(a.iter().any(|&x| x != 0));
    }

    #[test]
    fn written_file_verifies_and_a_flipped_byte_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let len = 3 * MIB + 5;
        let digest = write_pattern_file(&path, 42, len, MIB).unwrap();
        assert_eq!(digest, pattern_digest(42, len));
        assert_eq!(verify_pattern_file(&path, 42, len).unwrap(), digest);
        assert!(verify_pattern_file(&path, 43, len).is_err());
        assert!(verify_pattern_file(&path, 42, len - 1).is_err());

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[MIB as usize] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = verify_pattern_file(&path, 42, len).unwrap_err();
        assert!(matches!(err, E2eError::Check(_)), "{err}");
    }

    #[test]
    fn raw_io_rejects_lengths_that_do_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        // Whether or not the scratch filesystem takes O_DIRECT, a bad length never passes.
        assert!(check_block_device(&path, 1, 8192).is_err());
        assert!(check_block_device(&path, 1, 100).is_err());
    }
}
