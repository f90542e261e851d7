//! mount(2) and umount2(2), with options parsed the way mount(8) splits them.

use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use tokio::time::Instant;

use crate::blocking::run_blocking;
use crate::{Error, Result};

/// Kernel flags plus the filesystem-specific data string of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    flags: MountFlags,
    data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MountFlags::empty(),
            data: Vec::new(),
        }
    }
}

/// Words that change what the mount call does rather than how the mount behaves; they have
/// dedicated functions here and must not sneak in through user-supplied options.
const OPERATION_WORDS: &[&str] = &[
    "bind",
    "rbind",
    "remount",
    "move",
    "shared",
    "rshared",
    "private",
    "rprivate",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
];

impl MountOptions {
    /// Parses option strings such as CSI mount flags (`["ro", "noatime,discard"]`). Each string
    /// may hold several comma-separated options; commas inside double quotes (SELinux
    /// `context="..."`) do not split. Flag words become kernel flags, everything else goes to the
    /// filesystem as data.
    pub fn parse<I, S>(options: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Self::default();
        for group in options {
            for option in split_options(group.as_ref())? {
                parsed.apply(option)?;
            }
        }
        Ok(parsed)
    }

    fn apply(&mut self, option: &str) -> Result<()> {
        if option.is_empty() {
            return Err(Error::invalid(option, "empty mount option"));
        }
        if option.contains('\0') {
            return Err(Error::invalid(option, "contains a NUL byte"));
        }
        if OPERATION_WORDS.contains(&option) {
            return Err(Error::invalid(
                option,
                "changes the kind of mount operation, which the caller chooses explicitly",
            ));
        }
        match flag_word(option) {
            Some((flag, true)) => self.flags.insert(flag),
            Some((flag, false)) => self.flags.remove(flag),
            None if option == "defaults" => {}
            None => self.data.push(option.to_owned()),
        }
        Ok(())
    }

    /// The same options, read-only.
    pub fn read_only(mut self) -> Self {
        self.flags.insert(MountFlags::RDONLY);
        self
    }

    pub fn is_read_only(&self) -> bool {
        self.flags.contains(MountFlags::RDONLY)
    }

    /// The filesystem-specific part, as passed to mount(2).
    pub fn data(&self) -> String {
        self.data.join(",")
    }

    pub fn flags(&self) -> MountFlags {
        self.flags
    }
}

/// Flag words and whether they set (true) or clear (false) the flag.
fn flag_word(option: &str) -> Option<(MountFlags, bool)> {
    Some(match option {
        "ro" => (MountFlags::RDONLY, true),
        "rw" => (MountFlags::RDONLY, false),
        "nosuid" => (MountFlags::NOSUID, true),
        "suid" => (MountFlags::NOSUID, false),
        "nodev" => (MountFlags::NODEV, true),
        "dev" => (MountFlags::NODEV, false),
        "noexec" => (MountFlags::NOEXEC, true),
        "exec" => (MountFlags::NOEXEC, false),
        "sync" => (MountFlags::SYNCHRONOUS, true),
        "async" => (MountFlags::SYNCHRONOUS, false),
        "dirsync" => (MountFlags::DIRSYNC, true),
        "noatime" => (MountFlags::NOATIME, true),
        "atime" => (MountFlags::NOATIME, false),
        "nodiratime" => (MountFlags::NODIRATIME, true),
        "diratime" => (MountFlags::NODIRATIME, false),
        "relatime" => (MountFlags::RELATIME, true),
        "norelatime" => (MountFlags::RELATIME, false),
        "strictatime" => (MountFlags::STRICTATIME, true),
        "nostrictatime" => (MountFlags::STRICTATIME, false),
        "lazytime" => (MountFlags::LAZYTIME, true),
        "nolazytime" => (MountFlags::LAZYTIME, false),
        "nosymfollow" => (MountFlags::NOSYMFOLLOW, true),
        "symfollow" => (MountFlags::NOSYMFOLLOW, false),
        _ => return None,
    })
}

/// Splits on commas outside double quotes.
fn split_options(group: &str) -> Result<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (index, character) in group.char_indices() {
        match character {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&group[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(Error::invalid(group, "unterminated double quote"));
    }
    parts.push(&group[start..]);
    Ok(parts)
}

/// How [`remount`] applies its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemountScope {
    /// Only this mount's per-mount flags (read-only, nosuid, ...); other mounts of the same
    /// filesystem keep theirs. This is what a bind mount needs.
    MountPoint,
    /// The filesystem itself (its superblock): affects every mount of it and accepts data.
    Filesystem,
}

/// How [`unmount`] detaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmountMode {
    /// Fail with [`Error::Busy`] while something uses the mount.
    Normal,
    /// `MNT_DETACH`: hide the mount now and let it go when the last user leaves. Only for callers
    /// that decided explicitly that a lingering filesystem is acceptable.
    Lazy,
}

/// What [`unmount`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    Done,
    /// The kernel said the path is not a mount point (EINVAL).
    NotMounted,
}

fn require_absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Err(Error::invalid(
            path.display().to_string(),
            "mount paths must be absolute",
        ))
    }
}

fn mount_error(op: &'static str, path: PathBuf, errno: Errno) -> Error {
    if errno == Errno::BUSY {
        Error::Busy { path }
    } else {
        Error::io(op, path, errno.into())
    }
}

