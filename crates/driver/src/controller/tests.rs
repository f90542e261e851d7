//! The controller service against an in-memory device that records every round trip.
//!
//! The simulator (see `tests/`) is the real counterpart; this double exists for what the
//! simulator cannot do on demand (a read-back that disagrees with the request) and to pin
//! down the number of device round trips each operation costs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use routeros::model::CreateDisk;
use routeros::{
    AddReport, Client, DirPath, DiskItem, Error, FileDisk, FileEntry, FilePath, ImageRemoval,
    ImageUser, ItemId, Limits, NqnSource, Pool, RouterOsVersion, Slot, SystemInfo, Transport,
    VolumeFacts,
};

use super::rules::{VolumeId, VolumePlan};
use super::service::ControllerService;
use crate::config::ControllerConfig;
use crate::error::DriverError;

const GIB: u64 = 1 << 30;
const PVC: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";

#[derive(Default)]
struct FakeRds {
    disks: Mutex<BTreeMap<String, FileDisk>>,
    files: Mutex<BTreeMap<String, u64>>,
    calls: Mutex<Vec<&'static str>>,
    /// Makes the next create report a size one sector short of what was asked.
    tamper_next_create: AtomicBool,
}

impl FakeRds {
    fn record(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }

    fn take_calls(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn in_slot(&self, slot: &str) -> Vec<DiskItem> {
        self.disks
            .lock()
            .unwrap()
            .values()
            .filter(|d| d.slot == slot)
            .cloned()
            .map(DiskItem::File)
            .collect()
    }

    fn remove_if_unused(&self, path: &FilePath) -> ImageRemoval {
        let used = self
            .disks
            .lock()
            .unwrap()
            .values()
            .any(|d| d.file_path == path.as_str());
        if used {
            return ImageRemoval::InUse;
        }
        self.files.lock().unwrap().remove(path.as_str());
        ImageRemoval::Removed
    }

    fn add_file(&self, name: &str) {
        self.files.lock().unwrap().insert(name.to_owned(), GIB);
    }
}

#[async_trait::async_trait]
impl Transport for FakeRds {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn connection_epoch(&self) -> u64 {
        1
    }

    async fn system_info(&self) -> routeros::Result<SystemInfo> {
        self.record("system-info");
        Ok(SystemInfo {
            version: RouterOsVersion::parse("7.21.5")?,
            version_text: "7.21.5 (stable)".into(),
            identity: "fake".into(),
            board_name: None,
            architecture: None,
            uptime: None,
            cpu_count: None,
            total_memory: None,
            free_memory: None,
        })
    }

    async fn slot_items(&self, slot: &Slot) -> routeros::Result<Vec<DiskItem>> {
        self.record("slot-items");
        Ok(self.in_slot(slot.as_str()))
    }

    async fn list_disks(&self, prefix: &str) -> routeros::Result<Vec<FileDisk>> {
        self.record("list-disks");
        let disks = self.disks.lock().unwrap();
        Ok(disks
            .values()
            .filter(|d| d.slot.starts_with(prefix))
            .cloned()
            .collect())
    }

    /// The guarded add, as the scripts run it on the device.
    async fn create_disk(&self, request: CreateDisk<'_>) -> routeros::Result<AddReport> {
        self.record("create-disk");
        let spec = request.spec;
        let slot_before: Vec<String> = self
            .in_slot(spec.slot.as_str())
            .iter()
            .map(|d| d.id().to_owned())
            .collect();
        let file_taken = self
            .files
            .lock()
            .unwrap()
            .contains_key(spec.file_path.as_str());
        let files_before = if file_taken {
            vec!["*F".to_owned()]
        } else {
            vec![]
        };
        let mut added = None;
        if slot_before.is_empty() && !file_taken {
            let mut disks = self.disks.lock().unwrap();
            let id = format!("*{}", disks.len() + 1);
            let mut disk = FileDisk {
                allowed_hosts: routeros::AllowedHosts::Any,
                id: id.clone(),
                slot: spec.slot.to_string(),
                file_path: spec.file_path.to_string(),
                file_size: spec.size,
                nvme_tcp_export: true,
                nvme_tcp_port: spec.port,
                nqn: request.expected_nqn().to_owned(),
                nqn_source: NqnSource::ServerNqn,
                mount_filesystem: false,
                comment: spec.comment.clone(),
            };
            if self.tamper_next_create.swap(false, Ordering::SeqCst) {
                disk.file_size -= 512;
            }
            self.files
                .lock()
                .unwrap()
                .insert(disk.file_path.clone(), spec.size);
            disks.insert(disk.slot.clone(), disk);
            added = Some(id);
        }
        Ok(AddReport {
            slot_before,
            files_before,
            added,
            slot_after: self.in_slot(spec.slot.as_str()),
        })
    }

