//! Re-staging a volume whose namespace was replaced (see [`super::health`]): the staging mount
//! moves to the device that now carries the volume's NQN, and the pods' published paths are
//! pointed at it, so that new pods and restarted containers work. Running containers keep the
//! dead filesystem in their own mount namespace; nothing here can change that.
//!
//! Safety rests on facts this call establishes: the new device is mounted only when blkid
//! reads on it the very filesystem (type and UUID) recorded at stage time; nothing is ever
//! formatted; only mounts and device nodes of this volume's own current or former devices are
//! replaced; and the kernel's own reconnection is never second-guessed (a volume without a
//! device is reported, not connected again: the kernel gave up for a reason, and a volume
//! moved to another node meanwhile must not get a second writer here).

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use mounts::DeviceNumber;
use mounts::blocking::run_blocking;
use mounts::format::Probe;
use mounts::mount::{MountOptions, bind_mount, mount_filesystem};
use mounts::mountinfo::read_self_mount_table;
use mounts::mountpoint::table_spelling;
use tokio::time::Instant;

use super::NodeCore;
use super::error::{NodeError, Result};
use super::fabric::{AttachedDevice, Condition};
use super::health::{Verdict, judge};
use super::probe::path_kind;
use super::records::{StagedLayout, StagedVolume};
use super::rules::PathKind;
use super::rules::publish_options;
use crate::metrics::RestageResult;

/// How long a check waits for a namespace to appear after asking for a rescan.
const RESCAN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a check of one staged volume found, and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The staged namespace is in place.
    Healthy,
    /// It was replaced (for the reason given), and the volume now lives on the new device.
    Recovered(String),
    /// No device carries the NQN: the kernel reconnects (I/O waits) or gave up.
    Waiting(String),
    /// The staging mount is on the current namespace, but published paths are still on the
    /// dead one (why each); retried at the next check. Not a reason to refuse another pod.
    Stranded(String),
}

/// Mount options of a re-stage: the recorded ones, plus `nouuid` for XFS, whose kernel refuses
/// a second mount of a filesystem UUID that is still mounted (the dead superblock lives on in
/// the pods' bind mounts until they are restarted).
pub fn restage_options(
    fs_type: &str,
    mount_flags: &[String],
    read_only: bool,
) -> Result<MountOptions> {
    let mut words: Vec<&str> = mount_flags.iter().map(String::as_str).collect();
    if fs_type == "xfs" && !words.iter().any(|w| w.split(',').any(|o| o == "nouuid")) {
        words.push("nouuid");
    }
    let options = MountOptions::parse(words)?;
    Ok(if read_only {
        options.read_only()
    } else {
        options
    })
}

/// Whether what blkid read on the new device is the filesystem the record staged.
pub fn same_filesystem(
    probe: &Probe,
    fs_type: &str,
    fs_uuid: Option<&str>,
    device: &Path,
) -> std::result::Result<(), String> {
    let signature = match probe {
        Probe::Empty => {
            return Err(format!(
                "{} reads as empty, not as the {fs_type} filesystem staged; it is neither \
                 formatted nor mounted (check the disk on the RDS)",
                device.display()
            ));
        }
        Probe::Found(signature) => signature,
    };
    let found_type = signature
        .fs_type
        .as_deref()
        .unwrap_or("an unknown signature");
    if found_type != fs_type {
        return Err(format!(
            "{} holds {found_type}, not the {fs_type} filesystem staged; left alone",
            device.display()
        ));
    }
    match fs_uuid {
        Some(wanted) if signature.uuid.as_deref() != Some(wanted) => Err(format!(
            "{} holds {fs_type} with UUID {}, not the staged filesystem's {wanted}; left alone",
            device.display(),
            signature.uuid.as_deref().unwrap_or("(none)")
        )),
        _ => Ok(()),
    }
}

