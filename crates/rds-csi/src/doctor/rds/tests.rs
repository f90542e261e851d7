use std::time::Duration;

use routeros::hostkey::HostKeyPins;
use routeros::{Error, FileDisk, NqnSource, Pool, RouterOsVersion, SystemInfo};
use sha2::{Digest as _, Sha256};

use super::*;
use crate::connection::RdsTransport;
use crate::doctor::probe::{Reached, TcpFailure};
use crate::doctor::report::Status;

fn facts(transport: RdsTransport) -> RdsFacts {
    RdsFacts {
        transport,
        address: "10.0.0.1".into(),
        port: 22,
        user: "csi".into(),
        pool: "storage-pool".into(),
        base_path: "storage-pool".into(),
        nqn_prefix: "nqn.2000-02.com.mikrotik".into(),
        settings: Ok(()),
        flags: Ok(()),
        reach: Ok(Reached {
            peer: "10.0.0.1:22".parse().unwrap(),
            connect_time: Duration::from_millis(1),
        }),
        identity: None,
        login: None,
        pool_info: None,
        disks: None,
        round_trips: None,
    }
}

/// An ed25519-shaped public key blob.
fn key_blob(fill: u8) -> Vec<u8> {
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend_from_slice(&[fill; 32]);
    blob
}

fn pinned(blob: &[u8]) -> Pinning {
    Pinning::HostKeys(HostKeyPins {
        fingerprints: vec![Sha256::digest(blob).into()],
        known_hosts: Vec::new(),
    })
}

fn identity(presented: Vec<u8>, pinning: Pinning) -> PeerIdentity {
    PeerIdentity {
        presented: Ok(presented),
        pinning,
    }
}

#[test]
fn a_host_key_mismatch_fails_distinctly_from_not_pinned() {
    let f = facts(RdsTransport::Ssh);
    let device = key_blob(1);
    let shown = routeros::sha256_fingerprint(&device);

    let ok = judge_identity(&f, &identity(device.clone(), pinned(&device)));
    assert_eq!(ok.status, Status::Ok, "{ok:?}");

    let mismatch = judge_identity(&f, &identity(device.clone(), pinned(&key_blob(2))));
    assert_eq!(mismatch.status, Status::Fail);
    assert!(
        mismatch.detail.starts_with("MISMATCH"),
        "{}",
        mismatch.detail
    );
    assert!(mismatch.detail.contains(&shown));
    assert!(mismatch.fix.unwrap().contains("do not connect"));

    let unpinned = judge_identity(&f, &identity(device.clone(), Pinning::NotPinned));
    assert_eq!(unpinned.status, Status::Fail);
    assert!(
        unpinned.detail.starts_with("not pinned"),
        "{}",
        unpinned.detail
    );
    assert!(
        unpinned
            .fix
            .unwrap()
            .contains(&format!("--rds-host-key-fingerprint {shown}"))
    );

    let insecure = judge_identity(&f, &identity(device.clone(), Pinning::Insecure));
    assert_eq!(insecure.status, Status::Warn);
    assert!(insecure.detail.contains(&shown));

    let unknown = Pinning::HostKeys(HostKeyPins {
        fingerprints: Vec::new(),
        known_hosts: Vec::new(),
    });
    let unknown = judge_identity(&f, &identity(device, unknown));
    assert_eq!(unknown.status, Status::Fail);
    assert!(
        unknown.detail.contains("known_hosts has no key"),
        "{}",
        unknown.detail
    );

    let broken = PeerIdentity {
        presented: Err("no SSH host key received".into()),
        pinning: Pinning::NotPinned,
    };
    assert_eq!(judge_identity(&f, &broken).status, Status::Fail);
}

#[test]
fn a_certificate_is_checked_by_fingerprint_or_by_ca() {
    let f = facts(RdsTransport::Rest);
    let der = b"a certificate".to_vec();
    let digest: [u8; 32] = Sha256::digest(&der).into();
    let ok = judge_identity(
        &f,
        &identity(der.clone(), Pinning::CertificateFingerprint(digest)),
    );
    assert_eq!(ok.status, Status::Ok);
    assert_eq!(ok.id, "rds.certificate");

    let other = judge_identity(
        &f,
        &identity(der.clone(), Pinning::CertificateFingerprint([0; 32])),
    );
    assert_eq!(other.status, Status::Fail);
    assert!(other.detail.starts_with("MISMATCH"));
    assert!(other.fix.unwrap().contains("--rds-cert-fingerprint"));

    let untrusted = Pinning::CertificateAuthority {
        file: "/etc/rds/ca.pem".into(),
        verdict: Err("invalid peer certificate: UnknownIssuer".into()),
    };
    let untrusted = judge_identity(&f, &identity(der, untrusted));
    assert_eq!(untrusted.status, Status::Fail);
    assert!(untrusted.detail.contains("UnknownIssuer"));
}

