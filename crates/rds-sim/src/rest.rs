//! The REST API (`/rest/...`): the same device through RouterOS's
//! string-valued JSON. [`handle`] maps one request to one reply without
//! any I/O; [`serve`] is the HTTP(S) shell around it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use base64::Engine as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::{Map, Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::args::{ArgsError, DiskVerb, disk_args};
use crate::device::Device;
use crate::engine::Engine;
use crate::error::CmdError;
use crate::kill::{KillSwitch, KillableStream};
use crate::records::{
    Record, ResourceInfo, identity_record, matches_text, parse_id, resource_record,
};
use crate::script::{self, RunContext};
use crate::ssh::AuthPolicy;

/// A REST request, decoded.
#[derive(Debug, Clone)]
pub struct RestRequest {
    pub method: Method,
    /// Path segments after `/rest`.
    pub path: Vec<String>,
    /// Query parameters, in order.
    pub query: Vec<(String, String)>,
    pub body: Option<Json>,
}

/// A REST reply: status and JSON body (none for 204).
#[derive(Debug, Clone, PartialEq)]
pub struct RestReply {
    pub status: u16,
    pub body: Option<Json>,
}

impl RestReply {
    fn ok(body: Json) -> Self {
        Self {
            status: 200,
            body: Some(body),
        }
    }

    /// A RouterOS-style error body.
    pub fn error(status: u16, detail: Option<&str>) -> Self {
        let message = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let mut body = json!({ "error": status, "message": message });
        if let Some(detail) = detail {
            body["detail"] = Json::String(detail.to_string());
        }
        Self {
            status,
            body: Some(body),
        }
    }

    fn not_found() -> Self {
        Self::error(404, None)
    }

    fn bad_request(detail: impl AsRef<str>) -> Self {
        Self::error(400, Some(detail.as_ref()))
    }

    fn from_cmd(error: &CmdError) -> Self {
        match error {
            CmdError::NoSuchItem => Self::error(404, Some(&error.to_string())),
            _ => Self::bad_request(error.to_string()),
        }
    }
}

