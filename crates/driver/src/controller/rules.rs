//! The controller's decisions, free of I/O: what a CreateVolume asks of the device, whether an
//! existing disk answers it, which disks are the driver's, how healthy a volume looks, and
//! how listings are paged.

use std::collections::HashMap;

use csi::v1::CapacityRange;
use routeros::{DiskSpec, FileDisk, FilePath, Nqn, NqnSource, Slot};

use crate::capacity::SizePolicy;
use crate::config::ControllerConfig;
use crate::error::{DriverError, Result};
use crate::naming::{self, VolumeComment};
use crate::params::{self, VolumeContext, VolumeParams};

/// A volume id of the shape the driver creates (`pvc-<uuid>` or `csi-<hash>`), which is also
/// the disk's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeId(Slot);

impl VolumeId {
    /// `None` for anything the driver would never have created: such ids are not ours.
    pub fn parse(id: &str) -> Option<Self> {
        if !naming::is_managed_volume_id(id) {
            return None;
        }
        Slot::try_from(id).ok().map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn slot(&self) -> &Slot {
        &self.0
    }
}

impl std::fmt::Display for VolumeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The image path of a volume in a directory: `<dir>/<id>.img`.
pub fn image_path(dir: &str, id: &VolumeId) -> FilePath {
    FilePath::try_from(naming::image_path(dir, id.as_str()))
        .expect("validated directory and volume id always form a valid file path")
}

/// The disk's image if the disk is one of the driver's: a managed slot whose image is
/// `<slot>.img` in a directory within the base path. Anything else is never touched.
pub fn owned_image(disk: &FileDisk, base_path: &str) -> Option<FilePath> {
    if !naming::is_managed_volume_id(&disk.slot) {
        return None;
    }
    let (dir, file) = disk.file_path.rsplit_once('/')?;
    let ours = params::is_within(dir, base_path) && file == format!("{}.img", disk.slot);
    ours.then(|| FilePath::try_from(disk.file_path.as_str()).ok())
        .flatten()
}

/// The directory for a volume's image: the StorageClass's `volumePath`, which must lie
/// within the controller's base path, or the base path itself.
pub fn volume_path(config: &ControllerConfig, params: &VolumeParams) -> Result<String> {
    let path = params
        .volume_path
        .clone()
        .unwrap_or_else(|| config.volume_base_path.clone());
    if !params::is_within(&path, &config.volume_base_path) {
        return Err(DriverError::Params(params::ParamError::Invalid {
            key: params::VOLUME_PATH,
            value: path,
            reason: format!(
                "must lie within the controller's base path {:?}",
                config.volume_base_path
            ),
        }));
    }
    Ok(path)
}

/// Everything CreateVolume will ask of the device, decided before any I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    pub name: String,
    pub id: VolumeId,
    /// Bytes to provision (the range's answer, rounded up to the granularity).
    pub size: u64,
    pub required_bytes: i64,
    pub limit_bytes: i64,
    pub params: VolumeParams,
    /// Directory of the image, within the base path.
    pub volume_path: String,
    pub file_path: FilePath,
    pub nqn: Nqn,
    pub port: u16,
    pub params_digest: String,
}

