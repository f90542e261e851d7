//! Property tests of what this crate reads from the kernel: sysfs object names
//! (`nvme2c1n3`), controller states and addresses, namespace attributes (`dev`, `size`, `nsid`,
//! identifiers, with the kernel's whitespace), and the volume-id shape that guards connects and
//! disconnects. None may panic on any input; each reads back what a kernel would print.
//!
//! The normal test run is the short one (256 cases per property). A long run:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test -p nvme --test parsers_prop
//! ```
//!
//! Seed inputs live in `tests/corpus/<parser>/`: one input per line, except `sysfs_namespace`,
//! whose files are a namespace's attributes (`name=value` lines) and must scan without error
//! unless named `bad-*`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use mounts::DeviceNumber;
use nvme::fixtures::FakeSysfs;
use nvme::namespace_ids::{NamespaceIds, Sameness};
use nvme::options::Target;
use nvme::sysfs::{ControllerAddress, ControllerState, NodeName, parse_node_name};
use nvme::volume_id::{is_managed_volume_id, is_pvc_name};
use nvme::{Error, ManagedPrefix};
use proptest::prelude::*;

/// 256 cases unless `PROPTEST_CASES` says otherwise (proptest reads it).
fn config() -> ProptestConfig {
    ProptestConfig::default()
}

fn corpus_dir(parser: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(parser)
}

