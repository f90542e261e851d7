//! Property tests of what the driver reads from the CO and the cluster: StorageClass
//! parameters, the VolumeContext (this driver's and the Go driver's), CSI volume names (and the
//! slot, NQN and image path derived from them), the comment recorded on each disk, node ids,
//! sizes and capacity ranges. None may panic on any input; accepted input round-trips.
//!
//! The normal test run is the short one (256 cases per property). A long run:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test -p driver --test parsers_prop
//! ```
//!
//! Seed inputs live in `tests/corpus/<parser>/`: `storage_class` and `volume_context` files are
//! maps (`key=value` lines) that must be accepted unless named `bad-*`; the other directories
//! hold one input per line.

use std::collections::HashMap;
use std::path::Path;

use driver::capacity::{Expansion, SizeError, SizePolicy, parse_size};
use driver::naming::{
    VolumeComment, image_path, is_managed_volume_id, nqn_for_volume, validate_csi_name,
    volume_id_for_name,
};
use driver::node_id::{MAX_NODE_ID_BYTES, NodeRef};
use driver::params::{NQN, NVME_ADDRESS, NVME_PORT, VolumeContext, VolumeParams, parse_dir_path};
use proptest::prelude::*;

/// 256 cases unless `PROPTEST_CASES` says otherwise (proptest reads it).
fn config() -> ProptestConfig {
    ProptestConfig::default()
}

