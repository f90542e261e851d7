//! The simulator on loopback and a client for it over either transport, shared by the
//! integration tests.
#![allow(dead_code)] // each test file uses its part

use std::time::Duration;

use rds_sim::{SimConfig, SimHandle, Simulator};
use routeros::{
    Client, ClientConfig, CreateOutcome, DiskSpec, FileDisk, FilePath, HostKeyPolicy, ItemId, Nqn,
    Secret, Slot, SshAuth, TlsPolicy,
};

pub const PASSWORD: &str = "sim-pw";

#[derive(Clone, Copy, Debug)]
pub enum Transport {
    Ssh,
    Rest,
}

pub const BOTH: [Transport; 2] = [Transport::Ssh, Transport::Rest];

pub struct Device {
    sim: Option<SimHandle>,
    _dir: tempfile::TempDir,
}

impl Device {
    pub async fn start(version: &str, tune: impl FnOnce(&mut SimConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SimConfig::new(dir.path()).with_password(PASSWORD);
        config.routeros_version = version.parse().unwrap();
        config.capacity = 64 << 30;
        tune(&mut config);
        let sim = Simulator::start(config).await.unwrap();
        Self {
            sim: Some(sim),
            _dir: dir,
        }
    }

    pub fn sim(&self) -> &SimHandle {
        self.sim.as_ref().unwrap()
    }

    pub fn config(&self, transport: Transport) -> ClientConfig {
        let sim = self.sim();
        let mut cfg = match transport {
            Transport::Ssh => {
                let mut c = ClientConfig::ssh(
                    "127.0.0.1",
                    "admin+ct",
                    SshAuth::Password(PASSWORD.into()),
                    HostKeyPolicy::Fingerprints(vec![sim.host_key_fingerprint()]),
                );
                c.port = Some(sim.ssh_addr().port());
                c
            }
            Transport::Rest => {
                let mut c = ClientConfig::rest(
                    "127.0.0.1",
                    "admin",
                    Secret::new(PASSWORD),
                    TlsPolicy::Fingerprint(sim.certificate_fingerprint()),
                );
                c.port = Some(sim.rest_addr().port());
                c
            }
        };
        cfg.command_timeout = Duration::from_secs(10);
        cfg
    }

    pub async fn client(&self, transport: Transport) -> Client {
        Client::connect(self.config(transport)).await.unwrap()
    }

    pub async fn shutdown(mut self) {
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }
}

pub fn spec(slot: &str, size: u64) -> DiskSpec {
    DiskSpec {
        slot: Slot::try_from(slot).unwrap(),
        file_path: FilePath::try_from(format!("/storage-pool/{slot}.img")).unwrap(),
        size,
        port: 4420,
        nqn: Nqn::try_from(format!("nqn.2000-02.com.mikrotik:{slot}")).unwrap(),
        comment: None,
    }
}

/// The disk of a create this call made.
pub fn created(outcome: routeros::Result<CreateOutcome>) -> FileDisk {
    match outcome {
        Ok(CreateOutcome::Created(disk)) => disk,
        other => panic!("not created: {other:?}"),
    }
}

pub fn id_of(disk: &FileDisk) -> ItemId {
    ItemId::try_from(disk.id.as_str()).unwrap()
}
