//! `vigil evaluate`: the detectors' stored predictions scored against what their
//! sources say happened (labelled anomalies): precision, recall, detection delay.

use super::client::{Target, target};
use super::{Global, Paint};
use anyhow::Result;
use std::process::ExitCode;
use vigil::ops::{Evaluated, Relearned, Scored};

#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// How long after an anomaly's onset a detection still counts as catching it.
    #[arg(long, default_value = "1h")]
    pub window: String,
    /// Then retrain every classifier detector's model from what happened (its
    /// source's labelled failures and the incidents' outcomes), promoting each new
    /// version that does at least as well as the one serving.
    #[arg(long)]
    pub retrain: bool,
}

pub fn run(g: &Global, args: &EvaluateArgs) -> Result<ExitCode> {
    let window = vigil_core::duration::Duration::parse(&args.window)
        .map_err(|e| super::invalid(format!("--window {}: {}", args.window, e.message)))?;
    let window_ms = window.as_std().as_millis() as i64;
    let (found, place) = match target(g)? {
        Target::Daemon(c) => {
            let found: Evaluated = if args.retrain {
                serde_json::from_value(c.post(
                    "/api/v1/evaluate",
                    &serde_json::json!({ "window": args.window, "retrain": true }),
                )?)?
            } else {
                c.get(&format!(
                    "/api/v1/evaluate?window={}",
                    super::automation::path_segment(&args.window)
                ))?
            };
            (found, "the running vigil's store".to_string())
        }
        Target::Local(store) => {
            let bundle = super::alerts::load_bundle(g)?;
            let (_, sources) = super::plugin::with_plugins_and_sources(g, &bundle, &|_| {})?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let found = rt
                .block_on(vigil::ops::evaluate(
                    &bundle,
                    &store,
                    &sources,
                    &vigil_exec::automation::whoami(),
                    window_ms,
                    args.retrain,
                ))
                .map_err(super::model::ops_error)?;
            store.sync_blocking()?;
            (
                found,
                super::store_dir(g, Some(&bundle)).display().to_string(),
            )
        }
    };
    if g.json() {
        if args.retrain {
            println!(
                "{}",
                serde_json::json!({ "evaluations": found.evaluations, "retrained": found.retrained })
            );
        } else {
            println!("{}", serde_json::to_value(&found.evaluations)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let p = Paint::new(g.color());
    println!(
        "{} predictions in {place}; an anomaly counts as caught within {window} of its onset",
        found.predictions
    );
    let pct = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{:.0}%", 100.0 * v));
    for r in &found.evaluations {
        match r {
            Scored::Evaluation(e) => {
                println!(
                    "  {:<20} precision {:>4} ({} of {} alarms)  recall {:>4} ({} of {} anomalies)  median delay {}",
                    p.bold(&e.detector),
                    pct(e.precision),
                    e.true_episodes,
                    e.episodes,
                    pct(e.recall),
                    e.detected,
                    e.anomalies,
                    e.median_delay_ms
                        .map_or("—".into(), |d| format!("{} s", d / 1000))
                );
                if let Some(lead) = e.median_lead_ms {
                    println!(
                        "      failures predicted a median {} ahead",
                        vigil_detect::forecast::format_duration(lead / 1000)
                    );
                }
                for f in &e.forecasts {
                    println!(
                        "      forecast {:>5} ahead: {} scored, within 10/15/20%: {:.0}/{:.0}/{:.0}%, interval coverage {:.0}%, mean error {:.1}%",
                        vigil_detect::forecast::format_duration(f.horizon_secs),
                        f.scored,
                        100.0 * f.within_10,
                        100.0 * f.within_15,
                        100.0 * f.within_20,
                        100.0 * f.coverage,
                        f.mean_abs_pct_error
                    );
                }
                for (at, kind, series) in e.missed.iter().take(5) {
                    println!("      missed {kind} on {series} at {}", super::clock(*at));
                }
            }
            Scored::Failed { error } => println!("  {}", p.red(error)),
        }
    }
    let mut failed = false;
    for r in &found.retrained {
        match r {
            Relearned::Retrained(r) => super::model::print_retrained(&p, r),
            Relearned::Failed { model, error } => {
                failed = true;
                println!("  {} retraining {model}: {error}", p.red("✗"));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