impl NodeCore {
    /// Checks one staged volume against its record and re-stages it when its namespace was
    /// replaced. Runs under the volume's lock.
    pub(crate) async fn check_and_recover(
        &self,
        record: &StagedVolume,
        deadline: Instant,
    ) -> Result<Checked> {
        let mut current = self.fabric.find(&record.nqn, deadline).await?;
        if current.is_none() {
            current = self.rescan_for_namespace(&record.nqn, deadline).await;
        }
        match judge(record, current.as_ref()) {
            Verdict::Same if record.replaced.is_empty() => {
                self.forget_recovery_failure(&record.volume_id);
                Ok(Checked::Healthy)
            }
            // Re-staged before: published paths an earlier attempt could not re-point (or
            // whose new mount someone removed) are still on a dead namespace; try them again.
            Verdict::Same => {
                let now = current.expect("the same device is a device");
                match self.repoint(record, &now, deadline).await {
                    Ok(repointed) if repointed.done.is_empty() && repointed.stranded.is_empty() => {
                        self.forget_recovery_failure(&record.volume_id);
                        Ok(Checked::Healthy)
                    }
                    outcome => {
                        let why = "published paths were left on a replaced namespace".to_owned();
                        self.finish_recovery(record, outcome, why).await
                    }
                }
            }
            Verdict::NoDevice => {
                let why = match self.fabric.condition(&record.nqn, deadline).await? {
                    Condition::Abnormal(why) => why,
                    Condition::Healthy => format!("no block device carries {}", record.nqn),
                };
                Ok(Checked::Waiting(why))
            }
            Verdict::Replaced { now, why } => {
                tracing::warn!(volume_id = %record.volume_id, %why, device = %now.path.display(),
                    "the volume's namespace was replaced; re-staging it on the new device");
                let restaged = self.restage(record, &now, deadline).await;
                self.finish_recovery(record, restaged, why).await
            }
        }
    }

    /// Reports a re-stage (or a retry of its stranded paths): the failure is kept for the
    /// volume's condition until an attempt succeeds; the pods behind the paths re-pointed are
    /// told (and, when so configured, deleted) in the background, so that the API server's
    /// pace never holds the volume's lock or the CSI call's deadline.
    async fn finish_recovery(
        &self,
        record: &StagedVolume,
        outcome: Result<Repointed>,
        why: String,
    ) -> Result<Checked> {
        let Repointed {
            record: moved,
            done,
            stranded,
        } = match outcome {
            Ok(repointed) => repointed,
            Err(error) => {
                self.remember_recovery_failure(&record.volume_id, error.to_string());
                self.metrics.restaged(RestageResult::Failed);
                return Err(error);
            }
        };
        if let Some(pods) = self.pods.clone().filter(|_| !done.is_empty()) {
            let (metrics, volume_id, why) =
                (self.metrics.clone(), moved.volume_id.clone(), why.clone());
            tokio::spawn(async move {
                let deleted = pods.after_restage(&volume_id, &done, &why).await;
                (0..deleted).for_each(|_| metrics.pod_deleted());
            });
        }
        if stranded.is_empty() {
            self.forget_recovery_failure(&moved.volume_id);
            self.metrics.restaged(RestageResult::Succeeded);
            tracing::info!(volume_id = %moved.volume_id, device = %moved.device_path.display(),
                "re-staged on the new namespace; pods started before must be restarted");
            Ok(Checked::Recovered(why))
        } else {
            let why = format!(
                "re-staged, but published paths are still on the dead filesystem: {}",
                stranded.join("; ")
            );
            self.remember_recovery_failure(&moved.volume_id, why.clone());
            self.metrics.restaged(RestageResult::Failed);
            Ok(Checked::Stranded(why))
        }
    }

    /// A live controller without the volume's namespace: the kernel removes a namespace whose
    /// identifiers changed when it reconnects, and adds the new one only at a rescan, which is
    /// asked for here (it changes nothing else). `None` when there is no live controller or
    /// the namespace does not show up in a few seconds.
    async fn rescan_for_namespace(&self, nqn: &str, deadline: Instant) -> Option<AttachedDevice> {
        let wait = deadline.min(Instant::now() + RESCAN_WAIT);
        match self.fabric.rescan(nqn, 1, wait).await {
            Ok(_) => {
                tracing::info!(nqn, "a rescan found the volume's namespace");
                self.fabric.find(nqn, deadline).await.ok().flatten()
            }
            Err(error) => {
                tracing::debug!(nqn, %error, "no namespace after a rescan");
                None
            }
        }
    }

