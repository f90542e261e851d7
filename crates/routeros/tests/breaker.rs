//! The circuit breaker against the simulator, over both transports: connections the device
//! drops open it after the configured number in a row, then commands fail at once without
//! reaching the device; after the cool-down a probe that gets an answer closes it. Refusals
//! (the device answering with an error) never count. The command observer hears all of it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rds_sim::{SimConfig, Simulator};
use routeros::client::CommandObserver;
use routeros::{
    BreakerConfig, BreakerState, Client, ClientConfig, Error, HostKeyPolicy, Secret, SshAuth,
    TlsPolicy,
};

const PASSWORD: &str = "sim-pw";
const COOL_DOWN: Duration = Duration::from_millis(300);

#[derive(Default)]
struct Heard {
    started: Mutex<usize>,
    finished: Mutex<Vec<(&'static str, bool)>>,
    states: Mutex<Vec<BreakerState>>,
}

impl CommandObserver for Heard {
    fn started(&self, _verb: &'static str) {
        *self.started.lock().unwrap() += 1;
    }
    fn finished(&self, verb: &'static str, _elapsed: Duration, answered: bool) {
        self.finished.lock().unwrap().push((verb, answered));
    }
    fn breaker(&self, state: BreakerState) {
        self.states.lock().unwrap().push(state);
    }
}

#[tokio::test]
async fn a_device_that_stops_answering_is_not_asked_until_a_probe_gets_through() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::new(dir.path()).with_password(PASSWORD))
        .await
        .unwrap();
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
    for mut config in [ssh, rest] {
        config.command_timeout = Duration::from_secs(10);
        config.breaker = BreakerConfig {
            failures: 3,
            cool_down: COOL_DOWN,
        };
        let heard = Arc::new(Heard::default());
        let client = Client::new(config).unwrap().with_observer(heard.clone());
        client.system_info().await.unwrap();

        // Refusals are answers: they never open it.
        sim.faults().update(|f| {
            f.fail_next = 5;
            f.fail_message = "failure: no such item".into();
        });
        for _ in 0..5 {
            let refused = client.system_info().await.unwrap_err();
            assert!(!matches!(refused, Error::Unavailable(_)), "{refused}");
        }
        assert_eq!(client.breaker_state(), BreakerState::Closed);

        // Three dropped connections in a row open it.
        sim.faults().update(|f| f.drop_next = 100);
        for n in 1..=3 {
            assert_eq!(
                client.breaker_state(),
                BreakerState::Closed,
                "before drop {n}"
            );
            let dropped = client.system_info().await.unwrap_err();
            assert!(matches!(dropped, Error::Unavailable(_)), "{dropped}");
        }
        assert_eq!(client.breaker_state(), BreakerState::Open);
        let drops_left = sim.faults().get().drop_next;
        assert_eq!(drops_left, 97);

        // Now commands fail at once, without reaching the device.
        let started = Instant::now();
        let fast = client.system_info().await.unwrap_err();
        assert!(started.elapsed() < COOL_DOWN, "{:?}", started.elapsed());
        let text = fast.to_string();
        assert!(
            matches!(fast, Error::Unavailable(_)) && text.contains("not asking it again"),
            "{text}"
        );
        assert_eq!(
            sim.faults().get().drop_next,
            drops_left,
            "the device was asked"
        );

        // The device is back; after the cool-down the next command probes, and closes it.
        sim.faults().update(|f| f.drop_next = 0);
        tokio::time::sleep(COOL_DOWN).await;
        client.system_info().await.expect("the probe gets through");
        assert_eq!(client.breaker_state(), BreakerState::Closed);

        assert_eq!(
            *heard.states.lock().unwrap(),
            [BreakerState::Open, BreakerState::Closed]
        );
        let finished = heard.finished.lock().unwrap().clone();
        assert_eq!(*heard.started.lock().unwrap(), finished.len());
        let answered: Vec<bool> = finished.iter().map(|(_, a)| *a).collect();
        // The first read, five refusals, three drops, the fail-fast, the probe.
        let mut expected = vec![true; 6];
        expected.extend([false, false, false, false, true]);
        assert_eq!(answered, expected);
        assert!(finished.iter().all(|(verb, _)| *verb == "system-info"));
    }
    sim.shutdown().await;
}