/// Whether a request creates a disk (the slow-add fault applies).
pub fn is_disk_add(req: &RestRequest) -> bool {
    let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
    matches!(
        (&req.method, path.as_slice()),
        (&Method::PUT, ["disk"]) | (&Method::POST, ["disk", "add"])
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Menu {
    Disk,
    File,
}

/// Serves one request against the device.
pub fn handle(device: &mut Device, ctx: &RunContext, req: &RestRequest) -> RestReply {
    let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
    let menu = match path.first() {
        Some(&"disk") => Some(Menu::Disk),
        Some(&"file") => Some(Menu::File),
        _ => None,
    };
    match (&req.method, menu, path.as_slice()) {
        (&Method::GET, Some(menu), [_]) => {
            // Only disks in a slot the query names can match it; render just those.
            let slot = req.query.iter().find(|(k, _)| k == "slot").map(|(_, v)| v);
            let records = match (menu, slot) {
                (Menu::Disk, Some(slot)) => device.disk_records_in_slot(Some(slot)),
                _ => records(device, menu),
            };
            let proplist = req
                .query
                .iter()
                .find(|(k, _)| k == ".proplist")
                .map(|(_, v)| split_list(v));
            let filters: Vec<&(String, String)> = req
                .query
                .iter()
                .filter(|(k, _)| !k.starts_with('.'))
                .collect();
            let items = records
                .iter()
                .filter(|r| {
                    filters
                        .iter()
                        .all(|(k, v)| matches_text(k, r.get(k).as_ref(), v))
                })
                .map(|r| to_json(r, proplist.as_deref()))
                .collect();
            RestReply::ok(Json::Array(items))
        }
        (&Method::GET, Some(menu), [_, item]) => match find(device, menu, item) {
            Some(record) => RestReply::ok(to_json(&record, None)),
            None => RestReply::not_found(),
        },
        (&Method::PUT, Some(Menu::Disk), [_]) => match body_pairs(req.body.as_ref()) {
            Ok(pairs) => add_disk(device, &pairs).map_or_else(
                |e| e,
                |record| RestReply {
                    status: 201,
                    body: Some(to_json(&record, None)),
                },
            ),
            Err(reply) => reply,
        },
        (&Method::PATCH, Some(Menu::Disk), [_, item]) => {
            let Some(id) = find(device, Menu::Disk, item).and_then(|r| r.id) else {
                return RestReply::not_found();
            };
            match body_pairs(req.body.as_ref()) {
                Ok(pairs) => set_disk(device, id, &pairs),
                Err(reply) => reply,
            }
        }
        (&Method::DELETE, Some(menu), [_, item]) => {
            let Some(id) = find(device, menu, item).and_then(|r| r.id) else {
                return RestReply::not_found();
            };
            let result = match menu {
                Menu::Disk => device.remove_disk(id),
                Menu::File => device.remove_file(id),
            };
            match result {
                Ok(()) => RestReply {
                    status: 204,
                    body: None,
                },
                Err(e) => RestReply::from_cmd(&e),
            }
        }
        (&Method::POST, Some(menu), [_, "print"]) => print(device, menu, req.body.as_ref()),
        (&Method::POST, Some(Menu::Disk), [_, "add"]) => match body_pairs(req.body.as_ref()) {
            Ok(pairs) => match add_disk(device, &pairs) {
                Ok(record) => RestReply::ok(json!({ "ret": record.get(".id").map(|v| v.raw()) })),
                Err(reply) => reply,
            },
            Err(reply) => reply,
        },
        (&Method::POST, Some(menu), [_, command @ ("set" | "remove")]) => {
            let mut pairs = match body_pairs(req.body.as_ref()) {
                Ok(pairs) => pairs,
                Err(reply) => return reply,
            };
            let Some(index) = pairs.iter().position(|(k, _)| k == ".id") else {
                return RestReply::bad_request(
                    CmdError::MissingArguments("numbers".into()).to_string(),
                );
            };
            let (_, item) = pairs.remove(index);
            let Some(id) = find(device, menu, &item).and_then(|r| r.id) else {
                return RestReply::from_cmd(&CmdError::NoSuchItem);
            };
            let reply = match (menu, *command) {
                (Menu::Disk, "set") => set_disk(device, id, &pairs),
                (Menu::Disk, _) => device
                    .remove_disk(id)
                    .map_or_else(|e| RestReply::from_cmd(&e), |()| RestReply::ok(json!([]))),
                (Menu::File, "remove") => device
                    .remove_file(id)
                    .map_or_else(|e| RestReply::from_cmd(&e), |()| RestReply::ok(json!([]))),
                (Menu::File, _) => return no_such_command(command),
            };
            if reply.status == 200 && *command == "set" {
                RestReply::ok(json!([]))
            } else {
                reply
            }
        }
        (&Method::GET, None, ["system", "resource"]) => RestReply::ok(to_json(
            &resource_record(&ResourceInfo {
                version: device.env().version.clone(),
                uptime_seconds: ctx.uptime_seconds,
            }),
            None,
        )),
        (&Method::GET, None, ["system", "identity"]) => {
            RestReply::ok(to_json(&identity_record(device.state()), None))
        }
        (&Method::POST, None, ["execute"]) => execute(device, ctx, req.body.as_ref()),
        (_, _, [.., last]) if known_path(&path) => no_such_command(last),
        (_, _, [first, ..]) => {
            RestReply::bad_request(format!("no such command or directory ({first})"))
        }
        (_, _, []) => RestReply::bad_request("no such command or directory ()"),
    }
}

fn known_path(path: &[&str]) -> bool {
    matches!(
        path,
        ["disk" | "file", ..] | ["system", "resource" | "identity", ..] | ["execute"]
    )
}

fn no_such_command(command: &str) -> RestReply {
    RestReply::error(
        406,
        Some(&format!("no such command or directory ({command})")),
    )
}

fn records(device: &Device, menu: Menu) -> Vec<Record> {
    match menu {
        Menu::Disk => device.disk_records(),
        Menu::File => device.file_records(),
    }
}

/// An item by `*ID`, or by name (disk slot, file name).
fn find(device: &Device, menu: Menu, item: &str) -> Option<Record> {
    let id = match parse_id(item) {
        Some(id) => id,
        None => match menu {
            Menu::Disk => device.state().disk_by_slot(item)?.id,
            Menu::File => device.state().file_by_name(item)?.id,
        },
    };
    records(device, menu).into_iter().find(|r| r.id == Some(id))
}

/// A record as REST shows it: every value a string.
fn to_json(record: &Record, proplist: Option<&[String]>) -> Json {
    let mut object = Map::new();
    for (key, value) in record.fields() {
        if proplist.is_none_or(|list| list.iter().any(|p| p == key)) {
            object.insert(key.to_string(), Json::String(value.raw()));
        }
    }
    Json::Object(object)
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A JSON object body as `(name, text)` pairs: strings as they are, numbers
/// in decimal, booleans as `true`/`false`.
fn body_pairs(body: Option<&Json>) -> Result<Vec<(String, String)>, RestReply> {
    let Some(Json::Object(object)) = body else {
        return Err(RestReply::bad_request("JSON object expected"));
    };
    object
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Json::String(s) => s.clone(),
                Json::Number(n) => n.to_string(),
                Json::Bool(b) => b.to_string(),
                _ => {
                    return Err(RestReply::bad_request(format!(
                        "invalid value for argument {k}"
                    )));
                }
            };
            Ok((k.clone(), text))
        })
        .collect()
}

