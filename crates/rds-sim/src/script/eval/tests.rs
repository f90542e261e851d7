use super::super::parser::parse;
use super::*;
use crate::device::tests::{MemoryBackend, device_with};

fn run_text(device: &mut Device, src: &str) -> (Vec<String>, Option<String>) {
    let script = parse(src, &device.env().version).unwrap_or_else(|e| panic!("{src}: {e}"));
    let out = run(&script, device, &RunContext::default());
    (out.lines, out.error.map(|e| e.to_string()))
}

fn json(device: &mut Device, src: &str) -> serde_json::Value {
    let (lines, error) = run_text(device, src);
    assert_eq!(error, None, "{lines:?}");
    serde_json::from_str(&lines.concat()).unwrap_or_else(|e| panic!("{lines:?}: {e}"))
}

const ADD: &str = "/disk add type=file slot=\"pvc-1\" file-path=\"storage-pool/pvc-1.img\" file-size=1073741824 mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\" comment=\"vol \\C3\\A9\"";

/// Wheres naming a slot take the one-disk shortcut; the answers must be those of the
/// full scan.
#[test]
fn slot_conditions_select_the_same_disks_as_a_full_scan() {
    let mut device = device_with(MemoryBackend::default());
    for n in 1..=3 {
        let add = ADD.replace("pvc-1", &format!("pvc-{n}"));
        assert_eq!(run_text(&mut device, &add).1, None);
    }
    let slots = |device: &mut Device, filter: &str| -> Vec<String> {
        let reply = json(
            device,
            &format!(":put [:serialize to=json [/disk print as-value where {filter}]]"),
        );
        let items = match reply {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        };
        items
            .iter()
            .map(|d| d["slot"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(slots(&mut device, "slot=\"pvc-2\""), ["pvc-2"]);
    assert_eq!(
        slots(&mut device, "type=file and slot=\"pvc-3\""),
        ["pvc-3"]
    );
    assert_eq!(
        slots(&mut device, "slot=\"pvc-2\" and type=raid"),
        [] as [&str; 0]
    );
    assert_eq!(
        slots(&mut device, "slot=\"pvc-1\" or slot=\"pvc-3\""),
        ["pvc-1", "pvc-3"]
    );
    assert_eq!(
        slots(&mut device, "slot!=\"pvc-2\" and type=file"),
        ["pvc-1", "pvc-3"]
    );
    assert_eq!(slots(&mut device, "slot=\"nope\""), [] as [&str; 0]);
    // Image paths and file names are looked up through the index too: equality (with or
    // without the leading `/`) and anchored literal patterns, against the printed text.
    for (filter, want) in [
        (r#"file-path="/storage-pool/pvc-2.img""#, &["pvc-2"][..]),
        (r#"file-path="storage-pool/pvc-2.img""#, &["pvc-2"]),
        (r#"file-path~"^/?storage-pool/pvc-2\\.img$""#, &["pvc-2"]),
        (r#"file-path~"^/storage-pool/pvc-3\\.img$""#, &["pvc-3"]),
        (r#"file-path~"^storage-pool/pvc-3\\.img$""#, &[]),
        (r#"file-path~"pvc-[23]\\.img$""#, &["pvc-2", "pvc-3"]),
        (r#"slot~"^pvc-1$" and type=file"#, &["pvc-1"]),
        (r#"slot~"^/?pvc-1$""#, &["pvc-1"]),
    ] {
        assert_eq!(slots(&mut device, filter), want, "{filter}");
    }
    let files = |device: &mut Device, filter: &str| -> usize {
        let src = format!(":put [:len [/file find where {filter}]]");
        let (lines, error) = run_text(device, &src);
        assert_eq!(error, None, "{filter}");
        lines.concat().trim().parse().unwrap()
    };
    for (filter, want) in [
        (r#"name="storage-pool/pvc-2.img""#, 1),
        (r#"name="/storage-pool/pvc-2.img""#, 0),
        (r#"name~"^/?storage-pool/pvc-2\\.img$""#, 1),
        (r#"name~"^storage-pool/pvc-[0-9]\\.img$""#, 3),
        (r#"name="storage-pool/none.img""#, 0),
    ] {
        assert_eq!(files(&mut device, filter), want, "{filter}");
    }
}

#[test]
fn create_then_read_back_in_one_script() {
    let mut device = device_with(MemoryBackend::default());
    let reply = json(
        &mut device,
        &format!(
            "{ADD};:put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]"
        ),
    );
    let disk = &reply[0];
    assert_eq!(disk[".id"], "*2");
    assert_eq!(disk["type"], "file");
    assert_eq!(disk["slot"], "pvc-1");
    assert_eq!(disk["file-path"], "/storage-pool/pvc-1.img");
    assert_eq!(disk["file-size"], 1_073_741_824u64);
    assert_eq!(disk["size"], 1_073_741_824u64);
    assert_eq!(disk["nvme-tcp-export"], true);
    assert_eq!(disk["mount-filesystem"], false);
    assert_eq!(
        disk["nvme-tcp-server-nqn"],
        "nqn.2000-02.com.mikrotik:pvc-1"
    );
    assert_eq!(disk["comment"], "vol é");
    assert_eq!(disk["block-device"], true);
}

#[test]
fn a_failing_statement_stops_the_script() {
    let mut device = device_with(MemoryBackend::default());
    run_text(&mut device, ADD);
    let (lines, error) = run_text(&mut device, &format!(":put before;{ADD};:put after"));
    assert_eq!(lines, vec!["before"]);
    assert_eq!(
        error.as_deref(),
        Some("failure: disk with slot pvc-1 already exists")
    );
}

#[test]
fn where_filters_by_type() {
    let mut device = device_with(MemoryBackend::default());
    run_text(&mut device, ADD);
    let count = |device: &mut Device, filter: &str| {
        json(
            device,
            &format!(":put [:serialize to=json [/disk print as-value where {filter}]]"),
        )
        .as_array()
        .unwrap()
        .len()
    };
    assert_eq!(count(&mut device, "type=file and slot~\"^pvc\\2D\""), 1);
    assert_eq!(count(&mut device, "slot~\"^nope\""), 0);
    assert_eq!(count(&mut device, "mount-point=\"storage-pool\""), 1);
    assert_eq!(count(&mut device, "file-size=1G"), 1);
    assert_eq!(count(&mut device, "file-size>1G"), 0);
    assert_eq!(count(&mut device, "size>1G"), 1, "the pool");
    assert_eq!(count(&mut device, "nvme-tcp-export=yes"), 1);
    assert_eq!(count(&mut device, "nvme-tcp-export"), 1);
    assert_eq!(count(&mut device, "!nvme-tcp-export"), 1);
    assert_eq!(
        count(&mut device, "file-path=\"storage-pool/pvc-1.img\""),
        1
    );
    assert_eq!(
        count(&mut device, "comment=\"\""),
        1,
        "the pool has no comment"
    );
    assert_eq!(count(&mut device, ".id=*2"), 1);
    assert_eq!(
        count(&mut device, "slot=\"pvc-1\" or slot=\"storage-pool\""),
        2
    );
    assert_eq!(count(&mut device, "slot!=\"pvc-1\""), 1);
}

#[test]
fn settings_menus_serialize_as_objects() {
    let mut device = device_with(MemoryBackend::default());
    let (lines, error) = run_text(
        &mut device,
        ":put [:serialize to=json [/system resource print as-value]];:put [:serialize to=json [/system identity print as-value]]",
    );
    assert_eq!(error, None);
    assert_eq!(lines.len(), 2);
    let resource: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(resource["version"], "7.21.5 (stable)");
    assert_eq!(resource["board-name"], "RDS2216");
    assert!(resource["total-memory"].is_u64());
    let identity: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(identity["name"], "rds-sim");
}

#[test]
fn the_clock_reads_the_device_time_in_the_forms_of_last_modified() {
    let mut device = device_with(MemoryBackend::default());
    // 2026-12-05 07:30:09 UTC
    device.set_conditions(1_796_455_809, false, Default::default());
    let (lines, error) = run_text(
        &mut device,
        ":put [/system clock get date];:put [/system clock get time];:put [:serialize to=json [/system clock print as-value]]",
    );
    assert_eq!(error, None);
    assert_eq!(lines[..2], ["2026-12-05", "07:30:09"]);
    let clock: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(clock["date"], "2026-12-05");
    assert_eq!(clock["time"], "07:30:09");
    assert_eq!(clock["time-zone-name"], "UTC");
}

#[test]
fn items_by_find_id_name_and_position() {
    let mut device = device_with(MemoryBackend::default());
    run_text(&mut device, ADD);
    run_text(&mut device, "/disk set pvc-1 comment=a");
    assert_eq!(
        run_text(&mut device, ":put [/disk get *2 comment]").0,
        vec!["a"]
    );
    run_text(&mut device, "/disk set [find slot=\"pvc-1\"] comment=b");
    assert_eq!(
        run_text(&mut device, ":put [/disk get pvc-1 comment]").0,
        vec!["b"]
    );
    let (_, error) = run_text(&mut device, "/disk set nosuchslot comment=x");
    assert_eq!(error.as_deref(), Some("no such item"));
    let (_, error) = run_text(&mut device, "/disk set *FF comment=x");
    assert_eq!(error.as_deref(), Some("no such item"));
    // Positions refer to the last print of the same script.
    let (_, error) = run_text(&mut device, "/disk print; /disk set 1 comment=c");
    assert_eq!(error, None);
    assert_eq!(
        run_text(&mut device, ":put [/disk get pvc-1 comment]").0,
        vec!["c"]
    );
    assert_eq!(
        run_text(&mut device, "/disk set 1 comment=d").1.as_deref(),
        Some("no such item")
    );
    // A find with no match is a silent no-op.
    assert_eq!(
        run_text(&mut device, "/disk remove [find where slot=\"nope\"]").1,
        None
    );
    assert_eq!(run_text(&mut device, ":put [/disk find]").0, vec!["*1;*2"]);
    assert_eq!(
        run_text(&mut device, ":put [:len [/disk find]]").0,
        vec!["2"]
    );
}

#[test]
fn grow_and_remove_through_scripts() {
    let mut device = device_with(MemoryBackend::default());
    run_text(&mut device, ADD);
    let reply = json(
        &mut device,
        "/disk set [find where slot=\"pvc-1\"] file-size=2147483648;:put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]",
    );
    assert_eq!(reply[0]["file-size"], 2_147_483_648u64);
    let (lines, error) = run_text(
        &mut device,
        "/disk set [find where slot=\"pvc-1\"] file-size=1G;:put x",
    );
    assert!(lines.is_empty());
    assert_eq!(
        error.as_deref(),
        Some("failure: file-size can not be reduced")
    );

    run_text(&mut device, "/disk remove [find where slot=\"pvc-1\"]");
    let file = json(
        &mut device,
        ":put [:serialize to=json [/file print detail as-value where name=\"storage-pool/pvc-1.img\"]]",
    );
    assert_eq!(file[0]["type"], ".img file");
    assert_eq!(file[0]["size"], 2_147_483_648u64);
    run_text(
        &mut device,
        "/file remove [find where name=\"storage-pool/pvc-1.img\"]",
    );
    let file = json(
        &mut device,
        ":put [:serialize to=json [/file print detail as-value where name=\"storage-pool/pvc-1.img\"]]",
    );
    assert_eq!(file, serde_json::json!([]));
}

#[test]
fn argument_values_are_checked_at_run_time() {
    let mut device = device_with(MemoryBackend::default());
    let (_, error) = run_text(&mut device, "/disk add type=floppy");
    assert_eq!(
        error.as_deref(),
        Some("input does not match any value of type")
    );
    let (_, error) = run_text(
        &mut device,
        "/disk add type=file file-path=storage-pool/x file-size=lots",
    );
    assert_eq!(
        error.as_deref(),
        Some("invalid value for argument file-size")
    );
    let (_, error) = run_text(
        &mut device,
        "/disk add type=file file-path=elsewhere/x file-size=1G",
    );
    assert_eq!(error.as_deref(), Some("failure: invalid file path"));
    // A sparse pool takes an image larger than itself.
    let (_, error) = run_text(
        &mut device,
        "/disk add type=file file-path=storage-pool/x file-size=1T",
    );
    assert_eq!(error, None);
}

#[test]
fn add_returns_the_new_id_and_variables_work() {
    let mut device = device_with(MemoryBackend::default());
    let (lines, error) = run_text(
        &mut device,
        ":local id [/disk add type=file file-path=storage-pool/a.img file-size=1M]; :put $id; :put [/disk get $id slot]",
    );
    assert_eq!(error, None);
    assert_eq!(lines, vec!["*2", "file-storage-pool-a.img"]);
}

#[test]
fn human_prints_and_counts() {
    let mut device = device_with(MemoryBackend::default());
    run_text(&mut device, ADD);
    let (lines, _) = run_text(&mut device, "/disk print detail where slot=\"pvc-1\"");
    assert_eq!(lines[0], "Flags: B - BLOCK-DEVICE; t - NVME-TCP-EXPORT");
    assert_eq!(lines[1], " 0 Bt ;;; vol é");
    let (lines, _) = run_text(&mut device, "/disk print count-only");
    assert_eq!(lines, vec!["2"]);
    let (lines, _) = run_text(&mut device, "/system identity print");
    assert_eq!(lines, vec!["  name: rds-sim", ""]);
    let (lines, _) = run_text(&mut device, "/file print terse");
    assert_eq!(lines.len(), 2);
    let (lines, _) = run_text(
        &mut device,
        ":put [:serialize to=json [/disk print as-value proplist=slot where slot=pvc-1]]",
    );
    assert_eq!(lines, vec![r#"[{".id":"*2","slot":"pvc-1"}]"#]);
}

#[test]
fn float_numbers_fault() {
    let mut device = device_with(MemoryBackend::default());
    run_text(&mut device, ADD);
    let script = parse(
        ":put [:serialize to=json [/disk print as-value where slot=pvc-1]]",
        &device.env().version,
    )
    .unwrap();
    let out = run(
        &script,
        &mut device,
        &RunContext {
            float_numbers: true,
            ..Default::default()
        },
    );
    assert!(
        out.lines[0].contains("\"file-size\":1073741824.000000"),
        "{:?}",
        out.lines
    );
}

/// The controller's CreateVolume script: add only when neither slot nor file exists.
fn create_if_free(slot: &str) -> String {
    format!(
        ":local slotIds [/disk find where slot=\"{slot}\"];:local fileIds [/file find where name=\"storage-pool/{slot}.img\"];\
         :put [:serialize to=json $slotIds];:put [:serialize to=json $fileIds];\
         :if (([:len $slotIds] = 0) && ([:len $fileIds] = 0)) do={{:put [:serialize to=json [/disk add type=file \
         slot=\"{slot}\" file-path=\"storage-pool/{slot}.img\" file-size=1073741824 mount-filesystem=no nvme-tcp-export=yes \
         nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:{slot}\" comment=\"x\"]]}};\
         :put [:serialize to=json [/disk print detail as-value where slot=\"{slot}\"]]"
    )
}

#[test]
fn create_if_free_adds_only_when_slot_and_file_are_free() {
    let mut device = device_with(MemoryBackend::default());
    let (lines, error) = run_text(&mut device, &create_if_free("pvc-1"));
    assert_eq!(error, None);
    assert_eq!(&lines[..3], ["[]", "[]", "\"*2\""]);
    let disk: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(disk[0][".id"], "*2");
    assert_eq!(disk[0]["file-path"], "/storage-pool/pvc-1.img");
    assert_eq!(lines.len(), 4);

    // Again: both exist; the ids found, no add.
    let file_id = device
        .state()
        .file_by_name("storage-pool/pvc-1.img")
        .unwrap()
        .id;
    let (lines, error) = run_text(&mut device, &create_if_free("pvc-1"));
    assert_eq!(error, None);
    assert_eq!(lines[0], "[\"*2\"]");
    assert_eq!(lines[1], format!("[\"*{file_id:X}\"]"));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(device.state().disks.len(), 2);

    // The disk gone, its image kept: the file alone blocks the add.
    run_text(&mut device, "/disk remove *2");
    let (lines, error) = run_text(&mut device, &create_if_free("pvc-1"));
    assert_eq!(error, None);
    assert_eq!(
        lines,
        ["[]".to_string(), format!("[\"*{file_id:X}\"]"), "[]".into()]
    );
    assert_eq!(device.state().disks.len(), 1);
}

#[test]
fn if_truth_table_else_and_nesting() {
    let mut device = device_with(MemoryBackend::default());
    for a in [0, 1] {
        for b in [0, 1] {
            let src = format!(
                ":local a {a}; :local b {b};\
                 :if (($a = 1) && ($b = 1)) do={{:put and}} else={{:put nand}};\
                 :if ($a = 1 || $b = 1) do={{:put or}} else={{:put nor}};\
                 :if (!($a = 1)) do={{:put not}};\
                 :if ($a < $b) do={{:put less}} else={{:if ($a >= $b) do={{:put \"not less\"}}}}"
            );
            let (lines, error) = run_text(&mut device, &src);
            assert_eq!(error, None, "{src}");
            let expected = [
                if a == 1 && b == 1 { "and" } else { "nand" },
                if a == 1 || b == 1 { "or" } else { "nor" },
            ];
            assert_eq!(lines[..2], expected, "a={a} b={b}");
            assert_eq!(lines.contains(&"not".to_string()), a == 0);
            assert_eq!(
                lines.last().unwrap(),
                if a < b { "less" } else { "not less" }
            );
        }
    }
    // Strings compare as text; a find's ids compare with their text.
    let (lines, _) = run_text(
        &mut device,
        ":if (\"10\" < \"9\") do={:put text}; :if ([/disk find where slot=\"storage-pool\"] = \"*1\") do={:put id}",
    );
    assert_eq!(lines, ["text", "id"]);
}

#[test]
fn branches_are_scopes_and_errors_in_them_stop_the_script() {
    let mut device = device_with(MemoryBackend::default());
    let (lines, error) = run_text(
        &mut device,
        ":local x outer; :if (true) do={:local x inner; :local y 1; :global g 2; :put $x}; :put $x; :put $y; :put $g",
    );
    assert_eq!(error, None);
    assert_eq!(lines, ["inner", "outer", "", "2"]);

    let (lines, error) = run_text(
        &mut device,
        ":put a; :if (true) do={:put b; /disk set nosuch comment=x; :put c}; :put d",
    );
    assert_eq!(lines, ["a", "b"]);
    assert_eq!(error.as_deref(), Some("no such item"));

    let (lines, error) = run_text(&mut device, ":put a; :if (1) do={:put b}");
    assert_eq!(lines, ["a"]);
    assert_eq!(error.as_deref(), Some("conditional not boolean"));
    assert_eq!(
        run_text(&mut device, ":if (true && [/disk find]) do={}")
            .1
            .as_deref(),
        Some("conditional not boolean")
    );
    // Short circuit: the right side of a decided `&&` is not evaluated.
    assert_eq!(
        run_text(
            &mut device,
            ":if (false && [/disk find]) do={} else={:put no}"
        )
        .0,
        ["no"]
    );
}

#[test]
fn the_delete_path_commands() {
    let mut device = device_with(MemoryBackend::default());
    run_text(&mut device, ADD);
    let nested = ADD
        .replace("pvc-1", "pvc-2")
        .replace("storage-pool/pvc-2.img", "storage-pool/k8s/pvc-2.img");
    assert_eq!(run_text(&mut device, &nested).1, None);
    let files = |device: &mut Device, pattern: &str| -> Vec<String> {
        json(
            device,
            &format!(
                ":put [:serialize to=json [/file print detail as-value where name~\"{pattern}\"]]"
            ),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
    };
    // `/file` names have no leading `/`; the regex may allow a directory between.
    assert_eq!(
        files(&mut device, "^storage-pool/(.+/)?pvc-2\\\\.img\\$"),
        ["storage-pool/k8s/pvc-2.img"]
    );
    assert_eq!(
        files(&mut device, "^storage-pool/(.+/)?pvc-1\\\\.img\\$"),
        ["storage-pool/pvc-1.img"]
    );
    assert!(files(&mut device, "^/storage-pool").is_empty());
    // `file-path` prints with its leading `/`.
    let disks = json(
        &mut device,
        ":put [:serialize to=json [/disk print detail as-value where file-path~\"/pvc-2\\\\.img\\$\"]]",
    );
    assert_eq!(disks.as_array().unwrap().len(), 1);
    assert_eq!(disks[0]["slot"], "pvc-2");

    let id = disks[0][".id"].as_str().unwrap().to_owned();
    assert_eq!(run_text(&mut device, &format!("/disk remove {id}")).1, None);
    assert!(device.state().disk_by_slot("pvc-2").is_none());
    assert_eq!(
        run_text(&mut device, &format!("/disk remove {id}"))
            .1
            .as_deref(),
        Some("no such item")
    );
    assert_eq!(
        run_text(
            &mut device,
            "/file remove [find where name=\"storage-pool/k8s/pvc-2.img\"]"
        )
        .1,
        None
    );
    assert!(
        device
            .state()
            .file_by_name("storage-pool/k8s/pvc-2.img")
            .is_none()
    );
    // The pool is a disk with a slot too.
    let pool = json(
        &mut device,
        ":put [:serialize to=json [/disk print detail as-value where slot=\"storage-pool\"]]",
    );
    assert_eq!(pool[0]["type"], "raid");
}

/// `:serialize` of a listing writes it item by item; the text must be the one of the array
/// `print as-value` returns, whatever the menu, the filter, the properties and the faults.
#[test]
fn a_listing_serialized_item_by_item_reads_as_the_array_print_returns() {
    let mut device = device_with(MemoryBackend::default());
    for n in 1..=3 {
        let add = ADD.replace("pvc-1", &format!("pvc-{n}"));
        assert_eq!(run_text(&mut device, &add).1, None);
    }
    for print in [
        "/disk print as-value",
        "/disk print detail as-value where type=file and slot~\"^pvc-[12]\"",
        "/disk print as-value where slot=\"pvc-2\"",
        "/disk print as-value where slot=\"none\"",
        "/disk print as-value proplist=slot,file-size where type=file",
        "/file print detail as-value",
        "/file print as-value where name~\"pvc-3\"",
    ] {
        for floats in [false, true] {
            let ctx = RunContext {
                float_numbers: floats,
                ..RunContext::default()
            };
            let mut output = |src: String| {
                let script = parse(&src, &device.env().version).unwrap();
                let out = run(&script, &mut device, &ctx);
                (out.lines, out.error.map(|e| e.to_string()))
            };
            let direct = output(format!(":put [:serialize to=json [{print}]]"));
            let through_a_value = output(format!(
                ":local items [{print}]; :put [:serialize to=json $items]"
            ));
            assert_eq!(direct, through_a_value, "{print} (floats {floats})");
            assert!(
                !direct.0.concat().is_empty() || direct.1.is_some(),
                "{print}"
            );
        }
    }
}
