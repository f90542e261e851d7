//! CSI volume names → RDS slots, NQNs and image paths.
//!
//! A `pvc-<uuid>` name (what external-provisioner sends) is used verbatim, which keeps volumes
//! made by the existing Go driver addressable without migration. Any other CSI name (opaque, up
//! to 128 bytes, any characters) maps deterministically to `csi-<32 hex digits of SHA-256>`.
//! Every disk the driver creates carries a comment recording the CSI name and a digest of the
//! request's parameters, so that a repeated CreateVolume can tell "same request" from "same
//! name, different request".

use sha2::{Digest, Sha256};

/// The volume-id shape (`pvc-<uuid>`, `csi-<hex>`) lives in the `nvme` crate, whose guard on
/// connects and disconnects needs it too: one rule for both.
pub use nvme::volume_id::{HASHED_PREFIX, PVC_PREFIX, is_managed_volume_id, is_pvc_name};

/// Slot prefixes the driver owns; nothing else is listed or deleted.
pub const MANAGED_SLOT_PREFIXES: [&str; 2] = [PVC_PREFIX, HASHED_PREFIX];
/// CSI's limit on names (bytes).
pub const MAX_NAME_BYTES: usize = 128;
/// Start of the comment on every disk the driver creates (see [`VolumeComment`]).
pub const COMMENT_PREFIX: &str = "rds-csi:v1 params=";
const COMMENT_NAME_TAG: &str = " name=";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("volume name is empty")]
    Empty,
    #[error("volume name is {0} bytes; CSI allows at most {MAX_NAME_BYTES}")]
    TooLong(usize),
    #[error("volume name contains a control character banned by CSI (U+{0:04X})")]
    BannedCharacter(u32),
}

/// Checks a CSI name against the spec's rules: non-empty, ≤128 bytes, none of the banned
/// control characters (U+0000–U+0008, U+000B, U+000C, U+000E–U+001F, U+007F–U+009F).
pub fn validate_csi_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(c) = name.chars().find(|&c| is_banned(c)) {
        return Err(NameError::BannedCharacter(c as u32));
    }
    Ok(())
}

fn is_banned(c: char) -> bool {
    matches!(c as u32, 0x00..=0x08 | 0x0B | 0x0C | 0x0E..=0x1F | 0x7F..=0x9F)
}

