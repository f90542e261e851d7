//! The chaos suite's world: the binary's simulator, controller and node as child processes in
//! one work directory, the faults laid on the device, the restarts, and what is left at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::time::Duration;

use demo::procs::{self, Child};
use demo::session::WorkDir;
use driver::server::Endpoint;
use e2e::{Csi, PathLayout};
use rand::Rng;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

const USER: &str = "admin";
const PASSWORD: &str = "chaos-secret-pw";
/// Bound on a component's start.
const START_LIMIT: Duration = Duration::from_secs(30);
/// The CO's deadline per call.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Simulator,
    Controller,
    Node,
}

struct Processes {
    sim: Child,
    controller: Child,
    node: Child,
}

/// How the components are started: the same way every time, so a restart finds its state.
struct Launcher {
    work: WorkDir,
    exe: std::path::PathBuf,
    ssh_port: u16,
    rest_port: u16,
    /// The simulator's, pinned by the controller (it keeps its key in its data directory).
    host_key: String,
    starts: std::sync::atomic::AtomicUsize,
}

pub struct World {
    launcher: Launcher,
    processes: Mutex<Processes>,
    calm: watch::Sender<bool>,
    /// Full turns of the chaos (every component restarted once, one latency spike).
    rounds: std::sync::atomic::AtomicUsize,
}

fn args(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|a| a.as_ref().to_owned()).collect()
}

impl Launcher {
    fn log(&self, name: &str) -> std::path::PathBuf {
        let n = self
            .starts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.work.root.join(format!("{name}-{n:03}.log"))
    }

    async fn start_sim(&self) -> (Child, String) {
        let sim_args = args(&[
            &"--log",
            &"info",
            &"sim",
            &"--data-dir",
            &self.work.sim_data(),
            &"--password-file",
            &self.work.password_file(),
            &"--user",
            &USER,
            &"--ssh-listen",
            &format!("127.0.0.1:{}", self.ssh_port),
            &"--rest-listen",
            &format!("127.0.0.1:{}", self.rest_port),
            &"--nvmet",
            &"off",
            &"--nvme-listen",
            &"127.0.0.1:4420",
        ]);
        let mut child =
            procs::spawn("simulator", &self.exe, &sim_args, &self.log("sim"), true).unwrap();
        let stdout = child.take_stdout().unwrap();
        let facts = procs::wait_for_sim(&mut child, stdout, START_LIMIT)
            .await
            .expect("the simulator starts");
        (child, facts.host_key)
    }

    async fn start_controller(&self) -> Child {
        let controller_args = args(&[
            &"--log",
            &"info",
            &"controller",
            &"--endpoint",
            &self.work.controller_endpoint().to_string(),
            &"--rds-address",
            &"127.0.0.1",
            &"--rds-port",
            &self.ssh_port.to_string(),
            &"--rds-user",
            &USER,
            &"--rds-password-file",
            &self.work.password_file(),
            &"--rds-host-key-fingerprint",
            &self.host_key,
            &"--rds-timeout-seconds",
            &"5",
            &"--rds-breaker-cool-down-seconds",
            &"1",
            &"--nvme-address",
            &"127.0.0.1",
            &"--attachment-state",
            &"memory",
            &"--metrics-address",
            &"",
        ]);
        self.serving(
            "controller",
            &controller_args,
            &self.work.controller_endpoint(),
        )
        .await
    }

    async fn start_node(&self) -> Child {
        let layout = PathLayout::new(self.work.kubelet());
        let node_args = args(&[
            &"--log",
            &"info",
            &"node",
            &"--endpoint",
            &self.work.node_endpoint().to_string(),
            &"--node-id",
            &"chaos-node",
            &"--fabric",
            &"loop",
            &"--sim-data-dir",
            &self.work.sim_data(),
            &"--block-publish-dir",
            &layout.block_publish_dir(),
            &"--state-dir",
            &self.work.node_state(),
            &"--pod-recovery",
            &"off",
            &"--metrics-address",
            &"",
        ]);
        self.serving("node plugin", &node_args, &self.work.node_endpoint())
            .await
    }

    async fn serving(&self, name: &'static str, args: &[OsString], endpoint: &Endpoint) -> Child {
        let log = self.log(name.split(' ').next().unwrap_or(name));
        let mut child = procs::spawn(name, &self.exe, args, &log, false).unwrap();
        procs::wait_serving(&mut child, endpoint, START_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        child
    }
}

impl World {
    /// The device's steady faults, and its spikes.
    pub const FAULTS: &str = "5 % of requests dropped, 3 % of replies lost after the command \
                              ran, 0-20 ms jitter, 400 ms latency spikes";
    const STEADY: &str = r#"{"drop_percent": 5, "lose_reply_percent": 3, "latency_jitter_ms": 20}"#;
    const SPIKE: &str = r#"{"drop_percent": 5, "lose_reply_percent": 3, "latency_ms": 400}"#;

