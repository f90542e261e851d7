//! `where`/`find` conditions and item references.

use regex::Regex;

use super::Interpreter;
use crate::error::CmdError;
use crate::records::{Record, Val, matches_text, parse_id};
use crate::script::ast::{CmpOp, Cond, Menu};
use crate::script::value::{Table, Value};
use crate::state::{BY_NAME, DISK_IMAGE, DISK_SLOT, Disk, DiskKind, FileEntry};
use crate::units::parse_size;

use super::literal::AnchoredLiteral;

/// A condition with its values evaluated.
enum Resolved {
    And(Box<Resolved>, Box<Resolved>),
    Or(Box<Resolved>, Box<Resolved>),
    Not(Box<Resolved>),
    Cmp {
        prop: String,
        op: CmpOp,
        text: String,
        regex: Option<Regex>,
        /// The regular expression as a plain comparison, when it is an anchored literal.
        literal: Option<AnchoredLiteral>,
    },
    Truthy(String),
}

impl Interpreter<'_> {
    pub(super) fn filtered(
        &mut self,
        menu: Menu,
        filter: Option<&Cond>,
    ) -> Result<Vec<Record>, CmdError> {
        let mut records = Vec::new();
        self.each_filtered(menu, filter, |record| records.push(record))?;
        Ok(records)
    }

    /// Hands `each` the records of `menu` that meet `filter`, in id order, each rendered only
    /// when its turn comes: a listing of every disk never holds every record at once.
    pub(super) fn each_filtered(
        &mut self,
        menu: Menu,
        filter: Option<&Cond>,
        mut each: impl FnMut(Record),
    ) -> Result<(), CmdError> {
        let resolved = filter.map(|cond| self.resolve(cond)).transpose()?;
        let keep = |record: Record| {
            if resolved.as_ref().is_none_or(|cond| matches(cond, &record)) {
                each(record);
            }
        };
        let Some(resolved) = resolved.as_ref() else {
            match menu {
                Menu::Disk => self.device.each_disk_record(None, |_| true, keep),
                Menu::File => self.device.each_file_record(None, |_| true, keep),
                _ => self.records(menu).into_iter().for_each(keep),
            }
            return Ok(());
        };
        // The condition is still applied below; this only skips rendering the items it
        // cannot match: those that fail a condition on a property read straight off the
        // item (slot, type, file path, file name). When such a condition names the item
        // (`slot=X`, `file-path~"^/?pool/x\.img$"`), only the items of that name are
        // looked at, through the state's index: a look-up costs the same with any number
        // of items.
        let mut required = Vec::new();
        atoms(resolved, &mut required);
        match menu {
            Menu::Disk => {
                let file_disks = self.device.env().version.has_file_disks();
                let names = required.iter().find_map(|a| a.disk_names(file_disks));
                let mut buffer = String::new();
                self.device.each_disk_record(
                    names
                        .as_ref()
                        .map(|(index, names)| (*index, names.as_slice())),
                    |disk| {
                        required
                            .iter()
                            .all(|atom| atom.admits_disk(disk, file_disks, &mut buffer))
                    },
                    keep,
                );
            }
            Menu::File => {
                let names = required.iter().find_map(Atom::file_names);
                self.device.each_file_record(
                    names.as_deref().map(|names| (BY_NAME, names)),
                    |file| required.iter().all(|atom| atom.admits_file(file)),
                    keep,
                );
            }
            _ => self.records(menu).into_iter().for_each(keep),
        }
        Ok(())
    }

    fn resolve(&mut self, cond: &Cond) -> Result<Resolved, CmdError> {
        Ok(match cond {
            Cond::And(a, b) => {
                Resolved::And(Box::new(self.resolve(a)?), Box::new(self.resolve(b)?))
            }
            Cond::Or(a, b) => Resolved::Or(Box::new(self.resolve(a)?), Box::new(self.resolve(b)?)),
            Cond::Not(a) => Resolved::Not(Box::new(self.resolve(a)?)),
            Cond::Truthy(prop) => Resolved::Truthy(prop.clone()),
            Cond::Cmp {
                prop,
                op,
                value,
                regex,
            } => {
                let text = self.eval(value)?.to_text();
                let regex = match (regex, op) {
                    (Some(re), _) => Some(re.clone()),
                    (None, CmpOp::Match) => Some(
                        Regex::new(&text)
                            .map_err(|_| CmdError::failure("invalid regular expression"))?,
                    ),
                    _ => None,
                };
                let literal = regex
                    .as_ref()
                    .and_then(|re| AnchoredLiteral::parse(re.as_str()));
                Resolved::Cmp {
                    prop: prop.clone(),
                    op: *op,
                    text,
                    regex,
                    literal,
                }
            }
        })
    }

    /// Item references: ids (`*1A`), print positions, names (slot / file
    /// name), comma-separated lists, arrays from `find`.
    pub(super) fn resolve_items(&self, table: Table, value: &Value) -> Result<Vec<u64>, CmdError> {
        let state = self.device.state();
        let exists = |id: u64| match table {
            Table::Disk => state.disk(id).is_some(),
            Table::File => state.file(id).is_some(),
            Table::Subvolume => state.subvolume(id).is_some(),
        };
        let by_position = |n: usize| -> Result<u64, CmdError> {
            match self.listing.get(n) {
                Some((t, id)) if *t == table && exists(*id) => Ok(*id),
                _ => Err(CmdError::NoSuchItem),
            }
        };
        match value {
            Value::Nothing => Ok(Vec::new()),
            Value::Id(t, id) if *t == table && exists(*id) => Ok(vec![*id]),
            Value::Id(..) | Value::Bool(_) | Value::Map(_) => Err(CmdError::NoSuchItem),
            Value::Num(n) => usize::try_from(*n)
                .map_err(|_| CmdError::NoSuchItem)
                .and_then(by_position)
                .map(|id| vec![id]),
            Value::Array(items) => {
                let mut ids = Vec::new();
                for item in items {
                    ids.extend(self.resolve_items(table, item)?);
                }
                Ok(ids)
            }
            Value::Str(text) => {
                let mut ids = Vec::new();
                for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let id = if let Some(id) = parse_id(part) {
                        exists(id).then_some(id).ok_or(CmdError::NoSuchItem)?
                    } else if part.bytes().all(|b| b.is_ascii_digit()) {
                        by_position(part.parse().map_err(|_| CmdError::NoSuchItem)?)?
                    } else {
                        match table {
                            Table::Disk => state.disk_by_slot(part).map(|d| d.id),
                            Table::File => state.file_by_name(part).map(|f| f.id),
                            Table::Subvolume => state.subvolume_by_name(part).map(|s| s.id),
                        }
                        .ok_or(CmdError::NoSuchItem)?
                    };
                    ids.push(id);
                }
                Ok(ids)
            }
        }
    }
}

