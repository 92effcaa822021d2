//! The `vigil` command line. Parsing arguments and printing only; the work is in the library.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "vigil",
    version,
    about = "Rules-and-runbook automation: detect, decide, remediate — durably."
)]
struct Cli {
    #[command(flatten)]
    global: cli::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check runbooks, detectors and config; report every problem with file:line:col.
    Validate {
        /// A resource file or a bundle directory (default: the bundle of --config).
        path: Option<PathBuf>,
    },
    /// Render a runbook's step graph.
    Graph {
        /// Runbook name (in the bundle) or file.
        runbook: String,
        #[arg(long, value_enum, default_value_t = cli::graph::Format::Mermaid)]
        format: cli::graph::Format,
    },
    /// Show what a runbook would do — resolved order, inputs, conditions, plans — with no side effect.
    DryRun(cli::run::RunArgs),
    /// Run a runbook, journaling every step; resumes an interrupted identical run.
    Run(cli::run::RunArgs),
    /// Inspect and act on executions in the journal.
    Executions {
        #[command(subcommand)]
        command: cli::run::ExecutionsCommand,
    },
    /// Run the API server: alert ingestion, incidents, silences, metrics.
    Serve(cli::alerts::ServeArgs),
    /// Inspect incidents.
    Incidents {
        #[command(subcommand)]
        command: cli::alerts::IncidentsCommand,
    },
    /// Add, list and expire silences on a running server.
    Silence {
        #[command(subcommand)]
        command: cli::alerts::SilenceCommand,
    },
    /// Send alerts to a running server, or list the ones it tracks.
    Alerts {
        #[command(subcommand)]
        command: cli::alerts::AlertsCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing(&cli.global);
    let result = match &cli.command {
        Command::Validate { path } => cli::validate::run(&cli.global, path.as_deref()),
        Command::Graph { runbook, format } => cli::graph::run(&cli.global, runbook, *format),
        Command::DryRun(args) => cli::run::run(&cli.global, args, true),
        Command::Run(args) => cli::run::run(&cli.global, args, false),
        Command::Executions { command } => cli::run::executions(&cli.global, command),
        Command::Serve(args) => cli::alerts::serve(&cli.global, args),
        Command::Incidents { command } => cli::alerts::incidents(&cli.global, command),
        Command::Silence { command } => cli::alerts::silence(&cli.global, command),
        Command::Alerts { command } => cli::alerts::alerts(&cli.global, command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            cli::print_error(&cli.global, &e);
            e.downcast_ref::<cli::Invalid>()
                .map_or(ExitCode::from(1), |_| ExitCode::from(2))
        }
    }
}