impl VolumePlan {
    /// Validates a CreateVolume's name, capacity range and parameters against the
    /// configuration and derives every device-side name from them.
    pub fn new(
        config: &ControllerConfig,
        name: &str,
        range: Option<&CapacityRange>,
        parameters: &HashMap<String, String>,
    ) -> Result<Self> {
        naming::validate_csi_name(name)?;
        let (required_bytes, limit_bytes) =
            range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
        let size = config.sizes.choose(required_bytes, limit_bytes)?;
        let params = VolumeParams::parse(parameters)?;
        let volume_path = volume_path(config, &params)?;
        let id = VolumeId::parse(&naming::volume_id_for_name(name))
            .expect("derived volume ids are managed slots");
        let nqn = Nqn::try_from(naming::nqn_for_volume(&config.nqn_prefix, id.as_str()))
            .map_err(|e| DriverError::Internal(format!("NQN for {id}: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            file_path: image_path(&volume_path, &id),
            size,
            required_bytes,
            limit_bytes,
            port: params.nvme_port.unwrap_or(config.nvme_port),
            params_digest: params.digest(),
            params,
            volume_path,
            nqn,
            id,
        })
    }

    /// What to ask `/disk add` for.
    pub fn disk_spec(&self) -> DiskSpec {
        DiskSpec {
            slot: self.id.slot().clone(),
            file_path: self.file_path.clone(),
            size: self.size,
            port: self.port,
            nqn: self.nqn.clone(),
            comment: Some(
                VolumeComment {
                    params_digest: &self.params_digest,
                    name: &self.name,
                }
                .render(),
            ),
        }
    }

    /// Whether an existing disk with this volume's slot is the volume this request asks for
    /// (idempotent success) or not (`Err` with the reason, ALREADY_EXISTS).
    ///
    /// Disks the driver made record the name and a parameter digest in their comment; disks
    /// adopted from the Go driver have no comment and are compared on what the device shows.
    pub fn check_existing(&self, disk: &FileDisk) -> std::result::Result<(), String> {
        match disk.comment.as_deref().and_then(VolumeComment::parse) {
            Some(recorded) => {
                if recorded.name != self.name {
                    return Err(format!("was created for the CSI name {:?}", recorded.name));
                }
                if recorded.params_digest != self.params_digest {
                    return Err("was created with different parameters".into());
                }
            }
            // Only `pvc-` names are verbatim slots; a hashed slot must say which name it holds.
            None if !naming::is_pvc_name(&disk.slot) => {
                return Err("does not record which CSI name it was created for".into());
            }
            None => {}
        }
        if disk.file_path != self.file_path.as_str() {
            return Err(format!(
                "its image is {}, not {} (volumePath differs)",
                disk.file_path, self.file_path
            ));
        }
        if disk.nvme_tcp_port != self.port {
            return Err(format!(
                "it is exported on port {}, not {}",
                disk.nvme_tcp_port, self.port
            ));
        }
        if !disk.nvme_tcp_export {
            return Err("it is not exported over NVMe/TCP".into());
        }
        if disk.nqn != self.nqn.as_str() {
            return Err(format!("it is exported as {}, not {}", disk.nqn, self.nqn));
        }
        if disk.mount_filesystem {
            return Err(
                "mount-filesystem is on: RouterOS could mount its filesystem while a node writes"
                    .into(),
            );
        }
        if !SizePolicy::satisfies(disk.file_size, self.required_bytes, self.limit_bytes) {
            return Err(format!(
                "its size {} bytes is outside the requested range (required {}, limit {})",
                disk.file_size, self.required_bytes, self.limit_bytes
            ));
        }
        Ok(())
    }

    /// The VolumeContext for the node: the NQN as the device reports it (the slot before
    /// RouterOS 7.21), where to connect, and the StorageClass's connect and mkfs options.
    pub fn context(&self, config: &ControllerConfig, disk: &FileDisk) -> VolumeContext {
        VolumeContext {
            nqn: disk.nqn.clone(),
            nvme_address: self
                .params
                .nvme_address
                .clone()
                .unwrap_or_else(|| config.nvme_address.clone()),
            nvme_port: disk.nvme_tcp_port,
            connect: self.params.connect.clone(),
            mkfs_options: self.params.mkfs_options.clone(),
            volume_path: Some(self.volume_path.clone()),
            migration_timeout_seconds: self.params.migration_timeout_seconds,
        }
    }
}

/// The controller's view of a volume's health (CSI VolumeCondition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub abnormal: bool,
    pub message: String,
}

