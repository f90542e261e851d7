//! Runs a parsed script against the device. Output is collected as lines;
//! the first failing command stops the script (RouterOS semantics).

mod conditional;
mod literal;
mod print;
mod select;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use super::ast::{Command, Expr, Menu, NamedArg, Script};
use super::value::{Table, Value};
use crate::args::{ArgsError, DiskVerb, block_copy_args, disk_args, subvolume_args};
use crate::device::Device;
use crate::error::CmdError;
use crate::records::{Record, ResourceInfo, clock_record, identity_record, resource_record};
use crate::state::copy_status;

/// Per-run inputs besides the device.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// Fault: `:serialize` prints numbers as floats.
    pub float_numbers: bool,
    /// Fault: `/disk copy` stops half-way and the session is lost.
    pub interrupt_copies: bool,
    pub uptime_seconds: u64,
    /// `/system health` overrides of the fault set (see [`crate::health`]).
    pub health: std::collections::BTreeMap<String, String>,
}

/// What a script run produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOutput {
    /// Output lines, without terminators.
    pub lines: Vec<String>,
    /// The error that stopped the script, if any (not yet in `lines`).
    pub error: Option<crate::error::CmdError>,
    /// The session ended without a reply (a fault cut a copy off).
    pub cut_off: bool,
}

/// Runs `script`; output of the commands before a failure is kept.
pub fn run(script: &Script, device: &mut Device, ctx: &RunContext) -> RunOutput {
    let mut interp = Interpreter {
        device,
        ctx,
        lines: Vec::new(),
        scopes: vec![HashMap::new()],
        listing: Vec::new(),
        cut_off: false,
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
        cut_off: interp.cut_off,
    }
}

struct Interpreter<'a> {
    device: &'a mut Device,
    ctx: &'a RunContext,
    lines: Vec<String>,
    /// Variables: the script's scope, then one per `do`/`else` block being run.
    scopes: Vec<HashMap<String, Value>>,
    /// Ids in the order of the last list printed, for numeric references.
    listing: Vec<(Table, u64)>,
    cut_off: bool,
}

fn table_of(menu: Menu) -> Option<Table> {
    match menu {
        Menu::Disk => Some(Table::Disk),
        Menu::File => Some(Table::File),
        Menu::DiskBtrfsSubvolume => Some(Table::Subvolume),
        _ => None,
    }
}

