//! `vigil model train|evaluate|list|promote`: the failure classifier's lifecycle —
//! train (validated against a baseline, scored on a hold-out set), keep versions in
//! the store, promote one to serve, and evaluate any version on new data.

use super::automation::path_segment;
use super::client::{Client, Target, target};
use super::{Global, Paint, invalid};
use anyhow::{Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vigil_detect::classifier::{FailureModel, FeatureExtractor, Quality, Sample, TrainConfig};
use vigil_runtime::store::DetectorStore;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ModelCommand {
    /// Train a new version from a CSV: timestamp,cpu,memory,disk_io,error_rate,failure.
    Train {
        /// The model name; versions are numbered `NAME@1`, `NAME@2`, …
        #[arg(long)]
        name: String,
        #[arg(long)]
        input: PathBuf,
        /// Samples per feature window.
        #[arg(long, default_value_t = 12)]
        window: usize,
        /// Predict failures this many samples ahead.
        #[arg(long, default_value_t = 6)]
        horizon: usize,
        /// Training parameters as JSON (trees, max_depth, min_confidence, seed, …).
        #[arg(long)]
        params: Option<String>,
    },
    /// Score a version (default: the promoted one) on labelled data, beside its baseline.
    Evaluate {
        /// `NAME` (the promoted version) or `NAME@N`.
        model: String,
        #[arg(long)]
        input: PathBuf,
    },
    /// List every version, with its hold-out figures.
    List,
    /// Make `NAME@N` the version that serves.
    Promote { model: String },
    /// Train the next version from what happened: the classifier detector's source
    /// history, the failures it labelled and the outcomes of the incidents the
    /// predictions opened. Promoted when it does at least as well as the one serving.
    Retrain {
        /// The model name (a detector's `classifier.model`).
        name: String,
        /// The detector to learn from, when several serve this model.
        #[arg(long)]
        detector: Option<String>,
        /// Store the new version but keep the current one serving.
        #[arg(long)]
        no_promote: bool,
    },
}

/// Reads `timestamp,cpu,memory,disk_io,error_rate,failure` rows (a header first).
fn read_samples(path: &Path) -> Result<(Vec<Sample>, Vec<bool>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    let expected = "timestamp,cpu,memory,disk_io,error_rate,failure";
    match lines.next() {
        Some((_, h)) if h.trim().replace(' ', "") == expected => {}
        _ => {
            return Err(invalid(format!(
                "{}:1: the header must be `{expected}`",
                path.display()
            )));
        }
    }
    let (mut samples, mut failures) = (Vec::new(), Vec::new());
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() != 6 {
            return Err(invalid(format!(
                "{}:{}: expected 6 columns, found {}",
                path.display(),
                i + 1,
                cols.len()
            )));
        }
        let num = |c: usize| -> Result<f64> {
            cols[c]
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    invalid(format!(
                        "{}:{}:{}: `{}` is not a finite number",
                        path.display(),
                        i + 1,
                        c + 1,
                        cols[c]
                    ))
                })
        };
        samples.push(Sample {
            cpu: num(1)?,
            memory: num(2)?,
            disk_io: num(3)?,
            error_rate: num(4)?,
        });
        failures.push(match cols[5] {
            "1" | "true" => true,
            "0" | "false" => false,
            other => {
                return Err(invalid(format!(
                    "{}:{}:6: failure must be 0 or 1, found `{other}`",
                    path.display(),
                    i + 1
                )));
            }
        });
    }
    Ok((samples, failures))
}

fn split_id(id: &str) -> Result<(String, Option<u32>)> {
    match id.split_once('@') {
        None => Ok((id.to_string(), None)),
        Some((n, v)) => v
            .parse()
            .map(|v| (n.to_string(), Some(v)))
            .map_err(|_| invalid(format!("`{id}`: write NAME or NAME@N, e.g. disk-failure@2"))),
    }
}

fn quality_row(label: &str, q: &Quality) -> String {
    format!(
        "  {label:<22} precision {:.2}  recall {:.2}  F1 {:.2}  (n={})",
        q.precision, q.recall, q.f1, q.support
    )
}

