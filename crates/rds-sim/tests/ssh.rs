//! The SSH CLI over real SSH connections.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rds_sim::{DiskKind, Faults, SimConfig, Simulator};

#[tokio::test]
async fn the_client_statements_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;

    let info = exec(
        &conn,
        ":put [:serialize to=json [/system resource print as-value]];:put [:serialize to=json [/system identity print as-value]]",
    )
    .await;
    let values = json_values(&info.stdout);
    assert_eq!(values.len(), 2);
    assert_eq!(values[0]["version"], "7.21.5 (stable)");
    assert_eq!(values[0]["board-name"], "RDS2216");
    assert_eq!(values[1]["name"], "MikroTik");
    assert_eq!(info.exit_status, Some(0));

    let created = exec(&conn, &create_script("pvc-1", 1 << 30)).await;
    assert_eq!(created.exit_status, Some(0));
    let disk = &json_values(&created.stdout)[0][0];
    assert_eq!(disk["slot"], "pvc-1");
    assert_eq!(disk["file-size"], 1u64 << 30);
    assert_eq!(
        disk["nvme-tcp-server-nqn"],
        "nqn.2000-02.com.mikrotik:pvc-1"
    );
    // Every output line is CRLF-terminated and at most 80 columns.
    assert!(created.stdout.ends_with("\r\n"));
    assert!(
        created
            .stdout
            .split("\r\n")
            .all(|l| l.chars().count() <= 80)
    );
    assert!(
        created.stdout.split("\r\n").count() > 3,
        "long JSON is wrapped"
    );

    let listed = exec(
        &conn,
        ":put [:serialize to=json [/disk print detail as-value where type=file and slot~\"^pvc\\2D\"]]",
    )
    .await;
    assert_eq!(json_values(&listed.stdout)[0].as_array().unwrap().len(), 1);

    let pool = exec(&conn, ":put [:serialize to=json [/disk print detail as-value where mount-point=\"storage-pool\"]]").await;
    let pool = &json_values(&pool.stdout)[0][0];
    assert_eq!(pool["type"], "raid");
    assert_eq!(pool["free"], (1u64 << 40) - 4096, "a sparse image");

    let grown = exec(
        &conn,
        "/disk set [find where slot=\"pvc-1\"] file-size=2147483648;:put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]",
    )
    .await;
    assert_eq!(json_values(&grown.stdout)[0][0]["file-size"], 2u64 << 30);
    let backing = sim.backing_file("storage-pool/pvc-1.img");
    assert_eq!(std::fs::metadata(&backing).unwrap().len(), 2 << 30);

    let removed = exec(&conn, "/disk remove [find where slot=\"pvc-1\"]").await;
    assert_eq!(
        (removed.stdout.as_str(), removed.exit_status),
        ("", Some(0))
    );
    let again = exec(&conn, "/disk remove [find where slot=\"pvc-1\"]").await;
    assert_eq!(again.stdout, "", "no match is a silent no-op");
    assert!(backing.exists(), "the image outlives the disk");

    let file = exec(&conn, ":put [:serialize to=json [/file print detail as-value where name=\"storage-pool/pvc-1.img\"]]").await;
    let file = &json_values(&file.stdout)[0][0];
    assert_eq!(file["type"], ".img file");
    assert_eq!(file["size"], 2u64 << 30);

    exec(
        &conn,
        "/file remove [find where name=\"storage-pool/pvc-1.img\"]",
    )
    .await;
    assert!(!backing.exists());
    let snapshot = sim.snapshot();
    assert_eq!(snapshot.file_disks().count(), 0);
    assert_eq!(snapshot.plain_files().count(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_come_back_as_device_text() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    exec(&conn, &create_script("pvc-1", 1 << 20)).await;

    let dup = exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    assert_eq!(
        dup.stdout,
        "failure: disk with slot pvc-1 already exists\r\n"
    );
    assert_eq!(dup.exit_status, Some(0));

    let cases = [
        ("/disk frob", "bad command name frob (line 1 column 7)\r\n"),
        (
            "/disk add bogus=1",
            "expected end of command (line 1 column 11)\r\n",
        ),
        ("/disk set nosuchslot comment=x", "no such item\r\n"),
        (
            "/disk add type=file file-path=\"elsewhere/x.img\" file-size=1M",
            "failure: invalid file path\r\n",
        ),
        (
            "/disk set pvc-1 file-size=1",
            "failure: file-size can not be reduced\r\n",
        ),
        (
            "/disk add type=file file-path=storage-pool/y.img file-size=lots",
            "invalid value for argument file-size\r\n",
        ),
        (
            "/disk add type=file file-path=storage-pool/y.img file-size=1M nvme-tcp-export=maybe",
            "input does not match any value of nvme-tcp-export\r\n",
        ),
        (
            "/disk add type=file slot=other file-path=\"storage-pool/pvc-1.img\" file-size=1M",
            "failure: file already exists\r\n",
        ),
    ];
    for (command, expected) in cases {
        assert_eq!(exec(&conn, command).await.stdout, expected, "{command}");
    }

    sim.faults().update(|f| f.exit_status_on_error = true);
    let failed = exec(&conn, "/disk set nosuchslot comment=x").await;
    assert_eq!(failed.exit_status, Some(1));
    assert_eq!(exec(&conn, ":put ok").await.exit_status, Some(0));
    sim.shutdown().await;
}

#[tokio::test]
async fn version_7_20_has_no_nqn_argument_and_exports_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.routeros_version = "7.20.2".parse().unwrap();
    let sim = Simulator::start(config).await.unwrap();
    let conn = connect(&sim).await;

    let refused = exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    assert_eq!(
        refused.stdout,
        "expected end of command (line 1 column 153)\r\n"
    );
    assert!(
        sim.snapshot().disk_by_slot("pvc-1").is_none(),
        "a parse error runs nothing"
    );

    let ok = exec(
        &conn,
        "/disk add type=file slot=\"pvc-1\" file-path=\"storage-pool/pvc-1.img\" file-size=1048576 mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420;\
         :put [:serialize to=json [/system resource print as-value]]",
    )
    .await;
    assert_eq!(json_values(&ok.stdout)[0]["version"], "7.20.2 (stable)");
    let exports = sim.exports();
    assert_eq!(exports[0].nqn, "pvc-1");
    sim.shutdown().await;
}

