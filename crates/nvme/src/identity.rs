//! The host NQN and host ID this node presents to targets.
//!
//! Both must be stable across restarts (the kernel treats a connect with another host NQN as a
//! different controller) and unique per node (nodes cloned from one image with the same
//! `/etc/nvme/hostnqn` confuse targets and their access lists). The configured files win; when
//! they are missing or hold a well-known placeholder, an identity is derived from the machine ID
//! or the DMI product UUID, and the result says where it came from so the caller can warn.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The NQN form for hosts identified by a UUID (NVMe base specification).
pub const UUID_NQN_PREFIX: &str = "nqn.2014-08.org.nvmexpress:uuid:";

/// An NQN is at most 223 bytes.
pub const MAX_NQN_LEN: usize = 223;

/// UUIDs that ship in firmware or images and therefore are not unique: all zeros, all ones,
/// and the default SMBIOS UUID of a widespread BIOS.
const PLACEHOLDER_UUIDS: &[&str] = &[
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "03000200-0400-0500-0006-000700080009",
];

/// Where the host identity files live.
#[derive(Debug, Clone)]
pub struct IdentityPaths {
    pub hostnqn: PathBuf,
    pub hostid: PathBuf,
    pub machine_id: PathBuf,
    pub product_uuid: PathBuf,
}

impl Default for IdentityPaths {
    fn default() -> Self {
        Self {
            hostnqn: "/etc/nvme/hostnqn".into(),
            hostid: "/etc/nvme/hostid".into(),
            machine_id: "/etc/machine-id".into(),
            product_uuid: "/sys/class/dmi/id/product_uuid".into(),
        }
    }
}

/// Explicit values (from configuration) that take precedence over the files.
#[derive(Debug, Clone, Default)]
pub struct IdentityOverride {
    pub nqn: Option<String>,
    pub id: Option<String>,
}

/// Where the host NQN came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    Configured,
    HostNqnFile(PathBuf),
    DerivedFromMachineId(PathBuf),
    DerivedFromProductUuid(PathBuf),
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configured => f.write_str("configuration"),
            Self::HostNqnFile(path) => write!(f, "{}", path.display()),
            Self::DerivedFromMachineId(path) => write!(f, "derived from {}", path.display()),
            Self::DerivedFromProductUuid(path) => write!(f, "derived from {}", path.display()),
        }
    }
}

/// Something about the identity an operator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityWarning {
    /// No host NQN file: ours is derived, and other NVMe tools on the node will present a
    /// different identity.
    NoHostNqnFile(PathBuf),
    /// A source held a value known to be shared by many machines; it was not used.
    Placeholder { path: PathBuf, value: String },
    /// A source could not be used (unreadable, malformed).
    Unusable { path: PathBuf, reason: String },
    /// No usable host ID file; the ID was taken from the NQN's UUID or derived.
    HostIdDerived,
}

impl fmt::Display for IdentityWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHostNqnFile(path) => {
                write!(f, "{} is missing; using a derived host NQN", path.display())
            }
            Self::Placeholder { path, value } => write!(
                f,
                "{} holds {value:?}, a placeholder shared by many machines; not used",
                path.display()
            ),
            Self::Unusable { path, reason } => {
                write!(f, "{} is unusable: {reason}", path.display())
            }
            Self::HostIdDerived => f.write_str("no usable host ID file; the host ID is derived"),
        }
    }
}

/// The identity to connect with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub nqn: String,
    /// A UUID, lowercase, hyphenated.
    pub id: String,
    pub source: IdentitySource,
    pub warnings: Vec<IdentityWarning>,
}

