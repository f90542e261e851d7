//! The last resort after an interruption or a failure: whatever CSI could not undo is
//! removed directly. Unmount what is mounted under the work directory, detach loop devices
//! over its files, disconnect NVMe controllers of the demo's volumes. Each action is
//! reported, never hidden.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use driver::config::DEFAULT_NQN_PREFIX;
use nvme::{Kernel as _, LinuxKernel, ManagedPrefix, Sysfs};
use rustix::io::Errno;
use rustix::mount::UnmountFlags;

use crate::leftovers::Leftover;

/// Time for one forced action.
const ACTION_TIME: Duration = Duration::from_secs(20);

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(ACTION_TIME, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => Err(format!("task failed: {error}")),
        Err(_) => Err(format!("no result within {} s", ACTION_TIME.as_secs())),
    }
}

/// Unmounts; a mount still busy is detached lazily (it disappears from the tree now and is
/// released when its last user goes), which is better than leaving it under a directory
/// about to be removed.
async fn unmount(path: PathBuf) -> Result<String, String> {
    blocking(
        move || match rustix::mount::unmount(&path, UnmountFlags::empty()) {
            Ok(()) => Ok(format!("unmounted {}", path.display())),
            Err(Errno::BUSY) => rustix::mount::unmount(&path, UnmountFlags::DETACH)
                .map(|()| format!("detached the busy mount {} (lazy unmount)", path.display()))
                .map_err(|e| format!("unmounting {}: {e}", path.display())),
            Err(Errno::INVAL | Errno::NOENT) => {
                Ok(format!("{} was no longer mounted", path.display()))
            }
            Err(e) => Err(format!("unmounting {}: {e}", path.display())),
        },
    )
    .await
}

async fn detach_loop(device: &str) -> Result<String, String> {
    let path = Path::new("/dev").join(device);
    let deadline = tokio::time::Instant::now() + ACTION_TIME;
    let args = [OsString::from("-d"), path.clone().into()];
    mounts::tools::run_expecting(Path::new("losetup"), &args, &[0], deadline)
        .await
        .map(|_| format!("detached {}", path.display()))
        .map_err(|e| format!("detaching {}: {e}", path.display()))
}

/// Deletes a controller, through the same guard the node uses: the NQN is read again from
/// sysfs and must lie under the driver's prefix.
async fn disconnect(name: String) -> Result<String, String> {
    blocking(move || {
        let prefix =
            ManagedPrefix::new(format!("{DEFAULT_NQN_PREFIX}:")).map_err(|e| e.to_string())?;
        let sysfs = Sysfs::default();
        match prefix
            .authorize_controller(&sysfs, &name)
            .map_err(|e| e.to_string())?
        {
            None => Ok(format!("{name} was already gone")),
            Some(controller) => LinuxKernel::default()
                .delete_controller(&controller)
                .map(|()| format!("disconnected NVMe controller {name}"))
                .map_err(|e| format!("disconnecting {name}: {e}")),
        }
    })
    .await
}

/// Removes each leftover it can, in the order given (the judgement lists mounts deepest
/// first, then loop devices, then controllers). Returns one line per action.
pub async fn force(leftovers: &[Leftover]) -> Vec<Result<String, String>> {
    let mut done = Vec::new();
    for leftover in leftovers {
        let outcome = match leftover {
            Leftover::Mount { path, .. } => unmount(path.clone()).await,
            Leftover::Loop { device, .. } => detach_loop(device).await,
            Leftover::NvmeController { name, .. } => disconnect(name.clone()).await,
            // The simulator removes its nvmet exports when it stops; the device-side
            // leftovers vanish with its data directory.
            Leftover::NvmetSubsystem { .. }
            | Leftover::Disk { .. }
            | Leftover::File { .. }
            | Leftover::Subvolume { .. }
            | Leftover::PoolInUse { .. } => continue,
        };
        done.push(outcome);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn device_side_leftovers_are_left_to_the_simulator() {
        let done = force(&[
            Leftover::Disk {
                slot: "pvc-a".into(),
            },
            Leftover::NvmetSubsystem { nqn: "n".into() },
        ])
        .await;
        assert!(done.is_empty());
    }

    #[tokio::test]
    async fn unmounting_what_is_not_mounted_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = force(&[Leftover::Mount {
            path: dir.path().to_owned(),
            source: "none".into(),
        }])
        .await;
        // As root: EINVAL (not a mount point); otherwise EPERM, reported as an error.
        if rustix::process::geteuid().is_root() {
            assert!(
                outcome[0].as_ref().unwrap().contains("no longer mounted"),
                "{outcome:?}"
            );
        } else {
            assert!(outcome[0].is_err());
        }
    }
}