/// Trains, stores and (if it is no worse) promotes the next version of `name`.
pub fn retrain(
    bundle: &vigil_bundle::Bundle,
    store: &vigil_store::Store,
    sources: &vigil_runtime::runner::Sources,
    name: &str,
    detector: Option<&str>,
    promote: bool,
) -> Result<vigil::learn::Retrained> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(vigil::ops::retrain(
        bundle,
        store,
        sources,
        &vigil_exec::automation::whoami(),
        name,
        detector,
        promote,
    ))
    .map_err(ops_error)
}

/// An operation's refusal as the CLI reports it: bad input exits 2.
pub fn ops_error(e: vigil::ops::OpsError) -> anyhow::Error {
    match e {
        vigil::ops::OpsError::Store(e) => e.into(),
        e => invalid(e.to_string()),
    }
}

/// Prints a retraining's result for people.
pub fn print_retrained(p: &Paint, r: &vigil::learn::Retrained) {
    println!(
        "{} trained {} on {} examples from {} hosts ({} failures seen, {} averted by a verified remediation, {} false alarms)",
        p.green("✓"),
        p.bold(&r.model),
        r.examples,
        r.hosts,
        r.failures,
        r.averted,
        r.false_alarms
    );
    println!("{}", quality_row("hold-out: candidate", &r.candidate));
    println!("{}", quality_row("hold-out: baseline", &r.baseline));
    if let Some((id, q)) = &r.serving {
        println!("{}", quality_row(&format!("hold-out: {id}"), q));
    }
    let verdict = if r.promoted {
        p.green(&r.verdict)
    } else {
        r.verdict.clone()
    };
    println!("  {verdict}");
}

