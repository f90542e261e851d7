//! State survives a restart; nvmet exports follow the device's life.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use rds_sim::{NvmetMode, Simulator};

#[tokio::test]
async fn a_restart_keeps_state_keys_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let (fingerprint, cert) = (sim.host_key_fingerprint(), sim.certificate_fingerprint());
    let conn = connect(&sim).await;
    exec(&conn, &create_script("pvc-1", 1 << 30)).await;
    exec(&conn, &create_script("pvc-2", 1 << 30)).await;
    exec(&conn, "/disk remove [find slot=\"pvc-2\"]").await;
    let before = sim.snapshot();

    // Only one simulator per data directory.
    let err = Simulator::start(config(dir.path())).await.unwrap_err();
    assert!(
        err.to_string().contains("in use by another simulator"),
        "{err}"
    );
    sim.shutdown().await;

    let sim = start(dir.path()).await;
    assert_eq!(sim.host_key_fingerprint(), fingerprint);
    assert_eq!(sim.certificate_fingerprint(), cert);
    assert_eq!(sim.snapshot(), before);
    assert!(
        sim.backing_file("storage-pool/pvc-2.img").exists(),
        "kept image survives"
    );

    // Ids keep increasing: the removed disk's id is not handed out again.
    let conn = connect(&sim).await;
    let created = exec(&conn, &create_script("pvc-3", 1 << 20)).await;
    let id = json_values(&created.stdout)[0][0][".id"]
        .as_str()
        .unwrap()
        .to_string();
    // pool *1, pvc-1 *2, pvc-2 *3 (removed): *3 is not handed out again.
    assert_eq!(id, "*4");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_different_pool_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    start(dir.path()).await.shutdown().await;
    let mut config = config(dir.path());
    config.pool = "other".into();
    let err = Simulator::start(config).await.unwrap_err();
    assert!(
        err.to_string().contains("holds pool \"storage-pool\""),
        "{err}"
    );
}

fn nvmet_tree(root: &Path) {
    fs::create_dir_all(root.join("subsystems")).unwrap();
    fs::create_dir_all(root.join("ports")).unwrap();
}

#[tokio::test]
async fn nvmet_exports_follow_add_grow_remove_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nvmet");
    nvmet_tree(&root);
    let mut config = config(dir.path());
    config.nvmet = NvmetMode::On;
    config.nvmet_root = root.clone();
    config.nvme_listen = "127.0.0.1:4420".parse().unwrap();
    let sim = Simulator::start(config.clone()).await.unwrap();
    assert!(sim.nvmet_enabled());
    let conn = connect(&sim).await;
    exec(&conn, &create_script("pvc-1", 1 << 20)).await;

    let subsystem = root.join("subsystems/nqn.2000-02.com.mikrotik:pvc-1");
    let backing = sim.backing_file("storage-pool/pvc-1.img");
    assert_eq!(
        fs::read_to_string(subsystem.join("namespaces/1/device_path")).unwrap(),
        backing.to_string_lossy()
    );
    assert_eq!(
        fs::read_to_string(root.join("ports/4420/addr_traddr")).unwrap(),
        "127.0.0.1"
    );
    assert!(
        root.join("ports/4420/subsystems/nqn.2000-02.com.mikrotik:pvc-1")
            .is_symlink()
    );
    let exports = sim.export_records();
    assert!(exports[0].nvmet);
    assert_eq!(exports[0].backing_file, backing);

    exec(&conn, "/disk set pvc-1 file-size=2M").await;
    assert_eq!(
        fs::read_to_string(subsystem.join("namespaces/1/revalidate_size")).unwrap(),
        "1"
    );

    // A device restart: exports go away with it and come back.
    sim.shutdown().await;
    assert!(!subsystem.exists());
    let sim = Simulator::start(config).await.unwrap();
    assert!(subsystem.join("namespaces/1/enable").exists());

    let conn = connect(&sim).await;
    exec(&conn, "/disk set pvc-1 nvme-tcp-export=no").await;
    assert!(!subsystem.exists());
    assert!(!root.join("ports/4420").exists());
    exec(&conn, "/disk set pvc-1 nvme-tcp-export=yes").await;
    assert!(subsystem.exists());
    exec(&conn, "/disk remove pvc-1").await;
    assert!(!subsystem.exists());
    assert!(sim.export_records().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn nvmet_on_without_configfs_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.nvmet = NvmetMode::On;
    config.nvmet_root = dir.path().join("missing");
    let err = Simulator::start(config.clone()).await.unwrap_err();
    assert!(err.to_string().contains("--nvmet on"), "{err}");
    config.nvmet = NvmetMode::Auto;
    let sim = Simulator::start(config).await.unwrap();
    assert!(!sim.nvmet_enabled());
    sim.shutdown().await;
}
