//! Who may connect to an export (`nvme-tcp-server-allow-host-name`), over both transports
//! against the simulator: written as a list of host NQNs, read back exactly, and never left
//! empty by accident (empty admits every host).

use std::time::Duration;

use rds_sim::{SimConfig, Simulator};
use routeros::{
    AllowedHosts, Client, ClientConfig, CreateOutcome, DiskSpec, Error, FilePath, HostKeyPolicy,
    Nqn, Secret, Slot, SshAuth, TlsPolicy,
};

const PASSWORD: &str = "sim-pw";
const A: &str = "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211";
const B: &str = "nqn.2014-08.org.nvmexpress:uuid:0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";

fn nqn(s: &str) -> Nqn {
    Nqn::try_from(s).unwrap()
}

#[tokio::test]
async fn export_hosts_are_set_and_read_back_over_both_transports() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::new(dir.path()).with_password(PASSWORD);
    config.capacity = 16 << 30;
    let sim = Simulator::start(config).await.unwrap();
    let ssh = {
        let mut c = ClientConfig::ssh(
            "127.0.0.1",
            "admin",
            SshAuth::Password(PASSWORD.into()),
            HostKeyPolicy::Fingerprints(vec![sim.host_key_fingerprint()]),
        );
        c.port = Some(sim.ssh_addr().port());
        c
    };
    let rest = {
        let mut c = ClientConfig::rest(
            "127.0.0.1",
            "admin",
            Secret::new(PASSWORD),
            TlsPolicy::Fingerprint(sim.certificate_fingerprint()),
        );
        c.port = Some(sim.rest_addr().port());
        c
    };
    for (n, mut config) in [ssh, rest].into_iter().enumerate() {
        config.command_timeout = Duration::from_secs(10);
        let client = Client::connect(config).await.unwrap();
        let slot = Slot::try_from(format!("acl-{n}")).unwrap();
        let spec = DiskSpec {
            slot: slot.clone(),
            file_path: FilePath::try_from(format!("storage-pool/{slot}.img")).unwrap(),
            size: 1 << 30,
            port: 4420,
            nqn: nqn(&format!("nqn.2000-02.com.mikrotik:{slot}")),
            comment: None,
        };
        assert!(matches!(
            client.create_file_disk(&spec).await.unwrap(),
            CreateOutcome::Created(_)
        ));
        // A new export admits anyone.
        assert_eq!(client.export_hosts(&slot).await.unwrap(), AllowedHosts::Any);

        let both = AllowedHosts::only([nqn(A), nqn(B)]).unwrap();
        assert_eq!(client.set_export_hosts(&slot, &both).await.unwrap(), both);
        assert_eq!(client.export_hosts(&slot).await.unwrap(), both);
        let one = AllowedHosts::only([nqn(B)]).unwrap();
        client.set_export_hosts(&slot, &one).await.unwrap();
        let read = client.export_hosts(&slot).await.unwrap();
        assert!(read.admits(B) && !read.admits(A), "{read}");
        // Listing and reading a disk show the same list.
        let listed = client.list_disks("").await.unwrap();
        let disk = listed.iter().find(|d| d.slot == slot.as_str()).unwrap();
        assert_eq!(disk.allowed_hosts, one);
        let read = client.get_disk(&slot).await.unwrap().unwrap();
        assert_eq!(read.allowed_hosts, one);

        // What the client does not understand, it does not write.
        let odd = AllowedHosts::Unrecognized("worker-1".into());
        assert!(matches!(
            client.set_export_hosts(&slot, &odd).await,
            Err(Error::Invalid(_))
        ));
        assert_eq!(client.export_hosts(&slot).await.unwrap(), one);

        client
            .set_export_hosts(&slot, &AllowedHosts::Any)
            .await
            .unwrap();
        assert_eq!(client.export_hosts(&slot).await.unwrap(), AllowedHosts::Any);

        // A slot without a disk is not found, and nothing is created.
        let absent = Slot::try_from("acl-absent").unwrap();
        assert!(matches!(
            client.export_hosts(&absent).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            client.set_export_hosts(&absent, &one).await,
            Err(Error::NotFound(_))
        ));
        assert!(client.get_disk(&absent).await.unwrap().is_none());
    }
    sim.shutdown().await;
}
