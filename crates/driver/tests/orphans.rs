//! The controller's orphan reconciler against the simulator (real SSH) and the fake API
//! server (kube-rs unchanged): disks and images of the driver that no PersistentVolume names
//! are reported by metric and event, removed only in delete mode, only past the grace period
//! measured on the device, never while an operation holds the volume, never when a fresh
//! list of the cluster's PersistentVolumes names them, and nothing else is ever touched.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::snapshot_rpcs::{delete_snapshot, snapshot};
use common::{Harness, Options, create_request};
use driver::cluster::{AttachmentIndex, VolumeEvents};
use driver::controller::orphans::{
    EventTarget, OrphanKind, OrphanMetrics, OrphanMode, OrphanPolicy, OrphanReconciler,
};
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube_fake::FakeApiServer;
use serde_json::json;

const DRIVER: &str = "rds.csi.srvlab.io";
const BOUND: Duration = Duration::from_secs(10);
const GIB: u64 = 1 << 30;

fn pv(handle: &str, driver: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pv-{handle}")},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "csi": {"driver": driver, "volumeHandle": handle}},
    }))
    .unwrap()
}

async fn index_of(cluster: &FakeApiServer) -> AttachmentIndex {
    let (index, _task) = AttachmentIndex::spawn(cluster.client(), DRIVER);
    tokio::time::timeout(BOUND, index.ready())
        .await
        .expect("ready in time")
        .expect("running");
    index
}

struct Reconciler {
    reconciler: OrphanReconciler,
    registry: driver::metrics::Registry,
}

impl Reconciler {
    /// The reconciler judging from `watched` (the index) and `listed` (the fresh list).
    async fn new(
        h: &Harness,
        watched: &FakeApiServer,
        listed: &FakeApiServer,
        mode: OrphanMode,
        grace: Duration,
    ) -> Self {
        Self::every(h, watched, listed, mode, grace, Duration::from_secs(600)).await
    }

    async fn every(
        h: &Harness,
        watched: &FakeApiServer,
        listed: &FakeApiServer,
        mode: OrphanMode,
        grace: Duration,
        interval: Duration,
    ) -> Self {
        let mut registry = driver::metrics::Registry::default();
        let metrics = OrphanMetrics::register(&mut registry);
        let policy = OrphanPolicy {
            mode,
            grace,
            interval,
        };
        let events = VolumeEvents::new(listed.client(), DRIVER, "rds-csi-controller", "ctl-0");
        let reconciler = OrphanReconciler::new(
            h.service.clone(),
            index_of(watched).await,
            listed.client(),
            policy,
            metrics,
        )
        .with_events(EventTarget::pod(events, "rds-csi", "ctl-0"));
        Self {
            reconciler,
            registry,
        }
    }

