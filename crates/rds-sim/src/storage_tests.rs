//! Tests of the data directory: backing files, saves, restores.

use std::os::unix::fs::MetadataExt;

use super::*;
use crate::device::Device;
use crate::nvmet::DirRemoval;
use crate::state::tests::{GIB, env, file_args, fresh};

fn store(dir: &Path) -> FileStore {
    FileStore::new(dir, None)
}

#[test]
fn backing_files_are_sparse_and_follow_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut device = Device::new(fresh(), Box::new(store(dir.path())), env());
    device.add_disk(&file_args("pvc-1", 10 * GIB)).unwrap();
    let backing = dir.path().join("files/storage-pool/pvc-1.img");
    let meta = fs::metadata(&backing).unwrap();
    assert_eq!(meta.len(), 10 * GIB);
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "sparse: {} blocks",
        meta.blocks()
    );

    let grow = crate::state::DiskArgs {
        file_size: Some(11 * GIB),
        ..Default::default()
    };
    device.set_disk(2, &grow).unwrap();
    assert_eq!(fs::metadata(&backing).unwrap().len(), 11 * GIB);

    device.remove_disk(2).unwrap();
    assert!(backing.exists(), "/disk remove keeps the image");
    let file_id = device
        .state()
        .file_by_name("storage-pool/pvc-1.img")
        .unwrap()
        .id;
    device.remove_file(file_id).unwrap();
    assert!(!backing.exists());
}

#[test]
fn pool_usage_is_the_allocated_blocks_of_the_backing_files() {
    use std::io::{Seek, SeekFrom};
    let dir = tempfile::tempdir().unwrap();
    let mut device = Device::new(fresh(), Box::new(store(dir.path())), env());
    let free = |device: &Device| device.state().pool_free(device.env());
    let capacity = 100 * GIB;
    device.add_disk(&file_args("pvc-1", 10 * GIB)).unwrap();
    let fresh_free = free(&device);
    assert!(
        fresh_free > capacity - (1 << 20),
        "a new 10 GiB image barely moves free: {}",
        capacity - fresh_free
    );
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("files/storage-pool/pvc-1.img"))
        .unwrap();
    file.seek(SeekFrom::Start(GIB)).unwrap();
    file.write_all(&vec![0x5a; 8 << 20]).unwrap();
    file.sync_all().unwrap();
    device.refresh_pool_usage();
    let taken = fresh_free - free(&device);
    assert!(
        (8 << 20..=9 << 20).contains(&taken),
        "8 MiB written took {taken} bytes"
    );
}

#[test]
fn state_and_exports_are_saved_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    assert!(FileStore::load(dir.path()).unwrap().is_none());
    let mut device = Device::new(fresh(), Box::new(store(dir.path())), env());
    let mut files = StateFiles::new(dir.path(), "127.0.0.1".parse().unwrap(), false);
    device.add_disk(&file_args("pvc-1", GIB)).unwrap();
    let job = device.save_job(files.wants_whole());
    files.persist(job.state.as_ref(), &job.exports).unwrap();

    let loaded = FileStore::load(dir.path()).unwrap().unwrap();
    assert_eq!(&loaded, device.state());
    let exports = read_export_records(dir.path()).unwrap();
    assert_eq!(exports.len(), 1);
    let record = &exports[0];
    let path = dir
        .path()
        .join("exports/nqn.2000-02.com.mikrotik:pvc-1.json");
    assert!(path.exists(), "one record per export, named by its NQN");
    assert_eq!(record.nqn, "nqn.2000-02.com.mikrotik:pvc-1");
    assert_eq!(record.port, 4420);
    assert_eq!(record.file_path, "/storage-pool/pvc-1.img");
    assert_eq!(
        record.backing_file,
        dir.path().join("files/storage-pool/pvc-1.img")
    );
    assert!(record.backing_file.is_absolute());
    assert!(!record.nvmet);
    assert_eq!(
        fs::read_dir(dir.path().join("exports")).unwrap().count(),
        1,
        "no scratch left"
    );

    // A second export writes its record and leaves the first one's file untouched.
    let written = fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    device.add_disk(&file_args("pvc-2", GIB)).unwrap();
    let job = device.save_job(files.wants_whole());
    files.persist(job.state.as_ref(), &job.exports).unwrap();
    assert_eq!(read_export_records(dir.path()).unwrap().len(), 2);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), written);

    device.remove_disk(2).unwrap();
    let job = device.save_job(files.wants_whole());
    files.persist(job.state.as_ref(), &job.exports).unwrap();
    let left = read_export_records(dir.path()).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].nqn, "nqn.2000-02.com.mikrotik:pvc-2");

    // A new run removes the records of exports that are gone and the old single record.
    fs::write(dir.path().join("exports.json"), "{}").unwrap();
    fs::write(dir.path().join("exports/nqn.gone.json"), "{}").unwrap();
    let mut files = StateFiles::new(dir.path(), "127.0.0.1".parse().unwrap(), false);
    let all = crate::device::ExportsSave::All(device.exports());
    files
        .persist(crate::device::StateRef::Whole(device.state()), &all)
        .unwrap();
    assert_eq!(read_export_records(dir.path()).unwrap(), left);
    assert!(!dir.path().join("exports.json").exists());
}

