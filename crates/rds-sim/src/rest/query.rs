//! `POST .../print` with API queries, and `POST /rest/execute`.

use serde_json::{Map, Value as Json, json};

use super::items::{records, split_list, to_json};
use super::{Menu, RestReply};
use crate::device::Device;
use crate::error::CmdError;
use crate::records::{Record, matches_text};
use crate::script::{self, RunContext};

/// `POST /rest/<menu>/print` with `.proplist` and an API-style `.query`.
pub(super) fn print(device: &Device, menu: Menu, body: Option<&Json>) -> RestReply {
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

pub(super) fn compare(record: &Record, name: &str, value: &str) -> Option<std::cmp::Ordering> {
    let have = crate::units::parse_size(&record.get(name)?.raw())?;
    Some(have.cmp(&crate::units::parse_size(value)?))
}

/// `POST /rest/execute {"script": "..."}`: the script's output in `ret`;
/// script errors are part of the output (HTTP 200), as on RouterOS.
pub(super) fn execute(device: &mut Device, ctx: &RunContext, body: Option<&Json>) -> RestReply {
    let Some(text) = body.and_then(|b| b.get("script")).and_then(Json::as_str) else {
        return RestReply::bad_request(CmdError::MissingArguments("script".into()).to_string());
    };
    let mut lines = match script::parse(text, &device.env().version) {
        Ok(parsed) => {
            let out = script::run(&parsed, device, ctx);
            if out.cut_off {
                // What RouterOS's REST server answers when a command outlives its session.
                return RestReply::bad_request("Session closed");
            }
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
