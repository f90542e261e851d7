use super::http::{form_urlencoded_pairs, percent_decode};
use super::*;
use crate::device::tests::{MemoryBackend, device_with};

fn req(method: Method, path: &str, query: &[(&str, &str)], body: Option<Json>) -> RestRequest {
    RestRequest {
        method,
        path: path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body,
    }
}

fn call(device: &mut Device, r: RestRequest) -> RestReply {
    handle(device, &RunContext::default(), &r)
}

fn create_body(slot: &str) -> Json {
    json!({
        "type": "file", "slot": slot, "file-path": format!("storage-pool/{slot}.img"), "file-size": "1073741824",
        "mount-filesystem": "no", "nvme-tcp-export": "yes", "nvme-tcp-server-port": "4420",
        "nvme-tcp-server-nqn": format!("nqn.2000-02.com.mikrotik:{slot}"), "comment": "c"
    })
}

#[test]
fn create_get_grow_delete() {
    let mut device = device_with(MemoryBackend::default());
    let created = call(
        &mut device,
        req(Method::PUT, "disk", &[], Some(create_body("pvc-1"))),
    );
    assert_eq!(created.status, 201);
    let object = created.body.unwrap();
    assert_eq!(object[".id"], "*2");
    assert_eq!(object["file-size"], "1073741824");
    assert_eq!(object["nvme-tcp-export"], "true");
    assert_eq!(object["file-path"], "/storage-pool/pvc-1.img");
    assert!(object.as_object().unwrap().values().all(Json::is_string));

    let list = call(
        &mut device,
        req(Method::GET, "disk", &[("slot", "pvc-1")], None),
    );
    assert_eq!(list.body.as_ref().unwrap().as_array().unwrap().len(), 1);
    let narrow = call(
        &mut device,
        req(
            Method::GET,
            "disk",
            &[("slot", "pvc-1"), (".proplist", "slot,size")],
            None,
        ),
    );
    assert_eq!(
        narrow.body.unwrap(),
        json!([{ "slot": "pvc-1", "size": "1073741824" }])
    );
    let pool = call(
        &mut device,
        req(
            Method::GET,
            "disk",
            &[("mount-point", "storage-pool")],
            None,
        ),
    );
    assert_eq!(pool.body.unwrap()[0]["type"], "raid");

    let grown = call(
        &mut device,
        req(
            Method::PATCH,
            "disk/*2",
            &[],
            Some(json!({ "file-size": "2147483648" })),
        ),
    );
    assert_eq!(grown.status, 200);
    assert_eq!(grown.body.unwrap()["file-size"], "2147483648");
    let shrink = call(
        &mut device,
        req(
            Method::PATCH,
            "disk/*2",
            &[],
            Some(json!({ "file-size": 1 })),
        ),
    );
    assert_eq!(shrink.status, 400);
    assert_eq!(
        shrink.body.unwrap()["detail"],
        "failure: file-size can not be reduced"
    );

    assert_eq!(
        call(&mut device, req(Method::GET, "disk/pvc-1", &[], None)).status,
        200
    );
    assert_eq!(
        call(&mut device, req(Method::DELETE, "disk/*2", &[], None)),
        RestReply {
            status: 204,
            body: None
        }
    );
    let again = call(&mut device, req(Method::DELETE, "disk/*2", &[], None));
    assert_eq!(again.status, 404);
    assert_eq!(
        again.body.unwrap(),
        json!({ "error": 404, "message": "Not Found" })
    );

    let files = call(
        &mut device,
        req(
            Method::GET,
            "file",
            &[("name", "storage-pool/pvc-1.img")],
            None,
        ),
    );
    let id = files.body.unwrap()[0][".id"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            &mut device,
            req(Method::DELETE, &format!("file/{id}"), &[], None)
        )
        .status,
        204
    );
    assert_eq!(
        call(
            &mut device,
            req(Method::DELETE, &format!("file/{id}"), &[], None)
        )
        .status,
        404
    );
}

#[test]
fn errors_carry_the_device_text() {
    let mut device = device_with(MemoryBackend::default());
    call(
        &mut device,
        req(Method::PUT, "disk", &[], Some(create_body("pvc-1"))),
    );
    let dup = call(
        &mut device,
        req(Method::PUT, "disk", &[], Some(create_body("pvc-1"))),
    );
    assert_eq!(dup.status, 400);
    assert_eq!(
        dup.body.unwrap(),
        json!({ "error": 400, "message": "Bad Request", "detail": "failure: disk with slot pvc-1 already exists" })
    );
    let mut bad = create_body("x");
    bad["bogus"] = json!("1");
    assert_eq!(
        call(&mut device, req(Method::PUT, "disk", &[], Some(bad)))
            .body
            .unwrap()["detail"],
        "unknown parameter bogus"
    );
    let mut bad = create_body("x");
    bad["nvme-tcp-export"] = json!("maybe");
    assert_eq!(
        call(&mut device, req(Method::PUT, "disk", &[], Some(bad)))
            .body
            .unwrap()["detail"],
        "input does not match any value of nvme-tcp-export"
    );
    let unknown = call(&mut device, req(Method::GET, "interface", &[], None));
    assert_eq!(unknown.status, 400);
    assert_eq!(
        unknown.body.unwrap()["detail"],
        "no such command or directory (interface)"
    );
    assert_eq!(
        call(&mut device, req(Method::DELETE, "disk", &[], None)).status,
        406
    );
}

