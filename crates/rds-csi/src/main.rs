//! `rds-csi`: the one binary. Subcommands are thin shells over library crates, except `doctor`,
//! which lives here beside the controller flags it shares.

mod connection;
mod controller;
mod doctor;
mod memory;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rds-csi",
    version,
    about = "Kubernetes CSI driver for the MikroTik ROSE Data Server (RDS)"
)]
struct Cli {
    /// Log format: human-readable lines or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "RDS_CSI_LOG_FORMAT")]
    log_format: LogFormat,

    /// Log filter in `tracing` EnvFilter syntax (e.g. `info,routeros=debug`). Default: `info`;
    /// `error` for doctor and demo, whose reports already say what went wrong.
    #[arg(long, global = true, env = "RDS_CSI_LOG")]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// CSI controller service (provisioning on the RDS).
    Controller(Box<controller::ControllerArgs>),
    /// CSI node service (NVMe/TCP attach, format, mount).
    Node(Box<driver::node::NodeArgs>),
    /// Run the RDS simulator: SSH CLI and REST over one persisted state.
    Sim(Box<rds_sim::SimArgs>),
    /// See it work on this machine: simulator, controller and node driven over CSI (root).
    Demo(Box<demo::DemoArgs>),
    /// Check a node and an RDS before trusting them with data.
    Doctor(Box<doctor::DoctorArgs>),
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    // Colour codes only help a human at a terminal; in container logs they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

fn main() -> anyhow::Result<ExitCode> {
    // Before any thread allocates, so that every buffer is served under it.
    memory::return_large_buffers();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Doctor(_) | Command::Demo(_) => "error",
        _ => "info",
    };
    init_logging(cli.log_format, cli.log.as_deref().unwrap_or(default_filter))?;
    match cli.command {
        Command::Sim(args) => rds_sim::run(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Controller(args) => controller::run(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Node(args) => Ok(driver::node::run(*args).await.map(|()| ExitCode::SUCCESS)?),
        Command::Demo(args) => demo::run(*args).await,
        Command::Doctor(args) => doctor::run(*args).await,
    }
}
