//! The controller's flags and settings.

use super::*;
use crate::connection::*;
use clap::Parser;
use routeros::{HostKeyPolicy, Secret, SshAuth, TlsPolicy};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: ControllerArgs,
}

fn parse(flags: &[&str]) -> ControllerArgs {
    let mut argv = vec!["rds-csi", "--rds-address", "10.0.0.1"];
    argv.extend_from_slice(flags);
    Cli::try_parse_from(argv).expect("flags parse").args
}

fn password() -> Secrets {
    Secrets {
        password: Some(Secret::new("pw")),
        key_passphrase: None,
    }
}

#[test]
fn defaults_match_the_go_driver() {
    let args = parse(&["--rds-insecure"]);
    let c = args.controller_config().unwrap();
    assert_eq!(c.driver_name, "rds.csi.srvlab.io");
    assert_eq!(c.nqn_prefix, "nqn.2000-02.com.mikrotik");
    assert_eq!(c.pool, "storage-pool");
    assert_eq!(c.volume_base_path, "storage-pool");
    assert_eq!(
        c.nvme_address, "10.0.0.1",
        "NVMe address defaults to the RDS"
    );
    assert_eq!(c.nvme_port, 4420);
    assert_eq!(c.sizes.granularity, 1 << 20);
    assert_eq!(c.overcommit_ratio, OvercommitRatio::ONE);
    assert_eq!(args.endpoint, Endpoint::Unix("/csi/csi.sock".into()));
    assert_eq!(args.attachment_state, AttachmentStateKind::Kubernetes);
    let thin = parse(&["--rds-insecure", "--overcommit-ratio", "2.5"]);
    assert_eq!(
        thin.controller_config()
            .unwrap()
            .overcommit_ratio
            .to_string(),
        "2.5"
    );
}

#[test]
fn ssh_needs_credentials_and_a_pinned_host_key() {
    let pinned = parse(&["--rds-host-key-fingerprint", "SHA256:abc,SHA256:def"]);
    let c = pinned.rds.client_config(password()).unwrap();
    let routeros::TransportConfig::Ssh { auth, host_key } = &c.transport else {
        panic!("ssh expected")
    };
    assert!(matches!(auth, SshAuth::Password(_)));
    let HostKeyPolicy::Fingerprints(fps) = host_key else {
        panic!("{host_key:?}")
    };
    assert_eq!(fps, &["SHA256:abc", "SHA256:def"]);
    assert_eq!(c.effective_port(), 22);

    let err = pinned.rds.client_config(Secrets::default()).unwrap_err();
    assert!(err.to_string().contains("no SSH credentials"), "{err}");
    let err = parse(&[]).rds.client_config(password()).unwrap_err();
    assert!(err.to_string().contains("not pinned"), "{err}");
    let err = parse(&["--rds-insecure", "--rds-known-hosts", "/k"])
        .rds
        .client_config(password())
        .unwrap_err();
    assert!(err.to_string().contains("only one"), "{err}");

    let keyed = parse(&[
        "--rds-key-file",
        "/id",
        "--rds-known-hosts",
        "/kh",
        "--rds-port",
        "2222",
    ]);
    let c = keyed.rds.client_config(password()).unwrap();
    assert_eq!(c.effective_port(), 2222);
    let routeros::TransportConfig::Ssh { auth, host_key } = &c.transport else {
        panic!("ssh expected")
    };
    assert!(
        matches!(auth, SshAuth::KeyFile { .. }),
        "a key wins over a password"
    );
    assert!(matches!(host_key, HostKeyPolicy::KnownHostsFile(_)));
}

#[test]
fn rest_needs_a_password_and_a_trusted_certificate() {
    let rest = parse(&["--rds-transport", "rest", "--rds-cert-fingerprint", "AB:CD"]);
    let c = rest.rds.client_config(password()).unwrap();
    assert_eq!(c.effective_port(), 443);
    assert!(matches!(
        c.transport,
        routeros::TransportConfig::Rest {
            tls: TlsPolicy::Fingerprint(_),
            ..
        }
    ));
    assert!(rest.rds.client_config(Secrets::default()).is_err());
    let err = parse(&["--rds-transport", "rest"])
        .rds
        .client_config(password())
        .unwrap_err();
    assert!(err.to_string().contains("not trusted"), "{err}");
    let err = parse(&[
        "--rds-transport",
        "rest",
        "--rds-insecure",
        "--rds-known-hosts",
        "/x",
    ])
    .rds
    .client_config(password())
    .unwrap_err();
    assert!(
        err.to_string().contains("apply to --rds-transport ssh"),
        "{err}"
    );
}

#[test]
fn secrets_come_from_files_and_never_show_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "hunter2\n").unwrap();
    let args = parse(&[
        "--rds-insecure",
        "--rds-password-file",
        file.to_str().unwrap(),
    ]);
    let secrets = args.rds.read_secrets().unwrap();
    assert_eq!(secrets.password.as_ref().unwrap().expose(), "hunter2");
    let config = args.rds.client_config(secrets).unwrap();
    assert!(!format!("{config:?} {args:?}").contains("hunter2"));

    std::fs::write(&file, "\n").unwrap();
    assert!(
        args.rds.read_secrets().is_err(),
        "an empty password file is refused"
    );
}

