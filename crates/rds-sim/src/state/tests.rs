use super::*;

pub(crate) const GIB: u64 = 1 << 30;

pub(crate) fn env() -> Env {
    Env {
        version: RouterOsVersion::default(),
        now: 1_762_871_561,
        pool_full: false,
        quirks: Default::default(),
        pool_used: 0,
    }
}

pub(crate) fn fresh() -> State {
    State::new(
        PoolSettings {
            name: "storage-pool".into(),
            capacity: 100 * GIB,
        },
        "rds-sim",
        1_762_871_000,
    )
}

pub(crate) fn file_args(slot: &str, size: u64) -> DiskArgs {
    DiskArgs {
        disk_type: Some("file".into()),
        slot: Some(slot.into()),
        file_path: Some(format!("storage-pool/{slot}.img")),
        file_size: Some(size),
        mount_filesystem: Some(false),
        nvme_tcp_export: Some(true),
        nvme_tcp_server_port: Some(4420),
        nvme_tcp_server_nqn: Some(format!("nqn.2000-02.com.mikrotik:{slot}")),
        ..DiskArgs::default()
    }
}

#[test]
fn a_fresh_device_has_the_pool_disk_and_mount_point() {
    let state = fresh();
    assert_eq!(state.disks.len(), 1);
    assert_eq!(state.disks.iter().next().unwrap().id, 1);
    assert_eq!(state.disks.iter().next().unwrap().kind, DiskKind::Raid);
    assert_eq!(state.disks.iter().next().unwrap().slot, "storage-pool");
    assert_eq!(state.files.iter().next().unwrap().name, "storage-pool");
    assert_eq!(state.files.iter().next().unwrap().kind, FileKind::Disk);
    assert_eq!(state.pool_free(&env()), 100 * GIB);
}

#[test]
fn add_creates_file_and_export() {
    let mut state = fresh();
    let (id, effects) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    assert_eq!(id, 2);
    let spec = ExportSpec {
        slot: "pvc-1".into(),
        nqn: "nqn.2000-02.com.mikrotik:pvc-1".into(),
        port: 4420,
        file_path: "storage-pool/pvc-1.img".into(),
        size: GIB,
        ids: state.disk(id).unwrap().namespace,
        allowed_hosts: vec![],
    };
    assert_eq!(
        effects,
        vec![
            Effect::CreateFile {
                path: "storage-pool/pvc-1.img".into(),
                size: GIB
            },
            Effect::Export(spec.clone()),
        ]
    );
    assert_eq!(state.exports(&env().version), vec![spec]);
    let file = state.file_by_name("/storage-pool/pvc-1.img").unwrap();
    assert_eq!(
        (file.kind, file.size, file.modified),
        (FileKind::File, GIB, env().now)
    );
    assert!(!state.disk(id).unwrap().mount_filesystem);
}

#[test]
fn add_creates_missing_directories() {
    let mut state = fresh();
    let mut args = file_args("x", GIB);
    args.file_path = Some("/storage-pool/a/b/x.img".into());
    let (_, effects) = state.add_disk(&args, &env()).unwrap();
    assert_eq!(
        effects[0],
        Effect::CreateDir {
            path: "storage-pool/a".into()
        }
    );
    assert_eq!(
        effects[1],
        Effect::CreateDir {
            path: "storage-pool/a/b".into()
        }
    );
    assert_eq!(
        state.file_by_name("storage-pool/a/b").unwrap().kind,
        FileKind::Directory
    );
}

#[test]
fn add_rejects_duplicates_bad_paths_and_oversize() {
    let mut state = fresh();
    state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    let before = state.clone();

    let err = state
        .add_disk(&file_args("pvc-1", GIB), &env())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "failure: disk with slot pvc-1 already exists"
    );

    let mut same_file = file_args("pvc-2", GIB);
    same_file.file_path = Some("storage-pool/pvc-1.img".into());
    same_file.nvme_tcp_server_nqn = None;
    let err = state.add_disk(&same_file, &env()).unwrap_err();
    assert_eq!(err.to_string(), "failure: file already exists");

    for bad in [
        "other/x.img",
        "storage-poolx/x.img",
        "storage-pool/../x.img",
        "storage-pool//x",
        "storage-pool/",
        "storage-pool",
    ] {
        let mut args = file_args("pvc-3", GIB);
        args.file_path = Some(bad.into());
        let err = state.add_disk(&args, &env()).unwrap_err();
        assert_eq!(err.to_string(), "failure: invalid file path", "{bad}");
    }

    // Sparse: only a pool without room for one more file's metadata refuses.
    let full = Env {
        pool_used: 100 * GIB - FILE_METADATA_BYTES + 1,
        ..env()
    };
    let err = state.add_disk(&file_args("big", GIB), &full).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failure: not enough free space on storage-pool"
    );

    let mut no_type = file_args("t", GIB);
    no_type.disk_type = None;
    assert_eq!(
        state.add_disk(&no_type, &env()).unwrap_err(),
        CmdError::MissingArguments("type".into())
    );

    let mut dup_nqn = file_args("pvc-4", GIB);
    dup_nqn.nvme_tcp_server_nqn = Some("nqn.2000-02.com.mikrotik:pvc-1".into());
    assert!(
        state
            .add_disk(&dup_nqn, &env())
            .unwrap_err()
            .to_string()
            .contains("already exported")
    );
    // Failed operations leave the state as it was (the caller restores
    // on error, but these fail before touching anything).
    assert_eq!(state, before);
}

