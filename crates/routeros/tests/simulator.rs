//! The client against the RDS simulator, over both transports: real SSH and real HTTPS on
//! loopback, a real state model with backing files, and its fault injection.

mod common;

use common::{BOTH, Device, Transport, created, id_of, spec};
use routeros::{
    Client, CreateOutcome, DirPath, DiskItem, Error, FilePath, ImageRemoval, NqnSource, Slot,
};
#[tokio::test]
async fn lifecycle_over_both_transports() {
    let device = Device::start("7.21.5", |_| {}).await;
    for transport in BOTH {
        let client = device.client(transport).await;
        let info = client.system_info().await.unwrap();
        assert_eq!(info.version.to_string(), "7.21.5", "{transport:?}");
        let pool_before = client.pool("storage-pool").await.unwrap();
        assert_eq!(
            (pool_before.size, pool_before.fs.as_str()),
            (64 << 30, "btrfs")
        );

        let name = format!("pvc-{transport:?}").to_lowercase();
        let s = spec(&name, (1 << 30) + 512);
        let disk = created(client.create_file_disk(&s).await);
        assert_eq!(
            disk.file_size,
            (1 << 30) + 512,
            "{transport:?}: exact bytes"
        );
        assert_eq!(disk.nqn_source, NqnSource::ServerNqn);
        assert!(disk.nvme_tcp_export && !disk.mount_filesystem);
        assert_eq!(client.get_disk(&s.slot).await.unwrap().unwrap(), disk);
        assert!(
            client
                .list_disks("pvc-")
                .await
                .unwrap()
                .iter()
                .any(|d| d.slot == name)
        );
        assert!(client.list_disks("nomatch").await.unwrap().is_empty());
        let pool = client.pool("storage-pool").await.unwrap();
        assert!(
            pool_before.free - pool.free < 1 << 20,
            "{transport:?}: a sparse image takes (almost) no space until written"
        );

        let grown = client.grow_disk(&s.slot, 2 << 30).await.unwrap();
        assert_eq!(grown.file_size, 2 << 30);
        let backing = device.sim().backing_file(s.file_path.as_str());
        assert_eq!(
            std::fs::metadata(&backing).unwrap().len(),
            2 << 30,
            "real file grown"
        );

        client.remove_disk(&id_of(&disk), None).await.unwrap();
        assert_eq!(client.get_disk(&s.slot).await.unwrap(), None);
        let file = client
            .get_file(&s.file_path)
            .await
            .unwrap()
            .expect("the image survives /disk remove");
        assert_eq!(file.size, 2 << 30);
        client.remove_file(&s.file_path).await.unwrap();
        client.remove_file(&s.file_path).await.unwrap();
        assert_eq!(client.get_file(&s.file_path).await.unwrap(), None);
        assert!(!backing.exists());
        assert!(
            device
                .sim()
                .snapshot()
                .file_by_name(s.file_path.as_str())
                .is_none()
        );
    }
    device.shutdown().await;
}

#[tokio::test]
async fn a_disk_and_its_image_go_in_one_command_over_both_transports() {
    let device = Device::start("7.21.5", |_| {}).await;
    for transport in BOTH {
        let client = device.client(transport).await;
        let name = format!("gone-{transport:?}").to_lowercase();
        let s = spec(&name, 1 << 20);
        let keep = spec(&format!("{name}-kept"), 1 << 20);
        let disk = created(client.create_file_disk(&s).await);
        let kept = created(client.create_file_disk(&keep).await);
        let backing = device.sim().backing_file(s.file_path.as_str());
        assert!(backing.exists());

        client
            .remove_disk(&id_of(&disk), Some(&s.file_path))
            .await
            .unwrap();
        let state = device.sim().snapshot();
        assert!(
            state.disk_by_slot(s.slot.as_str()).is_none(),
            "{transport:?}"
        );
        assert!(state.file_by_name(s.file_path.as_str()).is_none());
        assert!(!backing.exists());
        assert!(
            state.disk_by_slot(keep.slot.as_str()).is_some(),
            "others stay"
        );
        assert!(state.file_by_name(keep.file_path.as_str()).is_some());
        // An id that is gone is the device's "no such item", and the image is not touched:
        // a retried delete reads the facts again and finds what is left.
        assert!(matches!(
            client
                .remove_disk(&id_of(&disk), Some(&keep.file_path))
                .await,
            Err(Error::NotFound(_))
        ));
        assert!(
            device
                .sim()
                .snapshot()
                .file_by_name(keep.file_path.as_str())
                .is_some()
        );
        client
            .remove_disk(&id_of(&kept), Some(&keep.file_path))
            .await
            .unwrap();

        device.sim().faults().update(|f| {
            f.fail_next = 1;
            f.fail_message = "failure: simulated failure".into();
        });
        let refused = client.remove_disk(&id_of(&disk), Some(&s.file_path)).await;
        assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    }
    device.shutdown().await;
}

