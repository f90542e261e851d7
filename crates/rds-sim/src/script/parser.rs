//! Parses a script into commands. Like RouterOS, the whole script is parsed
//! before anything runs, so a syntax error means nothing was executed.

use regex::Regex;

use super::lexer::{Tok, Token, lex};
use crate::args::{DiskVerb, disk_arg_kind};
use crate::error::{CmdError, Pos};
use crate::records::{disk_property_names, file_property_names};
use crate::version::RouterOsVersion;

/// A menu of the command tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Menu {
    Root,
    Disk,
    File,
    System,
    SystemResource,
    SystemIdentity,
}

impl Menu {
    fn submenu(self, name: &str) -> Option<Menu> {
        match (self, name) {
            (Menu::Root, "disk") => Some(Menu::Disk),
            (Menu::Root, "file") => Some(Menu::File),
            (Menu::Root, "system") => Some(Menu::System),
            (Menu::System, "resource") => Some(Menu::SystemResource),
            (Menu::System, "identity") => Some(Menu::SystemIdentity),
            _ => None,
        }
    }

    fn has_verb(self, verb: &str) -> bool {
        let verbs: &[&str] = match self {
            Menu::Disk => &["add", "set", "remove", "print", "find", "get"],
            Menu::File => &["remove", "print", "find", "get"],
            Menu::SystemResource => &["print", "get"],
            Menu::SystemIdentity => &["print", "get", "set"],
            Menu::Root | Menu::System => &[],
        };
        verbs.contains(&verb)
    }

    /// Menus listing items (as opposed to settings menus).
    pub fn is_list(self) -> bool {
        matches!(self, Menu::Disk | Menu::File)
    }
}

/// A parsed script.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub commands: Vec<Command>,
}

impl Script {
    /// How many `/disk add` commands the script holds (nested ones included).
    pub fn count_disk_adds(&self) -> usize {
        fn in_expr(e: &Expr) -> usize {
            match e {
                Expr::Sub(c) => in_command(c),
                _ => 0,
            }
        }
        fn in_cond(c: &Cond) -> usize {
            match c {
                Cond::And(a, b) | Cond::Or(a, b) => in_cond(a) + in_cond(b),
                Cond::Not(a) => in_cond(a),
                Cond::Cmp { value, .. } => in_expr(value),
                Cond::Truthy(_) => 0,
            }
        }
        fn in_command(c: &Command) -> usize {
            match c {
                Command::Add { menu, args } => {
                    usize::from(*menu == Menu::Disk)
                        + args.iter().map(|a| in_expr(&a.value)).sum::<usize>()
                }
                Command::Put(e) | Command::Len(e) => in_expr(e),
                Command::Serialize { value, .. } => in_expr(value),
                Command::Local { value, .. } => in_expr(value),
                Command::Set { items, args, .. } => {
                    items.as_ref().map_or(0, in_expr)
                        + args.iter().map(|a| in_expr(&a.value)).sum::<usize>()
                }
                Command::Remove { items, .. } => items.iter().map(in_expr).sum(),
                Command::Print { filter, .. } | Command::Find { filter, .. } => {
                    filter.as_ref().map_or(0, in_cond)
                }
                Command::Get { item, name, .. } => {
                    item.as_ref().map_or(0, in_expr) + name.as_ref().map_or(0, in_expr)
                }
                Command::Nop => 0,
            }
        }
        self.commands.iter().map(in_command).sum()
    }
}

/// A value expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A literal (quoted or not).
    Lit(String),
    Var(String),
    /// `[command]`.
    Sub(Box<Command>),
}

/// `name=value`.
#[derive(Debug, Clone)]
pub struct NamedArg {
    pub name: String,
    pub value: Expr,
}

/// Options of `print`.
#[derive(Debug, Clone, Default)]
pub struct PrintOpts {
    pub detail: bool,
    pub terse: bool,
    pub as_value: bool,
    pub count_only: bool,
    pub show_ids: bool,
    pub proplist: Option<Expr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Match,
    Less,
    Greater,
}

/// A `where`/`find` condition.
#[derive(Debug, Clone)]
pub enum Cond {
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Cmp {
        prop: String,
        op: CmpOp,
        value: Expr,
        /// Compiled up front when the pattern is a literal.
        regex: Option<Regex>,
    },
    /// A bare property: true when it is a set flag / `yes`.
    Truthy(String),
}

