//! Namespace identifiers: the same for a disk across restarts, grows and re-exports (so a
//! device restart is invisible to hosts), new for a new disk, and new at every export with
//! the `fresh-namespace-ids` quirk. Checked through the export record and an nvmet tree.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use rds_sim::{ExportRecord, NamespaceIds, NvmetMode, Quirk, SimConfig, SimHandle};

fn record(sim: &SimHandle, slot: &str) -> ExportRecord {
    sim.export_records()
        .into_iter()
        .find(|e| e.slot == slot)
        .unwrap_or_else(|| panic!("{slot} is not in the export record"))
}

fn ids(sim: &SimHandle, slot: &str) -> NamespaceIds {
    let record = record(sim, slot);
    NamespaceIds {
        uuid: record.uuid,
        nguid: record.nguid,
    }
}

/// A simulator exporting into a plain directory laid out like nvmet's configfs tree.
fn nvmet_config(dir: &Path) -> SimConfig {
    let root = dir.join("nvmet");
    fs::create_dir_all(root.join("subsystems")).unwrap();
    fs::create_dir_all(root.join("ports")).unwrap();
    let mut config = config(dir);
    config.nvmet = NvmetMode::On;
    config.nvmet_root = root;
    config.nvme_listen = "127.0.0.1:4420".parse().unwrap();
    config
}

/// The identifiers nvmet was given for `slot`'s namespace.
fn nvmet_ids(config: &SimConfig, slot: &str) -> (String, String) {
    let ns = config.nvmet_root.join(format!(
        "subsystems/nqn.2000-02.com.mikrotik:{slot}/namespaces/1"
    ));
    let read = |name: &str| fs::read_to_string(ns.join(name)).unwrap();
    (read("device_uuid"), read("device_nguid"))
}

async fn restart(sim: SimHandle, config: &SimConfig) -> SimHandle {
    sim.shutdown().await;
    rds_sim::Simulator::start(config.clone()).await.unwrap()
}

#[tokio::test]
async fn identifiers_stay_with_the_disk_across_restarts_grows_and_reexports() {
    let dir = tempfile::tempdir().unwrap();
    let config = nvmet_config(dir.path());
    let sim = rds_sim::Simulator::start(config.clone()).await.unwrap();
    let conn = connect(&sim).await;
    exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    exec(&conn, &create_script("pvc-2", 1 << 20)).await;
    let first = ids(&sim, "pvc-1");
    let second = ids(&sim, "pvc-2");
    assert_ne!(first.uuid, second.uuid, "disks differ");
    assert_ne!(first.nguid, second.nguid, "disks differ");
    assert_eq!(
        nvmet_ids(&config, "pvc-1"),
        (first.uuid.to_string(), first.nguid.to_string()),
        "nvmet serves what the record says"
    );

    let sim = restart(sim, &config).await;
    assert_eq!(ids(&sim, "pvc-1"), first, "restart");
    assert_eq!(ids(&sim, "pvc-2"), second, "restart");
    assert_eq!(
        nvmet_ids(&config, "pvc-1"),
        (first.uuid.to_string(), first.nguid.to_string()),
        "re-created after the restart with the same identifiers"
    );

    let conn = connect(&sim).await;
    exec(&conn, "/disk set pvc-1 file-size=2M").await;
    assert_eq!(ids(&sim, "pvc-1"), first, "grow");
    exec(&conn, "/disk set pvc-1 nvme-tcp-export=no").await;
    exec(&conn, "/disk set pvc-1 nvme-tcp-export=yes").await;
    assert_eq!(ids(&sim, "pvc-1"), first, "re-export");
    assert_eq!(nvmet_ids(&config, "pvc-1").0, first.uuid.to_string());

    // The same slot and even the same image, but another disk: a host must not take it
    // for the old namespace.
    exec(&conn, "/disk remove pvc-1").await;
    exec(
        &conn,
        "/disk add type=file slot=\"pvc-1\" file-path=\"storage-pool/pvc-1.img\" \
         mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 \
         nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\"",
    )
    .await;
    let again = ids(&sim, "pvc-1");
    assert_ne!(again.uuid, first.uuid, "re-added disk");
    assert_ne!(again.nguid, first.nguid, "re-added disk");
    assert_eq!(nvmet_ids(&config, "pvc-1").0, again.uuid.to_string());
    let sim = restart(sim, &config).await;
    assert_eq!(ids(&sim, "pvc-1"), again);
    assert_eq!(ids(&sim, "pvc-2"), second);
    sim.shutdown().await;
}

#[tokio::test]
async fn fresh_namespace_ids_change_at_every_start_and_reexport() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = nvmet_config(dir.path());
    config.faults.quirks.insert(Quirk::FreshNamespaceIds);
    let sim = rds_sim::Simulator::start(config.clone()).await.unwrap();
    let conn = connect(&sim).await;
    exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    let mut seen = vec![ids(&sim, "pvc-1")];

    exec(&conn, "/disk set pvc-1 file-size=2M").await;
    assert_eq!(ids(&sim, "pvc-1"), seen[0], "a grow keeps the export");

    exec(&conn, "/disk set pvc-1 nvme-tcp-export=no").await;
    exec(&conn, "/disk set pvc-1 nvme-tcp-export=yes").await;
    seen.push(ids(&sim, "pvc-1"));

    let mut sim = sim;
    for _ in 0..2 {
        sim = restart(sim, &config).await;
        seen.push(ids(&sim, "pvc-1"));
        let latest = seen.last().unwrap();
        assert_eq!(
            nvmet_ids(&config, "pvc-1"),
            (latest.uuid.to_string(), latest.nguid.to_string()),
            "nvmet serves what the record says"
        );
    }
    for (i, a) in seen.iter().enumerate() {
        for b in &seen[i + 1..] {
            assert_ne!(a.uuid, b.uuid, "{seen:?}");
            assert_ne!(a.nguid, b.nguid, "{seen:?}");
        }
    }

    // Without the quirk the identifiers last drawn are kept from then on.
    config.faults.quirks.remove(Quirk::FreshNamespaceIds);
    let sim = restart(sim, &config).await;
    assert_eq!(&ids(&sim, "pvc-1"), seen.last().unwrap());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_state_saved_without_identifiers_gets_them_once_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    sim.shutdown().await;

    // The state file as a simulator before identifiers wrote it.
    let state_file = dir.path().join("data/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&fs::read(&state_file).unwrap()).unwrap();
    for disk in state["disks"].as_array_mut().unwrap() {
        assert!(disk.as_object_mut().unwrap().remove("namespace").is_some());
    }
    fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();

    let sim = start(dir.path()).await;
    let given = ids(&sim, "pvc-1");
    let sim = restart(sim, &config(dir.path())).await;
    assert_eq!(ids(&sim, "pvc-1"), given, "saved at the first start");
    sim.shutdown().await;
}
