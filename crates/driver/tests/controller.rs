//! Conformance of the Identity and Controller services: the test acts as the CO over a real
//! Unix socket; the controller talks to the simulator over real SSH (REST in `rest.rs`).
//! Every call that must be idempotent is repeated; every test ends with a leak check.

mod common;

use std::time::Duration;

use common::*;
use csi::v1::controller_service_capability::Type as CapabilityType;
use csi::v1::controller_service_capability::rpc::Type as Rpc;
use csi::v1::plugin_capability::{self, service, volume_expansion};
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::{
    CapacityRange, ControllerExpandVolumeRequest, ControllerGetCapabilitiesRequest,
    ControllerGetVolumeRequest, ControllerModifyVolumeRequest, GetCapacityRequest,
    GetPluginCapabilitiesRequest, GetPluginInfoRequest, ListVolumesRequest, ProbeRequest,
    ValidateVolumeCapabilitiesRequest, VolumeContentSource, volume_content_source,
};
use driver::naming::VolumeComment;
use rds_sim::Faults;
use routeros::{DiskSpec, FilePath, Nqn, Slot};
use tonic::Code;

fn go_style_spec(id: &str, dir: &str, size: u64) -> DiskSpec {
    DiskSpec {
        slot: Slot::try_from(id).unwrap(),
        file_path: FilePath::try_from(format!("{dir}/{id}.img")).unwrap(),
        size,
        port: 4420,
        nqn: Nqn::try_from(format!("nqn.2000-02.com.mikrotik:{id}")).unwrap(),
        comment: None,
    }
}

fn hashed_id(name: &str) -> String {
    driver::naming::volume_id_for_name(name)
}

