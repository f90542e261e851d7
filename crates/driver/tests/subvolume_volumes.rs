//! Volumes in a btrfs subvolume of their own (StorageClass `snapshotMethod: subvolume`), the
//! layout subvolume snapshots need: created with their subvolume, deleted with it, each step
//! completed by the retry after an interruption, nothing removed that a disk still uses.

mod common;

use common::*;
use tonic::Code;

const METHOD: (&str, &str) = ("snapshotMethod", "subvolume");

fn in_subvolume(name: &str) -> csi::v1::CreateVolumeRequest {
    with_params(create_request(name, GIB), &[METHOD])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_lives_and_goes_with_its_subvolume() {
    let h = Harness::start().await;
    let volume = h.create(in_subvolume(PVC)).await.unwrap().volume.unwrap();
    assert_eq!(volume.volume_id, PVC);
    let state = h.sim.snapshot();
    let disk = state.disk_by_slot(PVC).unwrap();
    let image = format!("storage-pool/{PVC}/{PVC}.img");
    assert!(
        matches!(&disk.kind, rds_sim::DiskKind::File { path, .. } if *path == image),
        "{:?}",
        disk.kind
    );
    assert_eq!(state.subvolumes.len(), 1);
    assert_eq!(state.subvolumes[0].name, PVC);
    assert!(!state.subvolumes[0].read_only);

    // The same request again is the same volume; another method for the name is not.
    let again = h.create(in_subvolume(PVC)).await.unwrap().volume.unwrap();
    assert_eq!(again.volume_id, PVC);
    let flat = expect_code(
        h.create(create_request(PVC, GIB)).await,
        Code::AlreadyExists,
    );
    assert!(flat.contains(PVC), "{flat}");

    h.delete(PVC).await.unwrap();
    let state = h.sim.snapshot();
    assert!(state.disk_by_slot(PVC).is_none());
    assert!(state.file_by_name(&image).is_none());
    assert!(state.subvolumes.is_empty(), "{:?}", state.subvolumes);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_creates_and_deletes_are_completed_by_the_retry() {
    let h = Harness::start().await;
    // A create cut short after its subvolume: the retry makes the disk in it.
    h.device_exec(&format!(
        "/disk btrfs subvolume add fs=storage-pool name={PVC}"
    ))
    .await;
    h.create(in_subvolume(PVC)).await.unwrap();
    assert!(h.sim.snapshot().disk_by_slot(PVC).is_some());

    // A delete cut short after the disk: the retry removes the image and the subvolume.
    h.remove_disk_entry(PVC).await;
    h.delete(PVC).await.unwrap();
    let state = h.sim.snapshot();
    assert!(state.subvolumes.is_empty(), "{:?}", state.subvolumes);
    assert_eq!(state.plain_files().count(), 0);

    // A delete cut short after the disk and its image: the subvolume alone goes.
    h.create(in_subvolume(PVC)).await.unwrap();
    h.device_exec(&format!(
        "/disk remove [find where slot=\"{PVC}\"]; /file remove [find where \
         name=\"storage-pool/{PVC}/{PVC}.img\"]"
    ))
    .await;
    h.delete(PVC).await.unwrap();
    assert!(h.sim.snapshot().subvolumes.is_empty());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subvolume_another_disk_uses_is_kept() {
    let h = Harness::start().await;
    h.create(in_subvolume(PVC)).await.unwrap();
    // Someone puts a disk of their own over a file in the volume's subvolume.
    let other = routeros::DiskSpec {
        slot: routeros::Slot::try_from("someone-else").unwrap(),
        file_path: routeros::FilePath::try_from(format!("storage-pool/{PVC}/theirs.img")).unwrap(),
        size: MIB,
        port: 4420,
        nqn: routeros::Nqn::try_from("nqn.2000-02.com.mikrotik:someone-else").unwrap(),
        comment: None,
    };
    h.add_disk_raw(&other).await;
    h.delete(PVC).await.unwrap();
    let state = h.sim.snapshot();
    assert!(state.disk_by_slot(PVC).is_none(), "the volume is gone");
    assert_eq!(
        state.subvolumes.len(),
        1,
        "its subvolume stays while in use"
    );
    assert!(
        state
            .file_by_name(&format!("storage-pool/{PVC}/theirs.img"))
            .is_some()
    );
    h.finish_keeping(&["someone-else"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_method_is_refused_where_it_cannot_apply() {
    let h = Harness::start().await;
    for (params, why) in [
        (
            vec![METHOD, ("volumePath", "storage-pool/fast")],
            "volumePath",
        ),
        (vec![("snapshotMethod", "copy-from")], "one of"),
        (vec![("snapshotMethod", "Auto")], "one of"),
        (vec![("snapshotMethod", "")], "one of"),
    ] {
        let request = with_params(create_request(PVC, GIB), &params);
        let message = expect_code(h.create(request).await, Code::InvalidArgument);
        assert!(message.contains(why), "{params:?}: {message}");
    }
    h.finish().await;

    let deeper = Harness::with(Options {
        configure: |c| c.volume_base_path = "storage-pool/k8s".into(),
        ..Options::default()
    })
    .await;
    let message = expect_code(
        deeper.create(in_subvolume(PVC)).await,
        Code::InvalidArgument,
    );
    assert!(message.contains("base path"), "{message}");
    assert!(deeper.sim.snapshot().subvolumes.is_empty());
    deeper.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_uses_a_subvolume_where_the_device_and_the_settings_allow_it() {
    const AUTO: (&str, &str) = ("snapshotMethod", "auto");
    let h = Harness::start().await;
    let volume = h
        .create(with_params(create_request(PVC, GIB), &[AUTO]))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(
        volume.volume_context["volumePath"],
        format!("storage-pool/{PVC}")
    );
    assert_eq!(h.sim.snapshot().subvolumes.len(), 1);
    // The same request again is the same volume.
    h.create(with_params(create_request(PVC, GIB), &[AUTO]))
        .await
        .unwrap();
    // With a volumePath it cannot: a flat image, no refusal.
    let other = "pvc-11111111-2222-4333-8444-555555555555";
    let flat = h
        .create(with_params(
            create_request(other, GIB),
            &[AUTO, ("volumePath", "storage-pool/fast")],
        ))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(flat.volume_context["volumePath"], "storage-pool/fast");
    assert_eq!(h.sim.snapshot().subvolumes.len(), 1);
    h.delete(PVC).await.unwrap();
    h.delete(other).await.unwrap();
    h.finish().await;

    // Below the pool's root: flat.
    let deeper = Harness::with(Options {
        configure: |c| c.volume_base_path = "storage-pool/k8s".into(),
        ..Options::default()
    })
    .await;
    let volume = deeper
        .create(with_params(create_request(PVC, GIB), &[AUTO]))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(volume.volume_context["volumePath"], "storage-pool/k8s");
    assert!(deeper.sim.snapshot().subvolumes.is_empty());
    deeper.delete(PVC).await.unwrap();
    deeper.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subvolumes_are_made_on_the_filesystem_the_settings_name() {
    // A label the device does not have: refused by the device (in whatever words), nothing
    // made.
    let h = Harness::with(Options {
        configure: |c| c.btrfs_filesystem = Some("not-the-pool".into()),
        ..Options::default()
    })
    .await;
    h.create(in_subvolume(PVC)).await.unwrap_err();
    let state = h.sim.snapshot();
    assert!(state.subvolumes.is_empty() && state.disk_by_slot(PVC).is_none());
    h.finish().await;

    // The pool's own label, named explicitly.
    let h = Harness::with(Options {
        configure: |c| c.btrfs_filesystem = Some("storage-pool".into()),
        ..Options::default()
    })
    .await;
    h.create(in_subvolume(PVC)).await.unwrap();
    assert_eq!(h.sim.snapshot().subvolumes.len(), 1);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}
