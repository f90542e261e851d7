//! `rds-csi doctor`: checks a node and an RDS before they are trusted with data.

use std::process::ExitCode;

/// Flags of `rds-csi doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {}

/// Runs every check and prints the results.
pub async fn run(_args: DoctorArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`rds-csi doctor` is not available in this version yet")
}