    /// `name{labels} value` lines of the orphan metrics.
    fn figures(&self) -> HashMap<String, String> {
        driver::metrics::render(&self.registry)
            .lines()
            .filter(|l| l.starts_with("rds_csi_controller_orphan"))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// Three volumes made through CSI, one image an interrupted delete left: returns their ids.
async fn arrange(h: &Harness) -> [String; 4] {
    let mut ids = Vec::new();
    for name in ["named", "unnamed", "other-drivers", "half-deleted"] {
        let created = h.create(create_request(name, GIB)).await.unwrap();
        ids.push(created.volume.unwrap().volume_id);
    }
    h.remove_disk_entry(&ids[3]).await;
    ids.try_into().unwrap()
}

#[tokio::test]
async fn orphans_are_reported_and_nothing_changes_in_report_mode() {
    let h = Harness::start().await;
    let [named, unnamed, other, half] = arrange(&h).await;
    // A foreign disk and a foreign file: never findings.
    h.device_exec(&format!(
        "/disk add type=file slot=backup file-path={}/backup.img file-size=1M",
        h.config.volume_base_path
    ))
    .await;
    let cluster = FakeApiServer::new();
    cluster.insert(&pv(&named, DRIVER)).unwrap();
    cluster.insert(&pv(&other, "another.csi.example")).unwrap();
    let before = h.sim.snapshot();

    // A grace of an hour: everything here is seconds old on the device's clock.
    let young = Reconciler::new(
        &h,
        &cluster,
        &cluster,
        OrphanMode::Delete,
        Duration::from_secs(3600),
    )
    .await;
    let sweep = young.reconciler.sweep().await.unwrap();
    let mut found: Vec<(OrphanKind, &str)> = sweep
        .findings
        .iter()
        .map(|f| (f.kind, f.volume_id.as_str()))
        .collect();
    found.sort();
    let mut expected = vec![
        (OrphanKind::Disk, unnamed.as_str()),
        (OrphanKind::Disk, other.as_str()),
        (OrphanKind::Image, half.as_str()),
    ];
    expected.sort();
    assert_eq!(found, expected);
    assert!(
        sweep.orphans.is_empty() && sweep.removed.is_empty(),
        "{sweep:?}"
    );
    assert_eq!(
        young.figures()["rds_csi_controller_orphans{kind=\"disk\"}"],
        "0"
    );

    // Past the grace (zero here), in report mode: reported, not removed.
    let report = Reconciler::new(&h, &cluster, &cluster, OrphanMode::Report, Duration::ZERO).await;
    let sweep = report.reconciler.sweep().await.unwrap();
    assert_eq!(sweep.orphans.len(), 3, "{sweep:?}");
    assert!(sweep.removed.is_empty());
    let figures = report.figures();
    assert_eq!(figures["rds_csi_controller_orphans{kind=\"disk\"}"], "2");
    assert_eq!(figures["rds_csi_controller_orphans{kind=\"image\"}"], "1");
    assert_eq!(
        figures["rds_csi_controller_orphans_removed_total{kind=\"disk\"}"],
        "0"
    );
    assert_eq!(
        h.sim.snapshot().file_disks().count(),
        before.file_disks().count()
    );
    assert_eq!(
        h.sim.snapshot().plain_files().count(),
        before.plain_files().count()
    );

    // One event per orphan on the controller's pod, not one per sweep.
    let events = || cluster.list::<Event>(Some("rds-csi"));
    cluster
        .wait_until(BOUND, || events().len() == 3)
        .await
        .expect("three events");
    report.reconciler.sweep().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let posted = events();
    assert_eq!(posted.len(), 3, "{posted:?}");
    for event in &posted {
        assert_eq!(event.reason.as_deref(), Some("OrphanFound"));
        assert_eq!(
            event.regarding.as_ref().unwrap().name.as_deref(),
            Some("ctl-0")
        );
        assert!(
            event.note.as_deref().unwrap().contains("left in place"),
            "{event:?}"
        );
    }

    for id in [&named, &unnamed, &other] {
        h.delete(id).await.unwrap();
    }
    h.delete(&half).await.unwrap();
    h.device_exec("/disk remove [find where slot=backup]").await;
    h.device_exec(&format!(
        "/file remove [find where name=\"{}/backup.img\"]",
        h.config.volume_base_path
    ))
    .await;
    h.finish().await;
}

#[tokio::test]
async fn delete_mode_removes_the_orphans_and_only_them() {
    let h = Harness::start().await;
    let [named, unnamed, other, half] = arrange(&h).await;
    let cluster = FakeApiServer::new();
    cluster.insert(&pv(&named, DRIVER)).unwrap();
    let reconciler =
        Reconciler::new(&h, &cluster, &cluster, OrphanMode::Delete, Duration::ZERO).await;

    // An operation holds one of them: not judged this round.
    let held = h.service.locks().try_lock(&other).unwrap();
    let sweep = reconciler.reconciler.sweep().await.unwrap();
    let removed: Vec<&str> = sweep.removed.iter().map(|f| f.volume_id.as_str()).collect();
    assert_eq!(removed.len(), 2, "{sweep:?}");
    assert!(removed.contains(&unnamed.as_str()) && removed.contains(&half.as_str()));
    assert_eq!(
        h.leaks(&[named.as_str(), other.as_str()]),
        Vec::<String>::new()
    );
    let figures = reconciler.figures();
    assert_eq!(
        figures["rds_csi_controller_orphans_removed_total{kind=\"disk\"}"],
        "1"
    );
    assert_eq!(
        figures["rds_csi_controller_orphans_removed_total{kind=\"image\"}"],
        "1"
    );

    drop(held);
    let sweep = reconciler.reconciler.sweep().await.unwrap();
    assert_eq!(sweep.removed.len(), 1);
    assert_eq!(sweep.removed[0].volume_id, other);
    assert_eq!(h.leaks(&[named.as_str()]), Vec::<String>::new());
    // The named volume is untouched, and a sweep of a clean device finds nothing.
    let sweep = reconciler.reconciler.sweep().await.unwrap();
    assert!(sweep.findings.is_empty(), "{sweep:?}");

    h.delete(&named).await.unwrap();
    h.finish().await;
}

#[tokio::test]
async fn removal_rests_on_a_fresh_list_and_on_every_attachment_being_known() {
    let h = Harness::start().await;
    let [named, unnamed, other, half] = arrange(&h).await;
    // The watch lags: the index has seen no PV at all, the cluster now has one for `unnamed`.
    let stale = FakeApiServer::new();
    let cluster = FakeApiServer::new();
    cluster.insert(&pv(&unnamed, DRIVER)).unwrap();
    cluster.insert(&pv(&named, DRIVER)).unwrap();
    let lagging = Reconciler::new(&h, &stale, &cluster, OrphanMode::Delete, Duration::ZERO).await;
    let sweep = lagging.reconciler.sweep().await.unwrap();
    let kept: Vec<(&str, &str)> = sweep
        .kept
        .iter()
        .map(|(f, why)| (f.volume_id.as_str(), why.as_str()))
        .collect();
    assert!(
        kept.contains(&(unnamed.as_str(), "a PersistentVolume names it now")),
        "{kept:?}"
    );
    assert!(
        kept.contains(&(named.as_str(), "a PersistentVolume names it now")),
        "{kept:?}"
    );
    assert!(h.sim.snapshot().disk_by_slot(&unnamed).is_some());
    assert!(
        h.sim.snapshot().disk_by_slot(&other).is_none(),
        "the true orphan went"
    );

    // A VolumeAttachment naming a PV the controller cannot see: nothing is removed.
    let unresolved = FakeApiServer::new();
    let attachment: VolumeAttachment = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": {"name": "csi-x"},
        "spec": {"attacher": DRIVER, "nodeName": "node-1", "source": {"persistentVolumeName": "pv-gone"}},
    }))
    .unwrap();
    unresolved.insert(&attachment).unwrap();
    let wary = Reconciler::new(
        &h,
        &unresolved,
        &unresolved,
        OrphanMode::Delete,
        Duration::ZERO,
    )
    .await;
    let sweep = wary.reconciler.sweep().await.unwrap();
    assert!(sweep.removed.is_empty(), "{sweep:?}");
    assert_eq!(sweep.kept.len(), 2, "{sweep:?}");
    assert!(
        sweep.kept.iter().all(|(_, why)| why.contains("csi-x")),
        "{sweep:?}"
    );
    assert!(h.sim.snapshot().disk_by_slot(&unnamed).is_some());

    for id in [&named, &unnamed, &half] {
        h.delete(id).await.unwrap();
    }
    h.finish().await;
}