    async fn grow_disk(&self, slot: &Slot, size: u64) -> routeros::Result<FileDisk> {
        self.record("grow-disk");
        let mut disks = self.disks.lock().unwrap();
        let disk = disks
            .get_mut(slot.as_str())
            .ok_or_else(|| Error::NotFound("no such item".into()))?;
        disk.file_size = size;
        self.files
            .lock()
            .unwrap()
            .insert(disk.file_path.clone(), size);
        Ok(disk.clone())
    }

    async fn volume_facts(&self, slot: &Slot, dir: &DirPath) -> routeros::Result<VolumeFacts> {
        self.record("volume-facts");
        let image = format!("/{slot}.img");
        let named = |path: &str| path.ends_with(&image);
        let images = self
            .files
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| named(name) && name.starts_with(&format!("{dir}/")))
            .map(|(name, &size)| FileEntry {
                id: "*F".into(),
                name: name.clone(),
                kind: ".img file".into(),
                size,
                last_modified: None,
            })
            .collect();
        let image_users = self
            .disks
            .lock()
            .unwrap()
            .values()
            .filter(|d| named(&d.file_path))
            .map(|d| ImageUser {
                id: d.id.clone(),
                slot: d.slot.clone(),
                file_path: d.file_path.clone(),
            })
            .collect();
        Ok(VolumeFacts {
            slot_items: self.in_slot(slot.as_str()),
            images,
            image_users,
        })
    }

    async fn remove_disk(
        &self,
        id: &ItemId,
        image: Option<&FilePath>,
    ) -> routeros::Result<Option<ImageRemoval>> {
        self.record("remove-disk");
        self.disks
            .lock()
            .unwrap()
            .retain(|_, d| d.id != id.as_str());
        Ok(image.map(|path| self.remove_if_unused(path)))
    }

    async fn remove_unused_image(&self, path: &FilePath) -> routeros::Result<ImageRemoval> {
        self.record("remove-unused-image");
        Ok(self.remove_if_unused(path))
    }

    async fn get_file(&self, path: &FilePath) -> routeros::Result<Option<FileEntry>> {
        self.record("get-file");
        Ok(self
            .files
            .lock()
            .unwrap()
            .get(path.as_str())
            .map(|&size| FileEntry {
                id: "*F".into(),
                name: path.to_string(),
                kind: ".img file".into(),
                size,
                last_modified: None,
            }))
    }

    async fn remove_file(&self, path: &FilePath) -> routeros::Result<()> {
        self.record("remove-file");
        self.files.lock().unwrap().remove(path.as_str());
        Ok(())
    }

    async fn pool(&self, mount_point: &str) -> routeros::Result<Pool> {
        self.record("pool");
        Ok(Pool {
            slot: mount_point.into(),
            mount_point: mount_point.into(),
            fs: "btrfs".into(),
            size: 1 << 40,
            free: 1 << 40,
            mounted: true,
            state: Some("clean".into()),
        })
    }

    /// Only the guarded subvolume removal: no disk uses a file in it, none is left.
    async fn query_script(
        &self,
        script: &str,
        values: Option<usize>,
    ) -> routeros::Result<Vec<serde_json::Value>> {
        assert!(script.contains("btrfs subvolume remove"), "{script}");
        self.record("remove-unused-subvolume");
        Ok(vec![serde_json::json!([]); values.unwrap_or(2)])
    }
}

/// A service on the fake, warmed up (version and pool reading cached) so that the calls
/// recorded afterwards are those of the operation alone.
async fn service() -> (ControllerService, Arc<FakeRds>) {
    let fake = Arc::new(FakeRds::default());
    let client = Client::with_transport(
        fake.clone(),
        Limits {
            max_concurrency: 4,
            command_timeout: Duration::from_secs(5),
            breaker: routeros::BreakerConfig::default(),
        },
    )
    .unwrap();
    let mut config = ControllerConfig::new("192.0.2.1");
    config.cache_ttl = Duration::from_secs(600);
    let service = ControllerService::new(client, config.validate().unwrap());
    assert!(service.probe().await.unwrap());
    service.available_capacity().await.unwrap();
    fake.take_calls();
    (service, fake)
}

