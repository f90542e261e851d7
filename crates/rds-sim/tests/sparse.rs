//! A sparse pool over real SSH and HTTPS: `free` follows the blocks written into the
//! images, not their sizes, and only a pool with no room left refuses adds and grows.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use common::*;
use rds_sim::{SimHandle, Simulator};

const MIB: u64 = 1 << 20;
const CAPACITY: u64 = 64 * MIB;

async fn pool_over_ssh(conn: &Conn) -> serde_json::Value {
    let out = exec(
        conn,
        ":put [:serialize to=json [/disk print detail as-value where slot=\"storage-pool\"]]",
    )
    .await;
    json_values(&out.stdout)[0][0].clone()
}

async fn free_over_rest(sim: &SimHandle) -> u64 {
    let pools: serde_json::Value = https_client(sim)
        .get(format!("{}/rest/disk?slot=storage-pool", sim.rest_url()))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    pools[0]["free"].as_str().unwrap().parse().unwrap()
}

/// Writes `bytes` of data at `offset` into the image, as a host would through the export.
fn write_into(path: &std::path::Path, offset: u64, bytes: u64) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&vec![0x5a; bytes as usize]).unwrap();
    file.sync_all().unwrap();
}

/// The pool's `free` over SSH once it is at most `most` (writes from outside show at the
/// device's next look at the files).
async fn free_once_at_most(conn: &Conn, most: u64) -> u64 {
    let started = Instant::now();
    loop {
        let free = pool_over_ssh(conn).await["free"].as_u64().unwrap();
        if free <= most || started.elapsed() > Duration::from_secs(5) {
            return free;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn free_space_follows_written_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.capacity = CAPACITY;
    let sim = Simulator::start(config).await.unwrap();
    let conn = connect(&sim).await;

    // An image far larger than the pool: accepted, and it takes one metadata block.
    let created = exec(&conn, &create_script("pvc-1", 10 << 30)).await;
    assert_eq!(json_values(&created.stdout)[0][0]["file-size"], 10u64 << 30);
    let pool = pool_over_ssh(&conn).await;
    assert_eq!(pool["size"], CAPACITY);
    assert_eq!(pool["free"], CAPACITY - 4096);
    assert_eq!(free_over_rest(&sim).await, CAPACITY - 4096);

    let image = sim.backing_file("storage-pool/pvc-1.img");
    write_into(&image, 1 << 30, 16 * MIB);
    let free = free_once_at_most(&conn, CAPACITY - 4096 - 16 * MIB).await;
    let taken = CAPACITY - 4096 - free;
    assert!(
        (16 * MIB..=17 * MIB).contains(&taken),
        "16 MiB took {taken}"
    );
    assert_eq!(free_over_rest(&sim).await, free);
    assert_eq!(pool_over_ssh(&conn).await["use"], 25);

    // Filled: no room even for a new file's metadata.
    write_into(&image, 2 << 30, CAPACITY);
    assert_eq!(free_once_at_most(&conn, 0).await, 0);
    let no_space = "failure: not enough free space on storage-pool\r\n";
    assert_eq!(
        exec(&conn, &create_script("pvc-2", MIB)).await.stdout,
        no_space
    );
    assert_eq!(
        exec(&conn, "/disk set pvc-1 file-size=11G").await.stdout,
        no_space
    );
    let refused = https_client(&sim)
        .patch(format!("{}/rest/disk/pvc-1", sim.rest_url()))
        .basic_auth(USER, Some(PASSWORD))
        .json(&serde_json::json!({ "file-size": "12G" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // Removing the image gives every block back.
    exec(
        &conn,
        "/disk remove [find where slot=\"pvc-1\"];/file remove [find where name=\"storage-pool/pvc-1.img\"]",
    )
    .await;
    assert_eq!(pool_over_ssh(&conn).await["free"], CAPACITY);
    assert_eq!(sim.snapshot().pool_free, CAPACITY);
    sim.shutdown().await;
}
