//! A test double of the Kubernetes API server: in memory, speaking the REST and watch
//! protocol kube-rs speaks, so code under test runs its real `kube::Client`, `Api`, watchers,
//! reflectors and event recorder unchanged. For tests only: never a dependency of the product.
//!
//! No crate serves this (kube-rs offers only `tower-test` mock pairs, which script single
//! exchanges and cannot keep a watch), so this one is written here.
//!
//! What it implements:
//! - core `/api/v1/...` and group `/apis/{group}/{version}/...` paths, namespaced and
//!   cluster-scoped resources, lists across namespaces ([`resource::defaults`] lists the kinds;
//!   [`FakeApiServer::register`] adds more, e.g. custom resources);
//! - GET, LIST (`labelSelector`, `fieldSelector` on each kind's supported keys, `limit` and
//!   `continue`), POST (`generateName`), PUT (resourceVersion conflicts), PATCH (merge and JSON
//!   patch), DELETE (uid and resourceVersion preconditions, finalizers), DELETE of a
//!   collection, and the `/status` subresource, with the API server's codes and `Status` bodies;
//! - WATCH from a resourceVersion over the retained history, BOOKMARKs, `timeoutSeconds`,
//!   `sendInitialEvents`, and 410 Gone for a resourceVersion compacted away;
//! - test hooks: direct access to objects, fault injection, a request log, waiting for a
//!   condition without sleeping, compaction, and dropping or holding watches (a partition).
//!
//! What it does not: authentication, RBAC, admission, validation beyond names, defaulting,
//! server-side apply and strategic merge patch (415), `dryRun` (400), garbage collection,
//! controllers (no kubelet: pods are deleted at once, not gracefully), namespace existence
//! checks, and consistent snapshots for `continue` (later pages show later writes). Served over
//! plain HTTP on 127.0.0.1 only, so a kubeconfig needs no certificates.

mod http;
pub mod resource;
mod routing;
pub mod selector;
pub mod status;
mod store;
mod watch;
mod write;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch as notify;

pub use http::HttpServer;
pub use resource::Resource;
pub use status::ApiError;

use store::Store;
use write::{Preconditions, key_for};

/// The verbs a request can be, for fault injection and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// Matches every verb (for [`FakeApiServer::fail_next`]).
    Any,
}

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub verb: Option<Verb>,
}

#[derive(Debug)]
struct Fault {
    verb: Verb,
    path_prefix: String,
    code: u16,
}

/// Waiting for a condition took longer than its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeout;

impl std::fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("condition not met in time")
    }
}

impl std::error::Error for WaitTimeout {}

#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// Bumped on every write and every request: what waits and watches wake on.
    activity: notify::Sender<u64>,
    faults: Mutex<Vec<Fault>>,
    requests: Mutex<Vec<RequestRecord>>,
    bookmark_interval: Mutex<Duration>,
    /// Open watches end when its epoch moves on; new ones send nothing while it is held.
    watch_gate: notify::Sender<WatchGate>,
}

/// The state of the watch gate ([`FakeApiServer::hold_watches`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WatchGate {
    /// Holds outstanding; watches wait while it is above zero.
    pub(crate) held: u32,
    /// Bumped to end every open watch.
    pub(crate) epoch: u64,
}

/// Watches are held while this lives ([`FakeApiServer::hold_watches`]); dropping it
/// releases them.
#[must_use = "watches are released when the hold is dropped"]
#[derive(Debug)]
pub struct WatchHold {
    shared: Arc<Shared>,
}

impl Drop for WatchHold {
    fn drop(&mut self) {
        self.shared
            .watch_gate
            .send_modify(|g| g.held = g.held.saturating_sub(1));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the state from the others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn touch(&self) {
        self.activity.send_modify(|n| *n += 1);
    }

    pub(crate) fn bookmark_interval(&self) -> Duration {
        *lock(&self.bookmark_interval)
    }

    pub(crate) fn subscribe(&self) -> notify::Receiver<u64> {
        self.activity.subscribe()
    }

    pub(crate) fn watch_gate(&self) -> notify::Receiver<WatchGate> {
        self.watch_gate.subscribe()
    }

    pub(crate) fn log(&self, record: RequestRecord) {
        lock(&self.requests).push(record);
        self.touch();
    }

    /// The first armed fault matching the request, disarmed.
    pub(crate) fn take_fault(&self, verb: Verb, path: &str) -> Option<ApiError> {
        let mut faults = lock(&self.faults);
        let at = faults.iter().position(|f| {
            (f.verb == Verb::Any || f.verb == verb) && path.starts_with(&f.path_prefix)
        })?;
        let fault = faults.remove(at);
        Some(ApiError::for_code(
            fault.code,
            format!("injected failure ({} for {verb:?} {path})", fault.code),
        ))
    }
}

/// The fake API server. Cheap to clone; clones share one state.
#[derive(Debug, Clone)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

fn resource_of<K: kube::Resource<DynamicType = ()>>(store: &Store) -> Resource {
    let (group, version, plural) = (K::group(&()), K::version(&()), K::plural(&()));
    store
        .resource(&group, &version, &plural)
        .cloned()
        .unwrap_or_else(|| {
            panic!("kube-fake serves no {group}/{version} {plural}: register it first")
        })
}

fn typed<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a stored object of the kind asked for")
}

