//! The state model under quirks.

use super::tests::{GIB, env, file_args, fresh};
use super::*;
use crate::quirks::Quirk;

fn with(quirk: Quirk) -> Env {
    Env {
        quirks: [quirk].into_iter().collect(),
        ..env()
    }
}

fn spec(state: &State, id: u64) -> ExportSpec {
    state
        .export_of(state.disk(id).unwrap(), &env().version)
        .unwrap()
}

#[test]
fn duplicate_slots_make_more_disks_that_share_one_export() {
    let mut state = fresh();
    let env = with(Quirk::DuplicateSlots);
    let (first, _) = state.add_disk(&file_args("pvc-1", GIB), &env).unwrap();
    let mut twin = file_args("pvc-1", GIB);
    twin.file_path = Some("storage-pool/pvc-1-twin.img".into());
    assert_eq!(
        state.add_disk(&twin, &super::tests::env()).unwrap_err(),
        CmdError::failure("disk with slot pvc-1 already exists"),
        "without the quirk"
    );
    let (second, effects) = state.add_disk(&twin, &env).unwrap();
    // The NQN is served already: the twin gets its file, not a second subsystem.
    assert_eq!(
        effects,
        [Effect::CreateFile {
            path: "storage-pool/pvc-1-twin.img".into(),
            size: GIB
        }]
    );
    assert_eq!(
        state
            .disks
            .iter()
            .filter(|d| d.slot == "pvc-1")
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(state.exports(&env.version), [spec(&state, first)]);

    // The first goes: the twin takes the NQN over.
    let (first_spec, second_spec) = (spec(&state, first), spec(&state, second));
    let ((), effects) = state.remove_disk(first, &env).unwrap();
    assert_eq!(
        effects,
        [
            Effect::Unexport(first_spec),
            Effect::Export(second_spec.clone())
        ]
    );
    let ((), effects) = state.remove_disk(second, &env).unwrap();
    assert_eq!(effects, [Effect::Unexport(second_spec)]);

    // A rename into a taken slot is allowed as well.
    state.add_disk(&file_args("a", GIB), &env).unwrap();
    let (b, _) = state.add_disk(&file_args("b", GIB), &env).unwrap();
    let rename = DiskArgs {
        slot: Some("a".into()),
        ..DiskArgs::default()
    };
    assert!(state.set_disk(b, &rename, &super::tests::env()).is_err());
    state.set_disk(b, &rename, &env).unwrap();
    assert_eq!(state.disks.iter().filter(|d| d.slot == "a").count(), 2);
}

#[test]
fn reuse_existing_file_adopts_the_file_as_it_is() {
    let mut state = fresh();
    let env = with(Quirk::ReuseExistingFile);
    let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &env).unwrap();
    state.remove_disk(id, &env).unwrap();
    let kept = state
        .file_by_name("storage-pool/pvc-1.img")
        .unwrap()
        .clone();

    let mut adopt = file_args("pvc-2", 5 * GIB);
    adopt.file_path = Some("storage-pool/pvc-1.img".into());
    assert_eq!(
        state.add_disk(&adopt, &super::tests::env()).unwrap_err(),
        CmdError::failure("file already exists"),
        "without the quirk a size means a new file"
    );
    let (adopted, effects) = state.add_disk(&adopt, &env).unwrap();
    // No file effect at all: no truncation, no resize; the size is the file's.
    assert!(matches!(effects.as_slice(), [Effect::Export(s)] if s.size == GIB));
    assert!(matches!(
        state.disk(adopted).unwrap().kind,
        DiskKind::File { size, .. } if size == GIB
    ));
    assert_eq!(state.file_by_name("storage-pool/pvc-1.img"), Some(&kept));

    // Even a file in use is taken as it is.
    let mut again = file_args("pvc-3", GIB);
    again.file_path = Some("storage-pool/pvc-1.img".into());
    state.add_disk(&again, &env).unwrap();
    // A directory is still no image.
    let mut dir = file_args("pvc-4", GIB);
    dir.file_path = Some("storage-pool".into());
    assert!(state.add_disk(&dir, &env).is_err());
    let mut args = file_args("x", GIB);
    args.file_path = Some("storage-pool/d/x.img".into());
    state.add_disk(&args, &env).unwrap();
    let mut onto_dir = file_args("pvc-5", GIB);
    onto_dir.file_path = Some("storage-pool/d".into());
    assert_eq!(
        state.add_disk(&onto_dir, &env).unwrap_err(),
        CmdError::failure("invalid file path")
    );
}
