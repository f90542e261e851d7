//! Parsing what the device answers: SSH script output and REST JSON, into the typed model.
//!
//! Both transports carry the same objects (CLI property names plus `.id`); they differ in
//! value types (REST sends every value as a string, `:serialize` sends numbers, sometimes as
//! floats, and booleans). The field readers here accept all of those forms.

use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::error::{Error, device_text_error, truncate};
use crate::model::{
    AddReport, DiskItem, FileDisk, FileEntry, ImageRemoval, ImageUser, NqnSource, Pool, SystemInfo,
    VolumeFacts,
};
use crate::version::RouterOsVersion;

mod listing;
pub use listing::ListingReader;

pub type Object = Map<String, Value>;

/// The result of one SSH exec, as received.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_status: Option<u32>,
}

/// Turns raw exec output into the JSON values it carries, or the device's error.
///
/// The terminal wraps long lines with CRLF, even inside JSON strings, and `:serialize` never
/// emits a raw line break, so every CR and LF is dropped before parsing. What follows the last
/// JSON value is RouterOS error text (a failing statement aborts the rest of the script).
/// A non-zero exit status is a failure even without text.
pub fn script_values(output: &ExecOutput) -> Result<Vec<Value>, Error> {
    let text = dewrap(&output.stdout)?;
    let (values, rest) = split_json_stream(&text);
    let rest = rest.trim();
    if !rest.is_empty() {
        return Err(device_text_error(rest));
    }
    check_exit_status(output.exit_status, &output.stderr)?;
    Ok(values)
}

/// A non-zero exit status is a failure, classified by its stderr when that is device text.
fn check_exit_status(exit_status: Option<u32>, stderr: &[u8]) -> Result<(), Error> {
    match exit_status {
        Some(0) | None => Ok(()),
        Some(status) => {
            let stderr = String::from_utf8_lossy(stderr);
            let stderr = stderr.trim();
            if let Some(error) = crate::error::classify_device_text(stderr) {
                return Err(error);
            }
            Err(Error::Invalid(format!(
                "command failed with exit status {status}{}{}",
                if stderr.is_empty() { "" } else { ": " },
                truncate(stderr, 512)
            )))
        }
    }
}

/// The file disks of a one-value listing script: what [`expect_values`] of one value and
/// [`file_disks_lenient`] make of `output`, read one item at a time. A listing of thousands
/// of disks then never exists as a JSON tree, only as its text (unwrapped in place) and
/// the disks read from it.
pub fn file_disks_listing(output: ExecOutput) -> Result<Vec<FileDisk>, Error> {
    let ExecOutput {
        mut stdout,
        stderr,
        exit_status,
    } = output;
    stdout.retain(|b| !matches!(b, b'\r' | b'\n'));
    let text =
        String::from_utf8(stdout).map_err(|_| Error::Protocol("reply is not UTF-8".into()))?;
    let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<Listing>();
    let mut listings = Vec::new();
    let mut consumed = 0;
    while let Some(Ok(listing)) = stream.next() {
        listings.push(listing);
        consumed = stream.byte_offset();
    }
    let rest = text[consumed..].trim();
    if !rest.is_empty() {
        return Err(device_text_error(rest));
    }
    check_exit_status(exit_status, &stderr)?;
    match listings.len() {
        0 => Ok(Vec::new()),
        1 => listings.pop().expect("one listing").result,
        n => Err(Error::Protocol(format!(
            "expected 1 JSON value(s) in the reply, got {n}"
        ))),
    }
}

/// One JSON value read as [`items`] and [`file_disks_lenient`] read it.
struct Listing {
    result: Result<Vec<FileDisk>, Error>,
}

impl Listing {
    fn not_a_list(value: Value) -> Self {
        Self {
            result: Err(Error::Protocol(format!(
                "expected a list of objects, got {value}"
            ))),
        }
    }
}

