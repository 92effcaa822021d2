//! The `vigil` command line. Parsing arguments and printing only; the work is in the library.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "vigil", version, about = "Rules-and-runbook automation engine")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score a timestamp,value CSV for anomalies.
    Detect(cli::detect::DetectArgs),
    /// Forecast a timestamp,value CSV and the time until a limit is reached.
    Forecast(cli::detect::ForecastArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Some(Command::Detect(args)) => cli::detect::run_detect(&args),
        Some(Command::Forecast(args)) => cli::detect::run_forecast(&args),
        None => {
            println!("vigil {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}
