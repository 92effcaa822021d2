//! `vigil evaluate`: the detectors' stored predictions scored against what their
//! sources say happened (labelled anomalies): precision, recall, detection delay.

use super::{Global, Paint};
use anyhow::{Context, Result};
use std::process::ExitCode;
use vigil_alert::store::AlertStore;
use vigil_runtime::store::DetectorStore;
use vigil_store::Store;

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
    let bundle = super::alerts::load_bundle(g)?;
    let store_dir = super::store_dir(g, Some(&bundle));
    let store = Store::open(&store_dir).with_context(|| {
        format!(
            "opening the store at {} (is `vigil serve` running on it?)",
            store_dir.display()
        )
    })?;
    let predictions = store.predictions()?;
    let (_, sources) = super::plugin::with_plugins_and_sources(g, &bundle, &|_| {})?;
    let window_ms = window.as_std().as_millis() as i64;
    let from = predictions.iter().map(|p| p.at * 1000).min().unwrap_or(0) - window_ms;
    let forecasts = store.forecasts()?;
    // Up to what the detectors last saw (their clock may have been compressed).
    let until = predictions
        .iter()
        .map(|p| p.at)
        .chain(forecasts.iter().map(|f| f.made_at))
        .max()
        .map_or_else(vigil_core::now_ms, |s| s * 1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let incidents = store.incidents()?;
    let results = rt.block_on(vigil::daemon::evaluate(
        &bundle.detectors,
        &sources,
        vigil::daemon::Record {
            predictions: &predictions,
            forecasts: &forecasts,
            incidents: &incidents,
        },
        window_ms,
        from,
        until,
    ));
    drop(rt);
    // The models that learn, retrained from the same record.
    let mut retrained = Vec::new();
    if args.retrain {
        for name in classifier_models(&bundle) {
            retrained.push((
                name.clone(),
                super::model::retrain(&bundle, &store, &sources, &name, None, true)
                    .map_err(|e| e.to_string()),
            ));
        }
    }
    if g.json() {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|r| match r {
                Ok(e) => serde_json::to_value(e).unwrap_or_default(),
                Err(e) => serde_json::json!({ "error": e }),
            })
            .collect();
        let retrained: Vec<serde_json::Value> = retrained
            .iter()
            .map(|(name, r)| match r {
                Ok(r) => serde_json::to_value(r).unwrap_or_default(),
                Err(e) => serde_json::json!({ "model": name, "error": e }),
            })
            .collect();
        if args.retrain {
            println!(
                "{}",
                serde_json::json!({ "evaluations": rows, "retrained": retrained })
            );
        } else {
            println!("{}", serde_json::Value::Array(rows));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let p = Paint::new(g.color());
    println!(
        "{} predictions in {}; an anomaly counts as caught within {window} of its onset",
        predictions.len(),
        store_dir.display()
    );
    let pct = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{:.0}%", 100.0 * v));
    for r in &results {
        match r {
            Ok(e) => {
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
            Err(e) => println!("  {}", p.red(e)),
        }
    }
    let mut failed = false;
    for (name, r) in &retrained {
        match r {
            Ok(r) => super::model::print_retrained(&p, r),
            Err(e) => {
                failed = true;
                println!("  {} retraining {name}: {e}", p.red("✗"));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The models the bundle's classifier detectors serve, each once.
fn classifier_models(bundle: &vigil_bundle::Bundle) -> Vec<String> {
    let mut names: Vec<String> = bundle
        .detectors
        .iter()
        .filter_map(|d| d.model.classifier().map(|c| c.model.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}
