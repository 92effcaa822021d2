//! `vigil detect` and `vigil forecast`: offline scoring and forecasting of a CSV file.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use vigil_detect::anomaly::{ModelConfig, Score};
use vigil_detect::forecast::{self, ForecastConfig};
use vigil_detect::input::{Row, TimeOrder, parse_csv_with};

/// Output formats of `vigil detect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetectOutput {
    /// One line per point scoring above 0.5, with its explanation.
    Table,
    /// One JSON object per point.
    Json,
    /// NAB's `timestamp,value,anomaly_score`, one row per input row.
    Nab,
}

/// Scores a `timestamp,value` CSV offline, point by point, as a detector would online.
#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// CSV with a `timestamp,value` header; timestamps `YYYY-MM-DD HH:MM:SS` (UTC) or unix seconds.
    #[arg(long, required_unless_present = "print_config")]
    pub input: Option<PathBuf>,
    /// Method: robust, seasonal, cusum, spike, novelty, context, breach or ensemble.
    #[arg(long, default_value = "ensemble")]
    pub model: String,
    /// Method parameters as JSON or YAML-free JSON object, e.g. '{"method":"robust","window":500}';
    /// overrides --model.
    #[arg(long)]
    pub model_config: Option<String>,
    /// Print the method's whole configuration (every field, defaults filled in) as JSON
    /// and exit: a starting point for `--model-config` or a detector's `model:` section.
    #[arg(long)]
    pub print_config: bool,
}

/// Exit code for input the user must fix.
const INVALID_INPUT: u8 = 2;

/// Reads the CSV. Rows whose timestamp does not increase are refused in `Strict` order;
/// in `FileOrder` they are kept and scored in file order, with one warning on stderr.
fn read_rows(path: &PathBuf, order: TimeOrder) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let parsed = parse_csv_with(&text, order).map_err(|e| match e.line() {
        Some(line) => format!("{}:{line}: {e}", path.display()),
        None => format!("{}: {e}", path.display()),
    })?;
    if let Some(first) = parsed.out_of_order.first() {
        eprintln!(
            "warning: {}:{first}: {} row(s) with a timestamp not after the previous one; scored in file order",
            path.display(),
            parsed.out_of_order.len()
        );
    }
    Ok(parsed.rows)
}

fn invalid(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(INVALID_INPUT)
}

/// Scores the CSV; `output` comes from the global `--output` (human = table).
pub fn run_detect(args: &DetectArgs, output: DetectOutput) -> anyhow::Result<ExitCode> {
    let config = match &args.model_config {
        Some(json) => match serde_json::from_str::<ModelConfig>(json) {
            Ok(c) => c,
            // A parameter's hint (a duration's format) rides after a separator that the
            // YAML diagnostics split on; here it reads as the rest of the sentence.
            Err(e) => {
                let text = e
                    .to_string()
                    .replace(vigil_bundle::de::HINT_SEPARATOR, "; ");
                return Ok(invalid(format!("--model-config: {text}")));
            }
        },
        None => match ModelConfig::by_name(&args.model) {
            Ok(c) => c,
            Err(e) => return Ok(invalid(format!("--model: {e}"))),
        },
    };
    let mut method = match config.build() {
        Ok(m) => m,
        Err(e) => return Ok(invalid(e)),
    };
    let input = match (&args.input, args.print_config) {
        (_, true) => {
            writeln!(
                std::io::stdout(),
                "{}",
                serde_json::to_string_pretty(&config)?
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        (Some(input), false) => input,
        // clap requires --input unless --print-config is given.
        (None, false) => return Ok(invalid("--input is required")),
    };
    let rows = match read_rows(input, TimeOrder::FileOrder) {
        Ok(r) => r,
        Err(e) => return Ok(invalid(e)),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if output == DetectOutput::Nab {
        writeln!(out, "timestamp,value,anomaly_score")?;
    }
    let mut flagged = 0usize;
    for row in &rows {
        let score = method.update(row.t, row.value);
        match output {
            DetectOutput::Nab => {
                writeln!(out, "{},{},{}", row.raw_timestamp, row.value, score.value)?
            }
            DetectOutput::Json => {
                let line = serde_json::json!({
                    "timestamp": row.raw_timestamp,
                    "value": row.value,
                    "score": score.value,
                    "expected": score.expected,
                    "band": score.band,
                    "method": score.method,
                    "explanation": score.explanation(),
                });
                writeln!(out, "{line}")?;
            }
            DetectOutput::Table => {
                if score.value >= 0.5 {
                    if flagged == 0 {
                        writeln!(out, "{:<20} {:>6}  explanation", "timestamp", "score")?;
                    }
                    flagged += 1;
                    print_row(&mut out, row, &score)?;
                }
            }
        }
    }
    if output == DetectOutput::Table {
        writeln!(
            out,
            "{} points scored with {}, {flagged} at or above 0.5; state {} bytes",
            rows.len(),
            method.name(),
            method.state_bytes()
        )?;
    }
    out.flush().context("writing output")?;
    Ok(ExitCode::SUCCESS)
}

fn print_row(out: &mut impl Write, row: &Row, score: &Score) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<20} {:>6.3}  {}",
        row.raw_timestamp,
        score.value,
        score.explanation()
    )
}

/// Forecasts a `timestamp,value` CSV and, with `--limit`, the time until it is reached.
#[derive(Debug, clap::Args)]
pub struct ForecastArgs {
    #[arg(long)]
    pub input: PathBuf,
    /// How far ahead: e.g. 24h, 7d, 90d.
    #[arg(long, default_value = "7d")]
    pub horizon: String,
    /// Capacity limit to compute the time to exhaustion against.
    #[arg(long)]
    pub limit: Option<f64>,
}

/// Forecasts the CSV; `json` comes from the global `--output json`.
pub fn run_forecast(args: &ForecastArgs, json: bool) -> anyhow::Result<ExitCode> {
    let horizon = match forecast::parse_duration(&args.horizon) {
        Some(h) if h > 0 => h,
        _ => {
            return Ok(invalid(format!(
                "--horizon {:?}: expected a duration like 24h, 7d or 90d",
                args.horizon
            )));
        }
    };
    if let Some(l) = args.limit
        && !l.is_finite()
    {
        return Ok(invalid("--limit must be a finite number"));
    }
    let rows = match read_rows(&args.input, TimeOrder::Strict) {
        Ok(r) => r,
        Err(e) => return Ok(invalid(e)),
    };
    let points: Vec<(i64, f64)> = rows.iter().map(|r| (r.t, r.value)).collect();
    let model = match forecast::Forecaster::fit(&points, &ForecastConfig::default()) {
        Ok(m) => m,
        Err(e) => return Ok(invalid(format!("{}: {e}", args.input.display()))),
    };
    let fc = model.forecast(horizon);
    let exhaustion = args.limit.map(|l| model.time_to_exhaustion(l, 0.8));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        let v = serde_json::json!({ "model": model.summary(), "forecast": fc, "exhaustion": exhaustion });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "{}", model.summary())?;
        if let Some(last) = fc.last() {
            writeln!(
                out,
                "in {}: {:.3} (80% interval {:.3} – {:.3})",
                forecast::format_duration(horizon),
                last.value,
                last.low,
                last.high
            )?;
        }
        if let Some(e) = exhaustion {
            writeln!(out, "{e}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
