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
    /// Show what a runbook would do — resolved order, inputs, conditions, plans — executing nothing (plans only read).
    DryRun(cli::run::RunArgs),
    /// Run a runbook, journaling every step; resumes an interrupted identical run.
    Run(cli::run::RunArgs),
    /// Run every runbook whose trigger matches an incident, as automation would
    /// (kill switch, guardrails, policy).
    Trigger(cli::automation::TriggerArgs),
    /// Stop all automatic runs (the kill switch), persisted until `vigil resume`.
    Pause {
        /// Why, for the audit log and everyone who wonders.
        #[arg(long, default_value = "paused by an operator")]
        reason: String,
    },
    /// Re-enable automatic runs after `vigil pause`.
    Resume,
    /// The running vigil at a glance: version, uptime, kill switch, executions,
    /// incidents, each detector's last run, store size.
    Status,
    /// Make the running vigil re-read its bundle (as SIGHUP does); an invalid bundle is
    /// refused with its problems and the running one stays.
    Reload,
    /// Let a runbook under `dry_run_first` act automatically.
    Promote { runbook: String },
    /// The audit log: who or what decided or did what.
    Audit(cli::automation::AuditArgs),
    /// Escalation policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Score a `timestamp,value` CSV for anomalies, online (`--output table|json|nab`).
    Detect(cli::detect::DetectArgs),
    /// Forecast a `timestamp,value` CSV and the time until a limit is reached.
    Forecast(cli::detect::ForecastArgs),
    /// Score the detectors' stored predictions against what their sources say happened.
    Evaluate(cli::evaluate::EvaluateArgs),
    /// Failure-prediction models: train, evaluate, list, promote.
    Model {
        #[command(subcommand)]
        command: cli::model::ModelCommand,
    },
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
    /// The closed loop on the default bundle, narrated: detections, incidents, policy
    /// decisions, remediation against a local target, resolution.
    Demo(cli::demo::DemoArgs),
    /// WASM plugins: scaffold, build, inspect, list.
    #[command(subcommand)]
    Plugin(cli::plugin::PluginCommand),
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Print a policy's decision for an incident, with the trace of host calls; or run a suite.
    Test(cli::automation::PolicyTestArgs),
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
        Command::Demo(args) => cli::demo::run(&cli.global, args),
        Command::Evaluate(args) => cli::evaluate::run(&cli.global, args),
        Command::Incidents { command } => cli::alerts::incidents(&cli.global, command),
        Command::Silence { command } => cli::alerts::silence(&cli.global, command),
        Command::Alerts { command } => cli::alerts::alerts(&cli.global, command),
        Command::Trigger(args) => cli::automation::trigger(&cli.global, args),
        Command::Model { command } => cli::model::run(&cli.global, command),
        Command::Detect(args) => cli::detect::run_detect(args, cli.global.detect_output()),
        Command::Forecast(args) => cli::detect::run_forecast(args, cli.global.json()),
        Command::Pause { reason } => cli::automation::pause(&cli.global, reason, true),
        Command::Resume => cli::automation::pause(&cli.global, "", false),
        Command::Status => cli::automation::status(&cli.global),
        Command::Reload => cli::automation::reload(&cli.global),
        Command::Promote { runbook } => cli::automation::promote(&cli.global, runbook),
        Command::Audit(args) => cli::automation::audit(&cli.global, args),
        Command::Policy {
            command: PolicyCommand::Test(args),
        } => cli::automation::policy_test(&cli.global, args),
        Command::Plugin(cmd) => cli::plugin::run(
            cmd,
            &cli::plugin::PluginCliContext::from_global(&cli.global),
        ),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`vigil detect ... | head`): nothing is wrong and there is
        // no one left to tell, as for any Unix filter.
        Err(e) if cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            cli::print_error(&cli.global, &e);
            e.downcast_ref::<cli::Invalid>()
                .map_or(ExitCode::from(1), |_| ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Catches clashing argument names; clap only notices a subcommand reusing a
    /// global flag's name when that subcommand runs (and then panics).
    #[test]
    fn the_command_line_is_consistent() {
        let cmd = super::Cli::command();
        cmd.clone().debug_assert();
        let globals: Vec<String> = cmd
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().to_string())
            .collect();
        fn walk(cmd: &clap::Command, globals: &[String], path: &str, clashes: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let here = format!("{path} {}", sub.get_name());
                for arg in sub.get_arguments() {
                    if globals.contains(&arg.get_id().to_string()) {
                        clashes.push(format!("`{here}` redefines global `--{}`", arg.get_id()));
                    }
                }
                walk(sub, globals, &here, clashes);
            }
        }
        let mut clashes = Vec::new();
        walk(&cmd, &globals, "vigil", &mut clashes);
        assert!(clashes.is_empty(), "{clashes:?}");
    }
}
