//! Which snapshot methods the device has (docs/snapshots.md), tried on throwaway items under
//! the run's own names: a subvolume with a never-exported disk's image in it, a read-only
//! snapshot of it, `/file copy` of that image, and `/disk copy` between two never-exported
//! disks. Everything is removed again here, disk first; what a failure leaves is named (the
//! final cleanup also removes the run's disks).

use std::fmt::Write as _;

use routeros::quote::quote;
use routeros::{Client, FilePath, ItemId, RouterOsVersion, SubvolumeName, SubvolumeOutcome};
use serde::Serialize;

use super::plan::{IMAGE_SIZE, Plan};

/// How one method fared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum MethodOutcome {
    /// The run stopped before it.
    #[default]
    NotTried,
    /// The device's RouterOS has no such command.
    NotOnThisVersion { needs: &'static str },
    /// Not over this transport (a block copy outlasts REST's 60 seconds).
    NotOverThisTransport { needs: &'static str },
    /// It did what the driver relies on; what the device showed on the way.
    Works { seen: Vec<String> },
    /// A step failed, with the device's words.
    Failed { step: String, error: String },
}

/// The snapshot methods, tried.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MethodsReport {
    pub subvolume_snapshot: MethodOutcome,
    pub file_copy: MethodOutcome,
    pub disk_copy: MethodOutcome,
    /// What of this part could not be removed.
    pub left: Vec<String>,
}

impl MethodsReport {
    /// The report's lines.
    pub fn render(&self) -> String {
        let mut out = String::from("\nsnapshot methods (docs/snapshots.md):\n");
        for (name, outcome) in [
            ("btrfs subvolume snapshots", &self.subvolume_snapshot),
            ("/file copy", &self.file_copy),
            ("/disk copy", &self.disk_copy),
        ] {
            let text = match outcome {
                MethodOutcome::NotTried => "not tried".to_owned(),
                MethodOutcome::NotOnThisVersion { needs } => {
                    format!("not on this RouterOS (needs {needs})")
                }
                MethodOutcome::NotOverThisTransport { needs } => {
                    format!("not tried over this transport (needs {needs})")
                }
                MethodOutcome::Works { seen } => format!("works ({})", seen.join("; ")),
                MethodOutcome::Failed { step, error } => format!("failed at {step}: {error}"),
            };
            let _ = writeln!(out, "   {name}: {text}");
        }
        for item in &self.left {
            let _ = writeln!(out, "   left on the device: {item}");
        }
        out
    }
}

/// The run's names for this part.
struct Names {
    subvolume: SubvolumeName,
    snapshot: SubvolumeName,
    slot: String,
    image: FilePath,
    copy: FilePath,
    /// The block copy's source and destination disks, with their images.
    block: [(routeros::Slot, FilePath); 2],
}

impl Names {
    fn new(plan: &Plan, pool: &str) -> Self {
        let name = |suffix: &str| format!("{}-{suffix}", plan.tag());
        let subvolume = SubvolumeName::try_from(name("sv")).expect("tag names are names");
        Self {
            image: FilePath::try_from(format!("{pool}/{subvolume}/{subvolume}.img"))
                .expect("a pool and tag names form a path"),
            copy: FilePath::try_from(format!("{}-copy.img", plan.image_prefix()))
                .expect("tag names under a valid base are file paths"),
            snapshot: SubvolumeName::try_from(name("snap")).expect("tag names are names"),
            block: ["bcsrc", "bcdst"].map(|end| {
                (
                    routeros::Slot::try_from(name(end)).expect("tag names are slots"),
                    FilePath::try_from(format!("{}-{end}.img", plan.image_prefix()))
                        .expect("tag names under a valid base are file paths"),
                )
            }),
            slot: subvolume.to_string(),
            subvolume,
        }
    }
}

/// A failed step's outcome.
fn failed(step: &str, error: impl std::fmt::Display) -> MethodOutcome {
    MethodOutcome::Failed {
        step: step.to_owned(),
        error: error.to_string(),
    }
}

/// Tries the methods this version has, then removes what it made.
pub async fn probe(
    client: &Client,
    plan: &Plan,
    pool: &str,
    fs: &str,
    version: &RouterOsVersion,
) -> MethodsReport {
    let mut report = MethodsReport::default();
    let names = Names::new(plan, pool);
    report.disk_copy = if client.transport() == "ssh" {
        let outcome = disk_copy(client, &names).await;
        report.left.extend(remove_block_copy(client, &names).await);
        outcome
    } else {
        MethodOutcome::NotOverThisTransport { needs: "SSH" }
    };
    if !version.supports_subvolumes() {
        report.subvolume_snapshot = MethodOutcome::NotOnThisVersion { needs: "7.18" };
        report.file_copy = MethodOutcome::NotOnThisVersion { needs: "7.23" };
        return report;
    }
    report.subvolume_snapshot = subvolume_snapshot(client, pool, fs, &names).await;
    report.file_copy = if !version.supports_file_copy() {
        MethodOutcome::NotOnThisVersion { needs: "7.23" }
    } else if matches!(report.subvolume_snapshot, MethodOutcome::Works { .. }) {
        file_copy(client, &names).await
    } else {
        MethodOutcome::NotTried
    };
    report.left.extend(remove(client, pool, &names).await);
    report
}

