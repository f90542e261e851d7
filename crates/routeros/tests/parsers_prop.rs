//! Property tests of everything the client reads from the device or the operator: SSH exec
//! output (`:serialize to=json` values, CRLF-wrapped, numbers as floats or strings, RouterOS
//! error text after them), the readers of disks, files, pools and resources, REST error bodies,
//! device error texts, version strings, input grammars (slots, paths, NQNs, ids), export host
//! lists, and host-key pins (`known_hosts` lines, fingerprints). None may panic on any input;
//! accepted input round-trips, and quoted strings read back through the simulator's lexer.
//!
//! The normal test run is the short one (256 cases per property). A long run:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test -p routeros --test parsers_prop
//! ```
//!
//! Seed inputs live in `tests/corpus/<parser>/`: `serialize` files are raw exec output
//! (refused when named `bad-*`), `rest_error` files are REST error bodies, `known_hosts` files
//! are whole files (refused when named `bad-*`); the other directories hold one input per line.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use rds_sim::script::lexer::{Tok, lex};
use routeros::hostkey::{parse_known_hosts, parse_known_hosts_line, parse_sha256_fingerprint};
use routeros::reply::{self, ExecOutput};
use routeros::version::RouterOsVersion;
use routeros::{AllowedHosts, DirPath, Error, FilePath, ItemId, Nqn, Slot, sha256_fingerprint};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// 256 cases unless `PROPTEST_CASES` says otherwise (proptest reads it).
fn config() -> ProptestConfig {
    ProptestConfig::default()
}