#[tokio::test]
async fn version_7_16_has_no_file_disks() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.routeros_version = "7.16.2".parse().unwrap();
    let sim = Simulator::start(config).await.unwrap();
    let conn = connect(&sim).await;
    let refused = exec(
        &conn,
        "/disk add type=file file-path=\"storage-pool/a.img\" file-size=1M",
    )
    .await;
    assert_eq!(
        refused.stdout,
        "expected end of command (line 1 column 21)\r\n"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn logins_passwords_keys_and_user_options() {
    let dir = tempfile::tempdir().unwrap();
    let user_key = random_ed25519();
    let mut config = config(dir.path());
    config.authorized_keys = vec![user_key.public_key().clone()];
    let sim = Simulator::start(config).await.unwrap();

    let mut conn = connect_raw(&sim).await;
    assert!(
        !conn
            .authenticate_password("root", PASSWORD)
            .await
            .unwrap()
            .success()
    );
    assert!(
        !conn
            .authenticate_password("admin", "wrong")
            .await
            .unwrap()
            .success()
    );
    assert!(
        !conn
            .authenticate_password("admin", "wrong again")
            .await
            .unwrap()
            .success()
    );
    // RouterOS ignores `+opts` after the name.
    assert!(
        conn.authenticate_password("admin+ct80w", PASSWORD)
            .await
            .unwrap()
            .success()
    );
    assert_eq!(exec(&conn, ":put hi").await.stdout, "hi\r\n");

    let mut conn = connect_raw(&sim).await;
    let key = russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(user_key), None);
    assert!(
        conn.authenticate_publickey(USER, key)
            .await
            .unwrap()
            .success()
    );
    assert_eq!(
        exec(&conn, ":put [/system identity get name]").await.stdout,
        "MikroTik\r\n"
    );
    // Shutdown ends every live connection (three here).
    tokio::time::timeout(Duration::from_secs(10), sim.shutdown())
        .await
        .expect("shutdown in time");
}

#[tokio::test]
async fn refuses_to_start_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let err = Simulator::start(SimConfig::new(dir.path()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("refusing to start an open device"),
        "{err}"
    );
}

