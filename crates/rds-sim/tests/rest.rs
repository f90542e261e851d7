//! The REST API over real HTTPS, trusting only the simulator's certificate.

mod common;

use common::*;
use rds_sim::{Faults, Simulator};
use serde_json::{Value, json};

fn create_body(slot: &str) -> Value {
    json!({
        "type": "file", "slot": slot, "file-path": format!("storage-pool/{slot}.img"), "file-size": "1073741824",
        "mount-filesystem": "no", "nvme-tcp-export": "yes", "nvme-tcp-server-port": "4420",
        "nvme-tcp-server-nqn": format!("nqn.2000-02.com.mikrotik:{slot}"), "comment": "test"
    })
}

#[tokio::test]
async fn https_crud_with_a_pinned_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let http = https_client(&sim);
    let url = |path: &str| format!("{}/rest/{path}", sim.rest_url());

    let resource: Value = http
        .get(url("system/resource"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resource["version"], "7.21.5 (stable)");
    assert_eq!(resource["board-name"], "RDS2216");
    assert!(
        resource["total-memory"].is_string(),
        "every value is a string"
    );

    let created = http
        .put(url("disk"))
        .basic_auth(USER, Some(PASSWORD))
        .json(&create_body("pvc-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let disk: Value = created.json().await.unwrap();
    let id = disk[".id"].as_str().unwrap().to_string();
    assert_eq!(disk["file-size"], "1073741824");
    assert_eq!(disk["nvme-tcp-export"], "true");

    let listed: Value = http
        .get(url("disk?slot=pvc-1"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let pool: Value = http
        .get(url("disk?mount-point=storage-pool&.proplist=size,free"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        pool,
        // Sparse: the new 1 GiB image takes one metadata block.
        json!([{ "size": "1099511627776", "free": "1099511623680" }])
    );

    let grown: Value = http
        .patch(url(&format!("disk/{id}")))
        .basic_auth(USER, Some(PASSWORD))
        .json(&json!({ "file-size": "2147483648" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(grown["file-size"], "2147483648");

    let dup = http
        .put(url("disk"))
        .basic_auth(USER, Some(PASSWORD))
        .json(&create_body("pvc-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 400);
    assert_eq!(
        dup.json::<Value>().await.unwrap(),
        json!({ "error": 400, "message": "Bad Request", "detail": "failure: disk with slot pvc-1 already exists" })
    );

    let printed: Value = http
        .post(url("disk/print"))
        .basic_auth(USER, Some(PASSWORD))
        .json(&json!({ ".proplist": ["slot"], ".query": ["slot=pvc-1", "type=file", "#&"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(printed, json!([{ "slot": "pvc-1" }]));

    let deleted = http
        .delete(url(&format!("disk/{id}")))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(deleted.bytes().await.unwrap().len(), 0);
    let again = http
        .delete(url(&format!("disk/{id}")))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({ "error": 404, "message": "Not Found" })
    );

    let files: Value = http
        .get(url("file?name=storage-pool/pvc-1.img"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file_id = files[0][".id"].as_str().unwrap().to_string();
    assert_eq!(files[0]["size"], "2147483648");
    let removed = http
        .delete(url(&format!("file/{file_id}")))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert!(!sim.backing_file("storage-pool/pvc-1.img").exists());
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_credentials_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let http = https_client(&sim);
    let url = format!("{}/rest/disk", sim.rest_url());
    let wrong = http
        .get(&url)
        .basic_auth(USER, Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(&url)
            .basic_auth("admin+ct", Some(PASSWORD))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_certificate_covers_localhost() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let http = https_client(&sim);
    let url = format!(
        "https://localhost:{}/rest/system/identity",
        sim.rest_addr().port()
    );
    let identity: Value = http
        .get(url)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(identity["name"], "MikroTik");
    assert_eq!(sim.certificate_fingerprint().len(), 95);
    assert!(
        sim.certificate_pem()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn session_cap_answers_503_and_drop_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.faults = Faults {
        max_sessions: 0,
        ..Faults::default()
    };
    let sim = Simulator::start(config).await.unwrap();
    let http = https_client(&sim);
    let url = format!("{}/rest/disk", sim.rest_url());
    let busy = http
        .get(&url)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(
        busy.json::<Value>().await.unwrap(),
        json!({ "error": 503, "message": "Service Unavailable", "detail": "too many sessions" })
    );

    sim.faults().update(|f| {
        f.max_sessions = 20;
        f.drop_next = 1;
    });
    let dropped = http
        .put(&url)
        .basic_auth(USER, Some(PASSWORD))
        .json(&create_body("pvc-1"))
        .send()
        .await;
    assert!(dropped.is_err(), "no reply: {dropped:?}");
    assert!(sim.snapshot().disk_by_slot("pvc-1").is_none());
    // A lost reply: the request ran, the caller hears nothing.
    sim.faults().update(|f| f.lose_reply_percent = 100);
    let lost = http
        .put(&url)
        .basic_auth(USER, Some(PASSWORD))
        .json(&create_body("pvc-lost"))
        .send()
        .await;
    assert!(lost.is_err(), "no reply: {lost:?}");
    assert!(sim.snapshot().disk_by_slot("pvc-lost").is_some(), "it ran");
    sim.faults().update(|f| f.lose_reply_percent = 0);

    sim.faults().update(|f| {
        f.fail_next = 1;
        f.fail_message = "failure: device busy".into();
    });
    let failed = http
        .get(&url)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 400);
    assert_eq!(
        failed.json::<Value>().await.unwrap()["detail"],
        "failure: device busy"
    );
    assert_eq!(
        http.get(&url)
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn plain_http_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.rest_plain_http = true;
    let sim = Simulator::start(config).await.unwrap();
    assert!(sim.rest_url().starts_with("http://"));
    let http = https_client(&sim);
    let reply = http
        .post(format!("{}/rest/execute", sim.rest_url()))
        .basic_auth(USER, Some(PASSWORD))
        .json(&json!({ "script": ":put [/system identity get name]" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.json::<Value>().await.unwrap(),
        json!({ "ret": "MikroTik\r\n" })
    );
    sim.shutdown().await;
}
