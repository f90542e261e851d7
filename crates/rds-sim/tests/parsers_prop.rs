//! Property tests of what the simulator reads from its clients: RouterOS scripts (lexer and
//! parser, as SSH exec and `POST /rest/execute` hand them over), REST API query words, and the
//! number, id and version texts inside them. None may panic on any input; strings quoted the
//! way RouterOS prints them (and the way the client quotes them) lex back to themselves.
//!
//! The normal test run is the short one (256 cases per property). A long run:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test -p rds-sim --test parsers_prop
//! ```
//!
//! Seed inputs live in `tests/corpus/<parser>/`: `script` files are whole scripts, which must
//! parse unless named `bad-*`; `query` files hold one query word per line.

use std::path::Path;

use proptest::prelude::*;
use rds_sim::RouterOsVersion;
use rds_sim::records::{Record, Val, format_id, matches_text, parse_id, quote_cli};
use rds_sim::rest::query_matches;
use rds_sim::script::lexer::{Tok, lex};
use rds_sim::script::parse;
use rds_sim::units::{parse_plain, parse_size};

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

/// Any text up to `max` characters, control characters and NUL included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// The versions the simulator emulates: before file disks, before server NQNs, current.
fn versions() -> Vec<RouterOsVersion> {
    ["7.16.2", "7.20.8", "7.21.5", "7.22beta3"]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect()
}

/// Pieces of RouterOS script: commands, menus, arguments, values, operators, brackets,
/// separators, strings with escapes, comments and continuations.
fn script_piece() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "/disk",
        "/file",
        "/system resource",
        "/system identity",
        "/disk/",
        "add",
        "print",
        "remove",
        "set",
        "find",
        "get",
        "where",
        "detail",
        "terse",
        "as-value",
        "count-only",
        "without-paging",
        ":put",
        ":local",
        ":global",
        ":set",
        ":serialize",
        "to=json",
        ":len",
        ":if",
        ":do",
        "do=",
        "else=",
        "on-error=",
        "and",
        "or",
        "not",
        "in",
        "type=file",
        "slot=",
        "file-path=",
        "file-size=",
        "mount-filesystem=no",
        "nvme-tcp-export=yes",
        "nvme-tcp-server-port=4420",
        "comment=",
        "numbers=",
        ".id",
        "*1A",
        "*0",
        "1G",
        "0x10",
        "18446744073709551616",
        "-1",
        "yes",
        "no",
        "true",
        "false",
        "$slotIds",
        "$x",
        "[",
        "]",
        "{",
        "}",
        "(",
        ")",
        ";",
        "\n",
        "\r\n",
        "=",
        "!=",
        "~",
        "<",
        ">",
        "!",
        "&&",
        "||",
        "#",
        "# comment\n",
        "\\\n",
        "\\\r\n",
        "\\",
        "$",
        "\"",
        "\"\"",
    ]);
    prop_oneof![
        6 => words.prop_map(str::to_owned),
        2 => "\"([a-z0-9 ./:-]|\\\\[0-9A-F]{2}|\\\\[\"\\\\nrt$?_abfv])*\"",
        1 => "[a-z][a-z0-9-]{0,10}=[a-z0-9.\"]{0,8}",
        1 => any_text(4),
    ]
}

fn script() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            script_piece(),
            prop::sample::select(vec!["", " ", " ", "  "]),
        ),
        0..40,
    )
    .prop_map(|pieces| pieces.into_iter().map(|(p, s)| format!("{p}{s}")).collect())
}