#[tokio::test]
async fn a_sweep_that_cannot_read_the_device_changes_nothing_and_says_so() {
    let h = Harness::start().await;
    let [named, unnamed, other, half] = arrange(&h).await;
    let cluster = FakeApiServer::new();
    let reconciler =
        Reconciler::new(&h, &cluster, &cluster, OrphanMode::Delete, Duration::ZERO).await;
    let disks = h.sim.snapshot().file_disks().count();
    h.sim.faults().update(|f| f.fail_next = 1);
    let error = reconciler.reconciler.sweep().await.unwrap_err();
    assert!(error.to_string().contains("reading the RDS"), "{error}");
    assert_eq!(h.sim.snapshot().file_disks().count(), disks);
    let figures = reconciler.figures();
    assert_eq!(
        figures
            .get("rds_csi_controller_orphans{kind=\"disk\"}")
            .map(String::as_str),
        Some("0")
    );
    for id in [&named, &unnamed, &other, &half] {
        h.delete(id).await.unwrap();
    }
    h.finish().await;
}

#[tokio::test]
async fn only_the_leader_sweeps_and_a_follower_shows_no_figures() {
    let h = Harness::start().await;
    let [named, unnamed, other, half] = arrange(&h).await;
    let cluster = FakeApiServer::new();
    let Reconciler {
        reconciler,
        registry,
    } = Reconciler::every(
        &h,
        &cluster,
        &cluster,
        OrphanMode::Report,
        Duration::ZERO,
        Duration::from_millis(50),
    )
    .await;
    let figure = |name: &str| -> String {
        driver::metrics::render(&registry)
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    let (leading, following) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(reconciler.run(following));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        figure("rds_csi_controller_orphan_sweeps_total{result=\"ok\"}"),
        ""
    );
    assert_eq!(figure("rds_csi_controller_orphans{kind=\"disk\"}"), "0");

    leading.send_replace(true);
    let started = std::time::Instant::now();
    while figure("rds_csi_controller_orphans{kind=\"disk\"}") != "3" {
        assert!(started.elapsed() < BOUND, "no sweep while leading");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    leading.send_replace(false);
    let started = std::time::Instant::now();
    while figure("rds_csi_controller_orphans{kind=\"disk\"}") != "0" {
        assert!(started.elapsed() < BOUND, "a follower kept its figures");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(leading);
    tokio::time::timeout(BOUND, task)
        .await
        .expect("stops when the election ends")
        .unwrap();
    for id in [&named, &unnamed, &other, &half] {
        h.delete(id).await.unwrap();
    }
    h.finish().await;
}

/// A snapshot copy cut off half-way whose VolumeSnapshot then went (no retry, no
/// DeleteSnapshot): its record still says `copying`. It is an orphan of its own kind, removed
/// in delete mode; a finished snapshot beside it is never a finding.
#[tokio::test]
async fn an_unfinished_snapshot_copy_is_an_orphan_and_a_finished_one_never() {
    const FINISHED: &str = "snapshot-1a2b3c4d-0b7d-4e21-9a55-1d2c3b4a5f60";
    const CUT: &str = "snapshot-5e6f7a8b-0b7d-4e21-9a55-1d2c3b4a5f60";
    // Before 7.23 a flat volume's snapshot is a block copy, which the fault cuts off.
    let h = Harness::with(Options {
        routeros_version: Some("7.21.5"),
        ..Options::default()
    })
    .await;
    let volume = h
        .create(create_request("copied", GIB))
        .await
        .unwrap()
        .volume
        .unwrap()
        .volume_id;
    let finished = snapshot(&h, FINISHED, &volume).await.unwrap();
    h.sim.faults().update(|f| f.interrupt_copies = true);
    assert!(snapshot(&h, CUT, &volume).await.is_err());
    h.sim.faults().update(|f| f.interrupt_copies = false);
    let cut = CUT.replace("snapshot-", "snap-");
    let record = h.sim.snapshot().disk_by_slot(&cut).unwrap().comment.clone();
    assert!(record.ends_with("state=copying"), "{record}");

    let cluster = FakeApiServer::new();
    cluster.insert(&pv(&volume, DRIVER)).unwrap();
    let reconciler =
        Reconciler::new(&h, &cluster, &cluster, OrphanMode::Delete, Duration::ZERO).await;
    let sweep = reconciler.reconciler.sweep().await.unwrap();
    let found: Vec<(OrphanKind, &str)> = sweep
        .findings
        .iter()
        .map(|f| (f.kind, f.volume_id.as_str()))
        .collect();
    assert_eq!(found, [(OrphanKind::UnfinishedSnapshot, cut.as_str())]);
    assert_eq!(sweep.removed.len(), 1, "{sweep:?}");
    assert_eq!(
        reconciler.figures()["rds_csi_controller_orphans_removed_total{kind=\"unfinished-snapshot\"}"],
        "1"
    );
    assert_eq!(
        h.leaks(&[volume.as_str(), finished.snapshot_id.as_str()]),
        Vec::<String>::new(),
        "the record and its image are gone; the volume and the finished snapshot stay"
    );
    assert!(
        reconciler
            .reconciler
            .sweep()
            .await
            .unwrap()
            .findings
            .is_empty()
    );

    delete_snapshot(&h, &finished.snapshot_id).await.unwrap();
    h.delete(&volume).await.unwrap();
    h.finish().await;
}
