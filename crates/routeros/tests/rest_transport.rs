//! The REST transport against a real HTTPS server (axum over rustls) on loopback.
//!
//! The server is a small string-valued `/rest` emulation, enough to pin down the transport:
//! certificate pinning (CA with host name, leaf fingerprint, insecure), basic auth, the
//! requests each operation makes, error bodies, concurrency bound and connection reuse.

use std::time::Duration;

use routeros::{
    Client, ClientConfig, CreateOutcome, DiskItem, DiskSpec, Error, FilePath, ItemId, Nqn,
    NqnSource, Secret, Slot, TlsPolicy,
};
use server::{RestServer, ServerOptions};

const USER: &str = "csi";
const PASSWORD: &str = "rest-pw";

fn config(server: &RestServer, host: &str, tls: TlsPolicy) -> ClientConfig {
    let mut cfg = ClientConfig::rest(host, USER, Secret::new(PASSWORD), tls);
    cfg.port = Some(server.addr.port());
    cfg.command_timeout = Duration::from_secs(5);
    cfg.connect_timeout = Duration::from_secs(5);
    cfg
}

fn pinned(server: &RestServer) -> ClientConfig {
    config(
        server,
        "127.0.0.1",
        TlsPolicy::Fingerprint(server.fingerprint.clone()),
    )
}

fn slot(s: &str) -> Slot {
    Slot::try_from(s).unwrap()
}

fn spec(s: &str, size: u64) -> DiskSpec {
    DiskSpec {
        slot: slot(s),
        file_path: FilePath::try_from(format!("storage-pool/{s}.img")).unwrap(),
        size,
        port: 4420,
        nqn: Nqn::try_from(format!("nqn.2000-02.com.mikrotik:{s}")).unwrap(),
        comment: Some("ns/app \"x\"".into()),
    }
}

fn created(outcome: routeros::Result<CreateOutcome>) -> routeros::FileDisk {
    match outcome {
        Ok(CreateOutcome::Created(disk)) => disk,
        other => panic!("not created: {other:?}"),
    }
}

#[tokio::test]
async fn full_lifecycle_with_a_pinned_fingerprint_in_few_requests() {
    let server = RestServer::start(ServerOptions::default()).await;
    let client = Client::connect(pinned(&server)).await.unwrap();
    server.take_log();

    let s = spec("pvc-a", 1 << 30);
    let disk = created(client.create_file_disk(&s).await);
    assert_eq!(disk.nqn, "nqn.2000-02.com.mikrotik:pvc-a");
    assert_eq!(disk.nqn_source, NqnSource::ServerNqn);
    assert_eq!(disk.comment.as_deref(), Some("ns/app \"x\""));
    assert_eq!(
        server.take_log(),
        ["POST /rest/execute"],
        "the guarded add is one request"
    );
    assert_eq!(
        client.create_file_disk(&s).await.unwrap(),
        CreateOutcome::SlotTaken(vec![DiskItem::File(disk.clone())])
    );

    created(client.create_file_disk(&spec("other-b", 1 << 20)).await);
    assert_eq!(
        client.get_disk(&slot("pvc-a")).await.unwrap().unwrap(),
        disk
    );
    assert_eq!(client.get_disk(&slot("pvc-zz")).await.unwrap(), None);
    let listed = client.list_disks("pvc-").await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.slot.as_str()).collect::<Vec<_>>(),
        ["pvc-a"]
    );
    assert_eq!(client.list_disks("").await.unwrap().len(), 2);
    server.take_log();

    let grown = client.grow_disk(&slot("pvc-a"), 2 << 30).await.unwrap();
    assert_eq!(grown.file_size, 2 << 30);
    assert_eq!(
        server.take_log(),
        ["GET /rest/disk?slot=pvc-a", "PATCH /rest/disk/*1"]
    );

    let id = ItemId::try_from(disk.id.as_str()).unwrap();
    client.remove_disk(&id, None).await.unwrap();
    assert_eq!(server.take_log(), ["POST /rest/execute"]);
    client.remove_disk(&id, None).await.unwrap();
    assert_eq!(client.get_disk(&slot("pvc-a")).await.unwrap(), None);
    server.take_log();

    // The image outlives its disk, as on RouterOS.
    let file = client.get_file(&s.file_path).await.unwrap().unwrap();
    assert_eq!(
        (file.name.as_str(), file.size),
        ("storage-pool/pvc-a.img", 2 << 30)
    );
    client.remove_file(&s.file_path).await.unwrap();
    assert_eq!(client.get_file(&s.file_path).await.unwrap(), None);

    let pool = client.pool("storage-pool").await.unwrap();
    assert_eq!(
        (pool.fs.as_str(), pool.size, pool.mounted),
        ("btrfs", server::POOL_SIZE, true)
    );
    // This stand-in only charges creates against free space.
    assert_eq!(pool.free, server::POOL_SIZE - (1 << 30) - (1 << 20));
    assert!(matches!(client.pool("nope").await, Err(Error::NotFound(_))));
    assert_eq!(
        server.connections(),
        1,
        "one pooled connection for sequential use"
    );
}

