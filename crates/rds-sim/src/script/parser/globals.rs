//! `:put`, `:serialize`, `:len`, `:local`/`:global`.

use super::{Parser, RawArg, raw_pos};
use crate::error::{CmdError, Pos};
use crate::script::ast::{Command, Expr, Menu};

impl Parser<'_> {
    /// `:put`, `:serialize`, `:len`, `:local`/`:global`.
    pub(super) fn global(&mut self, name: &str, pos: Pos, menu: Menu) -> Result<Command, CmdError> {
        match name {
            "put" | "len" => {
                let raw = self.raw_args(menu)?;
                let mut values = raw.into_iter();
                let value = match values.next() {
                    None => Expr::Lit(String::new()),
                    Some(RawArg::Value { value, .. }) => value,
                    Some(RawArg::Word { word, .. }) => Expr::Lit(word),
                    Some(RawArg::Named { pos, .. }) => {
                        return Err(CmdError::ExpectedEndOfCommand { pos });
                    }
                };
                if let Some(extra) = values.next() {
                    return Err(CmdError::ExpectedEndOfCommand {
                        pos: raw_pos(&extra),
                    });
                }
                Ok(if name == "put" {
                    Command::Put(value)
                } else {
                    Command::Len(value)
                })
            }
            "serialize" => {
                let raw = self.raw_args(menu)?;
                let mut value = None;
                let mut to = None;
                for arg in raw {
                    match arg {
                        RawArg::Named { name, value: v, .. } if name == "to" => {
                            if let Expr::Lit(text) = &v
                                && text != "json"
                            {
                                return Err(CmdError::NoMatchingValue("to".into()));
                            }
                            to = Some(v);
                        }
                        RawArg::Named { name, value: v, .. }
                            if name == "value" && value.is_none() =>
                        {
                            value = Some(v)
                        }
                        RawArg::Named { name, .. } if name == "options" => {}
                        RawArg::Value { value: v, .. } if value.is_none() => value = Some(v),
                        RawArg::Word { word, .. } if value.is_none() => {
                            value = Some(Expr::Lit(word))
                        }
                        other => {
                            return Err(CmdError::ExpectedEndOfCommand {
                                pos: raw_pos(&other),
                            });
                        }
                    }
                }
                Ok(Command::Serialize {
                    value: value.unwrap_or(Expr::Lit(String::new())),
                    to,
                })
            }
            "local" | "global" => {
                let raw = self.raw_args(menu)?;
                let mut parts = raw.into_iter();
                let (var, value) = match parts.next() {
                    Some(RawArg::Word { word, .. }) => (word, parts.next()),
                    // `:local x=1` is not RouterOS syntax either.
                    Some(other) => {
                        return Err(CmdError::Syntax {
                            pos: raw_pos(&other),
                        });
                    }
                    None => return Err(CmdError::MissingArguments("name".into())),
                };
                let value = match value {
                    None => Expr::Lit(String::new()),
                    Some(RawArg::Value { value, .. }) => value,
                    Some(RawArg::Word { word, .. }) => Expr::Lit(word),
                    Some(RawArg::Named { pos, .. }) => {
                        return Err(CmdError::ExpectedEndOfCommand { pos });
                    }
                };
                if let Some(extra) = parts.next() {
                    return Err(CmdError::ExpectedEndOfCommand {
                        pos: raw_pos(&extra),
                    });
                }
                Ok(Command::Local { name: var, value })
            }
            _ => Err(CmdError::BadCommandName {
                word: name.to_string(),
                pos,
            }),
        }
    }
}
