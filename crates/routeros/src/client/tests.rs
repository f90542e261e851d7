use super::*;
use crate::model::{AddReport, NqnSource, SystemInfo};
use crate::validate::Nqn;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// An in-memory transport that records calls and holds one disk.
struct Fake {
    version: &'static str,
    epoch: AtomicU64,
    system_calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay: Duration,
    created: std::sync::Mutex<Vec<bool>>,
    /// Mutates what create returns, to exercise verification.
    tamper: fn(&mut FileDisk),
}

impl Fake {
    fn new(version: &'static str) -> Self {
        Self {
            version,
            epoch: AtomicU64::new(1),
            system_calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            delay: Duration::ZERO,
            created: Default::default(),
            tamper: |_| {},
        }
    }

    async fn busy(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Transport for Fake {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn connection_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
    async fn system_info(&self) -> Result<SystemInfo> {
        self.system_calls.fetch_add(1, Ordering::SeqCst);
        self.busy().await;
        Ok(SystemInfo {
            version: RouterOsVersion::parse(self.version)?,
            version_text: self.version.into(),
            identity: "fake".into(),
            board_name: None,
            architecture: None,
            uptime: None,
            cpu_count: None,
            total_memory: None,
            free_memory: None,
        })
    }
    async fn slot_items(&self, _: &Slot) -> Result<Vec<DiskItem>> {
        self.busy().await;
        Ok(Vec::new())
    }
    async fn list_disks(&self, _: &str) -> Result<Vec<FileDisk>> {
        Ok(Vec::new())
    }
    async fn create_disk(&self, request: CreateDisk<'_>) -> Result<AddReport> {
        self.busy().await;
        self.created.lock().unwrap().push(request.send_nqn);
        let mut disk = request.faithful_disk("*1");
        (self.tamper)(&mut disk);
        Ok(AddReport {
            slot_before: Vec::new(),
            files_before: Vec::new(),
            added: Some("*1".into()),
            slot_after: vec![DiskItem::File(disk)],
        })
    }
    async fn grow_disk(&self, slot: &Slot, size: u64) -> Result<FileDisk> {
        Err(Error::NotFound(format!("{slot} {size}")))
    }
    async fn volume_facts(&self, _: &Slot, _: &DirPath) -> Result<VolumeFacts> {
        Ok(VolumeFacts::default())
    }
    async fn remove_disk(
        &self,
        _: &ItemId,
        image: Option<&FilePath>,
    ) -> Result<Option<ImageRemoval>> {
        Ok(image.map(|_| ImageRemoval::Removed))
    }
    async fn remove_unused_image(&self, _: &FilePath) -> Result<ImageRemoval> {
        Ok(ImageRemoval::Removed)
    }
    async fn get_file(&self, _: &FilePath) -> Result<Option<FileEntry>> {
        Ok(None)
    }
    async fn remove_file(&self, _: &FilePath) -> Result<()> {
        Ok(())
    }
    async fn pool(&self, _: &str) -> Result<Pool> {
        Err(Error::NotFound("no pool".into()))
    }
}

fn client(fake: Arc<Fake>, max: usize, timeout: Duration) -> Client {
    Client::with_transport(
        fake,
        Limits {
            max_concurrency: max,
            command_timeout: timeout,
            breaker: crate::BreakerConfig::default(),
        },
    )
    .unwrap()
}

fn spec(n: usize) -> DiskSpec {
    DiskSpec {
        slot: Slot::try_from(format!("pvc-{n}")).unwrap(),
        file_path: FilePath::try_from(format!("storage-pool/pvc-{n}.img")).unwrap(),
        size: 1 << 20,
        port: 4420,
        nqn: Nqn::try_from(format!("nqn.2000-02.com.mikrotik:pvc-{n}")).unwrap(),
        comment: None,
    }
}

#[tokio::test]
async fn version_is_detected_once_per_connection_even_under_a_burst() {
    let fake = Arc::new(Fake::new("7.21.5 (stable)"));
    let c = client(fake.clone(), 4, Duration::from_secs(5));
    let creates = (0..20).map(|n| {
        let c = c.clone();
        async move { c.create_file_disk(&spec(n)).await }
    });
    for r in futures::future::join_all(creates).await {
        r.unwrap();
    }
    assert_eq!(fake.system_calls.load(Ordering::SeqCst), 1);
    assert!(fake.created.lock().unwrap().iter().all(|sent| *sent));
    // A reconnect (new epoch) re-reads the version.
    fake.epoch.fetch_add(1, Ordering::SeqCst);
    c.create_file_disk(&spec(99)).await.unwrap();
    assert_eq!(fake.system_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn old_versions_omit_the_nqn_or_refuse_file_disks() {
    let fake = Arc::new(Fake::new("7.20.8 (long-term)"));
    let c = client(fake.clone(), 4, Duration::from_secs(5));
    let CreateOutcome::Created(disk) = c.create_file_disk(&spec(1)).await.unwrap() else {
        panic!("not created")
    };
    assert_eq!(disk.nqn, "pvc-1");
    assert_eq!(disk.nqn_source, NqnSource::SlotName);
    assert_eq!(*fake.created.lock().unwrap(), [false]);

    let old = Arc::new(Fake::new("7.16.2"));
    let c = client(old.clone(), 4, Duration::from_secs(5));
    let Err(Error::Unsupported(msg)) = c.create_file_disk(&spec(1)).await else {
        panic!("7.16 accepted")
    };
    assert!(msg.contains("7.16.2") && msg.contains("7.17"), "{msg}");
    assert!(old.created.lock().unwrap().is_empty());
    assert!(matches!(
        c.grow_disk(&spec(1).slot, 1 << 21).await,
        Err(Error::Unsupported(_))
    ));
}

#[tokio::test]
async fn create_refuses_a_read_back_that_differs() {
    let mut fake = Fake::new("7.21.5");
    fake.tamper = |d| d.file_size -= 1;
    let c = client(Arc::new(fake), 4, Duration::from_secs(5));
    let Ok(CreateOutcome::CreatedMismatch { id, reason }) = c.create_file_disk(&spec(1)).await
    else {
        panic!("accepted")
    };
    assert_eq!(id.as_str(), "*1", "the disk this call created");
    assert!(
        reason.contains("file-size: asked 1048576, device has 1048575"),
        "{reason}"
    );
}

#[tokio::test]
async fn concurrency_is_bounded_by_the_permit_count() {
    let mut fake = Fake::new("7.21.5");
    fake.delay = Duration::from_millis(5);
    let fake = Arc::new(fake);
    let c = client(fake.clone(), 3, Duration::from_secs(5));
    let slot = Slot::try_from("pvc-1").unwrap();
    let gets = (0..30).map(|_| {
        let c = c.clone();
        let slot = slot.clone();
        async move { c.get_disk(&slot).await }
    });
    for r in futures::future::join_all(gets).await {
        assert_eq!(r.unwrap(), None);
    }
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_deadline_maps_to_unavailable() {
    let mut fake = Fake::new("7.21.5");
    fake.delay = Duration::from_secs(60);
    let c = client(Arc::new(fake), 1, Duration::from_millis(50));
    let started = Instant::now();
    let e = c
        .get_disk(&Slot::try_from("pvc-1").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Unavailable(_)) && e.is_retryable(),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn inputs_are_validated_before_any_io() {
    let fake = Arc::new(Fake::new("7.21.5"));
    let c = client(fake.clone(), 1, Duration::from_secs(1));
    assert!(matches!(
        c.list_disks("bad prefix;").await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(c.pool("").await, Err(Error::Invalid(_))));
    assert!(matches!(
        c.grow_disk(&spec(1).slot, 0).await,
        Err(Error::Invalid(_))
    ));
    let bad = DiskSpec { size: 0, ..spec(1) };
    assert!(matches!(
        c.create_file_disk(&bad).await,
        Err(Error::Invalid(_))
    ));
    assert_eq!(fake.system_calls.load(Ordering::SeqCst), 0);
    assert!(
        Client::with_transport(
            fake,
            Limits {
                max_concurrency: 0,
                command_timeout: Duration::from_secs(1),
                breaker: crate::BreakerConfig::default(),
            }
        )
        .is_err()
    );
}

fn report(slot_before: &[&str], added: Option<&str>, slot_after: Vec<DiskItem>) -> AddReport {
    AddReport {
        slot_before: slot_before.iter().map(|s| s.to_string()).collect(),
        files_before: Vec::new(),
        added: added.map(str::to_owned),
        slot_after,
    }
}

#[test]
fn a_guarded_add_is_judged_only_on_items_of_its_own_slot() {
    let s = spec(1);
    let request = CreateDisk {
        spec: &s,
        send_nqn: true,
    };
    let mine = DiskItem::File(request.faithful_disk("*1"));
    let mut elsewhere = request.faithful_disk("*2");
    elsewhere.slot = "pvc-2".into();
    // The device's filter let another slot's disk through: nothing is decided on that reply,
    // whether or not the add happened.
    for added in [Some("*1"), None] {
        let stray = report(
            &[],
            added,
            vec![mine.clone(), DiskItem::File(elsewhere.clone())],
        );
        let e = judge_add(&request, stray).unwrap_err();
        assert!(
            matches!(&e, Error::Protocol(m) if m.contains("pvc-2")),
            "{e}"
        );
    }
    assert_eq!(
        judge_add(&request, report(&[], Some("*1"), vec![mine.clone()])).unwrap(),
        CreateOutcome::Created(request.faithful_disk("*1"))
    );
    // Not added: the slot's holders, or (slot free) the file at the image path, are the reason.
    assert_eq!(
        judge_add(&request, report(&["*1"], None, vec![mine.clone()])).unwrap(),
        CreateOutcome::SlotTaken(vec![mine.clone()])
    );
    assert_eq!(
        judge_add(
            &request,
            AddReport {
                files_before: vec!["*F1".into()],
                ..report(&[], None, vec![])
            }
        )
        .unwrap(),
        CreateOutcome::FileExists
    );
    // Added, but the read-back does not show that id as a file disk: this call's to undo.
    let raid = DiskItem::Other {
        id: "*1".into(),
        slot: "pvc-1".into(),
        kind: "raid".into(),
    };
    for (after, why) in [(vec![], "missing"), (vec![raid], "raid")] {
        let Ok(CreateOutcome::CreatedMismatch { id, reason }) =
            judge_add(&request, report(&[], Some("*1"), after))
        else {
            panic!("not a mismatch")
        };
        assert_eq!(id.as_str(), "*1");
        assert!(reason.contains(why), "{reason}");
    }
}
