//! One test per row of the fencing table (docs/fencing.md).

use super::*;
use crate::capabilities::AccessKind;

const VOL: &str = "pvc-1";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn rwo() -> Supported {
    Supported {
        kind: AccessKind::Mount,
        mode: Mode::SingleNodeWriter,
    }
}

fn rwop() -> Supported {
    Supported {
        kind: AccessKind::Mount,
        mode: Mode::SingleNodeSingleWriter,
    }
}

fn rwx_block() -> Supported {
    Supported {
        kind: AccessKind::Block,
        mode: Mode::MultiNodeMultiWriter,
    }
}

fn holder(node: &str, since: u64, access: Option<Supported>) -> Holder {
    Holder {
        node: node.into(),
        since: at(since),
        access,
    }
}

fn held(holders: Vec<Holder>) -> Holders {
    Holders {
        holders,
        window: MigrationWindow::default(),
    }
}

#[test]
fn the_first_node_attaches() {
    assert_eq!(
        decide_publish(VOL, &held(vec![]), "a", rwo(), at(0)),
        Ok(PublishDecision::Attach)
    );
}

#[test]
fn the_same_node_again_is_already_published() {
    let state = held(vec![holder("a", 0, Some(rwo()))]);
    let decision = decide_publish(VOL, &state, "a", rwo(), at(10)).unwrap();
    assert_eq!(decision, PublishDecision::Already);
    assert!(!decision.records(), "a repeat changes nothing");
    // A holder whose access the state does not know is taken as the same.
    let unknown = held(vec![holder("a", 0, None)]);
    assert_eq!(
        decide_publish(VOL, &unknown, "a", rwo(), at(10)),
        Ok(PublishDecision::Already)
    );
}

