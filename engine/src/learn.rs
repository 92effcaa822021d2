//! The feedback loop for models that learn: a classifier detector's next version is
//! trained on what happened — its source's history, the failures the source
//! labelled, and the outcomes of the incidents its own predictions opened —
//! validated against a threshold baseline, compared with the version serving on the
//! same hold-out, and promoted only when it is at least as good.
//!
//! Labels, per host and sample:
//! - a **failure** where the source says one happened (`anomaly=<failure_kind>`);
//! - a **failure averted**: where a prediction's incident was remediated and the
//!   remediation verified, the failure it predicted did not come — because of the
//!   remediation. Without this label every success would teach the model that its
//!   precursors are harmless; with it, the remediation's time counts as the failure.
//! - a **false alarm**: where a human rejected the remediation a prediction asked
//!   for, the windows of that prediction are negatives and count three times.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vigil_alert::store::AlertStore;
use vigil_alert::{Incident, RunMode};
use vigil_bundle::detector::TrainingSpec;
use vigil_bundle::model::Detector;
use vigil_core::audit::AuditAction;
use vigil_detect::classifier::{
    ClassifierError, FEATURE_COUNT, FailureModel, FeatureExtractor, Quality, Sample,
};
use vigil_exec::record::AuditEntry;
use vigil_exec::record::ExecutionStore;
use vigil_runtime::detectors::{Host, join_hosts};
use vigil_runtime::runner::Source;
use vigil_runtime::store::DetectorStore;
use vigil_store::Store;

/// Extra weight of a window a human called a false alarm.
const FALSE_ALARM_WEIGHT: usize = 3;

/// What a retraining found and did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retrained {
    /// The version stored (`name@N`).
    pub model: String,
    pub hosts: usize,
    pub examples: usize,
    /// Failures the source labelled, averted ones confirmed by remediations, and
    /// predictions a human rejected.
    pub failures: usize,
    pub averted: usize,
    pub false_alarms: usize,
    /// The candidate's hold-out figures, beside the threshold baseline's.
    pub candidate: Quality,
    pub baseline: Quality,
    /// The version that served before, scored on the same hold-out.
    pub serving: Option<(String, Quality)>,
    pub promoted: bool,
    /// Why it was (not) promoted.
    pub verdict: String,
}

/// Why a retraining could not produce a version.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("detector `{0}` has no classifier model")]
    NotAClassifier(String),
    #[error("reading `{query}`: {reason}")]
    Source { query: String, reason: String },
    #[error(
        "no host has all four features between the two times; check the detector's `features:` queries"
    )]
    NoHosts,
    #[error("training refused: {0}")]
    Training(#[from] ClassifierError),
    #[error("store: {0}")]
    Store(#[from] vigil_store::StoreError),
}

/// A host's samples with their labels and weights.
struct Labelled {
    host: Host,
    failures: Vec<bool>,
    /// How many times each example (by its last sample) counts.
    weight: Vec<usize>,
}

/// How an incident that a detector's prediction opened ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The incident's labels (its root alert's: the host's labels among them).
    pub labels: BTreeMap<String, String>,
    pub opened_ms: i64,
    pub resolved_ms: Option<i64>,
    /// When a live remediation of it was verified: the failure it predicted was
    /// averted then.
    pub averted_ms: Option<i64>,
    /// A human rejected the remediation it asked for: a false alarm.
    pub rejected: bool,
}

/// The outcomes of the incidents `detector`'s predictions opened.
pub fn outcomes(incidents: &[Incident], detector: &str) -> Vec<Outcome> {
    incidents
        .iter()
        .filter(|i| i.labels.get("detector").map(String::as_str) == Some(detector))
        .map(|i| {
            // The prediction is the root cause, but another alert may have opened the
            // incident first and had its own remediation: only one that ran once the
            // prediction had started can have averted what it predicted.
            let predicted_ms = i.root_started_ms();
            Outcome {
                labels: i.labels.clone(),
                opened_ms: i.opened_ms,
                resolved_ms: i.resolved_ms,
                averted_ms: i
                    .executions
                    .iter()
                    .filter(|e| e.mode == RunMode::Live && e.verified && e.at_ms >= predicted_ms)
                    .map(|e| e.at_ms)
                    .min(),
                rejected: i.executions.iter().any(|e| {
                    e.reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with("rejected"))
                }),
            }
        })
        .collect()
}

