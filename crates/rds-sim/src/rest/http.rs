//! The HTTP(S) shell: authentication, faults, the session cap, and the connection loop.

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
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{RestReply, RestRequest, handle, is_disk_add};
use crate::engine::Engine;
use crate::kill::{KillSwitch, KillableStream};
use crate::ssh::AuthPolicy;

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
    if faults.lose_reply {
        tracing::info!("fault: the request ran; its reply is lost");
        kill.kill();
        std::future::pending::<()>().await;
    }
    drop(permit);
    reply_response(reply)
}

/// Decodes `%XX` escapes (the `*` of ids may arrive escaped).
pub(super) fn percent_decode(text: &str) -> String {
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
pub(super) fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
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