#[tokio::test]
async fn an_image_is_removed_only_while_no_disk_uses_a_file_of_its_name() {
    let device = Device::start("7.21.5", |_| {}).await;
    for transport in BOTH {
        let client = device.client(transport).await;
        let name = format!("img-{transport:?}").to_lowercase();
        let s = spec(&name, 1 << 20);
        let disk = created(client.create_file_disk(&s).await);
        assert_eq!(
            client.remove_unused_image(&s.file_path).await.unwrap(),
            ImageRemoval::InUse,
            "{transport:?}: its disk uses it"
        );
        assert!(
            device
                .sim()
                .snapshot()
                .file_by_name(s.file_path.as_str())
                .is_some()
        );
        // A disk elsewhere backed by a file of the same name also keeps it: the check errs on
        // keeping.
        let mut twin = spec(&format!("{name}-twin"), 1 << 20);
        twin.file_path = FilePath::try_from(format!("storage-pool/other/{name}.img")).unwrap();
        let twin_disk = created(client.create_file_disk(&twin).await);
        assert_eq!(
            client
                .remove_disk(&id_of(&disk), Some(&s.file_path))
                .await
                .unwrap(),
            Some(ImageRemoval::InUse)
        );
        assert!(
            device.sim().snapshot().disk_by_slot(&name).is_none(),
            "the disk went"
        );
        assert!(
            device
                .sim()
                .snapshot()
                .file_by_name(s.file_path.as_str())
                .is_some()
        );
        client
            .remove_disk(&id_of(&twin_disk), Some(&twin.file_path))
            .await
            .unwrap();
        assert_eq!(
            client.remove_unused_image(&s.file_path).await.unwrap(),
            ImageRemoval::Removed
        );
        assert!(
            device
                .sim()
                .snapshot()
                .file_by_name(s.file_path.as_str())
                .is_none()
        );
        assert_eq!(
            client.remove_unused_image(&s.file_path).await.unwrap(),
            ImageRemoval::Removed,
            "absent is removed"
        );
    }
    device.shutdown().await;
}

#[tokio::test]
async fn the_guarded_add_never_meets_a_duplicate_or_an_existing_file() {
    let device = Device::start("7.21.5", |_| {}).await;
    for transport in BOTH {
        let client = device.client(transport).await;
        let name = format!("guard-{transport:?}").to_lowercase();
        let first = created(client.create_file_disk(&spec(&name, 1 << 20)).await);
        // The same slot again: nothing added, the holder reported as it is.
        let again = client
            .create_file_disk(&spec(&name, 2 << 20))
            .await
            .unwrap();
        assert_eq!(
            again,
            CreateOutcome::SlotTaken(vec![DiskItem::File(first.clone())]),
            "{transport:?}"
        );
        // Another slot over the same image: nothing added.
        let mut same_file = spec(&format!("{name}-2"), 1 << 20);
        same_file.file_path = FilePath::try_from(format!("storage-pool/{name}.img")).unwrap();
        assert_eq!(
            client.create_file_disk(&same_file).await.unwrap(),
            CreateOutcome::FileExists
        );
        // The pool's own slot is another kind of disk.
        let pool = client.pool("storage-pool").await.unwrap();
        let pool_slot = spec(&pool.slot, 1 << 20);
        let CreateOutcome::SlotTaken(items) = client.create_file_disk(&pool_slot).await.unwrap()
        else {
            panic!("the pool's slot was taken for a new disk")
        };
        assert!(matches!(&items[..], [DiskItem::Other { .. }]), "{items:?}");
    }
    let state = device.sim().snapshot();
    assert_eq!(
        state.file_disks().count(),
        2,
        "one disk per transport, nothing else"
    );
    device.shutdown().await;
}

