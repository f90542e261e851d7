use super::*;
use serde_json::json;

fn out(stdout: &str) -> ExecOutput {
    ExecOutput {
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
        exit_status: Some(0),
    }
}

/// Wraps `line` at `width` columns with CRLF, as the device's terminal does.
fn wrap(line: &str, width: usize) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut s: String = chars
        .chunks(width)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("\r\n");
    s.push_str("\r\n");
    s
}

fn disk_json() -> Value {
    json!({
        ".id": "*1A", "type": "file", "slot": "pvc-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "slot-default": "", "parent": "", "fs": "-",
        "model": "/storage-pool/pvc-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0.img",
        "size": 10737418240u64,
        "file-path": "/storage-pool/pvc-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0.img",
        "file-size": 10737418240u64, "file-offset": 0, "mount-filesystem": false,
        "mount-read-only": false, "nvme-tcp-export": true, "nvme-tcp-server-port": 4420,
        "nvme-tcp-server-nqn": "nqn.2000-02.com.mikrotik:pvc-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "nvme-tcp-server-allow-host-name": "", "iscsi-export": false, "sector-size": 512,
        "block-device": true, "comment": "ns/app \"x\" ü"
    })
}

#[test]
fn field_lesson_18_wrapped_crlf_output_with_a_split_json_string_parses() {
    let line = Value::Array(vec![disk_json()]).to_string();
    let wrapped = wrap(&line, 80);
    assert!(wrapped.matches("\r\n").count() > 3);
    let values = expect_values(&out(&wrapped), 1).unwrap();
    let list = items(values.into_iter().next().unwrap()).unwrap();
    let disk = file_disk(&list[0]).unwrap();
    assert_eq!(
        disk.file_path,
        "storage-pool/pvc-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0.img"
    );
    assert_eq!(disk.file_size, 10_737_418_240);
    assert!(disk.nvme_tcp_export);
    assert!(!disk.mount_filesystem);
    assert_eq!(disk.nvme_tcp_port, 4420);
    assert_eq!(disk.nqn_source, NqnSource::ServerNqn);
    assert_eq!(disk.comment.as_deref(), Some("ns/app \"x\" ü"));
    // Wrapping at every width, including a CR and an LF landing apart, changes nothing.
    for width in [1, 2, 7, 79] {
        let v = expect_values(&out(&wrap(&line, width)), 1).unwrap();
        assert_eq!(file_disk(&items(v[0].clone()).unwrap()[0]).unwrap(), disk);
    }
}

#[test]
fn numbers_as_ints_floats_and_strings() {
    let obj: Object = serde_json::from_str(
        r#"{"a": 1073741824, "b": 1073741824.000000, "c": "1073741824", "d": "1073741824.000000",
            "e": -1, "f": 1.5, "g": "x", "h": 1e300, "i": true, "j": 18446744073709551615}"#,
    )
    .unwrap();
    for key in ["a", "b", "c", "d"] {
        assert_eq!(opt_u64(&obj, key).unwrap(), Some(1_073_741_824), "{key}");
    }
    for key in ["e", "f", "g", "h", "i"] {
        assert!(opt_u64(&obj, key).is_err(), "{key}");
    }
    assert_eq!(opt_u64(&obj, "j").unwrap(), Some(u64::MAX));
    assert_eq!(opt_u64(&obj, "absent").unwrap(), None);
    assert!(matches!(req_u64(&obj, "absent"), Err(Error::Protocol(_))));
}

#[test]
fn booleans_and_strings_in_all_their_forms() {
    let obj: Object = serde_json::from_str(
        r#"{"a": true, "b": "true", "c": "yes", "d": false, "e": "false", "f": "no", "g": 1, "h": "maybe", "s": 42}"#,
    )
    .unwrap();
    for (k, v) in [
        ("a", true),
        ("b", true),
        ("c", true),
        ("d", false),
        ("e", false),
        ("f", false),
    ] {
        assert_eq!(opt_bool(&obj, k).unwrap(), Some(v), "{k}");
    }
    assert!(opt_bool(&obj, "g").is_err());
    assert!(opt_bool(&obj, "h").is_err());
    assert_eq!(opt_str(&obj, "s").as_deref(), Some("42"));
}