#[test]
fn the_same_node_with_another_capability_is_incompatible() {
    let state = held(vec![holder("a", 0, Some(rwo()))]);
    let err = decide_publish(VOL, &state, "a", rwop(), at(10)).unwrap_err();
    assert!(matches!(err, FenceError::Incompatible { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("SINGLE_NODE_WRITER") && text.contains("SINGLE_NODE_SINGLE_WRITER"));
}

#[test]
fn a_single_node_volume_held_elsewhere_is_refused_naming_the_holder() {
    for mode in [
        Mode::SingleNodeWriter,
        Mode::SingleNodeSingleWriter,
        Mode::SingleNodeMultiWriter,
        Mode::SingleNodeReaderOnly,
    ] {
        let access = Supported {
            kind: AccessKind::Mount,
            mode,
        };
        let state = held(vec![holder("node-a", 0, Some(access))]);
        let err = decide_publish(VOL, &state, "node-b", access, at(1)).unwrap_err();
        let FenceError::HeldElsewhere { holder, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(holder, "node-a");
        let text = err.to_string();
        assert!(
            text.contains("node-a") && text.contains(mode.as_str_name()),
            "{text}"
        );
    }
}

#[test]
fn multi_node_access_does_not_override_a_single_node_holder() {
    // Held as RWO; a request for RWX block does not start a migration, either way round.
    let state = held(vec![holder("a", 0, Some(rwo()))]);
    let err = decide_publish(VOL, &state, "b", rwx_block(), at(1)).unwrap_err();
    assert!(err.to_string().contains("SINGLE_NODE_WRITER"), "{err}");
    let state = held(vec![holder("a", 0, Some(rwx_block()))]);
    let err = decide_publish(VOL, &state, "b", rwo(), at(1)).unwrap_err();
    assert!(matches!(err, FenceError::HeldElsewhere { .. }), "{err:?}");
}

#[test]
fn a_second_node_of_an_rwx_block_volume_starts_a_migration() {
    for access in [Some(rwx_block()), None] {
        let state = held(vec![holder("src", 0, access)]);
        assert_eq!(
            decide_publish(VOL, &state, "dst", rwx_block(), at(1)),
            Ok(PublishDecision::StartMigration {
                source: "src".into()
            })
        );
    }
}

#[test]
fn a_third_node_during_a_migration_is_refused_naming_both() {
    let state = held(vec![
        holder("src", 0, Some(rwx_block())),
        holder("dst", 10, Some(rwx_block())),
    ]);
    let err = decide_publish(VOL, &state, "third", rwx_block(), at(20)).unwrap_err();
    assert!(matches!(err, FenceError::MigrationBusy { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("src") && text.contains("dst") && text.contains("third"));
    // Source and target themselves are already published.
    for node in ["src", "dst"] {
        assert_eq!(
            decide_publish(VOL, &state, node, rwx_block(), at(20)),
            Ok(PublishDecision::Already)
        );
    }
}

#[test]
fn an_overdue_migration_refuses_new_targets_and_says_who_must_detach() {
    let state = held(vec![
        holder("src", 0, Some(rwx_block())),
        holder("dst", 100, Some(rwx_block())),
    ]);
    let late = at(100 + 301);
    let err = decide_publish(VOL, &state, "third", rwx_block(), late).unwrap_err();
    let FenceError::MigrationOverdue {
        age_s, window_s, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*age_s, *window_s), (301, 300));
    let text = err.to_string();
    assert!(text.contains("overdue") && text.contains("Unpublish src") && text.contains("dst"));
    // The holders keep what they have: the driver never takes the volume from either.
    for node in ["src", "dst"] {
        assert_eq!(
            decide_publish(VOL, &state, node, rwx_block(), late),
            Ok(PublishDecision::Already)
        );
    }
}

#[test]
fn a_crowded_state_refuses_every_newcomer() {
    let state = held(vec![
        holder("a", 0, None),
        holder("b", 1, None),
        holder("c", 2, None),
    ]);
    let err = decide_publish(VOL, &state, "d", rwx_block(), at(3)).unwrap_err();
    assert_eq!(
        err,
        FenceError::Crowded {
            volume_id: VOL.into(),
            node: "d".into(),
            nodes: vec!["a".into(), "b".into(), "c".into()],
        }
    );
}

#[test]
fn unpublishing_the_only_holder_detaches() {
    let holders = [holder("a", 0, None)];
    let decision = decide_unpublish(&holders, Some("a"));
    assert_eq!(decision, UnpublishDecision::Detach { node: "a".into() });
    assert_eq!(decision.leaving(), ["a"]);
}

#[test]
fn unpublishing_the_source_completes_the_migration() {
    let holders = [holder("src", 0, None), holder("dst", 1, None)];
    let decision = decide_unpublish(&holders, Some("src"));
    assert_eq!(
        decision,
        UnpublishDecision::CompleteMigration {
            source: "src".into(),
            target: "dst".into()
        }
    );
    assert_eq!(decision.leaving(), ["src"]);
    // What remains is the target alone.
    let rest: Vec<_> = holders
        .iter()
        .filter(|h| h.node != "src")
        .cloned()
        .collect();
    assert!(matches!(phase(&rest), Phase::Attached(h) if h.node == "dst"));
}

#[test]
fn unpublishing_the_target_rolls_the_migration_back() {
    let holders = [holder("src", 0, None), holder("dst", 1, None)];
    let decision = decide_unpublish(&holders, Some("dst"));
    assert_eq!(
        decision,
        UnpublishDecision::RollBack {
            source: "src".into(),
            target: "dst".into()
        }
    );
    assert_eq!(decision.leaving(), ["dst"]);
}

#[test]
fn unpublishing_a_node_that_does_not_hold_it_is_nothing() {
    assert_eq!(decide_unpublish(&[], Some("a")), UnpublishDecision::NotHeld);
    let holders = [holder("a", 0, None)];
    let decision = decide_unpublish(&holders, Some("b"));
    assert_eq!(decision, UnpublishDecision::NotHeld);
    assert!(decision.leaving().is_empty());
}

#[test]
fn unpublishing_without_a_node_detaches_every_holder() {
    let holders = [holder("src", 0, None), holder("dst", 1, None)];
    let decision = decide_unpublish(&holders, None);
    assert_eq!(decision.leaving(), ["src", "dst"]);
    assert_eq!(decide_unpublish(&[], None), UnpublishDecision::NotHeld);
}

#[test]
fn a_migration_is_overdue_only_past_its_window() {
    let mut state = held(vec![holder("src", 0, None), holder("dst", 100, None)]);
    assert_eq!(
        overdue(&state, at(100 + 300)),
        None,
        "at the window: not yet"
    );
    let late = overdue(&state, at(100 + 301)).expect("overdue");
    assert_eq!(
        late,
        Overdue {
            source: "src".into(),
            target: "dst".into(),
            started: at(100),
            age: Duration::from_secs(301),
            window: DEFAULT_MIGRATION_WINDOW,
        }
    );
    assert_eq!(overdue(&state, at(50)), None, "a clock behind the start");
    state.window = MigrationWindow::from_seconds(Some(30));
    assert!(overdue(&state, at(100 + 31)).is_some());
    // One holder, or none, is no migration.
    assert_eq!(overdue(&held(vec![holder("a", 0, None)]), at(99_999)), None);
    assert_eq!(overdue(&held(vec![]), at(99_999)), None);
}

#[test]
fn the_window_defaults_to_five_minutes_and_is_clamped() {
    let secs = |s| MigrationWindow::from_seconds(s).duration().as_secs();
    assert_eq!(secs(None), 300);
    assert_eq!(secs(Some(120)), 120);
    assert_eq!(secs(Some(1)), 30);
    assert_eq!(secs(Some(30)), 30);
    assert_eq!(secs(Some(3600)), 3600);
    assert_eq!(secs(Some(86_400)), 3600);
}

#[test]
fn phases_follow_the_holders_order() {
    assert_eq!(phase(&[]), Phase::Detached);
    let two = [holder("old", 0, None), holder("new", 1, None)];
    let Phase::Migrating { source, target } = phase(&two) else {
        panic!()
    };
    assert_eq!((source.node.as_str(), target.node.as_str()), ("old", "new"));
}

#[test]
fn a_migration_runs_from_its_targets_publish_to_the_unpublish_that_ends_it() {
    use crate::metrics::MigrationOutcome;
    let holders = Holders {
        holders: vec![holder("src", 0, None), holder("dst", 10, None)],
        ..Holders::default()
    };
    let end = |node: &str, now: u64| {
        let decision = decide_unpublish(&holders.holders, Some(node));
        migration_end(&holders, &decision, at(now))
    };
    assert_eq!(
        end("src", 70),
        Some((MigrationOutcome::Completed, Duration::from_secs(60)))
    );
    assert_eq!(
        end("dst", 15),
        Some((MigrationOutcome::RolledBack, Duration::from_secs(5)))
    );
    assert_eq!(
        end("dst", 5),
        Some((MigrationOutcome::RolledBack, Duration::ZERO)),
        "a clock that went backwards counts zero"
    );
    assert_eq!(end("other", 70), None, "no migration ends");
    let alone = Holders {
        holders: vec![holder("src", 0, None)],
        ..Holders::default()
    };
    let detach = decide_unpublish(&alone.holders, Some("src"));
    assert_eq!(migration_end(&alone, &detach, at(70)), None);
}