/// A listing item: a file disk, or skipped (another kind of disk, or one the driver cannot
/// read, with a warning).
fn lenient_disk(obj: &Object) -> Option<FileDisk> {
    match disk_item(obj) {
        Ok(DiskItem::File(disk)) => Some(disk),
        Ok(DiskItem::Other { .. }) => None,
        Err(error) => {
            let slot = opt_str(obj, "slot").unwrap_or_default();
            tracing::warn!(%slot, %error, "skipping a disk the driver cannot read");
            None
        }
    }
}

impl<'de> serde::Deserialize<'de> for Listing {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListingVisitor)
    }
}

struct ListingVisitor;

impl<'de> serde::de::Visitor<'de> for ListingVisitor {
    type Value = Listing;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Listing, A::Error> {
        let mut disks = Vec::new();
        let mut error = None;
        while let Some(item) = seq.next_element::<Value>()? {
            match item {
                Value::Object(obj) => disks.extend(lenient_disk(&obj)),
                other => {
                    error.get_or_insert_with(|| {
                        Error::Protocol(format!("expected an object in the list, got {other}"))
                    });
                }
            }
        }
        Ok(Listing {
            result: error.map_or(Ok(disks), Err),
        })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Listing, A::Error> {
        let obj = Object::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Listing {
            result: Ok(lenient_disk_object(obj)),
        })
    }