    /// Moves the volume onto `now`: the staging mount, then the published paths.
    async fn restage(
        &self,
        record: &StagedVolume,
        now: &AttachedDevice,
        deadline: Instant,
    ) -> Result<Repointed> {
        if let StagedLayout::Filesystem {
            fs_type,
            fs_uuid,
            mount_flags,
            read_only,
        } = &record.layout
        {
            let probe = self.tools.probe(&now.path, deadline).await?;
            same_filesystem(&probe, fs_type, fs_uuid.as_deref(), &now.path)
                .map_err(NodeError::Precondition)?;
            let options = restage_options(fs_type, mount_flags, *read_only)?;
            self.move_staging_mount(record, now, fs_type, &options, deadline)
                .await?;
        }
        // Saved before the paths are re-pointed, so that the staging mount is not moved twice.
        let moved = record.clone().moved_to(now);
        self.records.save(moved.clone(), deadline).await?;
        self.repoint(&moved, now, deadline).await
    }

    /// Points the published paths still on a former device at `now` and saves the record.
    async fn repoint(
        &self,
        record: &StagedVolume,
        now: &AttachedDevice,
        deadline: Instant,
    ) -> Result<Repointed> {
        let mut working = record.clone();
        let (done, refused) = match &record.layout {
            StagedLayout::Filesystem { mount_flags, .. } => {
                self.rebind_published(&mut working, now, mount_flags, deadline)
                    .await?
            }
            StagedLayout::Block => {
                self.renumber_device_nodes(&mut working, now, deadline)
                    .await?
            }
        };
        let (paths, stranded): (Vec<PathBuf>, Vec<String>) = refused.into_iter().unzip();
        let updated = working.repointed(&done, paths);
        if updated != *record {
            self.records.save(updated.clone(), deadline).await?;
        }
        let record = updated;
        Ok(Repointed {
            record,
            done,
            stranded,
        })
    }

    /// Mounts the new device at the staging path, over the dead filesystem: the staging path
    /// is never without a mount, so a failure leaves it as it was for the next attempt. The
    /// dead layer below stays until NodeUnstageVolume unmounts every layer (it also keeps the
    /// kernel from reusing the dead device's number while anything may still name it). A
    /// staging path already on the new device (an earlier attempt got that far) is kept.
    async fn move_staging_mount(
        &self,
        record: &StagedVolume,
        now: &AttachedDevice,
        fs_type: &str,
        options: &MountOptions,
        deadline: Instant,
    ) -> Result<()> {
        let staging = &record.staging;
        let table = read_self_mount_table(deadline).await?;
        let spelled = table_spelling(staging, deadline).await?;
        match table.top_at(&spelled) {
            Some(entry) if entry.device == now.device => return Ok(()),
            Some(entry) if record.is_former_device(entry.device) => {
                self.require_gone(record, entry.device, deadline).await?;
            }
            Some(entry) => {
                return Err(NodeError::precondition(format!(
                    "staging path {} holds device {}, not one of this volume's; left alone",
                    staging.display(),
                    entry.device
                )));
            }
            // Nothing there: the volume is not staged here (any more). No reason to mount.
            None => {
                return Err(NodeError::precondition(format!(
                    "staging path {} holds no mount; the volume is not re-staged (a new \
                     NodeStageVolume stages it)",
                    staging.display()
                )));
            }
        }
        mount_filesystem(&now.path, staging, fs_type, options, deadline).await?;
        Ok(())
    }

