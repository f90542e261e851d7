//! Property tests of the parsers of outside input in this crate: mountinfo (the kernel's text),
//! device numbers (`MAJOR:MINOR` from sysfs and mountinfo) and the shell-word splitter of
//! StorageClass `mkfsOptions`. None of them may panic on any input, and each round-trips what
//! it is meant to read.
//!
//! The normal test run is the short one (256 cases per property). A long run:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test -p mounts --test parsers_prop
//! ```
//!
//! The seed inputs (real samples and known edge cases) live in `tests/corpus/<parser>/`; every
//! file there is run through its parser, and files named `bad-*` must be refused.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mounts::DeviceNumber;
use mounts::format::MkfsOptions;
use mounts::mountinfo::MountTable;
use mounts::shellwords;
use proptest::prelude::*;

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

/// The kernel's mountinfo escaping (`seq_escape` with " \t\n\\"): those four bytes as `\ooo`.
fn kernel_escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// Single-quotes a word for a POSIX shell (`'` as `'\''`).
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Any text up to `max` characters, control characters and NUL included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// One field as the kernel may print it: any bytes, escaped; never empty.
fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..24),
        "/[a-z0-9 \\\\\t\n._-]{0,20}".prop_map(String::into_bytes),
    ]
}

/// A text field (options, fs type, source): any text without the separator meaning, escaped.
fn text_field() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9=,:._/-]{1,16}", "[a-z \\\\\t\n]{1,8}", "\\PC{1,8}",]
}

/// An optional field (`shared:N`, `master:N`, `propagate_from:N`, `unbindable`), never `-`.
fn optional_field() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..1000).prop_map(|n| format!("shared:{n}")),
        (1u32..1000).prop_map(|n| format!("master:{n}")),
        (1u32..1000).prop_map(|n| format!("propagate_from:{n}")),
        Just("unbindable".to_owned()),
    ]
}

#[derive(Debug, Clone)]
struct Line {
    mount_id: u64,
    parent_id: u64,
    device: (u32, u32),
    root: Vec<u8>,
    mount_point: Vec<u8>,
    options: String,
    optional: Vec<String>,
    fs_type: String,
    source: String,
    super_options: String,
}

impl Line {
    fn render(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} {}:{} ",
            self.mount_id, self.parent_id, self.device.0, self.device.1
        )
        .into_bytes();
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&kernel_escape(bytes));
            out.push(b' ');
        };
        field(&self.root);
        field(&self.mount_point);
        field(self.options.as_bytes());
        for optional in &self.optional {
            field(optional.as_bytes());
        }
        field(b"-");
        field(self.fs_type.as_bytes());
        field(self.source.as_bytes());
        out.extend_from_slice(&kernel_escape(self.super_options.as_bytes()));
        out
    }
}

fn line() -> impl Strategy<Value = Line> {
    (
        (any::<u64>(), any::<u64>(), any::<(u32, u32)>()),
        (path_bytes(), path_bytes()),
        text_field(),
        proptest::collection::vec(optional_field(), 0..3),
        (text_field(), text_field(), text_field()),
    )
        .prop_map(
            |(
                (mount_id, parent_id, device),
                (root, mount_point),
                options,
                optional,
                (fs_type, source, super_options),
            )| Line {
                mount_id,
                parent_id,
                device,
                root,
                mount_point,
                options,
                optional,
                fs_type,
                source,
                super_options,
            },
        )
}

