//! The SSH transport against a real russh server over TCP on loopback.
//!
//! The server here is a scripted stand-in (exact command → canned reply), so these tests pin
//! down transport behaviour: host-key pinning, authentication, the wire text of each
//! operation, wrapped output, concurrency bound, session refusal, reconnect, backoff and
//! deadlines. Behaviour of a full device model is covered against the simulator.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use routeros::{
    Backoff, Client, ClientConfig, CreateOutcome, DiskSpec, Error, FilePath, HostKeyPolicy, ItemId,
    Nqn, NqnSource, Slot, SshAuth,
};
use serde_json::json;
use server::{Reply, ServerOptions, SshServer};

const PASSWORD: &str = "s3cret-pw";
const SYSTEM_INFO: &str = ":put [:serialize to=json [/system resource print as-value]];:put [:serialize to=json [/system identity print as-value]]";

fn system_info_reply(version: &str) -> Reply {
    let resource = json!({"version": version, "board-name": "RDS2216", "uptime": "1d",
        "architecture-name": "arm64", "cpu-count": 16, "total-memory": 34359738368u64,
        "free-memory": 30000000000u64, "total-hdd-space": 1000, "free-hdd-space": 500});
    Reply::ok(&format!(
        "{}\r\n{}\r\n",
        wrap(&resource.to_string()),
        wrap(&json!({"name": "rds-test"}).to_string())
    ))
}

