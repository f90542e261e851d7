//! The RDS simulator. (Being built; see the issue tracker.)

/// Command-line arguments of `rds-csi sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Directory holding the simulator's persisted state, keys and backing files.
    #[arg(long)]
    pub data_dir: std::path::PathBuf,
}

/// Runs the simulator until SIGINT/SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    anyhow::bail!("simulator not built yet (data dir {})", args.data_dir.display())
}