/// Every file of `tests/corpus/<parser>/` as (name, text); the directory must not be empty.
fn corpus(parser: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(parser);
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

fn corpus_lines(parser: &str) -> Vec<String> {
    corpus(parser)
        .into_iter()
        .flat_map(|(_, text)| text.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// A `key=value` file as a map (split at the first `=`).
fn corpus_map(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// Any text up to `max` characters, control characters and NUL included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn pad() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

/// A number in `range` as a StorageClass may spell it, or a near miss.
fn number(range: std::ops::RangeInclusive<i64>, valid: u32) -> impl Strategy<Value = String> {
    let (low, high) = (*range.start(), *range.end());
    prop_oneof![
        valid => (range, pad(), pad()).prop_map(|(n, a, b)| format!("{a}{n}{b}")),
        1 => Just(low.saturating_sub(1).to_string()),
        1 => Just(high.saturating_add(1).to_string()),
        1 => "[-+0-9x. ]{0,22}",
    ]
}

fn component() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,12}"
}

/// A value for `key`: from the key's grammar (`valid` times as often as not), or anything.
fn value_for(key: &'static str, valid: u32) -> BoxedStrategy<String> {
    let grammar: BoxedStrategy<String> = match key {
        "volumePath" => ("/?", proptest::collection::vec(component(), 1..4), "/?")
            .prop_map(|(a, parts, b)| format!("{a}{}{b}", parts.join("/")))
            .boxed(),
        "nvmeAddress" => prop_oneof![
            valid => any::<std::net::IpAddr>().prop_map(|ip| ip.to_string()),
            valid => "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]{1,8}){0,3}",
            valid => "[ ]?10\\.0\\.0\\.[0-9]{1,3}[ ]?",
            1 => "[0-9.,:a-z=_]{0,24}",
        ]
        .boxed(),
        "nvmePort" => number(1..=65535, valid).boxed(),
        "ctrlLossTmo" => number(-1..=86_400 * 365, valid).boxed(),
        "reconnectDelay" | "keepAliveTmo" => number(1..=3600, valid).boxed(),
        "nrIoQueues" => number(1..=1024, valid).boxed(),
        "migrationTimeoutSeconds" => number(1..=86_400, valid).boxed(),
        "mkfsOptions" => prop_oneof![
            valid => "[-a-zA-Z0-9 =,'\"]{0,40}",
            valid => " ?-m [0-9] -E stride=[0-9]{1,3} ?",
            1 => any_text(20),
        ]
        .boxed(),
        _ => "[a-z0-9/.-]{0,16}".boxed(),
    };
    prop_oneof![valid => grammar, 1 => any_text(16)].boxed()
}

const STORAGE_CLASS_KEYS: [&str; 9] = [
    "volumePath",
    "nvmeAddress",
    "nvmePort",
    "ctrlLossTmo",
    "reconnectDelay",
    "keepAliveTmo",
    "nrIoQueues",
    "mkfsOptions",
    "migrationTimeoutSeconds",
];

/// StorageClass parameters: a subset of the known keys with values from their grammar
/// (`valid` times as often as not), the CO's own keys, and now and then an unknown key.
fn storage_class(valid: u32) -> impl Strategy<Value = HashMap<String, String>> {
    let known = proptest::sample::subsequence(STORAGE_CLASS_KEYS.to_vec(), 0..=9).prop_flat_map(
        move |keys| {
            keys.into_iter()
                .map(|key| value_for(key, valid).prop_map(move |value| (key.to_owned(), value)))
                .collect::<Vec<_>>()
        },
    );
    let extra = prop_oneof![
        (8 * valid) => Just(Vec::new()),
        2 => Just(vec![("csi.storage.k8s.io/fstype".to_owned(), "ext4".to_owned())]),
        1 => ("[a-zA-Z/.]{1,12}", any_text(8)).prop_map(|kv| vec![kv]),
    ];
    (known, extra).prop_map(|(known, extra)| known.into_iter().chain(extra).collect())
}

/// A NQN as the device reports it.
fn nqn() -> impl Strategy<Value = String> {
    "nqn\\.20[0-9]{2}-(0[1-9]|1[0-2])\\.[a-z]{1,8}(\\.[a-z0-9-]{1,8}){0,2}:[a-z0-9._:-]{1,40}"
}

/// The VolumeContext the controller hands to the node for `params` (as `rules::context`).
fn context_for(params: &VolumeParams, nqn: String) -> VolumeContext {
    VolumeContext {
        nqn,
        nvme_address: params
            .nvme_address
            .clone()
            .unwrap_or_else(|| "10.42.68.1".to_owned()),
        nvme_port: params.nvme_port.unwrap_or(4420),
        connect: params.connect.clone(),
        mkfs_options: params.mkfs_options.clone(),
        volume_path: params.volume_path.clone(),
        migration_timeout_seconds: params.migration_timeout_seconds,
        copy_of: None,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn storage_class_parameters_never_panic(
        params in proptest::collection::hash_map(any_text(24), any_text(24), 0..6)
    ) {
        let _ = VolumeParams::parse(&params);
        let _ = VolumeContext::parse(&params);
    }

    /// Accepted parameters go into a VolumeContext that the node reads back as the same
    /// values; read back as StorageClass parameters they are the same parameters with the same
    /// digest (the digest does not depend on how a value was spelled).
    #[test]
    fn accepted_parameters_round_trip_through_the_volume_context(
        params in storage_class(40),
        nqn in nqn(),
    ) {
        let Ok(parsed) = VolumeParams::parse(&params) else {
            return Ok(());
        };
        let context = context_for(&parsed, nqn);
        let map: HashMap<String, String> = context.to_map().into_iter().collect();
        prop_assert_eq!(VolumeContext::parse(&map), Ok(context));

        let mut normalised = map;
        normalised.remove(NQN);
        if parsed.nvme_address.is_none() {
            normalised.remove(NVME_ADDRESS);
        }
        if parsed.nvme_port.is_none() {
            normalised.remove(NVME_PORT);
        }
        let again = VolumeParams::parse(&normalised);
        prop_assert_eq!(again.as_ref(), Ok(&parsed));
        prop_assert_eq!(again.unwrap().digest(), parsed.digest());
        if let Some(path) = &parsed.volume_path {
            prop_assert_eq!(parse_dir_path("volumePath", path), Ok(path.clone()));
        }
    }

    /// Near-valid VolumeContexts (Go driver keys, `keepAliveTmo=0`, unknown keys) never panic,
    /// and what is accepted writes back to a map that parses to the same context.
    #[test]
    fn volume_contexts_never_panic(
        params in storage_class(3),
        nqn in prop::option::of(prop_oneof![nqn(), any_text(20)]),
        rds_address in prop::option::of("10\\.42\\.[0-9]{1,3}\\.[0-9]{1,3}"),
        go_keep_alive in any::<bool>(),
    ) {
        let mut map = params;
        if let Some(nqn) = nqn {
            map.insert(NQN.to_owned(), nqn);
        }
        if let Some(address) = rds_address {
            map.insert("rdsAddress".to_owned(), address);
        }
        if go_keep_alive {
            map.insert("keepAliveTmo".to_owned(), "0".to_owned());
        }
        if let Ok(context) = VolumeContext::parse(&map) {
            let written: HashMap<String, String> = context.to_map().into_iter().collect();
            prop_assert_eq!(VolumeContext::parse(&written), Ok(context));
        }
    }

    #[test]
    fn csi_names_never_panic(name in any_text(160)) {
        if validate_csi_name(&name).is_ok() {
            let id = volume_id_for_name(&name);
            prop_assert!(is_managed_volume_id(&id), "{}", id);
        }
    }

    /// A valid CSI name maps to a slot, NQN and image path the RouterOS client accepts.
    #[test]
    fn valid_names_give_valid_slots(
        name in prop_oneof![
            "[^\u{0}-\u{8}\u{b}\u{c}\u{e}-\u{1f}\u{7f}-\u{9f}]{1,30}",
            "pvc-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ],
        volume_path in proptest::collection::vec(component(), 1..4),
    ) {
        prop_assume!(name.len() <= 128);
        prop_assert!(validate_csi_name(&name).is_ok());
        let id = volume_id_for_name(&name);
        prop_assert_eq!(volume_id_for_name(&name), id.clone());
        prop_assert!(routeros::Slot::try_from(id.as_str()).is_ok(), "{}", id);
        let nqn = nqn_for_volume("nqn.2000-02.com.mikrotik", &id);
        prop_assert!(routeros::Nqn::try_from(nqn.as_str()).is_ok(), "{}", nqn);
        let prefix = nvme::ManagedPrefix::new("nqn.2000-02.com.mikrotik:").unwrap();
        prop_assert!(prefix.covers(&nqn));
        let joined = volume_path.join("/");
        prop_assume!(!volume_path.iter().any(|c| c == "." || c == ".."));
        let dir = parse_dir_path("volumePath", &format!("/{joined}/")).unwrap();
        let image = image_path(&dir, &id);
        prop_assert!(routeros::FilePath::try_from(image.as_str()).is_ok(), "{}", image);
    }

    #[test]
    fn volume_comments_never_panic(comment in any_text(80)) {
        if let Some(parsed) = VolumeComment::parse(&comment) {
            prop_assert_eq!(parsed.render(), comment);
        }
    }

    /// Whatever the CSI name (spaces, newlines, ` name=` inside it), the comment reads back.
    #[test]
    fn volume_comments_round_trip(params in storage_class(3), name in any_text(60)) {
        let digest = VolumeParams::parse(&params).unwrap_or_default().digest();
        let written = VolumeComment { params_digest: &digest, name: &name };
        let text = written.render();
        prop_assert_eq!(VolumeComment::parse(&text), Some(written));
    }

    #[test]
    fn node_ids_never_panic(id in any_text(220)) {
        let node = NodeRef::parse(&id);
        prop_assert!(!node.name.contains('/'));
        prop_assert!(node.host_nqn.as_ref().is_none_or(|h| !h.is_empty()));
    }

    #[test]
    fn node_ids_round_trip(
        name in "[a-z0-9]([a-z0-9.-]{0,60}[a-z0-9])?",
        host in prop::option::of(prop_oneof![nqn(), any_text(150)]),
    ) {
        let id = NodeRef::compose(&name, host.as_deref());
        prop_assert!(id.len() <= MAX_NODE_ID_BYTES || host.is_none() || id == name);
        let node = NodeRef::parse(&id);
        prop_assert_eq!(&node.name, &name);
        match host.filter(|h| !h.is_empty() && name.len() + 1 + h.len() <= MAX_NODE_ID_BYTES) {
            Some(host) => prop_assert_eq!(node.host_nqn, Some(host)),
            None => prop_assert_eq!(node.host_nqn, None),
        }
    }

    #[test]
    fn sizes_never_panic(text in any_text(30)) {
        let _ = parse_size(&text);
    }

    #[test]
    fn sizes_round_trip(
        n: u64,
        unit in prop::sample::select(vec![("", 1u64), ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40)]),
        pads in (pad(), pad()),
    ) {
        let text = format!("{}{n}{}{}", pads.0, unit.0, pads.1);
        match n.checked_mul(unit.1) {
            Some(bytes) => prop_assert_eq!(parse_size(&text), Ok(bytes)),
            None => prop_assert!(parse_size(&text).is_err()),
        }
    }

    /// Any capacity range: a chosen size is a multiple of the granularity within the range,
    /// the smallest one above `required`; a refusal means no such size exists.
    #[test]
    fn capacity_ranges(
        required in prop_oneof![any::<i64>(), 0i64..(1 << 32), Just(0i64)],
        limit in prop_oneof![any::<i64>(), 0i64..(1 << 32), Just(0i64)],
        granularity in prop_oneof![1u64..4096, Just(1u64 << 20), Just(1u64 << 30), any::<u64>().prop_map(|g| g.max(1))],
        default_size in prop_oneof![Just(1u64 << 30), any::<u64>()],
    ) {
        let policy = SizePolicy { granularity, default_size };
        let round_up = |bytes: u64| bytes.div_ceil(granularity).checked_mul(granularity);
        match policy.choose(required, limit) {
            Ok(size) => {
                prop_assert!(required >= 0 && limit >= 0);
                prop_assert_eq!(size % granularity, 0);
                if limit > 0 {
                    prop_assert!(size <= limit as u64);
                }
                if required > 0 {
                    prop_assert_eq!(Some(size), round_up(required as u64));
                }
                prop_assert!(SizePolicy::satisfies(size, required, limit));
            }
            Err(SizeError::Negative { .. }) => prop_assert!(required < 0 || limit < 0),
            Err(SizeError::RequiredAboveLimit { .. }) => prop_assert!(limit > 0 && required > limit),
            Err(SizeError::NoAlignedSize { .. }) => {
                if required > 0 {
                    prop_assert!(round_up(required as u64).is_none_or(|s| s > limit as u64));
                } else {
                    prop_assert!((limit as u64) < granularity);
                }
            }
            Err(SizeError::Overflow(_)) => {
                prop_assert!(round_up(required.max(0) as u64).is_none() || round_up(default_size).is_none());
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn expansions(
        current in prop_oneof![any::<u64>(), 0u64..(1 << 32)],
        required in prop_oneof![any::<i64>(), 0i64..(1 << 32), Just(0i64)],
        limit in prop_oneof![any::<i64>(), 0i64..(1 << 32), Just(0i64)],
    ) {
        let policy = SizePolicy::default();
        match policy.plan_expansion(current, required, limit) {
            Ok(Expansion::AlreadyLargeEnough) => prop_assert!(required as u64 <= current),
            Ok(Expansion::GrowTo(size)) => {
                prop_assert!(size > current && size >= required as u64);
                prop_assert!(limit == 0 || size <= limit as u64);
                prop_assert_eq!(size % policy.granularity, 0);
            }
            Err(_) => {}
        }
    }
}

#[test]
fn storage_class_corpus() {
    for (name, text) in corpus("storage_class") {
        let parsed = VolumeParams::parse(&corpus_map(&text));
        assert_eq!(
            parsed.is_err(),
            name.starts_with("bad-"),
            "{name}: {parsed:?}"
        );
        if let Ok(params) = parsed {
            let context = context_for(&params, "nqn.2000-02.com.mikrotik:pvc-1".into());
            let map: HashMap<String, String> = context.to_map().into_iter().collect();
            assert_eq!(VolumeContext::parse(&map), Ok(context), "{name}");
        }
    }
}

#[test]
fn volume_context_corpus() {
    for (name, text) in corpus("volume_context") {
        let parsed = VolumeContext::parse(&corpus_map(&text));
        assert_eq!(
            parsed.is_err(),
            name.starts_with("bad-"),
            "{name}: {parsed:?}"
        );
        if let Ok(context) = parsed {
            let map: HashMap<String, String> = context.to_map().into_iter().collect();
            assert_eq!(VolumeContext::parse(&map), Ok(context.clone()), "{name}");
            // The Go driver's `keepAliveTmo=0` means the kernel's default.
            if name.starts_with("go-driver") {
                assert_eq!(context.connect.keep_alive_tmo, None, "{name}");
            }
        }
    }
}

#[test]
fn naming_corpus() {
    for name in corpus_lines("csi_name") {
        let name = name.replace("\\n", "\n");
        validate_csi_name(&name).unwrap();
        let id = volume_id_for_name(&name);
        assert!(
            routeros::Slot::try_from(id.as_str()).is_ok(),
            "{name:?} -> {id}"
        );
    }
    let comments: Vec<String> = corpus_lines("volume_comment");
    let read: Vec<_> = comments
        .iter()
        .filter_map(|c| VolumeComment::parse(c))
        .map(|c| c.name)
        .collect();
    assert_eq!(
        read,
        [
            "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60",
            "my volume name= with tag"
        ]
    );
}

#[test]
fn node_id_and_size_corpus() {
    for id in corpus_lines("node_id") {
        let node = NodeRef::parse(&id);
        assert!(!node.name.contains('/'), "{id}");
    }
    let sizes: Vec<_> = corpus_lines("size")
        .iter()
        .map(|s| parse_size(s).ok())
        .collect();
    assert_eq!(sizes.iter().flatten().count(), 7, "{sizes:?}");
}
