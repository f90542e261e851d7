//! NVMe/TCP exports: which disk serves which NQN, and the export effects a disk change
//! implies.
//!
//! An NQN is served by one disk: the first (in id order) that exports it. Two disks share
//! an NQN only when they share a slot, which only the `duplicate-slots` quirk allows; the
//! later one then waits, unserved, until the first stops exporting.

use std::collections::HashSet;

use super::{
    DISK_SERVER_NQN, DISK_SLOT, Disk, DiskKind, Effect, Env, ExportSpec, MAX_NQN_BYTES,
    NamespaceIds, Outcome, State,
};
use crate::error::CmdError;
use crate::quirks::Quirk;
use crate::version::RouterOsVersion;

impl State {
    /// The export a disk has when `nvme-tcp-export=yes`, whether or not it is on.
    pub fn export_of(&self, disk: &Disk, version: &RouterOsVersion) -> Option<ExportSpec> {
        let DiskKind::File { path, size, offset } = &disk.kind else {
            return None;
        };
        Some(ExportSpec {
            slot: disk.slot.clone(),
            nqn: nqn_of(disk, version).to_string(),
            port: disk.nvme_tcp_server_port,
            file_path: path.clone(),
            size: size.saturating_sub(*offset),
            ids: disk.namespace,
            allowed_hosts: allowed_hosts(&disk.nvme_tcp_server_allow_host_name),
        })
    }

    /// All active exports, in disk order, one per NQN.
    pub fn exports(&self, version: &RouterOsVersion) -> Vec<ExportSpec> {
        let mut served = HashSet::new();
        self.disks
            .iter()
            .filter(|d| exported(d) && served.insert(nqn_of(d, version)))
            .filter_map(|d| self.export_of(d, version))
            .collect()
    }

