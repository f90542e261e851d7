//! Parses a script into commands. Like RouterOS, the whole script is parsed
//! before anything runs, so a syntax error means nothing was executed.

mod conditions;
mod globals;
mod print;
#[cfg(test)]
mod tests;

use super::ast::{Command, Expr, Menu, NamedArg, Script};
use super::lexer::{Tok, Token, lex};
use crate::args::{DiskVerb, block_copy_arg_kind, disk_arg_kind, subvolume_arg_kind};
use crate::error::{CmdError, Pos};
use crate::version::RouterOsVersion;

/// Parses `src` for the given RouterOS version.
pub fn parse(src: &str, version: &RouterOsVersion) -> Result<Script, CmdError> {
    let tokens = lex(src)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        version,
        menu: Menu::Root,
    };
    let commands = parser.statements(false)?;
    Ok(Script { commands })
}

struct Parser<'v> {
    tokens: Vec<Token>,
    at: usize,
    version: &'v RouterOsVersion,
    /// The current menu (a bare path statement changes it).
    menu: Menu,
}

/// One piece of an argument list before it is given meaning.
enum RawArg {
    Named { name: String, pos: Pos, value: Expr },
    Word { word: String, pos: Pos },
    Value { value: Expr, pos: Pos },
}

fn ends_command(tok: &Tok) -> bool {
    matches!(
        tok,
        Tok::Semi | Tok::Newline | Tok::RBracket | Tok::RBrace | Tok::Eof
    )
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.at]
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.at].clone();
        if token.tok != Tok::Eof {
            self.at += 1;
        }
        token
    }

    fn end_of_command(&self) -> CmdError {
        CmdError::ExpectedEndOfCommand {
            pos: self.peek().pos,
        }
    }

    /// Statements until end of input (or `}` inside a block).
    fn statements(&mut self, in_block: bool) -> Result<Vec<Command>, CmdError> {
        let mut commands = Vec::new();
        loop {
            match &self.peek().tok {
                Tok::Semi | Tok::Newline => {
                    self.next();
                }
                Tok::Eof if !in_block => return Ok(commands),
                Tok::RBrace if in_block => {
                    self.next();
                    return Ok(commands);
                }
                Tok::Eof => {
                    return Err(CmdError::Syntax {
                        pos: self.peek().pos,
                    });
                }
                Tok::LBrace => {
                    self.next();
                    let saved = self.menu;
                    commands.extend(self.statements(true)?);
                    self.menu = saved;
                }
                _ => {
                    let command = self.command(self.menu, true)?;
                    commands.push(command);
                    if !matches!(
                        self.peek().tok,
                        Tok::Semi | Tok::Newline | Tok::Eof | Tok::RBrace
                    ) {
                        return Err(self.end_of_command());
                    }
                    if self.peek().tok == Tok::RBrace && !in_block {
                        return Err(self.end_of_command());
                    }
                }
            }
        }
    }

    /// One command, relative to `menu`. `top` = a statement (not inside `[]`).
    fn command(&mut self, menu: Menu, top: bool) -> Result<Command, CmdError> {
        let token = self.next();
        let Tok::Word(word) = &token.tok else {
            return Err(CmdError::Syntax { pos: token.pos });
        };
        if let Some(name) = word.strip_prefix(':') {
            let pos = Pos {
                line: token.pos.line,
                column: token.pos.column + 1,
            };
            return self.global(name, pos, menu);
        }

        // Walk the path: slash-joined parts, then space-separated words.
        let mut current = if word.starts_with('/') {
            Menu::Root
        } else {
            menu
        };
        let mut column = token.pos.column;
        let mut verb: Option<(String, Pos)> = None;
        let joined = word.contains('/');
        for part in word.split('/') {
            let pos = Pos {
                line: token.pos.line,
                column,
            };
            column += part.chars().count() as u32 + 1;
            if part.is_empty() {
                continue;
            }
            if verb.is_some() {
                return Err(CmdError::Syntax { pos });
            }
            if let Some(sub) = current.submenu(part, self.version) {
                current = sub;
            } else if current.has_verb(part, self.version) {
                verb = Some((part.to_string(), pos));
            } else if joined {
                return Err(CmdError::Syntax { pos });
            } else {
                return Err(CmdError::BadCommandName {
                    word: part.to_string(),
                    pos,
                });
            }
        }
        while verb.is_none() {
            let Tok::Word(part) = self.peek().tok.clone() else {
                break;
            };
            let pos = self.peek().pos;
            if part.contains('/') || part.starts_with(':') {
                return Err(CmdError::Syntax { pos });
            }
            self.next();
            if let Some(sub) = current.submenu(&part, self.version) {
                current = sub;
            } else if current.has_verb(&part, self.version) {
                verb = Some((part, pos));
            } else {
                return Err(CmdError::BadCommandName { word: part, pos });
            }
        }
        let Some((verb, _)) = verb else {
            if !ends_command(&self.peek().tok) {
                return Err(CmdError::Syntax {
                    pos: self.peek().pos,
                });
            }
            if top {
                self.menu = current;
            }
            return Ok(Command::Nop);
        };
        self.verb(current, &verb)
    }

    fn verb(&mut self, menu: Menu, verb: &str) -> Result<Command, CmdError> {
        match verb {
            "find" => {
                if matches!(&self.peek().tok, Tok::Word(w) if w == "where") {
                    self.next();
                }
                let filter = self.condition(menu)?;
                Ok(Command::Find { menu, filter })
            }
            "print" => self.print(menu),
            _ => {
                let raw = self.raw_args(menu)?;
                match verb {
                    "add" if menu == Menu::DiskBtrfsSubvolume => Ok(Command::Add {
                        menu,
                        args: self.named_only(raw, |name, _| subvolume_arg_kind(name).is_some())?,
                    }),
                    "add" => Ok(Command::Add {
                        menu,
                        args: self.named_only(raw, |name, v| {
                            disk_arg_kind(name, DiskVerb::Add, v).is_some()
                        })?,
                    }),
                    "copy" if menu == Menu::Disk => Ok(Command::BlockCopy {
                        args: self
                            .named_only(raw, |name, _| block_copy_arg_kind(name).is_some())?,
                    }),
                    "copy" => self.copy(menu, raw),
                    "set" if menu == Menu::SystemIdentity => Ok(Command::Set {
                        menu,
                        items: None,
                        args: self.named_only(raw, |name, _| name == "name")?,
                    }),
                    "set" => {
                        let (items, args) = self.positional_then_named(raw, |name, v| {
                            disk_arg_kind(name, DiskVerb::Set, v).is_some()
                        })?;
                        let items =
                            items.ok_or_else(|| CmdError::MissingArguments("numbers".into()))?;
                        Ok(Command::Set {
                            menu,
                            items: Some(items),
                            args,
                        })
                    }
                    "remove" => {
                        let mut items = Vec::new();
                        for arg in raw {
                            match arg {
                                RawArg::Value { value, .. } => items.push(value),
                                RawArg::Word { word, .. } => items.push(Expr::Lit(word)),
                                RawArg::Named { pos, .. } => {
                                    return Err(CmdError::ExpectedEndOfCommand { pos });
                                }
                            }
                        }
                        if items.is_empty() {
                            return Err(CmdError::MissingArguments("numbers".into()));
                        }
                        Ok(Command::Remove { menu, items })
                    }
                    "get" => {
                        let mut values = Vec::new();
                        for arg in raw {
                            match arg {
                                RawArg::Value { value, pos } => values.push((value, pos)),
                                RawArg::Word { word, pos } => values.push((Expr::Lit(word), pos)),
                                RawArg::Named { name, value, pos } => match name.as_str() {
                                    "value-name" => values.push((value, pos)),
                                    "number" if menu.is_list() => values.insert(0, (value, pos)),
                                    _ => return Err(CmdError::ExpectedEndOfCommand { pos }),
                                },
                            }
                        }
                        let wanted = if menu.is_list() { 2 } else { 1 };
                        if let Some((_, pos)) = values.get(wanted) {
                            return Err(CmdError::ExpectedEndOfCommand { pos: *pos });
                        }
                        let mut values = values.into_iter().map(|(v, _)| v);
                        let item = if menu.is_list() { values.next() } else { None };
                        if menu.is_list() && item.is_none() {
                            return Err(CmdError::MissingArguments("number".into()));
                        }
                        Ok(Command::Get {
                            menu,
                            item,
                            name: values.next(),
                        })
                    }
                    other => unreachable!("menu {menu:?} lists verb {other} without a parser"),
                }
            }
        }
    }

    /// `copy <item> name=<destination>` (the item also as `numbers=`).
    fn copy(&self, menu: Menu, raw: Vec<RawArg>) -> Result<Command, CmdError> {
        let (item, args) = self.positional_then_named(raw, |name, _| name == "name")?;
        let item = item.ok_or_else(|| CmdError::MissingArguments("numbers".into()))?;
        let name = args
            .into_iter()
            .next()
            .ok_or_else(|| CmdError::MissingArguments("name".into()))?
            .value;
        Ok(Command::Copy { menu, item, name })
    }

    /// Reads the arguments of a command up to its end.
    fn raw_args(&mut self, menu: Menu) -> Result<Vec<RawArg>, CmdError> {
        let mut args = Vec::new();
        loop {
            let token = self.peek().clone();
            match &token.tok {
                t if ends_command(t) => return Ok(args),
                Tok::Word(word) => {
                    self.next();
                    if self.peek().tok == Tok::Eq && !self.peek().spaced {
                        self.next();
                        let value = self.value_after_eq(menu)?;
                        args.push(RawArg::Named {
                            name: word.clone(),
                            pos: token.pos,
                            value,
                        });
                    } else {
                        args.push(RawArg::Word {
                            word: word.clone(),
                            pos: token.pos,
                        });
                    }
                }
                Tok::Str(_) | Tok::Var(_) | Tok::LBracket => {
                    let value = self.value(menu)?;
                    args.push(RawArg::Value {
                        value,
                        pos: token.pos,
                    });
                }
                _ => return Err(self.end_of_command()),
            }
        }
    }

    /// The value after `name=`: empty when whitespace or the end follows, in
    /// which case another argument may not follow (as on the device).
    fn value_after_eq(&mut self, menu: Menu) -> Result<Expr, CmdError> {
        let token = self.peek().clone();
        if ends_command(&token.tok) {
            return Ok(Expr::Lit(String::new()));
        }
        if token.spaced {
            return Err(CmdError::ExpectedEndOfCommand { pos: token.pos });
        }
        self.value(menu)
    }

    /// A single value: word, string, variable or `[command]`.
    fn value(&mut self, menu: Menu) -> Result<Expr, CmdError> {
        let token = self.next();
        match token.tok {
            Tok::Word(w) => Ok(Expr::Lit(w)),
            Tok::Str(s) => Ok(Expr::Lit(s)),
            Tok::Var(v) => Ok(Expr::Var(v)),
            Tok::LBracket => {
                let inner = if matches!(self.peek().tok, Tok::RBracket) {
                    Command::Nop
                } else {
                    self.command(menu, false)?
                };
                if self.peek().tok != Tok::RBracket {
                    return Err(self.end_of_command());
                }
                self.next();
                Ok(Expr::Sub(Box::new(inner)))
            }
            _ => Err(CmdError::Syntax { pos: token.pos }),
        }
    }

    fn named_only(
        &self,
        raw: Vec<RawArg>,
        known: impl Fn(&str, &RouterOsVersion) -> bool,
    ) -> Result<Vec<NamedArg>, CmdError> {
        raw.into_iter()
            .map(|arg| match arg {
                RawArg::Named { name, value, pos } => {
                    if known(&name, self.version) {
                        Ok(NamedArg { name, value })
                    } else {
                        Err(CmdError::ExpectedEndOfCommand { pos })
                    }
                }
                other => Err(CmdError::ExpectedEndOfCommand {
                    pos: raw_pos(&other),
                }),
            })
            .collect()
    }

    /// One optional positional value (the items) followed by named arguments.
    fn positional_then_named(
        &self,
        raw: Vec<RawArg>,
        known: impl Fn(&str, &RouterOsVersion) -> bool,
    ) -> Result<(Option<Expr>, Vec<NamedArg>), CmdError> {
        let mut items = None;
        let mut named = Vec::new();
        for arg in raw {
            match arg {
                RawArg::Named { name, value, pos } => {
                    if name == "numbers" && items.is_none() {
                        items = Some(value);
                    } else if known(&name, self.version) {
                        named.push(NamedArg { name, value });
                    } else {
                        return Err(CmdError::ExpectedEndOfCommand { pos });
                    }
                }
                RawArg::Word { word, .. } if items.is_none() && named.is_empty() => {
                    items = Some(Expr::Lit(word))
                }
                RawArg::Value { value, .. } if items.is_none() && named.is_empty() => {
                    items = Some(value)
                }
                other => {
                    return Err(CmdError::ExpectedEndOfCommand {
                        pos: raw_pos(&other),
                    });
                }
            }
        }
        Ok((items, named))
    }
}

fn raw_pos(arg: &RawArg) -> Pos {
    match arg {
        RawArg::Named { pos, .. } | RawArg::Word { pos, .. } | RawArg::Value { pos, .. } => *pos,
    }
}
