//! URL space and verbs: maps a request to a resource, a namespace and an object, logs it,
//! applies injected faults, and runs the verb.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::resource::Resource;
use crate::selector::Selector;
use crate::status::{ApiError, json_response};
use crate::store::Page;
use crate::write::{Part, Preconditions, key_for};
use crate::{RequestRecord, Shared, Verb, watch};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// What a path names.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Collection,
    Item(String),
    Status(String),
}

#[derive(Debug, Clone)]
struct Route {
    res: Resource,
    ns: Option<String>,
    target: Target,
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn parse_path(shared: &Shared, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found_path()),
    };
    let store = shared.store();
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if store.is_namespaced_plural(group, version, plural) =>
        {
            (
                Some((*ns).to_owned()),
                std::iter::once(plural)
                    .chain(tail)
                    .copied()
                    .collect::<Vec<_>>(),
            )
        }
        _ => (None, rest.to_vec()),
    };
    let res = rest
        .first()
        .and_then(|plural| store.resource(group, version, plural))
        .cloned()
        .ok_or_else(not_found_path)?;
    if res.namespaced && ns.is_none() && rest.len() > 1 {
        return Err(not_found_path());
    }
    let target = match rest.as_slice() {
        [_] => Target::Collection,
        [_, name] => Target::Item((*name).to_owned()),
        [_, name, "status"] if res.status_subresource => Target::Status((*name).to_owned()),
        _ => return Err(not_found_path()),
    };
    Ok(Route { res, ns, target })
}

fn verb_of(method: &Method, target: &Target, params: &HashMap<String, String>) -> Option<Verb> {
    let watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    Some(match (method.as_str(), target) {
        ("GET", Target::Collection) if watch => Verb::Watch,
        ("GET", Target::Collection) => Verb::List,
        ("GET", _) => Verb::Get,
        ("POST", Target::Collection) => Verb::Create,
        ("PUT", Target::Item(_) | Target::Status(_)) => Verb::Update,
        ("PATCH", Target::Item(_) | Target::Status(_)) => Verb::Patch,
        ("DELETE", Target::Item(_)) => Verb::Delete,
        ("DELETE", Target::Collection) => Verb::DeleteCollection,
        _ => return None,
    })
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: HashMap<String, String> =
        Query::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let path = uri.path().to_owned();
    let route = parse_path(&shared, &path);
    let verb = route
        .as_ref()
        .ok()
        .and_then(|r| verb_of(&method, &r.target, &params));
    shared.log(RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_owned(),
        verb,
    });
    if let Some(resp) = non_resource(&method, &path) {
        return resp;
    }
    let route = match route {
        Ok(route) => route,
        Err(e) => return e.into_response_value(),
    };
    let Some(verb) = verb else {
        return ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .into_response_value();
    };
    if params.contains_key("dryRun") {
        // Ignoring it would write for real; better a loud failure.
        return ApiError::bad_request("kube-fake implements no dryRun").into_response_value();
    }
    if let Some(fault) = shared.take_fault(verb, &path) {
        return fault.into_response_value();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let result = run(&shared, verb, &route, &params, &content_type, &body);
    match result {
        Ok(resp) => resp,
        Err(e) => e.into_response_value(),
    }
}

impl ApiError {
    fn into_response_value(self) -> Response {
        axum::response::IntoResponse::into_response(self)
    }
}

/// Version and health endpoints; discovery (`/api`, `/apis`) is not served since nothing
/// the driver calls asks for it.
fn non_resource(method: &Method, path: &str) -> Option<Response> {
    if method != Method::GET {
        return None;
    }
    match path {
        "/version" => Some(json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0+kube-fake",
                    "platform": "linux/amd64", "goVersion": "", "compiler": "",
                    "gitCommit": "", "gitTreeState": "clean", "buildDate": ""}),
        )),
        "/healthz" | "/livez" | "/readyz" => {
            Some(axum::response::IntoResponse::into_response("ok"))
        }
        _ => None,
    }
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })
}

