//! `print` and `get`.

use super::{Interpreter, table_of};
use crate::error::CmdError;
use crate::format::{self, DISK_COLUMNS, FILE_COLUMNS, ListOptions};
use crate::records::Record;
use crate::script::ast::{Cond, Expr, Menu, PrintOpts};
use crate::script::value::{Table, Value};

impl Interpreter<'_> {
    pub(super) fn print(
        &mut self,
        menu: Menu,
        opts: &PrintOpts,
        filter: Option<&Cond>,
        nested: bool,
    ) -> Result<Value, CmdError> {
        let records = self.filtered(menu, filter)?;
        let proplist = self.proplist(opts)?;
        let table = table_of(menu);
        if opts.as_value {
            let to_map = |record: &Record| record_map(record, table, &proplist);
            return Ok(match (table, menu) {
                (Some(_), _) | (None, Menu::SystemHealth) => {
                    Value::Array(records.iter().map(to_map).collect())
                }
                (None, _) => records.first().map(to_map).unwrap_or(Value::Nothing),
            });
        }
        if opts.count_only {
            let count = Value::Num(records.len() as i64);
            if nested {
                return Ok(count);
            }
            self.emit(count.to_text());
            return Ok(Value::Nothing);
        }
        let list_opts = ListOptions {
            show_ids: opts.show_ids,
            proplist,
        };
        let lines = match menu {
            Menu::SystemResource | Menu::SystemIdentity | Menu::SystemClock => {
                records.first().map(format::settings).unwrap_or_default()
            }
            _ if opts.terse => format::terse(&records, &list_opts),
            _ if opts.detail => format::detail(&records, &list_opts),
            Menu::Disk => format::table(&records, DISK_COLUMNS, &list_opts),
            Menu::SystemHealth => format::table(&records, crate::health::COLUMNS, &list_opts),
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

    /// `:serialize to=json [print as-value …]` of a menu of items, written item by item:
    /// the same text as the array of maps `print` returns, without holding that array.
    pub(super) fn print_json(
        &mut self,
        menu: Menu,
        table: Table,
        opts: &PrintOpts,
        filter: Option<&Cond>,
    ) -> Result<String, CmdError> {
        let proplist = self.proplist(opts)?;
        let floats = self.ctx.float_numbers;
        let mut out = String::from("[");
        self.each_filtered(menu, filter, |record| {
            if out.len() > 1 {
                out.push(',');
            }
            record_map(&record, Some(table), &proplist).write_json(&mut out, floats);
        })?;
        out.push(']');
        Ok(out)
    }

    /// The properties `proplist=` names; empty for all.
    fn proplist(&mut self, opts: &PrintOpts) -> Result<Vec<String>, CmdError> {
        Ok(match &opts.proplist {
            Some(expr) => self
                .eval(expr)?
                .to_text()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        })
    }

    pub(super) fn get(
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