fn plan(service: &ControllerService, name: &str) -> VolumePlan {
    VolumePlan::new(service.config(), name, None, &HashMap::new()).unwrap()
}

fn id(text: &str) -> VolumeId {
    VolumeId::parse(text).unwrap()
}

#[tokio::test]
async fn round_trips_per_operation() {
    let (service, fake) = service().await;
    let p = plan(&service, PVC);

    service.create_volume(&p).await.unwrap();
    assert_eq!(
        fake.take_calls(),
        ["create-disk"],
        "a new volume costs the guarded add alone"
    );
    service.create_volume(&p).await.unwrap();
    assert_eq!(
        fake.take_calls(),
        ["create-disk"],
        "a repeat is judged from what the guarded add reports"
    );

    service.volume(&id(PVC)).await.unwrap();
    assert_eq!(fake.take_calls(), ["slot-items"]);
    service.list_volumes("", 0).await.unwrap();
    assert_eq!(fake.take_calls(), ["list-disks"]);
    service.pool().await.unwrap();
    service.available_capacity().await.unwrap();
    assert!(
        fake.take_calls().is_empty(),
        "fresh pool and capacity readings are reused"
    );

    service
        .expand_volume(&id(PVC), 2 * GIB as i64, 0)
        .await
        .unwrap();
    assert_eq!(fake.take_calls(), ["slot-items", "grow-disk"]);
    service
        .expand_volume(&id(PVC), GIB as i64, 0)
        .await
        .unwrap();
    assert_eq!(fake.take_calls(), ["slot-items"]);

    service.delete_volume(&id(PVC)).await.unwrap();
    assert_eq!(fake.take_calls(), ["volume-facts", "remove-disk"]);
    // A repeat finds no disk: a subvolume left by a delete cut short would still be there.
    service.delete_volume(&id(PVC)).await.unwrap();
    assert_eq!(
        fake.take_calls(),
        ["volume-facts", "remove-unused-subvolume"]
    );
}

#[tokio::test]
async fn a_read_back_that_disagrees_is_rolled_back_by_id_and_the_retry_succeeds() {
    let (service, fake) = service().await;
    let p = plan(&service, PVC);
    fake.tamper_next_create.store(true, Ordering::SeqCst);
    let error = service.create_volume(&p).await.unwrap_err();
    assert!(
        matches!(&error, DriverError::Rds(Error::Protocol(m)) if m.contains("file-size")),
        "{error}"
    );
    assert!(fake.disks.lock().unwrap().is_empty(), "disk removed");
    assert!(fake.files.lock().unwrap().is_empty(), "image removed");
    assert_eq!(fake.take_calls(), ["create-disk", "remove-disk"]);
    let disk = service.create_volume(&p).await.unwrap();
    assert_eq!(disk.file_size, GIB);
}

#[tokio::test]
async fn a_leftover_image_is_cleared_once_and_the_add_repeated() {
    let (service, fake) = service().await;
    let p = plan(&service, "any name");
    fake.add_file(p.file_path.as_str());
    service.create_volume(&p).await.unwrap();
    assert_eq!(
        fake.take_calls(),
        [
            "create-disk",
            "volume-facts",
            "remove-unused-image",
            "create-disk"
        ]
    );
    service.delete_volume(&p.id).await.unwrap();
    assert!(fake.files.lock().unwrap().is_empty());
}

#[tokio::test]
async fn pages_after_the_first_are_cut_from_its_listing() {
    let (service, fake) = service().await;
    for n in 0..5 {
        let name = format!("pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f6{n}");
        service.create_volume(&plan(&service, &name)).await.unwrap();
    }
    fake.take_calls();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = service.list_volumes(&token, 2).await.unwrap();
        seen.extend(page.disks.into_iter().map(|d| d.slot));
        match page.next_token {
            Some(next) => token = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.is_sorted());
    assert_eq!(
        fake.take_calls(),
        ["list-disks"],
        "one listing for every page"
    );

    // A token issued before, once its listing was used up, is read anew from the device.
    let again = service.list_volumes(&seen[1], 2).await.unwrap();
    assert_eq!(again.disks[0].slot, seen[2]);
    assert_eq!(fake.take_calls(), ["list-disks"]);
    // A new listing always reads the device.
    service.list_volumes("", 2).await.unwrap();
    assert_eq!(fake.take_calls(), ["list-disks"]);
}