#[test]
fn pool_full_fault_blocks_adds() {
    let mut state = fresh();
    let env = Env {
        pool_full: true,
        ..env()
    };
    assert_eq!(state.pool_free(&env), 0);
    let err = state.add_disk(&file_args("pvc-1", 1), &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failure: not enough free space on storage-pool"
    );
}

#[test]
fn default_slot_derives_from_the_path() {
    let mut state = fresh();
    let mut args = file_args("unused", GIB);
    args.slot = None;
    args.nvme_tcp_export = Some(false);
    let (id, _) = state.add_disk(&args, &env()).unwrap();
    assert_eq!(state.disk(id).unwrap().slot, "file-storage-pool-unused.img");
}

#[test]
fn grow_resizes_and_revalidates_but_never_shrinks() {
    let mut state = fresh();
    let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    let grow = DiskArgs {
        file_size: Some(2 * GIB),
        ..DiskArgs::default()
    };
    let ((), effects) = state.set_disk(id, &grow, &env()).unwrap();
    assert_eq!(
        effects[0],
        Effect::ResizeFile {
            path: "storage-pool/pvc-1.img".into(),
            from: GIB,
            to: 2 * GIB
        }
    );
    assert!(matches!(&effects[1], Effect::Revalidate(spec) if spec.size == 2 * GIB));
    assert_eq!(
        state.file_by_name("storage-pool/pvc-1.img").unwrap().size,
        2 * GIB
    );

    let same = state.set_disk(id, &grow, &env()).unwrap();
    assert!(same.1.is_empty());

    let shrink = DiskArgs {
        file_size: Some(GIB),
        ..DiskArgs::default()
    };
    assert_eq!(
        state.set_disk(id, &shrink, &env()).unwrap_err().to_string(),
        "failure: file-size can not be reduced"
    );
    let huge = DiskArgs {
        file_size: Some(200 * GIB),
        ..DiskArgs::default()
    };
    let full = Env {
        pool_used: 100 * GIB,
        ..env()
    };
    assert!(
        state
            .set_disk(id, &huge, &full)
            .unwrap_err()
            .to_string()
            .contains("not enough free space")
    );
    // Sparse: a grow past the pool's size is fine while there is room.
    state.set_disk(id, &huge, &env()).unwrap();
}

#[test]
fn set_export_toggles_and_rename_reexports() {
    let mut state = fresh();
    let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    let off = DiskArgs {
        nvme_tcp_export: Some(false),
        ..DiskArgs::default()
    };
    let ((), effects) = state.set_disk(id, &off, &env()).unwrap();
    assert!(matches!(effects.as_slice(), [Effect::Unexport(_)]));
    assert!(state.exports(&env().version).is_empty());

    let on_new_port = DiskArgs {
        nvme_tcp_export: Some(true),
        nvme_tcp_server_port: Some(4421),
        ..DiskArgs::default()
    };
    let ((), effects) = state.set_disk(id, &on_new_port, &env()).unwrap();
    assert!(matches!(effects.as_slice(), [Effect::Export(s)] if s.port == 4421));

    let new_nqn = DiskArgs {
        nvme_tcp_server_nqn: Some("nqn.x:y".into()),
        ..DiskArgs::default()
    };
    let ((), effects) = state.set_disk(id, &new_nqn, &env()).unwrap();
    assert!(
        matches!(effects.as_slice(), [Effect::Unexport(a), Effect::Export(b)] if a.nqn != b.nqn && b.nqn == "nqn.x:y")
    );
}

#[test]
fn before_7_21_the_nqn_is_the_slot() {
    let mut state = fresh();
    let env = Env {
        version: "7.20.1".parse().unwrap(),
        ..env()
    };
    let mut args = file_args("pvc-1", GIB);
    args.nvme_tcp_server_nqn = None;
    let (_, effects) = state.add_disk(&args, &env).unwrap();
    assert!(matches!(&effects[1], Effect::Export(s) if s.nqn == "pvc-1"));
}