/// Wraps a line at 80 columns with CRLF, as the device's terminal does.
fn wrap(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    chars
        .chunks(80)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn config(server: &SshServer, user: &str, auth: SshAuth, host_key: HostKeyPolicy) -> ClientConfig {
    let mut cfg = ClientConfig::ssh("127.0.0.1", user, auth, host_key);
    cfg.port = Some(server.addr.port());
    cfg.command_timeout = Duration::from_secs(5);
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    cfg
}

fn pinned(server: &SshServer) -> ClientConfig {
    config(
        server,
        "admin+ct80w",
        SshAuth::Password(PASSWORD.into()),
        HostKeyPolicy::Fingerprints(vec![server.fingerprint.clone()]),
    )
}

fn slot(s: &str) -> Slot {
    Slot::try_from(s).unwrap()
}

fn disk_json(slot: &str, size: u64, with_nqn: bool) -> serde_json::Value {
    let mut d = json!({".id": "*1A", "type": "file", "slot": slot, "slot-default": "", "parent": "",
        "fs": "-", "model": format!("/storage-pool/{slot}.img"), "size": size,
        "file-path": format!("/storage-pool/{slot}.img"), "file-size": size, "file-offset": 0,
        "mount-filesystem": false, "mount-read-only": false, "nvme-tcp-export": true,
        "nvme-tcp-server-port": 4420, "nvme-tcp-server-allow-host-name": "",
        "iscsi-export": false, "sector-size": 512, "block-device": true});
    if with_nqn {
        d["nvme-tcp-server-nqn"] = json!(format!("nqn.2000-02.com.mikrotik:{slot}"));
    }
    d
}

fn spec(s: &str, size: u64) -> DiskSpec {
    DiskSpec {
        slot: slot(s),
        file_path: FilePath::try_from(format!("/storage-pool/{s}.img")).unwrap(),
        size,
        port: 4420,
        nqn: Nqn::try_from(format!("nqn.2000-02.com.mikrotik:{s}")).unwrap(),
        comment: Some("ns/app; \"quoted\" [x] $y".into()),
    }
}

#[tokio::test]
async fn pinned_fingerprint_password_login_and_user_options_pass_through() {
    let server = SshServer::start(ServerOptions::new(|cmd| {
        if cmd == SYSTEM_INFO {
            system_info_reply("7.21.5 (stable)")
        } else {
            Reply::ok("bad command name x (line 1 column 1)\r\n")
        }
    }))
    .await;
    let client = Client::connect(pinned(&server)).await.unwrap();
    let info = client.system_info().await.unwrap();
    assert_eq!(info.version_text, "7.21.5 (stable)");
    assert_eq!(info.identity, "rds-test");
    assert_eq!(info.board_name.as_deref(), Some("RDS2216"));
    assert_eq!(*server.stats.users.lock().unwrap(), ["admin+ct80w"]);
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unknown_or_mismatching_host_keys_are_refused_unless_insecure() {
    let server = SshServer::start(ServerOptions::new(|_| system_info_reply("7.21.5"))).await;
    let other = routeros::sha256_fingerprint(b"some other key");
    let cfg = config(
        &server,
        "admin",
        SshAuth::Password(PASSWORD.into()),
        HostKeyPolicy::Fingerprints(vec![other]),
    );
    let Err(Error::Unauthenticated(msg)) = Client::connect(cfg).await else {
        panic!("mismatch accepted")
    };
    assert!(
        msg.contains("mismatch") && msg.contains(&server.fingerprint),
        "{msg}"
    );
    assert!(
        server.stats.commands.lock().unwrap().is_empty(),
        "nothing ran on an untrusted host"
    );

    let cfg = config(
        &server,
        "admin",
        SshAuth::Password(PASSWORD.into()),
        HostKeyPolicy::KnownHostsLines(format!("otherhost {}", server.known_hosts_key())),
    );
    let Err(Error::Unauthenticated(msg)) = Client::connect(cfg).await else {
        panic!("unknown host accepted")
    };
    assert!(msg.contains("unknown host key"), "{msg}");

    let cfg = config(
        &server,
        "admin",
        SshAuth::Password(PASSWORD.into()),
        HostKeyPolicy::Insecure,
    );
    Client::connect(cfg).await.unwrap();
}

#[tokio::test]
async fn known_hosts_pins_plain_and_hashed() {
    let server = SshServer::start(ServerOptions::new(|_| system_info_reply("7.21.5"))).await;
    let port = server.addr.port();
    let plain = format!("# pins\n[127.0.0.1]:{port} {}\n", server.known_hosts_key());
    let cfg = config(
        &server,
        "admin",
        SshAuth::Password(PASSWORD.into()),
        HostKeyPolicy::KnownHostsLines(plain),
    );
    Client::connect(cfg).await.unwrap();

    // A hashed entry as `ssh-keygen -H` writes it, read from a file.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = [42u8; 20];
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    let tag = ring::hmac::sign(&key, format!("[127.0.0.1]:{port}").as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(
        &path,
        format!(
            "|1|{}|{} {}\n",
            b64.encode(salt),
            b64.encode(tag.as_ref()),
            server.known_hosts_key()
        ),
    )
    .unwrap();
    let cfg = config(
        &server,
        "admin",
        SshAuth::Password(PASSWORD.into()),
        HostKeyPolicy::KnownHostsFile(path),
    );
    Client::connect(cfg).await.unwrap();
}

#[tokio::test]
async fn key_authentication_ed25519_and_rsa_and_refused_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let ed_path = dir.path().join("id_ed25519");
    let ed = server::ed25519_key(9);
    std::fs::write(
        &ed_path,
        ed.to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let mut authorized = vec![ed.public_key().clone()];

    let rsa_path = dir.path().join("id_rsa");
    let have_rsa = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&rsa_path)
        .status()
        .is_ok_and(|s| s.success());
    if have_rsa {
        authorized.push(
            russh::keys::load_secret_key(&rsa_path, None)
                .unwrap()
                .public_key()
                .clone(),
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ssh-keygen is required in CI"
        );
        eprintln!("ssh-keygen not found: skipping the RSA key part of this test");
    }

    let mut opts = ServerOptions::new(|_| system_info_reply("7.21.5"));
    opts.authorized_keys = authorized;
    let server = SshServer::start(opts).await;
    let pin = HostKeyPolicy::Fingerprints(vec![server.fingerprint.clone()]);

    let cfg = config(
        &server,
        "csi",
        SshAuth::KeyFile {
            path: ed_path,
            passphrase: None,
        },
        pin.clone(),
    );
    Client::connect(cfg).await.unwrap();
    if have_rsa {
        let cfg = config(
            &server,
            "csi",
            SshAuth::KeyFile {
                path: rsa_path,
                passphrase: None,
            },
            pin.clone(),
        );
        Client::connect(cfg).await.unwrap();
    }
    let other_key = dir.path().join("other");
    std::fs::write(
        &other_key,
        server::ed25519_key(10)
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let cfg = config(
        &server,
        "csi",
        SshAuth::KeyFile {
            path: other_key,
            passphrase: None,
        },
        pin.clone(),
    );
    assert!(matches!(
        Client::connect(cfg).await,
        Err(Error::Unauthenticated(_))
    ));
    let cfg = config(
        &server,
        "csi",
        SshAuth::Password("wrong".into()),
        pin.clone(),
    );
    let err = Client::connect(cfg).await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "the password is not echoed: {err}"
    );
    let cfg = config(
        &server,
        "csi",
        SshAuth::KeyFile {
            path: dir.path().join("missing"),
            passphrase: None,
        },
        pin,
    );
    assert!(matches!(Client::new(cfg), Err(Error::Invalid(_))));
}

#[tokio::test]
async fn each_operation_is_one_exec_with_the_contract_text() {
    let size = 10u64 << 30;
    let grown = 20u64 << 30;
    let s = spec("pvc-1", size);
    let add = routeros::command::create_disk(&routeros::CreateDisk {
        spec: &s,
        send_nqn: true,
    });
    assert!(
        add.contains("comment=\"ns/app\\3B \\22quoted\\22 \\5Bx\\5D \\24y\""),
        "{add}"
    );
    let get =
        ":put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]".to_owned();
    let grow = format!("/disk set [find where slot=\"pvc-1\"] file-size={grown};{get}");
    let list = ":put [:serialize to=json [/disk print detail as-value where type=file and slot~\"\\5Epvc-\"]]".to_owned();
    let remove = "/disk remove *1A".to_owned();
    let facts = routeros::command::volume_facts(
        &slot("pvc-1"),
        &routeros::DirPath::try_from("storage-pool").unwrap(),
    );
    let file = ":put [:serialize to=json [/file print detail as-value where name=\"storage-pool/pvc-1.img\"]]".to_owned();
    let rmfile = "/file remove [find where name=\"storage-pool/pvc-1.img\"]".to_owned();
    let pool = ":put [:serialize to=json [/disk print detail as-value where mount-point=\"storage-pool\"]]".to_owned();
    let expected = [
        add.clone(),
        get.clone(),
        grow.clone(),
        list.clone(),
        facts.clone(),
        remove.clone(),
        file.clone(),
        rmfile.clone(),
        pool.clone(),
    ];
    let server = SshServer::start(ServerOptions::new(move |cmd| {
        let json_reply = |v: serde_json::Value| Reply::ok(&format!("{}\r\n", wrap(&v.to_string())));
        match cmd {
            c if c == SYSTEM_INFO => system_info_reply("7.21.5 (stable)"),
            c if c == add => Reply::ok(&format!(
                "[]\r\n[]\r\n\"*1A\"\r\n{}\r\n",
                wrap(&json!([disk_json("pvc-1", size, true)]).to_string())
            )),
            c if c == get => json_reply(json!([disk_json("pvc-1", size, true)])),
            c if c == facts => Reply::ok(&format!(
                "{}\r\n[]\r\n{}\r\n",
                json!([disk_json("pvc-1", size, true)]),
                json!([disk_json("pvc-1", size, true), disk_json("other", size, true)])
            )),
            c if c == grow => json_reply(json!([disk_json("pvc-1", grown, true)])),
            c if c == list => json_reply(json!([disk_json("pvc-1", size, true), disk_json("pvc-2", size, true)])),
            c if c == remove || c == rmfile => Reply::ok(""),
            // Floats, as `:serialize` emits on some versions.
            c if c == file => Reply::ok(r#"[{".id":"*9","name":"storage-pool/pvc-1.img","type":".img file","size":10737418240.000000,"last-modified":"2026-11-26 13:37:00"}]"#),
            c if c == pool => json_reply(json!([{".id": "*2", "type": "raid", "slot": "storage-pool", "mount-point": "storage-pool",
                "fs": "btrfs", "size": 8u64 << 40, "free": 5u64 << 40, "use": 37, "mounted": true, "state": "clean", "raid-type": "raid5"}])),
            other => Reply::ok(&format!("bad command name {other} (line 1 column 1)\r\n")),
        }
    }))
    .await;
    let client = Client::new(pinned(&server)).unwrap();
    let CreateOutcome::Created(disk) = client.create_file_disk(&s).await.unwrap() else {
        panic!("not created")
    };
    assert_eq!(
        (disk.file_size, disk.nqn.as_str(), disk.nqn_source),
        (size, "nqn.2000-02.com.mikrotik:pvc-1", NqnSource::ServerNqn)
    );
    assert_eq!(disk.file_path, "storage-pool/pvc-1.img");
    assert_eq!(
        client.get_disk(&slot("pvc-1")).await.unwrap().unwrap(),
        disk
    );
    assert_eq!(
        client
            .grow_disk(&slot("pvc-1"), grown)
            .await
            .unwrap()
            .file_size,
        grown
    );
    assert_eq!(client.list_disks("pvc-").await.unwrap().len(), 2);
    let facts = client
        .volume_facts(
            &slot("pvc-1"),
            &routeros::DirPath::try_from("storage-pool").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(facts.slot_items.len(), 1);
    assert_eq!(
        facts.image_users.len(),
        1,
        "only disks whose image is named <slot>.img"
    );
    client
        .remove_disk(&ItemId::try_from("*1A").unwrap(), None)
        .await
        .unwrap();
    let f = client.get_file(&s.file_path).await.unwrap().unwrap();
    assert_eq!(f.size, size);
    client.remove_file(&s.file_path).await.unwrap();
    let p = client.pool("storage-pool").await.unwrap();
    assert_eq!((p.size, p.free, p.fs.as_str()), (8 << 40, 5 << 40, "btrfs"));

    let commands = server.stats.commands.lock().unwrap().clone();
    assert_eq!(commands[0], SYSTEM_INFO, "version detected once, first");
    assert_eq!(
        commands[1..],
        expected,
        "one exec per operation, exact text"
    );
}

#[tokio::test]
async fn device_errors_and_bad_read_backs_are_typed() {
    let server = SshServer::start(ServerOptions::new(|cmd| {
        if cmd == SYSTEM_INFO {
            system_info_reply("7.21.5")
        } else if cmd.contains("/disk add") && cmd.contains("slot=\"dup\"") {
            Reply::ok("[]\r\n[]\r\nfailure: disk with slot dup already exists\r\n")
        } else if cmd.contains("/disk add") && cmd.contains("slot=\"full\"") {
            Reply {
                exit: 1,
                ..Reply::ok("[]\r\n[]\r\nfailure: not enough free space on storage-pool\r\n")
            }
        } else if cmd.contains("/disk add") && cmd.contains("slot=\"odd\"") {
            // Added although the slot was taken: a reply we cannot trust.
            Reply::ok("[\"*3\"]\r\n[]\r\n\"*4\"\r\n[]\r\n")
        } else if cmd.contains("/disk add") {
            // The device "rounded" the size: verification must catch it.
            Reply::ok(&format!(
                "[][]\"*1A\"{}",
                json!([disk_json("short", 4096, true)])
            ))
        } else if cmd.starts_with("/disk set") {
            Reply::ok("[]\r\n")
        } else if cmd.starts_with("/file remove") {
            Reply {
                exit: 1,
                ..Reply::ok("")
            }
        } else {
            Reply::ok("{\"truncated\": ")
        }
    }))
    .await;
    let client = Client::new(pinned(&server)).unwrap();
    assert!(
        matches!(client.create_file_disk(&spec("dup", 1 << 20)).await, Err(Error::AlreadyExists(m)) if m.contains("dup already exists"))
    );
    assert!(matches!(
        client.create_file_disk(&spec("full", 1 << 20)).await,
        Err(Error::NoSpace(_))
    ));
    let Ok(CreateOutcome::CreatedMismatch { id, reason }) =
        client.create_file_disk(&spec("short", 8192)).await
    else {
        panic!("accepted")
    };
    assert_eq!(id.as_str(), "*1A");
    assert!(
        reason.contains("file-size: asked 8192, device has 4096"),
        "{reason}"
    );
    assert!(matches!(
        client.create_file_disk(&spec("odd", 8192)).await,
        Err(Error::Protocol(_))
    ));
    assert!(matches!(
        client.grow_disk(&slot("gone"), 1 << 30).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        client
            .remove_file(&FilePath::try_from("p/x.img").unwrap())
            .await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        client.get_disk(&slot("x")).await,
        Err(Error::Protocol(_))
    ));
}

#[tokio::test]
async fn pre_7_21_devices_get_no_nqn_argument() {
    let server = SshServer::start(ServerOptions::new(|cmd| {
        if cmd == SYSTEM_INFO {
            system_info_reply("7.20.8 (long-term)")
        } else if cmd.contains("nvme-tcp-server-nqn") {
            Reply::ok("expected end of command (line 1 column 180)\r\n")
        } else {
            Reply::ok(&format!(
                "[][]\"*1A\"{}",
                json!([disk_json("pvc-7", 1 << 20, false)])
            ))
        }
    }))
    .await;
    let client = Client::new(pinned(&server)).unwrap();
    let Ok(CreateOutcome::Created(disk)) = client.create_file_disk(&spec("pvc-7", 1 << 20)).await
    else {
        panic!("not created")
    };
    assert_eq!(
        (disk.nqn.as_str(), disk.nqn_source),
        ("pvc-7", NqnSource::SlotName)
    );
}

fn get_disk_server(delay: Duration, max_channels: usize) -> ServerOptions {
    let mut opts = ServerOptions::new(move |cmd| {
        if cmd == SYSTEM_INFO {
            return system_info_reply("7.21.5");
        }
        let reply = if cmd.contains("drop-me") {
            Reply::drop_connection()
        } else {
            Reply::ok("[]\r\n")
        };
        Reply { delay, ..reply }
    });
    opts.max_channels = max_channels;
    opts
}

#[tokio::test]
async fn concurrency_is_bounded_on_one_connection() {
    let server = SshServer::start(get_disk_server(Duration::from_millis(30), 100)).await;
    let mut cfg = pinned(&server);
    cfg.max_concurrency = 4;
    let client = Client::new(cfg).unwrap();
    let started = Instant::now();
    let gets = (0..24).map(|i| {
        let client = client.clone();
        async move { client.get_disk(&slot(&format!("pvc-{i}"))).await }
    });
    for result in futures::future::join_all(gets).await {
        assert_eq!(result.unwrap(), None);
    }
    assert_eq!(server.stats.max_in_flight.load(Ordering::SeqCst), 4);
    assert_eq!(
        server.stats.connections.load(Ordering::SeqCst),
        1,
        "one connection, many channels"
    );
    // 24 commands, 4 at a time, 30 ms each: at least 6 rounds.
    assert!(started.elapsed() >= Duration::from_millis(180));
}

#[tokio::test]
async fn a_refused_session_is_unavailable_and_keeps_the_connection() {
    let server = SshServer::start(get_disk_server(Duration::from_millis(300), 1)).await;
    let client = Client::new(pinned(&server)).unwrap();
    let first = slot("a");
    let (a, b) = tokio::join!(client.get_disk(&first), async {
        // Let the first command take the only session.
        server.stats.wait_in_flight(1).await;
        client.get_disk(&slot("b")).await
    });
    assert_eq!(a.unwrap(), None);
    let err = b.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(_)) && err.is_retryable(),
        "{err}"
    );
    assert!(err.to_string().contains("session"), "{err}");
    assert_eq!(client.get_disk(&slot("c")).await.unwrap(), None);
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_dropped_connection_is_remade_by_the_next_command_and_the_version_reread() {
    let server = SshServer::start(get_disk_server(Duration::ZERO, 100)).await;
    let client = Client::new(pinned(&server)).unwrap();
    client.version().await.unwrap();
    let err = client.get_disk(&slot("drop-me")).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert_eq!(client.get_disk(&slot("after")).await.unwrap(), None);
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 2);
    client.version().await.unwrap();
    let system_infos = server
        .stats
        .commands
        .lock()
        .unwrap()
        .iter()
        .filter(|c| *c == SYSTEM_INFO)
        .count();
    assert_eq!(
        system_infos, 2,
        "the version is read again on the new connection"
    );
}

#[tokio::test]
async fn reconnect_backs_off_then_succeeds_when_the_device_returns() {
    let server = SshServer::start(get_disk_server(Duration::ZERO, 100)).await;
    let addr = server.addr;
    let fingerprint = server.fingerprint.clone();
    let client = Client::new(pinned(&server)).unwrap();
    assert_eq!(client.get_disk(&slot("a")).await.unwrap(), None);
    server.stop().await;

    // The dead connection is noticed and a reconnect attempted: refused.
    let err = client.get_disk(&slot("b")).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    // Within the backoff window the client fails fast without touching the network.
    let err = client.get_disk(&slot("c")).await.unwrap_err();
    assert!(err.to_string().contains("next reconnect attempt"), "{err}");

    let server = SshServer::start_on(addr, get_disk_server(Duration::ZERO, 100)).await;
    assert_eq!(server.fingerprint, fingerprint);
    // Wait out the (jittered, <= 100 ms) first backoff step.
    tokio::time::sleep(Duration::from_millis(110)).await;
    assert_eq!(client.get_disk(&slot("d")).await.unwrap(), None);
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_that_stops_answering_is_replaced() {
    let mut opts = get_disk_server(Duration::ZERO, 100);
    opts.stall_first_connection = true;
    let server = SshServer::start(opts).await;
    let mut cfg = pinned(&server);
    cfg.connect_timeout = Duration::from_millis(200);
    let client = Client::new(cfg).unwrap();
    let started = Instant::now();
    assert_eq!(client.get_disk(&slot("a")).await.unwrap(), None);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_command_past_its_deadline_is_unavailable_and_its_session_closed() {
    let server = SshServer::start(get_disk_server(Duration::from_secs(10), 100)).await;
    let mut cfg = pinned(&server);
    cfg.command_timeout = Duration::from_millis(300);
    let client = Client::new(cfg).unwrap();
    let started = Instant::now();
    let err = client.get_disk(&slot("slow")).await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(_)) && err.is_retryable(),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The abandoned channel is closed so it does not hold one of the device's sessions.
    tokio::time::timeout(Duration::from_secs(2), server.stats.wait_client_closes(1))
        .await
        .expect("channel closed by the client");
}

mod server {
    //! A minimal scripted SSH server (russh) for transport tests.

    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use russh::keys::ssh_key::private::Ed25519Keypair;
    use russh::keys::{PrivateKey, PublicKey};
    use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
    use russh::{Channel, ChannelId, ChannelOpenFailure};
    use tokio::net::TcpListener;
    use tokio::sync::watch;
    use tokio::task::JoinSet;

    #[derive(Clone)]
    pub struct Reply {
        pub stdout: String,
        pub exit: u32,
        pub delay: Duration,
        pub drop_connection: bool,
    }

    impl Reply {
        pub fn ok(stdout: &str) -> Self {
            Self {
                stdout: stdout.to_owned(),
                exit: 0,
                delay: Duration::ZERO,
                drop_connection: false,
            }
        }
        pub fn drop_connection() -> Self {
            Self {
                drop_connection: true,
                ..Self::ok("")
            }
        }
    }

    pub type Responder = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

    pub struct ServerOptions {
        pub responder: Responder,
        pub authorized_keys: Vec<PublicKey>,
        pub max_channels: usize,
        /// The first connection stops answering session requests (a silent network failure).
        pub stall_first_connection: bool,
    }

    impl ServerOptions {
        pub fn new(responder: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Self {
            Self {
                responder: Arc::new(responder),
                authorized_keys: Vec::new(),
                max_channels: 100,
                stall_first_connection: false,
            }
        }
    }

    pub fn ed25519_key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    pub struct Stats {
        pub connections: AtomicUsize,
        pub users: Mutex<Vec<String>>,
        pub commands: Mutex<Vec<String>>,
        pub max_in_flight: AtomicUsize,
        in_flight: watch::Sender<usize>,
        open_channels: AtomicUsize,
        client_closes: watch::Sender<usize>,
    }

    impl Stats {
        pub async fn wait_in_flight(&self, n: usize) {
            let mut rx = self.in_flight.subscribe();
            rx.wait_for(|v| *v >= n).await.unwrap();
        }
        pub async fn wait_client_closes(&self, n: usize) {
            let mut rx = self.client_closes.subscribe();
            rx.wait_for(|v| *v >= n).await.unwrap();
        }
    }

    pub struct SshServer {
        pub addr: SocketAddr,
        pub fingerprint: String,
        pub stats: Arc<Stats>,
        host_key: PrivateKey,
        tasks: JoinSet<()>,
        sessions: Arc<Mutex<Vec<russh::server::Handle>>>,
    }

    impl SshServer {
        pub async fn start(options: ServerOptions) -> Self {
            Self::start_on("127.0.0.1:0".parse().unwrap(), options).await
        }

        pub async fn start_on(addr: SocketAddr, options: ServerOptions) -> Self {
            let host_key = ed25519_key(1);
            let config = Arc::new(russh::server::Config {
                keys: vec![host_key.clone()],
                auth_rejection_time: Duration::ZERO,
                auth_rejection_time_initial: Some(Duration::ZERO),
                inactivity_timeout: None,
                nodelay: true,
                ..Default::default()
            });
            let listener = TcpListener::bind(addr).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let stats = Arc::new(Stats {
                connections: AtomicUsize::new(0),
                users: Mutex::new(Vec::new()),
                commands: Mutex::new(Vec::new()),
                max_in_flight: AtomicUsize::new(0),
                in_flight: watch::Sender::new(0),
                open_channels: AtomicUsize::new(0),
                client_closes: watch::Sender::new(0),
            });
            let options = Arc::new(options);
            let mut tasks = JoinSet::new();
            let accept_stats = stats.clone();
            let sessions = Arc::new(Mutex::new(Vec::new()));
            let accept_sessions = sessions.clone();
            tasks.spawn(async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    let index = accept_stats.connections.fetch_add(1, Ordering::SeqCst) + 1;
                    let handler = Conn {
                        options: options.clone(),
                        stats: accept_stats.clone(),
                        open: Default::default(),
                        stalled: options.stall_first_connection && index == 1,
                    };
                    // russh runs each session in its own task; keep a handle to end it.
                    if let Ok(session) =
                        russh::server::run_stream(config.clone(), socket, handler).await
                    {
                        accept_sessions.lock().unwrap().push(session.handle());
                    }
                }
            });
            let fingerprint = host_key
                .public_key()
                .fingerprint(russh::keys::HashAlg::Sha256)
                .to_string();
            Self {
                addr,
                fingerprint,
                stats,
                host_key,
                tasks,
                sessions,
            }
        }

        /// `ssh-ed25519 BASE64` for known_hosts lines.
        pub fn known_hosts_key(&self) -> String {
            self.host_key.public_key().to_openssh().unwrap()
        }

        /// Stops listening and disconnects every session, as a device going down would.
        pub async fn stop(mut self) {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
            let sessions = std::mem::take(&mut *self.sessions.lock().unwrap());
            for session in sessions {
                let _ = session
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "going down".into(),
                        String::new(),
                    )
                    .await;
            }
        }
    }

    struct Conn {
        options: Arc<ServerOptions>,
        stats: Arc<Stats>,
        /// Channels of this connection that still await their reply.
        open: Arc<Mutex<HashSet<ChannelId>>>,
        stalled: bool,
    }

    impl Conn {
        fn finish(stats: &Stats, open: &Mutex<HashSet<ChannelId>>, id: ChannelId) -> bool {
            if !open.lock().unwrap().remove(&id) {
                return false;
            }
            stats.open_channels.fetch_sub(1, Ordering::SeqCst);
            stats.in_flight.send_modify(|v| *v = v.saturating_sub(1));
            true
        }
    }

    impl russh::server::Handler for Conn {
        type Error = russh::Error;

        async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
            if password == super::PASSWORD {
                self.stats.users.lock().unwrap().push(user.to_owned());
                Ok(Auth::Accept)
            } else {
                Ok(Auth::reject())
            }
        }

        async fn auth_publickey(
            &mut self,
            user: &str,
            key: VerifiedPublicKey<'_>,
        ) -> Result<Auth, Self::Error> {
            if self
                .options
                .authorized_keys
                .iter()
                .any(|k| k.key_data() == key.public_key.key_data())
            {
                self.stats.users.lock().unwrap().push(user.to_owned());
                Ok(Auth::Accept)
            } else {
                Ok(Auth::reject())
            }
        }

        async fn channel_open_session(
            &mut self,
            channel: Channel<Msg>,
            reply: ChannelOpenHandle,
            _: &mut Session,
        ) -> Result<(), Self::Error> {
            if self.stalled {
                // Handler calls are sequential per connection: this silences it for good.
                std::future::pending::<()>().await;
            }
            let now = self.stats.open_channels.fetch_add(1, Ordering::SeqCst) + 1;
            if now > self.options.max_channels {
                self.stats.open_channels.fetch_sub(1, Ordering::SeqCst);
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
                return Ok(());
            }
            self.open.lock().unwrap().insert(channel.id());
            reply.accept().await;
            Ok(())
        }

        async fn channel_close(
            &mut self,
            channel: ChannelId,
            _: &mut Session,
        ) -> Result<(), Self::Error> {
            if Self::finish(&self.stats, &self.open, channel) {
                self.stats.client_closes.send_modify(|v| *v += 1);
            }
            Ok(())
        }

        async fn exec_request(
            &mut self,
            channel: ChannelId,
            data: &[u8],
            session: &mut Session,
        ) -> Result<(), Self::Error> {
            let command = String::from_utf8_lossy(data).into_owned();
            self.stats.commands.lock().unwrap().push(command.clone());
            let reply = (self.options.responder)(&command);
            if reply.drop_connection {
                return Err(russh::Error::Disconnect);
            }
            session.channel_success(channel)?;
            let mut now = 0;
            self.stats.in_flight.send_modify(|v| {
                *v += 1;
                now = *v;
            });
            self.stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let handle = session.handle();
            let (stats, open) = (self.stats.clone(), self.open.clone());
            tokio::spawn(async move {
                tokio::time::sleep(reply.delay).await;
                if !Conn::finish(&stats, &open, channel) {
                    return; // the client gave up and closed the channel
                }
                if !reply.stdout.is_empty() {
                    let _ = handle.data(channel, reply.stdout.into_bytes()).await;
                }
                let _ = handle.exit_status_request(channel, reply.exit).await;
                let _ = handle.eof(channel).await;
                let _ = handle.close(channel).await;
            });
            Ok(())
        }
    }
}

/// A connection carries a bounded number of commands; the next goes over a new one, and
/// nothing fails on the way.
#[tokio::test]
async fn a_connection_is_replaced_after_its_commands() {
    let server = SshServer::start(get_disk_server(Duration::ZERO, 100)).await;
    let mut cfg = pinned(&server);
    cfg.max_concurrency = 16;
    let client = Client::new(cfg).unwrap();
    let total = routeros::ssh::COMMANDS_PER_CONNECTION as usize + 10;
    let gets = (0..total).map(|n| {
        let client = client.clone();
        async move { client.get_disk(&slot(&format!("pvc-{n}"))).await }
    });
    for got in futures::future::join_all(gets).await {
        assert_eq!(got.unwrap(), None);
    }
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 2);
}