#[test]
fn rest_string_valued_disk_parses_like_the_cli_one() {
    let cli = disk_json();
    let rest: Object = cli
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), Value::String(s))
        })
        .collect();
    assert_eq!(
        file_disk(&rest).unwrap(),
        file_disk(cli.as_object().unwrap()).unwrap()
    );
}

#[test]
fn empty_results_in_every_shape() {
    for text in ["[]\r\n", "{}\r\n", "", "\r\n", "null"] {
        let v = expect_values(&out(text), 1).unwrap();
        assert!(items(v[0].clone()).unwrap().is_empty(), "{text:?}");
    }
}

#[test]
fn a_single_object_counts_as_one_item() {
    let v = expect_values(&out(&disk_json().to_string()), 1).unwrap();
    assert_eq!(items(v[0].clone()).unwrap().len(), 1);
    assert!(at_most_one(json!([disk_json(), disk_json()]), "slot x").is_err());
    assert!(items(json!([1, 2])).is_err());
    assert!(items(json!("text")).is_err());
}

#[test]
fn pre_7_21_disk_reports_its_slot_as_nqn() {
    let mut d = disk_json();
    d.as_object_mut().unwrap().remove("nvme-tcp-server-nqn");
    let disk = file_disk(d.as_object().unwrap()).unwrap();
    assert_eq!(disk.nqn, disk.slot);
    assert_eq!(disk.nqn_source, NqnSource::SlotName);
}

#[test]
fn non_file_disks_and_missing_fields_are_refused() {
    let mut d = disk_json();
    d["type"] = json!("raid");
    assert!(matches!(
        file_disk(d.as_object().unwrap()),
        Err(Error::Invalid(_))
    ));
    for key in [
        ".id",
        "slot",
        "file-path",
        "file-size",
        "nvme-tcp-export",
        "nvme-tcp-server-port",
    ] {
        let mut d = disk_json();
        d.as_object_mut().unwrap().remove(key);
        let e = file_disk(d.as_object().unwrap()).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{key}: {e}");
        assert!(e.message().contains(key), "{e}");
    }
    let mut d = disk_json();
    d["nvme-tcp-server-port"] = json!(70000);
    assert!(file_disk(d.as_object().unwrap()).is_err());
}

#[test]
fn error_text_instead_of_json_maps_to_its_kind() {
    let cases = [
        (
            "failure: disk with slot pvc-1 already exists\r\n",
            "already exists",
        ),
        ("no such item\r\n", "not found"),
        (
            "failure: not enough free space on storage-pool\r\n",
            "no space",
        ),
        ("expected end of command (line 1 column 212)\r\n", "invalid"),
        (
            "bad command name serialize (line 1 column 7)\r\n",
            "invalid",
        ),
    ];
    for (text, prefix) in cases {
        let e = script_values(&out(text)).unwrap_err();
        assert!(e.to_string().starts_with(prefix), "{text}: {e}");
        assert_eq!(e.message(), text.trim_end());
    }
    // Error text wrapped mid-word at 80 columns is rejoined.
    let long = format!("failure: disk with slot {} already exists", "p".repeat(64));
    let e = script_values(&out(&wrap(&long, 80))).unwrap_err();
    assert_eq!(e, Error::AlreadyExists(long));
}

#[test]
fn error_after_a_value_and_a_json_lookalike_inside_a_string() {
    let text =
        "{\"version\":\"7.21.5 (stable)\"}\r\nbad command name identity (line 1 column 60)\r\n";
    assert!(matches!(script_values(&out(text)), Err(Error::Invalid(_))));
    // Error words inside a JSON string are data, not an error.
    let v = json!([{"comment": "no such item; failure: x"}]).to_string();
    assert_eq!(script_values(&out(&v)).unwrap().len(), 1);
}

#[test]
fn exit_status_alone_is_a_failure() {
    let mut o = out("");
    o.exit_status = Some(1);
    assert!(matches!(script_values(&o), Err(Error::Invalid(_))));
    o.stderr = b"no such item".to_vec();
    assert!(matches!(script_values(&o), Err(Error::NotFound(_))));
    let mut o = out("syntax error (line 1 column 2)\r\n");
    o.exit_status = Some(1);
    assert!(matches!(script_values(&o), Err(Error::Invalid(_))));
}

