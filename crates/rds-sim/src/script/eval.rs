//! Runs a parsed script against the device. Output is collected as lines;
//! the first failing command stops the script (RouterOS semantics).

use std::collections::HashMap;

use regex::Regex;

use super::parser::{CmpOp, Command, Cond, Expr, Menu, NamedArg, PrintOpts, Script};
use super::value::{Table, Value};
use crate::args::{ArgsError, DiskVerb, disk_args};
use crate::device::Device;
use crate::error::CmdError;
use crate::format::{self, DISK_COLUMNS, FILE_COLUMNS, ListOptions};
use crate::records::{
    Record, ResourceInfo, Val, identity_record, matches_text, parse_id, resource_record,
};
use crate::units::parse_size;

/// Per-run inputs besides the device.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// Fault: `:serialize` prints numbers as floats.
    pub float_numbers: bool,
    pub uptime_seconds: u64,
}

/// What a script run produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOutput {
    /// Output lines, without terminators.
    pub lines: Vec<String>,
    /// The error that stopped the script, if any (not yet in `lines`).
    pub error: Option<crate::error::CmdError>,
}

/// Runs `script`; output of the commands before a failure is kept.
pub fn run(script: &Script, device: &mut Device, ctx: &RunContext) -> RunOutput {
    let mut interp = Interpreter {
        device,
        ctx,
        lines: Vec::new(),
        vars: HashMap::new(),
        listing: Vec::new(),
    };
    let mut error = None;
    for command in &script.commands {
        if let Err(e) = interp.exec(command, false) {
            error = Some(e);
            break;
        }
    }
    RunOutput {
        lines: interp.lines,
        error,
    }
}

struct Interpreter<'a> {
    device: &'a mut Device,
    ctx: &'a RunContext,
    lines: Vec<String>,
    vars: HashMap<String, Value>,
    /// Ids in the order of the last list printed, for numeric references.
    listing: Vec<(Table, u64)>,
}

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
    },
    Truthy(String),
}

fn table_of(menu: Menu) -> Option<Table> {
    match menu {
        Menu::Disk => Some(Table::Disk),
        Menu::File => Some(Table::File),
        _ => None,
    }
}