#[tokio::test]
async fn ca_pinning_verifies_the_host_name() {
    let server = RestServer::start(ServerOptions::default()).await;
    let ca = TlsPolicy::CaPem(server.ca_pem.clone());
    Client::connect(config(&server, "localhost", ca.clone()))
        .await
        .unwrap();
    // The certificate names `localhost` only.
    let err = Client::connect(config(&server, "127.0.0.1", ca))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    // A CA file works like inline PEM.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &server.ca_pem).unwrap();
    Client::connect(config(&server, "localhost", TlsPolicy::CaFile(path)))
        .await
        .unwrap();
    // Another CA is not trusted.
    let other = RestServer::start(ServerOptions::default()).await;
    let err = Client::connect(config(
        &server,
        "localhost",
        TlsPolicy::CaPem(other.ca_pem.clone()),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
}

#[tokio::test]
async fn a_wrong_fingerprint_is_refused_and_insecure_mode_connects() {
    let server = RestServer::start(ServerOptions::default()).await;
    let wrong = routeros::cert_fingerprint(b"another certificate");
    let err = Client::connect(config(&server, "127.0.0.1", TlsPolicy::Fingerprint(wrong)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    assert_eq!(
        server.take_log(),
        Vec::<String>::new(),
        "no request reached an untrusted peer"
    );
    Client::connect(config(&server, "127.0.0.1", TlsPolicy::Insecure))
        .await
        .unwrap();
    let bare_hex = server.fingerprint.replace(':', "").to_lowercase();
    Client::connect(config(
        &server,
        "127.0.0.1",
        TlsPolicy::Fingerprint(bare_hex),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn refused_credentials_are_unauthenticated() {
    let server = RestServer::start(ServerOptions::default()).await;
    let mut cfg = pinned(&server);
    cfg.transport = routeros::TransportConfig::Rest {
        password: Secret::new("wrong-pw"),
        tls: TlsPolicy::Fingerprint(server.fingerprint.clone()),
    };
    let err = Client::connect(cfg).await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    assert!(!err.to_string().contains("wrong-pw"));
}

#[tokio::test]
async fn device_errors_are_typed() {
    let server = RestServer::start(ServerOptions::default()).await;
    let client = Client::new(pinned(&server)).unwrap();
    created(client.create_file_disk(&spec("dup", 1 << 20)).await);
    let err = client
        .create_file_disk(&spec("huge", server::POOL_SIZE * 2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    let err = client.grow_disk(&slot("dup"), 1 << 10).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "shrinking: {err}");
    assert!(matches!(
        client.grow_disk(&slot("absent"), 1 << 30).await,
        Err(Error::NotFound(_))
    ));
    server.set_unavailable(true);
    let err = client.get_disk(&slot("dup")).await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(_)) && err.is_retryable(),
        "{err}"
    );
}

#[tokio::test]
async fn pre_7_21_creates_send_no_nqn() {
    let server = RestServer::start(ServerOptions {
        version: "7.19.4 (stable)",
        ..Default::default()
    })
    .await;
    let client = Client::new(pinned(&server)).unwrap();
    let disk = created(client.create_file_disk(&spec("pvc-old", 1 << 20)).await);
    assert_eq!(
        (disk.nqn.as_str(), disk.nqn_source),
        ("pvc-old", NqnSource::SlotName)
    );
    let script = server.last_put_body()["script"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!script.contains("nvme-tcp-server-nqn"), "{script}");
}

#[tokio::test]
async fn concurrency_is_bounded_and_connections_are_reused() {
    let server = RestServer::start(ServerOptions {
        delay: Duration::from_millis(30),
        ..Default::default()
    })
    .await;
    let mut cfg = pinned(&server);
    cfg.max_concurrency = 3;
    let client = Client::new(cfg).unwrap();
    let gets = (0..15).map(|i| {
        let client = client.clone();
        async move { client.get_disk(&slot(&format!("pvc-{i}"))).await }
    });
    for result in futures::future::join_all(gets).await {
        assert_eq!(result.unwrap(), None);
    }
    assert_eq!(server.max_in_flight(), 3);
    assert!(
        server.connections() <= 3,
        "{} connections",
        server.connections()
    );
}

mod server {
    //! A minimal RouterOS-like `/rest` over HTTPS.

    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use base64::Engine as _;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use serde_json::{Map, Value, json};
    use tokio::net::TcpListener;

    pub const POOL_SIZE: u64 = 1 << 40;

    pub struct ServerOptions {
        pub version: &'static str,
        pub delay: Duration,
    }

    impl Default for ServerOptions {
        fn default() -> Self {
            Self {
                version: "7.21.5 (stable)",
                delay: Duration::ZERO,
            }
        }
    }

    #[derive(Default)]
    struct Device {
        disks: Vec<Map<String, Value>>,
        files: Vec<Map<String, Value>>,
        next_id: u32,
        log: Vec<String>,
        last_put: Value,
    }

    struct Shared {
        options: ServerOptions,
        device: Mutex<Device>,
        unavailable: AtomicBool,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        connections: AtomicUsize,
    }

    pub struct RestServer {
        pub addr: SocketAddr,
        pub fingerprint: String,
        pub ca_pem: String,
        shared: Arc<Shared>,
        accept: tokio::task::JoinHandle<()>,
    }

    impl Drop for RestServer {
        fn drop(&mut self) {
            self.accept.abort();
        }
    }

    impl RestServer {
        pub async fn start(options: ServerOptions) -> Self {
            let ca_key = KeyPair::generate().unwrap();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca_cert = ca_params.self_signed(&ca_key).unwrap();
            let issuer = Issuer::new(ca_params, ca_key);
            let leaf_key = KeyPair::generate().unwrap();
            let leaf = CertificateParams::new(vec!["localhost".to_owned()])
                .unwrap()
                .signed_by(&leaf_key, &issuer)
                .unwrap();
            let fingerprint = routeros::cert_fingerprint(leaf.der());

            let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
            )
            .unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

            let device = Device {
                disks: vec![obj(
                    json!({".id": "*0", "type": "raid", "slot": "storage-pool",
                    "mount-point": "storage-pool", "fs": "btrfs", "size": POOL_SIZE.to_string(),
                    "free": POOL_SIZE.to_string(), "mounted": "true", "state": "clean", "raid-type": "raid5"}),
                )],
                next_id: 1,
                ..Default::default()
            };
            let shared = Arc::new(Shared {
                options,
                device: Mutex::new(device),
                unavailable: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
                connections: AtomicUsize::new(0),
            });
            let app = Router::new().fallback(handle).with_state(shared.clone());
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accept_shared = shared.clone();
            let accept = tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    accept_shared.connections.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, app) = (acceptor.clone(), app.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                            .await;
                    });
                }
            });
            Self {
                addr,
                fingerprint,
                ca_pem: ca_cert.pem(),
                shared,
                accept,
            }
        }

        /// Requests seen since the last call, as `METHOD /path?query`.
        pub fn take_log(&self) -> Vec<String> {
            std::mem::take(&mut self.shared.device.lock().unwrap().log)
        }

        pub fn last_put_body(&self) -> Value {
            self.shared.device.lock().unwrap().last_put.clone()
        }

        pub fn set_unavailable(&self, on: bool) {
            self.shared.unavailable.store(on, Ordering::SeqCst);
        }

        pub fn connections(&self) -> usize {
            self.shared.connections.load(Ordering::SeqCst)
        }

        pub fn max_in_flight(&self) -> usize {
            self.shared.max_in_flight.load(Ordering::SeqCst)
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn error(status: StatusCode, detail: Option<&str>) -> Response {
        let mut body =
            json!({"error": status.as_u16(), "message": status.canonical_reason().unwrap_or("")});
        if let Some(d) = detail {
            body["detail"] = json!(d);
        }
        (status, axum::Json(body)).into_response()
    }

    /// The stand-in's `/disk add`: the disk, or the RouterOS error text.
    fn add_disk(
        dev: &mut Device,
        version: &str,
        req: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let s = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let slot = s("slot");
        if dev.disks.iter().any(|d| d["slot"] == slot.as_str()) {
            return Err(format!("failure: disk with slot {slot} already exists"));
        }
        let size: u64 = s("file-size").parse().unwrap();
        let free: u64 = dev.disks[0]["free"].as_str().unwrap().parse().unwrap();
        if size > free {
            return Err("failure: not enough free space on storage-pool".into());
        }
        dev.disks[0]["free"] = json!((free - size).to_string());
        let id = format!("*{:X}", dev.next_id);
        dev.next_id += 1;
        let mut disk = obj(
            json!({".id": id, "type": "file", "slot": slot, "file-path": format!("/{}", s("file-path")),
            "file-size": size.to_string(), "size": size.to_string(),
            "nvme-tcp-export": (s("nvme-tcp-export") == "yes").to_string(), "nvme-tcp-server-port": s("nvme-tcp-server-port")}),
        );
        disk.insert(
            "mount-filesystem".into(),
            json!(if s("mount-filesystem") == "yes" {
                "true"
            } else {
                "false"
            }),
        );
        if version.starts_with("7.2") && !version.starts_with("7.20") {
            disk.insert(
                "nvme-tcp-server-nqn".into(),
                json!(s("nvme-tcp-server-nqn")),
            );
        } else if req.contains_key("nvme-tcp-server-nqn") {
            return Err("expected end of command (line 1 column 200)".into());
        }
        if req.contains_key("comment") {
            disk.insert("comment".into(), json!(s("comment")));
        }
        let file_id = format!("*F{:X}", dev.next_id);
        dev.files.push(obj(json!({".id": file_id, "name": s("file-path"), "type": ".img file", "size": size.to_string()})));
        dev.disks.push(disk.clone());
        Ok(disk)
    }

    /// The two scripts the transport sends through `/execute` that this stand-in knows: the
    /// guarded add and the removal of a disk by id (with its image). Values are unquoted as the
    /// device would (hex escapes); anything else is a syntax error.
    fn execute(dev: &mut Device, version: &str, script: &str) -> String {
        if let Some(at) = script.find("/disk add ") {
            let args = &script[at + "/disk add ".len()..];
            let args = &args[..args.find("]]}").unwrap()];
            let req = parse_args(args);
            let s = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let slot_ids: Vec<Value> = dev
                .disks
                .iter()
                .filter(|d| d["slot"] == s("slot").as_str())
                .map(|d| d[".id"].clone())
                .collect();
            let file_ids: Vec<Value> = dev
                .files
                .iter()
                .filter(|f| f["name"] == s("file-path").as_str())
                .map(|f| f[".id"].clone())
                .collect();
            let mut out = format!("{}\r\n{}\r\n", json!(slot_ids), json!(file_ids));
            if slot_ids.is_empty() && file_ids.is_empty() {
                match add_disk(dev, version, &req) {
                    Ok(disk) => out.push_str(&format!("{}\r\n", json!(disk[".id"]))),
                    Err(text) => return out + &text + "\r\n",
                }
            }
            let after: Vec<_> = dev
                .disks
                .iter()
                .filter(|d| d["slot"] == s("slot").as_str())
                .cloned()
                .collect();
            return out + &json!(after).to_string() + "\r\n";
        }
        if let Some(rest) = script.strip_prefix("/disk remove *") {
            let (id, image) = rest.split_once(';').unwrap_or((rest, ""));
            let id = format!("*{id}");
            dev.disks.retain(|d| d[".id"] != id.as_str());
            if let Some(at) = image.find("name=") {
                let name = parse_args(&image[at..image.len() - 1]);
                dev.files.retain(|f| Some(&f["name"]) != name.get("name"));
            }
            return String::new();
        }
        "bad command name (line 1 column 1)\r\n".into()
    }

    /// `key=value` pairs separated by spaces; quoted values decoded.
    fn parse_args(text: &str) -> Map<String, Value> {
        let mut out = Map::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=').unwrap();
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = Vec::new();
                let bytes = quoted.as_bytes();
                let mut i = 0;
                while bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        let hex = &quoted[i + 1..i + 3];
                        match u8::from_str_radix(hex, 16) {
                            Ok(b) => {
                                value.push(b);
                                i += 3;
                            }
                            Err(_) => {
                                value.push(bytes[i + 1]);
                                i += 2;
                            }
                        }
                    } else {
                        value.push(bytes[i]);
                        i += 1;
                    }
                }
                (String::from_utf8(value).unwrap(), &quoted[i + 1..])
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            };
            out.insert(key.to_owned(), json!(value));
            rest = after.trim_start();
        }
        out
    }

    async fn handle(
        State(shared): State<Arc<Shared>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(shared.options.delay).await;
        let response = respond(&shared, &method, &uri, &headers, &body);
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        response
    }

    fn respond(
        shared: &Shared,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                super::USER,
                super::PASSWORD
            ))
        );
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return error(StatusCode::UNAUTHORIZED, None);
        }
        if shared.unavailable.load(Ordering::SeqCst) {
            return error(StatusCode::SERVICE_UNAVAILABLE, Some("too many sessions"));
        }
        let mut dev = shared.device.lock().unwrap();
        let path = uri.path();
        dev.log.push(match uri.query() {
            Some(q) => format!("{method} {path}?{q}"),
            None => format!("{method} {path}"),
        });
        let query: Vec<(String, String)> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.replace("%2F", "/"))
            })
            .collect();
        let matches = |item: &Map<String, Value>| {
            query
                .iter()
                .all(|(k, v)| item.get(k).and_then(Value::as_str) == Some(v.as_str()))
        };
        let version = shared.options.version;
        let parts: Vec<&str> = path.trim_start_matches("/rest/").split('/').collect();
        match (method.clone(), parts.as_slice()) {
            (Method::GET, ["system", "resource"]) => {
                axum::Json(json!({"version": version, "board-name": "RDS2216", "cpu-count": "16"}))
                    .into_response()
            }
            (Method::GET, ["system", "identity"]) => {
                axum::Json(json!({"name": "rds-rest"})).into_response()
            }
            (Method::GET, ["disk"]) => axum::Json(
                dev.disks
                    .iter()
                    .filter(|d| matches(d))
                    .cloned()
                    .collect::<Vec<_>>(),
            )
            .into_response(),
            (Method::GET, ["file"]) => axum::Json(
                dev.files
                    .iter()
                    .filter(|d| matches(d))
                    .cloned()
                    .collect::<Vec<_>>(),
            )
            .into_response(),
            (Method::POST, ["execute"]) => {
                let req: Value = serde_json::from_slice(body).unwrap();
                let script = req["script"].as_str().unwrap_or("").to_owned();
                dev.last_put = json!({ "script": script });
                let ret = execute(&mut dev, version, &script);
                axum::Json(json!({ "ret": ret })).into_response()
            }
            (Method::PATCH, ["disk", id]) => {
                let req: Map<String, Value> = serde_json::from_slice(body).unwrap();
                let Some(pos) = dev.disks.iter().position(|d| d[".id"] == *id) else {
                    return error(StatusCode::NOT_FOUND, None);
                };
                let size: u64 = req["file-size"].as_str().unwrap().parse().unwrap();
                let current: u64 = dev.disks[pos]["file-size"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                if size < current {
                    return error(
                        StatusCode::BAD_REQUEST,
                        Some("failure: file-size can not be reduced"),
                    );
                }
                dev.disks[pos].insert("file-size".into(), json!(size.to_string()));
                let name = dev.disks[pos]["file-path"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('/')
                    .to_owned();
                if let Some(f) = dev.files.iter_mut().find(|f| f["name"] == name.as_str()) {
                    f.insert("size".into(), json!(size.to_string()));
                }
                axum::Json(Value::Object(dev.disks[pos].clone())).into_response()
            }
            (Method::DELETE, [collection @ ("disk" | "file"), id]) => {
                let list = if *collection == "disk" {
                    &mut dev.disks
                } else {
                    &mut dev.files
                };
                let Some(pos) = list.iter().position(|d| d[".id"] == *id) else {
                    return error(StatusCode::NOT_FOUND, None);
                };
                list.remove(pos);
                StatusCode::NO_CONTENT.into_response()
            }
            _ => error(
                StatusCode::BAD_REQUEST,
                Some("no such command or directory"),
            ),
        }
    }
}