#[test]
fn garbage_is_a_protocol_error() {
    assert!(matches!(
        script_values(&out("{\"a\": ")),
        Err(Error::Protocol(_))
    ));
    assert!(matches!(
        script_values(&out("hello")),
        Err(Error::Protocol(_))
    ));
    let bytes = ExecOutput {
        stdout: vec![0xff, 0xfe],
        ..out("")
    };
    assert!(matches!(script_values(&bytes), Err(Error::Protocol(_))));
    assert!(matches!(
        expect_values(&out("[][]"), 1),
        Err(Error::Protocol(_))
    ));
    assert!(expect_values(&out(""), 0).unwrap().is_empty());
}

#[test]
fn system_info_pool_and_file() {
    let res = json!({"version": "7.21.5 (stable)", "board-name": "RDS2216", "uptime": "1d2h",
        "architecture-name": "arm64", "cpu-count": 16, "total-memory": 34359738368u64,
        "free-memory": "1000.000000", "total-hdd-space": 1, "free-hdd-space": 1});
    let ident = json!({"name": "rds1"});
    let info = system_info(res.as_object().unwrap(), ident.as_object().unwrap()).unwrap();
    assert_eq!(info.version.minor, 21);
    assert_eq!(info.identity, "rds1");
    assert_eq!(info.board_name.as_deref(), Some("RDS2216"));
    assert_eq!(info.free_memory, Some(1000));
    let bad = json!({"version": "banana"});
    assert!(system_info(bad.as_object().unwrap(), ident.as_object().unwrap()).is_err());

    let p = json!({".id": "*1", "type": "raid", "slot": "storage-pool", "mount-point": "storage-pool",
        "fs": "btrfs", "size": "7681501126656", "free": 5.0e12, "use": "35", "mounted": "true",
        "state": "clean", "raid-type": "raid5"});
    let pool = pool(p.as_object().unwrap()).unwrap();
    assert_eq!(
        (pool.size, pool.free, pool.mounted),
        (7_681_501_126_656, 5_000_000_000_000, true)
    );
    assert_eq!(pool.state.as_deref(), Some("clean"));

    let f = json!({".id": "*5", "name": "storage-pool/pvc-1.img", "type": ".img file",
        "size": 1073741824, "last-modified": "2026-11-26 13:37:00"});
    let file = file_entry(f.as_object().unwrap()).unwrap();
    assert_eq!(file.name, "storage-pool/pvc-1.img");
    assert_eq!(file.size, 1 << 30);
    assert_eq!(file.kind, ".img file");
}

#[test]
fn settings_object_may_be_wrapped_in_a_list() {
    assert!(single_object(json!({"name": "x"}), "identity").is_ok());
    assert!(single_object(json!([{"name": "x"}]), "identity").is_ok());
    assert!(single_object(json!([]), "identity").is_err());
    assert!(single_object(json!("x"), "identity").is_err());
}

fn file_disk_json(id: &str, slot: &str, path: &str) -> Value {
    json!({".id": id, "type": "file", "slot": slot, "file-path": format!("/{path}"),
        "file-size": 1048576, "nvme-tcp-export": true, "nvme-tcp-server-port": 4420,
        "nvme-tcp-server-nqn": format!("nqn.2000-02.com.mikrotik:{slot}"),
        "mount-filesystem": false})
}

