//! Subvolumes, snapshots, `/file copy` and `copy-from`, on the state model alone.

use super::tests::{GIB, env, file_args, fresh};
use super::*;

fn subvolume(name: &str, parent: Option<&str>, read_only: bool) -> SubvolumeArgs {
    SubvolumeArgs {
        fs: Some("storage-pool".into()),
        name: Some(name.into()),
        parent: parent.map(str::to_string),
        read_only: Some(read_only),
    }
}

/// A volume in its own subvolume, as the snapshot layout puts it.
fn volume_in_subvolume(state: &mut State, slot: &str) -> u64 {
    state
        .add_subvolume(&subvolume(slot, None, false), &env())
        .unwrap();
    let args = DiskArgs {
        file_path: Some(format!("storage-pool/{slot}/{slot}.img")),
        ..file_args(slot, GIB)
    };
    state.add_disk(&args, &env()).unwrap().0
}

fn names(state: &State) -> Vec<&str> {
    state.files.iter().map(|f| f.name.as_str()).collect()
}

#[test]
fn a_snapshot_copies_the_parents_files_and_is_read_only() {
    let mut state = fresh();
    volume_in_subvolume(&mut state, "pvc-1");
    let (id, effects) = state
        .add_subvolume(&subvolume("snap-1", Some("pvc-1"), true), &env())
        .unwrap();
    assert_eq!(
        effects,
        vec![Effect::Copy {
            from: "storage-pool/pvc-1".into(),
            to: "storage-pool/snap-1".into()
        }]
    );
    let snap = state.subvolume(id).unwrap();
    assert_eq!((snap.parent.as_str(), snap.read_only), ("pvc-1", true));
    let image = state.file_by_name("storage-pool/snap-1/pvc-1.img").unwrap();
    assert_eq!((image.kind, image.size), (FileKind::File, GIB));
    assert!(names(&state).contains(&"storage-pool/snap-1"));

    // Nothing in a read-only subvolume changes or goes under a disk.
    let image = image.id;
    assert_eq!(
        state.remove_file(image).unwrap_err(),
        CmdError::failure("read-only file system")
    );
    let over_it = DiskArgs {
        file_path: Some("storage-pool/snap-1/pvc-1.img".into()),
        file_size: None,
        nvme_tcp_server_nqn: Some("nqn.2000-02.com.mikrotik:restore".into()),
        ..file_args("restore", GIB)
    };
    assert_eq!(
        state.add_disk(&over_it, &env()).unwrap_err(),
        CmdError::failure("read-only file system")
    );

    // A writable snapshot of the snapshot can carry a disk: a restore.
    state
        .add_subvolume(&subvolume("pvc-2", Some("snap-1"), false), &env())
        .unwrap();
    let restore = DiskArgs {
        file_path: Some("storage-pool/pvc-2/pvc-1.img".into()),
        file_size: None,
        ..file_args("pvc-2", GIB)
    };
    let (_, effects) = state.add_disk(&restore, &env()).unwrap();
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::CreateFile { .. })),
        "the copied image is used as it is: {effects:?}"
    );
}

#[test]
fn subvolume_arguments_are_checked_before_anything_changes() {
    let mut state = fresh();
    let before = state.clone();
    let refused =
        |state: &mut State, args: SubvolumeArgs| state.add_subvolume(&args, &env()).unwrap_err();
    let missing_fs = SubvolumeArgs {
        fs: None,
        ..subvolume("a", None, false)
    };
    assert_eq!(
        refused(&mut state, missing_fs),
        CmdError::MissingArguments("fs".into())
    );
    let other_fs = SubvolumeArgs {
        fs: Some("other".into()),
        ..subvolume("a", None, false)
    };
    assert_eq!(
        refused(&mut state, other_fs),
        CmdError::NoMatchingValue("fs".into())
    );
    for bad in ["", ".", "..", "a/b"] {
        assert_eq!(
            refused(&mut state, subvolume(bad, None, false)),
            CmdError::InvalidValue("name".into()),
            "{bad:?}"
        );
    }
    assert_eq!(
        refused(&mut state, subvolume("a", Some("nope"), true)),
        CmdError::NoMatchingValue("parent".into())
    );
    assert_eq!(state, before);

    state
        .add_subvolume(&subvolume("a", None, false), &env())
        .unwrap();
    let taken = refused(&mut state, subvolume("a", None, false));
    assert!(taken.to_string().contains("already exists"), "{taken}");
}

