//! The device's ways of copying a volume, over real SSH with real backing files: btrfs
//! subvolume snapshots (7.18+), `/file copy` (7.23+), and `copy-from`, which copies
//! properties and no data.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use common::*;
use rds_sim::Simulator;

const MIB: u64 = 1 << 20;

/// Writes `byte` over one MiB at `offset` of a backing file, as a host writing the volume.
fn write_at(path: &Path, offset: u64, byte: u8) {
    let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&vec![byte; MIB as usize]).unwrap();
}

fn byte_at(path: &Path, offset: u64) -> u8 {
    let mut file = fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = [0];
    file.read_exact(&mut buf).unwrap();
    buf[0]
}

async fn ok(conn: &Conn, script: &str) -> String {
    let result = exec(conn, script).await;
    assert_eq!(result.exit_status, Some(0), "{script}: {}", result.stdout);
    result.stdout
}

#[tokio::test]
async fn a_snapshot_holds_the_data_of_its_moment_and_a_clone_of_it_is_writable() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    ok(
        &conn,
        "/disk btrfs subvolume add fs=storage-pool name=pvc-1; /disk add type=file slot=pvc-1 \
         file-path=storage-pool/pvc-1/pvc-1.img file-size=64M nvme-tcp-export=yes",
    )
    .await;
    let image = sim.backing_file("storage-pool/pvc-1/pvc-1.img");
    write_at(&image, 8 * MIB, 0x11);

    ok(
        &conn,
        "/disk btrfs subvolume add fs=storage-pool parent=pvc-1 name=snap-1 read-only=yes",
    )
    .await;
    // The source goes on changing; the snapshot keeps what it had.
    write_at(&image, 8 * MIB, 0x22);
    let snapshot = sim.backing_file("storage-pool/snap-1/pvc-1.img");
    assert_eq!(byte_at(&snapshot, 8 * MIB), 0x11);
    assert_eq!(byte_at(&image, 8 * MIB), 0x22);

    let listed = ok(
        &conn,
        ":put [:serialize to=json [/disk btrfs subvolume print as-value where name=\"snap-1\"]]",
    )
    .await;
    let item = &json_values(&listed)[0][0];
    assert_eq!(item["parent"], "pvc-1");
    assert_eq!(item["read-only"], true);
    assert_eq!(item["fs"], "storage-pool");

    // A read-only snapshot's image can not carry a disk; a writable snapshot of it can.
    let refused = exec(
        &conn,
        "/disk add type=file slot=pvc-2 file-path=storage-pool/snap-1/pvc-1.img",
    )
    .await;
    assert!(
        refused.stdout.contains("read-only file system"),
        "{}",
        refused.stdout
    );
    ok(
        &conn,
        "/disk btrfs subvolume add fs=storage-pool parent=snap-1 name=pvc-2; /disk add type=file \
         slot=pvc-2 file-path=storage-pool/pvc-2/pvc-1.img nvme-tcp-export=yes",
    )
    .await;
    let clone = sim.backing_file("storage-pool/pvc-2/pvc-1.img");
    assert_eq!(byte_at(&clone, 8 * MIB), 0x11);
    write_at(&clone, 8 * MIB, 0x33);
    assert_eq!(byte_at(&snapshot, 8 * MIB), 0x11, "the clone is its own");

    // The snapshot goes with its files; the clone made from it stays.
    ok(&conn, "/disk btrfs subvolume remove [find name=\"snap-1\"]").await;
    assert!(!snapshot.exists());
    assert_eq!(byte_at(&clone, 8 * MIB), 0x33);
    let in_use = exec(&conn, "/disk btrfs subvolume remove [find name=\"pvc-2\"]").await;
    assert!(in_use.stdout.contains("in use"), "{}", in_use.stdout);

    // The subvolumes come back after a restart.
    let before = sim.snapshot();
    sim.shutdown().await;
    let sim = start(dir.path()).await;
    assert_eq!(sim.snapshot(), before);
    sim.shutdown().await;
}

#[tokio::test]
async fn copy_from_gives_a_new_empty_image_whatever_the_source_holds() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    ok(&conn, &create_script("pvc-1", 64 * MIB)).await;
    write_at(&sim.backing_file("storage-pool/pvc-1.img"), 0, 0x5a);
    ok(
        &conn,
        "/disk add copy-from=[find slot=\"pvc-1\"] slot=snap-1 file-path=storage-pool/snap-1.img \
         nvme-tcp-export=no",
    )
    .await;
    let copy = sim.backing_file("storage-pool/snap-1.img");
    assert_eq!(
        fs::metadata(&copy).unwrap().len(),
        64 * MIB,
        "the size is copied"
    );
    assert_eq!(byte_at(&copy, 0), 0, "the data is not");
    sim.shutdown().await;
}