impl FakeApiServer {
    /// A server with the default kinds, no objects, and BOOKMARKs every second.
    pub fn new() -> Self {
        let (activity, _) = notify::channel(0);
        let (watch_gate, _) = notify::channel(WatchGate::default());
        FakeApiServer {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::new(resource::defaults())),
                activity,
                faults: Mutex::default(),
                requests: Mutex::default(),
                bookmark_interval: Mutex::new(Duration::from_secs(1)),
                watch_gate,
            }),
        }
    }

    /// A `kube::Client` calling this server in process (no sockets), default namespace
    /// `default`.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(routing::router(self.shared.clone()), "default")
    }

    /// Serves the same state over HTTP on 127.0.0.1 (an ephemeral port) until the returned
    /// handle is dropped; [`HttpServer::write_kubeconfig`] points a real binary at it.
    pub async fn serve_http(&self) -> std::io::Result<HttpServer> {
        HttpServer::start(routing::router(self.shared.clone())).await
    }

    /// Serves another kind (a custom resource, or one the defaults lack).
    pub fn register(&self, res: Resource) {
        self.shared.store().register(res);
    }

    /// How often open watches that allow bookmarks get one (real servers: about a minute).
    pub fn set_bookmark_interval(&self, every: Duration) {
        *lock(&self.shared.bookmark_interval) = every;
    }

    /// Keeps at most `limit` changes for watches to replay; older ones are compacted away.
    pub fn set_history_limit(&self, limit: usize) {
        self.shared.store().set_history_limit(limit);
        self.shared.touch();
    }

    /// Forgets all history: the resourceVersion moves on, open watches end with a 410 Gone
    /// ERROR event and every earlier resourceVersion or continue token is 410 Gone, so
    /// clients relist.
    pub fn compact(&self) {
        self.shared.store().compact();
        self.shared.touch();
    }

    /// Ends every open watch at once, as a dropped connection or an API server restart
    /// would; clients re-watch from the last resourceVersion they saw.
    pub fn drop_watches(&self) {
        self.shared.watch_gate.send_modify(|g| g.epoch += 1);
    }

    /// A partition between the server and its watchers: ends every open watch, and watches
    /// opened while the hold lives are answered but send nothing until it is dropped; then
    /// they start from the resourceVersion their client asked for (replaying what it missed,
    /// or 410 Gone if [`compact`](Self::compact) ran meanwhile). Other verbs are served.
    pub fn hold_watches(&self) -> WatchHold {
        self.shared.watch_gate.send_modify(|g| {
            g.held += 1;
            g.epoch += 1;
        });
        WatchHold {
            shared: self.shared.clone(),
        }
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().current_rv()
    }

    /// Stores an object as a create through the API would (server-set metadata, ADDED event),
    /// but keeps its status. Namespaced objects without a namespace go to `default`.
    pub fn insert<K>(&self, obj: &K) -> Result<K, ApiError>
    where
        K: kube::Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let value = serde_json::to_value(obj).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let stored = {
            let mut store = self.shared.store();
            let res = resource_of::<K>(&store);
            store.insert(&res, value)?
        };
        self.shared.touch();
        Ok(typed(stored))
    }

    /// Stores a JSON object of a registered kind (found by its `apiVersion` and `kind`).
    pub fn insert_json(&self, obj: Value) -> Result<Value, ApiError> {
        let stored = {
            let mut store = self.shared.store();
            let api_version = obj["apiVersion"].as_str().unwrap_or_default();
            let kind = obj["kind"].as_str().unwrap_or_default();
            let res = store
                .resource_by_kind(api_version, kind)
                .cloned()
                .ok_or_else(|| ApiError::bad_request(format!("no kind {kind} in {api_version}")))?;
            store.insert(&res, obj)?
        };
        self.shared.touch();
        Ok(stored)
    }

    /// One stored object; `namespace` is `None` for cluster-scoped kinds.
    pub fn get<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let store = self.shared.store();
        let res = resource_of::<K>(&store);
        store
            .get(&res, &key_for(namespace, name))
            .cloned()
            .map(typed)
    }

    /// The stored objects of a kind, in one namespace or (`None`) all, in list order.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let store = self.shared.store();
        let res = resource_of::<K>(&store);
        store
            .objects(&res, namespace)
            .into_iter()
            .map(typed)
            .collect()
    }

    /// Deletes an object as an unconditional DELETE would (finalizers still hold it).
    pub fn delete<K>(&self, namespace: Option<&str>, name: &str) -> Result<K, ApiError>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let deleted = {
            let mut store = self.shared.store();
            let res = resource_of::<K>(&store);
            store
                .delete(&res, &key_for(namespace, name), &Preconditions::default())?
                .1
        };
        self.shared.touch();
        Ok(typed(deleted))
    }

    /// Makes the next request of `verb` whose path starts with `path_prefix` fail with `code`
    /// (and the reason the API server gives it). Faults queue; each fires once.
    pub fn fail_next(&self, verb: Verb, path_prefix: &str, code: u16) {
        lock(&self.shared.faults).push(Fault {
            verb,
            path_prefix: path_prefix.to_owned(),
            code,
        });
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Waits until `cond` holds, checking it now and after every write or request, at most
    /// `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut cond: impl FnMut() -> bool,
    ) -> Result<(), WaitTimeout> {
        let mut activity = self.shared.subscribe();
        let wait = async {
            loop {
                activity.borrow_and_update();
                if cond() {
                    return;
                }
                if activity.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| WaitTimeout)
    }
}
