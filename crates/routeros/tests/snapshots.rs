//! Subvolumes, their snapshots and `/file copy`, over both transports against the simulator:
//! guarded adds that say what they found, read-backs checked, versions respected.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};

use common::{BOTH, Device, created, spec};
use routeros::{CopyOutcome, Error, FilePath, SubvolumeName, SubvolumeOutcome, SubvolumeRemoval};

fn name(text: &str) -> SubvolumeName {
    SubvolumeName::try_from(text).unwrap()
}

fn write_byte(path: &std::path::Path, offset: u64, byte: u8) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&[byte; 4096]).unwrap();
}

fn read_byte(path: &std::path::Path, offset: u64) -> u8 {
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = [0];
    file.read_exact(&mut buf).unwrap();
    buf[0]
}

#[tokio::test]
async fn subvolumes_snapshot_and_go_over_both_transports() {
    let device = Device::start("7.21.5", |_| {}).await;
    for transport in BOTH {
        let client = device.client(transport).await;
        let tag = format!("{transport:?}").to_lowercase();
        let volume = name(&format!("vol-{tag}"));
        let snap = name(&format!("snap-{tag}"));

        let made = client
            .create_subvolume("storage-pool", &volume)
            .await
            .unwrap();
        let SubvolumeOutcome::Created(item) = made else {
            panic!("{made:?}");
        };
        assert_eq!((item.parent, item.read_only), (None, false));
        // The same request again finds it and adds nothing.
        let again = client
            .create_subvolume("storage-pool", &volume)
            .await
            .unwrap();
        assert!(matches!(again, SubvolumeOutcome::Exists(_)), "{again:?}");

        let mut disk = spec(&format!("vol-{tag}"), 1 << 20);
        disk.file_path = FilePath::try_from(format!("storage-pool/{volume}/{volume}.img")).unwrap();
        created(client.create_file_disk(&disk).await);
        let image = device.sim().backing_file(disk.file_path.as_str());
        write_byte(&image, 8192, 0x42);

        let taken = client
            .snapshot_subvolume("storage-pool", &volume, &snap, true)
            .await
            .unwrap();
        let SubvolumeOutcome::Created(item) = taken else {
            panic!("{taken:?}");
        };
        assert_eq!(item.parent.as_deref(), Some(volume.as_str()));
        assert!(item.read_only);
        write_byte(&image, 8192, 0x43);
        let copy = device
            .sim()
            .backing_file(&format!("storage-pool/{snap}/{volume}.img"));
        assert_eq!(read_byte(&copy, 8192), 0x42, "the data of its moment");

        let listed = client.subvolumes().await.unwrap();
        assert!(
            listed
                .iter()
                .any(|s| s.name == snap.as_str() && s.read_only)
        );

        client.remove_subvolume(&snap).await.unwrap();
        client.remove_subvolume(&snap).await.unwrap();
        assert!(!copy.exists());
        // In use by the volume's disk: refused, with the device's words; the guarded
        // removal finds the disk itself and leaves everything.
        let refused = client.remove_subvolume(&volume).await.unwrap_err();
        assert!(refused.to_string().contains("in use"), "{refused}");
        let guarded = client
            .remove_unused_subvolume("storage-pool", &volume)
            .await
            .unwrap();
        assert_eq!(guarded, SubvolumeRemoval::InUse);
        assert!(image.exists());
        let disk_id = routeros::ItemId::try_from(
            client
                .get_disk(&disk.slot)
                .await
                .unwrap()
                .unwrap()
                .id
                .as_str(),
        )
        .unwrap();
        client.remove_disk(&disk_id, None).await.unwrap();
        let removed = client
            .remove_unused_subvolume("storage-pool", &volume)
            .await
            .unwrap();
        assert_eq!(removed, SubvolumeRemoval::Gone);
        assert!(!image.exists(), "the subvolume went with its image");
        let again = client
            .remove_unused_subvolume("storage-pool", &volume)
            .await
            .unwrap();
        assert_eq!(again, SubvolumeRemoval::Gone);
    }
    device.shutdown().await;
}

#[tokio::test]
async fn file_copy_is_guarded_and_needs_its_version() {
    let device = Device::start("7.23", |_| {}).await;
    for transport in BOTH {
        let client = device.client(transport).await;
        let tag = format!("{transport:?}").to_lowercase();
        let source = created(
            client
                .create_file_disk(&spec(&format!("src-{tag}"), 1 << 20))
                .await,
        );
        let from = FilePath::try_from(source.file_path.as_str()).unwrap();
        write_byte(&device.sim().backing_file(from.as_str()), 0, 0x24);
        let to = FilePath::try_from(format!("storage-pool/copy-{tag}.img")).unwrap();
        let copied = client.copy_file(&from, &to).await.unwrap();
        assert!(
            matches!(copied, CopyOutcome::Copied(ref f) if f.size == 1 << 20),
            "{copied:?}"
        );
        assert_eq!(read_byte(&device.sim().backing_file(to.as_str()), 0), 0x24);
        let again = client.copy_file(&from, &to).await.unwrap();
        assert!(matches!(again, CopyOutcome::TargetExists(_)), "{again:?}");
    }
    device.shutdown().await;

    // Before their versions, nothing is sent and the caller learns why.
    let old = Device::start("7.17.2", |_| {}).await;
    let client = old.client(common::Transport::Ssh).await;
    let no_subvolumes = client.subvolumes().await.unwrap_err();
    assert!(
        matches!(no_subvolumes, Error::Unsupported(_)),
        "{no_subvolumes}"
    );
    let from = FilePath::try_from("storage-pool/a.img").unwrap();
    let no_copy = client.copy_file(&from, &from).await.unwrap_err();
    assert!(matches!(no_copy, Error::Unsupported(_)), "{no_copy}");
    old.shutdown().await;
}