    pub async fn start() -> Self {
        let work = WorkDir::create().expect("work directory");
        std::fs::write(work.password_file(), format!("{PASSWORD}\n")).unwrap();
        std::fs::create_dir_all(work.sim_data()).unwrap();
        std::fs::create_dir_all(PathLayout::new(work.kubelet()).block_publish_dir()).unwrap();
        let mut launcher = Launcher {
            work,
            exe: std::path::PathBuf::from(env!("CARGO_BIN_EXE_rds-csi")),
            ssh_port: procs::free_tcp_port().unwrap(),
            rest_port: procs::free_tcp_port().unwrap(),
            host_key: String::new(),
            starts: Default::default(),
        };
        let (sim, host_key) = launcher.start_sim().await;
        launcher.host_key = host_key;
        let processes = Processes {
            sim,
            controller: launcher.start_controller().await,
            node: launcher.start_node().await,
        };
        let world = Self {
            launcher,
            processes: Mutex::new(processes),
            calm: watch::channel(false).0,
            rounds: std::sync::atomic::AtomicUsize::new(0),
        };
        world.set_faults(Self::STEADY);
        world
    }
    /// How many full turns the chaos has made so far.
    pub fn rounds(&self) -> usize {
        self.rounds.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn layout(&self) -> PathLayout {
        PathLayout::new(self.launcher.work.kubelet())
    }

    /// A CO's clients, once both plugins answer.
    pub async fn csi(&self) -> Csi {
        let give_up = tokio::time::Instant::now() + START_LIMIT;
        loop {
            let controller = self.launcher.work.controller_endpoint();
            let node = self.launcher.work.node_endpoint();
            match Csi::connect(&controller, &node, CALL_TIMEOUT).await {
                Ok(csi) => return csi,
                Err(error) if tokio::time::Instant::now() > give_up => {
                    panic!("connecting the CO: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Replaces the device's faults (the simulator re-reads its control file).
    fn set_faults(&self, json: &str) {
        let file = self.launcher.work.sim_data().join("faults.json");
        let scratch = file.with_extension("new");
        std::fs::write(&scratch, json).unwrap();
        std::fs::rename(&scratch, &file).unwrap();
    }

    /// Kills a component (SIGKILL, as a crash) and starts it again.
    async fn restart(&self, component: Component) {
        let mut processes = self.processes.lock().await;
        match component {
            Component::Simulator => {
                processes.sim.kill().await;
                processes.sim = self.launcher.start_sim().await.0;
            }
            Component::Controller => {
                processes.controller.kill().await;
                processes.controller = self.launcher.start_controller().await;
            }
            Component::Node => {
                processes.node.kill().await;
                processes.node = self.launcher.start_node().await;
            }
        }
    }

    /// Restarts components and raises latency in turn at random moments until [`World::calm`];
    /// returns the restarts by component.
    pub async fn unleash(self: std::sync::Arc<Self>) -> BTreeMap<Component, usize> {
        let mut restarts = BTreeMap::new();
        let mut calm = self.calm.subscribe();
        // In turn, at random moments: every component is hit even in a short run.
        let mut turns = 0usize..;
        loop {
            let pause = Duration::from_millis(rand::rng().random_range(400..1200));
            tokio::select! {
                _ = calm.wait_for(|c| *c) => return restarts,
                () = tokio::time::sleep(pause) => {}
            }
            let component = match turns.next().unwrap_or_default() % 4 {
                0 => Component::Simulator,
                1 => Component::Controller,
                2 => Component::Node,
                _ => {
                    self.set_faults(Self::SPIKE);
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    self.set_faults(Self::STEADY);
                    self.rounds
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    continue;
                }
            };
            self.restart(component).await;
            *restarts.entry(component).or_default() += 1;
        }
    }

    /// Ends the chaos: no more restarts, no more faults.
    pub async fn calm(
        &self,
        chaos: JoinHandle<BTreeMap<Component, usize>>,
    ) -> BTreeMap<Component, usize> {
        self.calm.send_replace(true);
        let restarts = chaos.await.expect("the chaos task");
        self.set_faults("{}");
        restarts
    }

    /// What is left on the device and the host, in words.
    pub async fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        let view = demo::leftovers::host_view().await.expect("the host's view");
        found.extend(
            demo::leftovers::host_leftovers(&view, &self.launcher.work.root, &BTreeSet::new())
                .iter()
                .map(ToString::to_string),
        );
        let mut config = routeros::ClientConfig::ssh(
            "127.0.0.1",
            USER,
            routeros::SshAuth::Password(PASSWORD.into()),
            routeros::HostKeyPolicy::Fingerprints(vec![self.launcher.host_key.clone()]),
        );
        config.port = Some(self.launcher.ssh_port);
        let client = routeros::Client::connect(config).await.expect("the device");
        let pool = routeros::DirPath::try_from("storage-pool").unwrap();
        let inventory = client
            .inventory(&pool)
            .await
            .expect("the device's inventory");
        found.extend(inventory.disks.iter().map(|d| format!("disk {}", d.slot)));
        found.extend(inventory.images.iter().map(|f| format!("image {}", f.name)));
        if let Ok(records) = std::fs::read_dir(self.launcher.work.node_state()) {
            found.extend(
                records
                    .flatten()
                    .map(|r| format!("node record {}", r.file_name().to_string_lossy())),
            );
        }
        found
    }

    /// Stops every component and removes the work directory (nothing is mounted there now).
    pub async fn stop(self) {
        let mut processes = self.processes.into_inner();
        for child in [
            &mut processes.node,
            &mut processes.controller,
            &mut processes.sim,
        ] {
            child.stop(Duration::from_secs(10)).await;
        }
        std::fs::remove_dir_all(&self.launcher.work.root).expect("removing the work directory");
    }
}