fn run(
    shared: &Arc<Shared>,
    verb: Verb,
    route: &Route,
    params: &HashMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let res = &route.res;
    let ns = route.ns.as_deref();
    let part = if matches!(route.target, Target::Status(_)) {
        Part::Status
    } else {
        Part::Main
    };
    let key = match &route.target {
        Target::Item(name) | Target::Status(name) => key_for(ns, name),
        Target::Collection => key_for(ns, ""),
    };
    let selector = || {
        Selector::parse(
            res,
            params.get("labelSelector").map(String::as_str),
            params.get("fieldSelector").map(String::as_str),
        )
    };
    let ok = |code: StatusCode, v: &Value| Ok(json_response(code, v));
    let result = match verb {
        Verb::Get => {
            let store = shared.store();
            let obj = store
                .get(res, &key)
                .ok_or_else(|| ApiError::not_found(res, &key.1))?;
            return ok(StatusCode::OK, obj);
        }
        Verb::List => {
            let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
                Some(Ok(0)) | None => None,
                Some(Ok(l)) => Some(l),
                Some(Err(_)) => return Err(ApiError::bad_request("limit must be a number")),
            };
            let continue_token = params.get("continue").filter(|c| !c.is_empty());
            let page = shared.store().list(
                res,
                ns,
                &selector()?,
                limit,
                continue_token.map(String::as_str),
            )?;
            return ok(StatusCode::OK, &list_body(res, page));
        }
        Verb::Watch => {
            return watch::start(
                shared.clone(),
                res.clone(),
                route.ns.clone(),
                selector()?,
                params,
            );
        }
        Verb::Create => {
            let obj = parse_body(body)?;
            shared
                .store()
                .create(res, ns, obj, true)
                .map(|o| (StatusCode::CREATED, o))
        }
        Verb::Update => {
            let obj = parse_body(body)?;
            shared
                .store()
                .replace(res, &key, obj, part)
                .map(|o| (StatusCode::OK, o))
        }
        Verb::Patch => shared
            .store()
            .patch(res, &key, content_type, body, part)
            .map(|o| (StatusCode::OK, o)),
        Verb::Delete => {
            let pre = preconditions(body)?;
            shared
                .store()
                .delete(res, &key, &pre)
                .map(|(code, o)| (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), o))
        }
        Verb::DeleteCollection => {
            let sel = selector()?;
            let mut store = shared.store();
            let mut deleted = Vec::new();
            for obj in store
                .objects(res, ns)
                .into_iter()
                .filter(|o| sel.matches(o))
            {
                let key = crate::store::obj_key(&obj);
                deleted.push(store.delete(res, &key, &Preconditions::default())?.1);
            }
            let rv = store.current_rv();
            let page = Page {
                items: deleted,
                rv,
                continue_token: None,
                remaining: 0,
            };
            Ok((StatusCode::OK, list_body(res, page)))
        }
        Verb::Any => unreachable!("requests have a concrete verb"),
    };
    shared.touch();
    let (code, obj) = result?;
    ok(code, &obj)
}

/// `DeleteOptions.preconditions` from a DELETE body (which may be empty).
fn preconditions(body: &[u8]) -> Result<Preconditions, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Preconditions::default());
    }
    let opts = parse_body(body)?;
    let field = |f: &str| {
        opts.pointer(&format!("/preconditions/{f}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(Preconditions {
        uid: field("uid"),
        resource_version: field("resourceVersion"),
    })
}

/// A `{Kind}List`; items carry no `kind` or `apiVersion`, as the API server sends them.
fn list_body(res: &Resource, page: Page) -> Value {
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|mut o| {
            if let Some(m) = o.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    let mut metadata = json!({ "resourceVersion": page.rv.to_string() });
    if let Some(token) = page.continue_token {
        metadata["continue"] = json!(token);
        metadata["remainingItemCount"] = json!(page.remaining);
    }
    json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": metadata,
        "items": items,
    })
}
