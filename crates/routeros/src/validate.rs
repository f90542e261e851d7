//! Validated input newtypes. Everything the client sends to RouterOS passes through one of
//! these grammars first, so command text can never be steered by a caller's string.

use std::fmt;

use crate::error::Error;

/// Longest slot name we accept.
pub const MAX_SLOT_LEN: usize = 64;
/// Longest NQN allowed by the NVMe base specification.
pub const MAX_NQN_LEN: usize = 223;
/// Longest backing-file path we accept.
pub const MAX_FILE_PATH_LEN: usize = 1024;
/// Longest comment we accept (quoting may triple it on the wire).
pub const MAX_COMMENT_LEN: usize = 1024;

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn invalid(what: &str, value: &str, why: &str) -> Error {
    // Hostile input may be huge or contain control characters: show a bounded, escaped form.
    let shown: String = value.chars().take(80).collect();
    Error::Invalid(format!("invalid {what} {shown:?}: {why}"))
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(value: &str) -> Result<Self, Error> {
                $check(value).map($name)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(value: String) -> Result<Self, Error> {
                Self::try_from(value.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(value: &str) -> Result<Self, Error> {
                Self::try_from(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A `/disk` slot name: 1..=64 bytes of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
    Slot,
    check_slot
);
string_newtype!(
    /// A backing-file path in canonical form (no leading `/`): `/`-separated components of
    /// `[A-Za-z0-9._-]`, none empty, `.` or `..`, ending in `.img`. One leading `/` is
    /// accepted on input and dropped.
    FilePath,
    check_file_path
);
string_newtype!(
    /// A directory on the device in canonical form (no leading `/`): `/`-separated components
    /// of `[A-Za-z0-9._-]`, none empty, `.` or `..`. One leading `/` is accepted and dropped.
    DirPath,
    check_dir_path
);
string_newtype!(
    /// A RouterOS internal item id (`*1A`): `*` and 1..=16 hex digits.
    ItemId,
    check_item_id
);
string_newtype!(
    /// An NVMe Qualified Name of the form `nqn.YYYY-MM.reverse.domain:suffix`, at most 223 bytes.
    Nqn,
    check_nqn
);

string_newtype!(
    /// A btrfs subvolume name: the slot grammar (it names one directory of the pool).
    SubvolumeName,
    check_subvolume_name
);

fn check_subvolume_name(value: &str) -> Result<String, Error> {
    check_name("subvolume name", value)?;
    Ok(value.to_owned())
}

fn check_slot(value: &str) -> Result<String, Error> {
    check_name("slot", value)?;
    Ok(value.to_owned())
}

/// Slot grammar, shared by slots and pool (mount-point) names.
pub(crate) fn check_name(what: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid(what, value, "must not be empty"));
    }
    if value.len() > MAX_SLOT_LEN {
        return Err(invalid(what, value, "longer than 64 bytes"));
    }
    if !value.bytes().all(is_name_byte) {
        return Err(invalid(
            what,
            value,
            "allowed characters are A-Z a-z 0-9 . _ -",
        ));
    }
    if value.starts_with(['.', '-']) {
        return Err(invalid(what, value, "must not start with '.' or '-'"));
    }
    Ok(())
}

/// Validates a slot prefix used for listing: empty (all) or a slot-grammar string.
pub(crate) fn check_slot_prefix(prefix: &str) -> Result<(), Error> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_name("slot prefix", prefix)
}

fn check_item_id(value: &str) -> Result<String, Error> {
    let valid = value.strip_prefix('*').is_some_and(|hex| {
        (1..=16).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if !valid {
        return Err(invalid(
            "item id",
            value,
            "expected '*' and 1 to 16 hex digits",
        ));
    }
    Ok(value.to_owned())
}

fn check_dir_path(value: &str) -> Result<String, Error> {
    check_path_components("directory", value)
}

/// The grammar shared by directories and file paths; returns the canonical form.
fn check_path_components(what: &str, value: &str) -> Result<String, Error> {
    let canonical = value.strip_prefix('/').unwrap_or(value);
    if canonical.is_empty() {
        return Err(invalid(what, value, "must not be empty"));
    }
    if canonical.len() > MAX_FILE_PATH_LEN {
        return Err(invalid(what, value, "longer than 1024 bytes"));
    }
    for component in canonical.split('/') {
        if component.is_empty() {
            return Err(invalid(what, value, "empty path component"));
        }
        if component == "." || component == ".." {
            return Err(invalid(
                what,
                value,
                "'.' and '..' components are not allowed",
            ));
        }
        if !component.bytes().all(is_name_byte) {
            return Err(invalid(
                what,
                value,
                "allowed characters are A-Z a-z 0-9 . _ - and /",
            ));
        }
    }
    Ok(canonical.to_owned())
}

fn check_file_path(value: &str) -> Result<String, Error> {
    const WHAT: &str = "file path";
    let canonical = check_path_components(WHAT, value)?;
    let file_name = canonical.rsplit('/').next().unwrap_or(&canonical);
    if file_name.len() <= ".img".len() || !file_name.ends_with(".img") {
        return Err(invalid(WHAT, value, "must name a file ending in .img"));
    }
    Ok(canonical)
}

fn check_nqn(value: &str) -> Result<String, Error> {
    const WHAT: &str = "NQN";
    if value.len() > MAX_NQN_LEN {
        return Err(invalid(WHAT, value, "longer than 223 bytes"));
    }
    let rest = value
        .strip_prefix("nqn.")
        .ok_or_else(|| invalid(WHAT, value, "must start with 'nqn.'"))?;
    let date = rest.get(..7).unwrap_or("");
    let date_ok = date.len() == 7
        && date.as_bytes()[4] == b'-'
        && date[..4].bytes().all(|b| b.is_ascii_digit())
        && date[5..].bytes().all(|b| b.is_ascii_digit())
        && matches!(date[5..].parse::<u8>(), Ok(1..=12));
    if !date_ok {
        return Err(invalid(
            WHAT,
            value,
            "expected 'nqn.YYYY-MM.' with a month 01-12",
        ));
    }
    let rest = rest[7..]
        .strip_prefix('.')
        .ok_or_else(|| invalid(WHAT, value, "expected '.' after the date"))?;
    let (domain, suffix) = rest
        .split_once(':')
        .ok_or_else(|| invalid(WHAT, value, "expected ':' after the reverse domain"))?;
    let domain_ok = !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !domain_ok {
        return Err(invalid(
            WHAT,
            value,
            "reverse domain must be dot-separated labels of A-Z a-z 0-9 -",
        ));
    }
    if suffix.is_empty() {
        return Err(invalid(WHAT, value, "empty suffix after ':'"));
    }
    if !suffix.bytes().all(|b| is_name_byte(b) || b == b':') {
        return Err(invalid(WHAT, value, "suffix allows A-Z a-z 0-9 . _ : -"));
    }
    Ok(value.to_owned())
}

/// Validates an NVMe/TCP listener port.
pub(crate) fn check_port(port: u16) -> Result<u16, Error> {
    if port == 0 {
        return Err(Error::Invalid("invalid port 0: must be 1..=65535".into()));
    }
    Ok(port)
}

/// Comments are free text (quoting neutralises every byte) but bounded, and NUL is refused
/// because RouterOS strings are C strings on the device.
pub(crate) fn check_comment(comment: &str) -> Result<(), Error> {
    if comment.len() > MAX_COMMENT_LEN {
        return Err(invalid("comment", comment, "longer than 1024 bytes"));
    }
    if comment.contains('\0') {
        return Err(invalid("comment", comment, "must not contain NUL"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_grammar() {
        for ok in ["a", "pvc-0b1c", "A.b_c-d", "9", &"x".repeat(64), "a..b"] {
            assert_eq!(Slot::try_from(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            ".a",
            "-a",
            "a b",
            "a/b",
            "a\"",
            "ä",
            &"x".repeat(65),
            "a;b",
            "a\n",
        ] {
            assert!(
                matches!(Slot::try_from(bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn file_path_grammar_and_canonical_form() {
        let p = FilePath::try_from("/storage-pool/pvc-1.img").unwrap();
        assert_eq!(p.as_str(), "storage-pool/pvc-1.img");
        assert_eq!(FilePath::try_from("x.img").unwrap().as_str(), "x.img");
        assert_eq!(
            FilePath::try_from("a/b/c_d-e.f.img").unwrap().as_str(),
            "a/b/c_d-e.f.img"
        );
        for bad in [
            "",
            "/",
            "//a.img",
            "a//b.img",
            "a/../b.img",
            "./a.img",
            "a/.img",
            ".img",
            "a/b.raw",
            "a/b.img/",
            "a/b c.img",
            "a/b\".img",
            "a/b;.img",
            "a/ü.img",
            "a/b.IMG",
            "a/b.img\n",
            "\\a.img",
        ] {
            assert!(
                matches!(FilePath::try_from(bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
        let long = format!("{}/x.img", "a".repeat(MAX_FILE_PATH_LEN));
        assert!(FilePath::try_from(long.as_str()).is_err());
    }

    #[test]
    fn nqn_grammar() {
        for ok in [
            "nqn.2000-02.com.mikrotik:pvc-1",
            "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "nqn.2026-12.io.example-x:a.b_c:d",
        ] {
            assert_eq!(Nqn::try_from(ok).unwrap().as_str(), ok);
        }
        let max = format!("nqn.2000-02.com.x:{}", "a".repeat(MAX_NQN_LEN - 18));
        assert_eq!(max.len(), MAX_NQN_LEN);
        assert!(Nqn::try_from(max.as_str()).is_ok());
        let too_long = format!("{max}a");
        for bad in [
            "",
            "nqn",
            "nqn.",
            "nqn.200-02.com.x:a",
            "nqn.2000-13.com.x:a",
            "nqn.2000-00.com.x:a",
            "nqn.2000-2.com.x:a",
            "nqn.2000-02com.x:a",
            "nqn.2000-02.:a",
            "nqn.2000-02.com..x:a",
            "nqn.2000-02.com.x:",
            "nqn.2000-02.com.x",
            "nqn.2000-02.-com.x:a",
            "nqn.2000-02.com.x:a b",
            "nqn.2000-02.com.x:a\"",
            "NQN.2000-02.com.x:a",
            "nqn.2000-02.com.x:é",
            too_long.as_str(),
        ] {
            assert!(
                matches!(Nqn::try_from(bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ports_and_comments() {
        assert!(check_port(0).is_err());
        assert_eq!(check_port(4420).unwrap(), 4420);
        assert_eq!(check_port(65535).unwrap(), 65535);
        assert!(check_comment("any \"text\" ; [x] $y {z} \\ \n ünïcødé").is_ok());
        assert!(check_comment("").is_ok());
        assert!(check_comment(&"c".repeat(MAX_COMMENT_LEN)).is_ok());
        assert!(check_comment(&"c".repeat(MAX_COMMENT_LEN + 1)).is_err());
        assert!(check_comment("a\0b").is_err());
    }

    #[test]
    fn error_text_of_hostile_input_is_bounded() {
        let huge = "\"".repeat(10_000);
        let Err(Error::Invalid(msg)) = Slot::try_from(huge.as_str()) else {
            panic!("accepted");
        };
        assert!(msg.len() < 300, "{}", msg.len());
    }
}