/// Whether every label of `host` is on `labels` (an alert's, an event's).
fn about(host: &Host, labels: &BTreeMap<String, String>) -> bool {
    host.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The first sample index at or after `t_ms`, if the host has one.
fn index_at(host: &Host, t_ms: i64) -> Option<usize> {
    let i = host.samples.partition_point(|(t, _)| t * 1000 < t_ms);
    (i < host.samples.len()).then_some(i)
}

/// Whether `t_ms` falls within the host's samples (an outcome outside the training
/// range says nothing about it).
fn covers(host: &Host, t_ms: i64) -> bool {
    match (host.samples.first(), host.samples.last()) {
        (Some(first), Some(last)) => first.0 * 1000 <= t_ms && t_ms <= last.0 * 1000,
        _ => false,
    }
}

/// Reads what the training needs from `detector`'s source over `[from_ms, until_ms]`
/// and labels it (see the module docs).
async fn labelled_hosts(
    detector: &Detector,
    spec: &TrainingSpec,
    source: &dyn Source,
    incidents: &[Incident],
    from_ms: i64,
    until_ms: i64,
) -> Result<(Vec<Labelled>, [usize; 3]), LearnError> {
    let mut by_feature = BTreeMap::new();
    let mut truths = Vec::new();
    for (feature, q) in &detector.features {
        let series =
            source
                .fetch(q, from_ms, until_ms)
                .await
                .map_err(|reason| LearnError::Source {
                    query: q.clone(),
                    reason,
                })?;
        by_feature.insert(feature.clone(), series);
        let happened = source
            .anomalies(q, from_ms, until_ms)
            .await
            .map_err(|reason| LearnError::Source {
                query: q.clone(),
                reason,
            })?;
        truths.extend(happened.into_iter().filter(|t| t.kind == spec.failure_kind));
    }
    let hosts = join_hosts(&by_feature);
    if hosts.iter().all(|h| h.samples.len() <= spec.window) {
        return Err(LearnError::NoHosts);
    }
    let outcomes = outcomes(incidents, &detector.name);
    let mut counts = [0usize; 3];
    let mut out = Vec::new();
    for host in hosts {
        let n = host.samples.len();
        let mut failures = vec![false; n];
        let mut weight = vec![1usize; n];
        // One failure event per metric: mark each moment once.
        let mut seen = std::collections::BTreeSet::new();
        for t in truths.iter().filter(|t| about(&host, &t.labels)) {
            if let Some(i) = index_at(&host, t.at_ms)
                && seen.insert(i)
            {
                failures[i] = true;
                counts[0] += 1;
            }
        }
        for o in outcomes
            .iter()
            .filter(|o| about(&host, &o.labels) && covers(&host, o.opened_ms))
        {
            if let Some(at) = o.averted_ms {
                if let Some(i) = index_at(&host, at).or(n.checked_sub(1))
                    && !failures[i]
                {
                    failures[i] = true;
                    counts[1] += 1;
                }
            } else if o.rejected {
                // The prediction's windows: from a horizon before it opened to its end.
                let lo = index_at(&host, o.opened_ms)
                    .unwrap_or(n)
                    .saturating_sub(spec.horizon);
                let hi = o.resolved_ms.and_then(|r| index_at(&host, r)).unwrap_or(n);
                for w in &mut weight[lo..hi.max(lo)] {
                    *w = FALSE_ALARM_WEIGHT;
                }
                counts[2] += 1;
            }
        }
        out.push(Labelled {
            host,
            failures,
            weight,
        });
    }
    Ok((out, counts))
}

/// One window's features and label, at the time of its last sample.
struct Example {
    t: i64,
    x: [f64; FEATURE_COUNT],
    failure: bool,
    weight: usize,
}

/// Every example of every host, oldest first (the trainer splits by time: train,
/// then validation, then hold-out).
fn examples(
    hosts: &[Labelled],
    extractor: FeatureExtractor,
    horizon: usize,
) -> Result<Vec<Example>, LearnError> {
    let mut all = Vec::new();
    for h in hosts {
        let samples: Vec<Sample> = h.host.samples.iter().map(|(_, s)| *s).collect();
        let (xs, ys) = extractor
            .examples(&samples, &h.failures, horizon)
            .map_err(ClassifierError::from)?;
        for (j, (x, y)) in xs.into_iter().zip(ys).enumerate() {
            let last = j + extractor.window - 1;
            all.push(Example {
                t: h.host.samples[last].0,
                x,
                failure: y,
                weight: h.weight[last],
            });
        }
    }
    all.sort_by_key(|e| e.t);
    Ok(all)
}

/// How `model` does on the examples from `from_t` (unix seconds) on, built with its
/// own window and horizon; `built` are examples already built with some window and
/// horizon, reused when they are the model's.
fn score_from(
    model: &FailureModel,
    hosts: &[Labelled],
    built: (&[Example], FeatureExtractor, usize),
    from_t: i64,
) -> Result<Quality, LearnError> {
    let (built_rows, extractor, horizon) = built;
    let own;
    let all = if (model.extractor, model.horizon) == (extractor, horizon) {
        built_rows
    } else {
        own = examples(hosts, model.extractor, model.horizon)?;
        &own
    };
    let rows: Vec<&Example> = all.iter().filter(|e| e.t >= from_t).collect();
    let xs: Vec<[f64; FEATURE_COUNT]> = rows.iter().map(|e| e.x).collect();
    let ys: Vec<bool> = rows.iter().map(|e| e.failure).collect();
    let raised: Vec<bool> = model.predict_batch(&xs).iter().map(|p| p.raise).collect();
    Ok(Quality::of(&raised, &ys))
}

/// Trains the next version of `detector`'s classifier from `[from_ms, until_ms]`,
/// stores it, and promotes it when `promote` is set and it does at least as well
/// on the hold-out as the version serving (or nothing serves yet).
pub async fn retrain(
    store: &Store,
    detector: &Detector,
    source: &dyn Source,
    until_ms: i64,
    promote: bool,
) -> Result<Retrained, LearnError> {
    let spec = detector
        .model
        .classifier()
        .ok_or_else(|| LearnError::NotAClassifier(detector.name.clone()))?;
    let training = &spec.training;
    let from_ms = until_ms - training.history.as_std().as_millis() as i64;
    let incidents = store.incidents()?;
    let (hosts, [failures, averted, false_alarms]) =
        labelled_hosts(detector, training, source, &incidents, from_ms, until_ms).await?;
    let extractor = FeatureExtractor::new(training.window).map_err(ClassifierError::from)?;
    let rows = examples(&hosts, extractor, training.horizon)?;
    // A false alarm's windows count more: they are repeated, next to each other in time.
    let (mut xs, mut ys, mut ts) = (Vec::new(), Vec::new(), Vec::new());
    for e in &rows {
        for _ in 0..e.weight {
            xs.push(e.x);
            ys.push(e.failure);
            ts.push(e.t);
        }
    }
    let next = store
        .models()?
        .iter()
        .filter(|m| m.name == spec.model)
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
        + 1;
    let id = format!("{}@{next}", spec.model);
    let candidate =
        FailureModel::train(&id, extractor, training.horizon, &xs, &ys, &training.params)?;
    // The hold-out is what the trainer kept back: the newest examples.
    let p = &training.params;
    let cut = ((ts.len() as f64) * (p.train_share + p.validation_share)) as usize;
    let holdout_from = ts[cut.min(ts.len() - 1)];
    let built = (rows.as_slice(), extractor, training.horizon);
    let candidate_q = score_from(&candidate, &hosts, built, holdout_from)?;
    let serving = match vigil_runtime::models::ModelShelf::new(store.clone()).serving(&spec.model) {
        Ok(Some(s)) => Some((
            s.id.clone(),
            score_from(&s.model, &hosts, built, holdout_from)?,
        )),
        _ => None,
    };
    let (promoted, verdict) = match (&serving, promote) {
        (_, false) => (false, "not promoted (asked not to)".to_string()),
        (None, true) => (true, "promoted: nothing served before".to_string()),
        (Some((sid, q)), true) if candidate_q.f1 >= q.f1 => (
            true,
            format!(
                "promoted: hold-out F1 {:.3} ≥ {:.3} of {sid}",
                candidate_q.f1, q.f1
            ),
        ),
        (Some((sid, q)), true) => (
            false,
            format!(
                "kept {sid}: its hold-out F1 {:.3} beats the candidate's {:.3}",
                q.f1, candidate_q.f1
            ),
        ),
    };
    let mut evaluation = serde_json::to_value(&candidate.evaluation)
        .map_err(|e| ClassifierError::Decode(e.to_string()))?;
    evaluation["trained_from"] = serde_json::json!({
        "detector": detector.name,
        "from_ms": from_ms,
        "until_ms": until_ms,
        "hosts": hosts.len(),
        "examples": rows.len(),
        "failures": failures,
        "averted": averted,
        "false_alarms": false_alarms,
    });
    let bytes = candidate.to_bytes()?;
    let meta = store.put_model(&spec.model, &bytes, evaluation)?;
    if promoted {
        store.promote_model(&spec.model, meta.version)?;
    }
    store.audit(AuditEntry::new(
        format!("detector:{}", detector.name),
        AuditAction::Retrain,
        meta.id(),
        &verdict,
    ))?;
    store.sync_blocking()?;
    Ok(Retrained {
        model: meta.id(),
        hosts: hosts.len(),
        examples: rows.len(),
        failures,
        averted,
        false_alarms,
        candidate: candidate_q,
        baseline: candidate.evaluation.holdout_baseline,
        serving,
        promoted,
        verdict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use vigil_detect::classifier::synthetic_fleet;
    use vigil_runtime::detectors::Series;
    use vigil_runtime::evaluate::Truth;
    use vigil_runtime::runner::{FetchFuture, TruthFuture};

    const SAMPLES: usize = 3000;

    /// Two hosts of generated data, a minute apart from t=0, with their failures
    /// labelled as the source's events.
    struct Fleet;

    fn host(instance: &str) -> (Vec<Sample>, Vec<bool>) {
        synthetic_fleet(SAMPLES, if instance == "db-1" { 7 } else { 8 }, 12)
    }

    fn labels(instance: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("instance".to_string(), instance.to_string())])
    }

    impl Source for Fleet {
        fn fetch(&self, query: &str, _: i64, _: i64) -> FetchFuture {
            let f = vigil_detect::classifier::FEATURE_METRICS
                .iter()
                .position(|m| *m == query)
                .expect("a feature query");
            Box::pin(async move {
                Ok(["db-1", "db-2"]
                    .iter()
                    .map(|i| Series {
                        labels: labels(i),
                        points: host(i)
                            .0
                            .iter()
                            .enumerate()
                            .map(|(t, s)| {
                                let v = [s.cpu, s.memory, s.disk_io, s.error_rate][f];
                                (t as i64 * 60, v)
                            })
                            .collect(),
                    })
                    .collect())
            })
        }

        fn anomalies(&self, _: &str, _: i64, _: i64) -> TruthFuture {
            Box::pin(async {
                let mut out = Vec::new();
                for i in ["db-1", "db-2"] {
                    for (t, failed) in host(i).1.iter().enumerate() {
                        if *failed {
                            out.push(Truth {
                                at_ms: t as i64 * 60_000,
                                labels: labels(i),
                                kind: "failure".into(),
                            });
                        }
                    }
                }
                // Other kinds of anomaly are not failures.
                out.push(Truth {
                    at_ms: 60_000,
                    labels: labels("db-1"),
                    kind: "spike".into(),
                });
                Ok(out)
            })
        }
    }

    fn detector() -> Detector {
        let text = "apiVersion: vigil/v1\nkind: Detector\nname: hf\nschedule: \"*/15 * * * * *\"\nsource: fleet\nfeatures: { cpu: cpu, memory: memory, disk_io: disk_io, error_rate: error_rate }\nmodel: { classifier: { model: hf, training: { history: 30d, horizon: 6, params: { trees: 10 } } } }\nalert: { name: HostFailurePredicted }\n";
        let b = vigil_bundle::Bundle::from_source(Path::new("hf.yaml"), text);
        assert!(!b.has_errors(), "{:?}", b.diagnostics);
        b.detectors[0].clone()
    }

    fn incident(id: &str, opened_ms: i64, execution: serde_json::Value) -> Incident {
        serde_json::from_value(serde_json::json!({
            "id": id, "status": "resolved", "severity": "warning", "title": "HostFailurePredicted",
            "opened_ms": opened_ms, "updated_ms": opened_ms, "resolved_ms": opened_ms + 600_000,
            "labels": { "alertname": "HostFailurePredicted", "detector": "hf", "instance": "db-1" },
            "common_labels": {}, "services": [], "alerts": [], "groups": [],
            "executions": [execution],
        }))
        .expect("an incident")
    }

    #[test]
    fn only_a_remediation_after_the_prediction_averts_it() {
        // A latency alert opened the incident at 1,000 and was remediated at 2,000; the
        // prediction joined at 5,000 as root cause and its drain ran at 6,000.
        let mut inc = incident(
            "inc-1",
            1_000,
            serde_json::json!({"runbook": "restart", "mode": "live", "status": "succeeded", "at_ms": 2_000, "verified": true}),
        );
        inc.executions.push(
            serde_json::from_value(serde_json::json!({"runbook": "drain", "mode": "live", "status": "succeeded", "at_ms": 6_000, "verified": true}))
                .expect("an execution"),
        );
        inc.alerts = serde_json::from_value(serde_json::json!([
            {"fingerprint": "a", "alertname": "LatencyHigh", "status": "firing", "role": "symptom", "starts_at_ms": 1_000, "severity": "warning"},
            {"fingerprint": "b", "alertname": "HostFailurePredicted", "status": "firing", "role": "root_cause", "starts_at_ms": 5_000, "severity": "warning"},
        ]))
        .expect("members");
        let o = outcomes(&[inc.clone()], "hf");
        assert_eq!(o[0].averted_ms, Some(6_000));
        // Without members (an incident the prediction opened), its opening is the start.
        inc.alerts.clear();
        assert_eq!(outcomes(&[inc], "hf")[0].averted_ms, Some(2_000));
    }

    #[tokio::test]
    async fn retraining_learns_from_failures_and_outcomes_and_promotes_only_what_is_no_worse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let until = SAMPLES as i64 * 60_000;
        let first = retrain(&store, &detector(), &Fleet, until, true)
            .await
            .expect("trains");
        assert_eq!(first.model, "hf@1");
        assert!(first.promoted, "{}", first.verdict);
        assert_eq!(first.hosts, 2);
        let labelled = host("db-1")
            .1
            .iter()
            .chain(host("db-2").1.iter())
            .filter(|f| **f)
            .count();
        assert_eq!(
            first.failures, labelled,
            "each failure once; spikes are not failures"
        );
        assert!(first.candidate.f1 > first.baseline.f1, "{first:?}");
        assert!(first.serving.is_none());

        // Outcomes: one prediction remediated and verified (a failure averted), one
        // a human rejected (a false alarm); another detector's incident is not ours.
        let averted = incident(
            "inc-1",
            100 * 60_000,
            serde_json::json!({ "runbook": "drain", "mode": "live", "status": "succeeded", "at_ms": 105 * 60_000, "verified": true }),
        );
        let rejected = incident(
            "inc-2",
            900 * 60_000,
            serde_json::json!({ "runbook": "drain", "mode": "live", "status": "cancelled", "at_ms": 901 * 60_000, "reason": "rejected: not now" }),
        );
        let mut other = incident(
            "inc-3",
            1_200 * 60_000,
            serde_json::json!({ "runbook": "drain", "mode": "live", "status": "succeeded", "at_ms": 1_201 * 60_000, "verified": true }),
        );
        other
            .labels
            .insert("detector".into(), "something-else".into());
        for i in [&averted, &rejected, &other] {
            store.put_incident(i).expect("stored");
        }
        let second = retrain(&store, &detector(), &Fleet, until, true)
            .await
            .expect("trains");
        assert_eq!(second.model, "hf@2");
        assert_eq!((second.averted, second.false_alarms), (1, 1), "{second:?}");
        let (serving, q) = second.serving.clone().expect("@1 served");
        assert_eq!(serving, "hf@1");
        assert_eq!(
            second.promoted,
            second.candidate.f1 >= q.f1,
            "{}",
            second.verdict
        );

        // Not asked to promote: stored, not served.
        let third = retrain(&store, &detector(), &Fleet, until, false)
            .await
            .expect("trains");
        assert!(!third.promoted);
        let serving_now: Vec<String> = store
            .models()
            .expect("models")
            .iter()
            .filter(|m| m.promoted)
            .map(|m| m.id())
            .collect();
        assert_eq!(serving_now.len(), 1);
        assert_ne!(serving_now[0], "hf@3");
        let audit = store.audit_entries().expect("audit");
        assert_eq!(
            audit
                .iter()
                .filter(|a| a.action == AuditAction::Retrain)
                .count(),
            3
        );
    }

    #[tokio::test]
    async fn a_model_that_is_not_a_classifier_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let text = "apiVersion: vigil/v1\nkind: Detector\nname: d\nschedule: \"* * * * * *\"\nsource: s\nquery: q\nmodel: { anomaly: { method: robust } }\nalert: { name: X }\n";
        let b = vigil_bundle::Bundle::from_source(Path::new("d.yaml"), text);
        let err = retrain(&store, &b.detectors[0], &Fleet, 0, true)
            .await
            .expect_err("not a classifier");
        assert!(matches!(err, LearnError::NotAClassifier(_)), "{err}");
    }
}
