//! The in-memory object store: JSON objects by resource, namespace and name; one global
//! resourceVersion counter (as etcd's revision); and the retained history of changes that
//! watches replay, with compaction.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{Value, json};

use crate::resource::Resource;
use crate::selector::Selector;
use crate::status::ApiError;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects. Ordered as the API
/// server lists: by namespace, then name.
pub type ObjKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One retained write, as watches replay it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub resource: String,
    pub kind: ChangeKind,
    pub object: Value,
    /// The object before a modification, so a filtered watch can tell an object entering or
    /// leaving its selection (ADDED / DELETED) from one changing within it.
    pub prev: Option<Value>,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

#[derive(Debug)]
pub struct Store {
    resources: Vec<Resource>,
    objects: HashMap<String, BTreeMap<ObjKey, Value>>,
    rv: u64,
    history: VecDeque<Change>,
    history_limit: usize,
    /// Watches and continue tokens from a resourceVersion below this are 410 Gone.
    compacted: u64,
}

pub fn resource_key(res: &Resource) -> String {
    format!("{}/{}", res.group, res.plural)
}

pub fn obj_key(obj: &Value) -> ObjKey {
    let field = |f: &str| obj["metadata"][f].as_str().unwrap_or_default().to_owned();
    (field("namespace"), field("name"))
}

pub fn rv_of(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
}

impl Store {
    pub fn new(resources: Vec<Resource>) -> Self {
        Store {
            resources,
            objects: HashMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_limit: 10_000,
            compacted: 0,
        }
    }

    pub fn register(&mut self, res: Resource) {
        self.resources
            .retain(|r| !(r.group == res.group && r.plural == res.plural));
        self.resources.push(res);
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn resource_by_kind(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
    }

    pub fn is_namespaced_plural(&self, group: &str, version: &str, plural: &str) -> bool {
        self.resource(group, version, plural)
            .is_some_and(|r| r.namespaced)
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn get(&self, res: &Resource, key: &ObjKey) -> Option<&Value> {
        self.objects.get(&resource_key(res))?.get(key)
    }

    /// Stores `obj` (its metadata already set) and records the change.
    pub fn put(&mut self, res: &Resource, obj: Value, prev: Option<Value>) {
        let kind = if prev.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        let rv = rv_of(&obj).unwrap_or(self.rv);
        self.objects
            .entry(resource_key(res))
            .or_default()
            .insert(obj_key(&obj), obj.clone());
        self.record(Change {
            rv,
            resource: resource_key(res),
            kind,
            object: obj,
            prev,
        });
    }

    /// Removes the object and records its deletion at a new resourceVersion, which the
    /// returned object (as the DELETED event's) carries.
    pub fn remove(&mut self, res: &Resource, key: &ObjKey) -> Option<Value> {
        let mut obj = self.objects.get_mut(&resource_key(res))?.remove(key)?;
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(Change {
            rv,
            resource: resource_key(res),
            kind: ChangeKind::Deleted,
            object: obj.clone(),
            prev: None,
        });
        Some(obj)
    }

    fn record(&mut self, change: Change) {
        self.history.push_back(change);
        self.trim();
    }

    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit;
        self.trim();
    }

    /// Drops the oldest changes past the limit; a watch from before them is then too old.
    fn trim(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// Forgets all history, as if etcd compacted past every revision a client has seen: the
    /// revision moves on (other writes in a real cluster would move it) and every watch or
    /// continue token from before it is 410 Gone.
    pub fn compact(&mut self) {
        self.next_rv();
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Changes after `rv` of one resource, or 410 when part of them is no longer retained.
    pub fn changes_since(&self, resource: &str, rv: u64) -> Result<Vec<Change>, ApiError> {
        if rv < self.compacted {
            return Err(too_old(rv, self.compacted));
        }
        Ok(self
            .history
            .iter()
            .filter(|c| c.rv > rv && c.resource == resource)
            .cloned()
            .collect())
    }

    /// The objects of one resource in one namespace (`None`: all), in list order.
    pub fn objects(&self, res: &Resource, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .get(&resource_key(res))
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        selector: &Selector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Page, ApiError> {
        let (rv, after) = match continue_token {
            Some(token) => {
                let (rv, after) = decode_continue(token)?;
                if rv < self.compacted {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some(after))
            }
            None => (self.rv, None),
        };
        let mut matching = self
            .objects
            .get(&resource_key(res))
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| ns.is_none_or(|ns| ns == k.0))
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
            .filter(|(_, v)| selector.matches(v))
            .map(|(k, v)| (k.clone(), v.clone()));
        let mut items = Vec::new();
        let mut last = None;
        for (key, obj) in matching.by_ref() {
            if limit.is_some_and(|l| items.len() >= l) {
                last = Some(key);
                break;
            }
            items.push(obj);
        }
        let (continue_token, remaining) = match last {
            Some(_) => {
                let resume = obj_key(items.last().expect("a full page"));
                (Some(encode_continue(rv, &resume)), 1 + matching.count())
            }
            None => (None, 0),
        };
        Ok(Page {
            items,
            rv,
            continue_token,
            remaining,
        })
    }
}

pub fn too_old(rv: u64, compacted: u64) -> ApiError {
    ApiError::expired(format!("too old resource version: {rv} ({compacted})"))
}

/// Continue tokens are opaque to clients: hex of `rv/namespace/name` of the last item sent.
fn encode_continue(rv: u64, (ns, name): &ObjKey) -> String {
    format!("{rv}/{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(u64, ObjKey), ApiError> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion")
    };
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let text = String::from_utf8(bytes.ok_or_else(bad)?).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '/');
    let rv = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
    let ns = parts.next().ok_or_else(bad)?.to_owned();
    let name = parts.next().ok_or_else(bad)?.to_owned();
    Ok((rv, (ns, name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let key = ("ns".to_owned(), "a/b".to_owned());
        assert_eq!(
            decode_continue(&encode_continue(7, &key)).unwrap(),
            (7, key)
        );
        assert_eq!(decode_continue("zz").unwrap_err().code, 400);
    }
}
