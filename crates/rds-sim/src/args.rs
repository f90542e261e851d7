//! Arguments of `/disk add|set` and `/system identity set`: which exist on
//! which version, and how their text becomes typed values. Shared by the
//! script parser/evaluator and REST so both accept exactly the same input.

use crate::error::CmdError;
use crate::state::{BlockCopyArgs, DiskArgs, SubvolumeArgs};
use crate::units::{parse_plain, parse_size};
use crate::version::RouterOsVersion;

/// Values of `/disk add type=`.
pub const DISK_TYPES: &[&str] = &[
    "raid",
    "nvme-tcp",
    "iscsi",
    "nfs",
    "smb",
    "partition",
    "tmpfs",
    "ramdisk",
    "crypted",
    "sshfs",
    "file",
    "hardware",
];

/// How an argument's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    Text,
    Enum(&'static [&'static str]),
    Bool,
    /// A byte count; accepts K/M/G/T binary suffixes.
    Size,
    /// A TCP port, 1..=65535.
    Port,
}

/// Whether a `/disk` command adds an item or changes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskVerb {
    Add,
    Set,
}

/// The kind of a `/disk add|set` argument, or `None` when the argument does
/// not exist on this version (the caller reports it).
pub fn disk_arg_kind(name: &str, verb: DiskVerb, version: &RouterOsVersion) -> Option<ArgKind> {
    let adding = verb == DiskVerb::Add;
    let kind = match name {
        "slot" | "comment" | "nvme-tcp-server-allow-host-name" => ArgKind::Text,
        "mount-read-only" | "nvme-tcp-export" | "iscsi-export" | "nfs-sharing" | "smb-sharing"
        | "media-sharing" => ArgKind::Bool,
        "nvme-tcp-server-port" => ArgKind::Port,
        "type" if adding => ArgKind::Enum(DISK_TYPES),
        "copy-from" if adding => ArgKind::Text,
        "file-path" if adding && version.has_file_disks() => ArgKind::Text,
        "file-offset" if adding && version.has_file_disks() => ArgKind::Size,
        "file-size" if version.has_file_disks() => ArgKind::Size,
        "swap" | "mount-filesystem" if version.has_file_disks() => ArgKind::Bool,
        "nvme-tcp-server-nqn" if version.has_server_nqn() => ArgKind::Text,
        _ => return None,
    };
    Some(kind)
}

/// A typed argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    Text(String),
    Bool(bool),
    Num(u64),
}

/// Reads `raw` as an argument of `kind`, with RouterOS's error texts.
pub fn convert(name: &str, kind: ArgKind, raw: &str) -> Result<ArgValue, CmdError> {
    match kind {
        ArgKind::Text => Ok(ArgValue::Text(raw.to_string())),
        ArgKind::Enum(values) => values
            .iter()
            .find(|v| **v == raw)
            .map(|v| ArgValue::Text((*v).to_string()))
            .ok_or_else(|| CmdError::NoMatchingValue(name.to_string())),
        ArgKind::Bool => match raw {
            "yes" | "true" => Ok(ArgValue::Bool(true)),
            "no" | "false" => Ok(ArgValue::Bool(false)),
            _ => Err(CmdError::NoMatchingValue(name.to_string())),
        },
        ArgKind::Size => parse_size(raw)
            .map(ArgValue::Num)
            .ok_or_else(|| CmdError::InvalidValue(name.to_string())),
        ArgKind::Port => parse_plain(raw)
            .filter(|p| (1..=65_535).contains(p))
            .map(ArgValue::Num)
            .ok_or_else(|| CmdError::InvalidValue(name.to_string())),
    }
}

/// Why a set of raw arguments was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// The argument does not exist (on this version).
    Unknown(String),
    Invalid(CmdError),
}

impl ArgsError {
    /// As the device says it.
    pub fn into_cmd_error(self) -> CmdError {
        match self {
            ArgsError::Invalid(e) => e,
            // The parser only lets known arguments through.
            ArgsError::Unknown(name) => CmdError::failure(format!("unknown argument {name}")),
        }
    }
}

