//! SSH script text for each operation (the wire contract's exact forms).
//!
//! Arguments arrive as validated newtypes; every string is additionally quoted with
//! [`quote`], so nothing here can produce a script other than the one intended.

use crate::model::CreateDisk;
use crate::quote::{quote, regex_escape};
use crate::validate::{DirPath, FilePath, ItemId, Slot};

/// `:put` a value as one line of JSON.
pub(crate) fn put_json(print: &str) -> String {
    format!(":put [:serialize to=json [{print}]]")
}

pub(crate) fn print_disk(slot: &Slot) -> String {
    put_json(&format!(
        "/disk print detail as-value where slot={}",
        quote(slot.as_str())
    ))
}

/// Resource then identity: two JSON values.
pub fn system_info() -> String {
    format!(
        "{};{}",
        put_json("/system resource print as-value"),
        put_json("/system identity print as-value")
    )
}

/// Every `/system health` sensor.
pub fn system_health() -> String {
    put_json("/system health print as-value")
}

pub fn get_disk(slot: &Slot) -> String {
    print_disk(slot)
}

/// `prefix` must already satisfy the slot-prefix grammar; it is regex-escaped and quoted.
pub fn list_disks(prefix: &str) -> String {
    let pattern = format!("^{}", regex_escape(prefix));
    put_json(&format!(
        "/disk print detail as-value where type=file and slot~{}",
        quote(&pattern)
    ))
}

/// `pool` must satisfy the slot grammar.
pub fn pool(pool: &str) -> String {
    put_json(&format!(
        "/disk print detail as-value where mount-point={}",
        quote(pool)
    ))
}

/// `[/disk find where slot="..."]`.
pub(crate) fn find_slot(slot: &Slot) -> String {
    format!("[/disk find where slot={}]", quote(slot.as_str()))
}

/// The file at `path`, whether the device names files with or without a leading `/`.
pub(crate) fn find_file(path: &FilePath) -> String {
    let pattern = format!("^/?{}$", regex_escape(path.as_str()));
    format!("[/file find where name~{}]", quote(&pattern))
}

/// Every disk backed by a file with the same name as `path`, in any directory and in either
/// spelling of `file-path`: wider than needed, so a check on it can only err on keeping.
fn find_image_users(path: &FilePath) -> String {
    let name = path.as_str().rsplit('/').next().unwrap_or(path.as_str());
    let pattern = format!("(^|/){}$", regex_escape(name));
    format!("[/disk find where file-path~{}]", quote(&pattern))
}

/// Printed by [`remove_unused_image`] when a disk still uses the image.
pub const IMAGE_IN_USE: &str = "image-in-use";

/// Removes the image only if, at that moment, no disk is backed by a file of its name;
/// otherwise prints [`IMAGE_IN_USE`] as a JSON string. The check runs in the same script as the
/// removal, so no disk made since the caller looked can lose its image.
pub fn remove_unused_image(path: &FilePath) -> String {
    format!(
        ":if ([:len {}] = 0) do={{/file remove {}}} else={{:put [:serialize to=json \"{IMAGE_IN_USE}\"]}}",
        find_image_users(path),
        find_file(path)
    )
}

/// The guarded add (see [`crate::model::AddReport`]), in one exec: the ids holding the slot and
/// the files at the image path, the add's new id only when both were empty, then the slot's
/// items as read back. Four JSON values when it added, three when it did not; a failing add
/// aborts the read-back. The look-ups are repeated inside the condition rather than kept in
/// variables, so the guard cannot fail open on a device that scopes variables differently.
pub fn create_disk(req: &CreateDisk<'_>) -> String {
    let spec = req.spec;
    let add = disk_add(req, true);
    let (in_slot, at_path) = (find_slot(&spec.slot), find_file(&spec.file_path));
    format!(
        ":put [:serialize to=json {in_slot}];:put [:serialize to=json {at_path}];\
         :if (([:len {in_slot}] = 0) && ([:len {at_path}] = 0)) do={{{}}};{}",
        put_json(&add),
        print_disk(&spec.slot)
    )
}