#[test]
fn login_failures_name_their_cause() {
    let f = facts(RdsTransport::Ssh);
    let refused = judge_login(
        &f,
        &Err(Error::Unauthenticated(
            "SSH authentication as \"csi\" refused".into(),
        )),
    );
    assert_eq!(refused.status, Status::Fail);
    assert!(refused.detail.contains("refused the credentials"));
    assert!(refused.fix.unwrap().contains("--rds-password-file"));

    let rights = judge_login(
        &f,
        &Err(Error::Unauthenticated("not enough permissions (9)".into())),
    );
    assert!(rights.detail.contains("lacks permissions"));
    assert!(rights.fix.unwrap().contains("ssh"));

    let key = judge_login(
        &f,
        &Err(Error::Invalid("cannot load SSH key /k: denied".into())),
    );
    assert!(key.fix.unwrap().contains("--rds-key-file"));

    let gone = judge_login(
        &f,
        &Err(Error::Unavailable("no answer within 30000 ms".into())),
    );
    assert!(gone.fix.unwrap().contains("max-sessions"));
}

fn info(version: &str) -> SystemInfo {
    SystemInfo {
        version: RouterOsVersion::parse(version).unwrap(),
        version_text: version.into(),
        identity: "rds-1".into(),
        board_name: Some("RDS2216".into()),
        architecture: None,
        uptime: None,
        cpu_count: None,
        total_memory: None,
        free_memory: None,
    }
}

#[test]
fn versions_too_old_fail_with_what_is_missing() {
    let old = judge_version(&info("7.16.2 (stable)"));
    assert_eq!(old.status, Status::Fail);
    assert!(
        old.detail.contains("no file-backed disks"),
        "{}",
        old.detail
    );
    let no_nqn = judge_version(&info("7.20.8 (long-term)"));
    assert_eq!(no_nqn.status, Status::Fail);
    assert!(
        no_nqn.detail.contains("cannot set a disk's NQN"),
        "{}",
        no_nqn.detail
    );
    assert!(no_nqn.fix.unwrap().contains("7.21"));
    assert_eq!(judge_version(&info("7.21.5 (stable)")).status, Status::Ok);
    assert_eq!(judge_version(&info("7.21beta2")).status, Status::Ok);
}

fn pool(size: u64, free: u64, state: Option<&str>) -> Result<Pool, Error> {
    Ok(Pool {
        slot: "storage-pool".into(),
        mount_point: "storage-pool".into(),
        fs: "btrfs".into(),
        size,
        free,
        mounted: true,
        state: state.map(str::to_owned),
    })
}

#[test]
fn low_pool_space_warns_and_a_full_or_missing_pool_fails() {
    const TIB: u64 = 1 << 40;
    let roomy = judge_pool("storage-pool", &pool(10 * TIB, 4 * TIB, Some("clean")));
    assert_eq!(roomy.status, Status::Ok, "{roomy:?}");
    assert!(
        roomy.detail.contains("4.0 TiB free of 10.0 TiB"),
        "{}",
        roomy.detail
    );
    let low = judge_pool("storage-pool", &pool(10 * TIB, TIB / 2, None));
    assert_eq!(low.status, Status::Warn);
    assert!(low.detail.contains("only 5% free"), "{}", low.detail);
    let degraded = judge_pool("storage-pool", &pool(10 * TIB, 4 * TIB, Some("degraded")));
    assert_eq!(degraded.status, Status::Warn);
    assert!(degraded.detail.contains("RAID state degraded"));
    assert_eq!(
        judge_pool("storage-pool", &pool(TIB, 0, None)).status,
        Status::Fail
    );
    let missing = judge_pool("pool-x", &Err(Error::NotFound("no disk".into())));
    assert_eq!(missing.status, Status::Fail);
    assert!(missing.fix.unwrap().contains("--pool"));
}

