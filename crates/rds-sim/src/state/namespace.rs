//! Namespace identifiers (`device_uuid`, `device_nguid`): what an NVMe host compares on a
//! reconnect to decide whether a namespace is still the one it had. With the same
//! identifiers a device restart is invisible to the host (queued I/O completes, the block
//! device and its mounts live on); with new ones the host drops the namespace and every
//! mount on it dies. So each disk keeps its identifiers in the persisted state.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::State;

/// The identifiers a disk's namespace is exported with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NamespaceIds {
    /// `device_uuid`: a random (version 4) UUID.
    pub uuid: Id128,
    /// `device_nguid`: 16 random bytes.
    pub nguid: Id128,
}

impl NamespaceIds {
    /// New identifiers: random, so a disk removed and added again in the same slot (another
    /// volume) never looks like the old one to a host.
    pub fn random() -> Self {
        let mut uuid: [u8; 16] = rand::random();
        uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
        uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
        Self {
            uuid: Id128(uuid),
            nguid: Id128(rand::random()),
        }
    }
}

impl State {
    /// Gives every disk new identifiers, as a device that does not keep them does when it
    /// re-creates its exports (the `fresh-namespace-ids` quirk at start).
    pub fn renew_namespace_ids(&mut self) {
        let ids: Vec<u64> = self.disks.iter().map(|d| d.id).collect();
        for id in ids {
            self.disks
                .update(id, |disk| disk.namespace = NamespaceIds::random());
        }
    }
}

/// 16 bytes, written as a lowercase UUID string: the form nvmet accepts for both attributes
/// and Linux shows in `/sys/block/<dev>/{uuid,nguid}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id128(pub [u8; 16]);

impl fmt::Display for Id128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Id128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text is not an [`Id128`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID-shaped identifier (8-4-4-4-12 hex digits): {0:?}")]
pub struct BadId128(String);

impl FromStr for Id128 {
    type Err = BadId128;

    fn from_str(text: &str) -> Result<Self, BadId128> {
        let bad = || BadId128(text.to_string());
        let groups: Vec<&str> = text.split('-').collect();
        let shape = groups.iter().map(|g| g.len()).collect::<Vec<_>>();
        if shape != [8, 4, 4, 4, 12] {
            return Err(bad());
        }
        let hex = groups.concat();
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(Id128(bytes))
    }
}

impl Serialize for Id128 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id128 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{GIB, env, file_args, fresh};
    use super::super::{DiskArgs, Effect, Env};
    use super::*;
    use crate::quirks::Quirk;

    fn set(state: &mut State, id: u64, args: DiskArgs, env: &Env) -> Vec<Effect> {
        state.set_disk(id, &args, env).unwrap().1
    }

    fn export(on: bool) -> DiskArgs {
        DiskArgs {
            nvme_tcp_export: Some(on),
            ..DiskArgs::default()
        }
    }

    #[test]
    fn a_disk_keeps_its_ids_through_grows_reexports_and_comments() {
        let mut state = fresh();
        let (id, effects) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
        let ids = state.disk(id).unwrap().namespace;
        assert!(matches!(&effects[1], Effect::Export(spec) if spec.ids == ids));
        let grow = DiskArgs {
            file_size: Some(2 * GIB),
            ..DiskArgs::default()
        };
        assert!(
            matches!(&set(&mut state, id, grow, &env())[..], [_, Effect::Revalidate(spec)] if spec.ids == ids)
        );
        set(&mut state, id, export(false), &env());
        let effects = set(&mut state, id, export(true), &env());
        assert!(matches!(&effects[..], [Effect::Export(spec)] if spec.ids == ids));
        assert_eq!(state.disk(id).unwrap().namespace, ids);
    }

    #[test]
    fn fresh_namespace_ids_renew_at_each_export_only() {
        let quirky = Env {
            quirks: [Quirk::FreshNamespaceIds].into_iter().collect(),
            ..env()
        };
        let mut state = fresh();
        let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &quirky).unwrap();
        let first = state.disk(id).unwrap().namespace;
        let comment = DiskArgs {
            comment: Some("x".into()),
            ..DiskArgs::default()
        };
        assert!(set(&mut state, id, comment, &quirky).is_empty());
        assert_eq!(state.disk(id).unwrap().namespace, first, "no export made");
        set(&mut state, id, export(false), &quirky);
        let effects = set(&mut state, id, export(true), &quirky);
        let second = state.disk(id).unwrap().namespace;
        assert_ne!(second, first);
        assert!(matches!(&effects[..], [Effect::Export(spec)] if spec.ids == second));

        // A new port re-creates the export too.
        let port = DiskArgs {
            nvme_tcp_server_port: Some(4421),
            ..DiskArgs::default()
        };
        let effects = set(&mut state, id, port, &quirky);
        let third = state.disk(id).unwrap().namespace;
        assert_ne!(third, second);
        assert!(
            matches!(&effects[..], [Effect::Unexport(old), Effect::Export(new)] if old.ids == second && new.ids == third)
        );

        state.renew_namespace_ids();
        assert_ne!(state.disk(id).unwrap().namespace, third);
    }

    #[test]
    fn ids_print_as_uuids_and_parse_back() {
        let id = Id128([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
            0x66, 0x77,
        ]);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0011-223344556677");
        assert_eq!("01234567-89AB-cdef-0011-223344556677".parse(), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, r#""01234567-89ab-cdef-0011-223344556677""#);
        assert_eq!(serde_json::from_str::<Id128>(&json).unwrap(), id);
        for bad in [
            "",
            "0123456789abcdef0011223344556677",
            "01234567-89ab-cdef-0011-22334455667",
            "01234567-89ab-cdef-0011-22334455667g",
            "+1234567-89ab-cdef-0011-223344556677",
        ] {
            assert!(bad.parse::<Id128>().is_err(), "{bad}");
        }
    }

    #[test]
    fn random_ids_are_version_4_uuids_and_differ() {
        let a = NamespaceIds::random();
        let b = NamespaceIds::random();
        assert_ne!(a, b);
        assert_ne!(a.uuid, a.nguid);
        let text = a.uuid.to_string();
        assert_eq!(&text[14..15], "4", "{text}");
        assert!("89ab".contains(&text[19..20]), "{text}");
    }
}
