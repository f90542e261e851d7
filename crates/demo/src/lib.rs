//! `rds-csi demo`: runs the simulator, the controller and the node on this machine and drives
//! them over CSI gRPC as Kubernetes would.

use std::process::ExitCode;

/// Flags of `rds-csi demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {}

/// Runs the demonstration.
pub async fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`rds-csi demo` is not available in this version yet")
}