pub fn run(g: &Global, cmd: &ModelCommand) -> Result<ExitCode> {
    let p = Paint::new(g.color());
    let store = match target(g)? {
        Target::Local(store) => store,
        Target::Daemon(c) => return on_daemon(g, &p, &c, cmd),
    };
    match cmd {
        ModelCommand::Train {
            name,
            input,
            window,
            horizon,
            params,
        } => {
            let cfg: TrainConfig = match params {
                Some(text) => {
                    serde_json::from_str(text).map_err(|e| invalid(format!("--params: {e}")))?
                }
                None => TrainConfig::default(),
            };
            let (samples, failures) = read_samples(input)?;
            let extractor =
                FeatureExtractor::new(*window).map_err(|e| invalid(format!("--window: {e}")))?;
            let (xs, ys) = extractor
                .examples(&samples, &failures, *horizon)
                .map_err(|e| invalid(e.to_string()))?;
            let next = store
                .models()?
                .iter()
                .filter(|m| &m.name == name)
                .map(|m| m.version)
                .max()
                .unwrap_or(0)
                + 1;
            let model = FailureModel::train(
                &format!("{name}@{next}"),
                extractor,
                *horizon,
                &xs,
                &ys,
                &cfg,
            )
            .map_err(|e| invalid(format!("training refused: {e}")))?;
            let evaluation = serde_json::to_value(&model.evaluation)?;
            let meta = store.put_model(
                name,
                &model.to_bytes().map_err(|e| anyhow::anyhow!("{e}"))?,
                evaluation.clone(),
            )?;
            store.sync_blocking()?;
            if g.json() {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({ "model": meta.id(), "evaluation": evaluation })
                    )?
                );
            } else {
                let e = &model.evaluation;
                println!(
                    "{} trained {} on {} examples ({} trees)",
                    p.green("✓"),
                    p.bold(&meta.id()),
                    xs.len(),
                    model.trees()
                );
                println!("{}", quality_row("validation: model", &e.validation_model));
                println!(
                    "{}",
                    quality_row("validation: baseline", &e.validation_baseline)
                );
                println!("{}", quality_row("hold-out: model", &e.holdout_model));
                println!("{}", quality_row("hold-out: baseline", &e.holdout_baseline));
                println!("  serve it: vigil model promote {}", meta.id());
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Evaluate { model, input } => {
            let (name, version) = split_id(model)?;
            let (meta, bytes) = store
                .model(&name, version)
                .map_err(|e| invalid(e.to_string()))?;
            let model = FailureModel::from_bytes(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", meta.id()))?;
            let (samples, failures) = read_samples(input)?;
            let (xs, ys) = model
                .extractor
                .examples(&samples, &failures, model.horizon)
                .map_err(|e| invalid(e.to_string()))?;
            let raised: Vec<bool> = model.predict_batch(&xs).iter().map(|p| p.raise).collect();
            let baseline: Vec<bool> = xs.iter().map(|x| model.baseline.predict(x)).collect();
            let (qm, qb) = (Quality::of(&raised, &ys), Quality::of(&baseline, &ys));
            if g.json() {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({ "model": meta.id(), "model_quality": qm, "baseline_quality": qb })
                    )?
                );
            } else {
                println!(
                    "{} on {} ({} examples)",
                    p.bold(&meta.id()),
                    input.display(),
                    xs.len()
                );
                println!("{}", quality_row("model", &qm));
                println!("{}", quality_row("baseline", &qb));
                let verdict = if qm.f1 >= qb.f1 {
                    p.green("beats the baseline")
                } else {
                    p.red("does NOT beat the baseline")
                };
                println!("  {verdict}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::List => print_models(g, &p, store.models()?),
        ModelCommand::Promote { model } => {
            let (name, version) = split_id(model)?;
            let version = version.ok_or_else(|| invalid("promote a specific version: NAME@N"))?;
            let m = vigil::ops::promote_model(
                &store,
                &vigil_exec::automation::whoami(),
                &name,
                version,
            )
            .map_err(|e| invalid(e.to_string()))?;
            store.sync_blocking()?;
            print_promoted(g, &p, &m.id());
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Retrain {
            name,
            detector,
            no_promote,
        } => {
            let bundle = super::alerts::load_bundle(g)?;
            let (_, sources) = super::plugin::with_plugins_and_sources(g, &bundle, &|_| {})?;
            let r = retrain(
                &bundle,
                &store,
                &sources,
                name,
                detector.as_deref(),
                !no_promote,
            )?;
            print_retrain(g, &p, &r)
        }
    }
}

/// The model commands, asked of a running daemon (which holds the store).
fn on_daemon(g: &Global, p: &Paint, c: &Client, cmd: &ModelCommand) -> Result<ExitCode> {
    match cmd {
        ModelCommand::List => print_models(g, p, c.get("/api/v1/models")?),
        ModelCommand::Promote { model } => {
            let (name, version) = split_id(model)?;
            let version = version.ok_or_else(|| invalid("promote a specific version: NAME@N"))?;
            let v = c.post(
                &format!("/api/v1/models/{}/promote", path_segment(&name)),
                &json!({ "version": version }),
            )?;
            print_promoted(g, p, v["promoted"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Retrain {
            name,
            detector,
            no_promote,
        } => {
            let v = c.post(
                &format!("/api/v1/models/{}/retrain", path_segment(name)),
                &json!({ "detector": detector, "promote": !no_promote }),
            )?;
            print_retrain(g, p, &serde_json::from_value(v)?)
        }
        ModelCommand::Train { .. } | ModelCommand::Evaluate { .. } => Err(invalid(
            "a running vigil holds the store; `model train` and `model evaluate` read a CSV on this machine and work on a store no daemon holds — stop the daemon, or retrain from what happened with `vigil model retrain NAME`",
        )),
    }
}

fn print_promoted(g: &Global, p: &Paint, id: &str) {
    if g.json() {
        println!("{}", json!({ "promoted": id }));
    } else {
        println!("{} {id} now serves", p.green("✓"));
    }
}

fn print_retrain(g: &Global, p: &Paint, r: &vigil::learn::Retrained) -> Result<ExitCode> {
    if g.json() {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        print_retrained(p, r);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_models(
    g: &Global,
    p: &Paint,
    models: Vec<vigil_runtime::store::ModelMeta>,
) -> Result<ExitCode> {
    if g.json() {
        println!("{}", serde_json::to_string_pretty(&models)?);
    } else if models.is_empty() {
        println!("no models yet — `vigil model train --name NAME --input FILE.csv`");
    } else {
        for m in models {
            let f1 = m.evaluation["holdout_model"]["f1"]
                .as_f64()
                .unwrap_or(f64::NAN);
            let base = m.evaluation["holdout_baseline"]["f1"]
                .as_f64()
                .unwrap_or(f64::NAN);
            let mark = if m.promoted {
                p.green("● serving")
            } else {
                String::new()
            };
            println!(
                "{:<24} hold-out F1 {f1:.2} (baseline {base:.2}) {mark}",
                m.id()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