#[tokio::test]
async fn volume_facts_find_images_anywhere_under_the_base_and_their_users() {
    let device = Device::start("7.21.5", |_| {}).await;
    for transport in BOTH {
        let client = device.client(transport).await;
        let name = format!("facts-{transport:?}").to_lowercase();
        let slot = Slot::try_from(name.as_str()).unwrap();
        let mut nested = spec(&name, 1 << 20);
        nested.file_path = FilePath::try_from(format!("storage-pool/k8s/{name}.img")).unwrap();
        let disk = created(client.create_file_disk(&nested).await);
        let base = DirPath::try_from("storage-pool").unwrap();
        let facts = client.volume_facts(&slot, &base).await.unwrap();
        assert_eq!(facts.slot_items, vec![DiskItem::File(disk.clone())]);
        assert_eq!(
            facts
                .images
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
            [nested.file_path.as_str()]
        );
        assert_eq!(
            facts
                .image_users
                .iter()
                .map(|u| (u.id.as_str(), u.file_path.as_str()))
                .collect::<Vec<_>>(),
            [(disk.id.as_str(), nested.file_path.as_str())]
        );
        // Disk gone, image left: still found, with no user.
        client.remove_disk(&id_of(&disk), None).await.unwrap();
        let facts = client.volume_facts(&slot, &base).await.unwrap();
        assert!(facts.slot_items.is_empty() && facts.image_users.is_empty());
        assert_eq!(facts.images.len(), 1, "{transport:?}");
        // Not under another base.
        let other = DirPath::try_from("storage-pool/vms").unwrap();
        assert!(
            client
                .volume_facts(&slot, &other)
                .await
                .unwrap()
                .images
                .is_empty()
        );
        client.remove_file(&nested.file_path).await.unwrap();
    }
    device.shutdown().await;
}

#[tokio::test]
async fn hostile_comments_arrive_byte_for_byte() {
    let device = Device::start("7.21.5", |_| {}).await;
    let comments = [
        "\";/system reboot;\"",
        "[/disk remove [find]] $x {y} \\ \\\" ; ? #",
        "line one\nline two\r\n\ttabbed",
        "ünïcødé ✓ 日本",
        "  spaces  ",
    ];
    for (transport, i) in BOTH
        .iter()
        .flat_map(|t| (0..comments.len()).map(move |i| (*t, i)))
    {
        let client = device.client(transport).await;
        let slot = format!("c{i}-{transport:?}").to_lowercase();
        let mut s = spec(&slot, 1 << 20);
        s.comment = Some(comments[i].to_owned());
        let disk = created(client.create_file_disk(&s).await);
        assert_eq!(disk.comment.as_deref(), Some(comments[i]), "{transport:?}");
        let stored = device
            .sim()
            .snapshot()
            .disk_by_slot(&slot)
            .unwrap()
            .comment
            .clone();
        assert_eq!(
            stored, comments[i],
            "{transport:?}: the device holds exactly the input"
        );
    }
    assert_eq!(
        device.sim().snapshot().file_disks().count(),
        2 * comments.len(),
        "nothing else ran"
    );
    device.shutdown().await;
}