fn record() -> impl Strategy<Value = Record> {
    (
        prop::option::of(any::<u64>()),
        any_text(6),
        any::<u64>(),
        any_text(6),
        any::<bool>(),
    )
        .prop_map(|(id, comment, size, slot, export)| Record {
            id,
            comment,
            props: vec![
                ("slot", Val::Str(slot)),
                ("type", Val::Bare("file".into())),
                ("file-path", Val::Path("/storage-pool/x.img".into())),
                ("file-size", Val::Size(size)),
                ("nvme-tcp-server-port", Val::Num(4420)),
                ("nvme-tcp-export", Val::Bool(export)),
            ],
            flags: Vec::new(),
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn scripts_never_panic(src in any_text(200)) {
        let _ = lex(&src);
        for version in versions() {
            let _ = parse(&src, &version);
        }
    }

    /// Near-valid scripts from the language's own pieces never panic the lexer or the parser;
    /// the lexer always ends with one `Eof`, and any script it refuses the parser refuses too.
    #[test]
    fn near_valid_scripts_never_panic(src in script()) {
        let lexed = lex(&src);
        if let Ok(tokens) = &lexed {
            prop_assert_eq!(tokens.iter().filter(|t| t.tok == Tok::Eof).count(), 1);
            prop_assert_eq!(&tokens.last().unwrap().tok, &Tok::Eof);
        }
        for version in versions() {
            let parsed = parse(&src, &version);
            if lexed.is_err() {
                prop_assert!(parsed.is_err());
            }
        }
    }

    /// A string quoted as RouterOS prints it (`print detail`, `:put` of a quoted value) lexes
    /// back to itself, alone or inside a command.
    #[test]
    fn printed_strings_lex_back(text in any_text(40)) {
        let quoted = quote_cli(&text);
        let tokens: Vec<Tok> = lex(&quoted).unwrap().into_iter().map(|t| t.tok).collect();
        prop_assert_eq!(tokens, vec![Tok::Str(text.clone()), Tok::Eof]);
        let src = format!("/disk set [find where slot={quoted}] comment={quoted};:put {quoted}");
        let strings: Vec<Tok> = lex(&src)
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .filter(|t| matches!(t, Tok::Str(_)))
            .collect();
        prop_assert_eq!(strings, vec![Tok::Str(text); 3]);
        let version = RouterOsVersion::default();
        prop_assert!(parse(&src, &version).is_ok(), "{}", src);
    }

    #[test]
    fn query_words_never_panic(
        words in proptest::collection::vec(prop_oneof![
            any_text(12),
            "[#&|!]{1,2}",
            "-?[a-z.-]{0,12}([=<>][0-9A-Za-z*]{0,6})?",
        ], 0..8),
        record in record(),
    ) {
        let _ = query_matches(&words, &record);
    }

    /// `*HEX` ids, sizes with suffixes and `0x` numbers read back as written.
    #[test]
    fn numbers_and_ids_round_trip(
        id: u64,
        n in prop_oneof![any::<u64>(), 0u64..(1 << 24)],
        suffix in prop::sample::select(vec![("", 0u32), ("k", 10), ("K", 10), ("M", 20), ("G", 30), ("T", 40)]),
        text in any_text(24),
    ) {
        prop_assert_eq!(parse_id(&format_id(id)), Some(id));
        let _ = (parse_id(&text), parse_size(&text), parse_plain(&text));
        prop_assert!(matches_text(".id", Some(&Val::Bare(format_id(id))), &format_id(id)));
        let expected = n.checked_mul(1u64 << suffix.1);
        prop_assert_eq!(parse_size(&format!("{n}{}", suffix.0)), expected);
        prop_assert_eq!(parse_size(&format!(" {n} ")), Some(n));
        prop_assert_eq!(parse_plain(&format!("0x{n:x}")), Some(n));
        prop_assert!(matches_text("size", Some(&Val::Size(n)), &n.to_string()));
    }

    #[test]
    fn versions_never_panic(text in any_text(24), minor in 0u32..100, patch in 0u32..100) {
        let _ = text.parse::<RouterOsVersion>();
        let version: RouterOsVersion = format!("7.{minor}.{patch}").parse().unwrap();
        prop_assert_eq!(version.triple(), (7, minor, patch));
        let again: RouterOsVersion = version.to_string().parse().unwrap();
        prop_assert_eq!(again, version);
    }
}

#[test]
fn script_corpus() {
    for (name, src) in corpus("script") {
        for version in versions().into_iter().filter(|v| v.has_server_nqn()) {
            let parsed = parse(&src, &version);
            assert_eq!(
                parsed.is_err(),
                name.starts_with("bad-"),
                "{name} on {version}: {parsed:?}"
            );
        }
    }
}

#[test]
fn query_corpus() {
    let words: Vec<String> = corpus("query")
        .into_iter()
        .flat_map(|(_, text)| text.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let record = Record {
        id: Some(1),
        comment: String::new(),
        props: vec![
            ("slot", Val::Str("pvc-1".into())),
            ("file-size", Val::Size(1 << 31)),
        ],
        flags: Vec::new(),
    };
    for word in &words {
        let _ = query_matches(std::slice::from_ref(word), &record);
    }
    assert_eq!(query_matches(&words[..3], &record), Ok(true));
    let _ = query_matches(&words, &record);
}