/// A comparison every match of a condition meets (an atom of its top-level conjunction) on
/// a property that can be read off the state's item without rendering its record.
struct Atom<'c> {
    prop: &'c str,
    op: CmpOp,
    text: &'c str,
    regex: Option<&'c Regex>,
    literal: Option<&'c AnchoredLiteral>,
}

/// Properties [`Atom`] reads off items: a `/disk` slot, type and file path, a `/file` name.
const DIRECT_PROPERTIES: [&str; 4] = ["slot", "type", "file-path", "name"];

fn atoms<'c>(cond: &'c Resolved, out: &mut Vec<Atom<'c>>) {
    match cond {
        Resolved::And(a, b) => {
            atoms(a, out);
            atoms(b, out);
        }
        Resolved::Cmp {
            prop,
            op: op @ (CmpOp::Eq | CmpOp::NotEq | CmpOp::Match),
            text,
            regex,
            literal,
        } if DIRECT_PROPERTIES.contains(&prop.as_str()) => out.push(Atom {
            prop,
            op: *op,
            text,
            regex: regex.as_ref(),
            literal: literal.as_ref(),
        }),
        _ => {}
    }
}

impl Atom<'_> {
    /// The texts a property must print as to meet the atom, when it names them: an
    /// equality, or an anchored literal pattern.
    fn printed_texts(&self) -> Option<Vec<String>> {
        match (self.op, self.literal) {
            (CmpOp::Eq, _) => Some(vec![self.text.to_string()]),
            (CmpOp::Match, Some(literal)) => Some(literal.subjects()),
            _ => None,
        }
    }

    /// The index of disks and the names in it that every disk meeting the atom has.
    fn disk_names(&self, file_disks: bool) -> Option<(usize, Vec<String>)> {
        match self.prop {
            "slot" => Some((DISK_SLOT, self.printed_texts()?)),
            // Printed with a leading `/`, compared by equality without it.
            "file-path" if file_disks => {
                let paths = match self.op {
                    CmpOp::Eq => vec![self.text.trim_start_matches('/').to_string()],
                    _ => self
                        .printed_texts()?
                        .iter()
                        .filter_map(|text| text.strip_prefix('/'))
                        .map(str::to_string)
                        .collect(),
                };
                Some((DISK_IMAGE, paths))
            }
            _ => None,
        }
    }

    /// The names every file meeting the atom has.
    fn file_names(&self) -> Option<Vec<String>> {
        match self.prop {
            "name" => self.printed_texts(),
            _ => None,
        }
    }

    /// Whether a property whose raw text is `raw`, and which equals the condition's text
    /// when `equal` (by the property's type, as [`matches_text`] compares), meets the atom.
    fn admits(&self, raw: &str, equal: bool) -> bool {
        match self.op {
            CmpOp::Eq => equal,
            CmpOp::NotEq => !equal,
            CmpOp::Match => match self.literal {
                Some(literal) => literal.is_match(raw),
                None => self.regex.is_some_and(|re| re.is_match(raw)),
            },
            CmpOp::Less | CmpOp::Greater => true,
        }
    }

    /// As [`disk_record`](crate::records::disk_record) prints the disk: `slot` a string,
    /// `type` bare, `file-path` a path with a leading `/` (only file disks, on versions
    /// with them; otherwise the record decides).
    fn admits_disk(&self, disk: &Disk, file_disks: bool, buffer: &mut String) -> bool {
        match (self.prop, &disk.kind) {
            ("slot", _) => self.admits(&disk.slot, disk.slot == self.text),
            ("type", kind) => {
                let kind = match kind {
                    DiskKind::Raid => "raid",
                    DiskKind::File { .. } => "file",
                };
                self.admits(kind, kind == self.text)
            }
            ("file-path", DiskKind::File { path, .. }) if file_disks => {
                buffer.clear();
                buffer.push('/');
                buffer.push_str(path);
                let equal = path.trim_start_matches('/') == self.text.trim_start_matches('/');
                self.admits(buffer, equal)
            }
            _ => true,
        }
    }

    /// As [`file_record`](crate::records::file_record) prints the file: `name` bare.
    fn admits_file(&self, file: &FileEntry) -> bool {
        match self.prop {
            "name" => self.admits(&file.name, file.name == self.text),
            _ => true,
        }
    }
}