/// `/disk copy` from one throwaway disk into another, judged by its last status.
async fn disk_copy(client: &Client, names: &Names) -> MethodOutcome {
    for (slot, image) in &names.block {
        let disk = routeros::UnexportedDisk {
            slot: slot.clone(),
            file_path: image.clone(),
            size: Some(IMAGE_SIZE),
            comment: "rds-csi doctor".into(),
        };
        match client.add_unexported_disk(&disk).await {
            Ok(routeros::UnexportedOutcome::Added(_)) => {}
            Ok(_) => return failed("adding a disk to copy", "one of the run's names is taken"),
            Err(error) => return failed("adding a disk to copy", error),
        }
    }
    let [(src, _), (dst, _)] = &names.block;
    let deadline = std::time::Duration::from_secs(60);
    match client.block_copy(src, dst, deadline).await {
        Ok(routeros::BlockCopyOutcome::Finished) => MethodOutcome::Works {
            seen: vec![format!("its last status said the whole {IMAGE_SIZE} bytes")],
        },
        Ok(routeros::BlockCopyOutcome::Unfinished { said, .. }) => failed(
            "copying",
            format!("no final status; the device said {said:?}"),
        ),
        Err(error) => failed("copying", error),
    }
}

/// Removes the block copy's disks with their images; returns what could not be removed.
async fn remove_block_copy(client: &Client, names: &Names) -> Vec<String> {
    let mut left = Vec::new();
    for (slot, image) in &names.block {
        let removed = match client.get_disk(slot).await {
            Ok(Some(disk)) => match ItemId::try_from(disk.id.as_str()) {
                Ok(id) => client.remove_disk(&id, Some(image)).await.map(drop),
                Err(error) => Err(error),
            },
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = removed {
            left.push(format!("disk {slot} with {image} ({error})"));
        }
    }
    left
}

async fn subvolume_snapshot(client: &Client, pool: &str, fs: &str, names: &Names) -> MethodOutcome {
    match client.create_subvolume(fs, &names.subvolume).await {
        Ok(SubvolumeOutcome::Created(_)) => {}
        Ok(SubvolumeOutcome::Exists(_)) => {
            return failed("adding a subvolume", "one of the run's names is taken");
        }
        Err(error) => return failed("adding a subvolume", error),
    }
    // Never exported: nothing here is for a host to see.
    let add = format!(
        "/disk add type=file slot={} file-path={} file-size={IMAGE_SIZE} mount-filesystem=no \
         nvme-tcp-export=no",
        quote(&names.slot),
        quote(names.image.as_str())
    );
    match client.run_script(&add).await {
        Ok(output) if output.stdout.iter().all(u8::is_ascii_whitespace) => {}
        Ok(output) => {
            return failed(
                "adding a disk in the subvolume",
                String::from_utf8_lossy(&output.stdout).trim(),
            );
        }
        Err(error) => return failed("adding a disk in the subvolume", error),
    }
    let snapshot = match client
        .snapshot_subvolume(fs, &names.subvolume, &names.snapshot, true)
        .await
    {
        Ok(SubvolumeOutcome::Created(item)) => item,
        Ok(SubvolumeOutcome::Exists(_)) => {
            return failed("snapshotting it", "one of the run's names is taken");
        }
        Err(error) => return failed("snapshotting it", error),
    };
    let (_, files) = match client.subvolume_contents(pool, &names.snapshot).await {
        Ok(contents) => contents,
        Err(error) => return failed("reading the snapshot", error),
    };
    let copied = format!("{pool}/{}/{}.img", names.snapshot, names.subvolume);
    let Some(image) = files.iter().find(|f| f.name == copied) else {
        return failed("reading the snapshot", format!("no {copied} in it"));
    };
    MethodOutcome::Works {
        seen: vec![
            format!(
                "the snapshot shows its parent: {}",
                snapshot.parent.as_deref().unwrap_or("no")
            ),
            format!(
                "read-only: {}",
                if snapshot.read_only { "yes" } else { "no" }
            ),
            format!("its copy of the image: {} bytes", image.size),
        ],
    }
}

async fn file_copy(client: &Client, names: &Names) -> MethodOutcome {
    match client.copy_file(&names.image, &names.copy).await {
        Ok(routeros::CopyOutcome::Copied(file)) => MethodOutcome::Works {
            seen: vec![format!("the copy: {} bytes", file.size)],
        },
        Ok(routeros::CopyOutcome::TargetExists(_)) => {
            failed("copying the image", "one of the run's names is taken")
        }
        Err(error) => failed("copying the image", error),
    }
}

/// Removes the disk, the copy, the snapshot and the subvolume (with its image); returns
/// what could not be removed.
async fn remove(client: &Client, pool: &str, names: &Names) -> Vec<String> {
    let mut left = Vec::new();
    let disk = match routeros::Slot::try_from(names.slot.as_str()) {
        Ok(slot) => client.get_disk(&slot).await,
        Err(error) => Err(error),
    };
    match disk {
        Ok(Some(disk)) => {
            let removed = match ItemId::try_from(disk.id.as_str()) {
                Ok(id) => client.remove_disk(&id, None).await.map(drop),
                Err(error) => Err(error),
            };
            if let Err(error) = removed {
                left.push(format!("disk {} ({error})", names.slot));
            }
        }
        Ok(None) => {}
        Err(error) => left.push(format!("disk {} ({error})", names.slot)),
    }
    if let Err(error) = client.remove_file(&names.copy).await {
        left.push(format!("file {} ({error})", names.copy));
    }
    for subvolume in [&names.snapshot, &names.subvolume] {
        if let Err(error) = client.remove_subvolume(subvolume).await {
            left.push(format!("subvolume {subvolume} in {pool} ({error})"));
        }
    }
    left
}
