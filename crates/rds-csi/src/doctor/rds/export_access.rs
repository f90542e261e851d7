//! Which hosts the driver's exports admit (`nvme-tcp-server-allow-host-name`), for the operator
//! of `--export-acl`: whether storage-level fencing is in force, on which volumes, and which
//! exports hold a value the controller will not edit. Pure: judged from the listed disks.

use driver::controller::export_acl::NO_HOST;
use driver::controller::rules::owned_image;
use routeros::{AllowedHosts, Error, FileDisk};

use crate::doctor::report::Check;

/// Exports named in a warning, at most.
const SHOWN: usize = 10;

pub fn judge_export_access(base_path: &str, disks: &Result<Vec<FileDisk>, Error>) -> Check {
    let (id, name) = ("rds.export-access", "export access");
    let disks = match disks {
        Ok(disks) => disks,
        Err(error) => return Check::fail(id, name, format!("cannot list disks: {error}")),
    };
    let ours = disks
        .iter()
        .filter(|disk| owned_image(disk, base_path).is_some());
    let (mut open, mut fenced, mut nowhere) = (0, 0, 0);
    let mut unrecognized = Vec::new();
    for disk in ours {
        match &disk.allowed_hosts {
            AllowedHosts::Any => open += 1,
            AllowedHosts::Only(hosts) if hosts.iter().all(|h| h.as_str() == NO_HOST) => {
                nowhere += 1
            }
            AllowedHosts::Only(_) => fenced += 1,
            AllowedHosts::Unrecognized(value) => {
                unrecognized.push(format!("{}: {value:?}", disk.slot))
            }
        }
    }
    if open + fenced + nowhere + unrecognized.len() == 0 {
        return Check::ok(id, name, "no volumes of this driver");
    }
    let mut detail = format!(
        "{open} admit any host; {fenced} admit only the nodes they are published to; \
         {nowhere} admit no host (published nowhere)"
    );
    if fenced + nowhere == 0 {
        detail.push_str(
            "\nstorage-level fencing is not in use (the controller's --export-acl is off, or no \
             volume was published since it was turned on)",
        );
    } else if open > 0 {
        detail.push_str(
            "\nthe open exports are of volumes not published since --export-acl was turned on \
             (or it was turned off): they close at their next publish or unpublish",
        );
    }
    if unrecognized.is_empty() {
        return Check::ok(id, name, detail);
    }
    detail.push_str(&format!(
        "\n{} with a value that is not a list of host NQNs (set outside the driver), which \
         --export-acl never edits:",
        unrecognized.len()
    ));
    for line in unrecognized.iter().take(SHOWN) {
        detail.push_str(&format!("\n  {line}"));
    }
    if unrecognized.len() > SHOWN {
        detail.push_str(&format!("\n  ... and {} more", unrecognized.len() - SHOWN));
    }
    Check::warn(id, name, detail).fix(
        "clear the value on the RDS (/disk set [find where slot=<slot>] \
         nvme-tcp-server-allow-host-name=\"\") or set it to host NQNs separated by commas; with \
         --export-acl the controller refuses to publish those volumes until then",
    )
}

#[cfg(test)]
mod tests {
    use routeros::{Nqn, NqnSource};

    use super::*;
    use crate::doctor::report::Status;

    const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211";

    fn disk(slot: &str, hosts: AllowedHosts) -> FileDisk {
        FileDisk {
            allowed_hosts: hosts,
            id: "*1".into(),
            slot: slot.into(),
            file_path: format!("storage-pool/{slot}.img"),
            file_size: 1 << 30,
            nvme_tcp_export: true,
            nvme_tcp_port: 4420,
            nqn: format!("nqn.2000-02.com.mikrotik:{slot}"),
            nqn_source: NqnSource::ServerNqn,
            mount_filesystem: false,
            comment: None,
        }
    }

    fn only(host: &str) -> AllowedHosts {
        AllowedHosts::only([Nqn::try_from(host).unwrap()]).unwrap()
    }

    const A: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
    const B: &str = "pvc-00000000-0000-4000-8000-000000000000";
    const C: &str = "pvc-11111111-1111-4111-8111-111111111111";

    #[test]
    fn open_exports_say_fencing_is_off() {
        let check = judge_export_access("storage-pool", &Ok(vec![disk(A, AllowedHosts::Any)]));
        assert_eq!(check.status, Status::Ok);
        assert!(
            check.detail.starts_with("1 admit any host; 0 admit only"),
            "{}",
            check.detail
        );
        assert!(check.detail.contains("not in use"), "{}", check.detail);
    }

    #[test]
    fn fenced_exports_are_counted_and_open_ones_explained() {
        let disks = vec![
            disk(A, only(HOST)),
            disk(B, only(NO_HOST)),
            disk(C, AllowedHosts::Any),
            // Not this driver's (outside the base path): not counted.
            FileDisk {
                file_path: "other/x.img".into(),
                ..disk("x", AllowedHosts::Any)
            },
        ];
        let check = judge_export_access("storage-pool", &Ok(disks));
        assert_eq!(check.status, Status::Ok);
        assert!(
            check.detail.starts_with(
                "1 admit any host; 1 admit only the nodes they are published to; 1 admit no host"
            ),
            "{}",
            check.detail
        );
        assert!(
            check.detail.contains("close at their next publish"),
            "{}",
            check.detail
        );
        let fenced_only = judge_export_access("storage-pool", &Ok(vec![disk(A, only(HOST))]));
        assert!(!fenced_only.detail.contains("\n"), "{}", fenced_only.detail);
    }

    #[test]
    fn values_set_by_hand_are_named_with_the_fix() {
        let odd = AllowedHosts::Unrecognized("worker-1".into());
        let check = judge_export_access("storage-pool", &Ok(vec![disk(A, odd)]));
        assert_eq!(check.status, Status::Warn);
        assert!(
            check.detail.contains(&format!("{A}: \"worker-1\"")),
            "{}",
            check.detail
        );
        assert!(
            check
                .fix
                .unwrap()
                .contains("nvme-tcp-server-allow-host-name")
        );
        let none = judge_export_access("storage-pool", &Ok(Vec::new()));
        assert_eq!(none.status, Status::Ok);
        let failed = judge_export_access("storage-pool", &Err(Error::Unavailable("x".into())));
        assert_eq!(failed.status, Status::Fail);
    }
}