/// Every file of `tests/corpus/<parser>/` as (name, bytes); the directory must not be empty.
fn corpus(parser: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(parser);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

fn corpus_lines(parser: &str) -> Vec<String> {
    corpus(parser)
        .into_iter()
        .flat_map(|(_, bytes)| {
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Any text up to `max` characters, control characters and NUL included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn exec(stdout: Vec<u8>, exit_status: Option<u32>) -> ExecOutput {
    ExecOutput {
        stdout,
        stderr: Vec::new(),
        exit_status,
    }
}

/// `output` pushed to a [`reply::ListingReader`] in chunks of `chunk` bytes.
fn pushed(output: &ExecOutput, chunk: usize) -> Result<Vec<routeros::FileDisk>, Error> {
    let mut reader = reply::ListingReader::new(64 << 20);
    for part in output.stdout.chunks(chunk) {
        reader.push(part)?;
    }
    reader.finish(exec(Vec::new(), output.exit_status))
}

/// The start of a listing longer than what a reader keeps whole.
fn long_listing_head() -> String {
    let item = r#"{".id":"*1","type":"file","slot":"pvc-1","file-path":"/p/pvc-1.img","file-size":1073741824,"nvme-tcp-export":true,"nvme-tcp-server-port":4420}"#;
    format!("[{},", vec![item; 70_000 / item.len() + 1].join(","))
}

/// Runs parsed values through every reader of replies; none may panic.
fn read_every_way(values: &[Value]) {
    let _ = reply::add_report(values.to_vec());
    let _ = reply::volume_facts(values.to_vec(), "pvc-1.img");
    let _ = reply::image_removal(values.to_vec());
    for value in values {
        let _ = reply::file_disks_lenient(value.clone());
        let _ = reply::at_most_one(value.clone(), "slot x");
        if let Ok(object) = reply::single_object(value.clone(), "resource") {
            let _ = reply::system_info(&object, &object);
        }
        for object in reply::items(value.clone()).unwrap_or_default() {
            let _ = reply::file_disk(&object);
            let _ = reply::disk_item(&object);
            let _ = reply::export_access(&object);
            let _ = reply::image_user(&object);
            let _ = reply::file_entry(&object);
            let _ = reply::pool(&object);
            for key in ["size", "file-size", "nvme-tcp-export", "slot"] {
                let _ = reply::opt_u64(&object, key);
                let _ = reply::opt_bool(&object, key);
                let _ = reply::opt_str(&object, key);
            }
        }
    }
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any_text(12).prop_map(Value::String),
        "\\*[0-9A-F]{1,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop::sample::select(vec![
                    ".id",
                    "slot",
                    "type",
                    "file-path",
                    "file-size",
                    "size",
                    "free",
                    "nvme-tcp-export",
                    "nvme-tcp-server-port",
                    "nvme-tcp-server-nqn",
                    "mount-point",
                    "name",
                    "version",
                    "comment",
                ])
                .prop_map(str::to_owned),
                inner,
                0..8
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A value a script prints on a line of its own: an array, an object or a string (numbers
/// and literals printed one after another would run together once the line breaks go).
fn top_level_value() -> impl Strategy<Value = Value> {
    json_value().prop_map(|value| match value {
        Value::Array(_) | Value::Object(_) | Value::String(_) => value,
        scalar => Value::Array(vec![scalar]),
    })
}

/// How `:serialize` or REST may spell the unsigned integer `n`.
fn spelled(n: u64) -> impl Strategy<Value = String> {
    let exact = n <= 1 << 53;
    prop_oneof![
        Just(n.to_string()),
        Just(format!("\"{n}\"")),
        Just(if exact {
            format!("{n}.000000")
        } else {
            n.to_string()
        }),
        Just(if exact {
            format!("\"{n}.0\"")
        } else {
            format!("\" {n} \"")
        }),
    ]
}

fn spelled_bool(b: bool) -> impl Strategy<Value = String> {
    let words = if b {
        vec!["true", "\"true\"", "\"yes\""]
    } else {
        vec!["false", "\"false\"", "\"no\""]
    };
    prop::sample::select(words).prop_map(str::to_owned)
}

#[derive(Debug, Clone)]
struct Disk {
    id: u32,
    slot: String,
    size: u64,
    port: u16,
    export: bool,
    mount: Option<bool>,
    nqn: Option<String>,
    comment: Option<String>,
}

fn disk() -> impl Strategy<Value = Disk> {
    (
        any::<u32>(),
        "[a-z0-9][a-z0-9._-]{0,20}",
        prop_oneof![any::<u64>(), 0u64..(1 << 44)],
        1u16..,
        any::<bool>(),
        prop::option::of(any::<bool>()),
        prop::option::of("nqn\\.2000-02\\.com\\.mikrotik:[a-z0-9-]{1,20}"),
        prop::option::of(any_text(20)),
    )
        .prop_map(|(id, slot, size, port, export, mount, nqn, comment)| Disk {
            id,
            slot,
            size,
            port,
            export,
            mount,
            nqn,
            comment,
        })
}

/// A disk as `:serialize to=json` prints it, its numbers and booleans spelled in any of the
/// ways devices do.
fn disk_json(disk: Disk) -> impl Strategy<Value = (Disk, String)> {
    (
        spelled(disk.size),
        spelled(u64::from(disk.port)),
        spelled_bool(disk.export),
        prop::option::of(spelled_bool(disk.mount.unwrap_or(true))),
    )
        .prop_map(move |(size, port, export, mount)| {
            let string = |s: &str| Value::String(s.to_owned()).to_string();
            let mut fields = vec![
                format!("\".id\":{}", string(&format!("*{:X}", disk.id))),
                format!("\"type\":\"file\""),
                format!("\"slot\":{}", string(&disk.slot)),
                format!(
                    "\"file-path\":{}",
                    string(&format!("/storage-pool/{}.img", disk.slot))
                ),
                format!("\"file-size\":{size}"),
                format!("\"nvme-tcp-server-port\":{port}"),
                format!("\"nvme-tcp-export\":{export}"),
            ];
            if let (Some(mount), Some(_)) = (mount, disk.mount) {
                fields.push(format!("\"mount-filesystem\":{mount}"));
            }
            if let Some(nqn) = &disk.nqn {
                fields.push(format!("\"nvme-tcp-server-nqn\":{}", string(nqn)));
            }
            if let Some(comment) = &disk.comment {
                fields.push(format!("\"comment\":{}", string(comment)));
            }
            (disk.clone(), format!("{{{}}}", fields.join(",")))
        })
}

/// Inserts the terminal's line breaks (`\r\n`, or a lone `\r` or `\n`) before the given
/// character positions.
fn wrap_at(text: &str, breaks: &[(usize, u8)]) -> Vec<u8> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    for (i, c) in chars.iter().enumerate() {
        for (at, kind) in breaks {
            if *at == i {
                out.extend_from_slice(match kind {
                    0 => b"\r\n",
                    1 => b"\r",
                    _ => b"\n",
                });
            }
        }
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn version() -> impl Strategy<Value = (u32, u32, u32, Option<(&'static str, u32)>)> {
    (
        0u32..100,
        0u32..100,
        0u32..100,
        prop::option::of((prop::sample::select(vec!["alpha", "beta", "rc"]), 0u32..20)),
    )
}

fn key_blob() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        prop::sample::select(vec![
            "ssh-ed25519",
            "ssh-rsa",
            "ecdsa-sha2-nistp256",
            "rsa-sha2-512",
        ]),
        proptest::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(kind, key)| {
            let mut blob = (kind.len() as u32).to_be_bytes().to_vec();
            blob.extend_from_slice(kind.as_bytes());
            blob.extend_from_slice(&key);
            (kind.to_owned(), blob)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn exec_output_never_panics(
        stdout in proptest::collection::vec(any::<u8>(), 0..256),
        stderr in proptest::collection::vec(any::<u8>(), 0..64),
        exit_status in prop::option::of(0u32..3),
        n in 0usize..5,
    ) {
        let output = ExecOutput { stdout, stderr, exit_status };
        if let Ok(values) = reply::script_values(&output) {
            read_every_way(&values);
        }
        let _ = reply::expect_values(&output, n);
    }

    /// Any JSON values, CRLF-wrapped anywhere and followed by device text, never panic any
    /// reader; without text after them they come back as written.
    #[test]
    fn json_streams_never_panic(
        values in proptest::collection::vec(top_level_value(), 0..4),
        breaks in proptest::collection::vec((0usize..400, 0u8..3), 0..6),
        tail in prop_oneof![Just(String::new()), any_text(20), Just("failure: no such item".to_owned())],
    ) {
        let text: String = values.iter().map(Value::to_string).collect::<Vec<_>>().join("\r\n");
        let mut stdout = wrap_at(&text, &breaks);
        stdout.extend_from_slice(tail.as_bytes());
        let parsed = reply::script_values(&exec(stdout, Some(0)));
        if let Ok(parsed) = &parsed {
            read_every_way(parsed);
        }
        // Printed JSON has no raw line break, so dropping the terminal's loses nothing.
        let unwrapped: Vec<Value> = values
            .iter()
            .map(|v| serde_json::from_str(&v.to_string()).unwrap())
            .collect();
        if tail.trim().is_empty() {
            prop_assert_eq!(parsed.unwrap(), unwrapped);
        } else if tail.starts_with("failure") {
            prop_assert!(matches!(parsed, Err(Error::NotFound(_))), "{:?}", parsed);
        }
    }

    /// A disk listing however the device spells its numbers and booleans, wrapped anywhere,
    /// reads as the disk it describes.
    #[test]
    fn disk_listings_read_back(
        (disk, json) in disk().prop_flat_map(disk_json),
        breaks in proptest::collection::vec((0usize..300, 0u8..3), 0..6),
    ) {
        let stdout = wrap_at(&format!("[{json}]"), &breaks);
        let values = reply::expect_values(&exec(stdout, Some(0)), 1).unwrap();
        let disks = reply::file_disks_lenient(values[0].clone()).unwrap();
        prop_assert_eq!(disks.len(), 1, "{}", json);
        let read = &disks[0];
        prop_assert_eq!(&read.id, &format!("*{:X}", disk.id));
        prop_assert_eq!(&read.slot, &disk.slot);
        prop_assert_eq!(read.file_size, disk.size);
        prop_assert_eq!(read.nvme_tcp_port, disk.port);
        prop_assert_eq!(read.nvme_tcp_export, disk.export);
        prop_assert_eq!(&read.file_path, &format!("storage-pool/{}.img", disk.slot));
        prop_assert_eq!(read.comment.clone(), disk.comment.clone().filter(|c| !c.is_empty()));
        let nqn = disk.nqn.clone().unwrap_or_else(|| disk.slot.clone());
        prop_assert_eq!(&read.nqn, &nqn);
    }

    /// A listing pushed in chunks as it arrives never panics, whatever the bytes, and past
    /// the size it keeps whole (a valid head, then anything) either.
    #[test]
    fn listings_read_as_they_arrive_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..512),
        long in any::<bool>(),
        chunk in 1usize..97,
        exit_status in prop::option::of(0u32..2),
    ) {
        let mut stdout = Vec::new();
        if long {
            stdout.extend_from_slice(long_listing_head().as_bytes());
        }
        stdout.extend_from_slice(&tail);
        let _ = pushed(&exec(stdout, exit_status), chunk);
    }

    /// A long listing read as it arrives reads as the whole text does, however it is
    /// wrapped, chunked or followed.
    #[test]
    fn long_listings_read_as_they_arrive_like_the_whole_text(
        (_disk, json) in disk().prop_flat_map(disk_json),
        breaks in proptest::collection::vec((0usize..3000, 0u8..3), 0..6),
        chunk in prop_oneof![1usize..8, 500usize..5000],
        tail in prop_oneof![Just(String::new()), Just(" []".to_owned()), Just("failure: no such item".to_owned())],
        exit_status in prop::option::of(0u32..2),
    ) {
        let copies = 70_000 / json.len() + 1;
        let list = format!("[{}]", vec![json.as_str(); copies].join(","));
        let mut stdout = wrap_at(&list, &breaks);
        stdout.extend_from_slice(tail.as_bytes());
        let output = exec(stdout, exit_status);
        prop_assert_eq!(
            format!("{:?}", pushed(&output, chunk)),
            format!("{:?}", reply::file_disks_listing(output.clone()))
        );
    }

    /// Floats that are not whole or not exact are refused, never rounded.
    #[test]
    fn inexact_numbers_are_refused(whole in 0u64..(1 << 40), fraction in 1u32..1000) {
        let text = format!("{{\"size\":{whole}.{fraction:03}1,\"s\":\"{whole}.5\",\"big\":1e300,\"neg\":-1}}");
        let object: reply::Object = serde_json::from_str(&text).unwrap();
        prop_assert!(reply::opt_u64(&object, "size").is_err());
        prop_assert!(reply::opt_u64(&object, "s").is_err());
        prop_assert!(reply::opt_u64(&object, "big").is_err());
        prop_assert!(reply::opt_u64(&object, "neg").is_err());
    }

    #[test]
    fn device_texts_never_panic(text in any_text(80), status in 100u16..600) {
        let _ = routeros::error::classify_device_text(&text);
        let _ = routeros::error::device_text_error(&text);
        let _ = routeros::error::rest_error(status, &text);
        let body = serde_json::json!({"error": status, "message": &text, "detail": &text}).to_string();
        let _ = routeros::error::rest_error(status, &body);
    }

    #[test]
    fn versions_never_panic(text in any_text(24)) {
        let _ = RouterOsVersion::parse(&text);
    }

    #[test]
    fn near_versions_never_panic(text in "[0-9.]{0,10}(alpha|beta|rc|x)?[0-9]{0,3}( \\([a-z-]{0,10}\\)?)?") {
        if let Ok(version) = RouterOsVersion::parse(&text) {
            let again = RouterOsVersion::parse(&version.to_string()).unwrap();
            prop_assert_eq!(again.cmp(&version), std::cmp::Ordering::Equal);
        }
    }

    /// A printed version reads back; its order is the numeric order, releases after their
    /// pre-releases.
    #[test]
    fn versions_round_trip(
        (major, minor, patch, pre) in version(),
        other in version(),
        channel in prop::option::of("[a-z-]{1,10}"),
    ) {
        let render = |(major, minor, patch, pre): (u32, u32, u32, Option<(&str, u32)>)| {
            let mut text = format!("{major}.{minor}.{patch}");
            if let Some((kind, n)) = pre {
                text.push_str(&format!("{kind}{n}"));
            }
            text
        };
        let text = render((major, minor, patch, pre));
        let full = match &channel {
            Some(channel) => format!("{text} ({channel})"),
            None => text.clone(),
        };
        let version = RouterOsVersion::parse(&full).unwrap();
        prop_assert_eq!((version.major, version.minor, version.patch), (major, minor, patch));
        prop_assert_eq!(version.channel.clone(), channel);
        prop_assert_eq!(RouterOsVersion::parse(&version.to_string()).unwrap().cmp(&version), std::cmp::Ordering::Equal);
        let b = RouterOsVersion::parse(&render(other)).unwrap();
        let rank = |pre: Option<(&str, u32)>| match pre {
            Some(("alpha", n)) => (0, n),
            Some(("beta", n)) => (1, n),
            Some((_, n)) => (2, n),
            None => (3, 0),
        };
        let expected = (major, minor, patch, rank(pre)).cmp(&(other.0, other.1, other.2, rank(other.3)));
        prop_assert_eq!(version.cmp(&b), expected);
    }

    #[test]
    fn grammars_never_panic(text in any_text(40)) {
        for accepted in [
            Slot::try_from(text.as_str()).map(|v| v.to_string()),
            FilePath::try_from(text.as_str()).map(|v| v.to_string()),
            DirPath::try_from(text.as_str()).map(|v| v.to_string()),
            ItemId::try_from(text.as_str()).map(|v| v.to_string()),
            Nqn::try_from(text.as_str()).map(|v| v.to_string()),
        ]
        .into_iter()
        .flatten()
        {
            // Nothing accepted can end a quoted string or start a substitution.
            const CODE: [char; 10] = ['"', '$', '[', ']', ';', '\\', '{', '}', ' ', '\n'];
            prop_assert!(!accepted.contains(CODE), "{:?}", accepted);
        }
    }

    /// Names from the grammars are accepted as they are (paths in their canonical form, which
    /// is accepted again unchanged).
    #[test]
    fn grammars_accept_their_language(
        slot in "[A-Za-z0-9_][A-Za-z0-9._-]{0,63}",
        parts in proptest::collection::vec("[A-Za-z0-9_-][A-Za-z0-9._-]{0,10}", 1..4),
        lead in "/?",
        id in "\\*[0-9A-Fa-f]{1,16}",
        nqn in "nqn\\.[0-9]{4}-(0[1-9]|1[0-2])\\.[a-z0-9]{1,8}(\\.[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?){0,3}:[A-Za-z0-9._:-]{1,60}",
    ) {
        prop_assert_eq!(Slot::try_from(slot.as_str()).unwrap().to_string(), slot.clone());
        let dir = format!("{lead}{}", parts.join("/"));
        let canonical = DirPath::try_from(dir.as_str()).unwrap();
        prop_assert_eq!(canonical.as_str(), dir.trim_start_matches('/'));
        prop_assert_eq!(DirPath::try_from(canonical.as_str()).unwrap(), canonical.clone());
        let image = format!("{dir}/{slot}.img");
        let file = FilePath::try_from(image.as_str()).unwrap();
        prop_assert_eq!(FilePath::try_from(file.as_str()).unwrap(), file);
        prop_assert_eq!(ItemId::try_from(id.as_str()).unwrap().to_string(), id);
        prop_assert_eq!(Nqn::try_from(nqn.as_str()).unwrap().to_string(), nqn);
    }

    /// Any string, quoted by the client, is one token that the simulator's lexer (which
    /// follows the device's) decodes back to the same string.
    #[test]
    fn quoted_strings_read_back_through_the_simulator_lexer(text in any_text(40)) {
        let quoted = routeros::quote::quote(&text);
        let tokens: Vec<Tok> = lex(&quoted).unwrap().into_iter().map(|t| t.tok).collect();
        prop_assert_eq!(tokens, vec![Tok::Str(text.clone()), Tok::Eof]);
        let script = format!(":put {quoted};:put x");
        let tokens: Vec<Tok> = lex(&script).unwrap().into_iter().map(|t| t.tok).collect();
        prop_assert_eq!(tokens[1].clone(), Tok::Str(text));
        prop_assert_eq!(tokens[2].clone(), Tok::Semi);
    }

    #[test]
    fn allowed_hosts_never_panic(text in any_text(60), host in any_text(20)) {
        let hosts = AllowedHosts::parse(&text);
        let _ = hosts.admits(&host);
        prop_assert_eq!(AllowedHosts::parse(&hosts.to_value()), hosts);
    }

    #[test]
    fn allowed_hosts_round_trip(
        nqns in proptest::collection::vec("nqn\\.2014-08\\.org\\.nvmexpress:uuid:[0-9a-f-]{8,36}", 1..5),
    ) {
        let hosts = AllowedHosts::only(nqns.iter().map(|n| Nqn::try_from(n.as_str()).unwrap())).unwrap();
        let value = hosts.to_value();
        prop_assert_eq!(AllowedHosts::parse(&value), hosts.clone());
        prop_assert_eq!(AllowedHosts::parse(&format!(" {} ", value.replace(',', " , "))), hosts.clone());
        for nqn in &nqns {
            prop_assert!(hosts.admits(nqn));
        }
    }

    #[test]
    fn known_hosts_never_panic(line in any_text(120), name in any_text(30)) {
        if let Ok(Some(host)) = parse_known_hosts_line(&line) {
            let _ = host.matches_host(&name);
        }
        let _ = parse_known_hosts(&line);
        let _ = parse_sha256_fingerprint(&line);
    }

    /// A known_hosts line of any key reads back its patterns and blob; the key's fingerprint
    /// parses back to its digest, with or without padding and prefix.
    #[test]
    fn known_hosts_lines_round_trip(
        (kind, blob) in key_blob(),
        patterns in proptest::collection::vec("!?[a-z0-9*?.\\[\\]:-]{1,16}", 1..4),
        marker in prop::sample::select(vec!["", "@cert-authority ", "@revoked "]),
        comment in prop::option::of("[ -~]{0,20}"),
    ) {
        let mut line = format!("{marker}{} {kind} {}", patterns.join(","), STANDARD.encode(&blob));
        if let Some(comment) = &comment {
            line.push(' ');
            line.push_str(comment);
        }
        let host = parse_known_hosts_line(&line).unwrap().unwrap();
        prop_assert_eq!(&host.patterns, &patterns);
        prop_assert_eq!(&host.key_type, &kind);
        prop_assert_eq!(&host.key_blob, &blob);
        for pattern in &patterns {
            let _ = host.matches_host(pattern);
        }
        let digest: [u8; 32] = Sha256::digest(&blob).into();
        let fingerprint = sha256_fingerprint(&blob);
        prop_assert_eq!(parse_sha256_fingerprint(&fingerprint).unwrap(), digest);
        let bare = fingerprint.trim_start_matches("SHA256:");
        prop_assert_eq!(parse_sha256_fingerprint(&format!(" {bare}= ")).unwrap(), digest);
    }
}

#[test]
fn serialize_corpus() {
    for (name, stdout) in corpus("serialize") {
        let parsed = reply::script_values(&exec(stdout, Some(0)));
        assert_eq!(
            parsed.is_err(),
            name.starts_with("bad-"),
            "{name}: {parsed:?}"
        );
        if let Ok(values) = parsed {
            read_every_way(&values);
        }
    }
    // The samples mean what they say.
    let read = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus/serialize")
            .join(name);
        reply::script_values(&exec(std::fs::read(path).unwrap(), Some(0))).unwrap()
    };
    for name in [
        "disk-list-wrapped-80.txt",
        "disk-list-floats.txt",
        "disk-7.20-strings-no-nqn.txt",
    ] {
        let disks = reply::file_disks_lenient(read(name)[0].clone()).unwrap();
        assert_eq!(disks[0].file_size, 10_737_418_240, "{name}");
        assert_eq!(disks[0].nvme_tcp_port, 4420, "{name}");
    }
    assert!(
        reply::add_report(read("add-report-created.txt"))
            .unwrap()
            .added
            .is_some()
    );
    assert!(
        reply::add_report(read("add-report-taken.txt"))
            .unwrap()
            .added
            .is_none()
    );
    let facts = reply::volume_facts(
        read("volume-facts.txt"),
        "pvc-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0.img",
    )
    .unwrap();
    assert_eq!(facts.images.len(), 1);
    let pool = reply::pool(&reply::items(read("pool.txt")[0].clone()).unwrap()[0]).unwrap();
    assert_eq!(pool.size, 4_000_787_030_016);
    let resource = reply::single_object(read("resource.txt")[0].clone(), "resource").unwrap();
    assert_eq!(
        reply::opt_u64(&resource, "free-memory").unwrap(),
        Some(15_032_385_536)
    );
}

#[test]
fn rest_error_corpus() {
    for (name, body) in corpus("rest_error") {
        let body = String::from_utf8(body).unwrap();
        for status in [400, 404, 500, 502] {
            let error = routeros::error::rest_error(status, &body);
            assert!(!error.to_string().is_empty(), "{name}");
        }
    }
}

#[test]
fn line_corpora() {
    let versions: Vec<_> = corpus_lines("version")
        .iter()
        .map(|v| RouterOsVersion::parse(v).is_ok())
        .collect();
    assert_eq!(versions.iter().filter(|ok| **ok).count(), 7, "{versions:?}");
    for text in corpus_lines("device_text") {
        let _ = routeros::error::device_text_error(&text);
    }
    let hosts: Vec<_> = corpus_lines("allowed_hosts")
        .iter()
        .map(|v| AllowedHosts::parse(v))
        .collect();
    assert!(matches!(&hosts[1], AllowedHosts::Only(list) if list.len() == 2));
    assert_eq!(hosts[2], AllowedHosts::Any);
    assert!(matches!(&hosts[3], AllowedHosts::Unrecognized(_)));
}

#[test]
fn known_hosts_corpus() {
    for (name, text) in corpus("known_hosts") {
        let parsed = parse_known_hosts(&String::from_utf8(text).unwrap());
        assert_eq!(
            parsed.is_err(),
            name.starts_with("bad-"),
            "{name}: {parsed:?}"
        );
        if let Ok(hosts) = parsed {
            assert_eq!(hosts.len(), 6, "{name}");
            assert!(hosts[0].matches_host("rds.lan"));
            assert!(hosts[1].matches_host("[rds.lan]:2222"));
            assert!(hosts[5].matches_host("a.storage.lan"));
            assert!(!hosts[5].matches_host("bad.storage.lan"));
        }
    }
}
