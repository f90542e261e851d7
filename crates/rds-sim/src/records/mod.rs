//! The printable view of the state: each item as an ordered list of typed
//! properties plus flags. The CLI formatters, `print as-value`, `where`
//! filters and REST all read items through this one view.

use crate::state::{Disk, DiskKind, Env, FileEntry, FileKind, PoolSettings, State, Subvolume};
use crate::units::{format_datetime, format_duration, group_digits, humanize_bytes};
use crate::version::RouterOsVersion;

/// A property value with the type that decides how it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// A string property: double-quoted in CLI output.
    Str(String),
    /// An enum or free text printed bare (`type=file`, `fs=-`, dates).
    Bare(String),
    /// A file path: printed bare.
    Path(String),
    Bool(bool),
    /// A plain number (ports, counts): never grouped.
    Num(u64),
    /// An exact byte count: digits grouped in human output (`10 737 418 240`).
    Bytes(u64),
    /// A byte count humanised in CLI output (`file-size=10.0GiB`).
    Size(u64),
    Percent(u64),
}

/// How a value is laid out in human CLI output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliStyle {
    /// `print detail`: quoted strings, grouped byte counts.
    Detail,
    /// `print terse`: quoted strings, plain numbers.
    Terse,
    /// Table cells and settings: unquoted, grouped byte counts.
    Plain,
}

impl Val {
    /// The text in human CLI output.
    pub fn cli(&self, style: CliStyle) -> String {
        match self {
            Val::Str(s) if style == CliStyle::Plain => s.clone(),
            Val::Str(s) => quote_cli(s),
            Val::Bare(s) | Val::Path(s) => s.clone(),
            Val::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
            Val::Num(n) => n.to_string(),
            Val::Bytes(n) if style == CliStyle::Terse => n.to_string(),
            Val::Bytes(n) => group_digits(*n),
            Val::Size(n) => humanize_bytes(*n),
            Val::Percent(n) => format!("{n}%"),
        }
    }

    /// The text REST replies carry and `where` compares: raw numbers,
    /// `true`/`false`, strings unquoted.
    pub fn raw(&self) -> String {
        match self {
            Val::Str(s) | Val::Bare(s) | Val::Path(s) => s.clone(),
            Val::Bool(b) => b.to_string(),
            Val::Num(n) | Val::Bytes(n) | Val::Size(n) | Val::Percent(n) => n.to_string(),
        }
    }
}

/// Quotes a string the way RouterOS prints it: `"`, `\` and `$` escaped,
/// common control characters as `\n` `\r` `\t`, other bytes outside
/// printable ASCII as `\XX`.
pub fn quote_cli(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{byte:02X}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// A flag: its legend letter and its name as a boolean property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    pub letter: char,
    pub name: &'static str,
}

const EMPTY: Flag = Flag {
    letter: 'E',
    name: "empty",
};
const BLOCK_DEVICE: Flag = Flag {
    letter: 'B',
    name: "block-device",
};
const MOUNTED: Flag = Flag {
    letter: 'M',
    name: "mounted",
};
const FORMATTING: Flag = Flag {
    letter: 'F',
    name: "formatting",
};
const RAID_MEMBER: Flag = Flag {
    letter: 'r',
    name: "raid-member",
};
const NVME_TCP_EXPORT: Flag = Flag {
    letter: 't',
    name: "nvme-tcp-export",
};
const ISCSI_EXPORT: Flag = Flag {
    letter: 'i',
    name: "iscsi-export",
};
const SMB_SHARING: Flag = Flag {
    letter: 's',
    name: "smb-sharing",
};
const NFS_SHARING: Flag = Flag {
    letter: 'n',
    name: "nfs-sharing",
};
const MEDIA_SHARING: Flag = Flag {
    letter: 'm',
    name: "media-sharing",
};

/// One printable item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Internal id (`*HEX`); `None` for settings menus.
    pub id: Option<u64>,
    /// Empty when there is none.
    pub comment: String,
    pub props: Vec<(&'static str, Val)>,
    /// Every flag of the menu, in legend order, with its state.
    pub flags: Vec<(Flag, bool)>,
}