impl Interpreter<'_> {
    fn emit(&mut self, text: &str) {
        self.lines.extend(text.split('\n').map(str::to_string));
    }

    fn exec(&mut self, command: &Command, nested: bool) -> Result<Value, CmdError> {
        match command {
            Command::Nop => Ok(Value::Nothing),
            Command::Put(expr) => {
                let value = self.eval(expr)?;
                self.emit(&value.to_text());
                Ok(Value::Nothing)
            }
            Command::Serialize { value, to } => {
                let to = to
                    .as_ref()
                    .ok_or_else(|| CmdError::MissingArguments("to".into()))?;
                if self.eval(to)?.to_text() != "json" {
                    return Err(CmdError::NoMatchingValue("to".into()));
                }
                let value = self.eval(value)?;
                Ok(Value::Str(value.to_json(self.ctx.float_numbers)))
            }
            Command::Len(expr) => Ok(Value::Num(match self.eval(expr)? {
                Value::Array(items) => items.len() as i64,
                Value::Nothing => 0,
                other => other.to_text().chars().count() as i64,
            })),
            Command::Local { name, value } => {
                let value = self.eval(value)?;
                self.vars.insert(name.clone(), value);
                Ok(Value::Nothing)
            }
            Command::Add { args, .. } => {
                let args = self.disk_args(args, DiskVerb::Add)?;
                let id = self.device.add_disk(&args)?;
                Ok(Value::Id(Table::Disk, id))
            }
            Command::Set {
                menu: Menu::SystemIdentity,
                args,
                ..
            } => {
                if let Some(arg) = args.iter().find(|a| a.name == "name") {
                    let name = self.eval(&arg.value)?.to_text();
                    self.device.set_identity(&name)?;
                }
                Ok(Value::Nothing)
            }
            Command::Set { menu, items, args } => {
                let table = table_of(*menu).expect("set parses only on /disk and /system identity");
                let items = match items {
                    Some(expr) => self.eval(expr)?,
                    None => Value::Nothing,
                };
                let ids = self.resolve_items(table, &items)?;
                let args = self.disk_args(args, DiskVerb::Set)?;
                for id in ids {
                    self.device.set_disk(id, &args)?;
                }
                Ok(Value::Nothing)
            }
            Command::Remove { menu, items } => {
                let table = table_of(*menu).expect("remove parses only on list menus");
                let mut ids = Vec::new();
                for expr in items {
                    let value = self.eval(expr)?;
                    ids.extend(self.resolve_items(table, &value)?);
                }
                for id in ids {
                    match table {
                        Table::Disk => self.device.remove_disk(id)?,
                        Table::File => self.device.remove_file(id)?,
                    }
                }
                Ok(Value::Nothing)
            }
            Command::Find { menu, filter } => {
                let table = table_of(*menu).expect("find parses only on list menus");
                let records = self.filtered(*menu, filter.as_ref())?;
                Ok(Value::Array(
                    records
                        .iter()
                        .filter_map(|r| r.id)
                        .map(|id| Value::Id(table, id))
                        .collect(),
                ))
            }
            Command::Print { menu, opts, filter } => {
                self.print(*menu, opts, filter.as_ref(), nested)
            }
            Command::Get { menu, item, name } => self.get(*menu, item.as_ref(), name.as_ref()),
        }
    }

    fn eval(&mut self, expr: &Expr) -> Result<Value, CmdError> {
        match expr {
            Expr::Lit(text) => Ok(Value::Str(text.clone())),
            Expr::Var(name) => Ok(self.vars.get(name).cloned().unwrap_or(Value::Nothing)),
            Expr::Sub(command) => self.exec(command, true),
        }
    }

    fn disk_args(
        &mut self,
        args: &[NamedArg],
        verb: DiskVerb,
    ) -> Result<crate::state::DiskArgs, CmdError> {
        let mut pairs = Vec::with_capacity(args.len());
        for arg in args {
            pairs.push((arg.name.as_str(), self.eval(&arg.value)?.to_text()));
        }
        disk_args(
            pairs.iter().map(|(k, v)| (*k, v.as_str())),
            verb,
            &self.device.env().version,
        )
        .map_err(|e| match e {
            ArgsError::Invalid(e) => e,
            // The parser only lets known arguments through.
            ArgsError::Unknown(name) => CmdError::failure(format!("unknown argument {name}")),
        })
    }

    fn records(&self, menu: Menu) -> Vec<Record> {
        match menu {
            Menu::Disk => self.device.disk_records(),
            Menu::File => self.device.file_records(),
            Menu::SystemResource => vec![resource_record(&ResourceInfo {
                version: self.device.env().version.clone(),
                uptime_seconds: self.ctx.uptime_seconds,
            })],
            Menu::SystemIdentity => vec![identity_record(self.device.state())],
            Menu::Root | Menu::System => Vec::new(),
        }
    }

    fn filtered(&mut self, menu: Menu, filter: Option<&Cond>) -> Result<Vec<Record>, CmdError> {
        let Some(cond) = filter else {
            return Ok(self.records(menu));
        };
        let resolved = self.resolve(cond)?;
        // The condition is still applied below; this only skips rendering the disks it
        // cannot match.
        let records = match (menu, required_slot(&resolved)) {
            (Menu::Disk, Some(slot)) => self.device.disk_records_in_slot(Some(slot)),
            _ => self.records(menu),
        };
        Ok(records
            .into_iter()
            .filter(|r| matches(&resolved, r))
            .collect())
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
                Resolved::Cmp {
                    prop: prop.clone(),
                    op: *op,
                    text,
                    regex,
                }
            }
        })
    }

    fn print(
        &mut self,
        menu: Menu,
        opts: &PrintOpts,
        filter: Option<&Cond>,
        nested: bool,
    ) -> Result<Value, CmdError> {
        let records = self.filtered(menu, filter)?;
        let proplist: Vec<String> = match &opts.proplist {
            Some(expr) => self
                .eval(expr)?
                .to_text()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        };
        let table = table_of(menu);
        if opts.as_value {
            let to_map = |record: &Record| record_map(record, table, &proplist);
            return Ok(match table {
                Some(_) => Value::Array(records.iter().map(to_map).collect()),
                None => records.first().map(to_map).unwrap_or(Value::Nothing),
            });
        }
        if opts.count_only {
            let count = Value::Num(records.len() as i64);
            if nested {
                return Ok(count);
            }
            self.emit(&count.to_text());
            return Ok(Value::Nothing);
        }
        let list_opts = ListOptions {
            show_ids: opts.show_ids,
            proplist,
        };
        let lines = match menu {
            Menu::SystemResource | Menu::SystemIdentity => {
                records.first().map(format::settings).unwrap_or_default()
            }
            _ if opts.terse => format::terse(&records, &list_opts),
            _ if opts.detail => format::detail(&records, &list_opts),
            Menu::Disk => format::table(&records, DISK_COLUMNS, &list_opts),
            _ => format::table(&records, FILE_COLUMNS, &list_opts),
        };
        self.lines.extend(lines);
        if let Some(table) = table {
            self.listing = records
                .iter()
                .filter_map(|r| r.id)
                .map(|id| (table, id))
                .collect();
        }
        Ok(Value::Nothing)
    }

    fn get(
        &mut self,
        menu: Menu,
        item: Option<&Expr>,
        name: Option<&Expr>,
    ) -> Result<Value, CmdError> {
        let table = table_of(menu);
        let record = match (table, item) {
            (Some(table), Some(item)) => {
                let value = self.eval(item)?;
                let id = *self
                    .resolve_items(table, &value)?
                    .first()
                    .ok_or(CmdError::NoSuchItem)?;
                self.records(menu)
                    .into_iter()
                    .find(|r| r.id == Some(id))
                    .ok_or(CmdError::NoSuchItem)?
            }
            _ => self
                .records(menu)
                .into_iter()
                .next()
                .ok_or(CmdError::NoSuchItem)?,
        };
        let Some(name) = name else {
            return Ok(record_map(&record, table, &[]));
        };
        let name = self.eval(name)?.to_text();
        if name == ".id" {
            return match (table, record.id) {
                (Some(table), Some(id)) => Ok(Value::Id(table, id)),
                _ => Err(CmdError::NoMatchingValue("value-name".into())),
            };
        }
        match record.get(&name) {
            Some(val) => Ok(Value::from_val(&val)),
            None if name == "comment" => Ok(Value::Str(String::new())),
            None => Err(CmdError::NoMatchingValue("value-name".into())),
        }
    }

    /// Item references: ids (`*1A`), print positions, names (slot / file
    /// name), comma-separated lists, arrays from `find`.
    fn resolve_items(&self, table: Table, value: &Value) -> Result<Vec<u64>, CmdError> {
        let state = self.device.state();
        let exists = |id: u64| match table {
            Table::Disk => state.disk(id).is_some(),
            Table::File => state.file(id).is_some(),
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

/// A record as `print as-value` returns it; `proplist` limits the fields
/// (`.id` always stays).
fn record_map(record: &Record, table: Option<Table>, proplist: &[String]) -> Value {
    Value::Map(
        record
            .fields()
            .into_iter()
            .filter(|(k, _)| *k == ".id" || proplist.is_empty() || proplist.iter().any(|p| p == k))
            .map(|(k, v)| {
                let value = match (k, table, record.id) {
                    (".id", Some(table), Some(id)) => Value::Id(table, id),
                    _ => Value::from_val(&v),
                };
                (k.to_string(), value)
            })
            .collect(),
    )
}

/// The slot a condition requires by equality (`slot=X`, alone or in a conjunction): no
/// disk in another slot can match it.
fn required_slot(cond: &Resolved) -> Option<&str> {
    match cond {
        Resolved::And(a, b) => required_slot(a).or_else(|| required_slot(b)),
        Resolved::Cmp {
            prop,
            op: CmpOp::Eq,
            text,
            ..
        } if prop == "slot" => Some(text),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::super::parser::parse;
    use super::*;
    use crate::device::tests::{MemoryBackend, device_with};

    fn run_text(device: &mut Device, src: &str) -> (Vec<String>, Option<String>) {
        let script = parse(src, &device.env().version).unwrap_or_else(|e| panic!("{src}: {e}"));
        let out = run(&script, device, &RunContext::default());
        (out.lines, out.error.map(|e| e.to_string()))
    }

    fn json(device: &mut Device, src: &str) -> serde_json::Value {
        let (lines, error) = run_text(device, src);
        assert_eq!(error, None, "{lines:?}");
        serde_json::from_str(&lines.concat()).unwrap_or_else(|e| panic!("{lines:?}: {e}"))
    }

    const ADD: &str = "/disk add type=file slot=\"pvc-1\" file-path=\"storage-pool/pvc-1.img\" file-size=1073741824 mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\" comment=\"vol \\C3\\A9\"";

    /// Wheres naming a slot take the one-disk shortcut; the answers must be those of the
    /// full scan.
    #[test]
    fn slot_conditions_select_the_same_disks_as_a_full_scan() {
        let mut device = device_with(MemoryBackend::default());
        for n in 1..=3 {
            let add = ADD.replace("pvc-1", &format!("pvc-{n}"));
            assert_eq!(run_text(&mut device, &add).1, None);
        }
        let slots = |device: &mut Device, filter: &str| -> Vec<String> {
            let reply = json(
                device,
                &format!(":put [:serialize to=json [/disk print as-value where {filter}]]"),
            );
            let items = match reply {
                serde_json::Value::Array(items) => items,
                one => vec![one],
            };
            items
                .iter()
                .map(|d| d["slot"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(slots(&mut device, "slot=\"pvc-2\""), ["pvc-2"]);
        assert_eq!(
            slots(&mut device, "type=file and slot=\"pvc-3\""),
            ["pvc-3"]
        );
        assert_eq!(
            slots(&mut device, "slot=\"pvc-2\" and type=raid"),
            [] as [&str; 0]
        );
        assert_eq!(
            slots(&mut device, "slot=\"pvc-1\" or slot=\"pvc-3\""),
            ["pvc-1", "pvc-3"]
        );
        assert_eq!(
            slots(&mut device, "slot!=\"pvc-2\" and type=file"),
            ["pvc-1", "pvc-3"]
        );
        assert_eq!(slots(&mut device, "slot=\"nope\""), [] as [&str; 0]);
    }

    #[test]
    fn create_then_read_back_in_one_script() {
        let mut device = device_with(MemoryBackend::default());
        let reply = json(
            &mut device,
            &format!(
                "{ADD};:put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]"
            ),
        );
        let disk = &reply[0];
        assert_eq!(disk[".id"], "*2");
        assert_eq!(disk["type"], "file");
        assert_eq!(disk["slot"], "pvc-1");
        assert_eq!(disk["file-path"], "/storage-pool/pvc-1.img");
        assert_eq!(disk["file-size"], 1_073_741_824u64);
        assert_eq!(disk["size"], 1_073_741_824u64);
        assert_eq!(disk["nvme-tcp-export"], true);
        assert_eq!(disk["mount-filesystem"], false);
        assert_eq!(
            disk["nvme-tcp-server-nqn"],
            "nqn.2000-02.com.mikrotik:pvc-1"
        );
        assert_eq!(disk["comment"], "vol é");
        assert_eq!(disk["block-device"], true);
    }

    #[test]
    fn a_failing_statement_stops_the_script() {
        let mut device = device_with(MemoryBackend::default());
        run_text(&mut device, ADD);
        let (lines, error) = run_text(&mut device, &format!(":put before;{ADD};:put after"));
        assert_eq!(lines, vec!["before"]);
        assert_eq!(
            error.as_deref(),
            Some("failure: disk with slot pvc-1 already exists")
        );
    }

    #[test]
    fn where_filters_by_type() {
        let mut device = device_with(MemoryBackend::default());
        run_text(&mut device, ADD);
        let count = |device: &mut Device, filter: &str| {
            json(
                device,
                &format!(":put [:serialize to=json [/disk print as-value where {filter}]]"),
            )
            .as_array()
            .unwrap()
            .len()
        };
        assert_eq!(count(&mut device, "type=file and slot~\"^pvc\\2D\""), 1);
        assert_eq!(count(&mut device, "slot~\"^nope\""), 0);
        assert_eq!(count(&mut device, "mount-point=\"storage-pool\""), 1);
        assert_eq!(count(&mut device, "file-size=1G"), 1);
        assert_eq!(count(&mut device, "file-size>1G"), 0);
        assert_eq!(count(&mut device, "size>1G"), 1, "the pool");
        assert_eq!(count(&mut device, "nvme-tcp-export=yes"), 1);
        assert_eq!(count(&mut device, "nvme-tcp-export"), 1);
        assert_eq!(count(&mut device, "!nvme-tcp-export"), 1);
        assert_eq!(
            count(&mut device, "file-path=\"storage-pool/pvc-1.img\""),
            1
        );
        assert_eq!(
            count(&mut device, "comment=\"\""),
            1,
            "the pool has no comment"
        );
        assert_eq!(count(&mut device, ".id=*2"), 1);
        assert_eq!(
            count(&mut device, "slot=\"pvc-1\" or slot=\"storage-pool\""),
            2
        );
        assert_eq!(count(&mut device, "slot!=\"pvc-1\""), 1);
    }

    #[test]
    fn settings_menus_serialize_as_objects() {
        let mut device = device_with(MemoryBackend::default());
        let (lines, error) = run_text(
            &mut device,
            ":put [:serialize to=json [/system resource print as-value]];:put [:serialize to=json [/system identity print as-value]]",
        );
        assert_eq!(error, None);
        assert_eq!(lines.len(), 2);
        let resource: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(resource["version"], "7.21.5 (stable)");
        assert_eq!(resource["board-name"], "RDS2216");
        assert!(resource["total-memory"].is_u64());
        let identity: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(identity["name"], "rds-sim");
    }

    #[test]
    fn items_by_find_id_name_and_position() {
        let mut device = device_with(MemoryBackend::default());
        run_text(&mut device, ADD);
        run_text(&mut device, "/disk set pvc-1 comment=a");
        assert_eq!(
            run_text(&mut device, ":put [/disk get *2 comment]").0,
            vec!["a"]
        );
        run_text(&mut device, "/disk set [find slot=\"pvc-1\"] comment=b");
        assert_eq!(
            run_text(&mut device, ":put [/disk get pvc-1 comment]").0,
            vec!["b"]
        );
        let (_, error) = run_text(&mut device, "/disk set nosuchslot comment=x");
        assert_eq!(error.as_deref(), Some("no such item"));
        let (_, error) = run_text(&mut device, "/disk set *FF comment=x");
        assert_eq!(error.as_deref(), Some("no such item"));
        // Positions refer to the last print of the same script.
        let (_, error) = run_text(&mut device, "/disk print; /disk set 1 comment=c");
        assert_eq!(error, None);
        assert_eq!(
            run_text(&mut device, ":put [/disk get pvc-1 comment]").0,
            vec!["c"]
        );
        assert_eq!(
            run_text(&mut device, "/disk set 1 comment=d").1.as_deref(),
            Some("no such item")
        );
        // A find with no match is a silent no-op.
        assert_eq!(
            run_text(&mut device, "/disk remove [find where slot=\"nope\"]").1,
            None
        );
        assert_eq!(run_text(&mut device, ":put [/disk find]").0, vec!["*1;*2"]);
        assert_eq!(
            run_text(&mut device, ":put [:len [/disk find]]").0,
            vec!["2"]
        );
    }

    #[test]
    fn grow_and_remove_through_scripts() {
        let mut device = device_with(MemoryBackend::default());
        run_text(&mut device, ADD);
        let reply = json(
            &mut device,
            "/disk set [find where slot=\"pvc-1\"] file-size=2147483648;:put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]",
        );
        assert_eq!(reply[0]["file-size"], 2_147_483_648u64);
        let (lines, error) = run_text(
            &mut device,
            "/disk set [find where slot=\"pvc-1\"] file-size=1G;:put x",
        );
        assert!(lines.is_empty());
        assert_eq!(
            error.as_deref(),
            Some("failure: file-size can not be reduced")
        );

        run_text(&mut device, "/disk remove [find where slot=\"pvc-1\"]");
        let file = json(
            &mut device,
            ":put [:serialize to=json [/file print detail as-value where name=\"storage-pool/pvc-1.img\"]]",
        );
        assert_eq!(file[0]["type"], ".img file");
        assert_eq!(file[0]["size"], 2_147_483_648u64);
        run_text(
            &mut device,
            "/file remove [find where name=\"storage-pool/pvc-1.img\"]",
        );
        let file = json(
            &mut device,
            ":put [:serialize to=json [/file print detail as-value where name=\"storage-pool/pvc-1.img\"]]",
        );
        assert_eq!(file, serde_json::json!([]));
    }

    #[test]
    fn argument_values_are_checked_at_run_time() {
        let mut device = device_with(MemoryBackend::default());
        let (_, error) = run_text(&mut device, "/disk add type=floppy");
        assert_eq!(
            error.as_deref(),
            Some("input does not match any value of type")
        );
        let (_, error) = run_text(
            &mut device,
            "/disk add type=file file-path=storage-pool/x file-size=lots",
        );
        assert_eq!(
            error.as_deref(),
            Some("invalid value for argument file-size")
        );
        let (_, error) = run_text(
            &mut device,
            "/disk add type=file file-path=elsewhere/x file-size=1G",
        );
        assert_eq!(error.as_deref(), Some("failure: invalid file path"));
        let (_, error) = run_text(
            &mut device,
            "/disk add type=file file-path=storage-pool/x file-size=1T",
        );
        assert_eq!(
            error.as_deref(),
            Some("failure: not enough free space on storage-pool")
        );
    }

    #[test]
    fn add_returns_the_new_id_and_variables_work() {
        let mut device = device_with(MemoryBackend::default());
        let (lines, error) = run_text(
            &mut device,
            ":local id [/disk add type=file file-path=storage-pool/a.img file-size=1M]; :put $id; :put [/disk get $id slot]",
        );
        assert_eq!(error, None);
        assert_eq!(lines, vec!["*2", "file-storage-pool-a.img"]);
    }

    #[test]
    fn human_prints_and_counts() {
        let mut device = device_with(MemoryBackend::default());
        run_text(&mut device, ADD);
        let (lines, _) = run_text(&mut device, "/disk print detail where slot=\"pvc-1\"");
        assert_eq!(lines[0], "Flags: B - BLOCK-DEVICE; t - NVME-TCP-EXPORT");
        assert_eq!(lines[1], " 0 Bt ;;; vol é");
        let (lines, _) = run_text(&mut device, "/disk print count-only");
        assert_eq!(lines, vec!["2"]);
        let (lines, _) = run_text(&mut device, "/system identity print");
        assert_eq!(lines, vec!["  name: rds-sim", ""]);
        let (lines, _) = run_text(&mut device, "/file print terse");
        assert_eq!(lines.len(), 2);
        let (lines, _) = run_text(
            &mut device,
            ":put [:serialize to=json [/disk print as-value proplist=slot where slot=pvc-1]]",
        );
        assert_eq!(lines, vec![r#"[{".id":"*2","slot":"pvc-1"}]"#]);
    }

    #[test]
    fn float_numbers_fault() {
        let mut device = device_with(MemoryBackend::default());
        run_text(&mut device, ADD);
        let script = parse(
            ":put [:serialize to=json [/disk print as-value where slot=pvc-1]]",
            &device.env().version,
        )
        .unwrap();
        let out = run(
            &script,
            &mut device,
            &RunContext {
                float_numbers: true,
                ..Default::default()
            },
        );
        assert!(
            out.lines[0].contains("\"file-size\":1073741824.000000"),
            "{:?}",
            out.lines
        );
    }
}
