//! Quirks over real SSH and HTTPS: a device that words every refusal the same, lets slots
//! repeat, or adopts existing files; and unknown refusal texts passed through verbatim.

mod common;

use common::*;
use rds_sim::{Quirk, SimHandle};
use reqwest::Method;
use serde_json::{Value, json};

/// One REST request; the status and the JSON body (`null` when empty).
async fn rest(sim: &SimHandle, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = https_client(sim)
        .request(method, format!("{}/rest/{path}", sim.rest_url()))
        .basic_auth(USER, Some(PASSWORD));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let reply = request.send().await.expect("REST request");
    let status = reply.status().as_u16();
    let bytes = reply.bytes().await.expect("REST body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, body)
}

fn create_body(slot: &str, file: &str, size: u64) -> Value {
    json!({
        "type": "file", "slot": slot, "file-path": format!("storage-pool/{file}.img"),
        "file-size": size.to_string(), "mount-filesystem": "no", "nvme-tcp-export": "yes",
        "nvme-tcp-server-port": "4420", "nvme-tcp-server-nqn": format!("nqn.2000-02.com.mikrotik:{slot}")
    })
}

const GENERIC: &str = "failure: operation failed";

#[tokio::test]
async fn generic_errors_word_every_refusal_alike() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    // Switched on as an operator would: through the control file.
    std::fs::write(
        sim.data_dir().join("faults.json"),
        r#"{"quirks": ["generic-errors"]}"#,
    )
    .unwrap();

    for refused in [
        create_script("pvc-1", 1 << 20),
        "/disk set nosuchslot comment=x".to_string(),
        "/disk remove *FF".to_string(),
        "/disk add type=file file-path=storage-pool/y.img file-size=lots".to_string(),
        "/disk add type=file slot=other file-path=\"storage-pool/pvc-1.img\" file-size=1M"
            .to_string(),
        "/disk set pvc-1 file-size=1".to_string(),
        "/file remove storage-pool".to_string(),
        ":put [/disk get nosuchslot comment]".to_string(),
    ] {
        let result = exec(&conn, &format!(":put before; {refused}")).await;
        assert_eq!(
            result.stdout,
            format!("before\r\n{GENERIC}\r\n"),
            "{refused}"
        );
    }
    // Syntax errors keep their text, and so do errors outside /disk and /file.
    assert_eq!(
        exec(&conn, "/disk frob").await.stdout,
        "bad command name frob (line 1 column 7)\r\n"
    );
    assert_eq!(
        exec(&conn, "/disk add bogus=1").await.stdout,
        "expected end of command (line 1 column 11)\r\n"
    );
    assert_eq!(
        exec(&conn, ":if (1) do={}").await.stdout,
        "conditional not boolean\r\n"
    );
    // The same through REST execute.
    assert_eq!(
        rest_execute(&sim, "/disk set nosuchslot comment=x").await,
        format!("{GENERIC}\r\n")
    );

    // REST commands: 400 with the one text, where they would say 404 or name the reason.
    let generic = json!({ "error": 400, "message": "Bad Request", "detail": GENERIC });
    let cases = [
        (
            Method::PUT,
            "disk",
            Some(create_body("pvc-1", "pvc-1b", 1 << 20)),
        ),
        (Method::PATCH, "disk/*FF", Some(json!({ "comment": "x" }))),
        (
            Method::PATCH,
            "disk/pvc-1",
            Some(json!({ "file-size": "1" })),
        ),
        (
            Method::PATCH,
            "disk/pvc-1",
            Some(json!({ "nvme-tcp-export": "maybe" })),
        ),
        (Method::DELETE, "disk/*FF", None),
        (Method::DELETE, "file/*1", None),
        (Method::POST, "disk/remove", Some(json!({ ".id": "*FF" }))),
    ];
    for (method, path, body) in cases {
        assert_eq!(
            rest(&sim, method.clone(), path, body).await,
            (400, generic.clone()),
            "{method} {path}"
        );
    }
    // Malformed requests and plain reads are not refusals.
    let mut bogus = create_body("x", "x", 1 << 20);
    bogus["bogus"] = json!("1");
    assert_eq!(
        rest(&sim, Method::PUT, "disk", Some(bogus)).await.1["detail"],
        "unknown parameter bogus"
    );
    assert_eq!(rest(&sim, Method::GET, "disk/*FF", None).await.0, 404);

    // Off again: the device names its reasons.
    std::fs::remove_file(sim.data_dir().join("faults.json")).unwrap();
    assert_eq!(
        exec(&conn, "/disk remove *FF").await.stdout,
        "no such item\r\n"
    );
    assert_eq!(
        rest(&sim, Method::DELETE, "disk/*FF", None).await,
        (404, json!({ "error": 404, "message": "Not Found" }))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_slots_hold_more_than_one_disk() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    sim.faults()
        .update(|f| f.quirks.insert(Quirk::DuplicateSlots));
    let conn = connect(&sim).await;
    let first = exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    assert_eq!(json_values(&first.stdout)[0].as_array().unwrap().len(), 1);
    let second = exec(
        &conn,
        &create_script("pvc-1", 1 << 20)
            .replace("storage-pool/pvc-1.img", "storage-pool/pvc-1-ssh.img"),
    )
    .await;
    let listed = &json_values(&second.stdout)[0];
    assert_eq!(listed.as_array().unwrap().len(), 2, "{}", second.stdout);
    assert_eq!(listed[1]["file-path"], "/storage-pool/pvc-1-ssh.img");

    let (status, third) = rest(
        &sim,
        Method::PUT,
        "disk",
        Some(create_body("pvc-1", "pvc-1-rest", 1 << 20)),
    )
    .await;
    assert_eq!(status, 201, "{third}");
    let (_, in_slot) = rest(&sim, Method::GET, "disk?slot=pvc-1", None).await;
    assert_eq!(in_slot.as_array().unwrap().len(), 3);
    let found = exec(&conn, ":put [:len [/disk find where slot=\"pvc-1\"]]").await;
    assert_eq!(found.stdout, "3\r\n");
    // One NQN, one export: the first disk's.
    let exports = sim.exports();
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].file_path, "storage-pool/pvc-1.img");
    // Removing every disk of the slot leaves no export behind.
    exec(&conn, "/disk remove [find where slot=\"pvc-1\"]").await;
    assert!(sim.exports().is_empty());
    assert_eq!(sim.snapshot().file_disks().count(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn reuse_existing_file_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    let backing = sim.backing_file("storage-pool/pvc-1.img");
    std::fs::write(&backing, vec![0x5a; 1 << 20]).unwrap();
    exec(&conn, "/disk remove [find where slot=\"pvc-1\"]").await;

    let again = create_script("pvc-2", 4 << 20).replace("pvc-2.img", "pvc-1.img");
    assert_eq!(
        exec(&conn, &again).await.stdout,
        "failure: file already exists\r\n",
        "not without the quirk"
    );
    sim.faults()
        .update(|f| f.quirks.insert(Quirk::ReuseExistingFile));
    let adopted = exec(&conn, &again).await;
    let disk = &json_values(&adopted.stdout)[0][0];
    assert_eq!(disk["file-path"], "/storage-pool/pvc-1.img");
    assert_eq!(
        disk["file-size"],
        1u64 << 20,
        "the file's size, not the one asked"
    );
    assert_eq!(
        std::fs::read(&backing).unwrap(),
        vec![0x5a; 1 << 20],
        "data kept"
    );

    // Over REST, even while another disk uses the file.
    let (status, body) = rest(
        &sim,
        Method::PUT,
        "disk",
        Some(create_body("pvc-3", "pvc-1", 8 << 20)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["file-size"], (1u64 << 20).to_string());
    assert_eq!(std::fs::read(&backing).unwrap(), vec![0x5a; 1 << 20]);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_refusal_is_passed_on_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let conn = connect(&sim).await;
    sim.faults().update(|f| {
        f.fail_next = 2;
        f.fail_message = "couldn't add disk (6)".into();
        // Not a refusal the quirk rewords: the device's own text.
        f.quirks.insert(Quirk::GenericErrors);
    });
    let failed = exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    assert_eq!(failed.stdout, "couldn't add disk (6)\r\n");
    assert_eq!(
        rest(
            &sim,
            Method::PUT,
            "disk",
            Some(create_body("pvc-1", "pvc-1", 1 << 20))
        )
        .await,
        (
            400,
            json!({ "error": 400, "message": "Bad Request", "detail": "couldn't add disk (6)" })
        )
    );
    assert!(sim.snapshot().disk_by_slot("pvc-1").is_none());
    let created = exec(&conn, &create_script("pvc-1", 1 << 20)).await;
    assert_eq!(json_values(&created.stdout)[0][0]["slot"], "pvc-1");
    sim.shutdown().await;
}
