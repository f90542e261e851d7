//! Whether the namespace under a staged volume is still the one that was staged: pure
//! judgements over a record and what the fabric shows now, and the retry pacing of the
//! background check.
//!
//! A target that restarts and gives a namespace new identifiers (or a controller the kernel
//! gave up and that was connected again) leaves the volume's filesystem on a block device that
//! is gone: every mount of it fails with EIO while a new device carries the volume's NQN. The
//! node notices by comparing identifiers and device numbers with its record.

use std::collections::HashMap;
use std::time::Duration;

use mounts::DeviceNumber;
use nvme::Sameness;
use tokio::time::Instant;

use std::path::Path;

use super::fabric::{AttachedDevice, Condition};
use super::records::StagedVolume;

/// What the fabric shows for a staged volume, against its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The staged namespace, on the staged device.
    Same,
    /// No device carries the volume's NQN now (the controller is reconnecting, or the kernel
    /// gave it up). I/O waits or fails; nothing to re-stage onto yet.
    NoDevice,
    /// Another namespace, or another block device, now carries the volume's NQN.
    Replaced {
        now: AttachedDevice,
        /// Why it is not the staged one, for people.
        why: String,
    },
}

/// Compares the record with the device now carrying the volume's NQN.
pub fn judge(record: &StagedVolume, current: Option<&AttachedDevice>) -> Verdict {
    let Some(now) = current else {
        return Verdict::NoDevice;
    };
    let why = match record.ids.compare(&now.ids) {
        Sameness::Different {
            attribute,
            was,
            now: current,
        } => format!(
            "the RDS presents a new namespace for it (its {attribute} changed from {} to {})",
            was.as_deref().unwrap_or("none"),
            current.as_deref().unwrap_or("none")
        ),
        Sameness::Same | Sameness::Unknown if now.device != record.device => format!(
            "its namespace came back as a new block device ({} {}, staged on {} {})",
            now.path.display(),
            now.device,
            record.device_path.display(),
            record.device
        ),
        Sameness::Same | Sameness::Unknown => return Verdict::Same,
    };
    Verdict::Replaced {
        now: now.clone(),
        why,
    }
}

/// Whether `device` (found under a mount or a device node) is, or was, this volume's.
pub fn is_volume_device(
    record: Option<&StagedVolume>,
    current: Option<DeviceNumber>,
    device: DeviceNumber,
) -> bool {
    current == Some(device) || record.is_some_and(|r| r.is_former_device(device))
}

/// The VolumeCondition part that only the record can tell: whether the volume's namespace was
/// replaced (and not yet re-staged), or whether `path`, found on `at_path`, belongs to a pod
/// that still holds a namespace the RDS replaced. Also says whether the background check
/// should run at once.
pub fn identity_condition(
    record: Option<&StagedVolume>,
    current: Option<&AttachedDevice>,
    path: &Path,
    at_path: Option<DeviceNumber>,
    last_failure: Option<&str>,
) -> (Condition, bool) {
    let Some(record) = record else {
        return (Condition::Healthy, false);
    };
    if let Verdict::Replaced { now, why } = judge(record, current) {
        let failure = last_failure
            .map(|f| format!(" (the last attempt failed: {f}; retrying)"))
            .unwrap_or_default();
        return (
            Condition::Abnormal(format!(
                "{why}: the filesystem or device staged on {} is dead; the node is re-staging \
                 the volume on {}{failure}; pods started before must be restarted",
                record.device_path.display(),
                now.path.display()
            )),
            true,
        );
    }
    if record.stranded.iter().any(|p| p == path) {
        let failure = last_failure.map(|f| format!(" ({f})")).unwrap_or_default();
        return (
            Condition::Abnormal(format!(
                "the RDS replaced this volume's namespace and the node re-staged it on {}, but \
                 could not yet point {} at it{failure}: it still shows the dead filesystem or \
                 device; the node keeps retrying, and restarting the pod also fixes it",
                record.device_path.display(),
                path.display()
            )),
            true,
        );
    }
    let on_replaced = at_path.is_some_and(|d| d != record.device && record.replaced.contains(&d));
    if on_replaced || record.republished.iter().any(|p| p == path) {
        let when = record.recovered_at.map_or_else(String::new, |t| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
            format!(" at {}", humantime::format_rfc3339_seconds(at))
        });
        return (
            Condition::Abnormal(format!(
                "the RDS replaced this volume's namespace (as after a reboot that does not keep \
                 namespace identifiers) and the node re-staged it on {}{when}; containers that \
                 were running at {} before then still hold the dead filesystem or device and \
                 must be restarted (a container started since uses the recovered volume)",
                record.device_path.display(),
                path.display()
            )),
            false,
        );
    }
    (Condition::Healthy, false)
}

