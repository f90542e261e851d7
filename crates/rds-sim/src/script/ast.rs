//! The parsed form of a script: commands, values and conditions.

use regex::Regex;

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
    pub(crate) fn submenu(self, name: &str) -> Option<Menu> {
        match (self, name) {
            (Menu::Root, "disk") => Some(Menu::Disk),
            (Menu::Root, "file") => Some(Menu::File),
            (Menu::Root, "system") => Some(Menu::System),
            (Menu::System, "resource") => Some(Menu::SystemResource),
            (Menu::System, "identity") => Some(Menu::SystemIdentity),
            _ => None,
        }
    }

    pub(crate) fn has_verb(self, verb: &str) -> bool {
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