fn typed_args(
    device: &Device,
    pairs: &[(String, String)],
    verb: DiskVerb,
) -> Result<crate::state::DiskArgs, RestReply> {
    disk_args(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        verb,
        &device.env().version,
    )
    .map_err(|e| match e {
        ArgsError::Unknown(name) => RestReply::bad_request(format!("unknown parameter {name}")),
        ArgsError::Invalid(e) => RestReply::from_cmd(&e),
    })
}

fn add_disk(device: &mut Device, pairs: &[(String, String)]) -> Result<Record, RestReply> {
    let args = typed_args(device, pairs, DiskVerb::Add)?;
    let id = device
        .add_disk(&args)
        .map_err(|e| RestReply::from_cmd(&e))?;
    find(device, Menu::Disk, &crate::records::format_id(id))
        .ok_or_else(|| RestReply::error(500, Some("created item vanished")))
}

fn set_disk(device: &mut Device, id: u64, pairs: &[(String, String)]) -> RestReply {
    let args = match typed_args(device, pairs, DiskVerb::Set) {
        Ok(args) => args,
        Err(reply) => return reply,
    };
    match device.set_disk(id, &args) {
        Ok(()) => match find(device, Menu::Disk, &crate::records::format_id(id)) {
            Some(record) => RestReply::ok(to_json(&record, None)),
            None => RestReply::not_found(),
        },
        Err(e) => RestReply::from_cmd(&e),
    }
}

/// `POST /rest/<menu>/print` with `.proplist` and an API-style `.query`.
fn print(device: &Device, menu: Menu, body: Option<&Json>) -> RestReply {
    let empty = Map::new();
    let object = match body {
        None | Some(Json::Null) => &empty,
        Some(Json::Object(o)) => o,
        Some(_) => return RestReply::bad_request("JSON object expected"),
    };
    let list = |key: &str| -> Result<Option<Vec<String>>, RestReply> {
        match object.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(split_list(s))),
            Some(Json::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| RestReply::bad_request(format!("{key} must hold strings")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(RestReply::bad_request(format!("{key} must be a list"))),
        }
    };
    let (proplist, query) = match (list(".proplist"), list(".query")) {
        (Ok(p), Ok(q)) => (p, q.unwrap_or_default()),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let mut items = Vec::new();
    for record in records(device, menu) {
        match query_matches(&query, &record) {
            Ok(true) => items.push(to_json(&record, proplist.as_deref())),
            Ok(false) => {}
            Err(detail) => return RestReply::bad_request(detail),
        }
    }
    RestReply::ok(Json::Array(items))
}

/// Evaluates API query words on a record: `name=value`, `name<value`,
/// `name>value`, `name` (present), `-name` (absent), and the stack
/// operations `#&`, `#|`, `#!`; all remaining results must hold.
pub fn query_matches(query: &[String], record: &Record) -> Result<bool, String> {
    let mut stack: Vec<bool> = Vec::new();
    for word in query {
        let result = match word.as_str() {
            "#&" | "#|" => {
                let (Some(b), Some(a)) = (stack.pop(), stack.pop()) else {
                    return Err(format!("query stack underflow at {word}"));
                };
                if word == "#&" { a && b } else { a || b }
            }
            "#!" => !stack
                .pop()
                .ok_or_else(|| "query stack underflow at #!".to_string())?,
            _ => {
                if let Some((name, value)) = word.split_once('=') {
                    matches_text(name, record.get(name).as_ref(), value)
                } else if let Some((name, value)) = word.split_once('<') {
                    compare(record, name, value) == Some(std::cmp::Ordering::Less)
                } else if let Some((name, value)) = word.split_once('>') {
                    compare(record, name, value) == Some(std::cmp::Ordering::Greater)
                } else if let Some(name) = word.strip_prefix('-') {
                    record.get(name).is_none()
                } else {
                    record.get(word).is_some()
                }
            }
        };
        stack.push(result);
    }
    Ok(stack.into_iter().all(|b| b))
}

fn compare(record: &Record, name: &str, value: &str) -> Option<std::cmp::Ordering> {
    let have = crate::units::parse_size(&record.get(name)?.raw())?;
    Some(have.cmp(&crate::units::parse_size(value)?))
}

/// `POST /rest/execute {"script": "..."}`: the script's output in `ret`;
/// script errors are part of the output (HTTP 200), as on RouterOS.
fn execute(device: &mut Device, ctx: &RunContext, body: Option<&Json>) -> RestReply {
    let Some(text) = body.and_then(|b| b.get("script")).and_then(Json::as_str) else {
        return RestReply::bad_request(CmdError::MissingArguments("script".into()).to_string());
    };
    let mut lines = match script::parse(text, &device.env().version) {
        Ok(parsed) => {
            let out = script::run(&parsed, device, ctx);
            let mut lines = out.lines;
            lines.extend(out.error.map(|e| e.to_string()));
            lines
        }
        Err(e) => vec![e.to_string()],
    };
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let ret: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
    RestReply::ok(json!({ "ret": ret }))
}

/// What the HTTP layer needs.
pub struct RestApp {
    pub engine: Arc<Engine>,
    pub policy: Arc<AuthPolicy>,
}

fn reply_response(reply: RestReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match reply.body {
        Some(body) => (status, axum::Json(body)).into_response(),
        None => status.into_response(),
    }
}

impl RestApp {
    /// Basic auth with the SSH user and password (`user+opts` accepted).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        if self.policy.insecure_no_auth {
            return true;
        }
        let Some(encoded) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let text = String::from_utf8_lossy(&decoded);
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        self.policy.password_ok(user, password)
    }
}

