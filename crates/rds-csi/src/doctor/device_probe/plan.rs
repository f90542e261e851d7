//! The names one probe run works under and the exact commands it sends (pure).
//!
//! Every name derives from a random tag (`rds-csi-probe-<8 hex>`) and the validated volume
//! base path, so no user input reaches a command, and nothing the probe could touch can
//! belong to anyone else. Strings are quoted with [`routeros::quote::quote`].

use routeros::quote::{quote, regex_escape};
use routeros::{DirPath, FilePath, ItemId, Slot};

/// Start of every name the probe makes.
pub const TAG_PREFIX: &str = "rds-csi-probe-";
/// Size of the throwaway images.
pub const IMAGE_SIZE: u64 = 1 << 20;
/// Size asked for when adding a disk on an existing image: not the image's size, so a
/// truncation or a regrowth would show.
pub const ADOPTION_SIZE: u64 = 2 * IMAGE_SIZE;
/// The id of the missing-item probe. Ids count up from `*1`: a device reaches this one only
/// after some 268 million adds, and the probe checks that its own new disk's id is far below.
pub const MISSING_ID: &str = "*FFFFFFF";
/// The missing-id probe runs only when the device's newest id is below this.
pub const MISSING_ID_MARGIN: u64 = 0x0800_0000;

/// A name within the run: the slot `<tag>-<suffix>` and the image `<base>/<tag>-<suffix>.img`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// The baseline disk and its image.
    A,
    /// The second image, asked for in the baseline's slot.
    B,
    /// The slot that asks for the baseline's image while the baseline uses it.
    C,
    /// The slot that asks for the baseline's image after the baseline was removed.
    D,
    /// The far-too-large disk.
    Big,
    /// A slot never made.
    Missing,
}

impl Name {
    fn suffix(self) -> &'static str {
        match self {
            Name::A => "a",
            Name::B => "b",
            Name::C => "c",
            Name::D => "d",
            Name::Big => "big",
            Name::Missing => "missing",
        }
    }
}

/// The names and commands of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    tag: String,
    base: DirPath,
}

impl Plan {
    /// A plan under `base` whose tag carries `random` as 8 hex digits.
    pub fn new(base: DirPath, random: u32) -> Self {
        Self {
            tag: format!("{TAG_PREFIX}{random:08x}"),
            base,
        }
    }

    /// `rds-csi-probe-<8 hex>`: the start of every slot (and image name) of this run.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The start of every image path of this run: `<base>/<tag>`.
    pub fn image_prefix(&self) -> String {
        format!("{}/{}", self.base, self.tag)
    }

    pub fn slot(&self, name: Name) -> Slot {
        Slot::try_from(format!("{}-{}", self.tag, name.suffix())).expect("tag names are slots")
    }

    pub fn image(&self, name: Name) -> FilePath {
        FilePath::try_from(format!("{}-{}.img", self.image_prefix(), name.suffix()))
            .expect("tag names under a valid base are file paths")
    }

    /// Whether a slot is one of this run's (only those are ever removed).
    pub fn owns_slot(&self, slot: &str) -> bool {
        slot.strip_prefix(&self.tag)
            .is_some_and(|rest| rest.starts_with('-'))
    }

    /// Whether a file (as `/file` names it, with or without a leading `/`) is one of this
    /// run's images.
    pub fn owns_file(&self, name: &str) -> bool {
        let name = name.strip_prefix('/').unwrap_or(name);
        name.strip_prefix(&self.image_prefix())
            .is_some_and(|rest| rest.starts_with('-'))
    }

    /// Adds a file disk in `slot` backed by `image`, never exported, and prints its id.
    pub fn add(&self, slot: Name, image: Name, size: u64) -> String {
        format!(
            ":put [/disk add type=file slot={} file-path={} file-size={size} \
             mount-filesystem=no nvme-tcp-export=no]",
            quote(self.slot(slot).as_str()),
            quote(self.image(image).as_str()),
        )
    }

    /// Removes one disk by id (validated, needs no quoting).
    pub fn remove_by_id(&self, id: &ItemId) -> String {
        format!("/disk remove {id}")
    }

    /// Removes a disk by its slot name.
    pub fn remove_by_name(&self, name: Name) -> String {
        format!("/disk remove {}", quote(self.slot(name).as_str()))
    }

    /// Reads what the run has on the device: two JSON values, the disks whose slot starts
    /// with the tag and the files whose name starts with `<base>/<tag>`.
    pub fn read_state(&self) -> String {
        let disks = format!("^{}-", regex_escape(&self.tag));
        let files = format!("^/?{}-", regex_escape(&self.image_prefix()));
        format!(
            ":put [:serialize to=json [/disk print detail as-value where slot~{}]];\
             :put [:serialize to=json [/file print detail as-value where name~{}]]",
            quote(&disks),
            quote(&files)
        )
    }
}

/// The numeric value of an item id (`*1A` → 26).
pub fn id_number(id: &str) -> Option<u64> {
    u64::from_str_radix(id.strip_prefix('*')?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::new(DirPath::try_from("storage-pool/volumes").unwrap(), 0x1a2b3c)
    }

    #[test]
    fn names_derive_from_the_tag_and_the_base_path() {
        let plan = plan();
        assert_eq!(plan.tag(), "rds-csi-probe-001a2b3c");
        assert_eq!(plan.slot(Name::A).as_str(), "rds-csi-probe-001a2b3c-a");
        assert_eq!(
            plan.image(Name::Big).as_str(),
            "storage-pool/volumes/rds-csi-probe-001a2b3c-big.img"
        );
        assert!(plan.owns_slot("rds-csi-probe-001a2b3c-c"));
        assert!(!plan.owns_slot("rds-csi-probe-001a2b3cd"));
        assert!(!plan.owns_slot("pvc-1"));
        assert!(plan.owns_file("/storage-pool/volumes/rds-csi-probe-001a2b3c-a.img"));
        assert!(!plan.owns_file("storage-pool/rds-csi-probe-001a2b3c-a.img"));
        assert!(!plan.owns_file("storage-pool/volumes/rds-csi-probe-001a2b3c"));
    }

    #[test]
    fn commands_are_fixed_texts_with_quoted_names() {
        let plan = plan();
        assert_eq!(
            plan.add(Name::C, Name::A, 2 * IMAGE_SIZE),
            ":put [/disk add type=file slot=\"rds-csi-probe-001a2b3c-c\" \
             file-path=\"storage-pool/volumes/rds-csi-probe-001a2b3c-a.img\" file-size=2097152 \
             mount-filesystem=no nvme-tcp-export=no]"
        );
        assert_eq!(
            plan.remove_by_id(&ItemId::try_from(MISSING_ID).unwrap()),
            "/disk remove *FFFFFFF"
        );
        assert_eq!(
            plan.remove_by_name(Name::Missing),
            "/disk remove \"rds-csi-probe-001a2b3c-missing\""
        );
        assert_eq!(
            plan.read_state(),
            ":put [:serialize to=json [/disk print detail as-value where \
             slot~\"\\5Erds-csi-probe-001a2b3c-\"]];\
             :put [:serialize to=json [/file print detail as-value where \
             name~\"\\5E/\\3Fstorage-pool/volumes/rds-csi-probe-001a2b3c-\"]]"
        );
    }

    #[test]
    fn ids_read_as_numbers() {
        assert_eq!(id_number("*1A"), Some(26));
        assert_eq!(id_number(MISSING_ID), Some(0x0FFF_FFFF));
        assert_eq!(id_number("1A"), None);
        assert_eq!(id_number("*xyz"), None);
    }
}
