//! The write verbs' semantics: what create, replace, patch and delete check and which
//! metadata the server owns (resourceVersion, uid, creationTimestamp, generation,
//! deletionTimestamp), with the API server's status codes.

use serde_json::{Map, Value, json};

use crate::resource::Resource;
use crate::status::ApiError;
use crate::store::{ObjKey, Store};

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

/// DELETE preconditions (`DeleteOptions.preconditions`).
#[derive(Debug, Default, Clone)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Five characters from the alphabet the API server draws `generateName` suffixes from.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
}

/// Checks the body's kind and namespace against the request and fills what the URL implies.
fn check_body(res: &Resource, ns: Option<&str>, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ));
    };
    if let Some(kind) = map.get("kind").and_then(Value::as_str)
        && kind != res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the provided object ({kind}) does not match the resource ({})",
            res.kind
        )));
    }
    map.insert("kind".into(), json!(res.kind));
    map.insert("apiVersion".into(), json!(res.api_version()));
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    match (res.namespaced, ns) {
        (true, Some(ns)) => match meta.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => meta["namespace"] = json!(ns),
        },
        (true, None) => {
            return Err(ApiError::bad_request(
                "a namespace is required for this resource",
            ));
        }
        (false, _) => {
            if let Some(m) = meta.as_object_mut() {
                m.remove("namespace");
            }
        }
    }
    Ok(())
}

/// Everything but `metadata` and `status`: what `metadata.generation` counts changes of.
fn spec_part(obj: &Value) -> Map<String, Value> {
    let mut map = obj.as_object().cloned().unwrap_or_default();
    map.remove("metadata");
    map.remove("status");
    map
}

impl Store {
    /// POST: a new object; `from_api` drops a status the client may not set.
    pub fn create(
        &mut self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        from_api: bool,
    ) -> Result<Value, ApiError> {
        check_body(res, ns, &mut obj)?;
        let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{}", name_suffix()),
            _ => {
                return Err(ApiError::invalid(
                    res,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        if self
            .get(res, &(ns.unwrap_or_default().to_owned(), name.clone()))
            .is_some()
        {
            return Err(ApiError::already_exists(res, &name));
        }
        if from_api && res.status_subresource {
            obj.as_object_mut().map(|m| m.remove("status"));
        }
        let rv = self.next_rv();
        let meta = &mut obj["metadata"];
        meta["name"] = json!(name);
        meta["resourceVersion"] = json!(rv.to_string());
        meta["uid"] = json!(new_uid());
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
        }
        self.put(res, obj.clone(), None);
        Ok(obj)
    }

    /// PUT: replaces the object (or only its status), 409 on a stale resourceVersion.
    pub fn replace(
        &mut self,
        res: &Resource,
        key: &ObjKey,
        mut obj: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        let ns = (!key.0.is_empty()).then_some(key.0.as_str());
        check_body(res, ns, &mut obj)?;
        let current = self
            .get(res, key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, &key.1))?;
        match meta_str(&obj, "name") {
            Some(name) if name == key.1 => {}
            _ => {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
        }
        if let Some(rv) = meta_str(&obj, "resourceVersion").filter(|rv| !rv.is_empty())
            && Some(rv) != meta_str(&current, "resourceVersion")
        {
            return Err(ApiError::stale(res, &key.1));
        }
        if let Some(uid) = meta_str(&obj, "uid").filter(|u| !u.is_empty())
            && Some(uid) != meta_str(&current, "uid")
        {
            let why = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&current, "uid").unwrap_or_default()
            );
            return Err(ApiError::conflict(res, &key.1, &why));
        }
        let mut next = match part {
            Part::Status => {
                let mut next = current.clone();
                match obj.get("status") {
                    Some(status) if !status.is_null() => next["status"] = status.clone(),
                    _ => {
                        next.as_object_mut().map(|m| m.remove("status"));
                    }
                }
                next
            }
            Part::Main if res.status_subresource => {
                if let Some(m) = obj.as_object_mut() {
                    match current.get("status") {
                        Some(status) => m.insert("status".into(), status.clone()),
                        None => m.remove("status"),
                    };
                }
                obj
            }
            Part::Main => obj,
        };
        // The server owns these; a client's copy is ignored.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "resourceVersion",
        ] {
            match current["metadata"].get(field) {
                Some(v) => next["metadata"][field] = v.clone(),
                None => {
                    next["metadata"].as_object_mut().map(|m| m.remove(field));
                }
            }
        }
        if next == current {
            // A no-op write changes nothing, not even the resourceVersion, and sends no event.
            return Ok(current);
        }
        if spec_part(&next) != spec_part(&current) {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(0);
            next["metadata"]["generation"] = json!(generation + 1);
        }
        let rv = self.next_rv();
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        let finished = next["metadata"].get("deletionTimestamp").is_some()
            && next["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        self.put(res, next.clone(), Some(current));
        if finished {
            // The last finalizer is gone from an object being deleted.
            return Ok(self.remove(res, key).unwrap_or(next));
        }
        Ok(next)
    }