/// Whether `text` is a hyphenated UUID (any case).
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(index, c)| match index {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_placeholder_uuid(uuid: &str) -> bool {
    PLACEHOLDER_UUIDS.contains(&uuid.to_ascii_lowercase().as_str())
}

/// Whether a host NQN is a well-known placeholder (a UUID NQN with a placeholder UUID).
pub fn is_placeholder_nqn(nqn: &str) -> bool {
    nqn.strip_prefix(UUID_NQN_PREFIX)
        .is_some_and(is_placeholder_uuid)
}

/// Checks the form of an NQN used as host or subsystem name: non-empty, at most 223 bytes,
/// printable ASCII without spaces, and none of the characters that structure the fabrics
/// options string (`,` `=`).
pub fn validate_nqn(field: &'static str, nqn: &str) -> Result<()> {
    if nqn.is_empty() || nqn.len() > MAX_NQN_LEN {
        return Err(Error::invalid(
            field,
            format!("length must be 1..={MAX_NQN_LEN} bytes"),
        ));
    }
    if let Some(bad) = nqn
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == ',' || *c == '=')
    {
        return Err(Error::invalid(field, format!("contains {bad:?}")));
    }
    Ok(())
}

/// A UUID derived from `seed` by hashing: stable for a seed, unrelated across seeds, formatted
/// with the RFC 4122 variant and version 5 bits (name-based), SHA-256 instead of SHA-1.
pub fn derive_uuid(seed: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"rds-csi host identity\n")
        .chain_update(seed)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Reads a one-line file; `None` when it does not exist.
fn read_trimmed(path: &Path) -> std::result::Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.to_string()),
    }
}

/// A per-machine seed and where it came from.
fn machine_seed(
    paths: &IdentityPaths,
    warnings: &mut Vec<IdentityWarning>,
) -> Result<(String, IdentitySource)> {
    match read_trimmed(&paths.machine_id) {
        Ok(Some(id)) if id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) => {
            if id.chars().all(|c| c == '0') {
                warnings.push(IdentityWarning::Placeholder {
                    path: paths.machine_id.clone(),
                    value: id,
                });
            } else {
                return Ok((
                    id.to_ascii_lowercase(),
                    IdentitySource::DerivedFromMachineId(paths.machine_id.clone()),
                ));
            }
        }
        Ok(Some(other)) => warnings.push(IdentityWarning::Unusable {
            path: paths.machine_id.clone(),
            reason: format!("not a machine ID: {other:?}"),
        }),
        Ok(None) => {}
        Err(reason) => warnings.push(IdentityWarning::Unusable {
            path: paths.machine_id.clone(),
            reason,
        }),
    }
    match read_trimmed(&paths.product_uuid) {
        Ok(Some(uuid)) if is_uuid(&uuid) && !is_placeholder_uuid(&uuid) => Ok((
            uuid.to_ascii_lowercase(),
            IdentitySource::DerivedFromProductUuid(paths.product_uuid.clone()),
        )),
        Ok(Some(uuid)) if is_uuid(&uuid) => {
            warnings.push(IdentityWarning::Placeholder {
                path: paths.product_uuid.clone(),
                value: uuid,
            });
            Err(Error::Identity(
                "no machine ID and only a placeholder product UUID".into(),
            ))
        }
        Ok(other) => Err(Error::Identity(format!(
            "no usable {} and no usable {} ({other:?})",
            paths.machine_id.display(),
            paths.product_uuid.display()
        ))),
        Err(reason) => Err(Error::Identity(format!(
            "{}: {reason}",
            paths.product_uuid.display()
        ))),
    }
}