#[tokio::test]
async fn device_refusals_are_typed_over_both_transports() {
    let device = Device::start("7.21.5", |_| {}).await;
    for transport in BOTH {
        let client = device.client(transport).await;
        let name = format!("dup-{transport:?}").to_lowercase();
        created(client.create_file_disk(&spec(&name, 1 << 20)).await);
        // A sparse pool takes any size while it has room; a full one refuses.
        device.sim().faults().update(|f| f.pool_full = true);
        let err = client
            .create_file_disk(&spec(&format!("big-{name}"), 1 << 40))
            .await
            .unwrap_err();
        device.sim().faults().update(|f| f.pool_full = false);
        assert!(matches!(err, Error::NoSpace(_)), "{transport:?}: {err}");
        let mut outside = spec(&format!("out-{name}"), 1 << 20);
        outside.file_path = FilePath::try_from("elsewhere/x.img").unwrap();
        let err = client.create_file_disk(&outside).await.unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{transport:?}: {err}");
        let err = client
            .grow_disk(&Slot::try_from(name.as_str()).unwrap(), 1 << 10)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Invalid(_)),
            "{transport:?}: shrink: {err}"
        );
        let err = client
            .grow_disk(&Slot::try_from("absent").unwrap(), 1 << 30)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{transport:?}: {err}");
        assert!(matches!(
            client.pool("no-such-pool").await,
            Err(Error::NotFound(_))
        ));
    }
    device.shutdown().await;
}

#[tokio::test]
async fn version_rules_over_both_transports() {
    let old = Device::start("7.20.3", |_| {}).await;
    for transport in BOTH {
        let client = old.client(transport).await;
        let name = format!("old-{transport:?}").to_lowercase();
        let disk = created(client.create_file_disk(&spec(&name, 1 << 20)).await);
        assert_eq!(
            (disk.nqn.as_str(), disk.nqn_source),
            (name.as_str(), NqnSource::SlotName)
        );
    }
    old.shutdown().await;
    let ancient = Device::start("7.16.2", |_| {}).await;
    for transport in BOTH {
        let client = ancient.client(transport).await;
        let err = client
            .create_file_disk(&spec("x", 1 << 20))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{transport:?}: {err}");
    }
    assert_eq!(ancient.sim().snapshot().file_disks().count(), 0);
    ancient.shutdown().await;
}

#[tokio::test]
async fn faults_floats_exit_status_failures_and_dropped_connections() {
    let device = Device::start("7.21.5", |_| {}).await;
    let client = device.client(Transport::Ssh).await;
    device.sim().faults().update(|f| {
        f.float_numbers = true;
        f.exit_status_on_error = true;
    });
    let disk = created(client.create_file_disk(&spec("floaty", 3 << 20)).await);
    assert_eq!(disk.file_size, 3 << 20);
    let err = client
        .grow_disk(&Slot::try_from("floaty").unwrap(), 1 << 20)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(_)),
        "exit status 1 keeps the text: {err}"
    );

    device.sim().faults().update(|f| {
        f.fail_next = 1;
        f.fail_message = "failure: not enough free space on storage-pool".into();
    });
    assert!(matches!(
        client.get_disk(&Slot::try_from("floaty").unwrap()).await,
        Err(Error::NoSpace(_))
    ));

    device.sim().faults().update(|f| f.drop_next = 1);
    let err = client
        .get_disk(&Slot::try_from("floaty").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(
        client
            .get_disk(&Slot::try_from("floaty").unwrap())
            .await
            .unwrap()
            .is_some(),
        "reconnected"
    );
    device.shutdown().await;
}

#[tokio::test]
async fn the_session_cap_holds_with_a_matching_concurrency_limit() {
    let device = Device::start("7.21.5", |c| {
        c.faults.latency_ms = 20;
        c.faults.max_sessions = 16;
    })
    .await;
    for transport in BOTH {
        let mut cfg = device.config(transport);
        cfg.max_concurrency = 16;
        let client = Client::connect(cfg).await.unwrap();
        let name = format!("cap-{transport:?}").to_lowercase();
        // As many commands in flight as the device allows: none may be refused.
        let creates = (0..48).map(|i| {
            let client = client.clone();
            let name = format!("{name}-{i}");
            async move { client.create_file_disk(&spec(&name, 1 << 20)).await }
        });
        for r in futures::future::join_all(creates).await {
            created(r);
        }
        let gets = (0..96).map(|i| {
            let client = client.clone();
            let slot = Slot::try_from(format!("{name}-{}", i % 48)).unwrap();
            async move { client.get_disk(&slot).await }
        });
        for r in futures::future::join_all(gets).await {
            assert!(r.unwrap().is_some());
        }
        assert_eq!(
            device.sim().active_sessions(),
            0,
            "{transport:?}: sessions left open"
        );
    }
    device.shutdown().await;
}
