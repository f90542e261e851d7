//! Helpers for tests that need root (feature `test-fixtures`): real loop devices and mounts,
//! cleaned up by guards even when a test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::tools::run_expecting;
use tokio::time::Instant;

/// Whether the root tests can run. Outside CI a non-root developer gets a printed skip; in CI
/// (where we are root) a missing privilege is a failure, never a silent skip.
pub fn root_or_skip(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root and CI is set: refusing to skip"
    );
    // Written to the process's stderr directly: the test harness captures eprintln!.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs root (run as root or in CI)"
    );
    false
}

/// A generous deadline for test steps.
pub fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// A sparse backing file attached to a free loop device; detached on drop.
pub struct LoopDevice {
    pub device: PathBuf,
    pub backing: PathBuf,
}

impl LoopDevice {
    pub async fn attach(dir: &Path, size: u64) -> Self {
        let backing = dir.join("backing.img");
        let file = std::fs::File::create(&backing).unwrap();
        file.set_len(size).unwrap();
        drop(file);
        let output = run_expecting(
            Path::new("losetup"),
            &["--find".into(), "--show".into(), backing.clone().into()],
            &[0],
            soon(),
        )
        .await
        .expect("losetup attaches a loop device");
        Self {
            device: PathBuf::from(output.stdout.trim()),
            backing,
        }
    }

    /// Grows the backing file and tells the loop driver (`losetup -c`).
    pub async fn grow(&self, size: u64) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.backing)
            .unwrap()
            .set_len(size)
            .unwrap();
        run_expecting(
            Path::new("losetup"),
            &["-c".into(), self.device.clone().into()],
            &[0],
            soon(),
        )
        .await
        .expect("losetup -c");
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let status = Command::new("losetup").arg("-d").arg(&self.device).status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("warning: could not detach {}", self.device.display());
        }
    }
}

/// Unmounts (lazily, so cleanup cannot fail on a busy mount) everything registered, newest
/// first, when dropped.
#[derive(Default)]
pub struct MountGuard(Vec<PathBuf>);

impl MountGuard {
    pub fn push(&mut self, target: &Path) {
        self.0.push(target.to_path_buf());
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        for target in self.0.iter().rev() {
            let flags = rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW;
            // EINVAL: the test already unmounted it.
            let _ = rustix::mount::unmount(target, flags);
        }
    }
}

/// Whether an external tool exists, so a missing package fails with a clear message.
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed (Debian package: e2fsprogs / xfsprogs / util-linux)"
    );
}
