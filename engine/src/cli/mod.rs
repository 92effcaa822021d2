//! Command implementations: load, call the library, print.

pub mod alerts;
pub mod automation;
pub mod client;
pub mod demo;
pub mod detect;
pub mod evaluate;
pub mod graph;
pub mod model;
pub mod plugin;
pub mod run;
pub mod validate;

use anyhow::{Context, Result};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use vigil_bundle::Bundle;
use vigil_bundle::model::Runbook;

#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// The config file (default: ./vigil.yaml, else runbooks/vigil.yaml).
    #[arg(long, global = true, env = "VIGIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// The store directory (default: from the config, else .vigil/).
    #[arg(long, global = true, env = "VIGIL_STORE")]
    pub store: Option<PathBuf>,
    /// A running vigil to ask instead of opening the store (default: the daemon
    /// holding the store, found from the beacon it leaves there, else `api.listen`).
    #[arg(long, global = true, env = "VIGIL_SERVER")]
    pub server: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// Colour: auto (when a terminal), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Log filter for diagnostics on stderr (e.g. `info`, `vigil=debug`).
    #[arg(long, global = true, env = "VIGIL_LOG", default_value = "warn")]
    pub log: String,
    /// Log lines as text or as JSON objects (one per line, for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Human,
    Json,
    /// `vigil detect`: one line per anomalous point (like human).
    Table,
    /// `vigil detect`: NAB's `timestamp,value,anomaly_score` CSV.
    Nab,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl Global {
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// The output of `vigil detect`: human output is its table.
    pub fn detect_output(&self) -> detect::DetectOutput {
        match self.output {
            OutputFormat::Json => detect::DetectOutput::Json,
            OutputFormat::Nab => detect::DetectOutput::Nab,
            OutputFormat::Human | OutputFormat::Table => detect::DetectOutput::Table,
        }
    }

    pub fn color(&self) -> bool {
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }

    /// The config file in use, if any.
    pub fn config_path(&self) -> Option<PathBuf> {
        if let Some(c) = &self.config {
            return Some(c.clone());
        }
        ["vigil.yaml", "runbooks/vigil.yaml"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    }

    /// The bundle directory: where the config lives.
    pub fn bundle_dir(&self) -> Option<PathBuf> {
        self.config_path().map(|c| {
            c.parent().map_or_else(
                || PathBuf::from("."),
                |p| {
                    if p.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        p.to_path_buf()
                    }
                },
            )
        })
    }
}

/// Invalid input: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

pub fn invalid(msg: impl Into<String>) -> anyhow::Error {
    Invalid(msg.into()).into()
}

pub fn init_tracing(g: &Global) {
    let filter = tracing_subscriber::EnvFilter::try_new(&g.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match g.log_format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Text => builder.with_ansi(g.color()).try_init(),
    };
}

pub fn print_error(g: &Global, e: &anyhow::Error) {
    if g.json() {
        let detail: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
        // `writeln!`, not `println!`: a closed stdout must not turn an error into a panic.
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::json!({ "error": e.to_string(), "detail": detail })
        );
    } else {
        let (red, reset) = if g.color() {
            ("\x1b[1;31m", "\x1b[0m")
        } else {
            ("", "")
        };
        eprintln!("{red}error{reset}: {e:#}");
    }
}

/// Whether `e` is, or was caused by, writing to a pipe whose reader has gone.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Paints text when colour is on.
pub struct Paint {
    on: bool,
}

impl Paint {
    pub fn new(on: bool) -> Self {
        Paint { on }
    }
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    pub fn cyan(&self, s: &str) -> String {
        self.wrap("36", s)
    }
}

/// Loads the bundle and finds a runbook by name or file path. Invalid bundles are
/// reported with their diagnostics (exit 2).
pub fn load_runbook(g: &Global, which: &str) -> Result<(Bundle, Runbook, String)> {
    let as_path = Path::new(which);
    let bundle = if as_path.is_file() {
        Bundle::load(as_path).with_context(|| format!("reading {which}"))?
    } else {
        let dir = g.bundle_dir().ok_or_else(|| invalid(format!("`{which}` is not a file, and no vigil.yaml was found to look it up by name; pass a path or --config")))?;
        Bundle::load(&dir).with_context(|| format!("reading bundle {}", dir.display()))?
    };
    let errors: Vec<_> = bundle.diagnostics.iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        validate::print_diagnostics(g, &bundle);
        return Err(invalid(format!(
            "{} problem(s) in the bundle; fix them first (`vigil validate`)",
            errors.len()
        )));
    }
    let runbook = if as_path.is_file() {
        match bundle.runbooks.iter().find(|r| r.file == as_path) {
            Some(r) => r.clone(),
            None => return Err(invalid(format!("{which} contains no runbook"))),
        }
    } else {
        match bundle.runbook(which) {
            Some(r) => r.clone(),
            None => {
                let names: Vec<&str> = bundle.runbooks.iter().map(|r| r.name.as_str()).collect();
                return Err(invalid(format!(
                    "no runbook named `{which}`; {}",
                    vigil_core::suggest::hint(which, names.iter().copied())
                )));
            }
        }
    };
    let source = bundle
        .sources
        .get(&runbook.file)
        .cloned()
        .unwrap_or_default();
    Ok((bundle, runbook, source))
}

/// The store directory to use.
pub fn store_dir(g: &Global, bundle: Option<&Bundle>) -> PathBuf {
    g.store
        .clone()
        .or_else(|| bundle.and_then(|b| b.config.store.clone()))
        .unwrap_or_else(|| PathBuf::from(".vigil"))
}

pub fn clock(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S%.3f")
                .to_string()
        })
        .unwrap_or_default()
}

/// Parses YAML documents from a file's text; a syntax error is invalid input at file:line:col.
pub fn parse_yaml(path: &Path, text: &str) -> Result<Vec<vigil_bundle::yaml::Node>> {
    vigil_bundle::yaml::parse_documents(text).map_err(|e| {
        invalid(format!(
            "{}:{}:{}: {}",
            path.display(),
            e.span.start.line,
            e.span.start.col,
            e.message
        ))
    })
}
