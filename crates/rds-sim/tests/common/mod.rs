//! Helpers shared by the integration tests: a simulator in a temp dir, a
//! real SSH client (russh) that checks the host key, and an HTTPS client
//! that trusts only the simulator's certificate.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rds_sim::{SimConfig, SimHandle, Simulator};
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{PublicKey, PublicKeyOrCertificate};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "correct horse";

pub fn config(dir: &std::path::Path) -> SimConfig {
    SimConfig::new(dir.join("data")).with_password(PASSWORD)
}

pub async fn start(dir: &std::path::Path) -> SimHandle {
    Simulator::start(config(dir))
        .await
        .expect("simulator starts")
}

/// Accepts only the expected host key.
pub struct PinnedHost {
    pub expected: PublicKey,
}

impl client::Handler for PinnedHost {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.expected.key_data()),
        )
    }
}

pub type Conn = Handle<PinnedHost>;

pub async fn connect_raw(sim: &SimHandle) -> Conn {
    let config = Arc::new(client::Config {
        nodelay: true,
        ..Default::default()
    });
    client::connect(
        config,
        sim.ssh_addr(),
        PinnedHost {
            expected: sim.host_public_key().clone(),
        },
    )
    .await
    .expect("ssh connect")
}

/// A connection logged in with the password.
pub async fn connect(sim: &SimHandle) -> Conn {
    let mut conn = connect_raw(sim).await;
    let auth = conn
        .authenticate_password(USER, PASSWORD)
        .await
        .expect("auth exchange");
    assert!(auth.success(), "password login");
    conn
}

/// A fresh ed25519 user key.
pub fn random_ed25519() -> russh::keys::PrivateKey {
    let seed: [u8; 32] = rand::random();
    russh::keys::PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        &seed,
    ))
}

/// What one exec returned.
#[derive(Debug, Default)]
pub struct ExecResult {
    pub stdout: String,
    pub exit_status: Option<u32>,
    /// The channel ended with a close (not a dropped connection).
    pub closed: bool,
}

/// Runs one command in its own channel, as RouterOS clients do.
pub async fn exec(conn: &Conn, command: &str) -> ExecResult {
    let mut channel = conn.channel_open_session().await.expect("channel open");
    channel.exec(true, command).await.expect("exec request");
    let mut result = ExecResult::default();
    let mut bytes = Vec::new();
    let wait = async {
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => bytes.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => result.exit_status = Some(exit_status),
                ChannelMsg::Close => {
                    result.closed = true;
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("exec finished in time");
    result.stdout = String::from_utf8(bytes).expect("utf-8 output");
    result
}

/// The JSON values in `stdout` after removing every CR and LF (terminal
/// wraps can split tokens), read as a stream.
pub fn json_values(stdout: &str) -> Vec<serde_json::Value> {
    let joined: String = stdout
        .chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .collect();
    serde_json::Deserializer::from_str(&joined)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not a JSON stream: {e}: {stdout:?}"))
}

/// The client's create statement (7.21+ form).
pub fn create_script(slot: &str, size: u64) -> String {
    format!(
        "/disk add type=file slot=\"{slot}\" file-path=\"storage-pool/{slot}.img\" file-size={size} \
         mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 \
         nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:{slot}\" comment=\"test\";\
         :put [:serialize to=json [/disk print detail as-value where slot=\"{slot}\"]]"
    )
}

/// An HTTPS client that trusts the simulator's certificate and nothing else.
pub fn https_client(sim: &SimHandle) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            sim.certificate_der().to_vec(),
        ))
        .expect("certificate is usable as a root");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("https client")
}

/// The controller's CreateVolume script (one line): reports the ids in the slot and of the
/// image file, adds the disk only when both are free, then prints the slot's disks.
pub fn create_if_free_script(slot: &str, size: u64) -> String {
    format!(
        ":local slotIds [/disk find where slot=\"{slot}\"];\
         :local fileIds [/file find where name=\"storage-pool/{slot}.img\"];\
         :put [:serialize to=json $slotIds];:put [:serialize to=json $fileIds];\
         :if (([:len $slotIds] = 0) && ([:len $fileIds] = 0)) do={{:put [:serialize to=json [/disk add type=file \
         slot=\"{slot}\" file-path=\"storage-pool/{slot}.img\" file-size={size} mount-filesystem=no nvme-tcp-export=yes \
         nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:{slot}\" comment=\"x\"]]}};\
         :put [:serialize to=json [/disk print detail as-value where slot=\"{slot}\"]]"
    )
}

/// `POST /rest/execute` with `script`; the `ret` text.
pub async fn rest_execute(sim: &SimHandle, script: &str) -> String {
    let reply = https_client(sim)
        .post(format!("{}/rest/execute", sim.rest_url()))
        .basic_auth(USER, Some(PASSWORD))
        .json(&serde_json::json!({ "script": script }))
        .send()
        .await
        .expect("execute request");
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value = reply.json().await.expect("JSON reply");
    body["ret"].as_str().expect("ret is text").to_string()
}
