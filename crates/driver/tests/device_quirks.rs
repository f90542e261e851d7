//! The controller against devices that answer differently from the facts it was built on.
//!
//! The texts RouterOS prints for a duplicate slot, an existing file or a full pool have never
//! been captured from hardware. The simulator's quirks stand for plausible answers
//! (`generic-errors`, `duplicate-slots`, `reuse-existing-file`); under each, and over both
//! transports, data written into a volume must survive every replay the CO may make: the same
//! CreateVolume, one the device answers with a text nobody classified, one with another size,
//! a controller restart in between, and a replayed DeleteVolume. Nothing may leak.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};

use common::{Harness, Options, Transport, create_request, expect_code};
use csi::v1::CapacityRange;
use rds_sim::{Faults, Quirk};
use sha2::{Digest, Sha256};
use tonic::Code;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const PVC: &str = "pvc-0b7d4e21-3f2a-4c9e-9a55-1d2c3b4a5f60";
/// Where data is written into the image: the start, and past the first half.
const REGIONS: [u64; 2] = [0, 600 * MIB];

fn image_of(h: &Harness) -> std::path::PathBuf {
    h.sim.backing_file(&format!("storage-pool/{PVC}.img"))
}

/// Writes a pattern into the volume's image, as a pod would through the node.
fn write_data(h: &Harness) -> [u8; 32] {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(image_of(h))
        .expect("image");
    for (n, offset) in REGIONS.iter().enumerate() {
        let block: Vec<u8> = (0..MIB).map(|i| (i as u8) ^ (n as u8 * 37 + 11)).collect();
        file.seek(SeekFrom::Start(*offset)).unwrap();
        file.write_all(&block).unwrap();
    }
    file.sync_all().unwrap();
    checksum(h).expect("written data")
}

/// The written regions and the image's length, or `None` when the image is gone.
fn checksum(h: &Harness) -> Option<[u8; 32]> {
    let mut file = std::fs::File::open(image_of(h)).ok()?;
    let mut hash = Sha256::new();
    hash.update(file.metadata().unwrap().len().to_le_bytes());
    let mut block = vec![0; MIB as usize];
    for offset in REGIONS {
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.read_exact(&mut block).unwrap();
        hash.update(&block);
    }
    Some(hash.finalize().into())
}

fn disks_in_slot(h: &Harness) -> usize {
    h.sim
        .snapshot()
        .file_disks()
        .filter(|d| d.slot == PVC)
        .count()
}