/// The `/disk add` of an exported file disk for `req`; `file-size` only when `with_size`
/// (a disk over an image that exists takes the image's size).
pub(crate) fn disk_add(req: &CreateDisk<'_>, with_size: bool) -> String {
    let spec = req.spec;
    let size = if with_size {
        format!(" file-size={}", spec.size)
    } else {
        String::new()
    };
    let mut add = format!(
        "/disk add type=file slot={} file-path={}{size} mount-filesystem=no \
         nvme-tcp-export=yes nvme-tcp-server-port={}",
        quote(spec.slot.as_str()),
        quote(spec.file_path.as_str()),
        spec.port,
    );
    if req.send_nqn {
        add.push_str(" nvme-tcp-server-nqn=");
        add.push_str(&quote(spec.nqn.as_str()));
    }
    if let Some(comment) = &spec.comment {
        add.push_str(" comment=");
        add.push_str(&quote(comment));
    }
    add
}

/// A volume's facts (see [`crate::model::VolumeFacts`]) in one exec, three JSON values: the
/// items in the slot, the files named `<slot>.img` anywhere under `dir`, and the file disks
/// whose image has that name (filtered exactly by the caller).
pub fn volume_facts(slot: &Slot, dir: &DirPath) -> String {
    let image = regex_escape(&format!("{slot}.img"));
    let files = format!("^{}/(.+/)?{image}$", regex_escape(dir.as_str()));
    let users = format!("(^|/){image}$");
    format!(
        "{};{};{}",
        print_disk(slot),
        put_json(&format!(
            "/file print detail as-value where name~{}",
            quote(&files)
        )),
        put_json(&format!(
            "/disk print detail as-value where type=file and file-path~{}",
            quote(&users)
        ))
    )
}

/// The orphan reconciler's view in one exec, three JSON values: the device clock (first, so
/// no listed file can look older than it is), every file disk, and the `.img` files under
/// `dir` at any depth.
pub fn inventory(dir: &DirPath) -> String {
    let images = format!("^/?{}/.+\\.img$", regex_escape(dir.as_str()));
    format!(
        "{};{};{}",
        put_json("/system clock print as-value"),
        put_json("/disk print detail as-value where type=file"),
        put_json(&format!(
            "/file print detail as-value where name~{}",
            quote(&images)
        ))
    )
}

pub fn grow_disk(slot: &Slot, size: u64) -> String {
    format!(
        "/disk set [find where slot={}] file-size={size};{}",
        quote(slot.as_str()),
        print_disk(slot)
    )
}

/// Sets who may connect to the disk's export, and reads the disk back.
pub fn set_allow_host_name(slot: &Slot, value: &str) -> String {
    format!(
        "/disk set [find where slot={}] nvme-tcp-server-allow-host-name={};{}",
        quote(slot.as_str()),
        quote(value),
        print_disk(slot)
    )
}

/// Removes the one disk `id` (an id is never ambiguous, a slot may be), then its image when
/// given and no other disk uses it ([`remove_unused_image`]). A failing `/disk remove` aborts
/// the script, so the image is never removed from under a disk that still uses it. The id is
/// validated (`*HEX`) and needs no quoting.
pub fn remove_disk(id: &ItemId, image: Option<&FilePath>) -> String {
    let disk = format!("/disk remove {id}");
    match image {
        Some(path) => format!("{disk};{}", remove_unused_image(path)),
        None => disk,
    }
}

pub fn get_file(path: &FilePath) -> String {
    put_json(&format!(
        "/file print detail as-value where name={}",
        quote(path.as_str())
    ))
}

