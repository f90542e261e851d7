//! What the node remembers of each volume it staged, kept as one JSON file per volume in the
//! node's state directory (`--state-dir`), so that a restarted plugin still knows.
//!
//! The record holds what NodeStageVolume established: the namespace's identifiers and block
//! device, the filesystem's type and UUID, the mount flags, and the volume context. It is what
//! lets the node tell, after the RDS restarted, that the device under a staged volume is not
//! the namespace it staged (an RDS that gave it new identifiers), and re-stage the volume onto
//! the device now carrying its NQN without guessing: only a device holding the very filesystem
//! recorded here is ever mounted in its place.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mounts::DeviceNumber;
use mounts::blocking::run_blocking;
use nvme::NamespaceIds;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::error::{NodeError, Result};

/// Version of the record's layout; a record of another version is left alone and reported.
pub const RECORD_FORMAT: u32 = 1;

/// How a volume is staged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StagedLayout {
    /// Mounted at the staging path.
    Filesystem {
        fs_type: String,
        /// The filesystem's UUID as blkid read it at stage time; a device is mounted in the
        /// volume's place only when it holds this filesystem.
        fs_uuid: Option<String>,
        /// The capability's mount flags, as the CO gave them.
        mount_flags: Vec<String>,
        read_only: bool,
    },
    /// Attached only; pods get device nodes.
    Block,
}

/// One staged volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedVolume {
    pub format: u32,
    pub volume_id: String,
    pub nqn: String,
    pub staging: PathBuf,
    pub layout: StagedLayout,
    /// The block device staged (`major:minor`) and its name when it was.
    #[serde(with = "device_text")]
    pub device: DeviceNumber,
    pub device_path: PathBuf,
    /// The namespace's identifiers when it was staged (or last recovered).
    pub ids: NamespaceIds,
    /// The volume context, to attach again when the kernel gave the controller up.
    pub context: BTreeMap<String, String>,
    /// Seconds since the epoch.
    pub staged_at: u64,
    /// Times the volume was re-staged onto a new namespace, and when last.
    #[serde(default)]
    pub recoveries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<u64>,
    /// Devices this volume was on before recoveries (newest last, at most
    /// [`MAX_REPLACED`]): mounts still on them are pods holding a dead filesystem.
    #[serde(default, with = "device_list")]
    pub replaced: Vec<DeviceNumber>,
    /// Published paths the node pointed at the volume's new namespace: pods whose containers
    /// started before that still hold the dead filesystem (or device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub republished: Vec<PathBuf>,
    /// The paths NodePublishVolume published this volume at: the only paths a re-stage ever
    /// re-points (a device number says nothing once the kernel reuses it for another volume).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PathBuf>,
    /// Published paths a re-stage could not point at the new namespace yet (still on a
    /// former device, for the reason last seen): retried at every check until done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stranded: Vec<PathBuf>,
}

/// Former devices remembered per volume.
pub const MAX_REPLACED: usize = 8;

impl StagedVolume {
    /// Notes a path NodePublishVolume published; true when it is new.
    pub fn add_published(&mut self, path: &Path) -> bool {
        if self.published.iter().any(|p| p == path) {
            return false;
        }
        self.published.push(path.to_path_buf());
        true
    }

    /// Forgets a published path (unpublished); true when it was listed.
    pub fn forget_published(&mut self, path: &Path) -> bool {
        let before = self.republished.len() + self.published.len() + self.stranded.len();
        self.republished.retain(|p| p != path);
        self.published.retain(|p| p != path);
        self.stranded.retain(|p| p != path);
        self.republished.len() + self.published.len() + self.stranded.len() != before
    }

    /// Whether `device` is one this volume was on before its namespace was replaced.
    pub fn is_former_device(&self, device: DeviceNumber) -> bool {
        self.device == device || self.replaced.contains(&device)
    }