// ---------------------------------------------------------------------------------------
// Identity

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_reports_name_capabilities_and_readiness() {
    let h = Harness::start().await;
    let mut identity = h.identity.clone();
    for _ in 0..2 {
        let info = identity
            .get_plugin_info(timed(GetPluginInfoRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, "rds.csi.srvlab.io");
        assert!(!info.vendor_version.is_empty());
    }
    let caps = identity
        .get_plugin_capabilities(timed(GetPluginCapabilitiesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert_eq!(caps.len(), 2);
    assert!(caps.iter().any(|c| matches!(
        &c.r#type,
        Some(plugin_capability::Type::Service(s)) if s.r#type == service::Type::ControllerService as i32
    )));
    assert!(caps.iter().any(|c| matches!(
        &c.r#type,
        Some(plugin_capability::Type::VolumeExpansion(e)) if e.r#type == volume_expansion::Type::Online as i32
    )));
    let probe = identity
        .probe(timed(ProbeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_20_concurrent_probes_share_one_device_session() {
    // The device allows a single session and answers slowly: probes that each opened their
    // own session would be refused; shared, they all see the RDS as ready.
    let h = Harness::with(Options {
        faults: Faults {
            max_sessions: 1,
            latency_ms: 50,
            ..Faults::default()
        },
        ..Options::default()
    })
    .await;
    let probes = (0..20).map(|_| {
        let mut identity = h.identity.clone();
        async move { identity.probe(timed(ProbeRequest {})).await }
    });
    for outcome in futures::future::join_all(probes).await {
        assert_eq!(outcome.unwrap().into_inner().ready, Some(true));
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_is_not_ready_while_the_rds_does_not_answer() {
    let h = Harness::with(Options {
        configure: |c| c.cache_ttl = Duration::ZERO,
        ..Options::default()
    })
    .await;
    let mut identity = h.identity.clone();
    h.sim.faults().update(|f| f.drop_next = 1000);
    let probe = identity
        .probe(timed(ProbeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(false));
    h.sim.faults().update(|f| f.drop_next = 0);
    let probe = identity
        .probe(timed(ProbeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_unavailable_with_a_clear_message() {
    let h = Harness::start().await;
    // A second controller with a wrong password, against the same device.
    let mut bad = client_config(&h.sim, Transport::Ssh, "wrong-password");
    bad.command_timeout = Duration::from_secs(5);
    let config = driver::ControllerConfig::new("192.0.2.10")
        .validate()
        .unwrap();
    let service = std::sync::Arc::new(driver::controller::ControllerService::new(
        routeros::Client::new(bad).unwrap(),
        config,
    ));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bad.sock");
    let listener = driver::server::bind(&driver::server::Endpoint::Unix(socket.clone()))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(driver::controller::routes(service), async {
        let _ = stopped.await;
    }));
    let channel = unix_channel(&socket).await;
    let mut controller = csi::v1::controller_client::ControllerClient::new(channel.clone());
    let message = expect_code(
        controller
            .create_volume(timed(create_request(PVC, GIB)))
            .await,
        Code::Unavailable,
    );
    assert!(message.contains("operator must fix"), "{message}");
    assert!(
        !message.contains("wrong-password"),
        "the password never shows: {message}"
    );
    let mut identity = csi::v1::identity_client::IdentityClient::new(channel);
    expect_code(
        identity.probe(timed(ProbeRequest {})).await,
        Code::Unavailable,
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    h.finish().await;
}

// ---------------------------------------------------------------------------------------
// Capabilities

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_capabilities_are_exactly_what_is_implemented() {
    let h = Harness::start().await;
    let caps = h
        .controller
        .clone()
        .controller_get_capabilities(timed(ControllerGetCapabilitiesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let mut rpcs: Vec<i32> = caps
        .iter()
        .map(|c| match &c.r#type {
            Some(CapabilityType::Rpc(rpc)) => rpc.r#type,
            None => panic!("empty capability"),
        })
        .collect();
    rpcs.sort();
    let mut expected: Vec<i32> = [
        Rpc::CreateDeleteVolume,
        Rpc::CreateDeleteSnapshot,
        Rpc::ListSnapshots,
        Rpc::CloneVolume,
        Rpc::PublishUnpublishVolume,
        Rpc::ListVolumes,
        Rpc::GetCapacity,
        Rpc::ExpandVolume,
        Rpc::GetVolume,
        Rpc::VolumeCondition,
        Rpc::SingleNodeMultiWriter,
    ]
    .iter()
    .map(|r| *r as i32)
    .collect();
    expected.sort();
    assert_eq!(rpcs, expected);
    // What is not advertised is not implemented.
    let mut controller = h.controller.clone();
    expect_code(
        controller
            .controller_modify_volume(timed(ControllerModifyVolumeRequest {
                volume_id: PVC.into(),
                ..Default::default()
            }))
            .await,
        Code::Unimplemented,
    );
    h.finish().await;
}

// ---------------------------------------------------------------------------------------
// CreateVolume / DeleteVolume

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_delete_a_pvc_volume_idempotently() {
    let h = Harness::start().await;
    let request = create_request(PVC, GIB + 1);
    let first = h.create(request.clone()).await.unwrap().volume.unwrap();
    assert_eq!(first.volume_id, PVC, "pvc names are used verbatim");
    assert_eq!(
        first.capacity_bytes,
        (GIB + MIB) as i64,
        "rounded up to 1 MiB"
    );
    let ctx = &first.volume_context;
    assert_eq!(ctx["nqn"], format!("nqn.2000-02.com.mikrotik:{PVC}"));
    assert_eq!(ctx["nvmeAddress"], "192.0.2.10");
    assert_eq!(ctx["nvmePort"], "4420");
    assert_eq!(ctx["volumePath"], "storage-pool");

    let state = h.sim.snapshot();
    let disk = state.disk_by_slot(PVC).expect("disk created");
    assert!(disk.nvme_tcp_export && !disk.mount_filesystem);
    assert_eq!(disk.nvme_tcp_server_nqn, ctx["nqn"]);
    let comment = VolumeComment::parse(&disk.comment).expect("our comment");
    assert_eq!(comment.name, PVC);
    let file = state
        .file_by_name(&format!("storage-pool/{PVC}.img"))
        .expect("image");
    assert_eq!(file.size, GIB + MIB, "exact bytes on the device");

    // Repeating the request returns the same volume and creates nothing new.
    let again = h.create(request).await.unwrap().volume.unwrap();
    assert_eq!(again, first);
    assert_eq!(h.sim.snapshot().file_disks().count(), 1);

    h.delete(PVC).await.unwrap();
    assert!(h.sim.snapshot().disk_by_slot(PVC).is_none());
    assert!(
        h.sim.snapshot().plain_files().next().is_none(),
        "the image went too"
    );
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_name_with_an_incompatible_request_is_already_exists() {
    let h = Harness::start().await;
    let base = create_request(PVC, GIB);
    h.create(base.clone()).await.unwrap();

    // A range the existing size satisfies is the same volume.
    let mut wider = base.clone();
    wider.capacity_range = Some(CapacityRange {
        required_bytes: (GIB / 2) as i64,
        limit_bytes: (2 * GIB) as i64,
    });
    assert_eq!(
        h.create(wider)
            .await
            .unwrap()
            .volume
            .unwrap()
            .capacity_bytes,
        GIB as i64
    );
    // Anything else is not.
    let bigger = create_request(PVC, 2 * GIB);
    let message = expect_code(h.create(bigger).await, Code::AlreadyExists);
    assert!(message.contains("outside the requested range"), "{message}");
    let mut capped = base.clone();
    capped.capacity_range = Some(CapacityRange {
        required_bytes: 0,
        limit_bytes: (GIB / 2) as i64,
    });
    expect_code(h.create(capped).await, Code::AlreadyExists);
    let other_params = with_params(base.clone(), &[("ctrlLossTmo", "-1")]);
    let message = expect_code(h.create(other_params).await, Code::AlreadyExists);
    assert!(message.contains("different parameters"), "{message}");
    let other_port = with_params(base.clone(), &[("nvmePort", "4421")]);
    expect_code(h.create(other_port).await, Code::AlreadyExists);
    // CO-reserved keys do not make a request different.
    let co_keys = with_params(base, &[("csi.storage.k8s.io/pvc/name", "data")]);
    h.create(co_keys).await.unwrap();

    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_make_exactly_one_disk() {
    let h = Harness::with(Options {
        faults: Faults {
            latency_ms: 20,
            ..Faults::default()
        },
        ..Options::default()
    })
    .await;
    let calls = (0..12).map(|_| h.create(create_request("shared volume", GIB)));
    let outcomes = futures::future::join_all(calls).await;
    let mut ids = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(reply) => ids.push(reply.volume.unwrap().volume_id),
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{}", status.message()),
        }
    }
    assert!(!ids.is_empty(), "at least one call succeeded");
    ids.dedup();
    assert_eq!(ids.len(), 1, "every success names the same volume");
    assert_eq!(h.sim.snapshot().file_disks().count(), 1);
    // Once the dust settles, a retry simply succeeds.
    let id = h
        .create(create_request("shared volume", GIB))
        .await
        .unwrap()
        .volume
        .unwrap()
        .volume_id;
    assert_eq!(id, ids[0]);
    h.delete(&id).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_call_while_one_is_in_flight_is_aborted() {
    let h = Harness::with(Options {
        faults: Faults {
            slow_add_ms: 400,
            ..Faults::default()
        },
        ..Options::default()
    })
    .await;
    let first = h.create(create_request(PVC, GIB));
    let second = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.delete(PVC).await
    };
    let (first, second) = tokio::join!(first, second);
    first.unwrap();
    let message = expect_code(second, Code::Aborted);
    assert!(
        message.contains("operation is already pending"),
        "{message}"
    );
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_safe_and_stable() {
    let h = Harness::start().await;
    let long_unicode = "ü".repeat(64); // 128 bytes
    let names = [
        "quote\"d 'name'",
        "semi;colon; /disk remove [find]",
        "[find] $var {block} \\back",
        "new\nline\ttab\rreturn",
        "ünïcødé 日本語 🚀",
        long_unicode.as_str(),
        "pvc-3F2A1C9E-0B7D-4E21-9A55-1D2C3B4A5F60",
    ];
    let mut ids = Vec::new();
    for name in names {
        let reply = h.create(create_request(name, 16 * MIB)).await.unwrap();
        let id = reply.volume.unwrap().volume_id;
        assert_eq!(id, hashed_id(name), "{name:?}");
        assert!(id.starts_with("csi-"), "{id}");
        // Same name, same volume.
        let again = h.create(create_request(name, 16 * MIB)).await.unwrap();
        assert_eq!(again.volume.unwrap().volume_id, id);
        // The device recorded the exact name.
        let state = h.sim.snapshot();
        let disk = state.disk_by_slot(&id).unwrap();
        assert_eq!(VolumeComment::parse(&disk.comment).unwrap().name, name);
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), names.len(), "distinct names, distinct volumes");

    let too_long = "x".repeat(129);
    for bad in [
        "",
        "bell\u{7}",
        "nul\u{0}",
        "esc\u{1b}[0m",
        "del\u{7f}",
        "c1\u{85}",
        too_long.as_str(),
    ] {
        expect_code(
            h.create(create_request(bad, MIB)).await,
            Code::InvalidArgument,
        );
    }
    for id in &ids {
        h.delete(id).await.unwrap();
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_validated_and_used() {
    let h = Harness::with(Options {
        configure: |c| c.volume_base_path = "storage-pool/k8s".into(),
        ..Options::default()
    })
    .await;
    for (key, value) in [
        ("volumepath", "storage-pool/k8s"),
        ("bogus", "1"),
        ("volumePath", "storage-pool"),
        ("volumePath", "storage-pool/other"),
        ("volumePath", "storage-pool/k8s/../../etc"),
        ("volumePath", "storage-pool/k8s/a b"),
        ("nvmePort", "0"),
        ("nvmePort", "http"),
        ("nvmeAddress", "10.0.0.1,traddr=evil"),
        ("ctrlLossTmo", "-5"),
        ("keepAliveTmo", "0"),
        ("nrIoQueues", "many"),
        ("mkfsOptions", "-F\n-E x"),
        ("migrationTimeoutSeconds", "0"),
    ] {
        let request = with_params(create_request(PVC, GIB), &[(key, value)]);
        let message = expect_code(h.create(request).await, Code::InvalidArgument);
        assert!(message.contains(key), "{key}={value:?}: {message}");
    }
    assert_eq!(
        h.sim.snapshot().file_disks().count(),
        0,
        "nothing reached the device"
    );

    let request = with_params(
        create_request(PVC, GIB),
        &[
            ("volumePath", "/storage-pool/k8s/fast/"),
            ("nvmeAddress", "rds.example.org"),
            ("nvmePort", "4421"),
            ("ctrlLossTmo", "-1"),
            ("reconnectDelay", "2"),
            ("keepAliveTmo", "5"),
            ("nrIoQueues", "4"),
            ("mkfsOptions", "-m 0"),
            ("migrationTimeoutSeconds", "300"),
            ("csi.storage.k8s.io/pvc/namespace", "default"),
        ],
    );
    let volume = h.create(request.clone()).await.unwrap().volume.unwrap();
    let ctx = &volume.volume_context;
    assert_eq!(ctx["volumePath"], "storage-pool/k8s/fast");
    assert_eq!(ctx["nvmeAddress"], "rds.example.org");
    assert_eq!(ctx["nvmePort"], "4421");
    assert_eq!(ctx["ctrlLossTmo"], "-1");
    assert_eq!(ctx["reconnectDelay"], "2");
    assert_eq!(ctx["keepAliveTmo"], "5");
    assert_eq!(ctx["nrIoQueues"], "4");
    assert_eq!(ctx["mkfsOptions"], "-m 0");
    assert_eq!(ctx["migrationTimeoutSeconds"], "300");
    assert!(!ctx.contains_key("csi.storage.k8s.io/pvc/namespace"));
    let state = h.sim.snapshot();
    let disk = state.disk_by_slot(PVC).unwrap();
    assert_eq!(disk.nvme_tcp_server_port, 4421);
    assert!(
        state
            .file_by_name(&format!("storage-pool/k8s/fast/{PVC}.img"))
            .is_some()
    );
    // The node can parse what the controller hands it.
    let parsed = driver::params::VolumeContext::parse(&volume.volume_context).unwrap();
    assert_eq!(parsed.nvme_port, 4421);
    assert_eq!(h.create(request).await.unwrap().volume.unwrap(), volume);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_and_sources_are_checked_on_create() {
    let h = Harness::start().await;
    let with_caps = |caps| {
        let mut r = create_request(PVC, GIB);
        r.volume_capabilities = caps;
        r
    };
    expect_code(h.create(with_caps(vec![])).await, Code::InvalidArgument);
    for refused in [
        mount_capability(Mode::MultiNodeMultiWriter),
        mount_capability(Mode::MultiNodeReaderOnly),
        block_capability(Mode::MultiNodeReaderOnly),
        block_capability(Mode::MultiNodeSingleWriter),
        mount_capability(Mode::Unknown),
    ] {
        expect_code(
            h.create(with_caps(vec![
                block_capability(Mode::SingleNodeWriter),
                refused,
            ]))
            .await,
            Code::InvalidArgument,
        );
    }
    let mut xfs_multi = mount_capability(Mode::SingleNodeMultiWriter);
    if let Some(csi::v1::volume_capability::AccessType::Mount(m)) = &mut xfs_multi.access_type {
        m.fs_type = "zfs".into();
    }
    expect_code(
        h.create(with_caps(vec![xfs_multi])).await,
        Code::InvalidArgument,
    );
    let mut from_snapshot = create_request(PVC, GIB);
    from_snapshot.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: "snap-1".into(),
            },
        )),
    });
    // An id the driver never issues names no snapshot.
    expect_code(h.create(from_snapshot).await, Code::NotFound);
    assert_eq!(h.sim.snapshot().file_disks().count(), 0);

    // KubeVirt live migration: a raw block volume shared by two nodes.
    let rwx_block = with_caps(vec![
        block_capability(Mode::MultiNodeMultiWriter),
        block_capability(Mode::SingleNodeMultiWriter),
        mount_capability(Mode::SingleNodeSingleWriter),
        mount_capability(Mode::SingleNodeReaderOnly),
    ]);
    h.create(rwx_block.clone()).await.unwrap();
    h.create(rwx_block).await.unwrap();
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_17_capacity_ranges_are_honoured_in_exact_bytes() {
    let h = Harness::start().await;
    let ranged = |required: i64, limit: i64| {
        let mut r = create_request(PVC, 0);
        r.capacity_range = Some(CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        });
        r
    };
    expect_code(
        h.create(ranged(2 * GIB as i64, GIB as i64)).await,
        Code::OutOfRange,
    );
    expect_code(
        h.create(ranged(GIB as i64 + 1, GIB as i64 + 2)).await,
        Code::OutOfRange,
    );
    expect_code(h.create(ranged(-1, 0)).await, Code::InvalidArgument);
    // 1.5 GiB stays 1.5 GiB: no truncation to whole units.
    let one_and_half = (3 * GIB / 2) as i64;
    let v = h.create(ranged(one_and_half, one_and_half)).await.unwrap();
    assert_eq!(v.volume.unwrap().capacity_bytes, one_and_half);
    let file = format!("storage-pool/{PVC}.img");
    assert_eq!(
        h.sim.snapshot().file_by_name(&file).unwrap().size,
        3 * GIB / 2
    );
    h.delete(PVC).await.unwrap();

    // No range: the default size.
    let mut no_range = create_request("default sized", 0);
    no_range.capacity_range = None;
    let v = h.create(no_range).await.unwrap().volume.unwrap();
    assert_eq!(v.capacity_bytes, GIB as i64);
    h.delete(&v.volume_id).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_resource_exhausted_and_recovers() {
    let h = Harness::with(Options {
        capacity: 100 * MIB,
        ..Options::default()
    })
    .await;
    let first = h.create(create_request("first", 64 * MIB)).await.unwrap();
    let first_id = first.volume.unwrap().volume_id;
    let message = expect_code(
        h.create(create_request("second", 64 * MIB)).await,
        Code::ResourceExhausted,
    );
    assert!(message.contains("free"), "{message}");
    assert_eq!(
        h.sim.snapshot().file_disks().count(),
        1,
        "no half-made volume"
    );
    // A repeat for the existing volume is still answered with it on the full pool.
    let again = h.create(create_request("first", 64 * MIB)).await.unwrap();
    assert_eq!(again.volume.unwrap().volume_id, first_id);
    // Once space is freed, the retry succeeds at once (the stale reading is re-checked).
    h.delete(&first_id).await.unwrap();
    let second = h.create(create_request("second", 64 * MIB)).await.unwrap();
    h.delete(&second.volume.unwrap().volume_id).await.unwrap();
    h.finish().await;
}

/// The code for the device's own "no space": RESOURCE_EXHAUSTED when it says so in words we
/// know; INTERNAL on a device whose refusals all read alike (`generic-errors`), since nothing
/// then says it was space.
fn device_space_refusal() -> Code {
    if quirks_from_env().quirks.has(rds_sim::Quirk::GenericErrors) {
        Code::Internal
    } else {
        Code::ResourceExhausted
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_refusing_for_space_is_resource_exhausted() {
    // The controller's reading says there is room; the device says otherwise and wins.
    let h = Harness::warmed_up(Options::default()).await;
    h.sim.faults().update(|f| f.pool_full = true);
    expect_code(
        h.create(create_request(PVC, GIB)).await,
        device_space_refusal(),
    );
    assert_eq!(h.sim.snapshot().file_disks().count(), 0);
    h.sim.faults().update(|f| f.pool_full = false);
    h.create(create_request(PVC, GIB)).await.unwrap();
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ignores_foreign_ids_and_never_touches_foreign_disks() {
    let h = Harness::with(Options {
        configure: |c| c.volume_base_path = "storage-pool/k8s".into(),
        ..Options::default()
    })
    .await;
    // A VM disk made by hand, and a pvc-named disk outside the base path.
    let foreign = DiskSpec {
        slot: Slot::try_from("vm-disk").unwrap(),
        file_path: FilePath::try_from("storage-pool/vm-disk.img").unwrap(),
        ..go_style_spec("vm-disk", "storage-pool", 8 * MIB)
    };
    h.add_disk_raw(&foreign).await;
    h.rds
        .create_file_disk(&go_style_spec(PVC, "storage-pool/other", 8 * MIB))
        .await
        .unwrap();
    for id in ["vm-disk", "storage-pool", "csi-x", "../etc", "pvc-1", PVC] {
        h.delete(id).await.unwrap();
        h.delete(id).await.unwrap();
    }
    expect_code(h.delete("").await, Code::InvalidArgument);
    let state = h.sim.snapshot();
    assert!(state.disk_by_slot("vm-disk").is_some());
    assert!(state.disk_by_slot(PVC).is_some());
    // Nor are they the driver's volumes in any other call.
    let mut controller = h.controller.clone();
    expect_code(
        controller
            .controller_get_volume(timed(ControllerGetVolumeRequest {
                volume_id: PVC.into(),
            }))
            .await,
        Code::NotFound,
    );
    let listed = controller
        .list_volumes(timed(ListVolumesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.entries.is_empty(), "{listed:?}");
    h.finish_keeping(&["vm-disk", PVC]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_03_leftover_images_are_recovered_by_create_and_delete() {
    let h = Harness::start().await;
    // A crash between `/disk remove` and `/file remove`: the image stays, the disk is gone.
    let spec = go_style_spec(PVC, "storage-pool", 8 * MIB);
    h.add_disk_raw(&spec).await;
    h.remove_disk_entry(PVC).await;
    assert_eq!(h.leaks(&[]).len(), 1);
    // Create for that volume: the leftover is cleared and the volume made.
    let v = h
        .create(create_request(PVC, GIB))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, GIB as i64);
    assert!(h.leaks(&[PVC]).is_empty());

    // Delete interrupted the same way, then retried: the image is found and removed.
    h.remove_disk_entry(PVC).await;
    assert_eq!(h.leaks(&[]).len(), 1);
    h.delete(PVC).await.unwrap();
    assert!(h.leaks(&[]).is_empty());

    // An image that another disk uses is never removed.
    let sharing = DiskSpec {
        slot: Slot::try_from("vm-disk").unwrap(),
        file_path: spec.file_path.clone(),
        ..spec.clone()
    };
    h.add_disk_raw(&sharing).await;
    h.delete(PVC).await.unwrap();
    let message = expect_code(
        h.create(create_request(PVC, GIB)).await,
        Code::AlreadyExists,
    );
    assert!(message.contains("used by disk vm-disk"), "{message}");
    assert!(
        h.sim
            .snapshot()
            .file_by_name(spec.file_path.as_str())
            .is_some()
    );
    h.finish_keeping(&["vm-disk"]).await;
}

// ---------------------------------------------------------------------------------------
// Adoption of volumes made by the Go driver

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_driver_volumes_are_found_listed_expanded_and_deleted() {
    let h = Harness::start().await;
    h.rds
        .create_file_disk(&go_style_spec(PVC, "storage-pool", GIB))
        .await
        .unwrap();
    let mut controller = h.controller.clone();
    // external-provisioner retrying the original CreateVolume finds it.
    let v = h
        .create(create_request(PVC, GIB))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(v.volume_id, PVC);
    assert_eq!(
        v.volume_context["nqn"],
        format!("nqn.2000-02.com.mikrotik:{PVC}")
    );
    assert_eq!(h.sim.snapshot().file_disks().count(), 1, "no second disk");
    let listed = controller
        .list_volumes(timed(ListVolumesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let entry = &listed.entries[0];
    assert_eq!(entry.volume.as_ref().unwrap().volume_id, PVC);
    let condition = entry
        .status
        .as_ref()
        .unwrap()
        .volume_condition
        .as_ref()
        .unwrap();
    assert!(!condition.abnormal, "{}", condition.message);
    let grown = controller
        .controller_expand_volume(timed(ControllerExpandVolumeRequest {
            volume_id: PVC.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: (2 * GIB) as i64,
                limit_bytes: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, (2 * GIB) as i64);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

// ---------------------------------------------------------------------------------------
// ValidateVolumeCapabilities

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_confirms_supported_capabilities_only() {
    let h = Harness::start().await;
    let v = h
        .create(create_request(PVC, GIB))
        .await
        .unwrap()
        .volume
        .unwrap();
    let mut controller = h.controller.clone();
    let validate = |caps, context: std::collections::HashMap<String, String>| {
        ValidateVolumeCapabilitiesRequest {
            volume_id: PVC.into(),
            volume_context: context,
            volume_capabilities: caps,
            ..Default::default()
        }
    };
    for _ in 0..2 {
        let ok = controller
            .validate_volume_capabilities(timed(validate(
                vec![
                    mount_capability(Mode::SingleNodeWriter),
                    block_capability(Mode::MultiNodeMultiWriter),
                ],
                v.volume_context.clone(),
            )))
            .await
            .unwrap()
            .into_inner();
        let confirmed = ok.confirmed.expect("confirmed");
        assert_eq!(confirmed.volume_capabilities.len(), 2);
        assert_eq!(confirmed.volume_context, v.volume_context);
    }
    let refused = controller
        .validate_volume_capabilities(timed(validate(
            vec![mount_capability(Mode::MultiNodeMultiWriter)],
            Default::default(),
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(refused.confirmed.is_none());
    assert!(
        refused.message.contains("MULTI_NODE_MULTI_WRITER"),
        "{}",
        refused.message
    );
    let mut wrong_context = v.volume_context.clone();
    wrong_context.insert("nqn".into(), "nqn.2000-02.com.mikrotik:other".into());
    let refused = controller
        .validate_volume_capabilities(timed(validate(
            vec![mount_capability(Mode::SingleNodeWriter)],
            wrong_context,
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(refused.confirmed.is_none());

    expect_code(
        controller
            .validate_volume_capabilities(timed(validate(vec![], Default::default())))
            .await,
        Code::InvalidArgument,
    );
    let mut absent = validate(
        vec![mount_capability(Mode::SingleNodeWriter)],
        Default::default(),
    );
    absent.volume_id = hashed_id("never created");
    expect_code(
        controller
            .validate_volume_capabilities(timed(absent.clone()))
            .await,
        Code::NotFound,
    );
    absent.volume_id = "not-ours".into();
    expect_code(
        controller.validate_volume_capabilities(timed(absent)).await,
        Code::NotFound,
    );
    // An outage is not a missing volume.
    h.sim.faults().update(|f| f.drop_next = 1000);
    expect_code(
        controller
            .validate_volume_capabilities(timed(validate(
                vec![mount_capability(Mode::SingleNodeWriter)],
                Default::default(),
            )))
            .await,
        Code::Unavailable,
    );
    h.sim.faults().update(|f| f.drop_next = 0);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

// ---------------------------------------------------------------------------------------
// ListVolumes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_volumes_pages_through_the_drivers_volumes() {
    let h = Harness::start().await;
    h.rds
        .create_file_disk(&DiskSpec {
            slot: Slot::try_from("vm-disk").unwrap(),
            file_path: FilePath::try_from("storage-pool/vm-disk.img").unwrap(),
            ..go_style_spec("vm-disk", "storage-pool", 8 * MIB)
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let v = h
            .create(create_request(&format!("volume {n}"), 8 * MIB))
            .await
            .unwrap();
        ids.push(v.volume.unwrap().volume_id);
    }
    ids.sort();
    let mut controller = h.controller.clone();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = controller
            .list_volumes(timed(ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        for entry in &page.entries {
            let volume = entry.volume.as_ref().unwrap();
            assert_eq!(volume.capacity_bytes, (8 * MIB) as i64);
            let condition = entry
                .status
                .as_ref()
                .unwrap()
                .volume_condition
                .as_ref()
                .unwrap();
            assert!(!condition.abnormal);
            seen.push(volume.volume_id.clone());
        }
        pages += 1;
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every volume once, in order, and nothing else");
    let all = controller
        .list_volumes(timed(ListVolumesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.entries.len(), 5);
    assert!(all.next_token.is_empty());
    expect_code(
        controller
            .list_volumes(timed(ListVolumesRequest {
                max_entries: 2,
                starting_token: "bogus-token".into(),
            }))
            .await,
        Code::Aborted,
    );
    expect_code(
        controller
            .list_volumes(timed(ListVolumesRequest {
                max_entries: -1,
                starting_token: String::new(),
            }))
            .await,
        Code::InvalidArgument,
    );
    for id in &ids {
        h.delete(id).await.unwrap();
    }
    h.finish_keeping(&["vm-disk"]).await;
}

// ---------------------------------------------------------------------------------------
// GetCapacity

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_capacity_reports_pool_free_space() {
    let h = Harness::with(Options {
        capacity: 10 * GIB + 5,
        configure: |c| c.cache_ttl = Duration::ZERO,
        ..Options::default()
    })
    .await;
    let mut controller = h.controller.clone();
    let capacity = controller
        .get_capacity(timed(GetCapacityRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capacity.available_capacity, (10 * GIB + 5) as i64);
    assert_eq!(capacity.maximum_volume_size, Some((10 * GIB) as i64));
    assert_eq!(capacity.minimum_volume_size, Some(MIB as i64));
    h.create(create_request(PVC, GIB)).await.unwrap();
    let capacity = controller
        .get_capacity(timed(GetCapacityRequest {
            volume_capabilities: vec![block_capability(Mode::SingleNodeWriter)],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capacity.available_capacity, (9 * GIB + 5) as i64);
    let none = controller
        .get_capacity(timed(GetCapacityRequest {
            volume_capabilities: vec![mount_capability(Mode::MultiNodeMultiWriter)],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.available_capacity, 0);
    let mut bad = GetCapacityRequest::default();
    bad.parameters.insert("bogus".into(), "1".into());
    expect_code(
        controller.get_capacity(timed(bad)).await,
        Code::InvalidArgument,
    );
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

/// Thin provisioning: with an overcommit ratio of 2 the driver may promise twice the pool in
/// volumes (their images are sparse), and refuses beyond that; GetCapacity tells the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overcommit_lets_sparse_volumes_promise_more_than_the_pool_and_no_more() {
    let h = Harness::with(Options {
        capacity: 10 * GIB,
        configure: |c| {
            c.cache_ttl = Duration::from_secs(600);
            c.overcommit_ratio = driver::controller::budget::OvercommitRatio::parse("2").unwrap();
        },
        ..Options::default()
    })
    .await;
    let big = hashed_id("big");
    h.create(create_request("big", 12 * GIB)).await.unwrap();
    let available = |h: &Harness| {
        let mut controller = h.controller.clone();
        async move {
            controller
                .get_capacity(timed(GetCapacityRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .available_capacity
        }
    };
    // 20 GiB may be promised, 12 are: 8 left (the cached reading plus what was created since).
    assert_eq!(available(&h).await, (8 * GIB) as i64);
    let message = expect_code(
        h.create(create_request("more", 9 * GIB)).await,
        Code::ResourceExhausted,
    );
    assert!(message.contains("overcommit ratio 2"), "{message}");
    h.create(create_request("fits", 8 * GIB)).await.unwrap();
    assert_eq!(available(&h).await, 0);
    h.delete(&big).await.unwrap();
    h.delete(&hashed_id("fits")).await.unwrap();
    h.finish().await;
}

// ---------------------------------------------------------------------------------------
// ControllerExpandVolume

fn expand(id: &str, required: u64, limit: u64) -> ControllerExpandVolumeRequest {
    ControllerExpandVolumeRequest {
        volume_id: id.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: required as i64,
            limit_bytes: limit as i64,
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_grows_exactly_and_never_shrinks() {
    let h = Harness::start().await;
    h.create(create_request(PVC, GIB)).await.unwrap();
    let mut controller = h.controller.clone();
    let file = format!("storage-pool/{PVC}.img");
    for _ in 0..2 {
        let grown = controller
            .controller_expand_volume(timed(ControllerExpandVolumeRequest {
                volume_capability: Some(mount_capability(Mode::SingleNodeWriter)),
                ..expand(PVC, 2 * GIB + 1, 0)
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(grown.capacity_bytes, (2 * GIB + MIB) as i64);
        assert!(
            grown.node_expansion_required,
            "filesystems grow on the node"
        );
        assert_eq!(
            h.sim.snapshot().file_by_name(&file).unwrap().size,
            2 * GIB + MIB
        );
    }
    let block = controller
        .controller_expand_volume(timed(ControllerExpandVolumeRequest {
            volume_capability: Some(block_capability(Mode::SingleNodeWriter)),
            ..expand(PVC, 3 * GIB, 3 * GIB)
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(block.capacity_bytes, (3 * GIB) as i64);
    assert!(
        !block.node_expansion_required,
        "raw block needs nothing on the node"
    );
    let unspecified = controller
        .controller_expand_volume(timed(expand(PVC, GIB, 0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unspecified.capacity_bytes,
        (3 * GIB) as i64,
        "already large enough"
    );
    assert!(unspecified.node_expansion_required);
    expect_code(
        controller
            .controller_expand_volume(timed(expand(PVC, GIB, 2 * GIB)))
            .await,
        Code::OutOfRange,
    );
    expect_code(
        controller
            .controller_expand_volume(timed(expand(PVC, 4 * GIB + 1, 4 * GIB + 2)))
            .await,
        Code::OutOfRange,
    );
    expect_code(
        controller
            .controller_expand_volume(timed(ControllerExpandVolumeRequest {
                capacity_range: None,
                ..expand(PVC, 0, 0)
            }))
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        controller
            .controller_expand_volume(timed(ControllerExpandVolumeRequest {
                volume_capability: Some(mount_capability(Mode::MultiNodeReaderOnly)),
                ..expand(PVC, 4 * GIB, 0)
            }))
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        controller
            .controller_expand_volume(timed(expand(&hashed_id("absent"), GIB, 0)))
            .await,
        Code::NotFound,
    );
    assert_eq!(h.sim.snapshot().file_by_name(&file).unwrap().size, 3 * GIB);
    // Growing past the pool is the device's call.
    h.sim.faults().update(|f| f.pool_full = true);
    expect_code(
        controller
            .controller_expand_volume(timed(expand(PVC, 4 * GIB, 0)))
            .await,
        device_space_refusal(),
    );
    h.sim.faults().update(|f| f.pool_full = false);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

// ---------------------------------------------------------------------------------------
// ControllerGetVolume

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_volume_reports_condition() {
    let h = Harness::start().await;
    let v = h
        .create(create_request(PVC, GIB))
        .await
        .unwrap()
        .volume
        .unwrap();
    let mut controller = h.controller.clone();
    let get = |id: &str| {
        timed(ControllerGetVolumeRequest {
            volume_id: id.to_owned(),
        })
    };
    let healthy = controller
        .controller_get_volume(get(PVC))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        healthy.volume.as_ref().unwrap().capacity_bytes,
        v.capacity_bytes
    );
    let condition = healthy.status.unwrap().volume_condition.unwrap();
    assert!(!condition.abnormal, "{}", condition.message);

    h.device_exec(&format!(
        "/disk set [find where slot=\"{PVC}\"] nvme-tcp-export=no"
    ))
    .await;
    let sick = controller
        .controller_get_volume(get(PVC))
        .await
        .unwrap()
        .into_inner();
    let condition = sick.status.unwrap().volume_condition.unwrap();
    assert!(condition.abnormal);
    assert!(
        condition.message.contains("not exported"),
        "{}",
        condition.message
    );

    // A disk exported under a foreign NQN.
    let other = "pvc-00000000-1111-2222-3333-444444444444";
    h.rds
        .create_file_disk(&DiskSpec {
            nqn: Nqn::try_from("nqn.2000-02.com.example:elsewhere").unwrap(),
            ..go_style_spec(other, "storage-pool", 8 * MIB)
        })
        .await
        .unwrap();
    let condition = controller
        .controller_get_volume(get(other))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .volume_condition
        .unwrap();
    assert!(condition.abnormal);
    assert!(
        condition.message.contains("expected"),
        "{}",
        condition.message
    );

    expect_code(
        controller
            .controller_get_volume(get(&hashed_id("absent")))
            .await,
        Code::NotFound,
    );
    expect_code(
        controller.controller_get_volume(get("garbage")).await,
        Code::NotFound,
    );
    expect_code(
        controller.controller_get_volume(get("")).await,
        Code::InvalidArgument,
    );
    h.delete(PVC).await.unwrap();
    h.delete(other).await.unwrap();
    h.finish().await;
}

// ---------------------------------------------------------------------------------------
// Faults injected in the device

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_unavailable_then_a_retry_completes() {
    let h = Harness::warmed_up(Options::default()).await;
    h.sim.faults().update(|f| f.drop_next = 1);
    expect_code(h.create(create_request(PVC, GIB)).await, Code::Unavailable);
    h.create(create_request(PVC, GIB)).await.unwrap();
    assert_eq!(h.sim.snapshot().file_disks().count(), 1);
    h.sim.faults().update(|f| f.drop_next = 1);
    expect_code(h.delete(PVC).await, Code::Unavailable);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

/// An outage must never look like a missing volume: every RPC that reads the volume answers
/// UNAVAILABLE while the device does not, and DeleteVolume does not claim success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_19_an_outage_is_unavailable_never_not_found() {
    let h = Harness::warmed_up(Options::default()).await;
    h.create(create_request(PVC, GIB)).await.unwrap();
    let mut controller = h.controller.clone();
    h.sim.faults().update(|f| f.drop_next = 1);
    expect_code(
        controller
            .controller_get_volume(timed(ControllerGetVolumeRequest {
                volume_id: PVC.into(),
            }))
            .await,
        Code::Unavailable,
    );
    h.sim.faults().update(|f| f.drop_next = 1);
    expect_code(
        controller
            .validate_volume_capabilities(timed(ValidateVolumeCapabilitiesRequest {
                volume_id: PVC.into(),
                volume_capabilities: vec![mount_capability(Mode::SingleNodeWriter)],
                ..Default::default()
            }))
            .await,
        Code::Unavailable,
    );
    h.sim.faults().update(|f| f.drop_next = 1);
    expect_code(
        controller
            .controller_expand_volume(timed(expand(PVC, 2 * GIB, 0)))
            .await,
        Code::Unavailable,
    );
    h.sim.faults().update(|f| f.drop_next = 1);
    expect_code(h.delete(PVC).await, Code::Unavailable);
    assert_eq!(h.sim.snapshot().file_disks().count(), 1, "still there");
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_slower_than_the_command_deadline_is_unavailable_then_a_retry_completes() {
    let h = Harness::with(Options {
        command_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    h.sim.faults().update(|f| f.latency_ms = 500);
    let message = expect_code(h.create(create_request(PVC, GIB)).await, Code::Unavailable);
    assert!(message.contains("no answer within"), "{message}");
    h.sim.faults().update(|f| f.latency_ms = 0);
    // The device may or may not have run the abandoned command; the retry is right either way.
    h.create(create_request(PVC, GIB)).await.unwrap();
    assert_eq!(h.sim.snapshot().file_disks().count(), 1);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_command_is_internal_then_a_retry_completes() {
    let h = Harness::warmed_up(Options::default()).await;
    h.sim.faults().update(|f| {
        f.fail_next = 1;
        f.fail_message = "failure: simulated failure".into();
    });
    let message = expect_code(h.create(create_request(PVC, GIB)).await, Code::Internal);
    assert!(message.contains("simulated failure"), "{message}");
    h.create(create_request(PVC, GIB)).await.unwrap();
    h.sim.faults().update(|f| {
        f.fail_next = 1;
        f.fail_message = "failure: not enough free space on storage-pool".into();
    });
    expect_code(
        h.controller
            .clone()
            .controller_expand_volume(timed(expand(PVC, 2 * GIB, 0)))
            .await,
        Code::ResourceExhausted,
    );
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_deadline_is_honoured_and_the_work_completes() {
    let h = Harness::with(Options {
        faults: Faults {
            slow_add_ms: 600,
            ..Faults::default()
        },
        ..Options::default()
    })
    .await;
    let mut request = tonic::Request::new(create_request(PVC, GIB));
    request.set_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let outcome = h.controller.clone().create_volume(request).await;
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "the caller was not kept waiting"
    );
    let status = outcome.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    // The CO retries: while the first attempt still runs it hears ABORTED, then success.
    let mut attempts = 0;
    let volume = loop {
        attempts += 1;
        match h.create(create_request(PVC, GIB)).await {
            Ok(reply) => break reply.volume.unwrap(),
            Err(status) if status.code() == Code::Aborted && attempts < 50 => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    assert_eq!(volume.volume_id, PVC);
    assert_eq!(h.sim.snapshot().file_disks().count(), 1);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_session_cap_ends_in_unavailable_then_retries_complete() {
    // The controller may open more sessions than the device allows.
    let h = Harness::with(Options {
        faults: Faults {
            max_sessions: 2,
            latency_ms: 30,
            ..Faults::default()
        },
        client_sessions: 8,
        ..Options::default()
    })
    .await;
    let names: Vec<String> = (0..8).map(|n| format!("capped {n}")).collect();
    let outcomes =
        futures::future::join_all(names.iter().map(|n| h.create(create_request(n, MIB)))).await;
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(s) if s.code() == Code::Unavailable))
        .count();
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || o.as_ref().unwrap_err().code() == Code::Unavailable),
        "{outcomes:?}"
    );
    assert!(refused > 0, "the cap was hit");
    // Retried one at a time, every volume gets made, none twice.
    for name in &names {
        h.create(create_request(name, MIB)).await.unwrap();
    }
    assert_eq!(h.sim.snapshot().file_disks().count(), names.len());
    for name in &names {
        h.delete(&hashed_id(name)).await.unwrap();
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routeros_before_7_21_is_refused_clearly_and_changes_nothing() {
    let h = Harness::with(Options {
        routeros_version: Some("7.20.4"),
        ..Options::default()
    })
    .await;
    let message = expect_code(
        h.create(create_request(PVC, GIB)).await,
        Code::FailedPrecondition,
    );
    assert!(
        message.contains("7.20.4") && message.contains("7.21"),
        "{message}"
    );
    let probe = h
        .identity
        .clone()
        .probe(timed(ProbeRequest::default()))
        .await;
    let message = expect_code(probe, Code::FailedPrecondition);
    assert!(message.contains("nvme-tcp-server-nqn"), "{message}");
    assert_eq!(h.sim.snapshot().file_disks().count(), 0, "nothing was made");
    h.finish().await;
}