#[test]
fn a_guarded_add_report_is_read_strictly() {
    let disk = file_disk_json("*A", "pvc-1", "storage-pool/pvc-1.img");
    let added = add_report(vec![json!([]), json!([]), json!("*A"), json!([disk])]).unwrap();
    assert_eq!(added.added.as_deref(), Some("*A"));
    assert_eq!(added.slot_after.len(), 1);
    // Nothing added: the reason is in the look-ups. A lone id (not a list) counts too.
    let taken = add_report(vec![json!("*3"), json!(null), json!([disk])]).unwrap();
    assert_eq!(
        (taken.slot_before, taken.added),
        (vec!["*3".to_owned()], None)
    );
    let file = add_report(vec![json!([]), json!(["*F1"]), json!([])]).unwrap();
    assert_eq!(file.files_before, ["*F1"]);
    // Replies that contradict themselves, or that we cannot read, are refused.
    for bad in [
        vec![json!([]), json!([]), json!([])],
        vec![json!(["*3"]), json!([]), json!("*A"), json!([])],
        vec![json!([]), json!([]), json!(7), json!([])],
        vec![json!([]), json!([1]), json!([])],
        vec![json!([])],
        vec![json!([]), json!([]), json!("*A"), json!([]), json!([])],
    ] {
        assert!(
            matches!(add_report(bad.clone()), Err(Error::Protocol(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn volume_facts_keep_only_exact_image_names_and_never_overlook_a_user() {
    let mine = file_disk_json("*1", "pvc-1", "storage-pool/k8s/pvc-1.img");
    let longer = file_disk_json("*2", "x", "storage-pool/xpvc-1.img");
    let portless = json!({".id": "*3", "type": "file", "slot": "odd", "file-path": "/p/pvc-1.img"});
    let raid = json!({".id": "*4", "type": "raid", "slot": "pvc-1"});
    let files = json!([{".id": "*F", "name": "storage-pool/k8s/pvc-1.img", "size": 5},
        {".id": "*G", "name": "storage-pool/xpvc-1.img", "size": 5}]);
    let facts = volume_facts(
        vec![
            json!([mine.clone(), raid]),
            files.clone(),
            json!([mine.clone(), longer, portless]),
        ],
        "pvc-1.img",
    )
    .unwrap();
    assert_eq!(facts.slot_items.len(), 2);
    assert!(matches!(&facts.slot_items[1], DiskItem::Other { kind, .. } if kind == "raid"));
    assert_eq!(facts.images.len(), 1, "xpvc-1.img is another name");
    assert_eq!(
        facts
            .image_users
            .iter()
            .map(|u| (u.slot.as_str(), u.file_path.as_str()))
            .collect::<Vec<_>>(),
        [
            ("pvc-1", "storage-pool/k8s/pvc-1.img"),
            ("odd", "p/pvc-1.img")
        ],
        "a user missing fields a file disk needs is still a user"
    );
    // A user whose file path cannot be read fails the reading: it may be a user.
    let pathless = json!({".id": "*5", "type": "file", "slot": "x"});
    assert!(volume_facts(vec![json!([]), files, json!([mine, pathless])], "pvc-1.img").is_err());
    assert!(volume_facts(vec![json!([])], "pvc-1.img").is_err());
}

#[test]
fn an_image_removal_says_whether_the_image_was_kept() {
    assert_eq!(image_removal(vec![]), Ok(ImageRemoval::Removed));
    assert_eq!(
        image_removal(vec![json!("image-in-use")]),
        Ok(ImageRemoval::InUse)
    );
    assert!(image_removal(vec![json!("x")]).is_err());
    assert!(image_removal(vec![json!([]), json!([])]).is_err());
}

/// The one-item-at-a-time listing reads every reply as the tree-based readers do.
#[test]
fn a_streamed_listing_reads_like_the_tree() {
    let mut other = disk_json();
    other["type"] = json!("raid");
    other["slot"] = json!("storage-pool");
    let mut broken = disk_json();
    broken.as_object_mut().unwrap().remove("file-size");
    let mut second = disk_json();
    second["slot"] = json!("pvc-2");
    let list = json!([disk_json(), other, broken, second]).to_string();
    let cases = [
        wrap(&list, 80),
        wrap(&disk_json().to_string(), 80),
        "[]\r\n".to_owned(),
        "{}\r\n".to_owned(),
        String::new(),
        "null".to_owned(),
        "[1, 2]".to_owned(),
        "\"text\"".to_owned(),
        "17".to_owned(),
        "[] []".to_owned(),
        format!("{list}failure: no such item"),
        "syntax error (line 1 column 3)".to_owned(),
        "[".to_owned(),
    ];
    for case in cases {
        let tree = expect_values(&out(&case), 1).and_then(|mut v| file_disks_lenient(v.remove(0)));
        let streamed = file_disks_listing(out(&case));
        assert_eq!(
            format!("{streamed:?}"),
            format!("{tree:?}"),
            "reply {case:?}"
        );
    }
    let listed = file_disks_listing(out(&wrap(&list, 80))).unwrap();
    assert_eq!(listed.len(), 2);
    for case in [wrap(&list, 80), "[] []".to_owned(), "[".to_owned()] {
        assert_eq!(
            format!("{:?}", pushed(&out(&case), 5)),
            format!("{:?}", file_disks_listing(out(&case))),
            "short reply {case:?}, read as it arrives"
        );
    }
    let failed = ExecOutput {
        exit_status: Some(1),
        ..out("[]")
    };
    assert_eq!(
        format!("{:?}", file_disks_listing(failed.clone())),
        format!("{:?}", expect_values(&failed, 1).map(drop))
    );
}

#[test]
fn six_decimal_floats_above_2_pow_53_over_a_million_read_exactly() {
    // `:serialize` may print byte counts as `N.000000`; the significand of such a text is
    // N * 10^6, beyond 2^53 for N above ~9 GB. Parsed without full precision the value came
    // out as 621009399427.0001 and was refused as not whole.
    let obj: Object = serde_json::from_str(
        r#"{"size": 621009399427.000000, "free": 3523215360001.000000, "s": "621009399427.000000"}"#,
    )
    .unwrap();
    assert_eq!(opt_u64(&obj, "size").unwrap(), Some(621_009_399_427));
    assert_eq!(opt_u64(&obj, "free").unwrap(), Some(3_523_215_360_001));
    assert_eq!(opt_u64(&obj, "s").unwrap(), Some(621_009_399_427));
}

/// `output` pushed to a [`ListingReader`] in chunks of `chunk` bytes.
fn pushed(output: &ExecOutput, chunk: usize) -> Result<Vec<FileDisk>, Error> {
    let mut reader = ListingReader::new(64 << 20);
    for part in output.stdout.chunks(chunk) {
        reader.push(part)?;
    }
    reader.finish(ExecOutput {
        stdout: Vec::new(),
        ..output.clone()
    })
}

/// A listing too long to keep whole is read item by item as it arrives, and answers as the
/// whole text does: the same disks, the same refusals, whatever the chunks.
#[test]
fn a_long_listing_read_as_it_arrives_reads_like_the_whole_text() {
    let disk = |n: usize| {
        let mut disk = disk_json();
        disk["slot"] = json!(format!("pvc-{n}"));
        disk["comment"] = json!(format!("rds-csi \"quoted\" [{n}] {{braces}} \\ é"));
        disk
    };
    let mut items: Vec<Value> = (0..300).map(disk).collect();
    let mut raid = disk_json();
    raid["type"] = json!("raid");
    items.insert(50, raid);
    let list = json!(items).to_string();
    assert!(list.len() > 128 << 10, "longer than what is kept whole");
    let mut with_scalar = items.clone();
    with_scalar.insert(120, json!(17));
    let with_scalar = json!(with_scalar).to_string();
    for (reply, exit_status) in [
        (wrap(&list, 80), 0),
        (list.clone(), 0),
        (format!("{list}\r\nfailure: no such item\r\n"), 0),
        (format!("{list} []"), 0),
        (wrap(&list, 80), 1),
        (with_scalar, 0),
    ] {
        let output = ExecOutput {
            exit_status: Some(exit_status),
            ..out(&reply)
        };
        let whole = format!("{:?}", file_disks_listing(output.clone()));
        for chunk in [1, 7, 4096, 1 << 20] {
            assert_eq!(
                format!("{:?}", pushed(&output, chunk)),
                whole,
                "chunks of {chunk}, reply ending {:?}",
                &reply[reply.len() - 40..]
            );
        }
    }
    assert_eq!(pushed(&out(&list), 999).unwrap().len(), 300);
    // Cut short: no listing, whatever was read of it.
    let cut = &list[..list.len() - 10];
    assert!(matches!(pushed(&out(cut), 4096), Err(Error::Protocol(_))));
    let broken = list.replacen("\"slot\"", "slot", 1);
    assert!(matches!(
        pushed(&out(&broken), 4096),
        Err(Error::Protocol(_))
    ));
    // Longer than allowed: refused while it arrives.
    let mut reader = ListingReader::new(1000);
    assert!(reader.push(list.as_bytes()).is_err());
}