    /// Records `path` as re-pointed before it is: from then on the volume's condition tells
    /// the pod behind it to restart, so that no moment shows the path on the new device as a
    /// healthy volume while its pod still holds the dead one. An attempt that then fails
    /// leaves the path on a former device, which the condition reports as stranded.
    async fn mark_republished(
        &self,
        record: &mut StagedVolume,
        path: &Path,
        deadline: Instant,
    ) -> Result<()> {
        if record.republished.iter().any(|p| p == path) {
            return Ok(());
        }
        record.republished.push(path.to_path_buf());
        self.records.save(record.clone(), deadline).await
    }

    /// Refuses to move the volume off `device` while it still carries the volume's data path
    /// (a second path to the same disk, not a dead one): two writers must never result. The
    /// old device goes once the kernel has torn it down, so the refusal is UNAVAILABLE (retry
    /// later), not a state the caller must fix.
    async fn require_gone(
        &self,
        record: &StagedVolume,
        device: DeviceNumber,
        deadline: Instant,
    ) -> Result<()> {
        if self.fabric.is_gone(&record.nqn, device, deadline).await? {
            return Ok(());
        }
        Err(NodeError::Unavailable(format!(
            "device {device}, which the volume was staged on, is still present beside the new \
             one: not re-staged while two devices may carry {}",
            record.nqn
        )))
    }

    /// Points each path NodePublishVolume published this volume at, and that is still on
    /// one of its former devices, at the new staging mount (same read-only state). Only those
    /// paths: a device number says nothing about whose it is once the kernel reuses it, and
    /// mounts kubelet made itself (subPath mounts) are not ours to move. The new bind goes
    /// over the dead one (NodeUnpublishVolume unmounts every layer), so a path is never left
    /// without a mount. A path that cannot be done is reported and left; the others are still
    /// done. Returns the paths done and the refusals.
    async fn rebind_published(
        &self,
        record: &mut StagedVolume,
        now: &AttachedDevice,
        mount_flags: &[String],
        deadline: Instant,
    ) -> Result<(Vec<PathBuf>, Vec<Refusal>)> {
        let table = read_self_mount_table(deadline).await?;
        let base = MountOptions::parse(mount_flags)?;
        let (mut done, mut refused) = (Vec::new(), Vec::new());
        for target in &record.published.clone() {
            let spelled = table_spelling(target, deadline).await?;
            let Some(entry) = table.top_at(&spelled) else {
                continue;
            };
            if entry.device == now.device || !record.is_former_device(entry.device) {
                continue;
            }
            if let Err(error) = self.require_gone(record, entry.device, deadline).await {
                refused.push(refusal(target, error));
                continue;
            }
            self.mark_republished(record, target, deadline).await?;
            let options = publish_options(&base, entry.is_read_only());
            match bind_mount(&record.staging, target, &options, deadline).await {
                Ok(()) => {
                    tracing::info!(target = %target.display(),
                        "published path pointed at the re-staged volume");
                    done.push(target.clone());
                }
                Err(error) => {
                    tracing::warn!(target = %target.display(), %error,
                        "published path left on the dead filesystem");
                    refused.push(refusal(target, error));
                }
            }
        }
        Ok((done, refused))
    }

    /// Block volumes: each device node NodePublishVolume made for this volume that still
    /// points at one of its former devices is replaced (same mode) by one for the new device.
    /// Returns the nodes done and the refusals.
    async fn renumber_device_nodes(
        &self,
        record: &mut StagedVolume,
        now: &AttachedDevice,
        deadline: Instant,
    ) -> Result<(Vec<PathBuf>, Vec<Refusal>)> {
        let (mut done, mut refused) = (Vec::new(), Vec::new());
        for node in &record.published.clone() {
            let PathKind::BlockNode(old) = path_kind(node, deadline).await? else {
                continue;
            };
            if old == now.device || !record.is_former_device(old) {
                continue;
            }
            let renumbered = async {
                self.require_gone(record, old, deadline).await?;
                self.mark_republished(record, node, deadline).await?;
                replace_block_node(node, old, now.device, deadline).await
            };
            match renumbered.await {
                Ok(()) => {
                    tracing::info!(node = %node.display(), from = %old, to = %now.device,
                        "published device node points at the re-staged volume");
                    done.push(node.clone());
                }
                Err(error) => {
                    tracing::warn!(node = %node.display(), %error,
                        "published device node left on the dead namespace");
                    refused.push(refusal(node, error));
                }
            }
        }
        Ok((done, refused))
    }
}

