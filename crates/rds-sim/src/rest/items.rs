//! Items as REST shows and takes them: lookups, string-valued JSON, typed arguments.

use serde_json::{Map, Value as Json};

use super::{Menu, RestReply};
use crate::args::{ArgsError, DiskVerb, disk_args};
use crate::device::Device;
use crate::records::{Record, parse_id};

pub(super) fn records(device: &Device, menu: Menu) -> Vec<Record> {
    match menu {
        Menu::Disk => device.disk_records(),
        Menu::File => device.file_records(),
    }
}

/// An item by `*ID`, or by name (disk slot, file name).
pub(super) fn find(device: &Device, menu: Menu, item: &str) -> Option<Record> {
    let id = match parse_id(item) {
        Some(id) => id,
        None => match menu {
            Menu::Disk => device.state().disk_by_slot(item)?.id,
            Menu::File => device.state().file_by_name(item)?.id,
        },
    };
    match menu {
        Menu::Disk => device.disk_record(id),
        Menu::File => device.file_record(id),
    }
}

/// A record as REST shows it: every value a string.
pub(super) fn to_json(record: &Record, proplist: Option<&[String]>) -> Json {
    let mut object = Map::new();
    for (key, value) in record.fields() {
        if proplist.is_none_or(|list| list.iter().any(|p| p == key)) {
            object.insert(key.to_string(), Json::String(value.raw()));
        }
    }
    Json::Object(object)
}

pub(super) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A JSON object body as `(name, text)` pairs: strings as they are, numbers
/// in decimal, booleans as `true`/`false`.
pub(super) fn body_pairs(body: Option<&Json>) -> Result<Vec<(String, String)>, RestReply> {
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

pub(super) fn typed_args(
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
        ArgsError::Invalid(e) => RestReply::refused(e, device.env().quirks),
    })
}

pub(super) fn add_disk(
    device: &mut Device,
    pairs: &[(String, String)],
) -> Result<Record, RestReply> {
    let args = typed_args(device, pairs, DiskVerb::Add)?;
    let id = device
        .add_disk(&args)
        .map_err(|e| RestReply::refused(e, device.env().quirks))?;
    find(device, Menu::Disk, &crate::records::format_id(id))
        .ok_or_else(|| RestReply::error(500, Some("created item vanished")))
}

pub(super) fn set_disk(device: &mut Device, id: u64, pairs: &[(String, String)]) -> RestReply {
    let args = match typed_args(device, pairs, DiskVerb::Set) {
        Ok(args) => args,
        Err(reply) => return reply,
    };
    match device.set_disk(id, &args) {
        Ok(()) => match find(device, Menu::Disk, &crate::records::format_id(id)) {
            Some(record) => RestReply::ok(to_json(&record, None)),
            None => RestReply::not_found(),
        },
        Err(e) => RestReply::refused(e, device.env().quirks),
    }
}
