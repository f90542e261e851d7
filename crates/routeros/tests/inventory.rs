//! The orphan reconciler's one-round-trip view of the device, over both transports against the
//! simulator: the device clock, every file disk, and the images under the driver's directory
//! at any depth, with ages measured on the device.

mod common;

use std::time::Duration;

use common::{BOTH, Device, created, id_of, spec};
use routeros::{DirPath, DiskSpec, FilePath, Inventory};

/// A disk whose image is at `path`.
fn at(slot: &str, path: &str) -> DiskSpec {
    let mut spec = spec(slot, 1 << 20);
    spec.file_path = FilePath::try_from(path).unwrap();
    spec
}

#[tokio::test]
async fn the_inventory_holds_the_clock_every_file_disk_and_the_images_under_a_directory() {
    let device = Device::start("7.21.5", |_| {}).await;
    for transport in BOTH {
        let client = device.client(transport).await;
        let tag = format!("{transport:?}").to_lowercase();
        let slot = |name: &str| format!("inv-{tag}-{name}");
        let volumes = |path: &str| format!("storage-pool/volumes/{path}");
        let kept = at(&slot("kept"), &volumes(&format!("{}.img", slot("kept"))));
        let kept = created(client.create_file_disk(&kept).await);
        // Deeper under the directory, and a disk whose image stays behind without it.
        let nested = at(
            &slot("nested"),
            &volumes(&format!("deep/{}.img", slot("nested"))),
        );
        created(client.create_file_disk(&nested).await);
        let left = at(&slot("left"), &volumes(&format!("{}.img", slot("left"))));
        let left = created(client.create_file_disk(&left).await);
        client.remove_disk(&id_of(&left), None).await.unwrap();
        // Outside the directory: a disk that is listed, an image that is not.
        let outside = format!("storage-pool/other/{}.img", slot("outside"));
        created(
            client
                .create_file_disk(&at(&slot("outside"), &outside))
                .await,
        );

        let inventory = client
            .inventory(&DirPath::try_from("storage-pool/volumes").unwrap())
            .await
            .unwrap();
        let slots: Vec<&str> = inventory.disks.iter().map(|d| d.slot.as_str()).collect();
        for slot in ["kept", "nested", "outside"] {
            assert!(
                slots.contains(&format!("inv-{tag}-{slot}").as_str()),
                "{transport:?}: {slots:?}"
            );
        }
        assert!(!slots.contains(&format!("inv-{tag}-left").as_str()));
        assert_eq!(inventory.image_users.len(), inventory.disks.len());
        assert!(
            inventory
                .image_users
                .iter()
                .any(|u| u.file_path == kept.file_path)
        );
        let images: Vec<&str> = inventory.images.iter().map(|f| f.name.as_str()).collect();
        for image in [
            format!("storage-pool/volumes/inv-{tag}-kept.img"),
            format!("storage-pool/volumes/deep/inv-{tag}-nested.img"),
            format!("storage-pool/volumes/inv-{tag}-left.img"),
        ] {
            assert!(
                images.contains(&image.as_str()),
                "{transport:?}: {images:?}"
            );
        }
        assert!(
            images
                .iter()
                .all(|name| name.starts_with("storage-pool/volumes/"))
        );
        // Ages are the device's: its clock against the files' times, seconds apart here.
        for image in &inventory.images {
            let modified = Inventory::modified(image).expect("a time the device wrote");
            let age = inventory.clock.since(&modified).unwrap_or_default();
            assert!(age < Duration::from_secs(60), "{}: {age:?}", image.name);
        }
    }
    device.shutdown().await;
}