    /// The record after published paths were pointed at the volume's current device
    /// (`repointed`) and others could not be yet (`stranded`, which replaces the old list).
    pub fn repointed(mut self, repointed: &[PathBuf], stranded: Vec<PathBuf>) -> Self {
        for path in repointed {
            if !self.republished.contains(path) {
                self.republished.push(path.clone());
            }
        }
        self.stranded = stranded;
        self
    }

    /// The record after a recovery onto `device`.
    pub fn moved_to(mut self, device: &super::fabric::AttachedDevice) -> Self {
        if self.device != device.device && !self.replaced.contains(&self.device) {
            self.replaced.push(self.device);
        }
        let excess = self.replaced.len().saturating_sub(MAX_REPLACED);
        self.replaced.drain(..excess);
        self.device = device.device;
        self.device_path = device.path.clone();
        self.ids = device.ids.clone();
        self.recoveries += 1;
        self.recovered_at = Some(unix_now());
        self
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

mod device_text {
    use mounts::DeviceNumber;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(device: &DeviceNumber, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(device)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceNumber, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod device_list {
    use mounts::DeviceNumber;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(devices: &[DeviceNumber], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(devices.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DeviceNumber>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// The records of this node: read from the directory at start, written through on change.
/// Without a directory (library use in tests) they live in memory only.
#[derive(Debug, Clone, Default)]
pub struct Records {
    dir: Option<PathBuf>,
    cache: Arc<Mutex<HashMap<String, StagedVolume>>>,
}

fn file_of(dir: &Path, volume_id: &str) -> PathBuf {
    dir.join(format!("{volume_id}.json"))
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> NodeError {
    NodeError::Mount(mounts::Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` whole: a temporary file, fsync, rename, fsync of the directory, so
/// that a crash leaves the old record or the new one, never half of one.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temporary = path.with_extension("json.tmp");
    let mut file =
        std::fs::File::create(&temporary).map_err(|e| io_error("creating", &temporary, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("writing", &temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| io_error("renaming", path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing", dir, e))
}

impl Records {
    /// Opens (creating it, mode 0700) the state directory and reads every record in it. A
    /// record that cannot be read is reported and skipped: the volume it describes is then
    /// handled as one staged before records existed.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut cache = HashMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<StagedVolume>(&bytes).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(record) if record.format == RECORD_FORMAT => {
                    cache.insert(record.volume_id.clone(), record);
                }
                Ok(record) => tracing::warn!(path = %path.display(), format = record.format,
                    "staged-volume record of another format; ignored"),
                Err(error) => tracing::warn!(path = %path.display(), %error,
                    "unreadable staged-volume record; ignored"),
            }
        }
        Ok(Self {
            dir: Some(dir.to_path_buf()),
            cache: Arc::new(Mutex::new(cache)),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, StagedVolume>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, volume_id: &str) -> Option<StagedVolume> {
        self.cache().get(volume_id).cloned()
    }

    /// Every record, ordered by volume id.
    pub fn all(&self) -> Vec<StagedVolume> {
        let mut all: Vec<StagedVolume> = self.cache().values().cloned().collect();
        all.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
        all
    }

    /// Stores `record` (on disk first, then in memory).
    pub async fn save(&self, record: StagedVolume, deadline: Instant) -> Result<()> {
        if let Some(dir) = &self.dir {
            let path = file_of(dir, &record.volume_id);
            let bytes = serde_json::to_vec_pretty(&record)
                .map_err(|e| NodeError::Internal(format!("encoding a record: {e}")))?;
            let op = format!("writing {}", path.display());
            run_blocking(&op, deadline, move || write_whole(&path, &bytes)).await?;
        }
        self.cache().insert(record.volume_id.clone(), record);
        Ok(())
    }

    /// Forgets the volume (its file too); forgetting an unknown volume succeeds.
    pub async fn remove(&self, volume_id: &str, deadline: Instant) -> Result<()> {
        if let Some(dir) = &self.dir {
            let path = file_of(dir, volume_id);
            let op = format!("removing {}", path.display());
            run_blocking(&op, deadline, move || match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error("removing", &path, e)),
            })
            .await?;
        }
        self.cache().remove(volume_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn record(volume_id: &str) -> StagedVolume {
        StagedVolume {
            format: RECORD_FORMAT,
            volume_id: volume_id.into(),
            nqn: format!("nqn.2000-02.com.mikrotik:{volume_id}"),
            staging: "/var/lib/kubelet/plugins/x/globalmount".into(),
            layout: StagedLayout::Filesystem {
                fs_type: "ext4".into(),
                fs_uuid: Some("0b5c8f9e-1111-2222-3333-444455556666".into()),
                mount_flags: vec!["noatime".into()],
                read_only: false,
            },
            device: DeviceNumber::new(259, 3),
            device_path: "/dev/nvme1n1".into(),
            ids: NamespaceIds {
                uuid: Some("8f0c44e5-0b61-4f3a-9c1d-2a7b3e4d5f60".into()),
                ..NamespaceIds::default()
            },
            context: BTreeMap::from([("nqn".into(), "x".into())]),
            staged_at: 1_700_000_000,
            recoveries: 0,
            recovered_at: None,
            replaced: vec![],
            republished: vec![],
            published: vec![],
            stranded: vec![],
        }
    }

    #[test]
    fn published_paths_are_listed_once_and_forgotten_with_their_unpublish() {
        let mut r = record("pvc-1");
        assert!(r.add_published(Path::new("/pods/a/mount")));
        assert!(!r.add_published(Path::new("/pods/a/mount")));
        assert_eq!(r.published, vec![PathBuf::from("/pods/a/mount")]);
        assert!(r.forget_published(Path::new("/pods/a/mount")));
        assert!(r.published.is_empty());
    }

    #[test]
    fn forgetting_a_published_path_says_whether_it_was_listed() {
        let mut r = record("pvc-1");
        r.republished = vec!["/pods/a/mount".into(), "/pods/b/mount".into()];
        assert!(r.forget_published(Path::new("/pods/a/mount")));
        assert_eq!(r.republished, vec![PathBuf::from("/pods/b/mount")]);
        assert!(!r.forget_published(Path::new("/pods/a/mount")));
        assert!(!r.forget_published(Path::new("/pods/c/mount")));
        assert_eq!(r.republished, vec![PathBuf::from("/pods/b/mount")]);
    }

    #[test]
    fn a_recovery_onto_the_same_device_lists_no_former_device() {
        let same = crate::node::fabric::AttachedDevice {
            path: "/dev/nvme1n1".into(),
            device: DeviceNumber::new(259, 3),
            newly_attached: false,
            ids: NamespaceIds::default(),
        };
        let moved = record("pvc-1").moved_to(&same);
        assert!(moved.replaced.is_empty());
        assert_eq!(moved.recoveries, 1);
        // When it happened, by the clock: not a made-up time.
        let at = moved.recovered_at.unwrap();
        assert!(at.abs_diff(unix_now()) < 60 && at > 1_700_000_000, "{at}");
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_removed_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path()).unwrap();
        // A directory where the record's file would be: unlink fails, and says so.
        std::fs::create_dir(dir.path().join("pvc-1.json")).unwrap();
        assert!(records.remove("pvc-1", soon()).await.is_err());
    }

    #[test]
    fn a_recovery_moves_the_record_and_remembers_a_bounded_list_of_former_devices() {
        let mut moved = record("pvc-1");
        for minor in 10..(10 + MAX_REPLACED as u32 + 2) {
            let device = crate::node::fabric::AttachedDevice {
                path: format!("/dev/nvme{minor}n1").into(),
                device: DeviceNumber::new(259, minor),
                newly_attached: true,
                ids: NamespaceIds {
                    uuid: Some(format!("u{minor}")),
                    ..NamespaceIds::default()
                },
            };
            moved = moved
                .moved_to(&device)
                .repointed(&["/pods/a/mount".into()], vec![]);
            assert_eq!(moved.device, device.device);
            assert_eq!(moved.ids, device.ids);
        }
        assert_eq!(moved.recoveries, MAX_REPLACED as u32 + 2);
        assert!(moved.recovered_at.is_some());
        assert_eq!(moved.replaced.len(), MAX_REPLACED);
        // The newest former device is last; the oldest were dropped.
        assert_eq!(
            moved.replaced.last(),
            Some(&DeviceNumber::new(259, 10 + MAX_REPLACED as u32))
        );
        assert!(!moved.replaced.contains(&DeviceNumber::new(259, 3)));
        assert!(!moved.replaced.contains(&moved.device));
        assert_eq!(moved.republished, vec![PathBuf::from("/pods/a/mount")]);
    }

    #[test]
    fn stranded_paths_are_replaced_by_each_attempt_and_forgotten_at_unpublish() {
        let a = PathBuf::from("/pods/a/mount");
        let b = PathBuf::from("/pods/b/mount");
        let first = record("pvc-1").repointed(std::slice::from_ref(&a), vec![b.clone()]);
        assert_eq!(first.republished, vec![a.clone()]);
        assert_eq!(first.stranded, vec![b.clone()]);
        let second = first.repointed(std::slice::from_ref(&b), vec![]);
        assert_eq!(second.republished, vec![a.clone(), b.clone()]);
        assert!(second.stranded.is_empty());
        let mut third = second.repointed(&[], vec![b.clone()]);
        assert!(third.forget_published(&b));
        assert!(third.stranded.is_empty() && third.republished == vec![a]);
        assert!(!third.forget_published(&b));
    }

    #[tokio::test]
    async fn records_survive_a_restart_of_the_plugin_and_removal_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let records = Records::open(&state).unwrap();
        let a = record("pvc-0b5c8f9e-1111-2222-3333-444455556666");
        let mut b = record("csi-0123456789abcdef0123456789abcdef");
        b.layout = StagedLayout::Block;
        records.save(a.clone(), soon()).await.unwrap();
        records.save(b.clone(), soon()).await.unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );

        let reopened = Records::open(&state).unwrap();
        assert_eq!(reopened.all(), vec![b.clone(), a.clone()]);
        reopened.remove(&b.volume_id, soon()).await.unwrap();
        reopened.remove("pvc-never-staged", soon()).await.unwrap();
        assert_eq!(Records::open(&state).unwrap().all(), vec![a]);
    }

    #[tokio::test]
    async fn unreadable_or_foreign_format_records_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path()).unwrap();
        let good = record("pvc-0b5c8f9e-1111-2222-3333-444455556666");
        records.save(good.clone(), soon()).await.unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let mut future = record("csi-0123456789abcdef0123456789abcdef");
        future.format = RECORD_FORMAT + 1;
        std::fs::write(
            dir.path().join("future.json"),
            serde_json::to_vec(&future).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a record").unwrap();
        assert_eq!(Records::open(dir.path()).unwrap().all(), vec![good]);
    }

    #[test]
    fn the_device_is_stored_as_major_minor_text() {
        let text = serde_json::to_string(&record("pvc-1")).unwrap();
        assert!(text.contains(r#""device":"259:3""#), "{text}");
        assert!(text.contains(r#""kind":"filesystem""#), "{text}");
        let back: StagedVolume = serde_json::from_str(&text).unwrap();
        assert_eq!(back, record("pvc-1"));
        let bad = text.replace("259:3", "disk");
        assert!(serde_json::from_str::<StagedVolume>(&bad).is_err());
    }

    #[tokio::test]
    async fn in_memory_records_touch_no_disk() {
        let records = Records::default();
        records.save(record("pvc-1"), soon()).await.unwrap();
        assert_eq!(records.get("pvc-1"), Some(record("pvc-1")));
        records.remove("pvc-1", soon()).await.unwrap();
        assert!(records.all().is_empty());
    }
}