/// First wait after a failed recovery; it doubles per failure up to [`MAX_RETRY_WAIT`].
pub const FIRST_RETRY_WAIT: Duration = Duration::from_secs(15);
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(600);

/// When each volume's check may run again after failures: a recovery that cannot succeed
/// (a device holding another filesystem, an unmount refused) is retried ever more rarely
/// instead of hammering the node every interval.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: HashMap<String, (u32, Instant)>,
}

impl Backoff {
    pub fn due(&self, volume_id: &str, now: Instant) -> bool {
        self.failures
            .get(volume_id)
            .is_none_or(|(_, next)| now >= *next)
    }

    /// Records a failure; returns the wait until the next attempt.
    pub fn failed(&mut self, volume_id: &str, now: Instant) -> Duration {
        let count = self.failures.get(volume_id).map_or(0, |(n, _)| *n) + 1;
        let wait = FIRST_RETRY_WAIT
            .saturating_mul(1 << (count - 1).min(16))
            .min(MAX_RETRY_WAIT);
        self.failures
            .insert(volume_id.to_owned(), (count, now + wait));
        wait
    }

    pub fn succeeded(&mut self, volume_id: &str) {
        self.failures.remove(volume_id);
    }

    /// Drops the state of volumes no longer staged.
    pub fn retain(&mut self, staged: impl Fn(&str) -> bool) {
        self.failures.retain(|id, _| staged(id));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nvme::NamespaceIds;

    use super::*;
    use crate::node::records::{RECORD_FORMAT, StagedLayout};

    fn ids(uuid: &str) -> NamespaceIds {
        NamespaceIds {
            uuid: Some(uuid.into()),
            ..NamespaceIds::default()
        }
    }

    fn record() -> StagedVolume {
        StagedVolume {
            format: RECORD_FORMAT,
            volume_id: "pvc-1".into(),
            nqn: "nqn.2000-02.com.mikrotik:pvc-1".into(),
            staging: "/staging".into(),
            layout: StagedLayout::Block,
            device: DeviceNumber::new(259, 1),
            device_path: "/dev/nvme0n1".into(),
            ids: ids("u1"),
            context: BTreeMap::new(),
            staged_at: 0,
            recoveries: 0,
            recovered_at: None,
            replaced: vec![],
            republished: vec![],
            stranded: vec![],
            published: vec![],
        }
    }

    fn device(minor: u32, ids: NamespaceIds) -> AttachedDevice {
        AttachedDevice {
            path: format!("/dev/nvme0n{minor}").into(),
            device: DeviceNumber::new(259, minor),
            newly_attached: false,
            ids,
        }
    }

    #[test]
    fn the_staged_namespace_on_its_device_is_the_same() {
        assert_eq!(judge(&record(), Some(&device(1, ids("u1")))), Verdict::Same);
    }

    #[test]
    fn nothing_carrying_the_nqn_is_no_device() {
        assert_eq!(judge(&record(), None), Verdict::NoDevice);
    }

    #[test]
    fn new_identifiers_are_a_replaced_namespace_even_on_the_same_device_number() {
        let now = device(1, ids("u2"));
        match judge(&record(), Some(&now)) {
            Verdict::Replaced { now: found, why } => {
                assert_eq!(found, now);
                assert!(why.contains("uuid changed from u1 to u2"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_same_identifiers_on_another_device_are_replaced_too() {
        // A controller the kernel gave up and that was connected again: same namespace, new
        // block device, and the staged filesystem is on the old one.
        match judge(&record(), Some(&device(2, ids("u1")))) {
            Verdict::Replaced { why, .. } => assert!(why.contains("new block device"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Without identifiers on either side the device number decides alone.
        let mut bare = record();
        bare.ids = NamespaceIds::default();
        assert_eq!(
            judge(&bare, Some(&device(1, NamespaceIds::default()))),
            Verdict::Same
        );
        assert!(matches!(
            judge(&bare, Some(&device(3, NamespaceIds::default()))),
            Verdict::Replaced { .. }
        ));
    }

    #[test]
    fn a_device_is_the_volumes_when_current_staged_or_replaced() {
        let mut r = record();
        r.replaced.push(DeviceNumber::new(259, 9));
        let current = Some(DeviceNumber::new(259, 4));
        assert!(is_volume_device(
            Some(&r),
            current,
            DeviceNumber::new(259, 4)
        ));
        assert!(is_volume_device(
            Some(&r),
            current,
            DeviceNumber::new(259, 1)
        ));
        assert!(is_volume_device(
            Some(&r),
            current,
            DeviceNumber::new(259, 9)
        ));
        assert!(!is_volume_device(
            Some(&r),
            current,
            DeviceNumber::new(8, 0)
        ));
        assert!(!is_volume_device(None, None, DeviceNumber::new(259, 1)));
    }

    #[test]
    fn a_replaced_namespace_is_abnormal_and_wakes_the_check() {
        let path = Path::new("/pods/a/mount");
        let now = device(2, ids("u2"));
        let (condition, wake) = identity_condition(Some(&record()), Some(&now), path, None, None);
        assert!(wake);
        let Condition::Abnormal(message) = condition else {
            panic!("{condition:?}")
        };
        assert!(message.contains("uuid changed from u1 to u2"), "{message}");
        assert!(
            message.contains("re-staging the volume on /dev/nvme0n2"),
            "{message}"
        );
        assert!(message.contains("must be restarted"), "{message}");
        let (condition, _) = identity_condition(
            Some(&record()),
            Some(&now),
            path,
            None,
            Some("umount: busy"),
        );
        assert!(
            matches!(condition, Condition::Abnormal(m) if m.contains("umount: busy; retrying"))
        );
    }

    #[test]
    fn a_path_a_restage_could_not_repoint_says_so_and_wakes_the_check() {
        let mut moved = record();
        moved.replaced.push(DeviceNumber::new(259, 7));
        moved.stranded.push("/pods/a/mount".into());
        let here = Some(device(1, ids("u1")));
        let (condition, wake) = identity_condition(
            Some(&moved),
            here.as_ref(),
            Path::new("/pods/a/mount"),
            Some(DeviceNumber::new(259, 7)),
            Some("mount: busy"),
        );
        assert!(wake);
        let Condition::Abnormal(message) = condition else {
            panic!("{condition:?}")
        };
        assert!(
            message.contains("could not yet point /pods/a/mount"),
            "{message}"
        );
        assert!(message.contains("(mount: busy)"), "{message}");
        // Another path of the same volume, on the current device, is not stranded.
        let other = identity_condition(
            Some(&moved),
            here.as_ref(),
            Path::new("/pods/b/mount"),
            Some(DeviceNumber::new(259, 1)),
            Some("mount: busy"),
        );
        assert_eq!(other, (Condition::Healthy, false));
    }

    #[test]
    fn a_pod_on_a_former_namespace_or_a_republished_path_is_told_to_restart() {
        let mut moved = record();
        moved.replaced.push(DeviceNumber::new(259, 7));
        moved.republished.push("/pods/b/mount".into());
        moved.recovered_at = Some(1_700_000_000);
        let here = Some(device(1, ids("u1")));
        let dead_mount = identity_condition(
            Some(&moved),
            here.as_ref(),
            Path::new("/pods/a/mount"),
            Some(DeviceNumber::new(259, 7)),
            None,
        );
        assert!(matches!(&dead_mount.0, Condition::Abnormal(m) if m.contains("/pods/a/mount")));
        assert!(!dead_mount.1);
        let republished = identity_condition(
            Some(&moved),
            here.as_ref(),
            Path::new("/pods/b/mount"),
            Some(DeviceNumber::new(259, 1)),
            None,
        );
        assert!(
            matches!(&republished.0, Condition::Abnormal(m) if m.contains("at 2023-11-14T22:13:20Z"))
        );
        // A device that was never this volume's says nothing about its namespace.
        let unrelated = identity_condition(
            Some(&moved),
            here.as_ref(),
            Path::new("/pods/d/mount"),
            Some(DeviceNumber::new(8, 0)),
            None,
        );
        assert_eq!(unrelated, (Condition::Healthy, false));
        // Another pod on the current device, and volumes without a record, are healthy.
        for (record, at) in [(Some(&moved), "/pods/c/mount"), (None, "/pods/b/mount")] {
            let healthy = identity_condition(
                record,
                here.as_ref(),
                Path::new(at),
                Some(DeviceNumber::new(259, 1)),
                None,
            );
            assert_eq!(healthy, (Condition::Healthy, false));
        }
    }

    #[test]
    fn failed_recoveries_back_off_doubling_up_to_a_ceiling_and_success_resets() {
        let mut backoff = Backoff::default();
        let t0 = Instant::now();
        assert!(backoff.due("v", t0));
        assert_eq!(backoff.failed("v", t0), FIRST_RETRY_WAIT);
        assert!(!backoff.due("v", t0));
        assert!(backoff.due("other", t0));
        assert!(backoff.due("v", t0 + FIRST_RETRY_WAIT));
        assert_eq!(backoff.failed("v", t0), FIRST_RETRY_WAIT * 2);
        assert_eq!(backoff.failed("v", t0), FIRST_RETRY_WAIT * 4);
        for _ in 0..40 {
            backoff.failed("v", t0);
        }
        assert_eq!(backoff.failed("v", t0), MAX_RETRY_WAIT);
        backoff.succeeded("v");
        assert!(backoff.due("v", t0));
        backoff.failed("gone", t0);
        backoff.retain(|id| id != "gone");
        assert!(backoff.due("gone", t0));
    }
}