fn disk(slot: &str, path: &str, nqn: &str) -> FileDisk {
    FileDisk {
        allowed_hosts: routeros::AllowedHosts::Any,
        id: "*1".into(),
        slot: slot.into(),
        file_path: path.into(),
        file_size: 1 << 30,
        nvme_tcp_export: true,
        nvme_tcp_port: 4420,
        nqn: nqn.into(),
        nqn_source: NqnSource::ServerNqn,
        mount_filesystem: false,
        comment: None,
    }
}

#[test]
fn volumes_are_counted_by_the_managed_naming_and_oddities_flagged() {
    const PVC: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
    const OTHER: &str = "pvc-00000000-0000-4000-8000-000000000000";
    let prefix = "nqn.2000-02.com.mikrotik";
    let good = disk(
        PVC,
        &format!("storage-pool/{PVC}.img"),
        &format!("{prefix}:{PVC}"),
    );
    let hand_made = disk("backup", "storage-pool/backup.img", "backup");
    let check = judge_volumes(
        "storage-pool",
        prefix,
        &Ok(vec![good.clone(), hand_made.clone()]),
    );
    assert_eq!(check.status, Status::Ok, "{check:?}");
    assert!(
        check
            .detail
            .starts_with("1 volume of this driver (1.0 GiB)"),
        "{}",
        check.detail
    );
    assert!(check.detail.contains("1 other disk left alone"));

    let unexported = FileDisk {
        nvme_tcp_export: false,
        ..good.clone()
    };
    let stray = disk(OTHER, &format!("other-pool/{OTHER}.img"), "x");
    let check = judge_volumes(
        "storage-pool",
        prefix,
        &Ok(vec![unexported, stray, hand_made]),
    );
    assert_eq!(check.status, Status::Warn);
    assert!(check.detail.contains("not exported"), "{}", check.detail);
    assert!(
        check
            .detail
            .contains(&format!("outside storage-pool: {OTHER}")),
        "{}",
        check.detail
    );
    assert!(check.fix.unwrap().contains("--volume-base-path"));
}

#[test]
fn round_trips_report_the_median_and_warn_when_slow() {
    let ms = Duration::from_millis;
    let fast = judge_round_trips(&Ok(vec![ms(30), ms(10), ms(20), ms(900), ms(25)]));
    assert_eq!(fast.status, Status::Ok);
    assert!(
        fast.detail.starts_with("median 25 ms over 5 reads"),
        "{}",
        fast.detail
    );
    let slow = judge_round_trips(&Ok(vec![ms(1500), ms(1200), ms(2000)]));
    assert_eq!(slow.status, Status::Warn);
    assert_eq!(
        judge_round_trips(&Err(Error::Unavailable("x".into()))).status,
        Status::Fail
    );
}

#[test]
fn unreached_steps_are_skipped_with_the_reason() {
    let mut f = facts(RdsTransport::Ssh);
    f.reach = Err(TcpFailure::Refused);
    let all = checks(&f);
    let by_id = |id: &str| all.iter().find(|c| c.id == id).unwrap().clone();
    let reach = by_id("rds.reachable");
    assert_eq!(reach.status, Status::Fail);
    assert!(reach.fix.unwrap().contains("ssh service"));
    assert_eq!(by_id("rds.host-key").status, Status::Skip);
    assert!(by_id("rds.login").detail.contains("not reachable"));
    for id in ["rds.version", "rds.pool", "rds.volumes", "rds.round-trip"] {
        assert_eq!(by_id(id).status, Status::Skip, "{id}");
    }

    let mut f = facts(RdsTransport::Ssh);
    f.identity = Some(identity(key_blob(1), pinned(&key_blob(2))));
    let all = checks(&f);
    let login = all.iter().find(|c| c.id == "rds.login").unwrap();
    assert!(login.detail.contains("never sent"), "{}", login.detail);

    let mut f = facts(RdsTransport::Ssh);
    f.identity = Some(identity(key_blob(1), pinned(&key_blob(1))));
    f.login = Some(Ok(info("7.21.5")));
    f.pool_info = Some(Err(Error::Unavailable("no answer".into())));
    let all = checks(&f);
    let volumes = all.iter().find(|c| c.id == "rds.volumes").unwrap();
    assert!(
        volumes.detail.contains("stopped answering"),
        "{}",
        volumes.detail
    );
}
