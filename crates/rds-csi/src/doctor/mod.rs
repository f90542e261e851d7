//! `rds-csi doctor`: checks a node and an RDS before they are trusted with data.
//!
//! Gathering (files, sysfs, tools, network) is kept apart from judging: [`node`] and [`rds`]
//! read facts with a deadline per step and turn them into [`report::Check`]s with pure
//! functions; [`report`] prints the table or JSON and decides the exit code.
//!
//! `--save` and `--compare` add the namespace identifiers of the driver's volumes
//! ([`node::namespaces`]), kept in a state file ([`node::state_file`]), to tell whether a
//! reboot of the RDS gave them new ones.
//!
//! `--probe-device` runs [`device_probe`] instead: the one step that changes the RDS, opt-in.

pub mod device_probe;
pub mod node;
pub mod probe;
pub mod rds;
pub mod report;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::connection::{RdsConnectionArgs, VolumeLayoutArgs};
use node::{DEFAULT_KUBELET_DIR, NodeInputs, NodeRoot};
use report::{Check, Report};

/// Deadline of each piece of node gathering (a file read, the sysfs scan, a tool's version).
pub const NODE_DEADLINE: Duration = Duration::from_secs(5);

/// Flags of `rds-csi doctor`: the controller's RDS connection and volume layout flags (the
/// RDS part runs only with `--rds-address`), and where kubelet keeps its state.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub rds: RdsConnectionArgs,

    #[command(flatten)]
    pub layout: VolumeLayoutArgs,

    /// kubelet's root directory (its --root-dir), which must be a shared mount.
    #[arg(long, env = "RDS_CSI_KUBELET_DIR", default_value = DEFAULT_KUBELET_DIR)]
    pub kubelet_dir: PathBuf,

    /// Print a JSON report instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Instead of the checks, record how the RDS answers what the driver must survive (a taken
    /// slot, an existing image, a missing item, a full pool) with throwaway disks of its own,
    /// removed at the end. Changes the device; prints a report to paste into an issue.
    #[arg(long, requires = "rds_address")]
    pub probe_device: bool,

    /// Record the namespace identifiers of the driver's volumes connected here in FILE (JSON,
    /// written whole), e.g. before rebooting the RDS. The checks run as usual.
    #[arg(long, value_name = "FILE", conflicts_with = "probe_device")]
    pub save: Option<PathBuf>,

    /// Compare the namespace identifiers with those saved in FILE by --save, e.g. after the RDS
    /// rebooted. With --save too, FILE is read first, then the new state written.
    #[arg(long, value_name = "FILE", conflicts_with = "probe_device")]
    pub compare: Option<PathBuf>,
}

/// Exit code of a run refused before any check (as for flags that cannot be parsed).
const USAGE: u8 = 2;

/// Runs every check, prints the report, and exits 1 when a check failed.
pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    if args.probe_device {
        return device_probe::run(&args.rds, &args.layout, args.json).await;
    }
    // Before anything else, so that a bad file stops the run with nothing written.
    let saved = match &args.compare {
        Some(path) => match node::state_file::read(path) {
            Ok(saved) => Some((path.as_path(), saved)),
            Err(error) => {
                eprintln!("rds-csi doctor: --compare: {error}");
                return Ok(ExitCode::from(USAGE));
            }
        },
        None => None,
    };
    let inputs = NodeInputs {
        root: NodeRoot::new("/"),
        tools: mounts::tools::ToolPaths::default(),
        kubelet_dir: args.kubelet_dir.clone(),
        nqn_prefix: args.layout.nqn_prefix.clone(),
        deadline: NODE_DEADLINE,
    };
    let rds_wanted = args.rds.rds_address.is_some();
    let rds = async {
        match rds_wanted {
            true => Some(rds::gather(&args.rds, &args.layout).await),
            false => None,
        }
    };
    let (node_facts, rds_facts) = tokio::join!(node::gather(&inputs), rds);
    let mut checks = node::checks(&node_facts);
    match &rds_facts {
        Some(facts) => checks.extend(rds::checks(facts)),
        None => checks.push(
            Check::skip(
                "rds",
                "RDS",
                "no --rds-address given: only the node was checked",
            )
            .fix("add the controller's --rds-* flags to check the RDS from this node too"),
        ),
    }
    let prefix = &args.layout.nqn_prefix;
    let mut comparison = None;
    if let Some((path, saved)) = &saved {
        let (check, section) = node::state_file::compare_with(path, saved, &node_facts, prefix);
        checks.push(check);
        comparison = section;
    }
    if let Some(path) = &args.save {
        let now = node::state_file::unix_now();
        checks.push(node::state_file::save(path, &node_facts, prefix, now));
    }
    let report = Report::new(checks, rds_wanted).with_namespace_ids(comparison);
    if args.json {
        println!("{}", report.to_json());
    } else {
        let colour = report::use_colour(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
        print!("{}", report.render(colour));
    }
    Ok(report.exit_code())
}