#[test]
fn remove_disk_keeps_the_file_and_ids_are_not_reused() {
    let mut state = fresh();
    let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    let ((), effects) = state.remove_disk(id, &env()).unwrap();
    assert!(matches!(effects.as_slice(), [Effect::Unexport(_)]));
    assert!(state.disk(id).is_none());
    let file = state
        .file_by_name("storage-pool/pvc-1.img")
        .unwrap()
        .clone();

    // Re-attach the kept image without a size.
    let mut again = file_args("pvc-1", GIB);
    again.file_size = None;
    let (id2, effects) = state.add_disk(&again, &env()).unwrap();
    assert!(id2 > id);
    assert!(matches!(effects.as_slice(), [Effect::Export(_)]));

    assert!(
        state
            .remove_file(file.id)
            .unwrap_err()
            .to_string()
            .starts_with("failure: file is in use")
    );
    state.remove_disk(id2, &env()).unwrap();
    let ((), effects) = state.remove_file(file.id).unwrap();
    assert_eq!(
        effects,
        vec![Effect::RemoveFile {
            path: "storage-pool/pvc-1.img".into()
        }]
    );
    assert_eq!(
        state.remove_file(file.id).unwrap_err(),
        CmdError::NoSuchItem
    );
    assert_eq!(
        state.remove_disk(id2, &env()).unwrap_err(),
        CmdError::NoSuchItem
    );
}

#[test]
fn the_pool_is_protected() {
    let mut state = fresh();
    assert_eq!(
        state.remove_disk(1, &env()).unwrap_err().to_string(),
        "failure: disk is in use"
    );
    assert!(state.remove_file(1).is_err());
    let grow = DiskArgs {
        file_size: Some(1),
        ..DiskArgs::default()
    };
    assert!(state.set_disk(1, &grow, &env()).is_err());
    let comment = DiskArgs {
        comment: Some("main pool".into()),
        ..DiskArgs::default()
    };
    state.set_disk(1, &comment, &env()).unwrap();
    assert_eq!(state.disks.iter().next().unwrap().comment, "main pool");
}

#[test]
fn directories_must_be_empty_to_remove() {
    let mut state = fresh();
    let mut args = file_args("x", GIB);
    args.file_path = Some("storage-pool/d/x.img".into());
    args.nvme_tcp_export = Some(false);
    let (id, _) = state.add_disk(&args, &env()).unwrap();
    let dir = state.file_by_name("storage-pool/d").unwrap().id;
    assert_eq!(
        state.remove_file(dir).unwrap_err().to_string(),
        "failure: directory is not empty"
    );
    state.remove_disk(id, &env()).unwrap();
    let img = state.file_by_name("storage-pool/d/x.img").unwrap().id;
    state.remove_file(img).unwrap();
    let ((), effects) = state.remove_file(dir).unwrap();
    assert_eq!(
        effects,
        vec![Effect::RemoveDir {
            path: "storage-pool/d".into()
        }]
    );
}

#[test]
fn effects_have_inverses_where_undo_is_possible() {
    let spec = ExportSpec {
        slot: "s".into(),
        nqn: "n".into(),
        port: 1,
        file_path: "p".into(),
        size: 1,
        ids: NamespaceIds::random(),
        allowed_hosts: vec![],
    };
    assert_eq!(
        Effect::Export(spec.clone()).inverse(),
        Some(Effect::Unexport(spec.clone()))
    );
    assert_eq!(
        Effect::ResizeFile {
            path: "p".into(),
            from: 1,
            to: 2
        }
        .inverse(),
        Some(Effect::ResizeFile {
            path: "p".into(),
            from: 2,
            to: 1
        })
    );
    assert_eq!(Effect::RemoveFile { path: "p".into() }.inverse(), None);
}

#[test]
fn state_round_trips_through_json() {
    let mut state = fresh();
    state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    let text = serde_json::to_string(&state).unwrap();
    let back: State = serde_json::from_str(&text).unwrap();
    assert_eq!(back, state);
}

#[test]
fn changing_an_exports_hosts_keeps_the_export_and_only_changes_who_is_admitted() {
    let mut state = fresh();
    let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    let before = state
        .export_of(state.disk(id).unwrap(), &env().version)
        .unwrap();
    assert!(before.allowed_hosts.is_empty());
    let hosts = "nqn.2014-08.org.nvmexpress:uuid:a, nqn.2014-08.org.nvmexpress:uuid:b";
    let args = DiskArgs {
        nvme_tcp_server_allow_host_name: Some(hosts.into()),
        ..DiskArgs::default()
    };
    let ((), effects) = state.set_disk(id, &args, &env()).unwrap();
    let [Effect::AllowHosts { spec, previous }] = &effects[..] else {
        panic!("{effects:?}");
    };
    assert_eq!(
        spec.allowed_hosts,
        vec![
            "nqn.2014-08.org.nvmexpress:uuid:a".to_owned(),
            "nqn.2014-08.org.nvmexpress:uuid:b".to_owned()
        ]
    );
    assert!(previous.is_empty());
    assert_eq!(spec.ids, before.ids, "the namespace is the same one");
    let undo = effects[0].inverse().unwrap();
    assert!(
        matches!(undo, Effect::AllowHosts { spec, previous } if spec.allowed_hosts.is_empty() && previous.len() == 2)
    );
}