/// Judges a volume from its disk: abnormal when it is not exported, exported under another
/// NQN than the one its id implies, or set to have RouterOS mount its filesystem.
pub fn volume_condition(disk: &FileDisk, nqn_prefix: &str) -> Condition {
    let expected_nqn = match disk.nqn_source {
        NqnSource::ServerNqn => naming::nqn_for_volume(nqn_prefix, &disk.slot),
        NqnSource::SlotName => disk.slot.clone(),
    };
    let mut problems = Vec::new();
    if !disk.nvme_tcp_export {
        problems.push("the disk is not exported over NVMe/TCP".to_owned());
    }
    if disk.nqn != expected_nqn {
        problems.push(format!(
            "the disk is exported as {}, expected {expected_nqn}",
            disk.nqn
        ));
    }
    if disk.mount_filesystem {
        problems.push(
            "mount-filesystem is on: RouterOS may mount the volume's filesystem while nodes use it"
                .to_owned(),
        );
    }
    if problems.is_empty() {
        Condition {
            abnormal: false,
            message: format!(
                "exported as {} on port {}, {} bytes",
                disk.nqn, disk.nvme_tcp_port, disk.file_size
            ),
        }
    } else {
        Condition {
            abnormal: true,
            message: problems.join("; "),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub disks: Vec<FileDisk>,
    /// Token for the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// A listing token is empty or the last volume id of the previous page; anything else was
/// not issued by the driver.
pub fn check_token(starting_token: &str) -> Result<()> {
    if starting_token.is_empty() || naming::is_managed_volume_id(starting_token) {
        Ok(())
    } else {
        Err(DriverError::InvalidToken(starting_token.to_owned()))
    }
}

/// Pages the driver's disks by slot. The token is the last slot of the previous page, so a
/// listing survives volumes being added or removed between pages (the spec allows the CO to
/// see some twice or not at all).
pub fn page(
    disks: Vec<FileDisk>,
    base_path: &str,
    starting_token: &str,
    max_entries: usize,
) -> Result<Page> {
    check_token(starting_token)?;
    let mut ours: Vec<FileDisk> = disks
        .into_iter()
        .filter(|d| owned_image(d, base_path).is_some())
        .filter(|d| starting_token.is_empty() || d.slot.as_str() > starting_token)
        .collect();
    ours.sort_by(|a, b| a.slot.cmp(&b.slot));
    let next_token = (max_entries != 0 && ours.len() > max_entries).then(|| {
        ours.truncate(max_entries);
        ours[max_entries - 1].slot.clone()
    });
    Ok(Page {
        disks: ours,
        next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::{GIB, MIB};

    const PVC: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";

    fn config() -> ControllerConfig {
        ControllerConfig::new("10.0.0.1").validate().unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn range(required: u64, limit: u64) -> CapacityRange {
        CapacityRange {
            required_bytes: required as i64,
            limit_bytes: limit as i64,
        }
    }

    /// The disk the device reports after creating `plan` on RouterOS 7.21+.
    fn disk_for(plan: &VolumePlan) -> FileDisk {
        let spec = plan.disk_spec();
        FileDisk {
            id: "*1".into(),
            slot: spec.slot.to_string(),
            file_path: spec.file_path.to_string(),
            file_size: spec.size,
            nvme_tcp_export: true,
            nvme_tcp_port: spec.port,
            nqn: spec.nqn.to_string(),
            nqn_source: NqnSource::ServerNqn,
            mount_filesystem: false,
            comment: spec.comment,
        }
    }

    /// A disk as the Go driver made it: no comment, image `<path>/<id>.img`.
    fn go_disk(path: &str, size: u64) -> FileDisk {
        FileDisk {
            id: "*7".into(),
            slot: PVC.into(),
            file_path: format!("{path}/{PVC}.img"),
            file_size: size,
            nvme_tcp_export: true,
            nvme_tcp_port: 4420,
            nqn: format!("nqn.2000-02.com.mikrotik:{PVC}"),
            nqn_source: NqnSource::ServerNqn,
            mount_filesystem: false,
            comment: None,
        }
    }

    #[test]
    fn plans_pvc_names_verbatim_and_others_hashed() {
        let c = config();
        let p = VolumePlan::new(&c, PVC, Some(&range(GIB + 1, 0)), &HashMap::new()).unwrap();
        assert_eq!(p.id.as_str(), PVC);
        assert_eq!(p.size, GIB + MIB);
        assert_eq!(p.file_path.as_str(), format!("storage-pool/{PVC}.img"));
        assert_eq!(p.nqn.as_str(), format!("nqn.2000-02.com.mikrotik:{PVC}"));
        assert_eq!(p.port, 4420);
        let comment = p.disk_spec().comment.unwrap();
        assert_eq!(VolumeComment::parse(&comment).unwrap().name, PVC);

        let hostile = "x\"; /disk remove [find]; $y\n[ü]";
        let p = VolumePlan::new(&c, hostile, None, &HashMap::new()).unwrap();
        assert!(p.id.as_str().starts_with("csi-"));
        assert_eq!(p.size, GIB, "no range means the default size");
        let spec = p.disk_spec();
        assert_eq!(
            VolumeComment::parse(spec.comment.as_deref().unwrap())
                .unwrap()
                .name,
            hostile
        );
    }

    #[test]
    fn plan_refuses_bad_input_before_any_io() {
        let c = config();
        let none = HashMap::new();
        assert!(matches!(
            VolumePlan::new(&c, "", None, &none),
            Err(DriverError::Name(_))
        ));
        assert!(matches!(
            VolumePlan::new(&c, "a\u{1}", None, &none),
            Err(DriverError::Name(_))
        ));
        assert!(matches!(
            VolumePlan::new(&c, "v", Some(&range(2 * GIB, GIB)), &none),
            Err(DriverError::Size(_))
        ));
        assert!(matches!(
            VolumePlan::new(&c, "v", None, &params(&[("bogus", "1")])),
            Err(DriverError::Params(_))
        ));
        let outside = VolumePlan::new(&c, "v", None, &params(&[("volumePath", "other-pool/x")]));
        let Err(DriverError::Params(e)) = outside else {
            panic!("{outside:?}")
        };
        assert!(e.to_string().contains("base path"), "{e}");
    }

    #[test]
    fn parameters_shape_the_plan_and_the_context() {
        let c = config();
        let p = VolumePlan::new(
            &c,
            PVC,
            None,
            &params(&[
                ("volumePath", "storage-pool/k8s"),
                ("nvmePort", "4421"),
                ("nvmeAddress", "192.0.2.7"),
                ("ctrlLossTmo", "-1"),
            ]),
        )
        .unwrap();
        assert_eq!(p.file_path.as_str(), format!("storage-pool/k8s/{PVC}.img"));
        assert_eq!(p.port, 4421);
        let ctx = p.context(&c, &disk_for(&p)).to_map();
        assert_eq!(ctx["nvmeAddress"], "192.0.2.7");
        assert_eq!(ctx["nvmePort"], "4421");
        assert_eq!(ctx["ctrlLossTmo"], "-1");
        assert_eq!(ctx["nqn"], p.nqn.as_str());
        assert_eq!(ctx["volumePath"], "storage-pool/k8s");

        // Before RouterOS 7.21 the device reports the slot as NQN; the context follows it.
        let mut old = disk_for(&p);
        old.nqn = p.id.to_string();
        assert_eq!(p.context(&c, &old).nqn, p.id.as_str());
        // Without nvmeAddress the controller's default is used.
        let plain = VolumePlan::new(&c, PVC, None, &HashMap::new()).unwrap();
        assert_eq!(
            plain.context(&c, &disk_for(&plain)).nvme_address,
            "10.0.0.1"
        );
    }

    #[test]
    fn existing_disk_of_the_same_request_is_accepted() {
        let c = config();
        let p = VolumePlan::new(&c, "my volume", Some(&range(GIB, 0)), &HashMap::new()).unwrap();
        assert_eq!(p.check_existing(&disk_for(&p)), Ok(()));
        // A bigger existing volume still satisfies a range without limit.
        let mut bigger = disk_for(&p);
        bigger.file_size = 2 * GIB;
        assert_eq!(p.check_existing(&bigger), Ok(()));
    }

    #[test]
    fn existing_disk_of_another_request_is_refused_with_a_reason() {
        let c = config();
        let p = VolumePlan::new(&c, "v", Some(&range(GIB, GIB)), &HashMap::new()).unwrap();
        let other_params = VolumePlan::new(
            &c,
            "v",
            Some(&range(GIB, GIB)),
            &params(&[("ctrlLossTmo", "30")]),
        )
        .unwrap();
        let cases: Vec<(FileDisk, &str)> = vec![
            (disk_for(&other_params), "different parameters"),
            (
                FileDisk {
                    file_size: 2 * GIB,
                    ..disk_for(&p)
                },
                "outside the requested range",
            ),
            (
                FileDisk {
                    nvme_tcp_port: 4421,
                    ..disk_for(&p)
                },
                "port 4421",
            ),
            (
                FileDisk {
                    comment: Some(
                        VolumeComment {
                            params_digest: &p.params_digest,
                            name: "w",
                        }
                        .render(),
                    ),
                    ..disk_for(&p)
                },
                "CSI name \"w\"",
            ),
            (
                FileDisk {
                    comment: None,
                    ..disk_for(&p)
                },
                "does not record",
            ),
            (
                FileDisk {
                    nvme_tcp_export: false,
                    ..disk_for(&p)
                },
                "not exported",
            ),
            (
                FileDisk {
                    nqn: "nqn.2000-02.com.other:x".into(),
                    ..disk_for(&p)
                },
                "exported as nqn.2000-02.com.other:x",
            ),
            (
                FileDisk {
                    mount_filesystem: true,
                    ..disk_for(&p)
                },
                "mount-filesystem",
            ),
        ];
        for (disk, needle) in cases {
            let reason = p.check_existing(&disk).unwrap_err();
            assert!(reason.contains(needle), "{needle}: {reason}");
        }
    }

    #[test]
    fn go_driver_disks_are_adopted() {
        let c = config();
        let p = VolumePlan::new(&c, PVC, Some(&range(GIB, 0)), &HashMap::new()).unwrap();
        assert_eq!(p.check_existing(&go_disk("storage-pool", GIB)), Ok(()));
        let reason = p
            .check_existing(&go_disk("storage-pool/metal", GIB))
            .unwrap_err();
        assert!(reason.contains("volumePath"), "{reason}");
        assert!(owned_image(&go_disk("storage-pool/metal", GIB), "storage-pool").is_some());
    }

    #[test]
    fn ownership_needs_managed_slot_base_path_and_matching_image_name() {
        let mine = go_disk("storage-pool", GIB);
        assert_eq!(
            owned_image(&mine, "storage-pool").unwrap().as_str(),
            format!("storage-pool/{PVC}.img")
        );
        assert!(owned_image(&mine, "storage-pool/k8s").is_none());
        let foreign_slot = FileDisk {
            slot: "vm-disk".into(),
            file_path: "storage-pool/vm-disk.img".into(),
            ..mine.clone()
        };
        assert!(owned_image(&foreign_slot, "storage-pool").is_none());
        let other_image = FileDisk {
            file_path: "storage-pool/data.img".into(),
            ..mine.clone()
        };
        assert!(owned_image(&other_image, "storage-pool").is_none());
        let sibling_dir = FileDisk {
            file_path: format!("storage-pool2/{PVC}.img"),
            ..mine
        };
        assert!(owned_image(&sibling_dir, "storage-pool").is_none());
    }

    #[test]
    fn condition_reports_every_problem() {
        let healthy = go_disk("storage-pool", GIB);
        let c = volume_condition(&healthy, "nqn.2000-02.com.mikrotik");
        assert!(!c.abnormal, "{}", c.message);
        let sick = FileDisk {
            nvme_tcp_export: false,
            nqn: "nqn.2000-02.com.other:x".into(),
            mount_filesystem: true,
            ..healthy.clone()
        };
        let c = volume_condition(&sick, "nqn.2000-02.com.mikrotik");
        assert!(c.abnormal);
        for needle in [
            "not exported",
            "expected nqn.2000-02.com.mikrotik:",
            "mount-filesystem",
        ] {
            assert!(c.message.contains(needle), "{needle}: {}", c.message);
        }
        // Before 7.21 the slot is the NQN, and that is normal.
        let old = FileDisk {
            nqn: PVC.into(),
            nqn_source: NqnSource::SlotName,
            ..healthy
        };
        assert!(!volume_condition(&old, "nqn.2000-02.com.mikrotik").abnormal);
    }

    #[test]
    fn pages_only_owned_disks_in_slot_order() {
        let disk = |slot: &str, dir: &str| FileDisk {
            slot: slot.into(),
            file_path: format!("{dir}/{slot}.img"),
            ..go_disk("storage-pool", GIB)
        };
        let hashed = |n: u8| format!("csi-{}", format!("{n:02x}").repeat(16));
        let mut all = vec![
            disk(&hashed(3), "storage-pool"),
            disk("vm-1", "storage-pool"),
            disk(&hashed(1), "storage-pool/k8s"),
            disk(PVC, "storage-pool"),
            disk(&hashed(2), "elsewhere"),
            disk(&hashed(4), "storage-pool"),
        ];
        all.reverse();
        let p1 = page(all.clone(), "storage-pool", "", 2).unwrap();
        let slots = |p: &Page| p.disks.iter().map(|d| d.slot.clone()).collect::<Vec<_>>();
        assert_eq!(slots(&p1), [hashed(1), hashed(3)]);
        assert_eq!(p1.next_token.as_deref(), Some(hashed(3).as_str()));
        let p2 = page(all.clone(), "storage-pool", &hashed(3), 2).unwrap();
        assert_eq!(slots(&p2), [hashed(4), PVC.to_owned()]);
        assert_eq!(p2.next_token, None);
        let everything = page(all.clone(), "storage-pool", "", 0).unwrap();
        assert_eq!(everything.disks.len(), 4);
        assert_eq!(everything.next_token, None);
        // Exactly max entries left: no further page.
        assert_eq!(
            page(all.clone(), "storage-pool", "", 4).unwrap().next_token,
            None
        );
        for bad in ["garbage", "vm-1", "csi-zz"] {
            assert!(matches!(
                page(all.clone(), "storage-pool", bad, 2),
                Err(DriverError::InvalidToken(_))
            ));
        }
    }

    #[test]
    fn volume_ids_are_only_managed_shapes() {
        assert!(VolumeId::parse(PVC).is_some());
        for bad in ["", "storage-pool", "pvc-1", "csi-../x", "a b"] {
            assert!(VolumeId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