/// Every file of `tests/corpus/<parser>/` as (name, text); the directory must not be empty.
fn corpus(parser: &str) -> Vec<(String, String)> {
    let dir = corpus_dir(parser);
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

/// Every line of every corpus file of `parser`.
fn corpus_lines(parser: &str) -> Vec<String> {
    corpus(parser)
        .into_iter()
        .flat_map(|(_, text)| text.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// Any text up to `max` characters, control characters and NUL included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Whitespace the kernel or a hand-edited file may put around a value.
fn pad() -> impl Strategy<Value = String> {
    "[ \t\n]{0,2}"
}

fn render(name: NodeName) -> String {
    match name {
        NodeName::Controller { instance } => format!("nvme{instance}"),
        NodeName::Namespace { instance, head } => format!("nvme{instance}n{head}"),
        NodeName::Path {
            subsystem,
            controller,
            head,
        } => format!("nvme{subsystem}c{controller}n{head}"),
    }
}

fn node_name() -> impl Strategy<Value = NodeName> {
    prop_oneof![
        any::<u32>().prop_map(|instance| NodeName::Controller { instance }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(instance, head)| NodeName::Namespace { instance, head }),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(subsystem, controller, head)| {
            NodeName::Path {
                subsystem,
                controller,
                head,
            }
        }),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";

/// A fake sysfs with one subsystem, one live controller and one namespace head
/// (`nvme0n1`), whose attributes are then replaced by `head` (`None` removes one) and the
/// controller's by `controller`.
fn sysfs_with(
    head: &[(&str, Option<Vec<u8>>)],
    controller: &[(&str, Option<Vec<u8>>)],
) -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path());
    fake.add_subsystem(0, NQN);
    fake.add_controller(0, 0, NQN, "live", "traddr=10.0.0.1,trsvcid=4420");
    fake.add_head(0, 1, 1, DeviceNumber::new(259, 1), 1 << 20);
    let head_dir = dir
        .path()
        .join("devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1");
    let controller_dir = dir.path().join("devices/virtual/nvme-fabrics/ctl/nvme0");
    for (dir, attributes) in [(head_dir, head), (controller_dir, controller)] {
        for (name, value) in attributes {
            let path = dir.join(name);
            match value {
                Some(bytes) => std::fs::write(&path, bytes).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    (dir, fake)
}

/// An attribute value: a well-formed one padded with whitespace, or junk bytes.
fn attribute(valid: impl Strategy<Value = String>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (pad(), valid, pad()).prop_map(|(a, v, b)| format!("{a}{v}{b}").into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..12),
        1 => "[-+0-9: a-f]{0,12}".prop_map(String::into_bytes),
    ]
}

/// What the scan must make of `size`, `dev` and `nsid` texts (the kernel ends each with a
/// newline; sysfs values are otherwise taken as trimmed text).
fn expected_namespace(
    dev: &[u8],
    size: &[u8],
    nsid: Option<&[u8]>,
) -> Option<(DeviceNumber, u64, Option<u32>)> {
    let text = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(str::to_owned);
    let device = text(dev)?.parse::<DeviceNumber>().ok()?;
    let sectors = text(size)?.trim().parse::<u64>().ok()?;
    let nsid = match nsid {
        Some(bytes) => Some(text(bytes)?.trim().parse::<u32>().ok()?),
        None => None,
    };
    Some((device, sectors.saturating_mul(512), nsid))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn node_names_never_panic(name in any_text(24)) {
        let _ = parse_node_name(&name);
    }

    #[test]
    fn near_node_names_never_panic(name in "nvme[0-9cnp-]{0,12}") {
        if let Some(parsed) = parse_node_name(&name) {
            // Whatever is read is the one name that prints that way.
            prop_assert_eq!(render(parsed), name);
        }
    }

    #[test]
    fn node_names_round_trip(name in node_name()) {
        prop_assert_eq!(parse_node_name(&render(name)), Some(name));
        // A partition of it is not an NVMe object name.
        prop_assert_eq!(parse_node_name(&format!("{}p1", render(name))), None);
    }

    #[test]
    fn controller_states_never_panic(text in any_text(24)) {
        let state = ControllerState::parse(&text);
        prop_assert!(ControllerState::LABELS.contains(&state.label()));
    }

    #[test]
    fn controller_states_ignore_whitespace(
        word in prop::sample::select(vec![
            "new", "live", "resetting", "connecting", "deleting", "deleting (no IO)", "dead",
        ]),
        before in pad(),
        after in pad(),
    ) {
        let state = ControllerState::parse(&format!("{before}{word}{after}"));
        prop_assert_ne!(state.label(), "other");
        prop_assert_eq!(state, ControllerState::parse(word));
    }

    #[test]
    fn controller_addresses_never_panic(text in any_text(64)) {
        let address = ControllerAddress::parse(&text);
        let _ = (address.traddr(), address.trsvcid());
    }

    #[test]
    fn near_controller_addresses_never_panic(text in "[a-z_=,%:.0-9 ]{0,48}") {
        let address = ControllerAddress::parse(&text);
        let _ = (address.traddr(), address.trsvcid(), address.get("src_addr"));
    }

    /// What the kernel prints for a TCP controller reads back as the target it was made for,
    /// with or without an IPv6 scope, extra keys and whitespace.
    #[test]
    fn controller_addresses_round_trip(
        address in ip(),
        port: u16,
        scope in prop::option::of("[a-z0-9]{1,6}"),
        source in prop::option::of(ip()),
        pad in pad(),
    ) {
        let traddr = match (address, &scope) {
            (IpAddr::V6(_), Some(scope)) => format!("{address}%{scope}"),
            _ => address.to_string(),
        };
        let mut text = format!("{pad}traddr={traddr},trsvcid={port}");
        if let Some(source) = source {
            text.push_str(&format!(",src_addr={source}"));
        }
        text.push_str(&pad);
        let parsed = ControllerAddress::parse(&text);
        prop_assert_eq!(parsed.traddr(), Some(address));
        prop_assert_eq!(parsed.trsvcid(), Some(port));
        prop_assert!(parsed.matches(&Target::new(address, port)));
    }

    #[test]
    fn namespace_ids_never_panic(
        uuid in prop::option::of(any_text(40)),
        nguid in prop::option::of(any_text(40)),
        eui in prop::option::of(any_text(20)),
        wwid in prop::option::of(any_text(60)),
    ) {
        let texts = [("uuid", &uuid), ("nguid", &nguid), ("eui", &eui), ("wwid", &wwid)];
        let ids = NamespaceIds::from_attributes(|wanted| {
            texts.iter().find(|(a, _)| *a == wanted).and_then(|(_, t)| t.as_deref())
        });
        let _ = ids.to_string();
        let expected = if ids.is_empty() { Sameness::Unknown } else { Sameness::Same };
        prop_assert_eq!(ids.compare(&ids.clone()), expected);
    }

    /// Identifiers differ from a new reading only by case and whitespace are the same ones.
    #[test]
    fn namespace_ids_ignore_case_and_whitespace(
        uuid in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        nguid in "[0-9a-f]{32}",
        pads in (pad(), pad()),
    ) {
        let first = NamespaceIds::from_attributes(|wanted| match wanted {
            "uuid" => Some(uuid.as_str()),
            "nguid" => Some(nguid.as_str()),
            _ => None,
        });
        let shouted = format!("{}{}{}", pads.0, uuid.to_uppercase(), pads.1);
        let nguid_line = format!("{nguid}\n");
        let again = NamespaceIds::from_attributes(|wanted| match wanted {
            "uuid" => Some(shouted.as_str()),
            "nguid" => Some(nguid_line.as_str()),
            "eui" => Some("  \n"),
            _ => None,
        });
        prop_assert_eq!(first.compare(&again), Sameness::Same);
        prop_assert_eq!(first.uuid.as_deref(), Some(uuid.as_str()));
    }

    #[test]
    fn volume_ids_never_panic(id in any_text(48), prefix in any_text(24)) {
        let _ = is_managed_volume_id(&id);
        if let Ok(prefix) = ManagedPrefix::new(prefix) {
            prop_assert!(!prefix.covers(prefix.as_str()));
            let _ = prefix.authorize(&id);
        }
    }

    /// The driver's two id shapes are managed; any change of case or length makes them foreign.
    #[test]
    fn volume_id_shapes(uuid: [u8; 16], digest: [u8; 16], cut in 0usize..32) {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let u = hex(&uuid);
        let pvc = format!("pvc-{}-{}-{}-{}-{}", &u[..8], &u[8..12], &u[12..16], &u[16..20], &u[20..]);
        let csi = format!("csi-{}", hex(&digest));
        prop_assert!(is_pvc_name(&pvc) && is_managed_volume_id(&pvc));
        prop_assert!(is_managed_volume_id(&csi) && !is_pvc_name(&csi));
        for id in [&pvc, &csi] {
            let shortened: String = id.chars().take(4 + cut).collect();
            prop_assert!(!is_managed_volume_id(&shortened), "{}", shortened);
            let longer = format!("{id}0");
            prop_assert!(!is_managed_volume_id(&longer));
            let upper = id.to_uppercase();
            prop_assert_eq!(is_managed_volume_id(&upper), false, "{}", upper);
        }
        let prefix = ManagedPrefix::new("nqn.2000-02.com.mikrotik:").unwrap();
        let (nqn, trailing) = (
            format!("nqn.2000-02.com.mikrotik:{pvc}"),
            format!("nqn.2000-02.com.mikrotik:{pvc}/x"),
        );
        prop_assert!(prefix.covers(&nqn));
        prop_assert!(!prefix.covers(&trailing));
    }

    /// A namespace head whose attributes are any bytes, or numbers with whitespace around them,
    /// scans without panicking; the numbers read are the ones written, and text that is not a
    /// number is a format error, not a guess.
    #[test]
    fn sysfs_namespace_attributes(
        dev in attribute((any::<u32>(), any::<u32>()).prop_map(|(a, b)| format!("{a}:{b}"))),
        size in attribute(any::<u64>().prop_map(|n| n.to_string())),
        nsid in prop::option::of(attribute(any::<u32>().prop_map(|n| n.to_string()))),
        uuid in prop::option::of(attribute("[0-9a-fA-F-]{36}")),
        state in attribute("[a-z() IO]{0,16}"),
        address in attribute("traddr=[0-9.]{7,15},trsvcid=[0-9]{1,5}"),
        cntlid in prop::option::of(attribute(any::<u16>().prop_map(|n| n.to_string()))),
    ) {
        // Text that is not UTF-8 cannot be read at all: a read error, whatever the attribute.
        let readable = [Some(&state), Some(&address), uuid.as_ref()]
            .into_iter()
            .flatten()
            .all(|bytes| std::str::from_utf8(bytes).is_ok());
        let (_dir, fake) = sysfs_with(
            &[("dev", Some(dev.clone())), ("size", Some(size.clone())), ("nsid", nsid.clone()), ("uuid", uuid)],
            &[("state", Some(state)), ("address", Some(address)), ("cntlid", cntlid.clone())],
        );
        let scanned = fake.sysfs().scan();
        let cntlid_ok = readable && cntlid
            .as_deref()
            .is_none_or(|c| std::str::from_utf8(c).is_ok_and(|t| t.trim().parse::<u16>().is_ok()));
        let expected = expected_namespace(&dev, &size, nsid.as_deref());
        match (&scanned, expected) {
            (Ok(topology), Some((device, size_bytes, nsid))) => {
                prop_assert!(cntlid_ok);
                let head = &topology.subsystems[0].heads[0];
                prop_assert_eq!(head.device, device);
                prop_assert_eq!(head.size_bytes, size_bytes);
                prop_assert_eq!(head.nsid, nsid);
                prop_assert_eq!(topology.controllers.len(), 1);
            }
            (Err(error), expected) => {
                prop_assert!(
                    expected.is_none() || !cntlid_ok,
                    "refused a well-formed namespace: {}", error
                );
                prop_assert!(
                    matches!(error, Error::SysfsFormat { .. } | Error::Sysfs { .. }),
                    "{:?}", error
                );
            }
            (Ok(topology), None) => {
                prop_assert!(false, "accepted a malformed namespace: {:?}", topology);
            }
        }
    }
}

#[test]
fn node_name_corpus() {
    let lines = corpus_lines("node_name");
    let parsed: Vec<_> = lines.iter().filter_map(|l| parse_node_name(l)).collect();
    assert!(!parsed.is_empty());
    for name in parsed {
        assert_eq!(parse_node_name(&render(name)), Some(name));
    }
}

#[test]
fn controller_address_corpus() {
    for (name, text) in corpus("controller_address") {
        let address = ControllerAddress::parse(&text);
        let _ = (address.traddr(), address.trsvcid());
        if name.starts_with("tcp-") {
            assert!(address.traddr().is_some(), "{name}");
            assert_eq!(address.trsvcid(), Some(4420), "{name}");
        }
    }
}

#[test]
fn controller_state_corpus() {
    for line in corpus_lines("controller_state") {
        let state = ControllerState::parse(&line);
        assert!(ControllerState::LABELS.contains(&state.label()), "{line}");
    }
}

#[test]
fn volume_id_corpus() {
    let managed: Vec<String> = corpus_lines("volume_id")
        .into_iter()
        .filter(|id| is_managed_volume_id(id))
        .collect();
    assert_eq!(
        managed,
        [
            "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60",
            "csi-0123456789abcdef0123456789abcdef"
        ]
    );
}

#[test]
fn sysfs_namespace_corpus() {
    for (name, text) in corpus("sysfs_namespace") {
        let mut head: Vec<(&str, Option<Vec<u8>>)> = ["dev", "size", "nsid"]
            .into_iter()
            .map(|attribute| (attribute, None))
            .collect();
        for line in text.lines() {
            let (key, value) = line.split_once('=').unwrap();
            let bytes = Some(format!("{value}\n").into_bytes());
            match head.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = bytes,
                None => head.push((key, bytes)),
            }
        }
        let (_dir, fake) = sysfs_with(&head, &[]);
        let scanned = fake.sysfs().scan();
        assert_eq!(
            scanned.is_err(),
            name.starts_with("bad-"),
            "{name}: {scanned:?}"
        );
        if let Ok(topology) = scanned {
            assert_eq!(topology.subsystems[0].heads.len(), 1, "{name}");
        }
    }
}