impl Record {
    fn settings(props: Vec<(&'static str, Val)>) -> Self {
        Record {
            id: None,
            comment: String::new(),
            props,
            flags: Vec::new(),
        }
    }

    /// Letters of the flags that are set, in legend order.
    pub fn flag_letters(&self) -> String {
        self.flags
            .iter()
            .filter(|(_, on)| *on)
            .map(|(f, _)| f.letter)
            .collect()
    }

    /// A property, flag, `comment` or `.id` by name, as a value. Absent → `None`.
    pub fn get(&self, name: &str) -> Option<Val> {
        if name == ".id" {
            return self.id.map(|id| Val::Bare(format_id(id)));
        }
        if name == "comment" {
            return (!self.comment.is_empty()).then(|| Val::Str(self.comment.clone()));
        }
        if let Some((_, v)) = self.props.iter().find(|(k, _)| *k == name) {
            return Some(v.clone());
        }
        self.flags
            .iter()
            .find(|(f, _)| f.name == name)
            .map(|(_, on)| Val::Bool(*on))
    }

    /// All fields for machine output (`as-value`, REST): `.id`, the
    /// properties, `comment` when set, then flags not already present.
    pub fn fields(&self) -> Vec<(&'static str, Val)> {
        let mut out = Vec::with_capacity(self.props.len() + self.flags.len() + 2);
        if let Some(id) = self.id {
            out.push((".id", Val::Bare(format_id(id))));
        }
        out.extend(self.props.iter().cloned());
        if !self.comment.is_empty() {
            out.push(("comment", Val::Str(self.comment.clone())));
        }
        for (flag, on) in &self.flags {
            if !out.iter().any(|(k, _)| *k == flag.name) {
                out.push((flag.name, Val::Bool(*on)));
            }
        }
        out
    }
}

/// `*1A`: RouterOS's internal id text.
pub fn format_id(id: u64) -> String {
    format!("*{id:X}")
}

/// Parses `*1A` back to an id.
pub fn parse_id(text: &str) -> Option<u64> {
    let hex = text.strip_prefix('*')?;
    if hex.is_empty() {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// `prop=text` by the property's type: numbers numerically (suffixes
/// allowed), booleans as yes/no/true/false, paths with or without leading
/// `/`, ids by value; an absent property equals the empty string.
pub fn matches_text(prop: &str, value: Option<&Val>, text: &str) -> bool {
    let Some(value) = value else {
        return text.is_empty();
    };
    if prop == ".id" {
        let id = parse_id(&value.raw());
        return id.is_some() && id == parse_id(text);
    }
    match value {
        Val::Num(n) | Val::Bytes(n) | Val::Size(n) | Val::Percent(n) => {
            crate::units::parse_size(text) == Some(*n)
        }
        Val::Bool(b) => match text {
            "yes" | "true" => *b,
            "no" | "false" => !*b,
            _ => false,
        },
        Val::Path(p) => p.trim_start_matches('/') == text.trim_start_matches('/'),
        Val::Str(s) | Val::Bare(s) => s == text,
    }
}

/// A `/disk` item.
pub fn disk_record(state: &State, disk: &Disk, env: &Env) -> Record {
    let v = &env.version;
    let mut props: Vec<(&'static str, Val)> = Vec::with_capacity(32);
    let mut push = |name: &'static str, val: Val| props.push((name, val));
    let (is_raid, mounted) = match &disk.kind {
        DiskKind::Raid => {
            let size = state.pool.capacity;
            let free = state.pool_free(env);
            push("type", Val::Bare("raid".into()));
            push("slot", Val::Str(disk.slot.clone()));
            push("slot-default", Val::Str(String::new()));
            push("parent", Val::Str(String::new()));
            push("fs", Val::Bare("btrfs".into()));
            push("fs-label", Val::Str(state.pool.name.clone()));
            push("model", Val::Str(String::new()));
            push("serial", Val::Str(String::new()));
            push("size", Val::Bytes(size));
            push("free", Val::Bytes(free));
            let used = size - free.min(size);
            let percent = if size == 0 {
                0
            } else {
                (used as u128 * 100 / size as u128) as u64
            };
            push("use", Val::Percent(percent));
            push("mount-point", Val::Str(state.pool.name.clone()));
            push("mount-filesystem", Val::Bool(disk.mount_filesystem));
            push("mount-read-only", Val::Bool(disk.mount_read_only));
            if v.has_compress() {
                push("compress", Val::Bool(false));
            }
            push("sector-size", Val::Num(512));
            push("raid-type", Val::Bare("raid5".into()));
            push("raid-device-count", Val::Num(4));
            push("state", Val::Bare("clean".into()));
            push_exports(&mut push, disk, v);
            (true, true)
        }
        DiskKind::File { path, size, offset } => {
            push("type", Val::Bare("file".into()));
            push("slot", Val::Str(disk.slot.clone()));
            push("slot-default", Val::Str(String::new()));
            push("parent", Val::Str(String::new()));
            push("fs", Val::Bare("-".into()));
            push("model", Val::Str(format!("/{path}")));
            push("size", Val::Bytes(size.saturating_sub(*offset)));
            if v.has_file_disks() {
                push("mount-filesystem", Val::Bool(disk.mount_filesystem));
            }
            push("mount-read-only", Val::Bool(disk.mount_read_only));
            if v.has_compress() {
                push("compress", Val::Bool(false));
            }
            push("sector-size", Val::Num(512));
            push("raid-master", Val::Bare("none".into()));
            push_exports(&mut push, disk, v);
            push("media-interface", Val::Bare("none".into()));
            if v.has_file_disks() {
                push("swap", Val::Bool(disk.swap));
                push("file-path", Val::Path(format!("/{path}")));
                push("file-size", Val::Size(*size));
                push("file-offset", Val::Bytes(*offset));
            }
            (false, false)
        }
    };
    let flags = vec![
        (EMPTY, false),
        (BLOCK_DEVICE, true),
        (MOUNTED, mounted),
        (FORMATTING, false),
        (RAID_MEMBER, false),
        (NVME_TCP_EXPORT, disk.nvme_tcp_export && !is_raid),
        (ISCSI_EXPORT, disk.iscsi_export),
        (SMB_SHARING, disk.smb_sharing),
        (NFS_SHARING, disk.nfs_sharing),
        (MEDIA_SHARING, disk.media_sharing),
    ];
    Record {
        id: Some(disk.id),
        comment: disk.comment.clone(),
        props,
        flags,
    }
}

fn push_exports(push: &mut impl FnMut(&'static str, Val), disk: &Disk, v: &RouterOsVersion) {
    push("nvme-tcp-export", Val::Bool(disk.nvme_tcp_export));
    push(
        "nvme-tcp-server-port",
        Val::Num(u64::from(disk.nvme_tcp_server_port)),
    );
    if v.has_server_nqn() {
        push(
            "nvme-tcp-server-nqn",
            Val::Str(disk.nvme_tcp_server_nqn.clone()),
        );
    }
    push(
        "nvme-tcp-server-allow-host-name",
        Val::Str(disk.nvme_tcp_server_allow_host_name.clone()),
    );
    push("iscsi-export", Val::Bool(disk.iscsi_export));
    push("nfs-sharing", Val::Bool(disk.nfs_sharing));
    push("smb-sharing", Val::Bool(disk.smb_sharing));
    push("media-sharing", Val::Bool(disk.media_sharing));
}

/// A `/file` item.
pub fn file_record(file: &FileEntry) -> Record {
    let file_type = match file.kind {
        FileKind::Disk => "disk".to_string(),
        FileKind::Directory => "directory".to_string(),
        FileKind::File => {
            let base = file.name.rsplit('/').next().unwrap_or(&file.name);
            match base.rsplit_once('.') {
                Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => format!(".{ext} file"),
                _ => "file".to_string(),
            }
        }
    };
    Record {
        id: Some(file.id),
        comment: String::new(),
        props: vec![
            ("name", Val::Bare(file.name.clone())),
            ("type", Val::Bare(file_type)),
            ("size", Val::Size(file.size)),
            ("last-modified", Val::Bare(format_datetime(file.modified))),
        ],
        flags: Vec::new(),
    }
}

/// A `/disk btrfs subvolume` item of the pool's filesystem (labelled with the pool's name).
pub fn subvolume_record(pool: &str, subvolume: &Subvolume) -> Record {
    Record {
        id: Some(subvolume.id),
        comment: String::new(),
        props: vec![
            ("fs", Val::Bare(pool.to_string())),
            ("name", Val::Str(subvolume.name.clone())),
            ("parent", Val::Str(subvolume.parent.clone())),
            ("read-only", Val::Bool(subvolume.read_only)),
        ],
        flags: Vec::new(),
    }
}

/// The properties a `/disk btrfs subvolume` condition may name.
pub fn subvolume_property_names() -> Vec<&'static str> {
    vec!["fs", "name", "parent", "read-only"]
}

/// What `/system resource` reports besides constants.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub version: RouterOsVersion,
    pub uptime_seconds: u64,
}

const TOTAL_MEMORY: u64 = 32 << 30;
const TOTAL_HDD: u64 = 1 << 30;

/// `/system resource`: fixed RDS2216-like hardware numbers.
pub fn resource_record(info: &ResourceInfo) -> Record {
    Record::settings(vec![
        ("uptime", Val::Bare(format_duration(info.uptime_seconds))),
        ("version", Val::Str(info.version.resource_text())),
        ("build-time", Val::Bare("2026-01-01 00:00:00".into())),
        ("factory-software", Val::Str("7.15".into())),
        ("free-memory", Val::Size(TOTAL_MEMORY - (3 << 30))),
        ("total-memory", Val::Size(TOTAL_MEMORY)),
        ("cpu", Val::Str("ARM64".into())),
        ("cpu-count", Val::Num(16)),
        ("cpu-frequency", Val::Num(2000)),
        ("cpu-load", Val::Percent(1)),
        ("free-hdd-space", Val::Size(TOTAL_HDD - (300 << 20))),
        ("total-hdd-space", Val::Size(TOTAL_HDD)),
        ("architecture-name", Val::Str("arm64".into())),
        ("board-name", Val::Str("RDS2216".into())),
        ("platform", Val::Str("MikroTik".into())),
    ])
}

/// `/system clock`: the device's wall clock, in UTC (the simulator has no time zone).
/// `date` and `time` are the 7.10+ forms, the same as `last-modified` of files.
pub fn clock_record(now: u64) -> Record {
    let text = format_datetime(now);
    let (date, time) = text.split_once(' ').unwrap_or((&text, ""));
    Record::settings(vec![
        ("time", Val::Bare(time.to_owned())),
        ("date", Val::Bare(date.to_owned())),
        ("time-zone-autodetect", Val::Bool(false)),
        ("time-zone-name", Val::Str("UTC".into())),
        ("gmt-offset", Val::Bare("+00:00".into())),
        ("dst-active", Val::Bool(false)),
    ])
}

/// `/system identity`.
pub fn identity_record(state: &State) -> Record {
    Record::settings(vec![("name", Val::Str(state.identity.clone()))])
}

/// The `/disk` property and flag names that exist on this version (what
/// `where` and `proplist` accept), taken from sample items so the list can
/// never drift from what is printed.
pub fn disk_property_names(version: &RouterOsVersion) -> Vec<&'static str> {
    let env = Env {
        version: version.clone(),
        now: 0,
        pool_full: false,
        quirks: Default::default(),
        pool_used: 0,
    };
    let mut state = State::new(
        PoolSettings {
            name: "p".into(),
            capacity: 2,
        },
        "x",
        0,
    );
    let raid = Disk::clone(state.disks.iter().next().unwrap());
    let mut file = raid.clone();
    file.id = raid.id + 1;
    file.kind = DiskKind::File {
        path: "p/f".into(),
        size: 1,
        offset: 0,
    };
    state.disks.put(file.clone());
    let mut names = vec![".id", "comment"];
    for disk in [&raid, &file] {
        for (name, _) in disk_record(&state, disk, &env).fields() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// The `/file` property names.
pub fn file_property_names() -> Vec<&'static str> {
    let sample = FileEntry {
        id: 1,
        name: String::new(),
        kind: FileKind::File,
        size: 0,
        modified: 0,
    };
    file_record(&sample)
        .fields()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[cfg(test)]
mod tests;
