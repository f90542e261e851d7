//! WATCH: newline-delimited JSON events from a resourceVersion, replaying retained history,
//! with BOOKMARKs, held open until `timeoutSeconds` (a stream that closed at once would make
//! clients re-watch in a tight loop), and a 410 Gone ERROR event once the position is
//! compacted away.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Shared;
use crate::resource::Resource;
use crate::selector::Selector;
use crate::status::ApiError;
use crate::store::{Change, ChangeKind, resource_key, too_old};

/// What one watch sends.
struct Filter {
    res: Resource,
    ns: Option<String>,
    selector: Selector,
}

impl Filter {
    fn selects(&self, obj: &Value) -> bool {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.ns.as_deref().is_none_or(|want| want == ns) && self.selector.matches(obj)
    }

    /// The event a change is for this watch: an object moving into or out of the selection
    /// is ADDED or DELETED, as the API server reports it.
    fn event(&self, change: &Change) -> Option<Value> {
        let now = self.selects(&change.object);
        let kind = match change.kind {
            ChangeKind::Added if now => "ADDED",
            ChangeKind::Deleted if now => "DELETED",
            ChangeKind::Modified => {
                match (change.prev.as_ref().is_some_and(|p| self.selects(p)), now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
            _ => return None,
        };
        Some(json!({ "type": kind, "object": change.object }))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        json!({ "type": "BOOKMARK", "object": {
            "kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": metadata,
        }})
    }
}

fn line(event: &Value) -> Bytes {
    let mut text = event.to_string();
    text.push('\n');
    Bytes::from(text)
}

fn error_event(err: &ApiError) -> Value {
    json!({ "type": "ERROR", "object": err.to_status() })
}

/// Starts a watch: checks its parameters now (so bad ones get a plain error response) and
/// streams from a task that ends at the timeout, on a 410, or when the client goes away.
pub fn start(
    shared: Arc<Shared>,
    res: Resource,
    ns: Option<String>,
    selector: Selector,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let timeout = match params.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::bad_request("timeoutSeconds must be a number"))?,
        ),
        // Real servers pick 30 to 60 minutes.
        None => Duration::from_secs(1800),
    };
    let rv = match params.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
    };
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let initial_events = params.get("sendInitialEvents").is_some_and(|b| b == "true");
    let filter = Filter { res, ns, selector };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(stream(
        shared,
        filter,
        rv,
        initial_events,
        bookmarks,
        timeout,
        tx,
    ));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .expect("a valid response"))
}

async fn stream(
    shared: Arc<Shared>,
    filter: Filter,
    from: Option<u64>,
    initial_events: bool,
    bookmarks: bool,
    timeout: Duration,
    tx: mpsc::Sender<Bytes>,
) {
    let mut activity = shared.subscribe();
    let mut gate = shared.watch_gate();
    // A held watch is open but silent; released, it starts from where its client asked.
    tokio::select! {
        released = gate.wait_for(|g| g.held == 0) => if released.is_err() { return },
        _ = tx.closed() => return,
    }
    let epoch = gate.borrow_and_update().epoch;
    let key = resource_key(&filter.res);
    // Without a resourceVersion a watch starts with the current objects as ADDED events.
    let mut pos = match from {
        Some(rv) if !initial_events => rv,
        _ => {
            let (objects, rv) = {
                let store = shared.store();
                (
                    store.objects(&filter.res, filter.ns.as_deref()),
                    store.current_rv(),
                )
            };
            for obj in objects.iter().filter(|o| filter.selects(o)) {
                if tx
                    .send(line(&json!({"type": "ADDED", "object": obj})))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if initial_events && tx.send(line(&filter.bookmark(rv, true))).await.is_err() {
                return;
            }
            rv
        }
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let every = shared.bookmark_interval();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        activity.borrow_and_update();
        let (changes, latest) = {
            let store = shared.store();
            (store.changes_since(&key, pos), store.current_rv())
        };
        // Checked after the read: a write made after the watch was dropped or held is then
        // never sent on it.
        if gate.borrow_and_update().epoch != epoch {
            return;
        }
        let changes = match changes {
            Ok(changes) => changes,
            Err(gone) => {
                let _ = tx.send(line(&error_event(&gone))).await;
                return;
            }
        };
        for change in &changes {
            pos = change.rv;
            if let Some(event) = filter.event(change)
                && tx.send(line(&event)).await.is_err()
            {
                return;
            }
        }
        tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            changed = activity.changed() => if changed.is_err() { return },
            changed = gate.changed() => if changed.is_err() { return },
            _ = ticks.tick(), if bookmarks => {
                // Everything up to `latest` of this resource was sent above.
                pos = pos.max(latest);
                let compacted = shared.store().compacted();
                if compacted > pos {
                    let _ = tx.send(line(&error_event(&too_old(pos, compacted)))).await;
                    return;
                }
                if tx.send(line(&filter.bookmark(pos, false))).await.is_err() {
                    return;
                }
            }
        }
    }
}