fn matches(cond: &Resolved, record: &Record) -> bool {
    match cond {
        Resolved::And(a, b) => matches(a, record) && matches(b, record),
        Resolved::Or(a, b) => matches(a, record) || matches(b, record),
        Resolved::Not(a) => !matches(a, record),
        Resolved::Truthy(prop) => match record.get(prop) {
            Some(Val::Bool(b)) => b,
            Some(other) => !other.raw().is_empty(),
            None => false,
        },
        Resolved::Cmp {
            prop,
            op,
            text,
            regex,
            ..
        } => {
            let value = record.get(prop);
            match op {
                CmpOp::Eq => matches_text(prop, value.as_ref(), text),
                CmpOp::NotEq => !matches_text(prop, value.as_ref(), text),
                CmpOp::Match => {
                    let subject = value.map(|v| v.raw()).unwrap_or_default();
                    regex.as_ref().is_some_and(|re| re.is_match(&subject))
                }
                CmpOp::Less | CmpOp::Greater => {
                    let Some(value) = value else { return false };
                    let ordering = match (parse_size(&value.raw()), parse_size(text)) {
                        (Some(a), Some(b)) => a.cmp(&b),
                        _ => value.raw().as_str().cmp(text.as_str()),
                    };
                    ordering
                        == if *op == CmpOp::Less {
                            std::cmp::Ordering::Less
                        } else {
                            std::cmp::Ordering::Greater
                        }
                }
            }
        }
    }
}