pub fn remove_file(path: &FilePath) -> String {
    format!("/file remove [find where name={}]", quote(path.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DiskSpec;
    use crate::quote::{HOSTILE, lex_quoted};
    use crate::validate::Nqn;

    fn slot(s: &str) -> Slot {
        Slot::try_from(s).unwrap()
    }

    fn spec(comment: Option<&str>) -> DiskSpec {
        DiskSpec {
            slot: slot("pvc-1"),
            file_path: FilePath::try_from("/storage-pool/pvc-1.img").unwrap(),
            size: 10_737_418_240,
            port: 4420,
            nqn: Nqn::try_from("nqn.2000-02.com.mikrotik:pvc-1").unwrap(),
            comment: comment.map(str::to_owned),
        }
    }

    #[test]
    fn reads_match_the_contract() {
        assert_eq!(
            system_info(),
            ":put [:serialize to=json [/system resource print as-value]];\
             :put [:serialize to=json [/system identity print as-value]]"
        );
        assert_eq!(
            get_disk(&slot("pvc-1")),
            r#":put [:serialize to=json [/disk print detail as-value where slot="pvc-1"]]"#
        );
        assert_eq!(
            list_disks("pvc-"),
            r#":put [:serialize to=json [/disk print detail as-value where type=file and slot~"\5Epvc-"]]"#
        );
        assert_eq!(
            list_disks("a.b"),
            r#":put [:serialize to=json [/disk print detail as-value where type=file and slot~"\5Ea\5C.b"]]"#
        );
        assert_eq!(
            system_health(),
            r#":put [:serialize to=json [/system health print as-value]]"#
        );
        assert_eq!(
            pool("storage-pool"),
            r#":put [:serialize to=json [/disk print detail as-value where mount-point="storage-pool"]]"#
        );
        assert_eq!(
            get_file(&FilePath::try_from("storage-pool/pvc-1.img").unwrap()),
            r#":put [:serialize to=json [/file print detail as-value where name="storage-pool/pvc-1.img"]]"#
        );
    }

    #[test]
    fn writes_match_the_contract() {
        let s = spec(Some("pvc for ns/app"));
        assert_eq!(
            create_disk(&CreateDisk {
                spec: &s,
                send_nqn: true
            }),
            ":put [:serialize to=json [/disk find where slot=\"pvc-1\"]];\
             :put [:serialize to=json [/file find where name~\"\\5E/\\3Fstorage-pool/pvc-1\\5C.img\\24\"]];\
             :if (([:len [/disk find where slot=\"pvc-1\"]] = 0) && \
             ([:len [/file find where name~\"\\5E/\\3Fstorage-pool/pvc-1\\5C.img\\24\"]] = 0)) do={\
             :put [:serialize to=json [/disk add type=file slot=\"pvc-1\" \
             file-path=\"storage-pool/pvc-1.img\" file-size=10737418240 mount-filesystem=no \
             nvme-tcp-export=yes nvme-tcp-server-port=4420 \
             nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\" comment=\"pvc for ns/app\"]]};\
             :put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]"
        );
        let plain = spec(None);
        let old = create_disk(&CreateDisk {
            spec: &plain,
            send_nqn: false,
        });
        assert!(!old.contains("nvme-tcp-server-nqn"), "{old}");
        assert!(!old.contains("comment"), "{old}");
        assert_eq!(
            grow_disk(&slot("pvc-1"), 21_474_836_480),
            "/disk set [find where slot=\"pvc-1\"] file-size=21474836480;\
             :put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]"
        );
        let id = ItemId::try_from("*1A").unwrap();
        let image = FilePath::try_from("storage-pool/pvc-1.img").unwrap();
        assert_eq!(remove_disk(&id, None), "/disk remove *1A");
        assert_eq!(
            remove_disk(&id, Some(&image)),
            "/disk remove *1A;\
             :if ([:len [/disk find where file-path~\"\\28\\5E\\7C/\\29pvc-1\\5C.img\\24\"]] = 0) \
             do={/file remove [/file find where name~\"\\5E/\\3Fstorage-pool/pvc-1\\5C.img\\24\"]} \
             else={:put [:serialize to=json \"image-in-use\"]}"
        );
        assert_eq!(
            remove_file(&image),
            "/file remove [find where name=\"storage-pool/pvc-1.img\"]"
        );
        for bad in ["1A", "*", "*1G", "*1;x", "*12345678901234567"] {
            assert!(ItemId::try_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn volume_facts_look_for_the_image_by_name_under_the_base_path() {
        let dir = DirPath::try_from("/storage-pool/k8s").unwrap();
        assert_eq!(
            volume_facts(&slot("pvc-1"), &dir),
            ":put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]];\
             :put [:serialize to=json [/file print detail as-value where \
             name~\"\\5Estorage-pool/k8s/\\28.+/\\29\\3Fpvc-1\\5C.img\\24\"]];\
             :put [:serialize to=json [/disk print detail as-value where type=file and \
             file-path~\"\\28\\5E\\7C/\\29pvc-1\\5C.img\\24\"]]"
        );
    }

    /// Everything outside quoted strings: what the device would parse as script structure.
    /// Strings are consumed with the device's lexer, so a value that escaped its quotes would
    /// change the skeleton.
    fn skeleton(script: &str) -> String {
        let mut out = String::new();
        let mut rest = script;
        while let Some(c) = rest.chars().next() {
            if c == '"' {
                let (_, after) = lex_quoted(rest).expect("every string lexes");
                out.push_str("\"\"");
                rest = after;
                continue;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }

    #[test]
    fn hostile_strings_are_rejected_or_neutralised_in_every_field() {
        let long = "A".repeat(100_000);
        let hostile: Vec<&str> = HOSTILE.iter().copied().chain([long.as_str()]).collect();
        for h in &hostile {
            // Grammared fields: every hostile string (alone or appended) is refused.
            let candidates = if h.is_empty() {
                vec![String::new()]
            } else {
                vec![h.to_string(), format!("pvc-1{h}"), format!("{h}pvc-1")]
            };
            for candidate in candidates {
                assert!(
                    Slot::try_from(candidate.as_str()).is_err(),
                    "slot {candidate:?}"
                );
                // The empty prefix is legal (list everything).
                assert!(
                    crate::validate::check_slot_prefix(&candidate).is_err() || candidate.is_empty(),
                    "prefix {candidate:?}"
                );
                assert!(
                    crate::validate::check_name("pool", &candidate).is_err(),
                    "pool {candidate:?}"
                );
                let nqn = format!("nqn.2000-02.com.x:{candidate}");
                assert!(Nqn::try_from(nqn.as_str()).is_err(), "nqn {nqn:?}");
                let path = format!("pool/{candidate}.img");
                assert!(FilePath::try_from(path.as_str()).is_err(), "path {path:?}");
            }
            // The free-text field: quoted into a single statement that decodes back.
            let s = spec(Some(h));
            match s.validate() {
                Err(_) => assert!(h.len() > crate::validate::MAX_COMMENT_LEN, "{h:?} refused"),
                Ok(()) => {
                    for send_nqn in [true, false] {
                        let script = create_disk(&CreateDisk { spec: &s, send_nqn });
                        let benign = spec(Some("x"));
                        let expected = create_disk(&CreateDisk {
                            spec: &benign,
                            send_nqn,
                        });
                        assert_eq!(skeleton(&script), skeleton(&expected), "{script}");
                        let at = script.find("comment=").unwrap() + "comment=".len();
                        let (decoded, rest) = lex_quoted(&script[at..]).unwrap();
                        assert_eq!(decoded, h.as_bytes());
                        assert!(
                            rest.starts_with("]]}"),
                            "comment is the last token of the add"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn empty_prefix_lists_everything() {
        assert!(list_disks("").ends_with(r#"slot~"\5E"]]"#));
    }
}