/// Builds [`DiskArgs`] from `(name, text)` pairs.
pub fn disk_args<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    verb: DiskVerb,
    version: &RouterOsVersion,
) -> Result<DiskArgs, ArgsError> {
    let mut args = DiskArgs::default();
    for (name, raw) in pairs {
        let kind = disk_arg_kind(name, verb, version)
            .ok_or_else(|| ArgsError::Unknown(name.to_string()))?;
        let value = convert(name, kind, raw).map_err(ArgsError::Invalid)?;
        let text = |v: &ArgValue| match v {
            ArgValue::Text(s) => s.clone(),
            other => unreachable!("text argument converted to {other:?}"),
        };
        let flag = |v: &ArgValue| matches!(v, ArgValue::Bool(true));
        let num = |v: &ArgValue| match v {
            ArgValue::Num(n) => *n,
            other => unreachable!("numeric argument converted to {other:?}"),
        };
        match name {
            "type" => args.disk_type = Some(text(&value)),
            "slot" => args.slot = Some(text(&value)),
            "comment" => args.comment = Some(text(&value)),
            "file-path" => args.file_path = Some(text(&value)),
            "file-size" => args.file_size = Some(num(&value)),
            "file-offset" => args.file_offset = Some(num(&value)),
            "mount-filesystem" => args.mount_filesystem = Some(flag(&value)),
            "mount-read-only" => args.mount_read_only = Some(flag(&value)),
            "nvme-tcp-export" => args.nvme_tcp_export = Some(flag(&value)),
            "nvme-tcp-server-port" => {
                args.nvme_tcp_server_port =
                    Some(u16::try_from(num(&value)).expect("port range checked"))
            }
            "nvme-tcp-server-nqn" => args.nvme_tcp_server_nqn = Some(text(&value)),
            "nvme-tcp-server-allow-host-name" => {
                args.nvme_tcp_server_allow_host_name = Some(text(&value))
            }
            "iscsi-export" => args.iscsi_export = Some(flag(&value)),
            "nfs-sharing" => args.nfs_sharing = Some(flag(&value)),
            "smb-sharing" => args.smb_sharing = Some(flag(&value)),
            "media-sharing" => args.media_sharing = Some(flag(&value)),
            "swap" => args.swap = Some(flag(&value)),
            "copy-from" => args.copy_from = Some(text(&value)),
            other => unreachable!("argument {other} has a kind but no field"),
        }
    }
    Ok(args)
}

/// The kind of a `/disk btrfs subvolume add` argument.
pub fn subvolume_arg_kind(name: &str) -> Option<ArgKind> {
    match name {
        "fs" | "name" | "parent" => Some(ArgKind::Text),
        "read-only" => Some(ArgKind::Bool),
        _ => None,
    }
}

/// Builds [`SubvolumeArgs`] from `(name, text)` pairs.
pub fn subvolume_args<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<SubvolumeArgs, ArgsError> {
    let mut args = SubvolumeArgs::default();
    for (name, raw) in pairs {
        let kind = subvolume_arg_kind(name).ok_or_else(|| ArgsError::Unknown(name.to_string()))?;
        match (name, convert(name, kind, raw).map_err(ArgsError::Invalid)?) {
            ("fs", ArgValue::Text(v)) => args.fs = Some(v),
            ("name", ArgValue::Text(v)) => args.name = Some(v),
            ("parent", ArgValue::Text(v)) => args.parent = Some(v),
            ("read-only", ArgValue::Bool(v)) => args.read_only = Some(v),
            (other, value) => unreachable!("argument {other} converted to {value:?}"),
        }
    }
    Ok(args)
}

/// The kind of a `/disk copy` argument.
pub fn block_copy_arg_kind(name: &str) -> Option<ArgKind> {
    match name {
        "src" | "dst" => Some(ArgKind::Text),
        "src-offset" | "dst-offset" | "size" => Some(ArgKind::Size),
        _ => None,
    }
}