/// Determines this node's host NQN and host ID.
///
/// Order for the NQN: the override; `hostnqn` unless missing, malformed or a placeholder; else
/// `nqn.2014-08.org.nvmexpress:uuid:<derived>` from the machine ID, else from the product UUID.
/// Order for the ID: the override; `hostid` unless missing, malformed or a placeholder; the UUID
/// inside a UUID-form NQN; else derived from the NQN.
pub fn resolve_host_identity(
    paths: &IdentityPaths,
    overrides: &IdentityOverride,
) -> Result<HostIdentity> {
    let mut warnings = Vec::new();
    let (nqn, source) = if let Some(nqn) = &overrides.nqn {
        validate_nqn("configured host NQN", nqn)?;
        if is_placeholder_nqn(nqn) {
            return Err(Error::Identity(format!(
                "configured host NQN {nqn:?} is a placeholder"
            )));
        }
        (nqn.clone(), IdentitySource::Configured)
    } else {
        let from_file = match read_trimmed(&paths.hostnqn) {
            Ok(None) => {
                warnings.push(IdentityWarning::NoHostNqnFile(paths.hostnqn.clone()));
                None
            }
            Ok(Some(nqn)) if is_placeholder_nqn(&nqn) => {
                warnings.push(IdentityWarning::Placeholder {
                    path: paths.hostnqn.clone(),
                    value: nqn,
                });
                None
            }
            Ok(Some(nqn)) => match validate_nqn("host NQN", &nqn) {
                Ok(()) => Some(nqn),
                Err(error) => {
                    warnings.push(IdentityWarning::Unusable {
                        path: paths.hostnqn.clone(),
                        reason: error.to_string(),
                    });
                    None
                }
            },
            Err(reason) => {
                warnings.push(IdentityWarning::Unusable {
                    path: paths.hostnqn.clone(),
                    reason,
                });
                None
            }
        };
        match from_file {
            Some(nqn) => (nqn, IdentitySource::HostNqnFile(paths.hostnqn.clone())),
            None => {
                let (seed, source) = machine_seed(paths, &mut warnings)?;
                (
                    format!("{UUID_NQN_PREFIX}{}", derive_uuid(seed.as_bytes())),
                    source,
                )
            }
        }
    };

    let id = if let Some(id) = &overrides.id {
        if !is_uuid(id) || is_placeholder_uuid(id) {
            return Err(Error::Identity(format!(
                "configured host ID {id:?} is not a usable UUID"
            )));
        }
        id.to_ascii_lowercase()
    } else {
        match read_trimmed(&paths.hostid) {
            Ok(Some(id)) if is_uuid(&id) && !is_placeholder_uuid(&id) => id.to_ascii_lowercase(),
            found => {
                if let Ok(Some(value)) = found {
                    warnings.push(IdentityWarning::Placeholder {
                        path: paths.hostid.clone(),
                        value,
                    });
                }
                warnings.push(IdentityWarning::HostIdDerived);
                match nqn.strip_prefix(UUID_NQN_PREFIX) {
                    Some(uuid) if is_uuid(uuid) => uuid.to_ascii_lowercase(),
                    _ => derive_uuid(nqn.as_bytes()),
                }
            }
        }
    };
    Ok(HostIdentity {
        nqn,
        id,
        source,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn paths(&self) -> IdentityPaths {
            let at = |name: &str| self.dir.path().join(name);
            IdentityPaths {
                hostnqn: at("hostnqn"),
                hostid: at("hostid"),
                machine_id: at("machine-id"),
                product_uuid: at("product_uuid"),
            }
        }

        fn write(&self, name: &str, text: &str) -> &Self {
            std::fs::write(self.dir.path().join(name), text).unwrap();
            self
        }
    }

    const MACHINE_ID: &str = "4c4c4544004d3510804fb2c04f4a4d32\n";

    #[test]
    fn configured_files_win_and_are_trimmed() {
        let files = Files::new();
        files
            .write(
                "hostnqn",
                "nqn.2014-08.org.nvmexpress:uuid:2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f\n",
            )
            .write("hostid", "2B1C3F0E-8D7A-4E5B-9C6D-0A1B2C3D4E5F\n")
            .write("machine-id", MACHINE_ID);
        let identity = resolve_host_identity(&files.paths(), &IdentityOverride::default()).unwrap();
        assert_eq!(
            identity.nqn,
            "nqn.2014-08.org.nvmexpress:uuid:2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f"
        );
        assert_eq!(identity.id, "2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f");
        assert_eq!(
            identity.source,
            IdentitySource::HostNqnFile(files.paths().hostnqn)
        );
        assert!(identity.warnings.is_empty());
    }

    #[test]
    fn field_lesson_13_without_a_host_nqn_file_each_machine_derives_its_own_and_is_warned() {
        let files = Files::new();
        files.write("machine-id", MACHINE_ID);
        let first = resolve_host_identity(&files.paths(), &IdentityOverride::default()).unwrap();
        let again = resolve_host_identity(&files.paths(), &IdentityOverride::default()).unwrap();
        assert_eq!(first, again);
        assert!(first.nqn.starts_with(UUID_NQN_PREFIX));
        assert_eq!(
            first.nqn.strip_prefix(UUID_NQN_PREFIX),
            Some(first.id.as_str())
        );
        assert_eq!(
            first.source,
            IdentitySource::DerivedFromMachineId(files.paths().machine_id)
        );
        assert!(
            first
                .warnings
                .contains(&IdentityWarning::NoHostNqnFile(files.paths().hostnqn))
        );
        assert!(first.warnings.contains(&IdentityWarning::HostIdDerived));

        let other = Files::new();
        other.write("machine-id", "0123456789abcdef0123456789abcdef");
        let different =
            resolve_host_identity(&other.paths(), &IdentityOverride::default()).unwrap();
        assert_ne!(different.nqn, first.nqn);
    }

    #[test]
    fn field_lesson_13_a_placeholder_host_nqn_from_an_image_is_not_used() {
        let files = Files::new();
        files
            .write(
                "hostnqn",
                "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000000",
            )
            .write("machine-id", MACHINE_ID);
        let identity = resolve_host_identity(&files.paths(), &IdentityOverride::default()).unwrap();
        assert!(!is_placeholder_nqn(&identity.nqn));
        assert!(matches!(
            identity.source,
            IdentitySource::DerivedFromMachineId(_)
        ));
        assert!(
            identity
                .warnings
                .iter()
                .any(|w| matches!(w, IdentityWarning::Placeholder { .. }))
        );
    }

    #[test]
    fn product_uuid_is_the_fallback_unless_it_is_a_placeholder() {
        let files = Files::new();
        files.write("product_uuid", "5A0B1C2D-3E4F-5061-7283-94A5B6C7D8E9\n");
        let identity = resolve_host_identity(&files.paths(), &IdentityOverride::default()).unwrap();
        assert!(matches!(
            identity.source,
            IdentitySource::DerivedFromProductUuid(_)
        ));

        let placeholder = Files::new();
        placeholder
            .write("machine-id", "00000000000000000000000000000000")
            .write("product_uuid", "03000200-0400-0500-0006-000700080009");
        assert!(matches!(
            resolve_host_identity(&placeholder.paths(), &IdentityOverride::default()),
            Err(Error::Identity(_))
        ));
    }

    #[test]
    fn nothing_usable_is_an_error() {
        let files = Files::new();
        assert!(matches!(
            resolve_host_identity(&files.paths(), &IdentityOverride::default()),
            Err(Error::Identity(_))
        ));
    }

    #[test]
    fn overrides_are_validated_and_win() {
        let files = Files::new();
        files.write("machine-id", MACHINE_ID);
        let overrides = IdentityOverride {
            nqn: Some("nqn.2026-01.io.example:node-a".into()),
            id: None,
        };
        let identity = resolve_host_identity(&files.paths(), &overrides).unwrap();
        assert_eq!(identity.nqn, "nqn.2026-01.io.example:node-a");
        assert_eq!(identity.source, IdentitySource::Configured);
        assert!(is_uuid(&identity.id));

        for bad in [
            "nqn.x,traddr=1.2.3.4",
            "nqn x",
            "",
            "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000000",
        ] {
            let overrides = IdentityOverride {
                nqn: Some(bad.into()),
                id: None,
            };
            assert!(
                resolve_host_identity(&files.paths(), &overrides).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_host_nqn_not_in_uuid_form_gets_a_derived_id() {
        let files = Files::new();
        files.write("hostnqn", "nqn.2026-01.io.example:node-b");
        let identity = resolve_host_identity(&files.paths(), &IdentityOverride::default()).unwrap();
        assert_eq!(identity.id, derive_uuid(b"nqn.2026-01.io.example:node-b"));
    }

    #[test]
    fn derived_uuids_carry_version_and_variant_bits() {
        let uuid = derive_uuid(b"seed");
        assert!(is_uuid(&uuid));
        assert_eq!(&uuid[14..15], "5");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(derive_uuid(b"seed"), derive_uuid(b"seee"));
    }

    #[test]
    fn uuid_shapes() {
        assert!(is_uuid("2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f"));
        assert!(!is_uuid("2b1c3f0e8d7a4e5b9c6d0a1b2c3d4e5f"));
        assert!(!is_uuid("2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5g"));
    }
}