/// Mountinfo-shaped text with mutations: random fields, dashes, escapes, numbers and breaks.
fn near_mountinfo() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"-".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\\040".to_vec()),
        Just(b"\\777".to_vec()),
        Just(b"\\0".to_vec()),
        Just(b"\n".to_vec()),
        Just(b" ".to_vec()),
        Just(b"shared:1".to_vec()),
        "[0-9]{1,25}".prop_map(String::into_bytes),
        "[0-9]{0,12}:[0-9]{0,12}".prop_map(String::into_bytes),
        "[ -~]{0,6}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|tokens| tokens.join(&b' '))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mountinfo_never_panics_on_bytes(text in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = MountTable::parse(&text);
    }

    #[test]
    fn mountinfo_never_panics_on_near_valid_text(text in near_mountinfo()) {
        if let Ok(table) = MountTable::parse(&text) {
            // The queries on a parsed table hold up too.
            let _ = table.crowded(1);
            for entry in table.entries() {
                let _ = table.containing(&entry.mount_point);
                let _ = entry.propagation();
            }
        }
    }

    /// A line the kernel could print parses into its fields, and the path fields escape back
    /// to the exact source text.
    #[test]
    fn mountinfo_lines_round_trip(lines in proptest::collection::vec(line(), 1..6)) {
        let text: Vec<u8> = lines.iter().flat_map(|l| {
            let mut rendered = l.render();
            rendered.push(b'\n');
            rendered
        }).collect();
        let table = MountTable::parse(&text).unwrap();
        prop_assert_eq!(table.entries().len(), lines.len());
        for (entry, line) in table.entries().iter().zip(&lines) {
            prop_assert_eq!(entry.mount_id, line.mount_id);
            prop_assert_eq!(entry.parent_id, line.parent_id);
            prop_assert_eq!(entry.device, DeviceNumber::new(line.device.0, line.device.1));
            prop_assert_eq!(entry.root.as_os_str().as_bytes(), &line.root[..]);
            prop_assert_eq!(entry.mount_point.as_os_str().as_bytes(), &line.mount_point[..]);
            prop_assert_eq!(
                kernel_escape(entry.mount_point.as_os_str().as_bytes()),
                kernel_escape(&line.mount_point)
            );
            prop_assert_eq!(&entry.mount_options, &line.options);
            prop_assert_eq!(&entry.optional_fields, &line.optional);
            prop_assert_eq!(&entry.fs_type, &line.fs_type);
            prop_assert_eq!(&entry.source, &line.source);
            prop_assert_eq!(&entry.super_options, &line.super_options);
            // Each parsed line re-rendered is the source line.
            let reparsed = Line {
                root: entry.root.as_os_str().as_bytes().to_vec(),
                mount_point: entry.mount_point.as_os_str().as_bytes().to_vec(),
                options: entry.mount_options.clone(),
                optional: entry.optional_fields.clone(),
                fs_type: entry.fs_type.clone(),
                source: entry.source.clone(),
                super_options: entry.super_options.clone(),
                ..line.clone()
            };
            prop_assert_eq!(reparsed.render(), line.render());
        }
        // A parsed mount point is found again by path.
        let last = lines.last().unwrap();
        let path = PathBuf::from(OsStr::from_bytes(&last.mount_point));
        if path.is_absolute() {
            prop_assert!(table.containing(&path).is_some());
        }
    }

    #[test]
    fn device_numbers_never_panic(text in any_text(24)) {
        let _ = text.parse::<DeviceNumber>();
    }

    #[test]
    fn device_numbers_round_trip(major: u32, minor: u32, pad in "[ \t\n]{0,2}") {
        let dev = DeviceNumber::new(major, minor);
        prop_assert_eq!(format!("{pad}{dev}{pad}").parse::<DeviceNumber>(), Ok(dev));
        prop_assert_eq!(DeviceNumber::from_raw(dev.to_raw()), dev);
    }

    #[test]
    fn near_device_numbers_never_panic(text in "[-+ 0-9:]{0,30}") {
        if let Ok(dev) = text.parse::<DeviceNumber>() {
            prop_assert_eq!(dev.to_string().parse::<DeviceNumber>(), Ok(dev));
        }
    }

    #[test]
    fn shell_words_never_panic(text in any_text(64)) {
        let _ = shellwords::split(&text);
        let _ = MkfsOptions::parse(&text);
    }

    #[test]
    fn shell_words_near_valid_never_panic(text in "[-a-z \t\n'\"\\\\=$`;]{0,48}") {
        if let Ok(words) = shellwords::split(&text) {
            // What split accepted, quoted again, splits to the same words.
            let quoted: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
            prop_assert_eq!(shellwords::split(&quoted.join(" ")).unwrap(), words);
        }
    }

    /// Any words (without NUL), single-quoted and joined, split back to themselves.
    #[test]
    fn shell_quoting_round_trips(words in proptest::collection::vec("[^\u{0}]{0,12}", 0..6)) {
        let quoted: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
        prop_assert_eq!(shellwords::split(&quoted.join(" \t")).unwrap(), words.clone());
        let options = MkfsOptions::parse(&quoted.join(" "));
        match words.first() {
            Some(first) if !first.starts_with('-') => prop_assert!(options.is_err()),
            _ => prop_assert_eq!(options.unwrap().args().to_vec(), words),
        }
    }
}

#[test]
fn mountinfo_corpus() {
    for (name, text) in corpus("mountinfo") {
        let parsed = MountTable::parse(&text);
        assert_eq!(
            parsed.is_err(),
            name.starts_with("bad-"),
            "{name}: {parsed:?}"
        );
        if let Ok(table) = parsed {
            let lines = text
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            assert_eq!(table.entries().len(), lines, "{name}");
        }
    }
}

#[test]
fn device_number_corpus() {
    for (name, text) in corpus("devnum") {
        let text = String::from_utf8(text).unwrap();
        let parsed = text.parse::<DeviceNumber>();
        assert_eq!(
            parsed.is_err(),
            name.starts_with("bad-"),
            "{name}: {parsed:?}"
        );
    }
}

#[test]
fn shell_words_corpus() {
    for (name, text) in corpus("shellwords") {
        let text = String::from_utf8(text).unwrap();
        let parsed = shellwords::split(&text);
        assert_eq!(
            parsed.is_err(),
            name.starts_with("bad-"),
            "{name}: {parsed:?}"
        );
        if let Ok(words) = parsed {
            let quoted: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
            assert_eq!(
                shellwords::split(&quoted.join(" ")).unwrap(),
                words,
                "{name}"
            );
        }
        let _ = MkfsOptions::parse(&text);
    }
}