#[test]
fn restore_recreates_missing_files_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let nvmet_root = dir.path().join("nvmet");
    fs::create_dir_all(nvmet_root.join("subsystems")).unwrap();
    fs::create_dir_all(nvmet_root.join("ports")).unwrap();
    let nvmet = NvmetExporter::with_removal(
        &nvmet_root,
        "127.0.0.1".parse().unwrap(),
        DirRemoval::Recursive,
    );
    let data = dir.path().join("data");
    let mut state = fresh();
    state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
    let exports = state.exports(&env().version);

    let mut store = FileStore::new(&data, Some(nvmet));
    store.restore(&state, &exports).unwrap();
    assert_eq!(
        fs::metadata(data.join("files/storage-pool/pvc-1.img"))
            .unwrap()
            .len(),
        GIB
    );
    let ns = nvmet_root.join("subsystems/nqn.2000-02.com.mikrotik:pvc-1/namespaces/1");
    assert_eq!(
        fs::read_to_string(ns.join("device_path")).unwrap(),
        data.join("files/storage-pool/pvc-1.img").to_string_lossy()
    );

    store.teardown(&exports).unwrap();
    assert!(
        !nvmet_root
            .join("subsystems/nqn.2000-02.com.mikrotik:pvc-1")
            .exists()
    );
}

#[test]
fn atomic_writes_replace_content_and_leave_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.json");
    write_atomic(&path, b"one").unwrap();
    write_atomic(&path, b"two, longer").unwrap();
    write_atomic(&path, b"3").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"3");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn scratch_swaps_keep_the_previous_content_and_reuse_one_inode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let scratch = dir.path().join("state.json.prev");
    replace_via_scratch(&path, &scratch, b"first, long content").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"first, long content");
    replace_via_scratch(&path, &scratch, b"second").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"second");
    assert_eq!(fs::read(&scratch).unwrap(), b"first, long content");
    let inodes = [
        fs::metadata(&path).unwrap().ino(),
        fs::metadata(&scratch).unwrap().ino(),
    ];
    replace_via_scratch(&path, &scratch, b"3").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"3");
    assert_eq!(fs::read(&scratch).unwrap(), b"second");
    assert_eq!(fs::metadata(&path).unwrap().ino(), inodes[1]);
    assert_eq!(fs::metadata(&scratch).unwrap().ino(), inodes[0]);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn corrupt_or_foreign_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(STATE_FILE), "{").unwrap();
    assert!(matches!(
        FileStore::load(dir.path()),
        Err(LoadError::Parse { .. })
    ));
    let mut state = fresh();
    state.format = 99;
    fs::write(
        dir.path().join(STATE_FILE),
        serde_json::to_vec(&state).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        FileStore::load(dir.path()),
        Err(LoadError::Format { found: 99, .. })
    ));
}

#[test]
fn export_records_are_named_by_their_nqn_when_it_can_name_a_file() {
    assert_eq!(
        export_record_name("nqn.2000-02.com.mikrotik:pvc-1").as_deref(),
        Some("nqn.2000-02.com.mikrotik:pvc-1.json")
    );
    for unfit in ["", "a/b", "../x", ".hidden", "a\0b", &"n".repeat(251)] {
        assert_eq!(export_record_name(unfit), None, "{unfit:?}");
    }
}
