//! The shape of the volume ids this driver creates, the one rule both the NVMe guard here and
//! the CSI naming in `driver::naming` use: `pvc-<lowercase canonical UUID>` (the name
//! external-provisioner sends, used verbatim) or `csi-<32 lowercase hex digits>` (a digest of
//! any other name). Anything else was not made by this driver.

/// Id prefix of volumes whose CSI name was not a `pvc-<uuid>`.
pub const HASHED_PREFIX: &str = "csi-";
/// Id prefix of volumes named by external-provisioner.
pub const PVC_PREFIX: &str = "pvc-";
/// Hex digits after [`HASHED_PREFIX`].
pub const HASHED_DIGITS: usize = 32;

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True for `pvc-` followed by a lowercase canonical UUID, the form external-provisioner uses.
pub fn is_pvc_name(name: &str) -> bool {
    let Some(uuid) = name.strip_prefix(PVC_PREFIX) else {
        return false;
    };
    let groups: Vec<&str> = uuid.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    groups.len() == lens.len()
        && groups
            .iter()
            .zip(lens)
            .all(|(g, len)| g.len() == len && is_lower_hex(g))
}

/// True if `id` has the shape of a volume id the driver creates.
pub fn is_managed_volume_id(id: &str) -> bool {
    is_pvc_name(id)
        || id
            .strip_prefix(HASHED_PREFIX)
            .is_some_and(|hex| hex.len() == HASHED_DIGITS && is_lower_hex(hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_s_two_shapes_are_managed() {
        for id in [
            "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60",
            "csi-0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_managed_volume_id(id), "{id}");
        }
        assert!(is_pvc_name("pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60"));
    }

    #[test]
    fn near_misses_and_foreign_ids_are_not() {
        for id in [
            "pvc-3F2A1C9E-0B7D-4E21-9A55-1D2C3B4A5F60",
            "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f6",
            "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f600",
            "pvc-3f2a1c9e0b7d-4e21-9a55-1d2c3b4a5f60",
            "pvc-1",
            "pvc-",
            "csi-0123456789abcdef0123456789abcde",
            "csi-0123456789abcdef0123456789abcdeF",
            "csi-xyz",
            "csi-",
            "nixos-root",
            "storage-pool",
            "../etc",
            "",
        ] {
            assert!(!is_managed_volume_id(id), "{id:?}");
        }
    }
}