impl Interpreter<'_> {
    fn emit(&mut self, text: String) {
        if text.contains('\n') {
            self.lines.extend(text.split('\n').map(str::to_string));
        } else {
            self.lines.push(text);
        }
    }

    fn exec(&mut self, command: &Command, nested: bool) -> Result<Value, CmdError> {
        let result = self.exec_command(command, nested);
        self.with_refusals(command, result)
    }

    /// A list menu's refusals as the device words them (see the `generic-errors` quirk).
    fn with_refusals<T>(
        &self,
        command: &Command,
        result: Result<T, CmdError>,
    ) -> Result<T, CmdError> {
        match command.menu() {
            Some(menu) if menu.is_list() => result.map_err(|e| self.device.env().quirks.refusal(e)),
            _ => result,
        }
    }

    fn exec_command(&mut self, command: &Command, nested: bool) -> Result<Value, CmdError> {
        match command {
            Command::Nop => Ok(Value::Nothing),
            Command::Put(expr) => {
                let value = self.eval(expr)?;
                self.emit(value.into_text());
                Ok(Value::Nothing)
            }
            Command::Serialize { value, to } => {
                let to = to
                    .as_ref()
                    .ok_or_else(|| CmdError::MissingArguments("to".into()))?;
                if self.eval(to)?.to_text() != "json" {
                    return Err(CmdError::NoMatchingValue("to".into()));
                }
                // A listing goes straight from the items to the text, one at a time: with
                // thousands of disks the values in between would be the command's peak.
                if let Expr::Sub(command) = value
                    && let Command::Print { menu, opts, filter } = &**command
                    && opts.as_value
                    && let Some(table) = table_of(*menu)
                {
                    let json = self.print_json(*menu, table, opts, filter.as_ref());
                    return self.with_refusals(command, json).map(Value::Str);
                }
                let value = self.eval(value)?;
                Ok(Value::Str(value.to_json(self.ctx.float_numbers)))
            }
            Command::Len(expr) => Ok(Value::Num(match self.eval(expr)? {
                Value::Array(items) => items.len() as i64,
                Value::Nothing => 0,
                other => other.to_text().chars().count() as i64,
            })),
            Command::Local {
                name,
                value,
                global,
            } => {
                let value = self.eval(value)?;
                let scope = if *global {
                    self.scopes.first_mut()
                } else {
                    self.scopes.last_mut()
                };
                scope
                    .expect("the script scope is never left")
                    .insert(name.clone(), value);
                Ok(Value::Nothing)
            }
            Command::If {
                test,
                then,
                otherwise,
            } => {
                let branch = if self.holds(test)? { then } else { otherwise };
                self.scopes.push(HashMap::new());
                let result = branch
                    .iter()
                    .try_for_each(|c| self.exec(c, false).map(drop));
                self.scopes.pop();
                result.map(|()| Value::Nothing)
            }
            Command::Add {
                menu: Menu::DiskBtrfsSubvolume,
                args,
            } => {
                let pairs = self.arg_texts(args)?;
                let args = subvolume_args(pairs.iter().map(|(k, v)| (*k, v.as_str())))
                    .map_err(args_error)?;
                let id = self.device.add_subvolume(&args)?;
                Ok(Value::Id(Table::Subvolume, id))
            }
            Command::Add { args, .. } => {
                let args = self.disk_args(args, DiskVerb::Add)?;
                let id = self.device.add_disk(&args)?;
                Ok(Value::Id(Table::Disk, id))
            }
            Command::BlockCopy { args } => {
                let pairs = self.arg_texts(args)?;
                let args = block_copy_args(pairs.iter().map(|(k, v)| (*k, v.as_str())))
                    .map_err(args_error)?;
                let mut lines = Vec::new();
                let finished =
                    self.device
                        .block_copy(&args, self.ctx.interrupt_copies, |copied, total| {
                            lines.push(copy_status(copied, total))
                        });
                for line in lines {
                    self.emit(line);
                }
                if !finished? {
                    self.cut_off = true;
                    return Err(CmdError::failure("copy interrupted"));
                }
                Ok(Value::Nothing)
            }
            Command::Copy { menu, item, name } => {
                let table = table_of(*menu).expect("copy parses only on /file");
                let item = self.eval(item)?;
                let ids = self.resolve_items(table, &item)?;
                let [id] = ids.as_slice() else {
                    return Err(CmdError::NoSuchItem);
                };
                let name = self.eval(name)?.to_text();
                self.device.copy_file(*id, &name)?;
                Ok(Value::Nothing)
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
                        Table::Subvolume => self.device.remove_subvolume(id)?,
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
            Expr::Var(name) => Ok(self
                .scopes
                .iter()
                .rev()
                .find_map(|scope| scope.get(name))
                .cloned()
                .unwrap_or(Value::Nothing)),
            Expr::Sub(command) => self.exec(command, true),
        }
    }

    /// The arguments' names with their values as text.
    fn arg_texts<'n>(&mut self, args: &'n [NamedArg]) -> Result<Vec<(&'n str, String)>, CmdError> {
        let mut pairs = Vec::with_capacity(args.len());
        for arg in args {
            pairs.push((arg.name.as_str(), self.eval(&arg.value)?.to_text()));
        }
        Ok(pairs)
    }

    fn disk_args(
        &mut self,
        args: &[NamedArg],
        verb: DiskVerb,
    ) -> Result<crate::state::DiskArgs, CmdError> {
        let pairs = self.arg_texts(args)?;
        disk_args(
            pairs.iter().map(|(k, v)| (*k, v.as_str())),
            verb,
            &self.device.env().version,
        )
        .map_err(args_error)
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
            Menu::SystemClock => vec![clock_record(self.device.env().now)],
            Menu::SystemHealth => crate::health::records(&self.ctx.health),
            Menu::DiskBtrfsSubvolume => self.device.subvolume_records(),
            Menu::Root | Menu::System | Menu::DiskBtrfs => Vec::new(),
        }
    }
}

fn args_error(error: ArgsError) -> CmdError {
    error.into_cmd_error()
}
