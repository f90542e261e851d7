//! The parsed form of a script: commands, values and conditions.

use regex::Regex;

use crate::state::SUBVOLUMES_SINCE_MINOR;
use crate::version::RouterOsVersion;

/// `/file copy` exists from RouterOS 7.23.
pub const FILE_COPY_SINCE_MINOR: u32 = 23;

/// A menu of the command tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Menu {
    Root,
    Disk,
    File,
    System,
    SystemResource,
    SystemIdentity,
    SystemClock,
    /// `/system health`: a list of sensors, printed only.
    SystemHealth,
    /// `/disk btrfs` (7.18+).
    DiskBtrfs,
    /// `/disk btrfs subvolume`: the pool's subvolumes and snapshots.
    DiskBtrfsSubvolume,
}

impl Menu {
    /// The submenu `name` of this menu on `version`.
    pub(crate) fn submenu(self, name: &str, version: &RouterOsVersion) -> Option<Menu> {
        match (self, name) {
            (Menu::Disk, "btrfs") if version.at_least(SUBVOLUMES_SINCE_MINOR) => {
                Some(Menu::DiskBtrfs)
            }
            (Menu::DiskBtrfs, "subvolume") => Some(Menu::DiskBtrfsSubvolume),
            (Menu::Root, "disk") => Some(Menu::Disk),
            (Menu::Root, "file") => Some(Menu::File),
            (Menu::Root, "system") => Some(Menu::System),
            (Menu::System, "resource") => Some(Menu::SystemResource),
            (Menu::System, "identity") => Some(Menu::SystemIdentity),
            (Menu::System, "clock") => Some(Menu::SystemClock),
            (Menu::System, "health") => Some(Menu::SystemHealth),
            _ => None,
        }
    }

    /// Whether this menu has command `verb` on `version`.
    pub(crate) fn has_verb(self, verb: &str, version: &RouterOsVersion) -> bool {
        let verbs: &[&str] = match self {
            Menu::Disk => &["add", "set", "remove", "print", "find", "get", "copy"],
            Menu::File if verb == "copy" => return version.at_least(FILE_COPY_SINCE_MINOR),
            Menu::File => &["remove", "print", "find", "get"],
            Menu::DiskBtrfsSubvolume => &["add", "remove", "print", "find", "get"],
            Menu::SystemResource | Menu::SystemClock => &["print", "get"],
            Menu::SystemIdentity => &["print", "get", "set"],
            Menu::SystemHealth => &["print"],
            Menu::Root | Menu::System | Menu::DiskBtrfs => &[],
        };
        verbs.contains(&verb)
    }

    /// Menus listing items (as opposed to settings menus).
    pub fn is_list(self) -> bool {
        matches!(self, Menu::Disk | Menu::File | Menu::DiskBtrfsSubvolume)
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
        fn in_test(t: &Test) -> usize {
            match t {
                Test::Value(e) => in_expr(e),
                Test::Num(_) | Test::Bool(_) => 0,
                Test::Not(a) => in_test(a),
                Test::And(a, b) | Test::Or(a, b) | Test::Compare(a, _, b) => {
                    in_test(a) + in_test(b)
                }
            }
        }
        fn in_command(c: &Command) -> usize {
            match c {
                // Both branches count: the delay is decided before the script runs.
                Command::If {
                    test,
                    then,
                    otherwise,
                } => in_test(test) + then.iter().chain(otherwise).map(in_command).sum::<usize>(),
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
                Command::Copy { item, name, .. } => in_expr(item) + in_expr(name),
                Command::BlockCopy { args } => args.iter().map(|a| in_expr(&a.value)).sum(),
                Command::Nop => 0,
            }
        }
        self.commands.iter().map(in_command).sum()
    }
}

impl Script {
    /// The literal arguments of a script that is one `/disk copy` and nothing else: such a
    /// copy runs outside the device lock (see [`crate::engine`]).
    pub fn lone_block_copy(&self) -> Option<Vec<(String, String)>> {
        let mut commands = self.commands.iter().filter(|c| !matches!(c, Command::Nop));
        let (Some(Command::BlockCopy { args }), None) = (commands.next(), commands.next()) else {
            return None;
        };
        args.iter()
            .map(|arg| match &arg.value {
                Expr::Lit(value) => Some((arg.name.clone(), value.clone())),
                Expr::Var(_) | Expr::Sub(_) => None,
            })
            .collect()
    }
}

impl Command {
    /// The menu of a menu command (`/disk add` → `/disk`); `None` for `:` commands.
    pub fn menu(&self) -> Option<Menu> {
        match self {
            Command::Add { menu, .. }
            | Command::Set { menu, .. }
            | Command::Remove { menu, .. }
            | Command::Print { menu, .. }
            | Command::Find { menu, .. }
            | Command::Get { menu, .. }
            | Command::Copy { menu, .. } => Some(*menu),
            Command::BlockCopy { .. } => Some(Menu::Disk),
            Command::Put(_)
            | Command::Serialize { .. }
            | Command::Len(_)
            | Command::Local { .. }
            | Command::If { .. }
            | Command::Nop => None,
        }
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

/// A comparison of an `:if` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    Eq,
    NotEq,
    Less,
    Greater,
    LessEq,
    GreaterEq,
}

/// An `:if` condition, in RouterOS expression syntax.
#[derive(Debug, Clone)]
pub enum Test {
    /// A `[command]`, `$variable` or quoted string.
    Value(Expr),
    Num(i64),
    Bool(bool),
    Not(Box<Test>),
    And(Box<Test>, Box<Test>),
    Or(Box<Test>, Box<Test>),
    Compare(Box<Test>, RelOp, Box<Test>),
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
    /// `:local` (`global: false`) or `:global`.
    Local {
        name: String,
        value: Expr,
        global: bool,
    },
    /// `:if (test) do={then} else={otherwise}`.
    If {
        test: Test,
        then: Vec<Command>,
        otherwise: Vec<Command>,
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
    /// `/file copy <item> name=<destination>`.
    Copy {
        menu: Menu,
        item: Expr,
        name: Expr,
    },
    /// `/disk copy src=… dst=…`: a block copy.
    BlockCopy {
        args: Vec<NamedArg>,
    },
    /// A bare menu path (changes the current menu) or an empty block.
    Nop,
}