/// A published path a re-stage could not re-point, and why.
type Refusal = (PathBuf, String);

fn refusal(path: &Path, error: impl std::fmt::Display) -> Refusal {
    (path.to_path_buf(), format!("{}: {error}", path.display()))
}

/// What re-pointing a volume's published paths did.
struct Repointed {
    /// The record as saved afterwards.
    record: StagedVolume,
    /// The paths now on the current device.
    done: Vec<PathBuf>,
    /// Why each path still on a former device is there.
    stranded: Vec<String>,
}

/// Replaces the block device node at `path` (for `old`) with one for `new` of the same mode,
/// by a rename over it, so that the path is never missing.
async fn replace_block_node(
    path: &Path,
    old: DeviceNumber,
    new: DeviceNumber,
    deadline: Instant,
) -> Result<()> {
    let path = path.to_path_buf();
    let op = format!("renumbering device node {}", path.display());
    run_blocking(&op, deadline, move || {
        let io = |op: &'static str, at: &Path, source: std::io::Error| {
            NodeError::Mount(mounts::Error::Io {
                op,
                path: at.to_path_buf(),
                source,
            })
        };
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io("lstat", &path, e))?;
        if !meta.file_type().is_block_device() || DeviceNumber::from_raw(meta.rdev()) != old {
            return Err(NodeError::precondition(format!(
                "{} is no longer a device node for {old}; left alone",
                path.display()
            )));
        }
        let mode = meta.permissions().mode() & 0o777;
        let mut temporary = path.clone().into_os_string();
        temporary.push(".renumber");
        let temporary = PathBuf::from(temporary);
        let _ = std::fs::remove_file(&temporary);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &temporary,
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(mode),
            new.to_raw(),
        )
        .map_err(|errno| io("mknod", &temporary, errno.into()))?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temporary);
                io("rename", &path, e)
            })
    })
    .await
}

#[cfg(test)]
mod tests {
    use mounts::format::Signature;

    use super::*;

    fn found(fs_type: &str, uuid: Option<&str>) -> Probe {
        Probe::Found(Signature {
            fs_type: Some(fs_type.into()),
            uuid: uuid.map(str::to_owned),
            ..Signature::default()
        })
    }

    #[test]
    fn only_the_staged_filesystem_is_mounted_in_its_place() {
        let device = Path::new("/dev/nvme0n2");
        assert_eq!(
            same_filesystem(&found("ext4", Some("u1")), "ext4", Some("u1"), device),
            Ok(())
        );
        // Nothing recorded about the UUID (an adopted volume): the type decides.
        assert_eq!(
            same_filesystem(&found("ext4", Some("u9")), "ext4", None, device),
            Ok(())
        );
        let other_uuid = same_filesystem(&found("ext4", Some("u2")), "ext4", Some("u1"), device);
        assert!(other_uuid.unwrap_err().contains("UUID u2"));
        let other_type = same_filesystem(&found("xfs", Some("u1")), "ext4", Some("u1"), device);
        assert!(other_type.unwrap_err().contains("holds xfs"));
        let empty = same_filesystem(&Probe::Empty, "ext4", Some("u1"), device);
        assert!(empty.unwrap_err().contains("neither formatted nor mounted"));
    }

    #[test]
    fn xfs_is_remounted_with_nouuid_and_read_only_stays_read_only() {
        let xfs = restage_options("xfs", &["noatime".into()], false).unwrap();
        assert_eq!(xfs.data(), "nouuid");
        assert!(!xfs.is_read_only());
        let once = restage_options("xfs", &["nouuid".into()], false).unwrap();
        assert_eq!(once.data(), "nouuid");
        let ext4 = restage_options("ext4", &[], true).unwrap();
        assert_eq!(ext4.data(), "");
        assert!(ext4.is_read_only());
    }
}
