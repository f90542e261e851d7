//! The REST API (`/rest/...`): the same device through RouterOS's
//! string-valued JSON. [`handle`] maps one request to one reply without
//! any I/O; [`serve`] is the HTTP(S) shell around it.

mod http;
mod items;
mod query;
#[cfg(test)]
mod tests;

use axum::http::{Method, StatusCode};
use serde_json::{Value as Json, json};

use crate::device::Device;
use crate::error::CmdError;
use crate::quirks::{Quirk, Quirks};
use crate::records::{ResourceInfo, clock_record, identity_record, matches_text, resource_record};
use crate::script::RunContext;
use crate::state::DISK_SLOT;

pub use http::{RestApp, serve};
use items::{add_disk, body_pairs, find, records, set_disk, split_list, to_json};
pub use query::query_matches;
use query::{execute, print};

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

    /// A command's refusal, worded as `quirks` make the device word it.
    fn refused(error: CmdError, quirks: Quirks) -> Self {
        match quirks.refusal(error) {
            error @ CmdError::NoSuchItem => Self::error(404, Some(&error.to_string())),
            error => Self::bad_request(error.to_string()),
        }
    }

    /// The item a command names does not exist: 404 without detail, or the one generic
    /// refusal under `generic-errors`.
    fn missing(quirks: Quirks) -> Self {
        if quirks.has(Quirk::GenericErrors) {
            Self::refused(CmdError::NoSuchItem, quirks)
        } else {
            Self::not_found()
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
    let quirks = device.env().quirks;
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
                (Menu::Disk, Some(slot)) => device
                    .disk_records_where(Some((DISK_SLOT, std::slice::from_ref(slot))), |_| true),
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
                return RestReply::missing(quirks);
            };
            match body_pairs(req.body.as_ref()) {
                Ok(pairs) => set_disk(device, id, &pairs),
                Err(reply) => reply,
            }
        }
        (&Method::DELETE, Some(menu), [_, item]) => {
            let Some(id) = find(device, menu, item).and_then(|r| r.id) else {
                return RestReply::missing(quirks);
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
                Err(e) => RestReply::refused(e, quirks),
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
                return RestReply::refused(CmdError::NoSuchItem, quirks);
            };
            let reply = match (menu, *command) {
                (Menu::Disk, "set") => set_disk(device, id, &pairs),
                (Menu::Disk, _) => device.remove_disk(id).map_or_else(
                    |e| RestReply::refused(e, quirks),
                    |()| RestReply::ok(json!([])),
                ),
                (Menu::File, "remove") => device.remove_file(id).map_or_else(
                    |e| RestReply::refused(e, quirks),
                    |()| RestReply::ok(json!([])),
                ),
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
        (&Method::GET, None, ["system", "clock"]) => {
            RestReply::ok(to_json(&clock_record(device.env().now), None))
        }
        (&Method::GET, None, ["system", "health"]) => RestReply::ok(Json::Array(
            crate::health::records(&ctx.health)
                .iter()
                .map(|r| to_json(r, None))
                .collect(),
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
        ["disk" | "file", ..]
            | ["system", "resource" | "identity" | "clock" | "health", ..]
            | ["execute"]
    )
}

fn no_such_command(command: &str) -> RestReply {
    RestReply::error(
        406,
        Some(&format!("no such command or directory ({command})")),
    )
}