#[test]
fn post_print_with_proplist_and_query() {
    let mut device = device_with(MemoryBackend::default());
    call(
        &mut device,
        req(Method::PUT, "disk", &[], Some(create_body("pvc-1"))),
    );
    call(
        &mut device,
        req(Method::PUT, "disk", &[], Some(create_body("pvc-2"))),
    );
    let body =
        json!({ ".proplist": ["slot", "file-size"], ".query": ["slot=pvc-2", "type=file", "#&"] });
    let reply = call(
        &mut device,
        req(Method::POST, "disk/print", &[], Some(body)),
    );
    assert_eq!(
        reply.body.unwrap(),
        json!([{ "slot": "pvc-2", "file-size": "1073741824" }])
    );
    let body = json!({ ".query": ["slot=pvc-1", "slot=pvc-2", "#|"] });
    assert_eq!(
        call(
            &mut device,
            req(Method::POST, "disk/print", &[], Some(body))
        )
        .body
        .unwrap()
        .as_array()
        .unwrap()
        .len(),
        2
    );
    let body = json!({ ".query": ["#&"] });
    assert_eq!(
        call(
            &mut device,
            req(Method::POST, "disk/print", &[], Some(body))
        )
        .status,
        400
    );
    let all = call(&mut device, req(Method::POST, "disk/print", &[], None));
    assert_eq!(all.body.unwrap().as_array().unwrap().len(), 3);
}

#[test]
fn query_words() {
    let mut device = device_with(MemoryBackend::default());
    call(
        &mut device,
        req(Method::PUT, "disk", &[], Some(create_body("pvc-1"))),
    );
    let record = device.disk_records().pop().unwrap();
    let q = |words: &[&str]| {
        query_matches(
            &words.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &record,
        )
    };
    assert_eq!(q(&["slot=pvc-1"]), Ok(true));
    assert_eq!(q(&["slot=pvc-1", "#!"]), Ok(false));
    assert_eq!(q(&["file-size>1"]), Ok(true));
    assert_eq!(q(&["file-size<1"]), Ok(false));
    assert_eq!(q(&["comment"]), Ok(true));
    assert_eq!(q(&["-comment"]), Ok(false));
    assert_eq!(q(&["-mount-point"]), Ok(true));
    assert!(q(&["#|"]).is_err());
}

#[test]
fn system_menus_and_execute() {
    let mut device = device_with(MemoryBackend::default());
    let resource = call(&mut device, req(Method::GET, "system/resource", &[], None))
        .body
        .unwrap();
    assert_eq!(resource["version"], "7.21.5 (stable)");
    assert_eq!(resource["board-name"], "RDS2216");
    let identity = call(&mut device, req(Method::GET, "system/identity", &[], None))
        .body
        .unwrap();
    assert_eq!(identity["name"], "rds-sim");
    device.set_conditions(1_796_455_809, false, Default::default());
    let clock = call(&mut device, req(Method::GET, "system/clock", &[], None))
        .body
        .unwrap();
    assert_eq!(
        (&clock["date"], &clock["time"]),
        (&"2026-12-05".into(), &"07:30:09".into())
    );
    // A syntax error: nothing runs. A runtime error: earlier output stays.
    let out = call(
        &mut device,
        req(
            Method::POST,
            "execute",
            &[],
            Some(json!({ "script": ":put a; :put b; /disk frob" })),
        ),
    );
    assert_eq!(out.status, 200);
    assert_eq!(
        out.body.unwrap()["ret"],
        "bad command name frob (line 1 column 23)\r\n"
    );
    let out = call(
        &mut device,
        req(
            Method::POST,
            "execute",
            &[],
            Some(json!({ "script": ":put a; /disk set nosuch comment=x; :put b" })),
        ),
    );
    assert_eq!(out.body.unwrap()["ret"], "a\r\nno such item\r\n");
    let added = call(
        &mut device,
        req(Method::POST, "disk/add", &[], Some(create_body("pvc-9"))),
    );
    assert_eq!(added.body.unwrap(), json!({ "ret": "*2" }));
    let removed = call(
        &mut device,
        req(
            Method::POST,
            "disk/remove",
            &[],
            Some(json!({ ".id": "*2" })),
        ),
    );
    assert_eq!(removed.body.unwrap(), json!([]));
}

#[test]
fn url_decoding() {
    assert_eq!(percent_decode("%2A1A"), "*1A");
    assert_eq!(percent_decode("a%2"), "a%2");
    assert_eq!(percent_decode("%C3%A9%zz"), "é%zz");
    assert_eq!(
        form_urlencoded_pairs("slot=a+b&.proplist=x%2Cy"),
        vec![
            ("slot".into(), "a b".into()),
            (".proplist".into(), "x,y".into())
        ]
    );
}