#[tokio::test]
async fn each_method_exists_from_its_version_on() {
    for (version, subvolumes, file_copy) in [
        ("7.17.2", false, false),
        ("7.21.5", true, false),
        ("7.23", true, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.routeros_version = version.parse().unwrap();
        let sim = Simulator::start(config).await.unwrap();
        let conn = connect(&sim).await;
        ok(
            &conn,
            "/disk add type=file slot=pvc-1 file-path=storage-pool/pvc-1.img file-size=64M",
        )
        .await;
        write_at(&sim.backing_file("storage-pool/pvc-1.img"), MIB, 0x77);

        let added = exec(&conn, "/disk btrfs subvolume add fs=storage-pool name=v").await;
        assert_eq!(
            !added.stdout.contains("bad command name"),
            subvolumes,
            "{version}: {}",
            added.stdout
        );
        let copied = exec(
            &conn,
            "/file copy [find name=\"storage-pool/pvc-1.img\"] name=storage-pool/copy.img",
        )
        .await;
        assert_eq!(
            !copied.stdout.contains("bad command name"),
            file_copy,
            "{version}: {}",
            copied.stdout
        );
        let copy = sim.backing_file("storage-pool/copy.img");
        assert_eq!(copy.exists(), file_copy, "{version}");
        if file_copy {
            assert_eq!(byte_at(&copy, MIB), 0x77);
        }
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn a_block_copy_fills_its_destination_whole_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    ok(
        &conn,
        "/disk add type=file slot=pvc-1 file-path=storage-pool/pvc-1.img file-size=64M \
         nvme-tcp-export=yes; /disk add type=file slot=snap-1 \
         file-path=storage-pool/snap-1.img file-size=64M",
    )
    .await;
    let (source, target) = (
        sim.backing_file("storage-pool/pvc-1.img"),
        sim.backing_file("storage-pool/snap-1.img"),
    );
    write_at(&source, 8 * MIB, 0x11);
    // Stale data where the source has a hole must not survive the copy.
    write_at(&target, 40 * MIB, 0x77);

    let out = ok(&conn, "/disk copy src=pvc-1 dst=snap-1").await;
    let statuses: Vec<&str> = out.lines().filter(|l| l.contains("status:")).collect();
    assert!(statuses.len() > 2, "progress as it goes: {out}");
    assert!(
        statuses[0].contains("status: 0 / 64.0MiB (0%)"),
        "{}",
        statuses[0]
    );
    assert!(
        statuses
            .last()
            .unwrap()
            .contains("status: 64.0MiB / 64.0MiB (100%)"),
        "{out}"
    );
    assert_eq!(byte_at(&target, 8 * MIB), 0x11);
    assert_eq!(
        byte_at(&target, 40 * MIB),
        0,
        "the source's hole reads as zeros"
    );

    // A file as the source, too; a destination too small, a missing one, the same disk: refused.
    ok(&conn, "/disk copy src=storage-pool/pvc-1.img dst=snap-1").await;
    ok(
        &conn,
        "/disk add type=file slot=small file-path=storage-pool/small.img file-size=1M",
    )
    .await;
    for (script, why) in [
        ("/disk copy src=pvc-1 dst=small", "too small"),
        ("/disk copy src=pvc-1 dst=nosuch", "no such disk"),
        ("/disk copy src=pvc-1 dst=pvc-1", "same"),
        ("/disk copy src=nosuch dst=snap-1", "no such disk or file"),
        ("/disk copy dst=snap-1", "src"),
    ] {
        let refused = exec(&conn, script).await;
        assert!(refused.stdout.contains(why), "{script}: {}", refused.stdout);
    }

    // A copy cut off half-way (the device went down): the session ends without a reply and
    // the destination holds only the first half.
    write_at(&source, 60 * MIB, 0x33);
    sim.faults().update(|f| f.interrupt_copies = true);
    let cut = exec(&conn, "/disk copy src=pvc-1 dst=snap-1").await;
    assert_ne!(cut.exit_status, Some(0), "{}", cut.stdout);
    sim.faults().update(|f| f.interrupt_copies = false);
    assert_eq!(byte_at(&target, 8 * MIB), 0x11);
    assert_eq!(
        byte_at(&target, 60 * MIB),
        0,
        "the second half was never copied"
    );
    let conn = connect(&sim).await;
    ok(&conn, "/disk copy src=pvc-1 dst=snap-1").await;
    assert_eq!(byte_at(&target, 60 * MIB), 0x33);
}

#[tokio::test]
async fn a_block_copy_runs_while_other_commands_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    ok(
        &conn,
        "/disk add type=file slot=pvc-1 file-path=storage-pool/pvc-1.img file-size=64M; \
         /disk add type=file slot=snap-1 file-path=storage-pool/snap-1.img file-size=64M",
    )
    .await;
    write_at(&sim.backing_file("storage-pool/pvc-1.img"), 60 * MIB, 0x44);
    // Eight steps of 300 ms: a copy that lasts long enough to be watched.
    sim.faults().update(|f| f.slow_copy_ms = 300);
    let copying = tokio::spawn(async move {
        let out = ok(&conn, "/disk copy src=pvc-1 dst=snap-1").await;
        (conn, out)
    });
    let other = connect(&sim).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let listed = ok(&other, ":put [/disk print count-only]").await;
    assert_eq!(listed.trim(), "3", "served while the copy runs");
    assert!(!copying.is_finished(), "the copy is still running");
    let (_conn, out) = copying.await.unwrap();
    assert!(out.contains("status: 64.0MiB / 64.0MiB (100%)"), "{out}");
    assert_eq!(
        byte_at(&sim.backing_file("storage-pool/snap-1.img"), 60 * MIB),
        0x44
    );
}
