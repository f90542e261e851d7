//! `:put`, `:serialize`, `:len`, `:local`/`:global` and `:if`.

use super::{Parser, RawArg, ends_command, raw_pos};
use crate::error::{CmdError, Pos};
use crate::script::ast::{Command, Expr, Menu};
use crate::script::lexer::Tok;

impl Parser<'_> {
    /// `:put`, `:serialize`, `:len`, `:local`/`:global`, `:if`.
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
                Ok(Command::Local {
                    name: var,
                    value,
                    global: name == "global",
                })
            }
            "if" => self.if_statement(menu),
            _ => Err(CmdError::BadCommandName {
                word: name.to_string(),
                pos,
            }),
        }
    }

    /// `:if (test) do={...} else={...}`; `else` is optional, the two in either order.
    fn if_statement(&mut self, menu: Menu) -> Result<Command, CmdError> {
        let open = self.next();
        if open.tok != Tok::LParen {
            return Err(CmdError::Syntax { pos: open.pos });
        }
        let test = self.test(menu)?;
        let close = self.next();
        if close.tok != Tok::RParen {
            return Err(CmdError::Syntax { pos: close.pos });
        }
        let (mut then, mut otherwise) = (None, None);
        while !ends_command(&self.peek().tok) {
            let token = self.next();
            let branch = match &token.tok {
                Tok::Word(w) if w == "do" && then.is_none() => &mut then,
                Tok::Word(w) if w == "else" && otherwise.is_none() => &mut otherwise,
                _ => return Err(CmdError::ExpectedEndOfCommand { pos: token.pos }),
            };
            // `do={`: a space after `=` would leave the value empty, as for any argument.
            for expected in [Tok::Eq, Tok::LBrace] {
                let token = self.next();
                if token.tok != expected || token.spaced {
                    return Err(CmdError::ExpectedEndOfCommand { pos: token.pos });
                }
            }
            *branch = Some(self.block(menu)?);
        }
        Ok(Command::If {
            test,
            then: then.ok_or_else(|| CmdError::MissingArguments("do".into()))?,
            otherwise: otherwise.unwrap_or_default(),
        })
    }

    /// The statements of a `{ ... }` after its opening brace, starting in `menu`; a menu
    /// change inside stays inside.
    fn block(&mut self, menu: Menu) -> Result<Vec<Command>, CmdError> {
        let outer = std::mem::replace(&mut self.menu, menu);
        let commands = self.statements(true);
        self.menu = outer;
        commands
    }
}
