//! SSH script text for each operation (the wire contract's exact forms).
//!
//! Arguments arrive as validated newtypes; every string is additionally quoted with
//! [`quote`], so nothing here can produce a script other than the one intended.

use crate::model::CreateDisk;
use crate::quote::{quote, regex_escape};
use crate::validate::{FilePath, Slot};

/// `:put` a value as one line of JSON.
fn put_json(print: &str) -> String {
    format!(":put [:serialize to=json [{print}]]")
}

fn print_disk(slot: &Slot) -> String {
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

/// Add, then read back in the same exec; a failing add aborts the read-back.
pub fn create_disk(req: &CreateDisk<'_>) -> String {
    let spec = req.spec;
    let mut add = format!(
        "/disk add type=file slot={} file-path={} file-size={} mount-filesystem=no \
         nvme-tcp-export=yes nvme-tcp-server-port={}",
        quote(spec.slot.as_str()),
        quote(spec.file_path.as_str()),
        spec.size,
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
    format!("{add};{}", print_disk(&spec.slot))
}

pub fn grow_disk(slot: &Slot, size: u64) -> String {
    format!(
        "/disk set [find where slot={}] file-size={size};{}",
        quote(slot.as_str()),
        print_disk(slot)
    )
}

pub fn remove_disk(slot: &Slot) -> String {
    format!("/disk remove [find where slot={}]", quote(slot.as_str()))
}

/// Disk, then its image, in one script: a failing `/disk remove` aborts the script, so the
/// image is never removed from under a disk that still uses it.
pub fn remove_disk_and_file(slot: &Slot, path: &FilePath) -> String {
    format!("{};{}", remove_disk(slot), remove_file(path))
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
            "/disk add type=file slot=\"pvc-1\" file-path=\"storage-pool/pvc-1.img\" \
             file-size=10737418240 mount-filesystem=no nvme-tcp-export=yes \
             nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\" \
             comment=\"pvc for ns/app\";\
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
        assert_eq!(
            remove_disk(&slot("pvc-1")),
            "/disk remove [find where slot=\"pvc-1\"]"
        );
        assert_eq!(
            remove_file(&FilePath::try_from("storage-pool/pvc-1.img").unwrap()),
            "/file remove [find where name=\"storage-pool/pvc-1.img\"]"
        );
        assert_eq!(
            remove_disk_and_file(
                &slot("pvc-1"),
                &FilePath::try_from("storage-pool/pvc-1.img").unwrap()
            ),
            "/disk remove [find where slot=\"pvc-1\"];\
             /file remove [find where name=\"storage-pool/pvc-1.img\"]"
        );
    }

    /// Splits script text into statements the way the device would: `;` outside strings.
    /// Strings are consumed with the device's lexer, so a hostile value that escaped its quotes
    /// would show up as an extra statement or a lex failure.
    fn statements(script: &str) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut rest = script;
        while let Some(c) = rest.chars().next() {
            if c == '"' {
                let (_, after) = lex_quoted(rest).expect("every string lexes");
                let token_len = rest.len() - after.len();
                out.last_mut().unwrap().push_str(&rest[..token_len]);
                rest = after;
                continue;
            }
            assert!(
                !matches!(c, '$' | '{' | '}' | '\n' | '\r'),
                "raw {c:?} outside a string in {script}"
            );
            if c == ';' {
                out.push(String::new());
            } else {
                out.last_mut().unwrap().push(c);
            }
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
                        let stmts = statements(&script);
                        assert_eq!(stmts.len(), 2, "{script}");
                        let add = &stmts[0];
                        let at = add.find("comment=").unwrap() + "comment=".len();
                        let (decoded, rest) = lex_quoted(&add[at..]).unwrap();
                        assert_eq!(decoded, h.as_bytes());
                        assert_eq!(rest, "", "comment is the last token of the add");
                        assert!(stmts[1].starts_with(":put [:serialize"));
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
