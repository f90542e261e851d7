use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn va(name: &str, pv: &str, node: &str, created: u64) -> Update {
    Update::Attachment {
        name: name.into(),
        facts: Some(AttachmentFacts {
            source: Source::Volume(pv.into()),
            node_name: node.into(),
            created: at(created),
            attached: true,
            deleting: false,
        }),
    }
}

fn pv(name: &str, handle: &str) -> Update {
    Update::Volume {
        name: name.into(),
        handle: Some(handle.into()),
    }
}

fn nodes(state: &AttachmentState, handle: &str) -> Vec<String> {
    state
        .holders(handle)
        .iter()
        .map(|h| h.node_name.clone())
        .collect()
}

/// A state after a first list of both kinds.
fn listed(updates: Vec<Update>) -> AttachmentState {
    let mut s = AttachmentState::new();
    s.apply(Update::Relisting(Kind::Attachments));
    s.apply(Update::Relisting(Kind::Volumes));
    for u in updates {
        s.apply(u);
    }
    s.apply(Update::Listed(Kind::Attachments));
    s.apply(Update::Listed(Kind::Volumes));
    s
}

#[test]
fn ready_only_once_both_kinds_are_listed() {
    let mut s = AttachmentState::new();
    s.apply(Update::Relisting(Kind::Attachments));
    s.apply(Update::Listed(Kind::Attachments));
    assert!(!s.is_ready());
    s.apply(Update::Relisting(Kind::Volumes));
    s.apply(Update::Listed(Kind::Volumes));
    assert!(s.is_ready());
}

#[test]
fn holders_are_sorted_oldest_first_with_the_name_breaking_ties() {
    let s = listed(vec![
        pv("pv1", "vol-1"),
        va("c", "pv1", "n3", 20),
        va("b", "pv1", "n2", 10),
        va("a", "pv1", "n1", 20),
    ]);
    let names: Vec<_> = s
        .holders("vol-1")
        .iter()
        .map(|h| h.attachment_name.as_str())
        .collect();
    assert_eq!(names, ["b", "a", "c"]);
}

#[test]
fn an_attachment_before_its_volume_waits_and_resolves_when_it_comes() {
    let mut s = AttachmentState::new();
    assert!(s.apply(va("a", "pv1", "n1", 1)).is_empty());
    assert_eq!(s.unresolved(), ["a"]);
    assert_eq!(s.apply(pv("pv1", "vol-1")), ["vol-1"]);
    assert_eq!(nodes(&s, "vol-1"), ["n1"]);
    assert!(s.unresolved().is_empty());
}

#[test]
fn a_volume_of_another_driver_resolves_nothing() {
    let mut s = listed(vec![va("a", "pv1", "n1", 1)]);
    let changed = s.apply(Update::Volume {
        name: "pv1".into(),
        handle: None,
    });
    assert!(changed.is_empty());
    assert_eq!(s.unresolved(), ["a"]);
}

#[test]
fn an_attachment_of_another_driver_is_dropped() {
    let mut s = listed(vec![pv("pv1", "vol-1"), va("a", "pv1", "n1", 1)]);
    let changed = s.apply(Update::Attachment {
        name: "a".into(),
        facts: None,
    });
    assert_eq!(changed, ["vol-1"]);
    assert!(s.holders("vol-1").is_empty());
    assert_eq!(s.attachment_count(), 0);
}

#[test]
fn create_update_and_delete_report_the_volume_changed() {
    let mut s = listed(vec![pv("pv1", "vol-1")]);
    assert_eq!(s.apply(va("a", "pv1", "n1", 1)), ["vol-1"]);
    assert!(
        s.apply(va("a", "pv1", "n1", 1)).is_empty(),
        "a resync with the same facts changes nothing"
    );
    let deleting = Update::Attachment {
        name: "a".into(),
        facts: Some(AttachmentFacts {
            source: Source::Volume("pv1".into()),
            node_name: "n1".into(),
            created: at(1),
            attached: true,
            deleting: true,
        }),
    };
    assert_eq!(s.apply(deleting), ["vol-1"]);
    assert!(s.holders("vol-1")[0].deleting);
    let deleted = Update::AttachmentDeleted { name: "a".into() };
    assert_eq!(s.apply(deleted), ["vol-1"]);
    assert!(s.holders("vol-1").is_empty());
}

#[test]
fn inline_volumes_need_no_persistent_volume() {
    let mut s = AttachmentState::new();
    let inline = Update::Attachment {
        name: "a".into(),
        facts: Some(AttachmentFacts {
            source: Source::Inline("vol-9".into()),
            node_name: "n1".into(),
            created: at(1),
            attached: false,
            deleting: false,
        }),
    };
    assert_eq!(s.apply(inline), ["vol-9"]);
    assert_eq!(nodes(&s, "vol-9"), ["n1"]);
}

#[test]
fn a_deleted_volume_sends_its_attachments_back_to_waiting() {
    let mut s = listed(vec![pv("pv1", "vol-1"), va("a", "pv1", "n1", 1)]);
    let deleted = Update::VolumeDeleted { name: "pv1".into() };
    assert_eq!(s.apply(deleted), ["vol-1"]);
    assert!(s.holders("vol-1").is_empty());
    assert_eq!(s.unresolved(), ["a"]);
    assert_eq!(s.apply(pv("pv1", "vol-2")), ["vol-2"]);
    assert_eq!(nodes(&s, "vol-2"), ["n1"]);
}

#[test]
fn a_relist_forgets_what_it_did_not_see_and_keeps_serving_meanwhile() {
    let mut s = listed(vec![
        pv("pv1", "vol-1"),
        pv("pv2", "vol-2"),
        va("a", "pv1", "n1", 1),
        va("b", "pv2", "n2", 2),
    ]);
    s.apply(Update::Relisting(Kind::Attachments));
    s.apply(va("a", "pv1", "n1", 1));
    assert_eq!(
        nodes(&s, "vol-2"),
        ["n2"],
        "old facts serve until the list ends"
    );
    assert_eq!(s.apply(Update::Listed(Kind::Attachments)), ["vol-2"]);
    assert!(s.holders("vol-2").is_empty());
    assert_eq!(nodes(&s, "vol-1"), ["n1"]);

    // A PV gone while the watch was down unresolves its attachments.
    s.apply(Update::Relisting(Kind::Volumes));
    assert_eq!(s.apply(Update::Listed(Kind::Volumes)), ["vol-1"]);
    assert_eq!(s.unresolved(), ["a"]);
}

#[test]
fn a_restarted_relist_counts_only_what_the_last_one_saw() {
    let mut s = listed(vec![
        pv("pv1", "vol-1"),
        va("a", "pv1", "n1", 1),
        va("b", "pv1", "n2", 2),
    ]);
    s.apply(Update::Relisting(Kind::Attachments));
    s.apply(va("a", "pv1", "n1", 1));
    s.apply(Update::Relisting(Kind::Attachments));
    s.apply(va("b", "pv1", "n2", 2));
    s.apply(Update::Listed(Kind::Attachments));
    assert_eq!(nodes(&s, "vol-1"), ["n2"]);
}
