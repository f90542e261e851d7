//! What the device holds under the driver's directory, read in one round trip for the
//! controller's orphan reconciler: the device's clock, every file disk, and the `.img` files
//! under a directory. Ages are measured on the device (its clock against its files'
//! `last-modified`), so the controller's own clock, time zone and skew play no part.

use std::time::Duration;

use jiff::civil::DateTime;
use serde_json::Value;

use crate::error::Error;
use crate::model::{FileDisk, FileEntry, ImageUser};
use crate::reply::{file_disks_lenient, file_entry, image_user, items, req_str, single_object};

/// A wall-clock reading of the device, in its own time zone (RouterOS prints local time
/// without an offset; comparing two readings of the same device needs none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceTime(DateTime);

impl DeviceTime {
    /// `2025-11-11 14:32:41` (RouterOS 7.10+) or `nov/11/2025 14:32:41` (older 7.x).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        ["%Y-%m-%d %H:%M:%S", "%b/%d/%Y %H:%M:%S"]
            .iter()
            .find_map(|format| DateTime::strptime(format, text).ok())
            .map(Self)
            .ok_or_else(|| Error::Protocol(format!("unreadable device time {text:?}")))
    }

    /// The `/system clock` reading: its `date` and `time` properties.
    pub fn from_clock(date: &str, time: &str) -> Result<Self, Error> {
        Self::parse(&format!("{} {}", date.trim(), time.trim()))
    }

    /// Seconds since the Unix epoch if the device's clock runs in UTC (RouterOS prints no
    /// offset, so another time zone shifts this by its offset).
    pub fn unix_seconds_if_utc(&self) -> Option<i64> {
        self.0
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_second())
    }

    /// How long after `earlier` this reading is; `None` when it is not later (a clock set
    /// back, a file touched after the clock was read): no age can be proven then.
    pub fn since(&self, earlier: &DeviceTime) -> Option<Duration> {
        Duration::try_from(self.0.duration_since(earlier.0)).ok()
    }
}

impl std::fmt::Display for DeviceTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.strftime("%Y-%m-%d %H:%M:%S"))
    }
}

/// The device's holdings, as the orphan reconciler judges them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The device's clock, read before the listings: a file modified after the reading
    /// shows no age at all, never too large an age.
    pub clock: DeviceTime,
    /// Every file disk that reads as one (others are left out, as in a volume listing).
    pub disks: Vec<FileDisk>,
    /// Every file disk's image, read strictly: one disk whose file cannot be read fails the
    /// whole inventory, so an image in use never looks unused.
    pub image_users: Vec<ImageUser>,
    /// The `.img` files under the directory, at any depth.
    pub images: Vec<FileEntry>,
}

impl Inventory {
    /// When a file was last modified, if the device said and it reads.
    pub fn modified(file: &FileEntry) -> Option<DeviceTime> {
        file.last_modified
            .as_deref()
            .and_then(|text| DeviceTime::parse(text).ok())
    }
}

/// Parses the three JSON values of [`crate::command::inventory`]: the clock, the file disks,
/// the images. `dir` is the directory they were listed under (checked: nothing else may come
/// back).
pub fn parse(values: Vec<Value>, dir: &str) -> Result<Inventory, Error> {
    let [clock, disks, files]: [Value; 3] = values.try_into().map_err(|v: Vec<Value>| {
        Error::Protocol(format!(
            "inventory: expected 3 JSON values, got {}",
            v.len()
        ))
    })?;
    let clock = single_object(clock, "system clock")?;
    let clock = DeviceTime::from_clock(&req_str(&clock, "date")?, &req_str(&clock, "time")?)?;
    let image_users = items(disks.clone())?
        .iter()
        .map(image_user)
        .collect::<Result<_, _>>()?;
    let disks = file_disks_lenient(disks)?;
    let images: Vec<FileEntry> = items(files)?
        .iter()
        .map(file_entry)
        .collect::<Result<_, _>>()?;
    let prefix = format!("{dir}/");
    if let Some(stray) = images
        .iter()
        .find(|f| !(f.name.starts_with(&prefix) && f.name.ends_with(".img")))
    {
        return Err(Error::Protocol(format!(
            "listing the images under {dir}, the device returned {}",
            stray.name
        )));
    }
    Ok(Inventory {
        clock,
        disks,
        image_users,
        images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn device_times_in_both_date_forms_and_their_differences() {
        let new = DeviceTime::parse("2025-11-11 14:32:41").unwrap();
        let old = DeviceTime::parse("nov/11/2025 14:32:41").unwrap();
        assert_eq!(new, old);
        assert_eq!(DeviceTime::parse("Nov/11/2025 14:32:41").unwrap(), new);
        let clock = DeviceTime::from_clock("2025-11-12", "15:32:42").unwrap();
        assert_eq!(clock.since(&new), Some(Duration::from_secs(90_001)));
        assert_eq!(new.since(&clock), None, "no age before the file's time");
        assert_eq!(new.since(&new), Some(Duration::ZERO));
        assert_eq!(new.to_string(), "2025-11-11 14:32:41");
        for bad in [
            "",
            "2025-11-11",
            "14:32:41",
            "2025-13-01 00:00:00",
            "yesterday",
        ] {
            assert!(DeviceTime::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn disk(id: &str, slot: &str, path: &str) -> Value {
        json!({".id": id, "slot": slot, "type": "file", "file-path": path,
               "file-size": 1073741824u64, "nvme-tcp-export": true,
               "nvme-tcp-server-port": 4420, "nvme-tcp-server-nqn": format!("nqn.2000-02.com.mikrotik:{slot}")})
    }

    fn file(name: &str, modified: &str) -> Value {
        json!({".id": "*F1", "name": name, "type": ".img file", "size": 1024, "last-modified": modified})
    }

    #[test]
    fn an_inventory_reads_the_clock_the_disks_and_the_images() {
        let inventory = parse(
            vec![
                json!({"date": "2026-12-05", "time": "07:30:09", "time-zone-name": "UTC"}),
                json!([disk("*1", "pvc-a", "storage-pool/pvc-a.img")]),
                json!([file("storage-pool/pvc-b.img", "2026-12-05 06:30:09")]),
            ],
            "storage-pool",
        )
        .unwrap();
        assert_eq!(inventory.clock.to_string(), "2026-12-05 07:30:09");
        assert_eq!(inventory.disks.len(), 1);
        assert_eq!(inventory.image_users[0].file_path, "storage-pool/pvc-a.img");
        let modified = Inventory::modified(&inventory.images[0]).unwrap();
        assert_eq!(
            inventory.clock.since(&modified),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn an_inventory_refuses_what_it_cannot_trust() {
        let clock = || json!({"date": "2026-12-05", "time": "07:30:09"});
        let refused = |values: Vec<Value>| parse(values, "storage-pool").unwrap_err();
        // A file outside the directory.
        refused(vec![
            clock(),
            json!([]),
            json!([file("other/pvc-b.img", "2026-12-05 06:30:09")]),
        ]);
        // A disk whose image cannot be read: an image in use must never look unused.
        refused(vec![
            clock(),
            json!([{".id": "*1", "slot": "pvc-a"}]),
            json!([]),
        ]);
        // No clock, an unreadable clock, a missing value.
        refused(vec![json!([]), json!([]), json!([])]);
        refused(vec![
            json!({"date": "soon", "time": "now"}),
            json!([]),
            json!([]),
        ]);
        refused(vec![clock(), json!([])]);
    }
}
