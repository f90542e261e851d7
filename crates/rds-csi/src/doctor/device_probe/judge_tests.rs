use rds_sim::Quirk;
use routeros::Error;

use super::*;
use crate::doctor::device_probe::findings::{Removal, StateFile};
use crate::doctor::device_probe::fixtures::{altered, disk, faithful, file, plan, said};

fn judged(verdict: &Verdict, probe: Probe) -> &Judged {
    verdict.probes.iter().find(|j| j.probe == probe).unwrap()
}

#[test]
fn a_faithful_device_names_no_quirk() {
    let plan = plan();
    let verdict = judge(&plan, &faithful(&plan));
    assert_eq!(verdict.quirks, []);
    assert_eq!(verdict.unmatched, Vec::<String>::new());
    assert_eq!(verdict.probes.len(), Probe::ALL.len());
    for judged in &verdict.probes {
        assert_eq!(judged.shows, None, "{judged:?}");
        if let Some(reading) = &judged.reading {
            assert!(reading.as_expected(), "{judged:?}");
        }
    }
    let duplicate = judged(&verdict, Probe::DuplicateSlot);
    assert_eq!(
        duplicate.reading.as_ref().unwrap().client_reads,
        "AlreadyExists"
    );
    assert!(
        duplicate
            .outcome
            .starts_with("refused: failure: disk with slot")
    );
    assert_eq!(
        judged(&verdict, Probe::NoSpace)
            .reading
            .as_ref()
            .unwrap()
            .expected,
        "NoSpace"
    );
    assert_eq!(
        judged(&verdict, Probe::MissingId)
            .reading
            .as_ref()
            .unwrap()
            .client_reads,
        "NotFound"
    );
    assert!(
        judged(&verdict, Probe::RemoveKeepsImage)
            .outcome
            .contains("its image stays")
    );
    assert!(judged(&verdict, Probe::Baseline).outcome.contains("*1"));
    assert_eq!(verdict.allocation, Some(Allocation::Allocated));
}

#[test]
fn refusals_in_words_the_client_does_not_know_show_generic_errors() {
    let plan = plan();
    let mut findings = faithful(&plan);
    for step in &mut findings.steps {
        if !matches!(step.probe, Probe::Baseline | Probe::RemoveKeepsImage) {
            step.exchange.reply = said("failure: operation failed\r\n");
        }
    }
    let verdict = judge(&plan, &findings);
    assert_eq!(verdict.quirks, [Quirk::GenericErrors]);
    let reading = judged(&verdict, Probe::ExistingFile)
        .reading
        .clone()
        .unwrap();
    assert_eq!(
        (reading.client_reads, reading.expected),
        ("Invalid", "AlreadyExists")
    );

    // One refusal in the wrong words is enough; unknown words read as unrecognised.
    let one = altered(faithful(&plan), Probe::NoSpace, |step| {
        step.exchange.reply = said("disk full, sorry\r\n");
    });
    let verdict = judge(&plan, &one);
    assert_eq!(verdict.quirks, [Quirk::GenericErrors]);
    let reading = judged(&verdict, Probe::NoSpace).reading.clone().unwrap();
    assert_eq!(reading.client_reads, "unrecognised");
}

#[test]
fn a_rest_rejection_is_read_by_its_kind() {
    let plan = plan();
    let findings = altered(faithful(&plan), Probe::MissingName, |step| {
        step.exchange.reply = Reply::from_error(&Error::NotFound("Not Found".into()));
    });
    let verdict = judge(&plan, &findings);
    assert_eq!(verdict.quirks, []);
    let findings = altered(faithful(&plan), Probe::MissingName, |step| {
        step.exchange.reply = Reply::from_error(&Error::Invalid("Bad Request".into()));
    });
    assert_eq!(judge(&plan, &findings).quirks, [Quirk::GenericErrors]);
}

#[test]
fn a_second_disk_in_the_slot_shows_duplicate_slots() {
    let plan = plan();
    let findings = altered(faithful(&plan), Probe::DuplicateSlot, |step| {
        step.exchange.reply = said("*2\r\n");
        let after = step.after.as_mut().unwrap();
        after.disks.push(disk(&plan, Name::A, Name::B, "*2"));
        after.files.push(file(&plan, Name::B, IMAGE_SIZE));
    });
    let verdict = judge(&plan, &findings);
    assert_eq!(verdict.quirks, [Quirk::DuplicateSlots]);
    let duplicate = judged(&verdict, Probe::DuplicateSlot);
    assert!(
        duplicate.outcome.contains("now holds 2 disks"),
        "{duplicate:?}"
    );
    assert_eq!(
        duplicate.reading, None,
        "an acceptance is not read as a refusal"
    );
}

