//! What the device's answers to a create or a look-up by slot mean: pure judgements the
//! client applies before anything is decided on them.

use crate::error::{Error, Result};
use crate::model::{AddReport, CreateDisk, CreateOutcome, DiskItem};
use crate::validate::{ItemId, Slot};

/// Every item must be in the slot asked for; anything else means the device's filter did not
/// do what we asked, and nothing may be decided on it.
pub(crate) fn check_slots(slot: &Slot, items: &[DiskItem]) -> Result<()> {
    match items.iter().find(|i| i.slot() != slot.as_str()) {
        Some(stray) => Err(Error::Protocol(format!(
            "asked for slot {slot}, device returned {}",
            stray.slot()
        ))),
        None => Ok(()),
    }
}

/// What a guarded add means. The disk counts as this call's only when the add returned its
/// id; a read-back that differs from the request is then this call's to undo.
pub(crate) fn judge_add(request: &CreateDisk<'_>, report: AddReport) -> Result<CreateOutcome> {
    check_slots(&request.spec.slot, &report.slot_after)?;
    let Some(added) = report.added else {
        return Ok(if report.slot_before.is_empty() {
            CreateOutcome::FileExists
        } else {
            CreateOutcome::SlotTaken(report.slot_after)
        });
    };
    let id = ItemId::try_from(added.as_str())
        .map_err(|_| Error::Protocol(format!("the add returned an unexpected id {added:?}")))?;
    let created = report
        .slot_after
        .iter()
        .find(|item| item.id() == id.as_str());
    let reason = match created {
        Some(DiskItem::File(disk)) => match request.verify(disk) {
            Ok(()) => return Ok(CreateOutcome::Created(disk.clone())),
            Err(mismatch) => mismatch.message().to_owned(),
        },
        Some(DiskItem::Other { kind, .. }) => format!("the new disk {id} is of type {kind}"),
        None => format!("the new disk {id} is missing from the read-back of its slot"),
    };
    Ok(CreateOutcome::CreatedMismatch { id, reason })
}