    /// The disks exporting `nqn`, in id order: found by slot or by server NQN, the two
    /// names an NQN can come from.
    fn exporters_of<'s>(
        &'s self,
        nqn: &'s str,
        version: &'s RouterOsVersion,
    ) -> impl Iterator<Item = &'s Disk> + 's {
        let mut ids: Vec<u64> = self.disks.ids_named(DISK_SLOT, nqn).to_vec();
        ids.extend(self.disks.ids_named(DISK_SERVER_NQN, nqn));
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter_map(|id| self.disk(id))
            .filter(move |d| exported(d) && nqn_of(d, version) == nqn)
    }

    /// Gives the disk serving `nqn` new identifiers; returns its export.
    fn renew_serving_ids(&mut self, nqn: &str, version: &RouterOsVersion) -> Option<ExportSpec> {
        let id = self.exporters_of(nqn, version).next()?.id;
        self.disks
            .update(id, |disk| disk.namespace = NamespaceIds::random());
        self.serving(nqn, version)
    }

    /// The export serving `nqn`, if any.
    fn serving(&self, nqn: &str, version: &RouterOsVersion) -> Option<ExportSpec> {
        self.exporters_of(nqn, version)
            .next()
            .and_then(|d| self.export_of(d, version))
    }

    /// The export serving `nqn` among the disks other than `id`.
    fn serving_apart_from(
        &self,
        id: u64,
        nqn: &str,
        version: &RouterOsVersion,
    ) -> Option<ExportSpec> {
        self.exporters_of(nqn, version)
            .find(|d| d.id != id)
            .and_then(|d| self.export_of(d, version))
    }

    /// Runs `op`, a change of disk `id` that returns its file effects, and adds the export
    /// effects the change implies, in a safe order: exports that end first, then the file
    /// effects, then new exports and revalidations of grown ones. A grow keeps the export
    /// (and its identifiers); with `fresh-namespace-ids` every export made anew gets new
    /// identifiers, kept in the state so the export record tells the truth.
    pub(super) fn with_export_changes<T>(
        &mut self,
        id: u64,
        env: &Env,
        op: impl FnOnce(&mut State) -> Outcome<T>,
    ) -> Outcome<T> {
        let version = &env.version;
        // `op` changes this disk only (and files): what served its NQN before is read now;
        // any other NQN was served before by the disks that serve it apart from this one.
        let exported_nqn = |state: &State| {
            state
                .disk(id)
                .filter(|d| exported(d))
                .map(|d| nqn_of(d, version).to_string())
        };
        let nqn_before = exported_nqn(self);
        let served_before = nqn_before
            .as_deref()
            .and_then(|nqn| self.serving(nqn, version));
        let (value, files) = op(self)?;
        let mut nqns: Vec<String> = nqn_before.iter().cloned().collect();
        if let Some(nqn) = exported_nqn(self).filter(|n| !nqns.contains(n)) {
            nqns.push(nqn);
        }
        let (mut ending, mut starting) = (Vec::new(), Vec::new());
        for nqn in &nqns {
            let old = if nqn_before.as_ref() == Some(nqn) {
                served_before.clone()
            } else {
                self.serving_apart_from(id, nqn, version)
            };
            match (old, self.serving(nqn, version)) {
                (Some(old), Some(new))
                    if old.port == new.port
                        && old.file_path == new.file_path
                        && old.ids == new.ids =>
                {
                    if new.allowed_hosts != old.allowed_hosts {
                        starting.push(Effect::AllowHosts {
                            spec: new.clone(),
                            previous: old.allowed_hosts,
                        });
                    }
                    if new.size != old.size {
                        starting.push(Effect::Revalidate(new));
                    }
                }
                (old, new) => {
                    ending.extend(old.map(Effect::Unexport));
                    let new = match new {
                        Some(_) if env.quirks.has(Quirk::FreshNamespaceIds) => {
                            self.renew_serving_ids(nqn, version)
                        }
                        new => new,
                    };
                    starting.extend(new.map(Effect::Export));
                }
            }
        }
        ending.extend(files);
        ending.extend(starting);
        Ok((value, ending))
    }

    /// The export `disk` would have, after checking that its NQN is usable and not
    /// exported by a disk in another slot. `None` when not exported.
    pub(super) fn checked_export(
        &self,
        disk: &Disk,
        env: &Env,
    ) -> Result<Option<ExportSpec>, CmdError> {
        if !disk.nvme_tcp_export {
            return Ok(None);
        }
        let spec = self
            .export_of(disk, &env.version)
            .ok_or_else(|| CmdError::failure("only file disks can be exported by the simulator"))?;
        if spec.nqn.len() > MAX_NQN_BYTES
            || spec.nqn.contains('/')
            || spec.nqn.chars().any(char::is_control)
        {
            return Err(CmdError::InvalidValue("nvme-tcp-server-nqn".into()));
        }
        let taken = self
            .exporters_of(&spec.nqn, &env.version)
            .any(|other| other.id != disk.id && other.slot != disk.slot);
        if taken {
            return Err(CmdError::failure(format!(
                "nqn {} is already exported by another disk",
                spec.nqn
            )));
        }
        Ok(Some(spec))
    }
}

/// The simulator's reading of `nvme-tcp-server-allow-host-name` (RouterOS does not document
/// its format): host NQNs separated by commas; empty admits any host.
pub fn allowed_hosts(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A file disk with `nvme-tcp-export=yes`.
fn exported(disk: &Disk) -> bool {
    disk.nvme_tcp_export && matches!(disk.kind, DiskKind::File { .. })
}

/// Subsystem NQN: `nvme-tcp-server-nqn` on 7.21+ when set, else the slot.
fn nqn_of<'d>(disk: &'d Disk, version: &RouterOsVersion) -> &'d str {
    if version.has_server_nqn() && !disk.nvme_tcp_server_nqn.is_empty() {
        &disk.nvme_tcp_server_nqn
    } else {
        &disk.slot
    }
}