/// Builds [`BlockCopyArgs`] from `(name, text)` pairs.
pub fn block_copy_args<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BlockCopyArgs, ArgsError> {
    let mut args = BlockCopyArgs::default();
    for (name, raw) in pairs {
        let kind = block_copy_arg_kind(name).ok_or_else(|| ArgsError::Unknown(name.to_string()))?;
        match (name, convert(name, kind, raw).map_err(ArgsError::Invalid)?) {
            ("src", ArgValue::Text(v)) => args.src = Some(v),
            ("dst", ArgValue::Text(v)) => args.dst = Some(v),
            ("src-offset", ArgValue::Num(v)) => args.src_offset = v,
            ("dst-offset", ArgValue::Num(v)) => args.dst_offset = v,
            ("size", ArgValue::Num(v)) => args.size = Some(v),
            (other, value) => unreachable!("argument {other} converted to {value:?}"),
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> RouterOsVersion {
        s.parse().unwrap()
    }

    #[test]
    fn arguments_depend_on_version_and_verb() {
        let new = v("7.21.5");
        assert_eq!(
            disk_arg_kind("nvme-tcp-server-nqn", DiskVerb::Add, &new),
            Some(ArgKind::Text)
        );
        assert_eq!(
            disk_arg_kind("nvme-tcp-server-nqn", DiskVerb::Add, &v("7.20.2")),
            None
        );
        assert_eq!(disk_arg_kind("file-path", DiskVerb::Add, &v("7.16")), None);
        assert_eq!(
            disk_arg_kind("file-size", DiskVerb::Set, &new),
            Some(ArgKind::Size)
        );
        assert_eq!(disk_arg_kind("file-path", DiskVerb::Set, &new), None);
        assert_eq!(disk_arg_kind("type", DiskVerb::Set, &new), None);
        assert_eq!(disk_arg_kind("bogus", DiskVerb::Add, &new), None);
    }

    #[test]
    fn conversion_errors_use_device_texts() {
        assert_eq!(
            convert("type", ArgKind::Enum(DISK_TYPES), "file"),
            Ok(ArgValue::Text("file".into()))
        );
        assert_eq!(
            convert("type", ArgKind::Enum(DISK_TYPES), "floppy")
                .unwrap_err()
                .to_string(),
            "input does not match any value of type"
        );
        assert_eq!(
            convert("nvme-tcp-export", ArgKind::Bool, "maybe")
                .unwrap_err()
                .to_string(),
            "input does not match any value of nvme-tcp-export"
        );
        assert_eq!(
            convert("file-size", ArgKind::Size, "2G"),
            Ok(ArgValue::Num(2 << 30))
        );
        assert_eq!(
            convert("file-size", ArgKind::Size, "lots")
                .unwrap_err()
                .to_string(),
            "invalid value for argument file-size"
        );
        assert!(convert("nvme-tcp-server-port", ArgKind::Port, "0").is_err());
        assert!(convert("nvme-tcp-server-port", ArgKind::Port, "65536").is_err());
        assert_eq!(
            convert("nvme-tcp-server-port", ArgKind::Port, "4420"),
            Ok(ArgValue::Num(4420))
        );
    }

    #[test]
    fn pairs_build_typed_args() {
        let args = disk_args(
            [
                ("type", "file"),
                ("slot", "x"),
                ("file-path", "storage-pool/x.img"),
                ("file-size", "1G"),
                ("nvme-tcp-export", "yes"),
                ("nvme-tcp-server-port", "4420"),
                ("mount-filesystem", "false"),
            ],
            DiskVerb::Add,
            &v("7.21.5"),
        )
        .unwrap();
        assert_eq!(args.file_size, Some(1 << 30));
        assert_eq!(args.nvme_tcp_export, Some(true));
        assert_eq!(args.mount_filesystem, Some(false));
        assert_eq!(args.nvme_tcp_server_port, Some(4420));
        assert_eq!(
            disk_args([("nvme-tcp-server-nqn", "q")], DiskVerb::Add, &v("7.20")),
            Err(ArgsError::Unknown("nvme-tcp-server-nqn".into()))
        );
    }
}