/// One command.
#[derive(Debug, Clone)]
pub enum Command {
    Put(Expr),
    Serialize {
        value: Expr,
        to: Option<Expr>,
    },
    Len(Expr),
    Local {
        name: String,
        value: Expr,
    },
    Add {
        menu: Menu,
        args: Vec<NamedArg>,
    },
    Set {
        menu: Menu,
        items: Option<Expr>,
        args: Vec<NamedArg>,
    },
    Remove {
        menu: Menu,
        items: Vec<Expr>,
    },
    Print {
        menu: Menu,
        opts: PrintOpts,
        filter: Option<Cond>,
    },
    Find {
        menu: Menu,
        filter: Option<Cond>,
    },
    Get {
        menu: Menu,
        item: Option<Expr>,
        name: Option<Expr>,
    },
    /// A bare menu path (changes the current menu) or an empty block.
    Nop,
}

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
            if let Some(sub) = current.submenu(part) {
                current = sub;
            } else if current.has_verb(part) {
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
            if let Some(sub) = current.submenu(&part) {
                current = sub;
            } else if current.has_verb(&part) {
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
                    "add" => Ok(Command::Add {
                        menu,
                        args: self.named_only(raw, |name, v| {
                            disk_arg_kind(name, DiskVerb::Add, v).is_some()
                        })?,
                    }),
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

    /// `:put`, `:serialize`, `:len`, `:local`/`:global`.
    fn global(&mut self, name: &str, pos: Pos, menu: Menu) -> Result<Command, CmdError> {
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

    fn print(&mut self, menu: Menu) -> Result<Command, CmdError> {
        let mut opts = PrintOpts::default();
        let mut filter = None;
        loop {
            let token = self.peek().clone();
            if ends_command(&token.tok) {
                break;
            }
            let Tok::Word(word) = &token.tok else {
                return Err(self.end_of_command());
            };
            self.next();
            match word.as_str() {
                "where" if menu.is_list() => {
                    filter = self.condition(menu)?;
                    break;
                }
                "detail" => opts.detail = true,
                "terse" => opts.terse = true,
                "as-value" => opts.as_value = true,
                "count-only" => opts.count_only = true,
                "show-ids" => opts.show_ids = true,
                "without-paging" | "brief" => {}
                "proplist" if self.peek().tok == Tok::Eq && !self.peek().spaced => {
                    self.next();
                    opts.proplist = Some(self.value_after_eq(menu)?);
                }
                _ => return Err(CmdError::ExpectedEndOfCommand { pos: token.pos }),
            }
        }
        Ok(Command::Print { menu, opts, filter })
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

    /// A `where`/`find` condition up to the end of the command.
    fn condition(&mut self, menu: Menu) -> Result<Option<Cond>, CmdError> {
        if ends_command(&self.peek().tok) {
            return Ok(None);
        }
        let names = match menu {
            Menu::Disk => disk_property_names(self.version),
            Menu::File => file_property_names(),
            _ => {
                return Err(CmdError::Syntax {
                    pos: self.peek().pos,
                });
            }
        };
        let cond = self.or(menu, &names)?;
        if !ends_command(&self.peek().tok) {
            return Err(self.end_of_command());
        }
        Ok(Some(cond))
    }

    fn or(&mut self, menu: Menu, names: &[&str]) -> Result<Cond, CmdError> {
        let mut left = self.and(menu, names)?;
        while matches!(&self.peek().tok, Tok::Word(w) if w == "or") {
            self.next();
            let right = self.and(menu, names)?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, menu: Menu, names: &[&str]) -> Result<Cond, CmdError> {
        let mut left = self.unary(menu, names)?;
        loop {
            match &self.peek().tok {
                Tok::Word(w) if w == "and" => {
                    self.next();
                }
                // Juxtaposed conditions (`[find slot=a type=file]`) mean "and".
                Tok::Word(w) if w != "or" => {}
                Tok::Bang | Tok::LParen => {}
                _ => return Ok(left),
            }
            let right = self.unary(menu, names)?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self, menu: Menu, names: &[&str]) -> Result<Cond, CmdError> {
        let token = self.next();
        match token.tok {
            Tok::Bang => Ok(Cond::Not(Box::new(self.unary(menu, names)?))),
            Tok::Word(w) if w == "not" => Ok(Cond::Not(Box::new(self.unary(menu, names)?))),
            Tok::LParen => {
                let inner = self.or(menu, names)?;
                if self.next().tok != Tok::RParen {
                    return Err(CmdError::Syntax { pos: token.pos });
                }
                Ok(inner)
            }
            Tok::Word(prop) => {
                if !names.contains(&prop.as_str()) {
                    return Err(CmdError::Syntax { pos: token.pos });
                }
                let op = match self.peek().tok {
                    Tok::Eq => CmpOp::Eq,
                    Tok::NotEq => CmpOp::NotEq,
                    Tok::Tilde => CmpOp::Match,
                    Tok::Lt => CmpOp::Less,
                    Tok::Gt => CmpOp::Greater,
                    _ => return Ok(Cond::Truthy(prop)),
                };
                self.next();
                let value_pos = self.peek().pos;
                if ends_command(&self.peek().tok) {
                    return Err(CmdError::Syntax { pos: value_pos });
                }
                let value = self.value(menu)?;
                let regex = match (&value, op) {
                    (Expr::Lit(pattern), CmpOp::Match) => {
                        Some(Regex::new(pattern).map_err(|_| CmdError::Syntax { pos: value_pos })?)
                    }
                    _ => None,
                };
                Ok(Cond::Cmp {
                    prop,
                    op,
                    value,
                    regex,
                })
            }
            _ => Err(CmdError::Syntax { pos: token.pos }),
        }
    }
}

fn raw_pos(arg: &RawArg) -> Pos {
    match arg {
        RawArg::Named { pos, .. } | RawArg::Word { pos, .. } | RawArg::Value { pos, .. } => *pos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> RouterOsVersion {
        RouterOsVersion::default()
    }

    fn ok(src: &str) -> Script {
        parse(src, &v()).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn err(src: &str) -> String {
        parse(src, &v()).unwrap_err().to_string()
    }

    #[test]
    fn the_client_statements_parse() {
        let scripts = [
            ":put [:serialize to=json [/system resource print as-value]];:put [:serialize to=json [/system identity print as-value]]",
            ":put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]",
            ":put [:serialize to=json [/disk print detail as-value where type=file and slot~\"^pvc\\2D\"]]",
            ":put [:serialize to=json [/disk print detail as-value where mount-point=\"storage-pool\"]]",
            "/disk add type=file slot=\"pvc-1\" file-path=\"storage-pool/pvc-1.img\" file-size=1073741824 mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\" comment=\"x\";:put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]",
            "/disk set [find where slot=\"pvc-1\"] file-size=2147483648;:put 1",
            "/disk remove [find where slot=\"pvc-1\"]",
            ":put [:serialize to=json [/file print detail as-value where name=\"storage-pool/pvc-1.img\"]]",
            "/file remove [find where name=\"storage-pool/pvc-1.img\"]",
        ];
        for s in scripts {
            ok(s);
        }
        assert_eq!(ok(scripts[4]).commands.len(), 2);
        assert_eq!(ok(scripts[4]).count_disk_adds(), 1);
    }

    #[test]
    fn path_spellings_and_menu_changes() {
        assert!(matches!(
            ok("/disk/add type=file").commands[0],
            Command::Add {
                menu: Menu::Disk,
                ..
            }
        ));
        assert!(matches!(
            ok("/disk add type=file").commands[0],
            Command::Add {
                menu: Menu::Disk,
                ..
            }
        ));
        assert!(matches!(
            ok("/system/resource/print").commands[0],
            Command::Print {
                menu: Menu::SystemResource,
                ..
            }
        ));
        assert!(matches!(
            ok("/system resource print").commands[0],
            Command::Print {
                menu: Menu::SystemResource,
                ..
            }
        ));
        let script = ok("/disk\nprint\n:put [find]");
        assert!(matches!(
            script.commands[1],
            Command::Print {
                menu: Menu::Disk,
                ..
            }
        ));
        assert!(
            matches!(&script.commands[2], Command::Put(Expr::Sub(c)) if matches!(**c, Command::Find { menu: Menu::Disk, .. }))
        );
        assert_eq!(ok("{ :put 1; :put 2 }\n:put 3").commands.len(), 3);
    }

    #[test]
    fn unknown_words_and_arguments() {
        assert_eq!(err("/disk frob"), "bad command name frob (line 1 column 7)");
        assert_eq!(err("frob"), "bad command name frob (line 1 column 1)");
        assert_eq!(err(":frob 1"), "bad command name frob (line 1 column 2)");
        assert_eq!(err("/disk/frob"), "syntax error (line 1 column 7)");
        assert_eq!(
            err("/disk add bogus=1"),
            "expected end of command (line 1 column 11)"
        );
        assert_eq!(err(":put 1 2"), "expected end of command (line 1 column 8)");
        assert_eq!(
            err("/disk print where nosuch=1"),
            "syntax error (line 1 column 19)"
        );
        assert_eq!(
            err("/disk print sideways"),
            "expected end of command (line 1 column 13)"
        );
        assert_eq!(
            err(":put [/disk print"),
            "expected end of command (line 1 column 18)"
        );
        assert_eq!(err(":put 1]"), "expected end of command (line 1 column 7)");
        // An empty value followed by another argument.
        assert_eq!(
            err("/disk add comment= slot=x"),
            "expected end of command (line 1 column 20)"
        );
        assert_eq!(err("/disk set"), "missing value(s) of argument(s) numbers");
        assert_eq!(
            err(":serialize to=xml 1"),
            "input does not match any value of to"
        );
        assert_eq!(
            err("/disk print where slot~\"(\""),
            "syntax error (line 1 column 24)"
        );
    }

    #[test]
    fn version_switch_hides_arguments() {
        let src = "/disk add type=file slot=x nvme-tcp-server-nqn=\"q\"";
        assert!(parse(src, &v()).is_ok());
        let old: RouterOsVersion = "7.20.1".parse().unwrap();
        assert_eq!(
            parse(src, &old).unwrap_err().to_string(),
            "expected end of command (line 1 column 28)"
        );
        let older: RouterOsVersion = "7.16".parse().unwrap();
        assert_eq!(
            parse("/disk add type=file file-size=1G", &older)
                .unwrap_err()
                .to_string(),
            "expected end of command (line 1 column 21)"
        );
    }

    #[test]
    fn conditions_and_or_not_and_juxtaposition() {
        let script = ok("/disk print where slot=\"a\" and type=file or !(nvme-tcp-export)");
        let Command::Print {
            filter: Some(Cond::Or(left, right)),
            ..
        } = &script.commands[0]
        else {
            panic!("{script:?}")
        };
        assert!(matches!(**left, Cond::And(..)));
        assert!(matches!(**right, Cond::Not(_)));
        let script = ok(":put [/disk find slot=a type=file]");
        let Command::Put(Expr::Sub(find)) = &script.commands[0] else {
            panic!()
        };
        assert!(matches!(
            **find,
            Command::Find {
                filter: Some(Cond::And(..)),
                ..
            }
        ));
        let script = ok("/disk print where slot~\"^pvc-\"");
        let Command::Print {
            filter:
                Some(Cond::Cmp {
                    op: CmpOp::Match,
                    regex: Some(_),
                    ..
                }),
            ..
        } = &script.commands[0]
        else {
            panic!()
        };
    }

    #[test]
    fn statements_split_on_semicolons_and_newlines() {
        assert_eq!(ok(":put 1;:put 2\n:put 3\r\n\n;").commands.len(), 3);
        assert_eq!(
            err(":put 1\n:put 2 3"),
            "expected end of command (line 2 column 8)"
        );
    }

    #[test]
    fn set_get_and_remove_shapes() {
        let script = ok(
            "/disk set pvc-1 comment=x; /disk get pvc-1 file-size; /system identity get name; /disk remove a,b",
        );
        assert!(
            matches!(&script.commands[0], Command::Set { items: Some(Expr::Lit(s)), args, .. } if s == "pvc-1" && args.len() == 1)
        );
        assert!(matches!(
            &script.commands[1],
            Command::Get {
                item: Some(_),
                name: Some(_),
                ..
            }
        ));
        assert!(matches!(
            &script.commands[2],
            Command::Get {
                item: None,
                name: Some(_),
                ..
            }
        ));
        assert!(matches!(&script.commands[3], Command::Remove { items, .. } if items.len() == 1));
        assert!(matches!(
            &ok("/system identity set name=x").commands[0],
            Command::Set {
                menu: Menu::SystemIdentity,
                ..
            }
        ));
        assert_eq!(
            err("/system identity set bogus=x"),
            "expected end of command (line 1 column 22)"
        );
    }
}