/// Mounts the filesystem on `device` at `target`.
pub async fn mount_filesystem(
    device: &Path,
    target: &Path,
    fs_type: &str,
    options: &MountOptions,
    deadline: Instant,
) -> Result<()> {
    let device = require_absolute(device)?;
    let target = require_absolute(target)?;
    let fs_type = fs_type.to_owned();
    let (flags, data) = (options.flags, options.data());
    let op = format!("mounting {} at {}", device.display(), target.display());
    run_blocking(&op, deadline, move || {
        let data =
            std::ffi::CString::new(data).map_err(|e| Error::invalid("data", e.to_string()))?;
        rustix::mount::mount(&device, &target, fs_type.as_str(), flags, data.as_c_str())
            .map_err(|errno| mount_error("mount", target, errno))
    })
    .await
}

/// Bind-mounts `source` (a directory or a file) at `target`, then applies the per-mount flags of
/// `options` (read-only, nosuid, ...) with a bind remount. If that second step fails the bind
/// is undone, so a mount asked to be read-only is never left writable.
pub async fn bind_mount(
    source: &Path,
    target: &Path,
    options: &MountOptions,
    deadline: Instant,
) -> Result<()> {
    if !options.data.is_empty() {
        return Err(Error::invalid(
            options.data(),
            "a bind mount cannot take filesystem options",
        ));
    }
    let source = require_absolute(source)?;
    let target = require_absolute(target)?;
    let flags = options.flags;
    let op = format!("bind-mounting {} at {}", source.display(), target.display());
    run_blocking(&op, deadline, move || {
        rustix::mount::mount_bind(&source, &target)
            .map_err(|errno| mount_error("bind mount", target.clone(), errno))?;
        if flags.is_empty() {
            return Ok(());
        }
        if let Err(errno) = rustix::mount::mount_remount(&target, flags | MountFlags::BIND, "") {
            if let Err(undo) = rustix::mount::unmount(&target, UnmountFlags::NOFOLLOW) {
                tracing::error!(target = %target.display(), error = %undo,
                    "could not undo a bind mount whose flags failed to apply");
            }
            return Err(mount_error("remount bind", target, errno));
        }
        Ok(())
    })
    .await
}

/// Changes the options of an existing mount. The flags given replace the mount's current ones
/// (what is not set is cleared), as mount(2) defines for a remount.
pub async fn remount(
    target: &Path,
    options: &MountOptions,
    scope: RemountScope,
    deadline: Instant,
) -> Result<()> {
    let target = require_absolute(target)?;
    let (flags, data) = match scope {
        RemountScope::MountPoint if !options.data.is_empty() => {
            return Err(Error::invalid(
                options.data(),
                "filesystem options need RemountScope::Filesystem",
            ));
        }
        RemountScope::MountPoint => (options.flags | MountFlags::BIND, String::new()),
        RemountScope::Filesystem => (options.flags, options.data()),
    };
    let op = format!("remounting {}", target.display());
    run_blocking(&op, deadline, move || {
        rustix::mount::mount_remount(&target, flags, data.as_str())
            .map_err(|errno| mount_error("remount", target, errno))
    })
    .await
}

/// Unmounts `target` without following a symlink there.
pub async fn unmount(target: &Path, mode: UnmountMode, deadline: Instant) -> Result<Unmounted> {
    let target = require_absolute(target)?;
    let flags = match mode {
        UnmountMode::Normal => UnmountFlags::NOFOLLOW,
        UnmountMode::Lazy => UnmountFlags::NOFOLLOW | UnmountFlags::DETACH,
    };
    let op = format!("unmounting {}", target.display());
    run_blocking(&op, deadline, move || {
        match rustix::mount::unmount(&target, flags) {
            Ok(()) => Ok(Unmounted::Done),
            Err(Errno::INVAL) => Ok(Unmounted::NotMounted),
            Err(errno) => Err(mount_error("unmount", target, errno)),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_words_become_flags_and_the_rest_data() {
        let options = MountOptions::parse(["ro", "noatime,discard", "nouuid"]).unwrap();
        assert!(options.is_read_only());
        assert_eq!(options.flags(), MountFlags::RDONLY | MountFlags::NOATIME);
        assert_eq!(options.data(), "discard,nouuid");
    }

    #[test]
    fn later_words_override_earlier_ones_like_mount8() {
        let options = MountOptions::parse(["ro,nosuid", "rw,suid", "defaults"]).unwrap();
        assert_eq!(options.flags(), MountFlags::empty());
        assert_eq!(options.data(), "");
    }

    #[test]
    fn quoted_commas_stay_inside_one_option() {
        let options =
            MountOptions::parse([r#"context="system_u:object_r:container_file_t:s0:c1,c2",ro"#])
                .unwrap();
        assert!(options.is_read_only());
        assert_eq!(
            options.data(),
            r#"context="system_u:object_r:container_file_t:s0:c1,c2""#
        );
    }

    #[test]
    fn operation_words_empty_options_and_bad_quotes_are_refused() {
        for bad in [
            "bind",
            "ro,remount",
            "rshared",
            "a,,b",
            "",
            r#"context="x"#,
            "a\0b",
        ] {
            assert!(
                matches!(MountOptions::parse([bad]), Err(Error::InvalidOption { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn read_only_adds_the_flag() {
        let options = MountOptions::parse(["noexec"]).unwrap().read_only();
        assert_eq!(options.flags(), MountFlags::RDONLY | MountFlags::NOEXEC);
    }

    #[tokio::test]
    async fn relative_paths_are_refused_before_any_syscall() {
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let result = unmount(Path::new("relative/dir"), UnmountMode::Normal, deadline).await;
        assert!(matches!(result, Err(Error::InvalidOption { .. })));
    }

    #[tokio::test]
    async fn bind_mounts_refuse_filesystem_options() {
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let options = MountOptions::parse(["discard"]).unwrap();
        let result = bind_mount(Path::new("/a"), Path::new("/b"), &options, deadline).await;
        assert!(matches!(result, Err(Error::InvalidOption { .. })));
    }
}
