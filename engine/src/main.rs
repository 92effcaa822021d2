//! The `vigil` command line. Parsing arguments and printing only; the work is in the library.

mod cli;

use clap::Parser;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "vigil", version)]
struct Args {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// WASM plugins: scaffold, build, inspect, list.
    #[command(subcommand)]
    Plugin(cli::plugin::PluginCommand),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        None => {
            println!("vigil {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(Command::Plugin(cmd)) => {
            let cx = cli::plugin::PluginCliContext { json: args.json, ..Default::default() };
            match cli::plugin::run(cmd, &cx) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