#[tokio::test]
async fn the_session_cap_refuses_channel_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.faults = Faults {
        max_sessions: 2,
        ..Faults::default()
    };
    let sim = Simulator::start(config).await.unwrap();
    let conn = connect(&sim).await;
    let first = conn.channel_open_session().await.unwrap();
    let _second = conn.channel_open_session().await.unwrap();
    assert!(
        conn.channel_open_session().await.is_err(),
        "third session refused"
    );
    assert_eq!(sim.active_sessions(), 2);

    // The server handles messages of a connection in order, so the close
    // frees the slot before the next open arrives.
    first.close().await.unwrap();
    assert_eq!(exec(&conn, ":put again").await.stdout, "again\r\n");
    assert_eq!(
        sim.active_sessions(),
        1,
        "only the idle second channel holds a slot"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn commands_of_one_connection_run_concurrently_with_latency() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    sim.faults().update(|f| f.latency_ms = 200);
    let conn = connect(&sim).await;
    let started = Instant::now();
    let runs = (0..8).map(|i| {
        let conn = &conn;
        async move { exec(conn, &create_script(&format!("pvc-{i}"), 1 << 20)).await }
    });
    let results = futures::future::join_all(runs).await;
    let elapsed = started.elapsed();
    assert!(
        results
            .iter()
            .all(|r| json_values(&r.stdout)[0][0]["slot"].is_string())
    );
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(1200),
        "8 commands were serialised: {elapsed:?}"
    );
    assert_eq!(sim.snapshot().file_disks().count(), 8);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_drop_fail_and_floats() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;

    sim.faults().update(|f| f.drop_next = 1);
    let conn = connect(&sim).await;
    let dropped = exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    assert_eq!(
        (dropped.stdout.as_str(), dropped.exit_status, dropped.closed),
        ("", None, false)
    );
    assert!(
        sim.snapshot().disk_by_slot("pvc-1").is_none(),
        "a dropped command does not run"
    );
    // A lost reply: the command ran, the caller hears nothing.
    sim.faults().update(|f| f.lose_reply_percent = 100);
    let lost = exec(&connect(&sim).await, &create_script("pvc-lost", 1 << 20)).await;
    assert_eq!((lost.stdout.as_str(), lost.exit_status), ("", None));
    assert!(sim.snapshot().disk_by_slot("pvc-lost").is_some(), "it ran");
    sim.faults().update(|f| f.lose_reply_percent = 0);

    // Through the control file, as an operator would.
    let control = sim.data_dir().join("faults.json");
    std::fs::write(
        &control,
        r#"{"fail_next": 1, "fail_message": "failure: device busy", "float_numbers": true}"#,
    )
    .unwrap();
    let conn = connect(&sim).await;
    assert_eq!(
        exec(&conn, ":put x").await.stdout,
        "failure: device busy\r\n"
    );
    let created = exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    assert!(
        created
            .stdout
            .replace("\r\n", "")
            .contains("\"file-size\":1048576.000000"),
        "{}",
        created.stdout
    );
    std::fs::remove_file(&control).unwrap();
    let plain = exec(
        &conn,
        ":put [:serialize to=json [/disk print as-value where slot=pvc-1]]",
    )
    .await;
    assert!(
        plain
            .stdout
            .replace("\r\n", "")
            .contains("\"file-size\":1048576,")
    );

    sim.faults().update(|f| f.pool_full = true);
    let full = exec(&conn, &create_script("pvc-2", 1)).await;
    assert_eq!(
        full.stdout,
        "failure: not enough free space on storage-pool\r\n"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn shell_requests_get_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    let mut channel = conn.channel_open_session().await.unwrap();
    channel.request_shell(true).await.unwrap();
    let mut out = Vec::new();
    let mut status = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
            russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("runs commands only")
    );
    assert_eq!(status, Some(1));
    sim.shutdown().await;
}

/// OpenSSH's own client against the simulator (public-key login).
#[tokio::test]
async fn openssh_client_can_drive_it() {
    let Some(ssh) = find_in_path("ssh") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the OpenSSH client"
        );
        println!("SKIPPED: OpenSSH `ssh` is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = random_ed25519();
    let key_path = dir.path().join("id_ed25519");
    key.write_openssh_file(&key_path, russh::keys::ssh_key::LineEnding::LF)
        .unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let mut config = config(dir.path());
    config.authorized_keys = vec![key.public_key().clone()];
    let sim = Simulator::start(config).await.unwrap();
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {}\n",
            sim.ssh_addr().port(),
            sim.host_public_key_openssh()
        ),
    )
    .unwrap();

    let run = |command: &str| {
        let mut cmd = tokio::process::Command::new(&ssh);
        cmd.args(["-p", &sim.ssh_addr().port().to_string()])
            .args(["-i", key_path.to_str().unwrap()])
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .args([
                "-o",
                &format!("UserKnownHostsFile={}", known_hosts.display()),
            ])
            .arg("admin@127.0.0.1")
            .arg(command)
            .kill_on_drop(true);
        cmd.output()
    };
    let out = tokio::time::timeout(Duration::from_secs(20), run("/disk print"))
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("Flags: B - BLOCK-DEVICE; M - MOUNTED\r\n"),
        "{stdout:?}"
    );
    assert!(stdout.contains("storage-pool"));

    let out = tokio::time::timeout(
        Duration::from_secs(20),
        run(&create_script("pvc-9", 1 << 20)),
    )
    .await
    .unwrap()
    .unwrap();
    let values = json_values(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(values[0][0]["slot"], "pvc-9");
    assert!(matches!(
        sim.snapshot().disk_by_slot("pvc-9").unwrap().kind,
        DiskKind::File { .. }
    ));
    sim.shutdown().await;
}

fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|p| p.is_file())
}
