//! The controller's scripts, over SSH exec and over REST `POST /rest/execute`: create only
//! when slot and image are free (an `:if`), and the look-ups and removals of the delete path.

mod common;

use common::*;
use serde_json::Value;

/// Runs `script` over the transport; the JSON values it printed.
async fn run(sim: &rds_sim::SimHandle, conn: Option<&Conn>, script: &str) -> Vec<Value> {
    let stdout = match conn {
        Some(conn) => {
            let result = exec(conn, script).await;
            assert_eq!(result.exit_status, Some(0));
            result.stdout
        }
        None => rest_execute(sim, script).await,
    };
    json_values(&stdout)
}

#[tokio::test]
async fn create_if_free_over_ssh_and_rest_execute() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    for (slot, conn) in [("pvc-ssh", Some(&conn)), ("pvc-rest", None)] {
        let script = create_if_free_script(slot, 1 << 30);
        let first = run(&sim, conn, &script).await;
        assert_eq!(first.len(), 4, "{first:?}");
        assert_eq!(
            (&first[0], &first[1]),
            (
                &Value::from(vec![] as Vec<Value>),
                &Value::from(vec![] as Vec<Value>)
            )
        );
        let id = first[2].as_str().expect("the new id").to_owned();
        assert_eq!(first[3][0][".id"], id);
        assert_eq!(first[3][0]["slot"], slot);
        assert_eq!(first[3][0]["file-size"], 1u64 << 30);

        // Both exist now: the ids found, no second add.
        let again = run(&sim, conn, &script).await;
        assert_eq!(again.len(), 3, "{again:?}");
        assert_eq!(again[0], serde_json::json!([id]));
        let file_id = sim
            .snapshot()
            .file_by_name(&format!("storage-pool/{slot}.img"))
            .unwrap()
            .id;
        assert_eq!(again[1], serde_json::json!([format!("*{file_id:X}")]));
        assert_eq!(again[2][0][".id"], id);
    }
    assert_eq!(sim.snapshot().file_disks().count(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_delete_path_over_ssh_and_rest_execute() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    for (slot, conn) in [("pvc-ssh", Some(&conn)), ("pvc-rest", None)] {
        run(&sim, conn, &create_if_free_script(slot, 1 << 20)).await;
        // As the client quotes them: `^`, `?`, `\` and `$` as hex escapes.
        let files = run(
            &sim,
            conn,
            &format!(":put [:serialize to=json [/file print detail as-value where name~\"\\5Estorage-pool/(.+/)\\3F{slot}\\5C.img\\24\"]]"),
        )
        .await;
        assert_eq!(files[0][0]["name"], format!("storage-pool/{slot}.img"));
        let disks = run(
            &sim,
            conn,
            &format!(":put [:serialize to=json [/disk print detail as-value where file-path~\"/{slot}\\\\.img\\$\"]]"),
        )
        .await;
        let id = disks[0][0][".id"].as_str().unwrap().to_owned();
        assert_eq!(
            disks[0][0]["file-path"],
            format!("/storage-pool/{slot}.img")
        );

        let removed = run(
            &sim,
            conn,
            &format!(
                "/disk remove {id};/file remove [find where name=\"storage-pool/{slot}.img\"];\
                 :put [:serialize to=json [/disk print detail as-value where slot=\"{slot}\"]]"
            ),
        )
        .await;
        assert_eq!(removed, [serde_json::json!([])]);
        assert!(
            !sim.backing_file(&format!("storage-pool/{slot}.img"))
                .exists()
        );
    }
    sim.shutdown().await;
}
