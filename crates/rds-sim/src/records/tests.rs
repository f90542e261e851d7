use super::*;
use crate::state::tests::{GIB, env, file_args, fresh};

#[test]
fn file_disk_fields_follow_the_contract() {
    let mut state = fresh();
    let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    let rec = disk_record(&state, state.disk(id).unwrap(), &env());
    assert_eq!(rec.flag_letters(), "Bt");
    let fields = rec.fields();
    let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    assert_eq!(get(".id"), Some(Val::Bare("*2".into())));
    assert_eq!(
        get("file-path"),
        Some(Val::Path("/storage-pool/pvc-1.img".into()))
    );
    assert_eq!(
        get("model"),
        Some(Val::Str("/storage-pool/pvc-1.img".into()))
    );
    assert_eq!(get("file-size"), Some(Val::Size(GIB)));
    assert_eq!(get("size"), Some(Val::Bytes(GIB)));
    assert_eq!(
        get("nvme-tcp-server-nqn"),
        Some(Val::Str("nqn.2000-02.com.mikrotik:pvc-1".into()))
    );
    assert_eq!(get("block-device"), Some(Val::Bool(true)));
    assert_eq!(get("sector-size"), Some(Val::Num(512)));
    assert_eq!(get("comment"), None);
    let names: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
    let mut dedup = names.clone();
    dedup.dedup();
    assert_eq!(names.len(), dedup.len(), "no duplicate keys");
}

#[test]
fn version_hides_newer_properties() {
    let mut state = fresh();
    let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    let old = Env {
        version: "7.20".parse().unwrap(),
        ..env()
    };
    let rec = disk_record(&state, state.disk(id).unwrap(), &old);
    assert!(rec.get("nvme-tcp-server-nqn").is_none());
    assert!(rec.get("file-path").is_some());
    let older = Env {
        version: "7.16".parse().unwrap(),
        ..env()
    };
    assert!(
        disk_record(&state, state.disk(id).unwrap(), &older)
            .get("file-size")
            .is_none()
    );
    assert!(!disk_property_names(&older.version).contains(&"file-path"));
    assert!(disk_property_names(&env().version).contains(&"nvme-tcp-server-nqn"));
    assert!(disk_property_names(&env().version).contains(&"mount-point"));
}

#[test]
fn pool_record_reports_space() {
    let state = fresh();
    let env = Env {
        pool_used: 25 * GIB,
        ..env()
    };
    let rec = disk_record(&state, state.disks.iter().next().unwrap(), &env);
    assert_eq!(rec.get("type"), Some(Val::Bare("raid".into())));
    assert_eq!(
        rec.get("mount-point"),
        Some(Val::Str("storage-pool".into()))
    );
    assert_eq!(rec.get("size"), Some(Val::Bytes(100 * GIB)));
    assert_eq!(rec.get("free"), Some(Val::Bytes(75 * GIB)));
    assert_eq!(rec.get("use"), Some(Val::Percent(25)));
    assert_eq!(rec.get("mounted"), Some(Val::Bool(true)));
    assert_eq!(rec.flag_letters(), "BM");
}

#[test]
fn file_types_and_names() {
    let mut state = fresh();
    let mut args = file_args("x", GIB);
    args.file_path = Some("storage-pool/dir/x.img".into());
    state.add_disk(&args, &env()).unwrap();
    let rec = |name: &str| file_record(state.file_by_name(name).unwrap());
    assert_eq!(
        rec("storage-pool").get("type"),
        Some(Val::Bare("disk".into()))
    );
    assert_eq!(
        rec("storage-pool/dir").get("type"),
        Some(Val::Bare("directory".into()))
    );
    let img = rec("storage-pool/dir/x.img");
    assert_eq!(img.get("type"), Some(Val::Bare(".img file".into())));
    assert_eq!(
        img.get("name"),
        Some(Val::Bare("storage-pool/dir/x.img".into()))
    );
    assert_eq!(
        img.get("last-modified"),
        Some(Val::Bare("2025-11-11 14:32:41".into()))
    );
    assert!(file_property_names().contains(&"last-modified"));
}

#[test]
fn values_print_by_type() {
    assert_eq!(Val::Str("x".into()).cli(CliStyle::Detail), "\"x\"");
    assert_eq!(Val::Str("x".into()).cli(CliStyle::Plain), "x");
    assert_eq!(Val::Bare("file".into()).cli(CliStyle::Detail), "file");
    assert_eq!(Val::Bool(true).cli(CliStyle::Detail), "yes");
    assert_eq!(Val::Bool(false).raw(), "false");
    assert_eq!(
        Val::Bytes(10_737_418_240).cli(CliStyle::Detail),
        "10 737 418 240"
    );
    assert_eq!(
        Val::Bytes(10_737_418_240).cli(CliStyle::Terse),
        "10737418240"
    );
    assert_eq!(Val::Num(4420).cli(CliStyle::Detail), "4420");
    assert_eq!(Val::Size(10 << 30).cli(CliStyle::Detail), "10.0GiB");
    assert_eq!(Val::Size(10 << 30).raw(), "10737418240");
    assert_eq!(Val::Percent(7).cli(CliStyle::Plain), "7%");
    assert_eq!(quote_cli("a\"b\\c$d\né"), "\"a\\\"b\\\\c\\$d\\n\\C3\\A9\"");
}

#[test]
fn text_matching_follows_the_type() {
    assert!(matches_text("size", Some(&Val::Bytes(1 << 30)), "1G"));
    assert!(matches_text("size", Some(&Val::Num(1 << 30)), "1073741824"));
    assert!(!matches_text("size", Some(&Val::Num(1 << 30)), "x"));
    assert!(matches_text("swap", Some(&Val::Bool(false)), "no"));
    assert!(matches_text("swap", Some(&Val::Bool(true)), "true"));
    assert!(!matches_text("swap", Some(&Val::Bool(true)), "1"));
    assert!(matches_text(
        "file-path",
        Some(&Val::Path("/p/x".into())),
        "p/x"
    ));
    assert!(matches_text(".id", Some(&Val::Bare("*1A".into())), "*1a"));
    assert!(matches_text("comment", None, ""));
    assert!(!matches_text("comment", None, "x"));
    assert!(!matches_text("slot", Some(&Val::Str("a".into())), "A"));
}

#[test]
fn ids_round_trip() {
    assert_eq!(format_id(26), "*1A");
    assert_eq!(parse_id("*1A"), Some(26));
    assert_eq!(parse_id("*1a"), Some(26));
    assert_eq!(parse_id("1A"), None);
    assert_eq!(parse_id("*"), None);
    assert_eq!(parse_id("*zz"), None);
}