#[test]
fn an_adopted_image_shows_reuse_existing_file_and_what_became_of_it() {
    let plan = plan();
    let adopted = |size: u64, modified: &str| {
        altered(faithful(&plan), Probe::ExistingFile, |step| {
            step.exchange.reply = said("*2\r\n");
            let after = step.after.as_mut().unwrap();
            after.disks.push(disk(&plan, Name::C, Name::A, "*2"));
            after.files = vec![StateFile {
                size,
                last_modified: Some(modified.into()),
                ..file(&plan, Name::A, size)
            }];
        })
    };
    let kept = judge(&plan, &adopted(IMAGE_SIZE, "2026-01-02 03:04:05"));
    assert_eq!(kept.quirks, [Quirk::ReuseExistingFile]);
    let outcome = &judged(&kept, Probe::ExistingFile).outcome;
    assert!(outcome.contains("size kept at 1048576 bytes"), "{outcome}");
    assert!(outcome.contains("data is most likely kept"), "{outcome}");

    let rewritten = judge(&plan, &adopted(ADOPTION_SIZE, "2026-01-02 03:04:09"));
    let outcome = &judged(&rewritten, Probe::ExistingFile).outcome;
    assert!(
        outcome.contains("size changed from 1048576 to 2097152"),
        "{outcome}"
    );
    assert!(outcome.contains("may have been rewritten"), "{outcome}");
}

#[test]
fn what_no_quirk_plays_is_listed_apart() {
    let plan = plan();
    let silent = altered(faithful(&plan), Probe::MissingId, |step| {
        step.exchange.reply = said("");
    });
    let verdict = judge(&plan, &silent);
    assert_eq!(verdict.quirks, []);
    assert_eq!(verdict.unmatched.len(), 1);
    assert!(verdict.unmatched[0].contains("passes silently"));

    let mut huge = altered(faithful(&plan), Probe::NoSpace, |step| {
        step.exchange.reply = said("*9\r\n");
        let after = step.after.as_mut().unwrap();
        after.disks.push(disk(&plan, Name::Big, Name::Big, "*9"));
    });
    huge.huge_removal = Some(Removal {
        removed: Vec::new(),
        failed: vec!["disk x: no answer".into()],
    });
    let verdict = judge(&plan, &huge);
    assert!(
        judged(&verdict, Probe::NoSpace)
            .outcome
            .contains("removed at once")
    );
    assert_eq!(verdict.unmatched.len(), 2, "{:?}", verdict.unmatched);
    assert!(verdict.unmatched[1].contains("could not be removed"));

    // Refused, but an image appeared anyway.
    let litter = altered(faithful(&plan), Probe::DuplicateSlot, |step| {
        step.after
            .as_mut()
            .unwrap()
            .files
            .push(file(&plan, Name::B, IMAGE_SIZE));
    });
    let verdict = judge(&plan, &litter);
    let duplicate = judged(&verdict, Probe::DuplicateSlot);
    assert!(
        duplicate.outcome.contains("left a new file"),
        "{duplicate:?}"
    );
    assert!(duplicate.reading.as_ref().unwrap().as_expected());
    assert_eq!(verdict.unmatched.len(), 1);

    // The image went with its disk.
    let gone = altered(faithful(&plan), Probe::RemoveKeepsImage, |step| {
        step.after = Some(DeviceState::default());
    });
    let verdict = judge(&plan, &gone);
    assert!(verdict.unmatched[0].contains("deleted its image too"));
}

#[test]
fn a_step_whose_state_could_not_be_read_is_not_judged() {
    let plan = plan();
    let mut findings = faithful(&plan);
    findings.steps.truncate(2);
    findings.steps[1].after = None;
    let verdict = judge(&plan, &findings);
    let duplicate = judged(&verdict, Probe::DuplicateSlot);
    assert!(duplicate.outcome.starts_with("unknown"), "{duplicate:?}");
    assert_eq!(duplicate.reading, None);
    assert_eq!(verdict.quirks, []);
}

#[test]
fn allocation_is_judged_from_free_space_with_room_for_noise() {
    let mib = IMAGE_SIZE;
    assert_eq!(allocation(100 * mib, 100 * mib, mib), Allocation::Sparse);
    assert_eq!(
        allocation(100 * mib, 100 * mib + 4096, mib),
        Allocation::Sparse
    );
    assert_eq!(allocation(100 * mib, 99 * mib, mib), Allocation::Allocated);
    assert_eq!(
        allocation(100 * mib, 90 * mib, mib),
        Allocation::Inconclusive
    );
    assert_eq!(
        allocation(100 * mib, 110 * mib, mib),
        Allocation::Inconclusive
    );
}

#[test]
fn a_refusal_wrapped_by_the_terminal_reads_as_the_client_reads_it() {
    let plan = plan();
    let findings = altered(faithful(&plan), Probe::NoSpace, |step| {
        step.exchange.reply = said("failure: not enough fr\r\nee space on storage-pool\r\n");
    });
    let verdict = judge(&plan, &findings);
    assert_eq!(verdict.quirks, []);
    let no_space = judged(&verdict, Probe::NoSpace);
    assert_eq!(no_space.reading.as_ref().unwrap().client_reads, "NoSpace");
    assert_eq!(
        no_space.outcome,
        "refused: failure: not enough free space on storage-pool"
    );
}