#[test]
fn the_controller_requires_an_rds_address() {
    let err = Cli::try_parse_from(["rds-csi", "--rds-insecure"]).unwrap_err();
    assert_eq!(
        err.kind(),
        clap::error::ErrorKind::MissingRequiredArgument,
        "{err}"
    );
    assert!(err.to_string().contains("--rds-address"), "{err}");
}

#[test]
fn bad_controller_settings_are_refused() {
    for flags in [
        &["--rds-insecure", "--volume-base-path", "elsewhere"][..],
        &["--rds-insecure", "--nqn-prefix", "bogus"],
        &["--rds-insecure", "--size-granularity", "1000"],
    ] {
        assert!(parse(flags).controller_config().is_err(), "{flags:?}");
    }
    assert!(
        parse(&["--rds-insecure", "--rds-max-sessions", "0"])
            .rds
            .client_config(password())
            .is_err()
    );
}

#[test]
fn the_attachment_state_comes_from_kubernetes_unless_asked_otherwise() {
    let args = parse(&["--rds-insecure"]);
    assert_eq!(args.attachment_state, AttachmentStateKind::Kubernetes);
    assert_eq!(args.leader_election_namespace, None);
    let args = parse(&[
        "--rds-insecure",
        "--attachment-state",
        "memory",
        "--leader-election-namespace",
        "rds-csi",
    ]);
    assert_eq!(args.attachment_state, AttachmentStateKind::Memory);
    assert_eq!(args.leader_election_namespace.as_deref(), Some("rds-csi"));
    assert!(
        !parse(&["--rds-insecure"])
            .controller_config()
            .unwrap()
            .export_acl
    );
    let fenced = parse(&["--rds-insecure", "--export-acl"]);
    assert!(fenced.controller_config().unwrap().export_acl);
}

#[tokio::test]
async fn vmi_serialization_needs_the_cluster() {
    assert!(!parse(&["--rds-insecure"]).serialize_vmi_attach);
    let args = parse(&[
        "--rds-insecure",
        "--attachment-state",
        "memory",
        "--serialize-vmi-attach",
    ]);
    assert!(args.serialize_vmi_attach);
    let error = args.attachments().await.err().expect("refused").to_string();
    assert!(
        error.contains("--serialize-vmi-attach needs --attachment-state kubernetes"),
        "{error}"
    );
    let alone = parse(&["--rds-insecure", "--attachment-state", "memory"]);
    assert!(alone.attachments().await.is_ok());
}

#[test]
fn the_breaker_is_on_by_default_and_configurable() {
    let c = parse(&["--rds-insecure"])
        .rds
        .client_config(password())
        .unwrap();
    assert_eq!(c.breaker, routeros::BreakerConfig::default());
    let args = parse(&[
        "--rds-insecure",
        "--rds-breaker-failures",
        "0",
        "--rds-breaker-cool-down-seconds",
        "30",
    ]);
    let c = args.rds.client_config(password()).unwrap();
    assert_eq!(c.breaker.failures, 0);
    assert_eq!(c.breaker.cool_down, Duration::from_secs(30));
}

#[test]
fn device_health_is_read_every_30_seconds_unless_turned_off() {
    assert_eq!(
        parse(&["--rds-insecure"]).device_health_interval_seconds,
        30
    );
    let off = parse(&["--rds-insecure", "--device-health-interval-seconds", "0"]);
    assert_eq!(off.device_health_interval_seconds, 0);
}

#[tokio::test]
async fn orphans_are_reported_hourly_judged_and_deleted_only_when_asked_with_the_cluster() {
    let args = parse(&["--rds-insecure"]);
    assert_eq!(args.orphans, OrphanMode::Report);
    assert_eq!(args.orphan_grace, Duration::from_secs(3600));
    assert_eq!(args.orphan_check_interval, Duration::from_secs(600));
    let args = parse(&[
        "--rds-insecure",
        "--orphans",
        "delete",
        "--orphan-grace",
        "1d",
        "--orphan-check-interval",
        "0s",
    ]);
    assert_eq!(args.orphans, OrphanMode::Delete);
    assert_eq!(args.orphan_grace, Duration::from_secs(86_400));
    assert!(args.orphan_check_interval.is_zero());
    let mut argv = vec!["rds-csi", "--rds-address", "10.0.0.1", "--rds-insecure"];
    for refused in [
        &["--orphans", "remove"][..],
        &["--orphan-grace", "30s"],
        &["--orphan-grace", "soon"],
    ] {
        argv.truncate(4);
        argv.extend_from_slice(refused);
        assert!(Cli::try_parse_from(&argv).is_err(), "{refused:?}");
    }
    // Deletion needs to know the cluster's PersistentVolumes.
    let alone = parse(&[
        "--rds-insecure",
        "--attachment-state",
        "memory",
        "--orphans",
        "delete",
    ]);
    let error = alone
        .attachments()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("--orphans delete needs --attachment-state kubernetes"),
        "{error}"
    );
}