#[test]
fn a_subvolume_in_use_stays_and_a_free_one_goes_with_its_files() {
    let mut state = fresh();
    let disk = volume_in_subvolume(&mut state, "pvc-1");
    let id = state.subvolume_by_name("pvc-1").unwrap().id;
    let in_use = state.remove_subvolume(id).unwrap_err();
    assert_eq!(
        in_use,
        CmdError::failure("subvolume is in use by disk pvc-1")
    );
    let dir = state.file_by_name("storage-pool/pvc-1").unwrap().id;
    assert!(
        state.remove_file(dir).is_err(),
        "a subvolume is not removed through /file"
    );

    state.remove_disk(disk, &env()).unwrap();
    let ((), effects) = state.remove_subvolume(id).unwrap();
    assert_eq!(
        effects,
        vec![Effect::RemoveTree {
            path: "storage-pool/pvc-1".into()
        }]
    );
    assert!(state.subvolumes.is_empty());
    assert_eq!(names(&state), vec!["storage-pool"]);
    assert_eq!(
        state.remove_subvolume(id).unwrap_err(),
        CmdError::NoSuchItem
    );
}

#[test]
fn file_copy_copies_a_file_to_a_free_name_in_an_existing_directory() {
    let mut state = fresh();
    state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    let image = state.file_by_name("storage-pool/pvc-1.img").unwrap().id;
    let ((), effects) = state
        .copy_file(image, "/storage-pool/copy.img", &env())
        .unwrap();
    assert_eq!(
        effects,
        vec![Effect::Copy {
            from: "storage-pool/pvc-1.img".into(),
            to: "storage-pool/copy.img".into()
        }]
    );
    assert_eq!(
        state.file_by_name("storage-pool/copy.img").unwrap().size,
        GIB
    );
    let before = state.clone();
    for (target, why) in [
        ("storage-pool/copy.img", "file already exists"),
        ("storage-pool/no/such.img", "no such directory"),
        ("elsewhere/x.img", "invalid file path"),
    ] {
        assert_eq!(
            state.copy_file(image, target, &env()).unwrap_err(),
            CmdError::failure(why)
        );
    }
    assert_eq!(state, before);
}

#[test]
fn copy_from_copies_properties_and_never_data() {
    let mut state = fresh();
    state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    // Everything copied, the image path too: that image is taken.
    let same = DiskArgs {
        copy_from: Some("pvc-1".into()),
        slot: Some("snap-1".into()),
        ..DiskArgs::default()
    };
    let taken = state.add_disk(&same, &env()).unwrap_err();
    assert_eq!(taken, CmdError::failure("file already exists"));

    // With its own image path, a new disk: the same size and settings over a new, empty
    // image (a CreateFile), not a copy of pvc-1's data.
    let own = DiskArgs {
        copy_from: Some("*2".into()),
        slot: Some("snap-1".into()),
        file_path: Some("storage-pool/snap-1.img".into()),
        nvme_tcp_export: Some(false),
        ..DiskArgs::default()
    };
    let (id, effects) = state.add_disk(&own, &env()).unwrap();
    assert_eq!(
        effects,
        vec![Effect::CreateFile {
            path: "storage-pool/snap-1.img".into(),
            size: GIB
        }]
    );
    let disk = state.disk(id).unwrap();
    assert!(!disk.mount_filesystem, "settings come from pvc-1");
    assert!(!disk.nvme_tcp_export, "given arguments win");

    let unknown = DiskArgs {
        copy_from: Some("nope".into()),
        ..own
    };
    assert_eq!(
        state.add_disk(&unknown, &env()).unwrap_err(),
        CmdError::NoSuchItem
    );
}