    /// PATCH: applies a merge or JSON patch to the stored object and replaces it; a
    /// resourceVersion the patch sets is a precondition, as on the real server.
    pub fn patch(
        &mut self,
        res: &Resource,
        key: &ObjKey,
        content_type: &str,
        body: &[u8],
        part: Part,
    ) -> Result<Value, ApiError> {
        let current = self
            .get(res, key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, &key.1))?;
        let mut next = current.clone();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/merge-patch+json" => {
                let patch: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                json_patch::merge(&mut next, &patch);
            }
            "application/json-patch+json" => {
                let patch: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                json_patch::patch(&mut next, &patch).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
            }
            other => {
                return Err(ApiError::for_code(
                    415,
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (kube-fake implements no {other})"
                    ),
                ));
            }
        }
        if meta_str(&next, "resourceVersion").is_none_or(str::is_empty) {
            next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        }
        self.replace(res, key, next, part)
    }

    /// DELETE: checks the preconditions; an object with finalizers only gets its
    /// deletionTimestamp (202), others go at once (200). Returns the code and the object.
    pub fn delete(
        &mut self,
        res: &Resource,
        key: &ObjKey,
        pre: &Preconditions,
    ) -> Result<(u16, Value), ApiError> {
        let current = self
            .get(res, key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, &key.1))?;
        if let Some(uid) = &pre.uid
            && Some(uid.as_str()) != meta_str(&current, "uid")
        {
            let why = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&current, "uid").unwrap_or_default()
            );
            return Err(ApiError::conflict(res, &key.1, &why));
        }
        if let Some(rv) = &pre.resource_version
            && Some(rv.as_str()) != meta_str(&current, "resourceVersion")
        {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(&current, "resourceVersion").unwrap_or_default()
            );
            return Err(ApiError::conflict(res, &key.1, &why));
        }
        let has_finalizers = current["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if !has_finalizers {
            let gone = self.remove(res, key).expect("checked above");
            return Ok((200, gone));
        }
        if current["metadata"].get("deletionTimestamp").is_some() {
            return Ok((202, current));
        }
        let mut next = current.clone();
        next["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        let rv = self.next_rv();
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.put(res, next.clone(), Some(current));
        Ok((202, next))
    }

    /// Test hook: stores an object as a client's create would, but keeps its status.
    pub fn insert(&mut self, res: &Resource, obj: Value) -> Result<Value, ApiError> {
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
        let ns = if res.namespaced {
            Some(ns.unwrap_or_else(|| "default".into()))
        } else {
            None
        };
        self.create(res, ns.as_deref(), obj, false)
    }
}

/// The key of an object named on a request's URL.
pub fn key_for(ns: Option<&str>, name: &str) -> ObjKey {
    (ns.unwrap_or_default().to_owned(), name.to_owned())
}