async fn entry(
    State(app): State<Arc<RestApp>>,
    Extension(kill): Extension<Arc<KillSwitch>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !app.authorized(&headers) {
        let mut response = reply_response(RestReply::error(401, None));
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"RouterOS\""),
        );
        return response;
    }
    let Some(permit) = app.engine.admit() else {
        return reply_response(RestReply::error(503, Some("too many sessions")));
    };
    let Some(rest_path) = uri.path().strip_prefix("/rest") else {
        return reply_response(RestReply::not_found());
    };
    let body = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(json) => Some(json),
            Err(e) => {
                return reply_response(RestReply::bad_request(format!("JSON parse failure: {e}")));
            }
        }
    };
    let query = uri.query().map(form_urlencoded_pairs).unwrap_or_default();
    let req = RestRequest {
        method,
        path: rest_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect(),
        query,
        body,
    };

    let faults = app.engine.faults.begin_command();
    let delay = faults.latency
        + if is_disk_add(&req) {
            faults.slow_add
        } else {
            Duration::ZERO
        };
    let delay = crate::faults::InjectedDelay::begin(delay).await;
    if faults.drop || faults.fail.is_some() {
        // Answered without the device, so the rest of the delay is waited here.
        delay.finish().await;
    }
    if faults.drop {
        tracing::info!("fault: dropping the connection");
        kill.kill();
        std::future::pending::<()>().await;
    }
    if let Some(message) = faults.fail {
        return reply_response(RestReply::bad_request(message));
    }
    tracing::debug!(method = %req.method, path = %uri.path(), "rest request");
    let reply = app
        .engine
        .with_device(&faults, delay, move |device, ctx| handle(device, ctx, &req))
        .await;
    drop(permit);
    reply_response(reply)
}

/// Decodes `%XX` escapes (the `*` of ids may arrive escaped).
fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b&c=d` with `+` as space and `%XX` escapes.
fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Accepts HTTP(S) connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Arc<RestApp>,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = Router::new().fallback(entry).with_state(app);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "rest accept failed");
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let kill = Arc::new(KillSwitch::default());
                let stream = KillableStream::new(tcp, Arc::clone(&kill));
                let service = TowerToHyperService::new(router.clone().layer(Extension(Arc::clone(&kill))));
                let tls = tls.clone();
                connections.spawn(async move {
                    let serve = serve_connection(stream, tls, service, peer);
                    tokio::select! {
                        () = serve => {}
                        () = kill.killed() => {}
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

async fn serve_connection<S>(
    stream: KillableStream<tokio::net::TcpStream>,
    tls: Option<TlsAcceptor>,
    service: S,
    peer: SocketAddr,
) where
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let result = match tls {
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls_stream)) => {
                    builder
                        .serve_connection(TokioIo::new(tls_stream), service)
                        .await
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls handshake timed out");
                    return;
                }
            }
        }
        None => {
            builder
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "rest connection ended");
    }
}

#[cfg(test)]
mod tests {
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
        let body = json!({ ".proplist": ["slot", "file-size"], ".query": ["slot=pvc-2", "type=file", "#&"] });
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
}