    fn visit_unit<E>(self) -> Result<Listing, E> {
        Ok(Listing {
            result: Ok(Vec::new()),
        })
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Listing, E> {
        self.visit_unit()
    }

    fn visit_bool<E>(self, v: bool) -> Result<Listing, E> {
        Ok(Listing::not_a_list(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Listing, E> {
        Ok(Listing::not_a_list(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Listing, E> {
        Ok(Listing::not_a_list(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Listing, E> {
        Ok(Listing::not_a_list(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Listing, E> {
        Ok(Listing::not_a_list(Value::from(v)))
    }
}

/// One object as a listing: `{}` is none, anything else one item.
fn lenient_disk_object(obj: Object) -> Vec<FileDisk> {
    if obj.is_empty() {
        Vec::new()
    } else {
        lenient_disk(&obj).into_iter().collect()
    }
}

/// Exec output that must carry exactly `n` JSON values (zero for writes without read-back).
/// A read that printed nothing at all counts as an empty result.
pub fn expect_values(output: &ExecOutput, n: usize) -> Result<Vec<Value>, Error> {
    let mut values = script_values(output)?;
    if values.is_empty() && n == 1 {
        values.push(Value::Array(Vec::new()));
    }
    if values.len() != n {
        return Err(Error::Protocol(format!(
            "expected {n} JSON value(s) in the reply, got {}",
            values.len()
        )));
    }
    Ok(values)
}

fn dewrap(stdout: &[u8]) -> Result<String, Error> {
    let bytes: Vec<u8> = stdout
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    String::from_utf8(bytes).map_err(|_| Error::Protocol("reply is not UTF-8".into()))
}

/// Splits `text` into the leading run of JSON values and whatever text follows them.
fn split_json_stream(text: &str) -> (Vec<Value>, &str) {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut values = Vec::new();
    let mut consumed = 0;
    while let Some(Ok(value)) = stream.next() {
        values.push(value);
        consumed = stream.byte_offset();
    }
    (values, &text[consumed..])
}

/// The items of a `print as-value` reply: an array of objects, one object, or nothing
/// (`[]`, `{}`, `null`).
pub fn items(value: Value) -> Result<Vec<Object>, Error> {
    match value {
        Value::Array(list) => list
            .into_iter()
            .map(|v| match v {
                Value::Object(o) => Ok(o),
                other => Err(Error::Protocol(format!(
                    "expected an object in the list, got {other}"
                ))),
            })
            .collect(),
        Value::Object(o) if o.is_empty() => Ok(Vec::new()),
        Value::Object(o) => Ok(vec![o]),
        Value::Null => Ok(Vec::new()),
        other => Err(Error::Protocol(format!(
            "expected a list of objects, got {other}"
        ))),
    }
}

/// At most one item; more means the device's filter did not do what we asked.
pub fn at_most_one(value: Value, what: &str) -> Result<Option<Object>, Error> {
    let mut list = items(value)?;
    if list.len() > 1 {
        return Err(Error::Protocol(format!(
            "{} items match {what}, expected at most one",
            list.len()
        )));
    }
    Ok(list.pop())
}

/// A settings menu (`/system resource`): one object, possibly wrapped in a one-element list.
pub fn single_object(value: Value, what: &str) -> Result<Object, Error> {
    match value {
        Value::Object(o) => Ok(o),
        Value::Array(mut list) if list.len() == 1 => match list.pop() {
            Some(Value::Object(o)) => Ok(o),
            _ => Err(Error::Protocol(format!("{what}: expected an object"))),
        },
        other => Err(Error::Protocol(format!(
            "{what}: expected an object, got {other}"
        ))),
    }
}

fn missing(obj: &Object, key: &str) -> Error {
    let id = obj.get(".id").and_then(Value::as_str).unwrap_or("?");
    Error::Protocol(format!("reply item {id} lacks `{key}`"))
}

fn bad_value(key: &str, value: &Value, expected: &str) -> Error {
    Error::Protocol(format!("`{key}` is {value}, expected {expected}"))
}

/// A string field; numbers and booleans are accepted in their text form.
pub fn opt_str(obj: &Object, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn req_str(obj: &Object, key: &str) -> Result<String, Error> {
    opt_str(obj, key).ok_or_else(|| missing(obj, key))
}

/// Largest integer an f64 holds exactly; byte counts beyond it would be silently rounded.
const MAX_EXACT_F64: f64 = 9_007_199_254_740_992.0;

fn u64_from_f64(f: f64) -> Option<u64> {
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= MAX_EXACT_F64).then_some(f as u64)
}

/// An unsigned integer given as a JSON integer, an integral float (`1073741824.000000`) or a
/// decimal string of either.
pub fn opt_u64(obj: &Object, key: &str) -> Result<Option<u64>, Error> {
    let Some(value) = obj.get(key) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(u64_from_f64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(u64_from_f64))
        }
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| bad_value(key, value, "an unsigned integer"))
}

pub fn req_u64(obj: &Object, key: &str) -> Result<u64, Error> {
    opt_u64(obj, key)?.ok_or_else(|| missing(obj, key))
}

/// A boolean given as JSON `true`/`false` or the strings `true`/`false`/`yes`/`no`.
pub fn opt_bool(obj: &Object, key: &str) -> Result<Option<bool>, Error> {
    let Some(value) = obj.get(key) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "true" | "yes" => Some(true),
            "false" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| bad_value(key, value, "a boolean"))
}

pub fn req_bool(obj: &Object, key: &str) -> Result<bool, Error> {
    opt_bool(obj, key)?.ok_or_else(|| missing(obj, key))
}

/// A file disk from a `/disk` object. Other disk types are refused (the slot is taken by
/// something we do not manage).
pub fn file_disk(obj: &Object) -> Result<FileDisk, Error> {
    let slot = req_str(obj, "slot")?;
    let kind = req_str(obj, "type")?;
    if kind != "file" {
        return Err(Error::Invalid(format!(
            "disk {slot} is of type {kind}, not a file disk"
        )));
    }
    let port = req_u64(obj, "nvme-tcp-server-port")?;
    let nvme_tcp_port = u16::try_from(port)
        .map_err(|_| Error::Protocol(format!("disk {slot}: port {port} out of range")))?;
    let (nqn, nqn_source) = match opt_str(obj, "nvme-tcp-server-nqn").filter(|n| !n.is_empty()) {
        Some(nqn) => (nqn, NqnSource::ServerNqn),
        None => (slot.clone(), NqnSource::SlotName),
    };
    let file_path = req_str(obj, "file-path")?;
    Ok(FileDisk {
        id: req_str(obj, ".id")?,
        file_path: file_path.strip_prefix('/').unwrap_or(&file_path).to_owned(),
        file_size: req_u64(obj, "file-size")?,
        nvme_tcp_export: req_bool(obj, "nvme-tcp-export")?,
        nvme_tcp_port,
        nqn,
        nqn_source,
        // RouterOS defaults this to yes, so absence means yes.
        mount_filesystem: opt_bool(obj, "mount-filesystem")?.unwrap_or(true),
        comment: opt_str(obj, "comment").filter(|c| !c.is_empty()),
        allowed_hosts: crate::access::AllowedHosts::parse(
            &opt_str(obj, "nvme-tcp-server-allow-host-name").unwrap_or_default(),
        ),
        slot,
    })
}

/// A file disk's export access (`nvme-tcp-server-allow-host-name`, absent = empty).
pub fn export_access(obj: &Object) -> Result<crate::access::ExportAccess, Error> {
    let disk = file_disk(obj)?;
    Ok(crate::access::ExportAccess {
        id: disk.id,
        slot: disk.slot,
        value: opt_str(obj, "nvme-tcp-server-allow-host-name").unwrap_or_default(),
    })
}

/// Whatever holds a slot: a file disk (parsed strictly) or another kind of disk.
pub fn disk_item(obj: &Object) -> Result<DiskItem, Error> {
    let kind = opt_str(obj, "type").unwrap_or_default();
    if kind == "file" {
        return file_disk(obj).map(DiskItem::File);
    }
    Ok(DiskItem::Other {
        id: req_str(obj, ".id")?,
        slot: opt_str(obj, "slot").unwrap_or_default(),
        kind: if kind.is_empty() {
            "unknown".into()
        } else {
            kind
        },
    })
}

/// The file disks of a listing. An item that cannot be read as one (another kind of disk, or a
/// file disk missing fields we need) is skipped with a warning: one odd disk on the device must
/// not make every listing fail.
pub fn file_disks_lenient(value: Value) -> Result<Vec<FileDisk>, Error> {
    Ok(items(value)?.iter().filter_map(lenient_disk).collect())
}

/// A disk as a user of an image: id and file path are required, so that no user is ever
/// overlooked because some other field was missing.
pub fn image_user(obj: &Object) -> Result<ImageUser, Error> {
    let file_path = req_str(obj, "file-path")?;
    Ok(ImageUser {
        id: req_str(obj, ".id")?,
        slot: opt_str(obj, "slot").unwrap_or_default(),
        file_path: file_path.strip_prefix('/').unwrap_or(&file_path).to_owned(),
    })
}

/// The outcome of [`crate::command::remove_unused_image`] (possibly after a disk removal): no
/// value when the image went (or was absent), the in-use marker when it was kept.
pub fn image_removal(values: Vec<Value>) -> Result<ImageRemoval, Error> {
    match values.as_slice() {
        [] => Ok(ImageRemoval::Removed),
        [Value::String(marker)] if marker == crate::command::IMAGE_IN_USE => {
            Ok(ImageRemoval::InUse)
        }
        other => Err(Error::Protocol(format!(
            "image removal: unexpected reply {other:?}"
        ))),
    }
}

/// The ids of a `find` (an array of ids, one id, or nothing).
pub(crate) fn ids(value: Value, what: &str) -> Result<Vec<String>, Error> {
    let list = match value {
        Value::Array(list) => list,
        Value::Null => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        other => vec![other],
    };
    list.into_iter()
        .map(|v| match v {
            Value::String(id) => Ok(id),
            other => Err(Error::Protocol(format!(
                "{what}: expected ids, got {other}"
            ))),
        })
        .collect()
}

/// The values of a guarded add (see [`crate::command::create_disk`]): three without an add,
/// four with one. An add that happened although the slot or the file was taken, or that did not
/// happen although both were free, is a reply we do not understand.
pub fn add_report(values: Vec<Value>) -> Result<AddReport, Error> {
    let count = values.len();
    let mut values = values.into_iter();
    let (Some(slot), Some(files)) = (values.next(), values.next()) else {
        return Err(Error::Protocol(format!(
            "guarded add: expected 3 or 4 JSON values, got {count}"
        )));
    };
    let slot_before = ids(slot, "slot look-up")?;
    let files_before = ids(files, "file look-up")?;
    let (added, after) = match (values.next(), values.next(), values.next()) {
        (Some(after), None, None) => (None, after),
        (Some(Value::String(id)), Some(after), None) => (Some(id), after),
        _ => {
            return Err(Error::Protocol(format!(
                "guarded add: expected 3 or 4 JSON values of the right kinds, got {count}"
            )));
        }
    };
    let free = slot_before.is_empty() && files_before.is_empty();
    if free != added.is_some() {
        return Err(Error::Protocol(format!(
            "guarded add: slot holders {slot_before:?}, files {files_before:?}, added {added:?}"
        )));
    }
    let slot_after = items(after)?
        .iter()
        .map(disk_item)
        .collect::<Result<_, _>>()?;
    Ok(AddReport {
        slot_before,
        files_before,
        added,
        slot_after,
    })
}

/// The three values of [`crate::command::volume_facts`]. Image users are kept only when
/// their image is exactly one of the images found, or carries the slot's image name.
pub fn volume_facts(values: Vec<Value>, image_name: &str) -> Result<VolumeFacts, Error> {
    let [slot, files, users]: [Value; 3] = values.try_into().map_err(|v: Vec<Value>| {
        Error::Protocol(format!(
            "volume facts: expected 3 JSON values, got {}",
            v.len()
        ))
    })?;
    let slot_items = items(slot)?
        .iter()
        .map(disk_item)
        .collect::<Result<_, _>>()?;
    let images: Vec<FileEntry> = items(files)?
        .iter()
        .map(file_entry)
        .collect::<Result<_, _>>()?;
    let named = |path: &str| path == image_name || path.ends_with(&format!("/{image_name}"));
    let image_users = items(users)?
        .iter()
        .map(image_user)
        .filter(|user| user.as_ref().map_or(true, |u| named(&u.file_path)))
        .collect::<Result<_, _>>()?;
    Ok(VolumeFacts {
        slot_items,
        images: images.into_iter().filter(|f| named(&f.name)).collect(),
        image_users,
    })
}

pub fn file_entry(obj: &Object) -> Result<FileEntry, Error> {
    let name = req_str(obj, "name")?;
    Ok(FileEntry {
        id: req_str(obj, ".id")?,
        name: name.strip_prefix('/').unwrap_or(&name).to_owned(),
        kind: opt_str(obj, "type").unwrap_or_default(),
        size: opt_u64(obj, "size")?.unwrap_or(0),
        last_modified: opt_str(obj, "last-modified"),
    })
}

pub fn pool(obj: &Object) -> Result<Pool, Error> {
    Ok(Pool {
        slot: req_str(obj, "slot")?,
        mount_point: req_str(obj, "mount-point")?,
        fs: opt_str(obj, "fs").unwrap_or_default(),
        size: req_u64(obj, "size")?,
        free: req_u64(obj, "free")?,
        mounted: opt_bool(obj, "mounted")?.unwrap_or(false),
        state: opt_str(obj, "state").filter(|s| !s.is_empty()),
    })
}

pub fn system_info(resource: &Object, identity: &Object) -> Result<SystemInfo, Error> {
    let version_text = req_str(resource, "version")?;
    Ok(SystemInfo {
        version: RouterOsVersion::parse(&version_text)?,
        version_text,
        identity: req_str(identity, "name")?,
        board_name: opt_str(resource, "board-name"),
        architecture: opt_str(resource, "architecture-name"),
        uptime: opt_str(resource, "uptime"),
        cpu_count: opt_u64(resource, "cpu-count")?,
        total_memory: opt_u64(resource, "total-memory")?,
        free_memory: opt_u64(resource, "free-memory")?,
    })
}

#[cfg(test)]
mod tests;