/// The volume id (= RDS slot) for a validated CSI name.
pub fn volume_id_for_name(name: &str) -> String {
    if is_pvc_name(name) {
        return name.to_owned();
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{HASHED_PREFIX}{hex}")
}

/// Id prefix of snapshots (the existing Go driver's `snap-` disks share it).
pub const SNAPSHOT_PREFIX: &str = "snap-";
/// The CSI names external-snapshotter gives snapshots: `snapshot-<uuid>`.
const SNAPSHOT_NAME_PREFIX: &str = "snapshot-";

/// The snapshot id for a validated CSI snapshot name: `snap-<uuid>` for external-snapshotter's
/// `snapshot-<uuid>`, else `snap-<32 hex digits of SHA-256>`. Deterministic, so a repeated
/// CreateSnapshot finds what an earlier try made.
pub fn snapshot_id_for_name(name: &str) -> String {
    if let Some(uuid) = name.strip_prefix(SNAPSHOT_NAME_PREFIX)
        && is_pvc_name(&format!("{PVC_PREFIX}{uuid}"))
    {
        return format!("{SNAPSHOT_PREFIX}{uuid}");
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{SNAPSHOT_PREFIX}{hex}")
}

/// True for the two shapes [`snapshot_id_for_name`] gives; nothing else is a snapshot of ours.
pub fn is_managed_snapshot_id(id: &str) -> bool {
    id.strip_prefix(SNAPSHOT_PREFIX).is_some_and(|rest| {
        is_pvc_name(&format!("{PVC_PREFIX}{rest}"))
            || is_managed_volume_id(&format!("{HASHED_PREFIX}{rest}"))
    })
}

/// The source volume of one of the existing Go driver's snapshots, from its id
/// `snap-<source uuid>-at-<hex>` (an unexported disk over `<base>/<id>.img`, made with
/// `copy-from`); `None` for anything else.
pub fn go_snapshot_source(id: &str) -> Option<String> {
    let (uuid, hash) = id.strip_prefix(SNAPSHOT_PREFIX)?.split_once("-at-")?;
    let source = format!("{PVC_PREFIX}{uuid}");
    let hash_ok = (1..=64).contains(&hash.len())
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (is_pvc_name(&source) && hash_ok).then_some(source)
}

/// What the driver records in the comment of a disk it creates:
/// `rds-csi:v1 params=<digest> name=<csi name>`. The name comes last because it may contain
/// any character, spaces and newlines included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeComment<'a> {
    /// Digest of the normalised StorageClass parameters ([`crate::params::VolumeParams::digest`]).
    pub params_digest: &'a str,
    /// The CSI name the volume was created for.
    pub name: &'a str,
}

impl<'a> VolumeComment<'a> {
    pub fn render(&self) -> String {
        format!(
            "{COMMENT_PREFIX}{}{COMMENT_NAME_TAG}{}",
            self.params_digest, self.name
        )
    }

    /// Reads a comment written by [`VolumeComment::render`]; anything else is `None` (a disk
    /// made by hand or by another driver, such as the Go driver, which wrote no comment).
    pub fn parse(comment: &'a str) -> Option<Self> {
        let rest = comment.strip_prefix(COMMENT_PREFIX)?;
        let (params_digest, name) = rest.split_once(COMMENT_NAME_TAG)?;
        let digest_ok = !params_digest.is_empty()
            && params_digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        digest_ok.then_some(Self {
            params_digest,
            name,
        })
    }
}

/// Marks the comment of a volume's disk while a block copy fills it (a restore or a clone
/// by `disk-copy`); the mark goes once the copy is whole.
const COPYING_MARK: &str = "rds-csi:copying ";

/// `comment` marked as a block copy under way.
pub fn copying_comment(comment: &str) -> String {
    format!("{COPYING_MARK}{comment}")
}

/// The comment under a block copy's mark, if `comment` carries the mark.
pub fn unmarked_comment(comment: &str) -> Option<&str> {
    comment.strip_prefix(COPYING_MARK)
}

/// The subsystem NQN of a volume: `<prefix>:<volume id>`.
pub fn nqn_for_volume(nqn_prefix: &str, volume_id: &str) -> String {
    format!("{nqn_prefix}:{volume_id}")
}

/// The image path of a volume, `<volume path>/<volume id>.img`, without a leading `/`.
pub fn image_path(volume_path: &str, volume_id: &str) -> String {
    format!("{}/{volume_id}.img", volume_path.trim_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_are_deterministic_and_recognised() {
        let uuid = "3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
        let id = snapshot_id_for_name(&format!("snapshot-{uuid}"));
        assert_eq!(id, format!("snap-{uuid}"));
        assert!(is_managed_snapshot_id(&id));
        let hashed = snapshot_id_for_name("nightly backup");
        assert_eq!(hashed, snapshot_id_for_name("nightly backup"));
        assert_ne!(hashed, snapshot_id_for_name("nightly backup 2"));
        assert_eq!(hashed.len(), "snap-".len() + 32);
        assert!(is_managed_snapshot_id(&hashed));
        // An upper-case or short uuid is not external-snapshotter's: hashed like any name.
        assert!(snapshot_id_for_name("snapshot-ABC").len() == 37);
        for other in [
            "snap-",
            "snap-xyz",
            "pvc-1",
            uuid,
            "snap-3F2A1C9E-0b7d-4e21-9a55-1d2c3b4a5f60",
        ] {
            assert!(!is_managed_snapshot_id(other), "{other}");
        }
        // The Go driver's: recognised as its, never as this driver's.
        let go = format!("snap-{uuid}-at-3a9f8c02d1");
        assert_eq!(go_snapshot_source(&go), Some(format!("pvc-{uuid}")));
        assert!(!is_managed_snapshot_id(&go));
        for other in [
            format!("snap-{uuid}-at-"),
            format!("snap-{uuid}-at-XYZ"),
            format!("snap-{uuid}"),
            "snap-1-at-ab".to_owned(),
        ] {
            assert_eq!(go_snapshot_source(&other), None, "{other}");
        }
    }

    const PVC: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";

    #[test]
    fn pvc_names_are_used_verbatim() {
        assert!(is_pvc_name(PVC));
        assert_eq!(volume_id_for_name(PVC), PVC);
        assert!(is_managed_volume_id(PVC));
    }

    #[test]
    fn near_pvc_names_are_hashed() {
        for name in [
            "pvc-3F2A1C9E-0B7D-4E21-9A55-1D2C3B4A5F60",
            "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f6",
            "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f600",
            "pvc-3f2a1c9e0b7d-4e21-9a55-1d2c3b4a5f60",
            "pvc-",
            "my volume",
        ] {
            assert!(!is_pvc_name(name), "{name}");
            let id = volume_id_for_name(name);
            assert!(id.starts_with(HASHED_PREFIX) && id.len() == 36, "{id}");
            assert!(is_managed_volume_id(&id));
        }
    }

    #[test]
    fn hashing_is_deterministic_and_distinct() {
        assert_eq!(volume_id_for_name("a"), volume_id_for_name("a"));
        assert_ne!(volume_id_for_name("a"), volume_id_for_name("b"));
        let hostile = "x\"; /disk remove [find]; $y\\\n{}ü";
        let id = volume_id_for_name(hostile);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }

    #[test]
    fn csi_name_rules() {
        assert_eq!(validate_csi_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_csi_name(&"a".repeat(129)),
            Err(NameError::TooLong(129))
        );
        assert!(validate_csi_name(&"a".repeat(128)).is_ok());
        assert_eq!(
            validate_csi_name("a\u{7}b"),
            Err(NameError::BannedCharacter(7))
        );
        assert_eq!(
            validate_csi_name("a\u{85}"),
            Err(NameError::BannedCharacter(0x85))
        );
        // Common whitespace and any other unicode are allowed.
        assert!(validate_csi_name("tab\there\nnewline ü 日本").is_ok());
    }

    #[test]
    fn foreign_ids_are_not_managed() {
        for id in ["storage-pool", "csi-xyz", "csi-", "", "../etc", "pvc-1"] {
            assert!(!is_managed_volume_id(id), "{id}");
        }
    }

    #[test]
    fn comment_round_trip() {
        for name in [
            "any name; [x]",
            "a name=with tags name=",
            "multi\nline ü",
            PVC,
        ] {
            let written = VolumeComment {
                params_digest: "0123456789abcdef",
                name,
            };
            let text = written.render();
            assert_eq!(VolumeComment::parse(&text), Some(written), "{text}");
        }
        for foreign in [
            "",
            "something else",
            "rds-csi:v1 params= name=x",
            "rds-csi:v1 params=XYZ name=x",
            "rds-csi:v1 params=abc",
        ] {
            assert_eq!(VolumeComment::parse(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn nqn_and_path() {
        assert_eq!(
            nqn_for_volume("nqn.2000-02.com.mikrotik", PVC),
            format!("nqn.2000-02.com.mikrotik:{PVC}")
        );
        assert_eq!(
            image_path("/storage-pool/k8s/", "v"),
            "storage-pool/k8s/v.img"
        );
    }
}