async fn replays_keep_the_data(quirk: Option<Quirk>, transport: Transport) {
    let mut faults = Faults::default();
    if let Some(quirk) = quirk {
        faults.quirks.insert(quirk);
    }
    let mut h = Harness::warmed_up(Options {
        transport,
        faults,
        ..Options::default()
    })
    .await;
    let what = format!("{quirk:?} over {transport:?}");
    let created = h.create(create_request(PVC, GIB)).await.unwrap();
    let written = write_data(&h);

    // The CO replays the same request after a lost answer.
    let again = h.create(create_request(PVC, GIB)).await.unwrap();
    assert_eq!(again.volume, created.volume, "{what}");
    assert_eq!(checksum(&h), Some(written), "{what}: same request");

    // The replay meets a device that answers with a text nobody classified.
    h.sim.faults().update(|f| {
        f.fail_next = 1;
        f.fail_message = "couldn't add disk (6)".into();
    });
    match h.create(create_request(PVC, GIB)).await {
        Ok(answer) => assert_eq!(answer.volume, created.volume, "{what}"),
        Err(status) => assert_eq!(status.code(), Code::Internal, "{what}: {status:?}"),
    }
    assert_eq!(checksum(&h), Some(written), "{what}: unclassified refusal");
    assert_eq!(disks_in_slot(&h), 1, "{what}");
    let again = h.create(create_request(PVC, GIB)).await.unwrap();
    assert_eq!(again.volume, created.volume, "{what}");

    // Same name, another size: ALREADY_EXISTS, nothing touched.
    let mut bigger = create_request(PVC, 2 * GIB);
    bigger.capacity_range = Some(CapacityRange {
        required_bytes: 2 * GIB as i64,
        limit_bytes: 2 * GIB as i64,
    });
    expect_code(h.create(bigger.clone()).await, Code::AlreadyExists);
    assert_eq!(checksum(&h), Some(written), "{what}: other size");

    // A controller restart between replays: nothing it held in memory matters.
    h.restart_controller().await;
    expect_code(h.create(bigger).await, Code::AlreadyExists);
    let again = h.create(create_request(PVC, GIB)).await.unwrap();
    assert_eq!(again.volume, created.volume, "{what}: after a restart");
    assert_eq!(checksum(&h), Some(written), "{what}: after a restart");
    assert_eq!(disks_in_slot(&h), 1, "{what}: never a second disk");

    // Delete, and the CO's replay of it.
    h.delete(PVC).await.unwrap();
    h.delete(PVC).await.unwrap();
    assert_eq!(checksum(&h), None, "{what}: the image went with the disk");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_keep_the_data_on_a_device_as_documented() {
    for transport in [Transport::Ssh, Transport::Rest] {
        replays_keep_the_data(None, transport).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_keep_the_data_when_every_refusal_is_one_generic_text() {
    for transport in [Transport::Ssh, Transport::Rest] {
        replays_keep_the_data(Some(Quirk::GenericErrors), transport).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_keep_the_data_when_the_device_allows_duplicate_slots() {
    for transport in [Transport::Ssh, Transport::Rest] {
        replays_keep_the_data(Some(Quirk::DuplicateSlots), transport).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_keep_the_data_when_the_device_adopts_existing_files() {
    for transport in [Transport::Ssh, Transport::Rest] {
        replays_keep_the_data(Some(Quirk::ReuseExistingFile), transport).await;
    }
}

/// A second disk in the volume's slot (made by hand on a device that allows it): the
/// controller will not choose between them, for any RPC, and touches neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_disks_in_one_slot_are_refused_and_left_alone() {
    let mut faults = Faults::default();
    faults.quirks.insert(Quirk::DuplicateSlots);
    let h = Harness::warmed_up(Options {
        faults,
        ..Options::default()
    })
    .await;
    h.create(create_request(PVC, GIB)).await.unwrap();
    let written = write_data(&h);
    h.device_exec(&format!(
        "/disk add type=file slot=\"{PVC}\" file-path=\"storage-pool/twin.img\" file-size=1048576"
    ))
    .await;
    assert_eq!(disks_in_slot(&h), 2);
    let message = expect_code(
        h.create(create_request(PVC, GIB)).await,
        Code::FailedPrecondition,
    );
    assert!(message.contains("2 disks"), "{message}");
    expect_code(h.delete(PVC).await, Code::FailedPrecondition);
    assert_eq!(disks_in_slot(&h), 2, "neither was touched");
    assert_eq!(checksum(&h), Some(written));
    h.device_exec(
        "/disk remove [find where file-path=\"/storage-pool/twin.img\"];\
         /file remove [find where name=\"storage-pool/twin.img\"]",
    )
    .await;
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

/// An image at the volume's path with no disk (an add that failed half-way): removed only
/// after the controller has seen that no disk uses it, never handed to `/disk add`, even on a
/// device that would adopt it with its old data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_image_is_never_adopted_with_its_old_data() {
    let mut faults = Faults::default();
    faults.quirks.insert(Quirk::ReuseExistingFile);
    let h = Harness::warmed_up(Options {
        faults,
        ..Options::default()
    })
    .await;
    h.create(create_request(PVC, GIB)).await.unwrap();
    let old = write_data(&h);
    h.remove_disk_entry(PVC).await;
    h.create(create_request(PVC, GIB)).await.unwrap();
    let fresh = checksum(&h).expect("a new image");
    assert_ne!(
        fresh, old,
        "the new volume must not carry the leftover's data"
    );
    h.delete(PVC).await.unwrap();
    h.finish().await;
}
